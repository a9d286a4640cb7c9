"""The PE-signal analysis of REPORT.md: does the untuned model's zero-shot score, in-context score or perplexity of a
design predict how well it tunes? Each signal ranks the designs; the ranking is correlated with the tuned one."""
from __future__ import annotations

import math
import warnings
from pathlib import Path

from sde_datagen.design import short_name as short
from sde_study.plan import Plan
from sde_study.plots import PLOTS_DIR, pyplot
from sde_study.summary import Summary

# signal -> (higher is better, axis label)
SIGNALS = {
    "zero-shot": (True, "zero-shot score"),
    "in-context": (True, "in-context score"),
    "prompt perplexity": (False, "prompt NLL (lower ranks higher)"),
    "output perplexity": (False, "output NLL (lower ranks higher)"),
}


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
    plt = pyplot()
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
