"""Confidence intervals, paired tests, Holm's correction and power, by bootstrap over documents (and seeds).

Two noises separate designs' scores: which test documents were scored, and which training run
(seed) produced the adapter. Every design of a study is scored on the same documents, so two runs
are compared *paired*: each resample draws one set of documents (the same weights for both runs),
which removes most of the document noise from their difference (Koehn 2004; Miller 2024, "Adding
Error Bars to Evals"). The seed noise enters as a normal draw with the between-seed variance pooled over every
design that has several seeds (their scores on the same documents vary by seed alone), divided by the design's
number of seeds. Pooled, because a design's own 2 or 3 seeds say little about its seed variance (resampling 3
seeds underestimates it by a third) and one seed says nothing: a design with fewer seeds than the others
borrows it. A simulation in the tests checks that a 1-seed or 2-seed design compared with a 3-seed one is
called different in about 5% of studies where the designs are equal. The resampling seed is fixed, so a report
or a board built twice prints the same intervals.

Intervals are percentile intervals; a paired p-value is the two-sided bootstrap p-value of the
difference, 2 x min(P*(Δ ≤ 0), P*(Δ ≥ 0)) (never below 2 / (B + 1)), which rejects at α exactly when the (1 - α) interval
leaves out 0. Verdicts are "better", "worse" or "not distinguishable" at α.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence, Set
from typing import Any
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from sde_datagen.families import FAMILIES
from sde_tasks.docstats import DocStats

RESAMPLES = 10_000
SEED = 20_241_105  # fixed: reports and the board are reproducible
ALPHA = 0.05
POWER = 0.80
CHUNK = 2_000  # resamples per matrix product: bounds memory at CHUNK x documents weights
BETTER, WORSE, TIED = "better", "worse", "not distinguishable"
RANGES = {"kappa": (-1.0, 1.0)}  # the values a metric can take; every other one lies in [0, 1]


def doc_weights(n_docs: int, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """(resamples, n_docs) draw counts: each row a bootstrap sample of n_docs documents with replacement."""
    drawn = rng.integers(0, n_docs, size=(resamples, n_docs))
    drawn += np.arange(resamples)[:, None] * n_docs
    return np.bincount(drawn.ravel(), minlength=resamples * n_docs).reshape(resamples, n_docs).astype(float)


def replicates(runs: Mapping[str, Sequence[DocStats]], resamples: int = RESAMPLES, seed: int = SEED,
               seeds_too: bool = True, alpha: float = ALPHA) -> dict[str, dict[str, np.ndarray]]:
    """Bootstrap replicates of every metric of every group of runs: group -> metric -> (resamples,).

    A group is one design's runs (one per seed) on the same documents as every other group. Each
    resample draws documents once for all groups (paired) and averages each group's runs; with `seeds_too`,
    when some group has several runs, each group's replicates also get the seed noise of its number of runs,
    from the pooled between-seed variance (see the module's docstring), widened for the level `alpha` at which
    the replicates will be read.
    """
    n_docs = _same_docs(runs)
    rng = np.random.default_rng(seed)
    pooled = pooled_seed_variance(runs, alpha) if seeds_too else {}
    borrowed = np.random.default_rng([seed, 1])
    per_run: dict[str, list[dict[str, list[np.ndarray]]]] = {g: [{} for _ in rs] for g, rs in runs.items()}
    for start in range(0, resamples, CHUNK):
        weights = doc_weights(n_docs, min(CHUNK, resamples - start), rng)
        for group, group_runs in runs.items():
            for found, run in zip(per_run[group], group_runs):
                for metric, values in run.resampled(weights).items():
                    found.setdefault(metric, []).append(values)
    out: dict[str, dict[str, np.ndarray]] = {}
    for group, found in per_run.items():
        stacked = {metric: np.stack([np.concatenate(r[metric]) for r in found]) for metric in found[0]}  # (runs, B)
        out[group] = {metric: v.mean(axis=0) for metric, v in stacked.items()}
        for metric, variance in pooled.items():
            noisy = out[group][metric] + borrowed.normal(0.0, np.sqrt(variance / len(found)), resamples)
            out[group][metric] = np.clip(noisy, *RANGES.get(metric, (0.0, 1.0)))  # a rate stays a rate
    return out


def seed_variance(runs: Mapping[str, Sequence[DocStats]]) -> tuple[dict[str, float], int]:
    """Each metric's between-seed variance on the same documents, pooled over the groups with several runs, and its
    degrees of freedom: sum of squared deviations from each group's mean over sum of (runs - 1) ({} and 0 when no
    group has two)."""
    values = [[r.corpus() for r in group_runs] for group_runs in runs.values() if len(group_runs) > 1]
    if not values:
        return {}, 0
    dof = sum(len(v) - 1 for v in values)
    return {metric: float(sum(np.sum((np.array([r[metric] for r in v]) - np.mean([r[metric] for r in v])) ** 2)
                              for v in values) / dof) for metric in values[0][0]}, dof


def pooled_seed_variance(runs: Mapping[str, Sequence[DocStats]], alpha: float = ALPHA) -> dict[str, float]:
    """seed_variance, widened: an estimate from few seeds is itself noisy, so it is scaled by (t_{dof} / z)² at
    1 - alpha/2, with which normal draws give a t interval's width (without it, 3 seeds x 3 designs call equal
    designs different in about 11% of studies, not 5%)."""
    from scipy.stats import t

    variance, dof = seed_variance(runs)
    if not dof:
        return {}
    widen = (t.ppf(1 - alpha / 2, dof) / NormalDist().inv_cdf(1 - alpha / 2)) ** 2
    return {metric: widen * v for metric, v in variance.items()}


def point(runs: Sequence[DocStats]) -> dict[str, float]:
    """Each metric's mean over runs (seeds) of its corpus value."""
    values = [r.corpus() for r in runs]
    return {metric: float(np.mean([v[metric] for v in values])) for metric in values[0]}


