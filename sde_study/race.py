"""`sde study race`: the best design at a fraction of the grid's cells, by racing designs over seeds.

The algorithm (irace's racing, with successive halving's rungs and a Bonferroni split over planned looks):

- Rung 0: every design is trained with one seed. Each later rung adds one seed to every surviving design but the
  paused ones (below).
- After each rung, a design leaves only
  - with one seed: if a cell of it collapsed (one answer to >= 90% of the documents), or failed the same way twice
    (a failed cell is trained again by the next run: preemption, a lost node or a missing path say nothing of a
    design, so one failure is never a verdict);
  - from two seeds on: if the current best (the highest mean) is better than it in a one-sided paired comparison
    on the same documents and seeds (a t test: the documents' paired bootstrap variance and the between-seed
    variance pooled over the designs, with Welch-Satterthwaite's degrees of freedom), with Holm's step-down over
    every pair of the K designs still in (the best is chosen by the data, so each of its tests is one of K(K-1)/2
    it could have made) at level
    alpha / (max_seeds - 1): Bonferroni over the looks the race can make, so the chance of ever dropping a design
    that is as good as the best stays under alpha however many looks it takes (bench/race.py measures it under
    the null).
- Staged evaluation (`race.first_docs`, 100 for a new race, where that is at most a quarter of the test set): a new
  cell is evaluated on the first documents of the test set only, and every look reads those; once the race is
  decided, its finalists' cells are evaluated on all of them (the report compares the finalists there). A design
  that leaves never costs the rest of the test set.
  (bench/race.py also measures the other form, `Stages.every_rung`: each rung from the second on looks twice, on
  the first documents, then, once the survivors' cells have the rest, on all, alpha split over both looks.)
- The current best never leaves, and at least two designs survive until the race is decided.
- The futility stop: a rival that could not be separated from the best by the last seed (hopeless: even at the
  upper `futility` confidence bound of its gap, the gap would reach the look's critical value at most half the
  time with `max_seeds` seeds of both) stays in but is paused: the next rung trains no seed of it. Each look judges
  it again with the seeds it has (the best may move away from it). Pausing never drops a design; it spends the
  seeds on the rivals a seed can still separate.
- It stops when the best is separated from every rival ("separated"), when every survivor's difference from the
  best lies within +-delta with the same confidence ("tie set"), when every rival still in is hopeless
  ("inseparable"), when the seeds run out ("seeds exhausted"), or when the next rung would pass the budget
  ("budget").

Everything is decided from the cells' results and per-document statistics alone (`decide` is a pure function),
so a race folder committed without its adapters continues on another machine, and a race is replayed exactly.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from scipy.stats import norm
from scipy.stats import t as student

from sde_study.folder import tuned_key
from sde_study.plan import WELCH, Plan, RaceSettings
from sde_tasks import significance as sig
from sde_tasks.docstats import DocStats

SEPARATED, TIE_SET, SEEDS_EXHAUSTED, BUDGET = "separated", "tie set", "seeds exhausted", "budget"
INSEPARABLE = "inseparable"
NONE_LEFT = "no design left (every one collapsed, failed twice the same way or has a cell without statistics)"
ONE_LEFT = "one design left (every other one collapsed, failed twice the same way or has a cell without statistics)"


@dataclass(frozen=True)
class Cell:
    """One (design, seed) the race has tried, as it sees it."""

    stats: DocStats | None  # per-document statistics of the headline task (None: failed, or not kept)
    collapsed: bool = False
    seconds: float = 0.0  # training + evaluation, measured
    failures: tuple[str, ...] = ()  # a failed cell's errors, one per failed attempt, oldest first
    unusable: str = ""  # why a cell without statistics cannot be compared (final), e.g. not in a replayed grid

    @property
    def failed_twice(self) -> bool:
        """It failed the same way on its last two attempts: a cause that a rerun does not fix."""
        return len(self.failures) >= 2 and self.failures[-1] == self.failures[-2]

    @property
    def to_retry(self) -> bool:
        """No statistics, and neither unusable nor failed twice the same way: the next run trains it again."""
        return self.stats is None and not self.unusable and not self.failed_twice

    def out_of_the_race(self) -> str:
        """Why the cell takes its design out of the race ("" when it does not)."""
        if self.failed_twice:
            return f"failed twice the same way ({self.failures[-1]})"
        return self.unusable if self.stats is None else ""


@dataclass(frozen=True)
class Look:
    """The decision after one rung."""

    rung: int
    survivors: tuple[str, ...]  # entering the look
    best: str
    means: dict[str, float]
    left: dict[str, str]  # design -> why it left, in words
    cells: int  # cells trained so far
    hours: float  # their measured compute
    docs: int | None = None  # the documents compared (None: every document of the test set)
    seeds: dict[str, int] = field(default_factory=dict)  # seeds of each design compared
    paused: tuple[str, ...] = ()  # still in, but hopeless (the futility stop): no seed at the next rung


@dataclass
class RaceState:
    designs: list[str]
    settings: RaceSettings
    looks: list[Look] = field(default_factory=list)
    survivors: list[str] = field(default_factory=list)
    decided: str | None = None
    next_cells: list[tuple[str, int]] = field(default_factory=list)  # to train (and evaluate on the first documents)
    next_rest: list[tuple[str, int]] = field(default_factory=list)  # trained cells to evaluate on the other documents

    @property
    def best(self) -> str | None:
        return self.looks[-1].best if self.looks else None


@dataclass(frozen=True)
class Stages:
    """Staged evaluation: a new cell is evaluated on the first `first_docs` of the test set's `total_docs` documents.
    With `every_rung`, each rung from the second on looks twice, on those documents and then (once the survivors'
    cells have the rest) on all; without, every look reads the first documents and only the finalists get the rest."""

    first_docs: int
    total_docs: int
    every_rung: bool = True

    def docs(self, rung: int) -> list[int | None]:
        """The documents of each look at `rung` (None: all of them)."""
        return [self.first_docs, None] if rung >= 1 and self.every_rung else [self.first_docs]

    @property
    def looks_per_rung(self) -> int:
        return 2 if self.every_rung else 1


def staged(first_docs: int | None, total_docs: int | None) -> Stages | None:
    """Staged evaluation where it can pay: a finalist's cell is evaluated again from its first document, so a first
    stage of more than a quarter of the test set costs the finalists about what it spares the designs that leave
    (bench/race.py: half of 200 documents spent 68.9% of the grid's hours against 67.8% unstaged). None: every cell
    on every document."""
    if first_docs is None or total_docs is None or 4 * first_docs > total_docs:
        return None
    return Stages(first_docs, total_docs, every_rung=False)


def stages_of(plan: Plan) -> Stages | None:
    """A race's staged evaluation (None: every cell on every document, as in races planned before it)."""
    if plan.race is None or plan.race.first_docs is None:
        return None  # without reading the test split: every report and cell asks
    return staged(plan.race.first_docs, plan.evaluated_docs())


def decide(cells: dict[tuple[str, int], Cell], designs: list[str], settings: RaceSettings, metric: str,
           resamples: int = sig.RESAMPLES, stages: Stages | None = None) -> RaceState:
    """Replay the race on the cells at hand: every look it has the data for, and what it needs next (`next_cells`
    to train; with `stages`, `next_rest`: trained cells to evaluate on every document)."""
    state = RaceState(list(designs), settings, survivors=list(designs))
    if stages is not None and stages.first_docs >= stages.total_docs:
        stages = None
    level = settings.look_level(stages.looks_per_rung if stages else 1)
    seeds, paused = dict.fromkeys(designs, 0), ()  # seeds each design has had; designs the last look paused
    for rung in range(settings.max_seeds):
        growing = [d for d in state.survivors if d not in paused]
        missing = [(d, seeds[d]) for d in growing if (d, seeds[d]) not in cells or cells[(d, seeds[d])].to_retry]
        if missing:
            if over_budget(cells, len(missing), settings):
                state.decided = BUDGET
            else:
                state.next_cells = missing
            return state
        seeds.update({d: seeds[d] + 1 for d in growing})
        looks = stages.docs(rung) if stages else [None]
        for i, docs in enumerate(looks):
            if stages and docs is None:
                state.next_rest = _incomplete(cells, state.survivors, seeds, stages)
                if state.next_rest:
                    return state  # the survivors' cells need the other documents before the look on all of them
            final_docs = docs is None or not stages.every_rung  # the documents the race's last look reads
            look = _look(cells, state, rung, metric, resamples, docs, level, seeds, final_docs)
            state.looks.append(look)
            state.survivors, paused = [d for d in look.survivors if d not in look.left], look.paused
            if state.decided is None and len(state.survivors) <= 1:
                state.decided = ONE_LEFT if state.survivors else NONE_LEFT
            if state.decided is None and rung == settings.max_seeds - 1 and i == len(looks) - 1:
                state.decided = SEEDS_EXHAUSTED
            if state.decided:
                state.next_rest = _incomplete(cells, state.survivors, seeds, stages) if stages else []
                return state
    return state


def _incomplete(cells: dict[tuple[str, int], Cell], designs: list[str], seeds: dict[str, int],
                stages: Stages) -> list[tuple[str, int]]:
    """The designs' cells not yet evaluated on every document."""
    return [(d, s) for d in designs for s in range(seeds[d])
            if cells[(d, s)].stats is not None and cells[(d, s)].stats.n_docs < stages.total_docs]


def over_budget(cells: dict[tuple[str, int], Cell], n_next: int, settings: RaceSettings) -> bool:
    """Whether the next rung's cells (at the measured median cell time) would pass the budget."""
    if settings.budget_hours is None or (median := median_cell_seconds(cells)) is None:
        return False
    return (sum(c.seconds for c in cells.values() if c.seconds > 0) + n_next * median) / 3600 > settings.budget_hours


def median_cell_seconds(cells: dict[tuple[str, int], Cell]) -> float | None:
    """The measured median cell time, what a race plans its next cells with (None before any cell has a time)."""
    times = [c.seconds for c in cells.values() if c.seconds > 0]
    return statistics.median(times) if times else None


def _look(cells: dict[tuple[str, int], Cell], state: RaceState, rung: int, metric: str, resamples: int,
          docs: int | None, level: float, seeds: dict[str, int], final_docs: bool = True) -> Look:
    """One rung's decision on the first `docs` documents, or all, each design with the `seeds` it has had (see the
    module's docstring); sets state.decided when the race is over. The futility stop judges only looks on the
    documents the last look reads."""
    settings, survivors = state.settings, list(state.survivors)
    left: dict[str, str] = {}
    paused: tuple[str, ...] = ()
    for d in survivors:
        mine = [cells[(d, s)] for s in range(seeds[d])]
        out = next((why for c in mine if (why := c.out_of_the_race())), "")
        if out:
            left[d] = out
        elif any(c.collapsed for c in mine):
            left[d] = "collapsed"
    alive = [d for d in survivors if d not in left]
    first = range(docs) if docs is not None else None
    runs = {d: [_docs(cells[(d, s)].stats, first).under(settings.rule) for s in range(seeds[d])] for d in alive}
    means = {d: statistics.fmean(r.corpus()[metric] for r in group) for d, group in runs.items()}
    best = sig.best_and_ties(means, None, metric)[0] if alive else ""  # the highest mean (lowest, for a loss)
    if rung >= 1 and len(alive) > 1:
        # the futility stop projects the welch test's SE (a widened SE is widened for the seeds it has now)
        futility = settings.futility if final_docs and settings.test == WELCH else 0.0
        verdicts = compare_with_best(runs, best, metric, level, settings.delta, resamples, settings.test,
                                     futility, settings.max_seeds)
        separated = {d: v.words for d, v in verdicts.items() if v.separated}
        if len(separated) == len(verdicts):
            state.decided = SEPARATED
        elif settings.delta > 0 and all(v.within for v in verdicts.values()):
            state.decided = TIE_SET
        elif futility and all(v.separated or v.hopeless for v in verdicts.values()):
            state.decided = INSEPARABLE
        left.update(separated)
        paused = tuple(d for d, v in verdicts.items() if v.hopeless and not v.separated)
    so_far = [cells[(d, s)] for d in state.designs for s in range(seeds[d])]  # up to this rung, no later ones
    return Look(rung, tuple(survivors), best, means, left, len(so_far), sum(c.seconds for c in so_far) / 3600, docs,
                {d: seeds[d] for d in survivors}, paused)


def _docs(stats: DocStats, first: range | None) -> DocStats:
    return stats if first is None else stats.subset(first)


class Verdict(NamedTuple):
    """A rival against the best at one look."""

    words: str
    separated: bool  # worse than the best: it leaves
    within: bool  # its gap lies within +-delta
    hopeless: bool  # the futility stop: the last seed could not separate it (see compare_with_best)


def compare_with_best(runs: dict[str, list[DocStats]], best: str, metric: str, level: float, delta: float,
                      resamples: int, test: str = WELCH, futility: float = 0.0,
                      max_seeds: int = 0) -> dict[str, Verdict]:
    """Each rival against the best, paired, as a Verdict: Holm's step-down at the look's `level` over every pair of
    designs: the best is chosen by the data, so its test against a rival is one of the K(K-1)/2 pairwise tests the
    look could have made (Holm over the K-1 rivals alone lets the winner's curse through: bench/race.py measured
    13.5% false eliminations under the null at alpha 0.05 that way).

    The test is one-sided (a rival leaves only for being worse than the best): t = Δ / SE, the SE's document part
    from the paired bootstrap of documents and its seed part from the between-seed variance pooled over the designs
    (`welch`: Student's t with the Welch-Satterthwaite degrees of freedom, so that the few seeds' uncertainty
    weighs as much as the seed part's share of the SE; `widened`, the races planned before it: the seed variance
    widened to Student's t as if it were the whole SE, then a normal tail, which costs power wherever the documents
    add noise too). A level far below 1 / resamples is then still resolved, which a bootstrap p-value is not.

    The futility stop (`futility` > 0): a rival is hopeless when even at the upper `futility` confidence bound of its
    gap, diff + z SE, the expected statistic with `max_seeds` seeds of both designs stays under the critical value
    of the least strict test it could then face (`level`, two designs left). The SE at the last seed is projected
    as if all of it shrank with the seeds, which overstates how far more seeds can narrow it: the stop errs towards
    racing on."""
    rivals = [d for d in runs if d != best]
    pairs = len(runs) * (len(runs) - 1) // 2
    strictest = level / pairs
    means = {d: statistics.fmean(r.corpus()[metric] for r in group) for d, group in runs.items()}
    spread = _welch if test == WELCH else _widened
    found, p_values = {}, {}
    for d, (se, dof) in spread(runs, best, metric, strictest, resamples).items():
        diff = means[best] - means[d]
        p_values[d] = 1 - student.cdf(diff / se, dof) if se > 0 else (0.0 if diff > 0 else 1.0)
        margin = student.ppf(1 - strictest, dof) * se
        within = delta > 0 and diff + margin < delta and diff - margin > -delta
        at_last_seed = se * math.sqrt((2 / max_seeds) / (1 / len(runs[best]) + 1 / len(runs[d]))) if futility else 0
        hopeless = bool(futility) and diff + norm.ppf(futility) * se < norm.ppf(1 - level) * at_last_seed
        found[d] = [f"best − it = {diff:+.4f} (SE {se:.4f}, one-sided p {p_values[d]:.2g})", False, within, hopeless]
    for rank, d in enumerate(sorted(rivals, key=p_values.get)):  # Holm: stop at the first rival not rejected
        if p_values[d] >= level / (pairs - rank):
            break
        found[d][0] += f" < {level / (pairs - rank):.2g}"
        found[d][1] = True
    return {d: Verdict(*verdict) for d, verdict in found.items()}


def _welch(runs: dict[str, list[DocStats]], best: str, metric: str, level: float,
           resamples: int) -> dict[str, tuple[float, float]]:
    """Each rival's (SE of best − it, degrees of freedom): the documents' paired bootstrap variance D and the pooled
    seed variance S over `dof` degrees of freedom, SE² = D + S (1/n_best + 1/n_it), Welch-Satterthwaite's
    (D + s)² / (s² / dof) for s = S (1/n_best + 1/n_it) (D is known to many documents' precision)."""
    rivals = [d for d in runs if d != best]
    variance, dof = sig.seed_variance(runs)
    if not dof:  # no design with two seeds yet: the seed part is unknown, so nothing is separated
        return {d: (math.inf, 1.0) for d in rivals}
    reps = sig.replicates(runs, resamples=resamples, seeds_too=False)
    found = {}
    for d in rivals:
        docs = float((reps[best][metric] - reps[d][metric]).var(ddof=1))
        seeds = variance.get(metric, 0.0) * (1 / len(runs[best]) + 1 / len(runs[d]))
        found[d] = (math.sqrt(docs + seeds), (docs + seeds) ** 2 / (seeds ** 2 / dof) if seeds > 0 else math.inf)
    return found


def _widened(runs: dict[str, list[DocStats]], best: str, metric: str, level: float,
             resamples: int) -> dict[str, tuple[float, float]]:
    """Each rival's (SE of best − it, infinite degrees of freedom: a normal tail) from the bootstrap replicates with
    the seed variance widened to Student's t at `level` (sde_tasks.significance.replicates)."""
    reps = sig.replicates(runs, resamples=resamples, alpha=level)
    return {d: (float((reps[best][metric] - reps[d][metric]).std(ddof=1)), math.inf) for d in runs if d != best}


def seeds_had(state: RaceState) -> dict[str, int]:
    """The seeds each design had at its last look (0: none yet)."""
    return {d: max((look.seeds.get(d, 0) for look in state.looks), default=0) for d in state.designs}


def cells_used(state: RaceState) -> int:
    """The cells the race's looks consumed."""
    return sum(seeds_had(state).values())


def cells_from_rows(rows: list[dict[str, Any]], doc_stats: dict[tuple, DocStats], task: str,
                    failures: dict[tuple[str, int], tuple[str, ...]] | None = None) -> dict[tuple[str, int], Cell]:
    """The race's view of a study folder: its tuned rows of the headline task, their statistics, and the errors of
    its failed cells."""
    cells: dict[tuple[str, int], Cell] = {}
    for row in rows:
        if row["kind"] != "tuned" or row["task"] != task:
            continue
        stats = doc_stats.get(tuned_key(row["design"], row["seed"], task))
        seconds = float(row.get("train_seconds", 0) or 0) + float(row.get("eval_seconds", 0) or 0)
        cells[(row["design"], row["seed"])] = Cell(stats, bool(row.get("collapsed")), seconds,
                                                   unusable="" if stats is not None else "no per-document statistics")
    for key, errors in (failures or {}).items():
        cells.setdefault(key, Cell(None, failures=errors))
    return cells


def cells_to_finish(state: RaceState) -> int:
    """The cells that would give every design still in the race's last seed (what continuing a race stopped by its
    budget or its futility stop would cost)."""
    had = state.looks[-1].seeds if state.looks else {}
    return sum(state.settings.max_seeds - had.get(d, 0) for d in state.survivors)
