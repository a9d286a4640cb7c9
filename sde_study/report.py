"""`sde study report DIR`: REPORT.md and plots/*.png from results.jsonl and docstats.jsonl.

Three steps, each a function of its own: `summarise` aggregates the rows once (each design's score
with its 95% interval, each one-factor effect as a paired test against paper-base with Holm's
correction, each of the paper's directions the study can test, the recommended design with the designs tied with it, the power line), the `*_lines`
functions format that summary, and the `plot_*` functions draw it. Intervals resample test
documents and, with several seeds, seeds too (`sde_tasks.significance`); the PE section ranks the
designs by each signal of the untuned model and correlates that ranking with the tuned one.
"""
from __future__ import annotations

import math
import statistics
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sde_datagen.design import PAPER_BASE
from sde_datagen.design import short_name as short
from sde_files import write_atomic
from sde_study.directions import Direction, direction_verdict, testable
from sde_study.plan import Plan
from sde_study.folder import StudyFolder, tuned_key
from sde_study.results import headline, with_degeneracy
from sde_tasks import significance as sig
from sde_tasks.scoring import PAPER, RULES

REPORT_NAME = "REPORT.md"
PLOTS_DIR = "plots"
BASE = PAPER_BASE.id
ERRORS = "format_error_rate"
# signal -> (higher is better, axis label)
SIGNALS = {
    "zero-shot": (True, "zero-shot score"),
    "in-context": (True, "in-context score"),
    "prompt perplexity": (False, "prompt NLL (lower ranks higher)"),
    "output perplexity": (False, "output NLL (lower ranks higher)"),
}


# ------------------------------------------------------------------------------------------------ aggregate

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
    """One of the paper's directions tested in this study: its paired comparison, Holm-adjusted over the findings."""

    direction: Direction
    comparison: sig.Comparison
    holm_p: float
    verdict: str


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
    collapsed: set[str] = field(default_factory=set)  # designs with a collapsed cell on the headline task
    power: list[str] = field(default_factory=list)
    n_docs: int | None = None
    findings: list[Finding] = field(default_factory=list)

    @property
    def available(self) -> bool:
        """Whether the study's files hold what this rule needs (strict: per-document statistics)."""
        return bool(self.scores)

    def tied(self) -> list[str]:
        """The designs the data do not tell apart from the best (a collapsed design never counts as tied)."""
        return [d for d, c in self.versus_best.items() if c.verdict != sig.BETTER and d not in self.collapsed]


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
            summary.findings = _findings(summary, task, reps)
    return summary


def _findings(summary: Summary, task: str, reps: dict) -> list[Finding]:
    """Each of the paper's directions whose two designs the study has, paired, Holm over the directions tested."""
    metric = summary.metric
    means = {d: s.value for (d, t, m), s in summary.scores.items() if t == task and m == metric}
    tested = [d for d in testable(set(reps)) if d.first in means and d.second in means]
    comparisons = [sig.compare(means[d.first], means[d.second], reps[d.first][metric], reps[d.second][metric], metric)
                   for d in tested]
    adjusted = sig.holm([c.p for c in comparisons])
    return [Finding(d, c, p, direction_verdict(d, sig.verdict(c.delta, p))) for d, c, p in zip(tested, comparisons, adjusted)]


