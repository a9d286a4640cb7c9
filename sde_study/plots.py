"""The study's plots: each design's score and each one-factor effect, with their intervals (PNG, matplotlib's Agg)."""
from __future__ import annotations

import statistics
from pathlib import Path

from sde_datagen.design import short_name as short
from sde_study.summary import Summaries

PLOTS_DIR = "plots"  # in the study folder

def pyplot():
    """matplotlib's pyplot, drawing to files (no screen)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


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
    plt = pyplot()
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
