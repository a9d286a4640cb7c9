"""`sde study report DIR`: REPORT.md and plots/*.png from results.jsonl.

Scores are the task's headline metric (MASA: kappa; extraction: F1) as mean ± std over seeds. The
one-factor effects compare each design with `paper-base` seed by seed; the PE section ranks the
designs by each signal of the untuned model and correlates that ranking with the tuned one.
"""
from __future__ import annotations

import math
import statistics
import warnings
from pathlib import Path
from typing import Any

from sde_datagen.design import AXES, PRESETS
from sde_study.plan import Plan, write_atomic

REPORT_NAME = "REPORT.md"
PLOTS_DIR = "plots"
BASE = PRESETS["paper-base"].id
PRESET_IDS = {d.id: name for name, d in PRESETS.items()}
# signal -> (higher is better, axis label)
SIGNALS = {
    "zero-shot": (True, "zero-shot score"),
    "in-context": (True, "in-context score"),
    "prompt perplexity": (False, "prompt NLL (lower ranks higher)"),
    "output perplexity": (False, "output NLL (lower ranks higher)"),
}


def headline(row: dict[str, Any]) -> str:
    return "kappa" if "kappa" in row else "f1"


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else float("nan"))


def fmt(mean: float, std: float) -> str:
    return f"{mean:.4f}" if math.isnan(std) else f"{mean:.4f} ± {std:.4f}"


def tuned_scores(rows: list[dict], task: str, metric: str) -> dict[str, dict[int, float]]:
    """design -> seed -> metric of the tuned cells on one lm-eval task."""
    found: dict[str, dict[int, float]] = {}
    for r in rows:
        if r["kind"] == "tuned" and r["task"] == task:
            found.setdefault(r["design"], {})[r["seed"]] = r[metric]
    return found


def short(design: str) -> str:
    """`axis=option` for a one-factor change of paper-base; the variant id otherwise."""
    if design == BASE:
        return "paper-base"
    if design in PRESET_IDS:
        return PRESET_IDS[design]
    changed = [f"{a}={o}" for a, o, b in zip(AXES, design.split("-"), BASE.split("-")) if o != b]
    return changed[0] if len(changed) == 1 else design