def design_runs(rows: list[dict], doc_stats: dict[tuple, Any]) -> dict[str, list]:
    """design -> its runs' per-document statistics, by seed; {} unless every row has them on the same documents."""
    runs: dict[str, list] = {}
    for r in sorted(rows, key=lambda r: (r["design"], r["seed"])):
        stats = doc_stats.get(tuned_key(r["design"], r["seed"], r["task"]))
        if stats is None:
            return {}
        runs.setdefault(r["design"], []).append(stats)
    sizes = {s.n_docs for group in runs.values() for s in group}
    return runs if len(sizes) == 1 else {}


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
    ranked = sorted(means, key=lambda d: (d in summary.collapsed, -means[d]))
    summary.best = ranked[0]
    if not reps or len(ranked) < 2:
        return
    for other in ranked[1:]:
        summary.versus_best[other] = sig.compare(means[summary.best], means[other], reps[summary.best][metric],
                                                 reps[other][metric], metric)
    ses = [e.comparison.se for e in summary.effects if e.task == task and e.comparison is not None]
    se = statistics.median(ses or [c.se for c in summary.versus_best.values()])
    counts = sorted({len(group) for group in runs.values()})
    seeds = f"{counts[0]} seed(s)" if len(counts) == 1 else f"{counts[0]} to {counts[-1]} seeds per design"
    summary.power.append(
        f"Power: with {summary.n_docs} test documents and {seeds}, this study detects a true difference of "
        f"{sig.detectable(se):.4f} {metric} (80% power, α 0.05, from the median standard error of its paired "
        "differences)." if se > 0 else "Power: not measurable: no paired difference varies across resamples.")
    runner_up = ranked[1]
    lead = summary.versus_best[runner_up]
    if lead.delta == 0:
        summary.power.append(f"`{short(summary.best)}` and `{short(runner_up)}` score the same: no lead to resolve.")
        return
    n_seeds = min(len(runs[summary.best]), len(runs[runner_up]))
    docs_only = sig.replicates({d: runs[d] for d in (summary.best, runner_up)}, seeds_too=False)
    se_docs = float(np.std(docs_only[summary.best][metric] - docs_only[runner_up][metric], ddof=1))
    seed_var = max(lead.se ** 2 - se_docs ** 2, 0.0) * n_seeds
    needed = sig.documents_needed(lead.delta, se_docs, summary.n_docs, seed_var, n_seeds)
    size = f" (the test set has {test_size})" if test_size else ""
    words = (f"no number of test documents would, at {n_seeds} seed(s): the seed noise alone is larger"
             if math.isinf(needed) else f"about {math.ceil(needed):,} test documents at {n_seeds} seed(s){size}")
    seeds_words = ("one seed cannot measure the seed noise: add seeds (`--seeds 0,1,2 --extend`)" if n_seeds < 2 else
                   f"{_seeds_needed(lead, se_docs, seed_var)} at {summary.n_docs} documents")
    summary.power.append(f"To resolve the observed lead of `{short(summary.best)}` over `{short(runner_up)}` "
                         f"({lead.delta:+.4f}) with 80% power: {words}; seeds: {seeds_words}.")


def _seeds_needed(lead: sig.Comparison, se_docs: float, seed_var: float) -> str:
    room = (abs(lead.delta) / sig.detectable(1.0)) ** 2 - se_docs ** 2
    if lead.delta == 0 or room <= 0:
        return "no number of seeds would (the document noise alone is larger)"
    return f"about {max(1, math.ceil(seed_var / room))} seed(s)"


# --------------------------------------------------------------------------------------------------- format

def fmt_ci(score: Score | None) -> str:
    if score is None:
        return "—"
    if score.ci is None:
        return f"{score.value:.4f}"
    return f"{score.value:.4f} [{score.ci[0]:.4f}, {score.ci[1]:.4f}]"


Summaries = dict[str, Summary]  # rule -> the study under it


def header_lines(plan: Plan, summary: Summary) -> list[str]:
    limit = f"first {plan.eval_limit} test documents" if plan.eval_limit else "full test sets"
    return [f"# Design study: {plan.task} on `{plan.model}`", "",
            f"{len(plan.designs)} designs x seeds {plan.seeds}; {plan.train_size} training samples; evaluation on the "
            f"{limit}; chat template: {'yes' if plan.chat_template else 'no'}; training settings: "
            f"{plan.train or 'defaults (LoRA r 8, 1 epoch, batch 4, lr 1e-4)'}. Headline metric: `{summary.metric}`, "
            "the mean over seeds with its 95% bootstrap interval [low, high] (test documents resampled, paired "
            "across designs; the seed noise from the between-seed variance pooled over the designs with several "
            f"seeds; {sig.RESAMPLES:,} resamples, seed {sig.SEED}).", "",
            "Every figure is given under both scoring rules: **paper** scores an answer with a format error by what "
            "soft parsing recovers from it (the authors' rule), **strict** scores it as an empty prediction (its gold "
            "items are missed, it predicts nothing), as a parser that rejects a malformed answer would. A finding "
            "that holds under one rule only *depends on the scoring rule*.", ""]


