"""The page's plots, per task, as PNG files (matplotlib, Agg, no display).

User-provided text (model names) is drawn with math-text parsing off, so `$…$` stays literal.
"""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from statistics import fmean

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)
import numpy as np  # noqa: E402

from sde_tasks.board.rows import Row, TaskBoard  # noqa: E402

plt.rcParams.update({"text.parse_math": False, "svg.fonttype": "none", "font.size": 9})
_DPI = 100
# More designs than this make unreadable plots (and slow builds): the plots show the best ones, the
# tables every one.
MAX_DESIGNS = 40


def _short(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def _label(row: Row) -> str:
    """A plot's design label; an untuned baseline is kept apart from the tuned runs of its design."""
    return row.design if row.tuned else f"{row.design} (untuned)"


def design_order(board: TaskBoard) -> tuple[list[str], dict[str, list[float]]]:
    """The best MAX_DESIGNS designs, best first (mean primary score over runs), with their run scores."""
    scores: dict[str, list[float]] = defaultdict(list)
    for row in board.rows:
        if board.primary in row.metrics:
            scores[_label(row)].append(row.metrics[board.primary])
    higher = board.higher_is_better[board.primary]
    order = sorted(scores, key=lambda d: (-fmean(scores[d]) if higher else fmean(scores[d]), d))
    return order[:MAX_DESIGNS], scores


def plot_by_design(board: TaskBoard, path: Path) -> None:
    """Horizontal bars: the mean primary score of each design; dots: its individual runs."""
    order, scores = design_order(board)
    fig, ax = plt.subplots(figsize=(7.5, min(2.0 + 0.28 * len(order), 40)), dpi=_DPI)
    y = np.arange(len(order))
    ax.barh(y, [fmean(scores[d]) for d in order], color="#8fb3d9", height=0.7)
    for i, design in enumerate(order):
        ax.plot(scores[design], [i] * len(scores[design]), "o", color="#1f3b57", markersize=3)
    ax.set_yticks(y, order, fontfamily="monospace", fontsize=8)
    ax.invert_yaxis()
    every = [v for d in order for v in scores[d]]
    ax.set_xlim(min([0.0, *every]), max([1.0, *every]))  # the metrics are rates and kappa: 0..1 unless beyond
    ax.set_xlabel(board.primary)
    ax.set_title(f"{board.task}: {board.primary} by design")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)


def plot_heatmap(board: TaskBoard, path: Path) -> None:
    """Design x base model: the mean primary score of each pair (blank where nobody ran it)."""
    designs, _ = design_order(board)
    models = sorted({row.base_model for row in board.rows})
    cells: dict[tuple[str, str], list[float]] = defaultdict(list)
    for row in board.rows:
        if board.primary in row.metrics:
            cells[(_label(row), row.base_model)].append(row.metrics[board.primary])
    grid = np.full((len(designs), len(models)), np.nan)
    row_of, column_of = {d: i for i, d in enumerate(designs)}, {m: j for j, m in enumerate(models)}
    for (design, model), values in cells.items():
        if design in row_of:
            grid[row_of[design], column_of[model]] = fmean(values)
    width = min(max(6.0, 3.5 + 0.9 * len(models)), 40)
    fig, ax = plt.subplots(figsize=(width, min(2.5 + 0.3 * len(designs), 40)), dpi=_DPI)
    cmap = plt.get_cmap("viridis" if board.higher_is_better[board.primary] else "viridis_r").with_extremes(bad="#eeeeee")
    finite = grid[np.isfinite(grid)]
    low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    if high - low < 1e-9:  # one value: a readable scale around it
        low, high = low - 0.05, high + 0.05
    image = ax.imshow(np.ma.masked_invalid(grid), aspect="auto", cmap=cmap, vmin=low, vmax=high)
    ax.set_xticks(np.arange(len(models)), [_short(m) for m in models], rotation=35, ha="right")
    ax.set_yticks(np.arange(len(designs)), designs, fontfamily="monospace", fontsize=8)
    if grid.size <= 300:
        middle = (low + high) / 2  # dark cells get white text
        for (i, j), value in np.ndenumerate(grid):
            if np.isfinite(value):
                ax.text(j, i, f"{value:.3f}", ha="center", va="center", fontsize=7,
                        color="white" if (value < middle) == board.higher_is_better[board.primary] else "black")
    colorbar = fig.colorbar(image, ax=ax, label=board.primary)
    colorbar.formatter.set_useOffset(False)
    colorbar.update_ticks()
    ax.set_title(f"{board.task}: {board.primary}, design x base model")
    fig.tight_layout()
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)
