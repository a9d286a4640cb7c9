"""The board's data model, at the bottom of the package: a run's row and one task's board.

The build fills it (`sde_tasks.board.build`); the README tables, the page and the plots only read it.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from sde_datagen.families import FAMILIES
from sde_tasks.docstats import DocStats
from sde_tasks.scoring import STRICT, Degeneracy

FORMAT_ERROR = "format_error_rate"
# The score that ranks designs in plots and sorts tables: the first family's primary metric that a task reports.
PRIMARY_METRICS = tuple(family.primary for family in FAMILIES.values())


@dataclass(frozen=True)
class Row:
    """One task's scores from one submission, with everything the tables show beside them."""

    submission: str
    task: str
    base_model: str
    base_revision: str
    adapter: str
    adapter_revision: str
    design: str
    axes: dict[str, str]
    training: str
    tuned: bool
    evaluation: str
    seed: int
    submitter: str
    date: str
    metrics: dict[str, float]


@dataclass
class TaskBoard:
    """Everything built for one task: its rows, metric columns (in lm-eval's order) and directions."""

    task: str
    rows: list[Row]
    metrics: list[str]
    higher_is_better: dict[str, bool]
    # The primary metric's 95% interval per submission, and the submissions statistically tied with the
    # best run of their base model (paired bootstrap over the logged documents, sde_tasks.significance).
    ci: dict[str, tuple[float, float]] = field(default_factory=dict)
    tied: set[str] = field(default_factory=set)
    stats: dict[str, DocStats] = field(default_factory=dict)  # submission -> per-document statistics
    degeneracy: dict[str, Degeneracy] = field(default_factory=dict)  # submission -> runaway and collapse

    @property
    def primary(self) -> str:
        return next((m for m in PRIMARY_METRICS if m in self.metrics), self.metrics[0])

    def strict(self, submission: str) -> float | None:
        """The primary metric under the strict scoring rule (an answer with a format error predicts nothing)."""
        stats = self.stats.get(submission)
        return stats.under(STRICT).corpus()[self.primary] if stats is not None else None

    def runaway(self, submission: str) -> float | None:
        found = self.degeneracy.get(submission)
        return found.runaway_rate if found else None

    def collapsed(self, submission: str) -> bool:
        found = self.degeneracy.get(submission)
        return bool(found and found.collapsed)


def best_values(values: list[dict[str, float]], metrics: list[str], higher: dict[str, bool]) -> dict[str, float]:
    """The best value of each metric column (max, or min where lower is better)."""
    best = {}
    for metric in metrics:
        column = [v[metric] for v in values if metric in v]
        if column:
            best[metric] = max(column) if higher[metric] else min(column)
    return best


def is_best(value: float | None, best: float | None) -> bool:
    return value is not None and best is not None and abs(value - best) <= 1e-12