def design_lines(plan: Plan, summaries: Summaries, rows: list[dict]) -> list[str]:
    paper, strict = summaries["paper"], summaries["strict"]
    tasks, metric = paper.tasks, paper.metric
    head = "| design | " + " | ".join(f"{t} {metric} (paper) | {t} {metric} (strict) | {t} format errors | {t} runaway"
                                       for t in tasks) + " | final loss | seeds |"
    lines = ["## Designs", "", head, "|---" * (4 * len(tasks) + 3) + "|"]
    for design in plan.designs:
        cells = []
        for t in tasks:
            cells += [fmt_ci(paper.scores.get((design, t, metric))), fmt_ci(strict.scores.get((design, t, metric))),
                      fmt_ci(paper.scores.get((design, t, ERRORS))), runaway_cell(rows, design, t)]
        losses = paper.losses.get(design, [])
        loss = "—" if not losses else f"{statistics.fmean(losses):.4f}" + (
            f" ± {statistics.stdev(losses):.4f}" if len(losses) > 1 else "")
        name = f"`{design}`" + (f" ({short(design)})" if short(design) != design else "")
        name += " **collapsed**" if design in paper.collapsed else ""
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {loss} | {len(losses)} |")
    if not strict.available:
        lines += ["", "The strict rule needs per-document statistics (`docstats.jsonl`), which this study does not have."]
    lines += ["", "Runaway: the share of answers that loop (one item repeated, or a loop cut by the token budget), the "
              "mean over seeds; — where the study predates it (its logged samples rescore it)."]
    lines += seed_note(paper) + collapsed_lines(rows)
    return lines + ["", f"![designs]({PLOTS_DIR}/designs.png)", ""]


def runaway_cell(rows: list[dict], design: str, task: str) -> str:
    found = [r["runaway_rate"] for r in rows if r["kind"] == "tuned" and r["design"] == design and r["task"] == task
             and "runaway_rate" in r]
    return f"{statistics.fmean(found):.4f}" if found else "—"


def seed_note(summary: Summary) -> list[str]:
    """Which designs have fewer seeds than the others: their seed noise is borrowed, not measured."""
    counts = {d: len(v) for d, v in summary.losses.items()}
    most = max(counts.values(), default=0)
    fewer = [f"`{short(d)}` ({n})" for d, n in counts.items() if n < most]
    if not fewer:
        return []
    return ["", f"Fewer seeds than the others ({most}): {', '.join(fewer)}. Their intervals and comparisons carry the "
            "pooled between-seed variance of the designs with several seeds, not a measured one of their own."]


def collapsed_lines(rows: list[dict]) -> list[str]:
    """Each cell that gave (nearly) one answer to every document while the gold answers vary."""
    cells = [r for r in rows if r["kind"] == "tuned" and r.get("collapsed")]
    if not cells:
        return []
    named = ", ".join(f"`{short(r['design'])}` seed {r['seed']} on {r['task']} ({r['top_answer_share']:.0%} one answer"
                      + (f"; {r['top_answer_train_share']:.0%} of the training answers are that answer, "
                         f"{r['steps']} optimizer steps" if "top_answer_train_share" in r else "") + ")"
                      for r in cells)
    cause = any("top_answer_train_share" in r for r in cells)
    return ["", f"**Collapsed cells** (one answer covers ≥ 90% of the documents while the gold answers vary): {named}. "
            "A design with a collapsed cell is never called tied with the best."
            + (" A model that gives the most frequent training answer to every document has learned only that "
               "answer: train on more records, for more steps, or at a higher learning rate." if cause else "")]


