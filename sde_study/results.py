"""Where a study stands: each work item's state, and the rows of its finished items collected in plan order."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sde_study.folder import RESULTS, StudyFolder, stats_entry
from sde_study.plan import EVAL, RESULT, STATE, Plan, WorkItem
from sde_study.work import is_locked


def recorded_items(root: Path) -> set[tuple]:
    """The items whose rows the study's results file holds: a study committed without its cells/ keeps its finished items there,
    and a rerun on another machine trains none of them again."""
    return {item_key(row) for row in StudyFolder(root).read_rows()}


def item_state(root: Path, item: WorkItem, recorded: set[tuple] | None = None) -> dict[str, Any]:
    """{"status": done | running | failed | to do, ...}; an item is `running` only while a worker holds its lock. A
    failed item has its `error`, and `errors`: one per failed attempt, oldest first. `recorded`: the study's
    recorded items (read from the results file when not given)."""
    folder = item.folder(root)
    if (folder / RESULT).is_file():
        return {"status": "done"}
    if item_key(item.describe()) in (recorded_items(root) if recorded is None else recorded):
        return {"status": "done", "note": f"recorded in {RESULTS}; its folder is not here"}
    try:
        state = json.loads((folder / STATE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {"status": "to do"}
    if state.get("status") == "failed":
        error = state.get("error", "")
        return {"status": "failed", "error": error, "errors": state.get("errors") or [error]}
    if state.get("status") == "running":
        if is_locked(folder):
            return {"status": "running", "where": f"pid {state.get('pid')} on {state.get('host')}"}
        return {"status": "to do", "note": "interrupted; resumes on the next run"}
    return {"status": "to do"}


def to_do(root: Path, plan: Plan) -> list[str]:
    """The ids of the items a run has to do: neither finished in their folder nor recorded in the results file."""
    recorded = recorded_items(root)
    return [item.id for item in plan.items() if item_state(root, item, recorded)["status"] != "done"]


def item_key(row: dict[str, Any]) -> tuple:
    """The work item a results or docstats row belongs to: (kind, design, seed) of a cell, (kind, design) of signals."""
    return (row.get("kind"), row.get("design"), row.get("seed") if row.get("kind") == "tuned" else None)


def collect(root: Path, plan: Plan) -> list[dict[str, Any]]:
    """Every row of the study, in plan order: a finished item's rows from its folder, and the rows (and per-document
    statistics) the study folder already holds of items whose folders are absent (a committed study has none), kept
    as they are. The two files are rewritten (atomically) only when a row was added or changed."""
    folder = StudyFolder(root)
    kept_rows, kept_stats = folder.read_rows(), folder.read_stats_rows()
    rows, stats, rebuilt = [], [], set()
    for item in plan.items():
        path = item.folder(root) / RESULT
        if path.is_file():
            result = json.loads(path.read_text(encoding="utf-8"))
            rows += result["rows"]
            stats += result["doc_stats"] if "doc_stats" in result else logged_stats(item.folder(root), result["rows"], plan)
            rebuilt.add(item_key(item.describe()))
    order = {item_key(item.describe()): i for i, item in enumerate(plan.items())}
    rows = _in_plan_order(rows + [r for r in kept_rows if item_key(r) not in rebuilt], order)
    stats = _in_plan_order(stats + [s for s in kept_stats if item_key(s) not in rebuilt], order)
    folder.write_rows(rows, stats, kept_rows, kept_stats)
    return rows


def _in_plan_order(rows: list[dict[str, Any]], order: dict[tuple, int]) -> list[dict[str, Any]]:
    """Rows sorted by their item's place in the plan (stable: an item's own rows keep their order); rows of items
    the plan does not hold go last."""
    return sorted(rows, key=lambda r: order.get(item_key(r), len(order)))


def logged_stats(folder: Path, rows: list[dict[str, Any]], plan: Plan) -> list[dict[str, Any]]:
    """Per-document statistics of an item finished before results kept them, from its logged samples."""
    from sde_study.evaluate import logged_run
    from sde_tasks.logged import read_run

    found = []
    for row in rows:
        where = folder / (EVAL if row["kind"] == "tuned" else row.get("signal", ""))
        samples = read_run(where, row["task"]) if "task" in row else []
        if samples:
            found.append(stats_entry(row, logged_run(samples, plan.resolved_task())[0]))
    return found


def headline(row: dict[str, Any]) -> str:
    """The metric a study ranks designs by: the primary metric of the family whose metrics the row holds."""
    from sde_datagen.families import FAMILIES

    return next(family.primary for family in FAMILIES.values() if family.primary in row)


def with_degeneracy(root: Path, plan: Plan, rows: list[dict]) -> list[dict]:
    """Rows of cells evaluated before runaway and collapse were measured, completed from the cell's logged samples
    where the study keeps them (StudyFolder.read_samples); the results file itself is left as it is."""
    from sde_study.evaluate import logged_run

    folder, done = StudyFolder(root), []
    for row in rows:
        samples = (folder.read_samples(row["design"], row.get("seed"), row.get("task"))
                   if row["kind"] == "tuned" and "runaway_rate" not in row else None)
        if samples:
            row = {**row, **logged_run(samples, plan.resolved_task())[1].as_json()}
        done.append(row)
    return done


def status_lines(root: Path, plan: Plan, queue: dict[str, str] | None = None,
                 waiting: dict[str, dict[str, str]] | None = None) -> list[str]:
    """One line per item (its state, and where `queue` has it, its Slurm array task), after a summary line.
    `waiting`: the state of items that are not done but not to do yet either (a race's later seeds)."""
    counts: dict[str, int] = {}
    lines = []
    recorded = recorded_items(root)
    for item in plan.items():
        state = item_state(root, item, recorded)
        if state["status"] == "to do" and item.id in (waiting or {}):
            state = waiting[item.id]
        counts[state["status"]] = counts.get(state["status"], 0) + 1
        detail = state.get("error") or state.get("where") or state.get("note") or ""
        job = (queue or {}).get(item.id)
        lines.append(f"  {state['status']:<8} {item.id}" + (f"  ({detail})" if detail else "")
                     + (f"  [{job}]" if job else ""))
    always = ("done", "running", "failed", "to do")
    summary = ", ".join(f"{counts.get(s, 0)} {s}" for s in always) + "".join(
        f", {n} {s}" for s, n in counts.items() if s not in always)
    return [f"{root}: {plan.task}, {len(plan.designs)} design(s) x {len(plan.seeds)} seed(s): {summary}", *lines]
