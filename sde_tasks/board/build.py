"""`sde board build`: submissions -> README tables, plots and the static page.

The build trusts the submissions' reported metrics (`sde board validate` checks them, in CI). Their
uncertainty it computes itself: each run's per-document statistics are recomputed from its logged
outputs, and give the primary metric's 95% interval and which runs (and README rows) are
statistically tied with the best of their base model (paired bootstrap, sde_tasks.significance).
"""
from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from statistics import fmean
from typing import Any

from sde_datagen.design import AXES, Design, design_axes
from sde_datagen.errors import UserError
from sde_files import atomic_folder, write_atomic
from sde_tasks.board.rows import FORMAT_ERROR, Row, TaskBoard, best_values, is_best
from sde_tasks.board.samples import recomputed
from sde_tasks.docstats import DocStats
from sde_tasks.scoring import Degeneracy
from sde_tasks.board.store import (
    TASK_NAME, Submission, load_submission, metric_values, results_shape_errors, schema_errors, submission_dirs,
)

README_BEGIN = "<!-- sde-board:begin (written by `sde board build`; edit outside these markers) -->"
README_END = "<!-- sde-board:end -->"
SITE_DIR = "site"


def _training_words(training: dict | None) -> str:
    if training is None:
        return "untuned"
    domain = f" {training['domain']}" if training.get("domain") else ""
    return f"{training['task']}{domain}, {training['size']} samples"


def _eval_words(results: dict, task: str) -> str:
    """How lm-eval ran the task, where runs may differ: shots, chat template, generation overrides."""
    words = [f"{(results.get('n-shot') or {}).get(task, 0)}-shot"]
    if results.get("chat_template"):
        words.append("chat template")
    overrides = (results.get("config") or {}).get("gen_kwargs") or {}
    if isinstance(overrides, dict):
        words += [f"{key}={value}" for key, value in sorted(overrides.items())]
    return ", ".join(words)


def rows_of(sub: Submission) -> list[Row]:
    """A submission's rows, one per task; a malformed submission is a UserError naming its folder."""
    problems = schema_errors(sub.meta) + results_shape_errors(sub.results)
    if problems:
        raise UserError(f"{sub.path}: {'; '.join(problems)} (run `sde board validate`)")
    meta = sub.meta
    try:
        axes = design_axes(Design.from_id(meta["design"]))
    except UserError as err:
        raise UserError(f"{sub.path}: {err}") from None
    adapter = meta["adapter"] or {"id": "", "revision": ""}
    rows = []
    for task in sub.tasks:
        if not TASK_NAME.match(task):
            raise UserError(f"{sub.path}: results name a task {task!r} that is not an lm-eval task name")
        rows.append(
            Row(
                submission=sub.id,
                task=task,
                base_model=meta["base_model"]["id"],
                base_revision=meta["base_model"]["revision"],
                adapter=adapter["id"],
                adapter_revision=adapter["revision"],
                design=meta["design"],
                axes=axes,
                training=_training_words(meta["training"]),
                tuned=meta["training"] is not None,
                evaluation=_eval_words(sub.results, task),
                seed=meta["seed"],
                submitter=meta["submitter"],
                date=meta["date"],
                metrics=metric_values(sub.results["results"][task]),
            )
        )
    return rows


def collect(board: Path) -> list[TaskBoard]:
    """Every task that some submission reports, in name order, with its rows."""
    by_task: dict[str, list[Row]] = defaultdict(list)
    directions: dict[str, dict[str, bool]] = defaultdict(dict)
    stats: dict[str, dict[str, DocStats]] = defaultdict(dict)
    degeneracy: dict[str, dict[str, Degeneracy]] = defaultdict(dict)
    for path in submission_dirs(board):
        sub = load_submission(path)
        for row in rows_of(sub):
            by_task[row.task].append(row)
            found = recomputed(path, row.task)
            if found is not None:
                stats[row.task][sub.id], degeneracy[row.task][sub.id] = found
            for metric, higher in (sub.results.get("higher_is_better", {}).get(row.task) or {}).items():
                directions[row.task].setdefault(metric, bool(higher))
    boards = []
    for task in sorted(by_task):
        rows = by_task[task]
        metrics = list(dict.fromkeys(m for row in rows for m in row.metrics))
        if FORMAT_ERROR in metrics:  # shown last, beside the task metrics
            metrics.remove(FORMAT_ERROR)
            metrics.append(FORMAT_ERROR)
        if not metrics:
            raise UserError(f"task {task}: no submission reports a metric")
        higher = {m: directions[task].get(m, m != FORMAT_ERROR) for m in metrics}
        found = TaskBoard(task, rows, metrics, higher, stats=stats[task], degeneracy=degeneracy[task])
        runs = {r.submission: [found.stats[r.submission]] for r in rows if r.submission in found.stats}
        found.ci, found.tied = intervals_and_ties(runs, {r.submission: r.base_model for r in rows}, found.primary,
                                                  {r.submission for r in rows if found.collapsed(r.submission)})
        boards.append(found)
    return boards