def write_report(root: Path, plan: Plan, rows: list[dict]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    plots = root / PLOTS_DIR
    plots.mkdir(exist_ok=True)
    tasks = plan.lm_eval_tasks
    some = next((r for r in rows if r["kind"] == "tuned"), None)
    if some is None:
        from sde_datagen.errors import UserError

        raise UserError(f"{root}: no finished cell yet (see `sde study status {root}`)")
    metric = headline(some)
    limit = f"first {plan.eval_limit} test documents" if plan.eval_limit else "full test sets"
    lines = [f"# Design study: {plan.task} on `{plan.model}`", "",
             f"{len(plan.designs)} designs x seeds {plan.seeds}; {plan.train_size} training samples; evaluation on the "
             f"{limit}; chat template: {'yes' if plan.chat_template else 'no'}; training settings: "
             f"{plan.train or 'defaults (LoRA r 8, 1 epoch, batch 4, lr 1e-4)'}. Headline metric: `{metric}` "
             "(mean ± std over seeds).", ""]
    lines += design_table(rows, plan, tasks, metric, plots)
    lines += effects_section(rows, plan, tasks, metric, plots)
    lines += recommendation(rows, plan, tasks[0], metric)
    if plan.analysis:
        lines += signals_section(rows, plan, tasks[0], metric, plots)
    path = root / REPORT_NAME
    write_atomic(path, "\n".join(lines) + "\n")
    return path


def design_table(rows: list[dict], plan: Plan, tasks: tuple[str, ...], metric: str, plots: Path) -> list[str]:
    head = "| design | " + " | ".join(f"{t} {metric} | {t} format errors" for t in tasks) + " | final loss | seeds |"
    lines = ["## Designs", "", head, "|---" * (2 * len(tasks) + 3) + "|"]
    for design in plan.designs:
        cells = []
        for task in tasks:
            mine = [r for r in rows if r["kind"] == "tuned" and r["task"] == task and r["design"] == design]
            if not mine:
                cells += ["—", "—"]
                continue
            cells += [fmt(*mean_std([r[metric] for r in mine])), fmt(*mean_std([r["format_error_rate"] for r in mine]))]
        mine = [r for r in rows if r["kind"] == "tuned" and r["task"] == tasks[0] and r["design"] == design]
        loss = fmt(*mean_std([r["final_loss"] for r in mine])) if mine else "—"
        name = f"`{design}`" + (f" ({short(design)})" if short(design) != design else "")
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {loss} | {len(mine)} |")
    scores = {task: {short(d): mean_std(list(s.values())) for d, s in tuned_scores(rows, task, metric).items()}
              for task in tasks}
    bar_plot(scores, f"{metric} (tuned)", plots / "designs.png")
    return lines + ["", f"![designs]({PLOTS_DIR}/designs.png)", ""]


def effects_section(rows: list[dict], plan: Plan, tasks: tuple[str, ...], metric: str, plots: Path) -> list[str]:
    """Each one-factor change against paper-base: mean change, std over seeds, seeds agreeing on its sign."""
    if BASE not in plan.designs:
        return ["## One-factor effects", "", f"Not computed: `paper-base` ({BASE}) is not among the designs.", ""]
    lines = ["## One-factor effects (against paper-base)", "",
             "| change | " + " | ".join(f"{t} Δ{metric} | seeds agreeing" for t in tasks) + " |",
             "|---" * (2 * len(tasks) + 1) + "|"]
    effects: dict[str, dict[str, tuple[float, float]]] = {}
    for design in plan.designs:
        if design == BASE or short(design) == design:
            continue
        cells = []
        for task in tasks:
            scores = tuned_scores(rows, task, metric)
            seeds = sorted(set(scores.get(design, {})) & set(scores.get(BASE, {})))
            if not seeds:
                cells += ["—", "—"]
                continue
            diffs = [scores[design][s] - scores[BASE][s] for s in seeds]
            mean, std = mean_std(diffs)
            agree = sum(1 for d in diffs if math.copysign(1, d) == math.copysign(1, mean) and d != 0)
            effects.setdefault(task, {})[short(design)] = (mean, std)
            cells += [f"{mean:+.4f}" + ("" if math.isnan(std) else f" ± {std:.4f}"), f"{agree}/{len(seeds)}"]
        lines.append(f"| {short(design)} | " + " | ".join(cells) + " |")
    if effects:
        bar_plot(effects, f"Δ {metric} vs paper-base", plots / "effects.png")
        lines += ["", f"![one-factor effects]({PLOTS_DIR}/effects.png)"]
    return lines + [""]


def bar_plot(effects: dict[str, dict[str, tuple[float, float]]], ylabel: str, path: Path) -> None:
    """Grouped bars (one group per design or change, one bar per task: ID vs OOD for MASA), std error bars."""
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(n for per_task in effects.values() for n in per_task))
    width = 0.8 / len(effects)
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(names) + 2), 4))
    for k, (task, per_task) in enumerate(effects.items()):
        xs = [i + k * width for i in range(len(names))]
        ax.bar(xs, [per_task.get(n, (0, 0))[0] for n in names], width,
               yerr=[_zero_nan(per_task.get(n, (0, 0))[1]) for n in names], capsize=3, label=task)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks([i + width * (len(effects) - 1) / 2 for i in range(len(names))], names, rotation=30, ha="right")
    ax.set_ylabel(ylabel)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def recommendation(rows: list[dict], plan: Plan, task: str, metric: str) -> list[str]:
    scores = tuned_scores(rows, task, metric)
    ranked = sorted(((mean_std(list(s.values())), d) for d, s in scores.items()), key=lambda x: -x[0][0])
    (best_mean, best_std), best = ranked[0]
    lines = ["## Recommended design", "", f"**`{best}`** ({short(best)}): {metric} {fmt(best_mean, best_std)} on {task}."]
    if len(ranked) > 1:
        (second_mean, second_std), second = ranked[1]
        lead = best_mean - second_mean
        if lead == 0:
            return lines[:2] + [f"No recommendation: `{best}` and `{second}` tie at {metric} {best_mean:.4f} on {task}.", ""]
        noise = max(x for x in (best_std, second_std) if not math.isnan(x)) if len(plan.seeds) > 1 else float("nan")
        if math.isnan(noise):
            lines.append(f"Its lead over `{second}` is {lead:.4f}; with one seed the seed noise is unknown, so this "
                         "ranking may not hold: add seeds (`--seeds 0,1,2 --extend`).")
        elif lead <= noise:
            lines.append(f"Its lead over `{second}` ({lead:.4f}) is within seed noise (std up to {noise:.4f}): "
                         "the study does not separate these two designs.")
        else:
            lines.append(f"Its lead over `{second}` ({lead:.4f}) is larger than the seed std ({noise:.4f}).")
    return lines + [""]


