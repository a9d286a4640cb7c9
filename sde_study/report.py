"""`sde study report DIR`: REPORT.md and plots/*.png from a study's results and per-document statistics.

The numbers come from `sde_study.summary` (computed once per scoring rule), the plots from `sde_study.plots`, the
PE-signal section from `sde_study.pe_signals`; the `*_lines` functions here say them in words.
"""
from __future__ import annotations

import math
import statistics
from pathlib import Path

from sde_datagen.design import short_name as short
from sde_files import write_atomic
from sde_study.folder import DOC_STATS, StudyFolder
from sde_study.pe_signals import signals_section
from sde_study.plan import Plan
from sde_study.plots import PLOTS_DIR, plot_designs, plot_effects
from sde_study.summary import BASE, ERRORS, Effect, Finding, Score, Summaries, Summary, summarise
from sde_study.results import with_degeneracy
from sde_tasks import significance as sig
from sde_tasks.rules import RULES
from sde_tasks.scoring import COLLAPSE_ADVICE

REPORT_NAME = "REPORT.md"


def fmt_ci(score: Score | None) -> str:
    if score is None:
        return "—"
    if score.ci is None:
        return f"{score.value:.4f}"
    return f"{score.value:.4f} [{score.ci[0]:.4f}, {score.ci[1]:.4f}]"


def header_lines(plan: Plan, summary: Summary) -> list[str]:
    from sde_study.race import stages_of

    limit = f"first {plan.eval_limit} test documents" if plan.eval_limit else "full test sets"
    if stages := stages_of(plan):
        limit = f"first {stages.first_docs} test documents, the race's finalists on the {limit} (staged)"
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
        lines += ["", f"The strict rule needs per-document statistics (`{DOC_STATS}`), which this study does not have."]
    lines += ["", "Runaway: the share of answers that loop (one item repeated, or a loop cut by the token budget), the "
              "mean over seeds; — where the study predates it (its logged samples rescore it)."]
    lines += seed_note(paper) + collapsed_lines(rows)
    return lines + ["", f"![designs]({PLOTS_DIR}/designs.png)", ""]


def runaway_cell(rows: list[dict], design: str, task: str) -> str:
    found = [r["runaway_rate"] for r in rows if r["kind"] == "tuned" and r["design"] == design and r["task"] == task
             and "runaway_rate" in r]
    return f"{statistics.fmean(found):.4f}" if found else "—"


