"""A study's numbers under one scoring rule, computed once from its rows and per-document statistics: each design's
score with its 95% interval, each one-factor effect as a paired test against paper-base with Holm's correction, each
of the paper's directions the study can test, the best design and each other design against it, and the power.
Intervals resample test documents and, with several seeds, seeds too (`sde_tasks.significance`). No prose: the
report (sde_study.report) says it in words.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sde_datagen.design import PAPER_BASE
from sde_datagen.design import short_name as short
from sde_study.directions import Direction, direction_verdict, testable
from sde_study.folder import tuned_key
from sde_study.plan import Plan
from sde_study.results import headline
from sde_tasks import significance as sig
from sde_tasks.rules import PAPER

BASE = PAPER_BASE.id
ERRORS = "format_error_rate"


@dataclass(frozen=True)
class Score:
    """One design on one task: the mean over seeds of a metric, its 95% interval (None without
    per-document statistics) and the seeds' values."""

    value: float
    ci: tuple[float, float] | None
    per_seed: dict[int, float]


@dataclass(frozen=True)
class Effect:
    """A design against paper-base on one task: the paired comparison, Holm-adjusted."""

    design: str
    task: str
    comparison: sig.Comparison | None  # None without per-document statistics
    holm_p: float
    verdict: str
    seed_deltas: list[float]


@dataclass(frozen=True)
class Finding:
    """One of the paper's directions tested in this study on one task: its paired comparison, Holm-adjusted over the
    findings of that task."""

    direction: Direction
    task: str
    comparison: sig.Comparison
    holm_p: float
    verdict: str


@dataclass(frozen=True)
class Power:
    """What the study can detect, and what resolving its best design's lead over the runner-up would take."""

    se: float  # median standard error of the paired differences
    seed_counts: tuple[int, int]  # fewest and most seeds per design
    runner_up: str
    lead: float  # best - runner-up
    n_seeds: int  # seeds both of them have
    documents_needed: float  # at n_seeds (inf: no number would)
    seeds_needed: int | None  # at the measured documents (None: no number would)
    test_size: int | None


@dataclass
class Summary:
    """Everything REPORT.md says under one scoring rule, computed once."""

    rule: str
    metric: str
    tasks: tuple[str, ...]
    scores: dict[tuple[str, str, str], Score] = field(default_factory=dict)  # (design, task, metric)
    losses: dict[str, list[float]] = field(default_factory=dict)
    effects: list[Effect] = field(default_factory=list)
    best: str = ""
    versus_best: dict[str, sig.Comparison] = field(default_factory=dict)  # other design -> best vs it
    tied: list[str] = field(default_factory=list)  # designs the data do not tell apart from the best, none collapsed
    collapsed: set[str] = field(default_factory=set)  # designs with a collapsed cell on the headline task
    power: "Power | None" = None
    n_docs: int | None = None
    findings: list[Finding] = field(default_factory=list)

    @property
    def available(self) -> bool:
        """Whether the study's files hold what this rule needs (strict: per-document statistics)."""
        return bool(self.scores)


def summarise(rows: list[dict], plan: Plan, doc_stats: dict[tuple, Any], test_size: int | None,
              rule: str = PAPER) -> Summary:
    """Aggregate the tuned rows once under `rule`: scores with intervals, effects, the recommendation, the power line.
    Without per-document statistics only the paper rule is known (the rows' own metrics), with no intervals."""
    tuned = [r for r in rows if r["kind"] == "tuned"]
    summary = Summary(rule, headline(tuned[0]), plan.lm_eval_tasks)
    summary.collapsed = {r["design"] for r in tuned if r.get("collapsed") and r["task"] == summary.tasks[0]}
    for r in tuned:
        if r["task"] == summary.tasks[0]:
            summary.losses.setdefault(r["design"], []).append(r["final_loss"])
    for task in summary.tasks:
        mine = [r for r in tuned if r["task"] == task]
        runs = {d: [s.under(rule) for s in group] for d, group in design_runs(mine, doc_stats).items()}
        if not runs and rule != PAPER:
            return summary
        reps = sig.replicates(runs) if runs else {}
        for design in dict.fromkeys(r["design"] for r in mine):
            seeds = [r["seed"] for r in mine if r["design"] == design]
            for metric in (summary.metric, ERRORS):
                per_seed = (dict(zip(seeds, (s.corpus()[metric] for s in runs[design]))) if runs else
                            {r["seed"]: r[metric] for r in mine if r["design"] == design})
                ci = sig.interval(reps[design][metric]) if design in reps else None
                summary.scores[(design, task, metric)] = Score(statistics.fmean(per_seed.values()), ci, per_seed)
        summary.effects += _effects(summary, task, reps)
        if task == summary.tasks[0]:
            summary.n_docs = next(iter(runs.values()))[0].n_docs if runs else None
            _recommend(summary, task, runs, reps, test_size)
        summary.findings += _findings(summary, task, reps)
    return summary


