"""`sde board submit`: stage a run as a hidden folder, validate it against the board, rename it into place."""
from __future__ import annotations

import hashlib
import json
import re
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sde_datagen.errors import UserError
from sde_files import atomic_folder
from sde_tasks.board.store import META_NAME, RESULTS_NAME, SUBMISSIONS_DIR, read_json, samples_name, schema_errors
from sde_tasks.logged import run_file_task, run_files
from sde_tasks.board.references import carry_specs
from sde_tasks.board.validate import validate_board


_SLUG = re.compile(r"[^a-z0-9.]+")


def find_run(results_dir: Path) -> tuple[Path, dict[str, Path]]:
    """lm-eval's results file in RESULTS_DIR (searched below it) and the samples files of the same run."""
    if results_dir.is_file():
        found = [results_dir]
    elif results_dir.is_dir():
        found = sorted(results_dir.rglob("results_*.json"))
    else:
        raise UserError(f"{results_dir}: no such file or folder")
    if not found:
        raise UserError(f"{results_dir}: no lm-eval results_*.json below it (run lm_eval with --output_path)")
    if len(found) > 1:
        raise UserError(f"{results_dir} holds {len(found)} runs; pass the results_*.json of one:\n  "
                        + "\n  ".join(str(p) for p in found))
    results_file = found[0]
    date_id = results_file.stem.rsplit("_", 1)[-1]  # lm-eval names both files after the run's start time
    samples = {}
    for path in run_files(results_file.parent, run=date_id):
        samples[run_file_task(path)] = path
    return results_file, samples


def submission_id(meta: dict[str, Any], results_file: Path) -> str:
    """`<date>-<base model>-<design>-<8 hex of the results file>`: readable, sortable, unique per run."""
    model = _SLUG.sub("-", str(meta.get("base_model", {}).get("id", "model")).lower()).strip("-.")[:48] or "model"
    digest = hashlib.sha256(results_file.read_bytes()).hexdigest()[:8]
    return f"{meta.get('date', 'undated')}-{model}-{meta.get('design', 'design')}-{digest}"


def submit(results_dir: Path, meta_path: Path, board: Path,
           specs: Sequence[Path] = ()) -> tuple[Path | None, list[str]]:
    """Stage the run as a hidden folder, validate it against the board, then rename it into place.

    `specs`: the YAML specs of user-declared tasks in the run, carried into the submission.

    Returns (the new submission folder, []) or (None, failures); nothing stays behind on failure.
    """
    from sde_datagen.design import PRESETS

    meta = read_json(meta_path)
    if not isinstance(meta, dict):
        raise UserError(f"{meta_path}: must be a JSON object")
    if isinstance(meta.get("design"), str) and meta["design"] in PRESETS:  # the board records variant ids
        meta["design"] = PRESETS[meta["design"]].id
    problems = [p.replace("submission.json", str(meta_path), 1) for p in schema_errors(meta)]
    if problems:  # before anything reads the metadata's fields
        return None, problems
    results_file, samples = find_run(results_dir)
    results = read_json(results_file)
    if not isinstance(results, dict) or not isinstance(results.get("results"), dict):
        raise UserError(f"{results_file}: not an lm-eval results file (no 'results' object)")
    tasks = sorted(results["results"])
    failures = [f"task {t}: no logged samples beside {results_file.name}; run lm_eval with --log_samples"
                for t in tasks if t not in samples]
    if failures:
        return None, failures
    root = board / SUBMISSIONS_DIR
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"--board {board}: cannot write there ({err.strerror})") from None
    final = root / submission_id(meta, results_file)
    if final.exists():
        return None, [f"this run is already submitted as {final}"]
    try:
        with atomic_folder(final) as stage:
            shutil.copyfile(results_file, stage / RESULTS_NAME)
            for task in tasks:
                shutil.copyfile(samples[task], stage / samples_name(task))
            (stage / META_NAME).write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
            failures = carry_specs(list(specs), results, stage) or validate_board(board, [stage])[stage]
            if failures:
                raise _Refused(failures)
    except _Refused as refused:  # the staged folder is gone: nothing was added to the board
        return None, refused.failures
    return final, []


class _Refused(Exception):
    """A staged submission that failed validation: leaves atomic_folder without moving it into place."""

    def __init__(self, failures: list[str]):
        self.failures = failures
