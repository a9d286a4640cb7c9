"""`sde board rescore`: the board's metrics brought to the scorer of this version.

A fix to the scoring (a parser's error kinds, how stray spans count) changes what the same logged outputs
score, and `sde board validate` then rejects every entry scored before it. Rescoring recomputes each task's
metrics from the entry's own logged documents and outputs, with the functions lm-eval calls, and replaces the
numbers in its results.json; nothing else of the entry changes, and the outputs are never touched.
"""
from __future__ import annotations

import json
from pathlib import Path

from sde_files import write_atomic
from sde_tasks.board.samples import TOLERANCE, recomputed
from sde_tasks.board.store import RESULTS_NAME, load_submission, submission_dirs


def rescore(board: Path, paths: list[Path] | None = None) -> list[str]:
    """Rescore the submissions (all of the board's by default); one line per changed metric."""
    changes = []
    for folder in paths or submission_dirs(board):
        sub = load_submission(folder)
        results, changed = sub.results, []
        for task in sub.tasks:
            found = recomputed(folder, task)
            if found is None:
                changes.append(f"{folder.name}: task {task}: logged outputs unreadable, left as it is")
                continue
            reported = results["results"][task]
            for metric, value in found[0].corpus().items():
                key = f"{metric},none"
                if isinstance(reported.get(key), (int, float)) and abs(reported[key] - value) > TOLERANCE:
                    changed.append(f"{folder.name}: {task} {metric} {reported[key]:.6f} -> {value:.6f}")
                    reported[key] = value
        if changed:
            write_atomic(folder / RESULTS_NAME, json.dumps(results, indent=2, ensure_ascii=False) + "\n")
            changes += changed
    return changes
