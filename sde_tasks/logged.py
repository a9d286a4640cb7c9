"""lm-eval's logged samples (`--log_samples`): their file names, how to read them, and which field is the answer.

lm-eval writes one `samples_<task>_<date>.jsonl` per task beside `results_<date>.json`; a board submission keeps
it as `samples_<task>.jsonl` and a study cell as `samples_<task>.jsonl.gz`. Each sample holds `resps` (every
response to each request, before filters) and `filtered_resps` (one per request, after the task's filter). The
answer lm-eval scored is `filtered_resps[0]`; the sde tasks apply no filter, so it must equal the raw response in
`resps`, and a sample where the two differ was edited or comes from another task: it has no answer (None).
Everything that reads logged samples (study cells, board validation, rescoring, intervals) reads them here.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

PREFIX = "samples_"


def run_files(folder: Path, task: str = "*", run: str = "*") -> list[Path]:
    """The samples files an lm-eval run wrote below `folder` (lm-eval names them samples_<task>_<date>.jsonl)."""
    found = sorted(folder.glob(f"**/{PREFIX}{task}_{run}.jsonl"))
    return found if task == "*" else [p for p in found if run_file_task(p) == task]  # not sde_x_ood for sde_x


def run_file_task(path: Path) -> str:
    """The task an lm-eval samples file belongs to."""
    return path.name.removeprefix(PREFIX).removesuffix(".jsonl").rsplit("_", 1)[0]


def kept_name(task: str, suffix: str = ".jsonl") -> str:
    """The fixed name a task's samples are kept under (a board submission; a study cell adds .gz)."""
    return f"{PREFIX}{task}{suffix}"


def answer(sample: Mapping[str, Any]) -> str | None:
    """The generation lm-eval scored in one logged sample (see the module's docstring); None when there is none."""
    responses = sample.get("filtered_resps")
    if isinstance(responses, list) and len(responses) == 1 and isinstance(responses[0], str):
        if sample.get("resps") == [[responses[0]]]:
            return responses[0]
    return None


def parse_lines(lines: list[str], name: str) -> tuple[list[dict[str, Any]], list[str]]:
    """The samples of a file's lines, and each problem with them in words (the file named by `name`)."""
    samples, failures = [], []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            sample = json.loads(line)
        except json.JSONDecodeError as err:
            failures.append(f"{name}:{number}: not valid JSON ({err.msg})")
            continue
        if not isinstance(sample, dict) or not isinstance(sample.get("doc_id"), int):
            failures.append(f"{name}:{number}: not an lm-eval logged sample (no integer doc_id)")
            continue
        samples.append(sample)
    return samples, failures


def read_samples(path: Path, task: str) -> tuple[list[dict[str, Any]], list[str]]:
    """The samples of one JSONL file, and each problem with it in words (a missing file is one)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return [], [f"task {task}: no logged samples ({path.name}); run lm_eval with --log_samples"]
    except UnicodeDecodeError as err:
        return [], [f"{path.name}: not UTF-8 text ({err})"]
    return parse_lines(lines, path.name)


def read_run(folder: Path, task: str = "*") -> list[dict[str, Any]]:
    """The samples an lm-eval run logged below `folder` (every task, or one), in document order."""
    rows = [json.loads(line) for path in run_files(folder, task)
            for line in path.read_text(encoding="utf-8").splitlines() if line]
    return sorted(rows, key=lambda r: r["doc_id"])