def seed_note(summary: Summary) -> list[str]:
    """Which designs have fewer seeds than the others: their seed noise is borrowed, not measured; with one seed
    each there is none to borrow, and every interval and verdict is over documents alone."""
    counts = {d: len(v) for d, v in summary.losses.items()}
    most = max(counts.values(), default=0)
    if most == 1:
        return ["", "**One seed per design**: the seed noise is not measured, so every interval and verdict in this "
                "report is over the test documents alone. They tell these adapters apart, not the designs: another "
                "seed of the same design can differ as much (add seeds: `--seeds 0,1,2 --extend`)."]
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
            "A design with a collapsed cell is never called tied with the best." + (f" {COLLAPSE_ADVICE}" if cause else "")]


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
    """The paper's directions, one table per task (MASA: in and out of domain), each under both rules."""
    paper, strict = summaries["paper"], summaries["strict"]
    if not paper.findings:
        return []
    tasks = list(dict.fromkeys(f.task for f in paper.findings))
    metric = paper.metric
    lines = ["## The paper's directions", "",
             f"Each directional finding of the SDE paper whose two designs are in this study, on "
             f"{' and on '.join(tasks)}: Δ{metric} = "
             "the first design minus the second, paired on the same test documents (and seeds); Holm p: adjusted over "
             f"the findings tested here{' on each task' if len(tasks) > 1 else ''}, under each rule; at α 0.05 on the "
             "Holm p a finding is *replicated* (the paper's direction), *reversed* (the other way) or *not "
             "distinguishable*."
             + (" The paper's directions come from MASA: on this task they are a transfer test." if transfer else "")]
    theirs = {(f.direction, f.task): f for f in strict.findings}
    for task in tasks:
        lines += ["", *([f"### {task}", ""] if len(tasks) > 1 else []),
                  f"| the paper's finding | first design | second design | seeds | Δ{metric} paper [95% CI] | Holm p | "
                  f"verdict | Δ{metric} strict [95% CI] | Holm p | verdict | both rules |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for f in (f for f in paper.findings if f.task == task):
            other = theirs.get((f.direction, task))
            seeds = " vs ".join(str(len(paper.scores[(d, task, metric)].per_seed))
                                for d in (f.direction.first, f.direction.second))
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
        lines.append(f"No interval: the study has no per-document statistics (`{DOC_STATS}`); rerun "
                     "`sde study report` on a study folder made by this version.")
    if strict.available:
        lines += ["", verdict_words(paper, strict)]
    power = [f"- {s.rule} rule: {line}" for s in (paper, strict) if s.available for line in power_lines(s)]
    return lines + ["", *(power if strict.available else power_lines(paper)), ""]


def power_lines(summary: Summary) -> list[str]:
    """What the study can detect, and what resolving the best design's lead would take, in words."""
    power = summary.power
    if power is None:
        return []
    low, high = power.seed_counts
    seeds = f"{low} seed(s)" if low == high else f"{low} to {high} seeds per design"
    lines = [f"Power: with {summary.n_docs} test documents and {seeds}, this study detects a true difference of "
             f"{sig.detectable(power.se):.4f} {summary.metric} (80% power, α 0.05, from the median standard error of its "
             "paired differences)." if power.se > 0 else
             "Power: not measurable: no paired difference varies across resamples."]
    best, runner_up = short(summary.best), short(power.runner_up)
    if power.lead == 0:
        return lines + [f"`{best}` and `{runner_up}` score the same: no lead to resolve."]
    size = f" (the test set has {power.test_size})" if power.test_size else ""
    words = (f"no number of test documents would, at {power.n_seeds} seed(s): the seed noise alone is larger"
             if math.isinf(power.documents_needed) else
             f"about {math.ceil(power.documents_needed):,} test documents at {power.n_seeds} seed(s){size}")
    more = ("no number of seeds would (the document noise alone is larger)" if power.seeds_needed is None else
            f"about {power.seeds_needed} seed(s)")
    seeds_words = ("one seed cannot measure the seed noise: add seeds (`--seeds 0,1,2 --extend`)" if power.n_seeds < 2
                   else f"{more} at {summary.n_docs} documents")
    return lines + [f"To resolve the observed lead of `{best}` over `{runner_up}` ({power.lead:+.4f}) with 80% power: "
                    f"{words}; seeds: {seeds_words}."]


def tie_words(summary: Summary) -> str:
    if not summary.versus_best:
        return ""
    tied = summary.tied
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
    doc_stats, size = StudyFolder(root).read_doc_stats(), plan.test_size()
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
        from sde_study.race_folder import race_lines

        lines += race_lines(root, plan, rows)
    if plan.analysis:
        lines += signals_section(rows, plan, paper, plots)
    lines += command_lines(rows) + environment_lines(rows)
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


def environment_lines(rows: list[dict]) -> list[str]:
    """What the cells were trained with (rows of studies before it was recorded have none): an adapter comes out the
    same from the same seed and data only in the same environment, so the report names each one and its cells."""
    cells: dict[str, list[str]] = {}
    for r in rows:
        if r["kind"] == "tuned" and isinstance(r.get("train_environment"), dict):
            env = ", ".join(f"{name} {value}" for name, value in r["train_environment"].items())
            cell = f"`{short(r['design'])}` seed {r['seed']}"
            if cell not in cells.setdefault(env, []):
                cells[env].append(cell)
    if not cells:
        return []
    lines = ["## Training environment", "",
             "The same seed and data give the same adapter where these agree (a cell trained again elsewhere may not):",
             ""]
    lines += [f"- {env}: {', '.join(names)}" for env, names in cells.items()]
    return lines + [""]