def effect_lines(summaries: Summaries, has_base: bool) -> list[str]:
    if not has_base:
        return ["## One-factor effects", "", f"Not computed: `paper-base` ({BASE}) is not among the designs.", ""]
    paper, strict = summaries["paper"], summaries["strict"]
    metric = paper.metric
    lines = ["## One-factor effects (against paper-base)", "",
             "Paired on the same test documents; Holm p: adjusted over the effects of each task, under each rule; "
             "verdict at α 0.05 on the Holm p. Seeds agreeing (paper rule): seeds whose own Δ has the sign of the mean.",
             "", f"| change | task | Δ{metric} paper [95% CI] | Holm p | verdict | Δ{metric} strict [95% CI] | Holm p | "
             "verdict | both rules | seeds agreeing |", "|---|---|---|---|---|---|---|---|---|---|"]
    theirs = {(e.design, e.task): e for e in strict.effects}
    for e in paper.effects:
        mean = statistics.fmean(e.seed_deltas) if e.seed_deltas else float("nan")
        agree = sum(1 for d in e.seed_deltas if d != 0 and math.copysign(1, d) == math.copysign(1, mean))
        other = theirs.get((e.design, e.task))
        cells = [effect_cells(e), effect_cells(other), agreement(e.verdict, other.verdict if other else None)]
        lines.append(f"| {short(e.design)} | {e.task} | " + " | ".join(cells) + f" | {agree}/{len(e.seed_deltas)} |")
    if paper.effects:
        lines += ["", f"![one-factor effects]({PLOTS_DIR}/effects.png)"]
    return lines + [""]


def effect_cells(effect: Effect | None) -> str:
    """Δ [CI] | Holm p | verdict of one effect under one rule (— where it is unknown)."""
    if effect is None or effect.comparison is None:
        mean = statistics.fmean(effect.seed_deltas) if effect and effect.seed_deltas else None
        return f"{mean:+.4f} | — | —" if mean is not None else "— | — | —"
    return f"{comparison_cells(effect.comparison)} | {effect.holm_p:.4f} | {effect.verdict}"


def comparison_cells(c: sig.Comparison) -> str:
    """Δ [95% CI]: one paired comparison in a table cell (effects and the paper's directions alike)."""
    return f"{c.delta:+.4f} [{c.ci[0]:+.4f}, {c.ci[1]:+.4f}]"


def agreement(paper: str, strict: str | None) -> str:
    """What a verdict is worth across the rules: the same under both, or dependent on the rule."""
    if strict is None:
        return "— (paper only)"
    return f"{paper} under both" if paper == strict else "**depends on the scoring rule**"


