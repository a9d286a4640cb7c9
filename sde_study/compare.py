"""`sde study compare DIR DIR ...`: do the designs rank the same way across studies (tasks, domains)?

Each (study, task) is a judge that ranks the designs every judge has, by the mean of its headline metric over seeds,
under each scoring rule. Kendall's W measures how far the judges agree (1: the same ranking everywhere, 0: none),
with a permutation p-value (each judge's ranks shuffled independently). Each pair of designs gets a direction per
judge from a paired comparison on the judge's documents and seeds (Holm over the judge's pairs), and is marked
agreeing, disagreeing or undecided across judges. Only committed files are read (the plan, the results and
the per-document statistics: sde_study.folder); nothing is written.
"""
from __future__ import annotations

import itertools
import statistics
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sde_datagen.errors import UserError
from sde_tasks import significance as sig
from sde_tasks.docstats import DocStats
from sde_tasks.scoring import PAPER, RULES

PERMUTATIONS = 10_000


@dataclass(frozen=True)
class Judge:
    """One study's task under one rule: its designs' mean headline metric and per-seed per-document statistics."""

    name: str  # "<study folder>/<task>"
    rule: str
    metric: str
    means: dict[str, float]
    runs: dict[str, list[DocStats]]


def average_ranks(values: list[float]) -> np.ndarray:
    """Ranks 1..n, the highest value first, ties sharing their mean rank."""
    order = sorted(range(len(values)), key=lambda i: -values[i])
    ranks = np.empty(len(values))
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def kendall_w(ranks: np.ndarray) -> float:
    """Kendall's coefficient of concordance of m judges (rows) ranking n items (columns), corrected for ties."""
    m, n = ranks.shape
    spread = ranks.sum(axis=0) - m * (n + 1) / 2
    ties = sum(float(((counts := np.unique(row, return_counts=True)[1]) ** 3 - counts).sum()) for row in ranks)
    denominator = m ** 2 * (n ** 3 - n) - m * ties
    return float(12 * (spread ** 2).sum() / denominator) if denominator > 0 else 1.0


def permutation_p(ranks: np.ndarray, permutations: int = PERMUTATIONS, seed: int = sig.SEED) -> float:
    """P(W >= the observed W) when every judge ranks at random (each row shuffled on its own)."""
    observed = kendall_w(ranks)
    rng = np.random.default_rng(seed)
    at_least = sum(kendall_w(rng.permuted(ranks, axis=1)) >= observed - 1e-12
                   for _ in range(permutations))
    return (1 + at_least) / (1 + permutations)


def read_judges(root: Path) -> list[Judge]:
    """Every task of one study folder under each rule (strict only where the folder keeps per-document statistics)."""
    from sde_study.plan import require_plan
    from sde_study.summary import design_runs
    from sde_study.folder import StudyFolder
    from sde_study.results import headline

    plan, folder = require_plan(root), StudyFolder(root)
    rows = [r for r in folder.read_rows() if r["kind"] == "tuned"]
    if not rows:
        raise UserError(f"{folder.results}: no tuned cells yet")
    doc_stats = folder.read_doc_stats()
    judges = []
    for task in plan.lm_eval_tasks:
        mine = [r for r in rows if r.get("task") == task]
        if not mine:
            continue
        metric, runs = headline(mine[0]), design_runs(mine, doc_stats)
        for rule in RULES:
            if not runs and rule != PAPER:
                continue
            ruled = {d: [s.under(rule) for s in group] for d, group in runs.items()}
            means = ({d: statistics.fmean(s.corpus()[metric] for s in group) for d, group in ruled.items()} if ruled
                     else {d: statistics.fmean(r[metric] for r in mine if r["design"] == d) for d in {r["design"] for r in mine}})
            judges.append(Judge(f"{root.name}/{task}", rule, metric, means, ruled))
    return judges


def directions(judge: Judge, designs: list[str]) -> dict[tuple[str, str], str]:
    """(a, b) -> a, b or "undecided": the better design of each pair on this judge's documents, Holm over its pairs."""
    pairs = list(itertools.combinations(designs, 2))
    if not judge.runs:
        return {pair: "undecided" for pair in pairs}
    reps = sig.replicates({d: judge.runs[d] for d in designs})
    comparisons = [sig.compare(judge.means[a], judge.means[b], reps[a][judge.metric], reps[b][judge.metric], judge.metric)
                   for a, b in pairs]
    found = {}
    for (a, b), c, p in zip(pairs, comparisons, sig.holm([c.p for c in comparisons])):
        verdict = sig.verdict(c.delta, p)
        found[(a, b)] = a if verdict == sig.BETTER else b if verdict == sig.WORSE else "undecided"
    return found


def compare_lines(roots: list[Path]) -> list[str]:
    """The comparison in Markdown: W per rule, then every pair's direction per judge and across them."""
    from sde_datagen.design import short_name as short

    judges = [j for root in roots for j in read_judges(root)]
    lines = [f"# Designs across {len(roots)} stud{'y' if len(roots) == 1 else 'ies'}", ""]
    for rule in RULES:
        mine = [j for j in judges if j.rule == rule]
        shared = [d for d in mine[0].means if all(d in j.means for j in mine)] if mine else []
        if len(mine) < 2 or len(shared) < 2:
            lines += [f"## {rule} rule", "", f"Not computed: {len(mine)} task(s) and {len(shared)} design(s) shared by "
                      "all of them; Kendall's W needs 2 of each.", ""]
            continue
        ranks = np.array([average_ranks([j.means[d] for d in shared]) for j in mine])
        w, p = kendall_w(ranks), permutation_p(ranks)
        lines += [f"## {rule} rule", "", f"Kendall's W = {w:.3f} (permutation p {p:.4f}, {PERMUTATIONS:,} permutations) "
                  f"over {len(mine)} task(s) ranking {len(shared)} shared design(s) by their headline metric.", "",
                  "| design | " + " | ".join(f"{j.name} {j.metric} (rank)" for j in mine) + " |",
                  "|---|" + "---|" * len(mine)]
        for i, d in enumerate(shared):
            lines.append(f"| `{short(d)}` | " + " | ".join(f"{j.means[d]:.4f} ({ranks[k, i]:g})" for k, j in enumerate(mine))
                         + " |")
        found = [directions(j, shared) for j in mine]
        lines += ["", "| pair | " + " | ".join(j.name for j in mine) + " | across tasks |", "|---|" + "---|" * (len(mine) + 1)]
        for pair in itertools.combinations(shared, 2):
            said = [f[pair] for f in found]
            decided = [s for s in said if s != "undecided"]
            across = ("disagreeing" if len(set(decided)) > 1 else "undecided" if len(decided) < 2
                      else f"agreeing ({len(decided)} of {len(said)} decided)")
            lines.append(f"| `{short(pair[0])}` vs `{short(pair[1])}` | "
                         + " | ".join(f"`{short(s)}` better" if s != "undecided" else "undecided" for s in said)
                         + f" | {across} |")
        lines.append("")
    return lines