def intervals_and_ties(groups: dict[Any, list[DocStats]], model_of: dict[Any, str], metric: str,
                       collapsed: set[Any]) -> tuple[dict[Any, tuple[float, float]], set[Any]]:
    """The 95% interval of `metric` of each group of runs (a run, or a README row's runs over seeds), and
    the groups tied with the best group of their base model (itself included): paired on the same documents.
    A collapsed group is neither the best nor tied with it."""
    from sde_tasks import significance as sig

    by_docs: dict[int, dict[Any, list[DocStats]]] = defaultdict(dict)
    for key, runs in groups.items():
        by_docs[runs[0].n_docs][key] = runs  # only runs on the same documents can be paired
    ci, tied = {}, set()
    for same_docs in by_docs.values():
        reps = sig.replicates(same_docs)
        value = {key: sig.point(runs)[metric] for key, runs in same_docs.items()}
        ci.update({key: sig.interval(reps[key][metric]) for key in same_docs})
        for model in {model_of[key] for key in same_docs}:
            mine = [key for key in same_docs if model_of[key] == model and key not in collapsed]
            if not mine:
                continue
            best, _, ties = sig.best_and_ties({key: value[key] for key in mine}, reps, metric)
            tied |= {best, *ties}
    return ci, tied


# ---------------------------------------------------------------------------------------------- README

_MD_SPECIAL = re.compile(r"([\\`*_\[\]|#<>!~])")


def md_text(text: str) -> str:
    """User text as literal markdown table-cell content: one line, markdown and HTML syntax backslashed."""
    return _MD_SPECIAL.sub(r"\\\1", " ".join(str(text).split())).replace("&", "&amp;")


@dataclass(frozen=True)
class TableRow:
    """A README row: one base model x design (x training), its number of runs and mean metrics, the primary
    metric's 95% interval (None without logged samples) and whether it is tied with its base model's best row."""

    base_model: str
    design: str
    training: str
    runs: int
    means: dict[str, float]
    ci: tuple[float, float] | None = None
    tied: bool = False
    strict: float | None = None  # the primary metric under the strict rule, mean over runs
    runaway: float | None = None  # runaway rate, mean over runs
    collapsed: bool = False  # some run gave one answer to (nearly) every document while the gold answers vary


def aggregate(board: TaskBoard) -> list[TableRow]:
    """Rows base model x design, best first; runs sharing both are averaged, unless trained differently
    (an untuned baseline or another training set is a row of its own, never mixed into a mean)."""
    groups: dict[tuple[str, str, str], list[Row]] = defaultdict(list)
    for row in board.rows:
        groups[(row.base_model, row.design, row.training)].append(row)
    runs = {key: [board.stats[r.submission] for r in rows] for key, rows in groups.items()
            if all(r.submission in board.stats for r in rows)}
    collapsed = {key for key, rows in groups.items() if any(board.collapsed(r.submission) for r in rows)}
    ci, tied = intervals_and_ties(runs, {key: key[0] for key in runs}, board.primary, collapsed)
    table = []
    for key, rows in groups.items():
        means = {}
        for metric in board.metrics:
            values = [r.metrics[metric] for r in rows if metric in r.metrics]
            if values:
                means[metric] = fmean(values)
        strict, runaway = ([board.strict(r.submission) for r in rows], [board.runaway(r.submission) for r in rows])
        table.append(TableRow(*key, len(rows), means, ci.get(key), key in tied, mean_of(strict), mean_of(runaway),
                              key in collapsed))
    primary, sign = board.primary, (-1 if board.higher_is_better[board.primary] else 1)
    table.sort(key=lambda t: (t.collapsed, primary not in t.means, sign * t.means.get(primary, 0.0), t.base_model,
                              t.design))
    return table


def mean_of(values: list[float | None]) -> float | None:
    """The mean, or None unless every run has the value."""
    return fmean(values) if values and all(v is not None for v in values) else None


