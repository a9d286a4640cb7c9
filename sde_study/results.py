"""What a study folder holds: each work item's state, and results.jsonl collected in plan order."""
from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any

from sde_study.plan import Plan, WorkItem, write_atomic
from sde_study.work import RESULT, STATE

RESULTS_NAME = "results.jsonl"


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
    """Rows of every finished item, in plan order; rewrites DIR/results.jsonl atomically."""
    rows = []
    for item in plan.items():
        path = item.folder(root) / RESULT
        if path.is_file():
            rows += json.loads(path.read_text(encoding="utf-8"))["rows"]
    write_atomic(root / RESULTS_NAME, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return rows


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