def _findings(summary: Summary, task: str, reps: dict) -> list[Finding]:
    """Each of the paper's directions whose two designs the study has on `task`, paired, Holm over the directions
    tested there."""
    metric = summary.metric
    means = {d: s.value for (d, t, m), s in summary.scores.items() if t == task and m == metric}
    tested = [d for d in testable(set(reps)) if d.first in means and d.second in means]
    comparisons = [sig.compare(means[d.first], means[d.second], reps[d.first][metric], reps[d.second][metric], metric)
                   for d in tested]
    adjusted = sig.holm([c.p for c in comparisons])
    return [Finding(d, task, c, p, direction_verdict(d, sig.verdict(c.delta, p)))
            for d, c, p in zip(tested, comparisons, adjusted)]


def design_runs(rows: list[dict], doc_stats: dict[tuple, Any]) -> dict[str, list]:
    """design -> its runs' per-document statistics, by seed, on the first documents every run has (a staged race
    evaluates the designs it eliminated on fewer: lm-eval's limit takes the first documents, so they are shared);
    {} unless every row has them."""
    runs: dict[str, list] = {}
    for r in sorted(rows, key=lambda r: (r["design"], r["seed"])):
        stats = doc_stats.get(tuned_key(r["design"], r["seed"], r["task"]))
        if stats is None:
            return {}
        runs.setdefault(r["design"], []).append(stats)
    shared = min((s.n_docs for group in runs.values() for s in group), default=0)
    return {d: [s if s.n_docs == shared else s.subset(range(shared)) for s in group] for d, group in runs.items()}


def _effects(summary: Summary, task: str, reps: dict) -> list[Effect]:
    """Each design other than paper-base (a one-factor change or a preset) against it, Holm over the task's effects."""
    metric = summary.metric
    base = summary.scores.get((BASE, task, metric))
    if base is None:
        return []
    found = []
    for (design, t, m), score in summary.scores.items():
        if t != task or m != metric or design == BASE or short(design) == design:
            continue
        comparison = (sig.compare(score.value, base.value, reps[design][metric], reps[BASE][metric], metric)
                      if design in reps else None)
        deltas = [score.per_seed[s] - base.per_seed[s] for s in sorted(score.per_seed) if s in base.per_seed]
        found.append((design, comparison, deltas))
    adjusted = sig.holm([c.p for _, c, _ in found if c is not None])
    effects, k = [], 0
    for design, comparison, deltas in found:
        holm_p, verdict = float("nan"), "—"
        if comparison is not None:
            holm_p, k = adjusted[k], k + 1
            verdict = sig.verdict(comparison.delta, holm_p)
        effects.append(Effect(design, task, comparison, holm_p, verdict, deltas))
    return effects


def _recommend(summary: Summary, task: str, runs: dict, reps: dict, test_size: int | None) -> None:
    """The best design by its mean (a collapsed one only when every design is), each other design compared with
    it (paired), and the power line, at the seeds measured (a race or an unfinished study has fewer than planned)."""
    metric = summary.metric
    means = {d: s.value for (d, t, m), s in summary.scores.items() if t == task and m == metric}
    summary.best, summary.versus_best, summary.tied = sig.best_and_ties(means, reps, metric, summary.collapsed)
    if not summary.versus_best:
        return
    ranked = [summary.best, *summary.versus_best]
    ses = [e.comparison.se for e in summary.effects if e.task == task and e.comparison is not None]
    counts = sorted({len(group) for group in runs.values()})
    runner_up = ranked[1]
    lead = summary.versus_best[runner_up]
    n_seeds = min(len(runs[summary.best]), len(runs[runner_up]))
    docs_only = sig.replicates({d: runs[d] for d in (summary.best, runner_up)}, seeds_too=False)
    se_docs = float(np.std(docs_only[summary.best][metric] - docs_only[runner_up][metric], ddof=1))
    seed_var = max(lead.se ** 2 - se_docs ** 2, 0.0) * n_seeds
    summary.power = Power(statistics.median(ses or [c.se for c in summary.versus_best.values()]), (counts[0], counts[-1]),
                          runner_up, lead.delta, n_seeds,
                          sig.documents_needed(lead.delta, se_docs, summary.n_docs, seed_var, n_seeds) if lead.delta else 0.0,
                          seeds_needed(lead, se_docs, seed_var), test_size)


def seeds_needed(lead: sig.Comparison, se_docs: float, seed_var: float) -> int | None:
    """Seeds that resolve the lead with 80% power at the measured documents; None: no number would."""
    room = (abs(lead.delta) / sig.detectable(1.0)) ** 2 - se_docs ** 2
    if lead.delta == 0 or room <= 0:
        return None
    return max(1, math.ceil(seed_var / room))


Summaries = dict[str, Summary]  # rule -> the study under it