def interval(values: np.ndarray, alpha: float = ALPHA) -> tuple[float, float]:
    """The percentile (1 - alpha) interval of bootstrap replicates."""
    lo, hi = np.quantile(values, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def p_value(deltas: np.ndarray) -> float:
    """Two-sided bootstrap p-value of a paired difference: how often the replicates reach the other side of 0
    (counted as (k + 1) / (B + 1), so that it is never 0 with finitely many resamples)."""
    b = len(deltas)
    below, above = (np.sum(deltas <= 0) + 1) / (b + 1), (np.sum(deltas >= 0) + 1) / (b + 1)
    return float(min(1.0, 2 * min(below, above)))


def verdict(delta: float, p: float, alpha: float = ALPHA) -> str:
    if p < alpha and delta != 0:
        return BETTER if delta > 0 else WORSE
    return TIED


@dataclass(frozen=True)
class Comparison:
    """One metric of run(s) A against run(s) B on the same documents. `delta` and verdicts are oriented
    so that "better" means better for the metric (lower for the format-error rate)."""

    metric: str
    value: float
    baseline: float
    delta: float
    ci: tuple[float, float]
    p: float
    verdict: str
    se: float  # bootstrap standard error of the difference, for power

    def as_json(self) -> dict:
        return {"metric": self.metric, "value": self.value, "baseline": self.baseline, "delta": self.delta,
                "ci": list(self.ci), "p": self.p, "verdict": self.verdict}


def higher_is_better(metric: str) -> bool:
    """As the families define it (a metric name means the same in every family that has it)."""
    return next(family.higher_is_better(metric) for family in FAMILIES.values() if metric in family.metrics)


def compare(value: float, baseline: float, a: np.ndarray, b: np.ndarray, metric: str,
            alpha: float = ALPHA) -> Comparison:
    """A's point value and replicates against B's, paired (the replicates share their document draws)."""
    deltas = a - b
    p = p_value(deltas)
    delta = value - baseline
    oriented = delta if higher_is_better(metric) else -delta
    return Comparison(metric, value, baseline, delta, interval(deltas, alpha), p, verdict(oriented, p, alpha),
                      float(np.std(deltas, ddof=1)))


def best_and_ties(means: Mapping[Any, float], reps: Mapping[Any, dict[str, np.ndarray]] | None, metric: str,
                  collapsed: Set[Any] = frozenset()) -> tuple[Any, dict[Any, Comparison], list[Any]]:
    """The best of several runs or designs by `metric` (a collapsed one only when every one is), each other compared
    with it (paired: `reps` share their document draws; none without them), and the ones the data cannot tell apart
    from it, collapsed ones never among them. The report, the race's report and the board all call this."""
    higher = higher_is_better(metric)
    ranked = sorted(means, key=lambda k: (k in collapsed, -means[k] if higher else means[k]))
    best = ranked[0]
    if not reps:
        return best, {}, []
    versus = {k: compare(means[best], means[k], reps[best][metric], reps[k][metric], metric) for k in ranked[1:]}
    return best, versus, [k for k, c in versus.items() if c.verdict != BETTER and k not in collapsed]


def compare_runs(a: Sequence[DocStats], b: Sequence[DocStats], resamples: int = RESAMPLES,
                 seed: int = SEED) -> list[Comparison]:
    """Every metric of A against B (each a list of runs over seeds, on the same documents)."""
    reps = replicates({"a": a, "b": b}, resamples, seed)
    value, baseline = point(a), point(b)
    return [compare(value[metric], baseline[metric], reps["a"][metric], reps["b"][metric], metric)
            for metric in value]


def confidence_intervals(runs: Sequence[DocStats], resamples: int = RESAMPLES, seed: int = SEED,
                         alpha: float = ALPHA) -> dict[str, tuple[float, float]]:
    """The (1 - alpha) interval of each metric of one run, or of the mean over several seeds."""
    reps = replicates({"run": runs}, resamples, seed)["run"]
    return {metric: interval(values, alpha) for metric, values in reps.items()}


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the input order (reject where adjusted p < alpha)."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    adjusted = [0.0] * len(p_values)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def detectable(se: float, alpha: float = ALPHA, power: float = POWER) -> float:
    """The smallest true difference a two-sided test at alpha detects with `power`, given the difference's SE."""
    z = NormalDist().inv_cdf
    return (z(1 - alpha / 2) + z(power)) * se


def documents_needed(lead: float, se: float, n_docs: int, seed_variance: float = 0.0, n_seeds: int = 1,
                     alpha: float = ALPHA, power: float = POWER) -> float:
    """Test documents at which a true difference of `lead` would be detected with `power`, at `n_seeds` seeds.

    Model: Var(Δ) = doc_var / docs + seed_var / seeds, with doc_var from the document bootstrap
    (se² x n_docs); inf when the seed noise alone is too large for any number of documents.
    """
    target = (abs(lead) / detectable(1.0, alpha, power)) ** 2
    room = target - seed_variance / n_seeds
    return float("inf") if lead == 0 or room <= 0 else se * se * n_docs / room


def _same_docs(runs: Mapping[str, Sequence[DocStats]]) -> int:
    sizes = {r.n_docs for rs in runs.values() for r in rs}
    if not sizes:
        raise ValueError("no runs")
    if len(sizes) > 1:
        raise ValueError(f"runs are scored on different numbers of documents ({sorted(sizes)}); paired "
                         "comparisons need the same documents")
    return sizes.pop()
