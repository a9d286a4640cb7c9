"""What a study folder holds: each work item's state, and results.jsonl collected in plan order."""
from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any

from sde_files import write_atomic
from sde_study.plan import Plan, WorkItem
from sde_study.work import RESULT, STATE

RESULTS_NAME = "results.jsonl"
DOC_STATS_NAME = "docstats.jsonl"  # per-document statistics of every evaluated row: the report's intervals


def item_state(root: Path, item: WorkItem) -> dict[str, Any]:
    """{"status": done | running | failed | to do, ...}; a `running` item whose process is gone is `to do`."""
    folder = item.folder(root)
    if (folder / RESULT).is_file():
        return {"status": "done"}
    try:
        state = json.loads((folder / STATE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {"status": "to do"}
    if state.get("status") == "failed":
        return {"status": "failed", "error": state.get("error", "")}
    if state.get("status") == "running":
        if state.get("host") != socket.gethostname():
            return {"status": "running", "where": f"on {state.get('host')}"}
        if _alive(int(state.get("pid", -1))):
            return {"status": "running", "where": f"pid {state['pid']}"}
        return {"status": "to do", "note": "interrupted; resumes on the next run"}
    return {"status": "to do"}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return pid > 0
    return pid > 0


def collect(root: Path, plan: Plan) -> list[dict[str, Any]]:
    """Rows of every finished item, in plan order; rewrites DIR/results.jsonl and DIR/docstats.jsonl atomically."""
    rows, stats = [], []
    for item in plan.items():
        path = item.folder(root) / RESULT
        if path.is_file():
            result = json.loads(path.read_text(encoding="utf-8"))
            rows += result["rows"]
            stats += result["doc_stats"] if "doc_stats" in result else logged_stats(item.folder(root), result["rows"], plan)
    write_atomic(root / RESULTS_NAME, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    write_atomic(root / DOC_STATS_NAME, "".join(json.dumps(s, separators=(",", ":")) + "\n" for s in stats))
    return rows


def logged_stats(folder: Path, rows: list[dict[str, Any]], plan: Plan) -> list[dict[str, Any]]:
    """Per-document statistics of an item finished before results kept them, from its logged samples."""
    from sde_study.evaluate import logged_doc_stats
    from sde_study.work import stats_entry, task_labels

    found = []
    for row in rows:
        where = folder / ("eval" if row["kind"] == "tuned" else row.get("signal", ""))
        samples = sorted(where.glob(f"**/samples_{row['task']}_*.jsonl")) if "task" in row else []
        if samples:
            lines = samples[-1].read_text(encoding="utf-8").splitlines()
            found.append(stats_entry(row, logged_doc_stats([json.loads(line) for line in lines if line], task_labels(plan))))
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
            found[key] = DocStats(str(entry["family"]), tuple(entry["labels"]), table)
        except (ValueError, KeyError, TypeError, AttributeError) as err:
            from sde_datagen.errors import UserError

            raise UserError(f"{path}:{number}: not a per-document statistics row ({err}); delete the file and run "
                            f"`sde study report {root}` to collect it again") from None
    return found


def status_lines(root: Path, plan: Plan) -> list[str]:
    counts: dict[str, int] = {}
    lines = []
    for item in plan.items():
        state = item_state(root, item)
        counts[state["status"]] = counts.get(state["status"], 0) + 1
        detail = state.get("error") or state.get("where") or state.get("note") or ""
        lines.append(f"  {state['status']:<8} {item.id}" + (f"  ({detail})" if detail else ""))
    summary = ", ".join(f"{counts.get(s, 0)} {s}" for s in ("done", "running", "failed", "to do"))
    return [f"{root}: {plan.task}, {len(plan.designs)} design(s) x {len(plan.seeds)} seed(s): {summary}", *lines]