def markdown_table(board: TaskBoard) -> str:
    table = aggregate(board)
    best = best_values([t.means for t in table], board.metrics, board.higher_is_better)
    arrows = {m: ("↑" if board.higher_is_better[m] else "↓") for m in board.metrics}
    head = ["Base model", "Design", "Training", "Runs"] + [f"{m} {arrows[m]}" for m in board.metrics] + ["runaway ↓"]
    after = 4 + board.metrics.index(board.primary) + 1  # interval, strict figure and tie mark follow the primary metric
    head[after:after] = [f"{board.primary} 95% CI", f"{board.primary} strict {arrows[board.primary]}", "≈ best"]
    text_columns = ("Base model", "Design", "Training", "≈ best")
    lines = ["| " + " | ".join(head) + " |", "|" + "".join("---|" if h in text_columns else "---:|" for h in head)]
    for row in table:
        means = row.means
        design = f"`{row.design}`" + (" **collapsed**" if row.collapsed else "")
        cells = [md_text(row.base_model), design, md_text(row.training), str(row.runs)]
        for metric in board.metrics:
            value = means.get(metric)
            text = "–" if value is None else f"{value:.4f}"
            cells.append(f"**{text}**" if is_best(value, best.get(metric)) else text)
            if metric == board.primary:
                cells.append("–" if row.ci is None else f"[{row.ci[0]:.4f}, {row.ci[1]:.4f}]")
                cells.append("–" if row.strict is None else f"{row.strict:.4f}")
                cells.append("≈" if row.tied else "")
        cells.append("–" if row.runaway is None else f"{row.runaway:.4f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def readme_section(boards: list[TaskBoard], n_submissions: int) -> str:
    if not boards:
        return "No submissions yet."
    parts = [
        f"{n_submissions} submission(s). Rows: base model x design (the mean over runs when several "
        "submissions share both and their training); **bold** marks the best value of each column; ↑ higher is better, "
        "↓ lower is better. The 95% CI of the primary metric and ≈ (statistically tied with the best row of the same base "
        "model: paired bootstrap over the same test documents, α 0.05) are recomputed from the logged outputs, and "
        "so are the primary metric under the strict scoring rule (an answer with a format error counts as an empty "
        "prediction; the other columns follow the paper's rule, which scores what soft parsing recovers) and the "
        "runaway rate (answers that loop). **collapsed**: a run whose most common answer covers ≥ 90% of the "
        "test documents while the gold answers vary; collapsed rows are ranked after the others and never marked ≈. "
        "The [page](site/index.html) lists every run and can be sorted and filtered."
    ]
    for board in boards:
        parts.append(f"### {board.task}\n\nSorted by {board.primary}.\n\n{markdown_table(board)}\n\n"
                     f"![{board.task}: {board.primary} by design](site/{board.task}-by-design.png)")
    return "\n\n".join(parts)


def updated_readme(current: str | None, section: str) -> str:
    """The README with the text between the board markers replaced (a new one when there is none)."""
    block = f"{README_BEGIN}\n{section}\n{README_END}"
    if current is None:
        return f"# Sample Design Engineering leaderboard\n\n{block}\n"
    start, end = current.find(README_BEGIN), current.find(README_END)
    if start < 0 or end < start:
        raise UserError(f"README.md has no board markers; add the two lines\n{README_BEGIN}\n{README_END}")
    return current[:start] + block + current[end + len(README_END):]


# ------------------------------------------------------------------------------------------------ site

def write_site(board_dir: Path, boards: list[TaskBoard]) -> Path:
    """Render the page and its plots into a fresh folder, then swap it in for the old site/."""
    from sde_tasks.board.page import render_page
    from sde_tasks.board.plots import MAX_DESIGNS, design_order, plot_by_design, plot_heatmap

    site = board_dir / SITE_DIR
    with atomic_folder(site) as tmp:
        plots: dict[str, list[tuple[str, str]]] = {}
        for board in boards:
            by_design, heatmap = f"{board.task}-by-design.png", f"{board.task}-heatmap.png"
            plot_by_design(board, tmp / by_design)
            plot_heatmap(board, tmp / heatmap)
            n_designs = len(design_order(board)[1])
            shown = f"; the best {MAX_DESIGNS} of {n_designs} designs" if n_designs > MAX_DESIGNS else ""
            plots[board.task] = [
                (by_design, f"{board.task}: {board.primary} by design (bar: mean over runs; dots: runs{shown})"),
                (heatmap, f"{board.task}: {board.primary}, design x base model (mean over runs{shown})"),
            ]
        (tmp / "index.html").write_text(render_page(boards, plots, AXES), encoding="utf-8")
    return site / "index.html"


def build(board_dir: Path) -> tuple[Path, Path, int]:
    """Write README.md's board section and site/; returns (readme, page, number of submissions)."""
    board_dir.mkdir(parents=True, exist_ok=True)
    n_submissions = len(submission_dirs(board_dir))
    boards = collect(board_dir)
    readme = board_dir / "README.md"
    current = readme.read_text(encoding="utf-8") if readme.exists() else None
    new_readme = updated_readme(current, readme_section(boards, n_submissions))
    page = write_site(board_dir, boards)
    write_atomic(readme, new_readme)
    return readme, page, n_submissions
