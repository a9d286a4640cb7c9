"""What a study folder holds: each work item's state, and results.jsonl collected in plan order."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sde_files import write_atomic
from sde_study.plan import Plan, WorkItem
from sde_study.plan import EVAL, RESULT, STATE
from sde_study.work import is_locked

RESULTS_NAME = "results.jsonl"
DOC_STATS_NAME = "docstats.jsonl"  # per-document statistics of every evaluated row: the report's intervals


def item_state(root: Path, item: WorkItem) -> dict[str, Any]:
    """{"status": done | running | failed | to do, ...}; an item is `running` only while a worker holds its lock. A
    failed item has its `error`, and `errors`: one per failed attempt, oldest first."""
    folder = item.folder(root)
    if (folder / RESULT).is_file():
        return {"status": "done"}
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


def item_key(row: dict[str, Any]) -> tuple:
    """The work item a results or docstats row belongs to: (kind, design, seed) of a cell, (kind, design) of signals."""
    return (row.get("kind"), row.get("design"), row.get("seed") if row.get("kind") == "tuned" else None)


def read_jsonl_rows(path: Path) -> list[dict[str, Any]]:
    """The rows of a study's JSONL file as they are ([] when there is none); a damaged line is a UserError naming it."""
    from sde_datagen.errors import UserError

    if not path.is_file():
        return []
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as err:
            raise UserError(f"{path}:{number}: not a JSON line ({err.msg}); the file was left as it is") from None
        if not isinstance(row, dict) or not isinstance(row.get("kind"), str) or not isinstance(row.get("design"), str):
            raise UserError(f"{path}:{number}: not a study row (a mapping with 'kind' and 'design'); "
                            "the file was left as it is")
        rows.append(row)
    return rows


def collect(root: Path, plan: Plan) -> list[dict[str, Any]]:
    """Every row of the study, in plan order: a finished item's rows from its folder, and the rows already in
    DIR/results.jsonl and DIR/docstats.jsonl of items whose folders are absent (a committed study has none), kept
    as they are. The two files are rewritten (atomically) only when a row was added or changed."""
    kept_rows, kept_stats = read_jsonl_rows(root / RESULTS_NAME), read_jsonl_rows(root / DOC_STATS_NAME)
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
    _rewrite_if_changed(root / RESULTS_NAME, kept_rows, rows, lambda r: json.dumps(r, ensure_ascii=False))
    _rewrite_if_changed(root / DOC_STATS_NAME, kept_stats, stats, lambda s: json.dumps(s, separators=(",", ":")))
    return rows


def _in_plan_order(rows: list[dict[str, Any]], order: dict[tuple, int]) -> list[dict[str, Any]]:
    """Rows sorted by their item's place in the plan (stable: an item's own rows keep their order); rows of items
    the plan does not hold go last."""
    return sorted(rows, key=lambda r: order.get(item_key(r), len(order)))


def _rewrite_if_changed(path: Path, before: list[dict], after: list[dict], line) -> None:
    """Write `after` unless it holds the same rows as `before` (in any order): a study nothing was added to keeps
    its files byte for byte."""
    lines = [line(r) for r in after]
    if sorted(lines) != sorted(line(r) for r in before):
        write_atomic(path, "".join(text + "\n" for text in lines))


def logged_stats(folder: Path, rows: list[dict[str, Any]], plan: Plan) -> list[dict[str, Any]]:
    """Per-document statistics of an item finished before results kept them, from its logged samples."""
    from sde_study.evaluate import logged_run
    from sde_tasks.logged import read_run
    from sde_study.work import stats_entry

    found = []
    for row in rows:
        where = folder / (EVAL if row["kind"] == "tuned" else row.get("signal", ""))
        samples = read_run(where, row["task"]) if "task" in row else []
        if samples:
            found.append(stats_entry(row, logged_run(samples, plan.resolved_task())[0]))
    return found


def load_doc_stats(root: Path) -> dict[tuple, Any]:
    """DIR/docstats.jsonl as {(kind, design, seed, signal, task): DocStats}; empty for a study without it."""
    import numpy as np

    from sde_study.work import ROW_KEY
    from sde_tasks.docstats import DocStats

    path = root / DOC_STATS_NAME
    if not path.is_file():
        return {}
    found = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        try:
            entry = json.loads(line)
            key = tuple(entry.get(k) for k in ROW_KEY)
            table = np.asarray(entry["table"], dtype=float)
            if table.ndim != 2:
                raise ValueError("table is not a list of rows")
            found[key] = DocStats(str(entry["family"]), tuple(entry["labels"]), table, entry.get("absent"))
        except (ValueError, KeyError, TypeError, AttributeError) as err:
            from sde_datagen.errors import UserError

            raise UserError(f"{path}:{number}: not a per-document statistics row ({err}); the file was left as it "
                            "is (its cells, where the study still has them, rebuild that line)") from None
    return found


def headline(row: dict[str, Any]) -> str:
    """The metric a study ranks designs by: the primary metric of the family whose metrics the row holds."""
    from sde_datagen.families import FAMILIES

    return next(family.primary for family in FAMILIES.values() if family.primary in row)


def with_degeneracy(root: Path, plan: Plan, rows: list[dict]) -> list[dict]:
    """Rows of cells evaluated before runaway and collapse were measured, completed from the cell's logged samples
    where the study keeps them (DIR/samples/); results.jsonl itself is left as it is."""
    import gzip

    from sde_study.evaluate import logged_run
    from sde_study.work import kept_samples

    done = []
    for row in rows:
        if row["kind"] == "tuned" and "runaway_rate" not in row and (
                path := kept_samples(root, row["design"], row.get("seed"), row.get("task"))).is_file():
            samples = [json.loads(line) for line in gzip.decompress(path.read_bytes()).decode("utf-8").splitlines()]
            row = {**row, **logged_run(samples, plan.resolved_task())[1].as_json()}
        done.append(row)
    return done


def status_lines(root: Path, plan: Plan, queue: dict[str, str] | None = None) -> list[str]:
    """One line per item (its state, and where `queue` has it, its Slurm array task), after a summary line."""
    counts: dict[str, int] = {}
    lines = []
    for item in plan.items():
        state = item_state(root, item)
        counts[state["status"]] = counts.get(state["status"], 0) + 1
        detail = state.get("error") or state.get("where") or state.get("note") or ""
        job = (queue or {}).get(item.id)
        lines.append(f"  {state['status']:<8} {item.id}" + (f"  ({detail})" if detail else "")
                     + (f"  [{job}]" if job else ""))
    summary = ", ".join(f"{counts.get(s, 0)} {s}" for s in ("done", "running", "failed", "to do"))
    return [f"{root}: {plan.task}, {len(plan.designs)} design(s) x {len(plan.seeds)} seed(s): {summary}", *lines]