def signals_section(rows: list[dict], plan: Plan, task: str, metric: str, plots: Path) -> list[str]:
    """Each PE signal of the untuned model next to the tuned score, with rank correlations and a verdict."""
    from scipy.stats import kendalltau, spearmanr

    tuned = {d: statistics.fmean(s.values()) for d, s in tuned_scores(rows, task, metric).items()}
    values: dict[str, dict[str, float]] = {name: {} for name in SIGNALS}
    for r in rows:
        if r["kind"] != "signals" or r["design"] not in tuned:
            continue
        if r["signal"] == "perplexity":
            values["prompt perplexity"][r["design"]] = r["prompt_nll"]
            values["output perplexity"][r["design"]] = r["output_nll"]
        elif r["task"] == task:
            values[r["signal"]][r["design"]] = r[metric]
    designs = [d for d in plan.designs if d in tuned and all(d in v for v in values.values())]
    lines = ["## Prompt engineering signals vs the tuned ranking", "",
             f"Signals of the untuned base model per design ({task}; in-context: {plan.icl_shots} examples from the dev "
             f"split; perplexities: mean per-token NLL of {plan.ppl_samples} training rows), next to the tuned {metric}.",
             "", "| design | tuned " + metric + " | zero-shot | in-context | prompt NLL | output NLL |",
             "|---|---|---|---|---|---|"]
    for d in designs:
        lines.append(f"| `{d}` | {tuned[d]:.4f} | " + " | ".join(f"{values[n][d]:.4f}" for n in SIGNALS) + " |")
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
    for name, (higher, words) in SIGNALS.items():
        signed = [values[name][d] if higher else -values[name][d] for d in designs]
        target = [tuned[d] for d in designs]
        with warnings.catch_warnings():  # a constant signal: reported as undefined below
            warnings.simplefilter("ignore")
            tau, p_tau = kendalltau(signed, target)
            rho, p_rho = spearmanr(signed, target)
        picked = [d for d, v in zip(designs, signed) if v == max(signed)]
        ok = len(winners) == 1 and picked == winners
        lines.append(f"| {name} | {_corr(tau, p_tau)} | {_corr(rho, p_rho)} | {', '.join(short(p) for p in picked)} | "
                     f"{'yes' if ok else 'no'} |")
        if len(winners) > 1:
            verdicts.append(f"- **{name}**: there is no single tuned winner to pick ({len(winners)} designs tie at "
                            f"{metric} {best:.4f}).")
        elif len(picked) > 1:
            verdicts.append(f"- **{name}** ties {len(picked)} designs at the top, so it would not have picked the "
                            f"tuned winner `{short(winners[0])}` on its own.")
        else:
            verdicts.append(f"- **{name}** would {'' if ok else 'not '}have picked the tuned winner: it ranks "
                            f"`{short(picked[0])}` first, the tuned winner is `{short(winners[0])}`.")
        scatter(name, words, [values[name][d] for d in designs], target, designs, metric, plots)
    lines += ["", *verdicts, ""]
    lines += [f"![{n}]({PLOTS_DIR}/signal-{n.replace(' ', '-')}.png)" for n in SIGNALS]
    return lines + [""]


def _zero_nan(value: float) -> float:
    """No error bar where the std is undefined (one seed)."""
    return 0.0 if math.isnan(value) else value


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