def finding_lines(summaries: Summaries, transfer: bool) -> list[str]:
    paper, strict = summaries["paper"], summaries["strict"]
    if not paper.findings:
        return []
    task, metric = paper.tasks[0], paper.metric
    lines = ["## The paper's directions", "",
             f"Each directional finding of the SDE paper whose two designs are in this study, on {task}: Δ{metric} = "
             "the first design minus the second, paired on the same test documents (and seeds); Holm p: adjusted over "
             "the findings tested here, under each rule; at α 0.05 on the Holm p a finding is *replicated* (the "
             "paper's direction), *reversed* (the other way) or *not distinguishable*."
             + (" The paper's directions come from MASA: on this task they are a transfer test." if transfer else ""),
             "", f"| the paper's finding | first design | second design | seeds | Δ{metric} paper [95% CI] | Holm p | "
             "verdict | Δ{metric} strict [95% CI] | Holm p | verdict | both rules |".replace("{metric}", metric),
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    theirs = {f.direction: f for f in strict.findings}
    for f in paper.findings:
        other = theirs.get(f.direction)
        seeds = f"{len(paper.losses.get(f.direction.first, []))} vs {len(paper.losses.get(f.direction.second, []))}"
        lines.append(f"| {f.direction.claim} | {short(f.direction.first)} | {short(f.direction.second)} | {seeds} | "
                     f"{finding_cells(f)} | {finding_cells(other)} | "
                     f"{agreement(f.verdict, other.verdict if other else None)} |")
    return lines + [""]


def finding_cells(finding: Finding | None) -> str:
    if finding is None:
        return "— | — | —"
    return f"{comparison_cells(finding.comparison)} | {finding.holm_p:.4f} | {finding.verdict}"


def recommendation_lines(summaries: Summaries) -> list[str]:
    paper, strict = summaries["paper"], summaries["strict"]
    task, metric = paper.tasks[0], paper.metric
    lines = ["## Recommended design", ""]
    for summary in (paper, strict):
        if not summary.available:
            continue
        best = summary.best
        if best in summary.collapsed:
            lines.append(f"- {summary.rule} rule: none: every design is collapsed; the highest is `{short(best)}`, "
                         f"{metric} {fmt_ci(summary.scores[(best, task, metric)])} on {task}.")
            continue
        lines.append(f"- {summary.rule} rule: **`{best}`** ({short(best)}), {metric} "
                     f"{fmt_ci(summary.scores[(best, task, metric)])} on {task}. " + tie_words(summary))
    if not paper.versus_best and sum(1 for (_, t, m) in paper.scores if t == task and m == metric) > 1:
        lines.append("No interval: the study has no per-document statistics (`docstats.jsonl`); rerun "
                     "`sde study report` on a study folder made by this version.")
    if strict.available:
        lines += ["", verdict_words(paper, strict)]
    power = [f"- {s.rule} rule: {line}" for s in (paper, strict) if s.available for line in s.power]
    return lines + ["", *(power if strict.available else paper.power), ""]


def tie_words(summary: Summary) -> str:
    if not summary.versus_best:
        return ""
    tied = summary.tied()
    if not tied:
        aside = " that is not collapsed" if summary.collapsed else ""
        return f"It is better than every other design of the study{aside} (paired, α 0.05)."
    return ("Statistically tied with it (paired, α 0.05; the data do not tell them apart): "
            + ", ".join(f"`{short(d)}` (Δ {summary.versus_best[d].delta:+.4f}, p {summary.versus_best[d].p:.3f})"
                        for d in tied) + ".")


def verdict_words(paper: Summary, strict: Summary) -> str:
    """Robust only where both rules recommend the same design; otherwise both numbers, side by side."""
    task, metric = paper.tasks[0], paper.metric
    if paper.best in paper.collapsed:
        return "**No recommendation**: every design is collapsed."
    if paper.best == strict.best:
        return f"**Robust**: both scoring rules recommend `{short(paper.best)}`."
    score = {r.rule: (r.scores[(r.best, task, metric)].value, r.scores.get((o.best, task, metric)))
             for r, o in ((paper, strict), (strict, paper))}
    return (f"**Depends on the scoring rule**: the paper rule recommends `{short(paper.best)}` ({metric} "
            f"{score['paper'][0]:.4f}; strict {fmt_ci(strict.scores.get((paper.best, task, metric)))}), the strict rule "
            f"`{short(strict.best)}` ({metric} {score['strict'][0]:.4f}; paper "
            f"{fmt_ci(paper.scores.get((strict.best, task, metric)))}).")


def write_report(root: Path, plan: Plan, rows: list[dict]) -> Path:

    if not any(r["kind"] == "tuned" for r in rows):
        from sde_datagen.errors import UserError

        raise UserError(f"{root}: no finished cell yet (see `sde study status {root}`)")
    doc_stats, size = StudyFolder(root).read_doc_stats(), test_set_size(plan)
    rows = with_degeneracy(root, plan, rows)
    summaries = {rule: summarise(rows, plan, doc_stats, size, rule) for rule in RULES}
    paper = summaries["paper"]
    plots = root / PLOTS_DIR
    plots.mkdir(exist_ok=True)
    lines = header_lines(plan, paper) + design_lines(plan, summaries, rows)
    lines += effect_lines(summaries, BASE in plan.designs) + finding_lines(summaries, plan.task in ("ed", "ner"))
    lines += recommendation_lines(summaries)
    plot_designs(summaries, plots / "designs.png")
    if paper.effects:
        plot_effects(summaries, plots / "effects.png")
    if plan.race:
        from sde_study.race import race_lines

        lines += race_lines(root, plan, rows)
    if plan.analysis:
        lines += signals_section(rows, plan, paper, plots)
    lines += command_lines(rows)
    path = root / REPORT_NAME
    write_atomic(path, "\n".join(lines) + "\n")
    return path


def command_lines(rows: list[dict]) -> list[str]:
    """Each tuned cell's `lm_eval` command line (rows of studies before it was recorded have none)."""
    cells = {(r["design"], r["seed"]): r["lm_eval_command"] for r in rows if r["kind"] == "tuned" and "lm_eval_command" in r}
    if not cells:
        return []
    lines = ["## Each cell with lm_eval", "",
             "The same evaluation by the `lm_eval` command line, run in the study folder (the cell's adapter and "
             "outputs are named relative to it; the task pack is found by sde-kit's install):", ""]
    for (design, seed), command in cells.items():
        lines += [f"- `{short(design)}`, seed {seed}:", "", "  ```", f"  {command}", "  ```"]
    return lines + [""]


def test_set_size(plan: Plan) -> int | None:
    """How many documents the task's test split holds (None where it cannot be read)."""
    path = plan.data_folder / f"{plan.resolved_task().spec().splits['test']}.jsonl"
    try:
        return sum(1 for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
    except OSError:
        return None


# ----------------------------------------------------------------------------------------------------- plot

def plot_designs(summaries: Summaries, path: Path) -> None:
    """Each design's headline score with its interval, one bar per task and rule."""
    metric = summaries["paper"].metric
    bars = {f"{t} ({rule})": {short(d): (s.value, s.ci) for (d, task, m), s in summary.scores.items()
                              if task == t and m == metric}
            for rule, summary in summaries.items() for t in summary.tasks if summary.available}
    grouped_bars(bars, f"{metric} (tuned, 95% CI)", path)


def plot_effects(summaries: Summaries, path: Path) -> None:
    bars: dict[str, dict[str, tuple]] = {}
    for rule, summary in summaries.items():
        for e in summary.effects:
            value = e.comparison.delta if e.comparison else statistics.fmean(e.seed_deltas)
            bars.setdefault(f"{e.task} ({rule})", {})[short(e.design)] = (value, e.comparison.ci if e.comparison else None)
    grouped_bars(bars, f"Δ {summaries['paper'].metric} vs paper-base (95% CI)", path)


def grouped_bars(groups: dict[str, dict[str, tuple[float, tuple[float, float] | None]]], ylabel: str,
                 path: Path) -> None:
    """One group per design or change, one bar per task (ID vs OOD for MASA), with its interval as error bar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(n for per_task in groups.values() for n in per_task))
    width = 0.8 / len(groups)
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(names) + 2), 4))
    for k, (task, per_task) in enumerate(groups.items()):
        xs = [i + k * width for i in range(len(names))]
        values = [per_task.get(n, (0.0, None))[0] for n in names]
        cis = [per_task.get(n, (0.0, None))[1] for n in names]
        errors = [[v - c[0] if c else 0 for v, c in zip(values, cis)], [c[1] - v if c else 0 for v, c in zip(values, cis)]]
        ax.bar(xs, values, width, yerr=errors, capsize=3, label=task)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks([i + width * (len(groups) - 1) / 2 for i in range(len(names))], names, rotation=30, ha="right")
    ax.set_ylabel(ylabel)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ------------------------------------------------------------------------------------------------ PE signals

def signal_values(rows: list[dict], task: str, metric: str, designs: set[str]) -> dict[str, dict[str, float]]:
    """signal -> design -> value of the untuned model, for the given designs."""
    values: dict[str, dict[str, float]] = {name: {} for name in SIGNALS}
    for r in rows:
        if r["kind"] != "signals" or r["design"] not in designs:
            continue
        if r["signal"] == "perplexity":
            values["prompt perplexity"][r["design"]] = r["prompt_nll"]
            values["output perplexity"][r["design"]] = r["output_nll"]
        elif r["task"] == task:
            values[r["signal"]][r["design"]] = r[metric]
    return values


def rank_correlations(values: dict[str, dict[str, float]], tuned: dict[str, float],
                      designs: list[str]) -> dict[str, tuple[float, float, float, float, list[str]]]:
    """signal -> (Kendall τ, p, Spearman ρ, p, the designs it ranks first), against the tuned scores."""
    from scipy.stats import kendalltau, spearmanr

    found = {}
    for name, (higher, _) in SIGNALS.items():
        signed = [values[name][d] if higher else -values[name][d] for d in designs]
        target = [tuned[d] for d in designs]
        with warnings.catch_warnings():  # a constant signal: reported as undefined
            warnings.simplefilter("ignore")
            tau, p_tau = kendalltau(signed, target)
            rho, p_rho = spearmanr(signed, target)
        found[name] = (tau, p_tau, rho, p_rho, [d for d, v in zip(designs, signed) if v == max(signed)])
    return found


def signals_section(rows: list[dict], plan: Plan, summary: Summary, plots: Path) -> list[str]:
    """Each PE signal of the untuned model next to the tuned score, with rank correlations and a verdict."""
    task, metric = summary.tasks[0], summary.metric
    tuned = {d: s.value for (d, t, m), s in summary.scores.items() if t == task and m == metric}
    values = signal_values(rows, task, metric, set(tuned))
    designs = [d for d in plan.designs if d in tuned and all(d in v for v in values.values())]
    lines = ["## Prompt engineering signals vs the tuned ranking", "",
             f"Signals of the untuned base model per design ({task}, "
             f"{f'first {plan.signal_docs} test documents' if plan.signal_docs else 'full test set'}; "
             f"in-context: {plan.icl_shots} examples from the dev "
             f"split; perplexities: mean per-token NLL of {plan.ppl_samples} training rows), next to the tuned {metric}.",
             "", "| design | tuned " + metric + " | zero-shot | in-context | prompt NLL | output NLL |",
             "|---|---|---|---|---|---|"]
    lines += [f"| `{d}` | {tuned[d]:.4f} | " + " | ".join(f"{values[n][d]:.4f}" for n in SIGNALS) + " |"
              for d in designs]
    if not designs:
        return lines[:-2] + ["No tuned design has all its signals yet (`sde study status` lists them; rerunning "
                             "`sde study run` computes them).", ""]
    if len(designs) < len(tuned):
        lines += ["", f"Signals are complete for {len(designs)} of the {len(tuned)} tuned designs (the others: "
                  f"`sde study status`); the correlations and the tuned winner below are among those {len(designs)} "
                  "only."]
    if len(designs) < 2:
        return lines + ["", "Rank correlations need at least two designs with signals and tuned scores.", ""]
    best = max(tuned[d] for d in designs)
    winners = [d for d in designs if tuned[d] == best]
    lines += ["", "| signal | Kendall τ (p) | Spearman ρ (p) | ranks first | tuned winner? |", "|---|---|---|---|---|"]
    verdicts = []
    for name, (tau, p_tau, rho, p_rho, picked) in rank_correlations(values, tuned, designs).items():
        ok = len(winners) == 1 and picked == winners
        lines.append(f"| {name} | {_corr(tau, p_tau)} | {_corr(rho, p_rho)} | {', '.join(short(p) for p in picked)} | "
                     f"{'yes' if ok else 'no'} |")
        verdicts.append(_signal_verdict(name, picked, winners, ok, metric, best))
        scatter(name, SIGNALS[name][1], [values[name][d] for d in designs], [tuned[d] for d in designs], designs,
                metric, plots)
    lines += ["", *verdicts, ""]
    lines += [f"![{n}]({PLOTS_DIR}/signal-{n.replace(' ', '-')}.png)" for n in SIGNALS]
    return lines + [""]


def _signal_verdict(name: str, picked: list[str], winners: list[str], ok: bool, metric: str, best: float) -> str:
    if len(winners) > 1:
        return (f"- **{name}**: there is no single tuned winner to pick ({len(winners)} designs tie at "
                f"{metric} {best:.4f}).")
    if len(picked) > 1:
        return (f"- **{name}** ties {len(picked)} designs at the top, so it would not have picked the "
                f"tuned winner `{short(winners[0])}` on its own.")
    return (f"- **{name}** would {'' if ok else 'not '}have picked the tuned winner: it ranks "
            f"`{short(picked[0])}` first, the tuned winner is `{short(winners[0])}`.")


def _corr(value: float, p: float) -> str:
    return "undefined (a constant ranking)" if math.isnan(value) else f"{value:+.3f} ({p:.3f})"


def scatter(name: str, words: str, xs: list[float], ys: list[float], designs: list[str], metric: str,
            plots: Path) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4))
    ax.scatter(xs, ys)
    for x, y, d in zip(xs, ys, designs):
        ax.annotate(short(d), (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel(words)
    ax.set_ylabel(f"tuned {metric}")
    ax.set_title(name)
    fig.tight_layout()
    fig.savefig(plots / f"signal-{name.replace(' ', '-')}.png", dpi=120)
    plt.close(fig)
