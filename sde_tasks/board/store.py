"""Reading a board folder: submissions, their metadata and their lm-eval results.

A submission folder holds `submission.json`, lm-eval's results JSON as `results.json` and its logged
samples as `samples_<task>.jsonl`; the names are fixed so that tools and people find them.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from sde_datagen.errors import UserError
from sde_tasks.logged import kept_name

SCHEMA_PATH = Path(__file__).with_name("submission.schema.json")
META_NAME = "submission.json"
RESULTS_NAME = "results.json"
SUBMISSIONS_DIR = "submissions"
# lm-eval task names become file names and HTML ids; anything else is not one of ours.
TASK_NAME = re.compile(r"^[A-Za-z0-9_]+$")


def samples_name(task: str) -> str:
    return kept_name(task)


def spec_name(task: str) -> str:
    """The YAML spec a submission carries for a user-declared task."""
    return f"task_spec_{task}.yaml"


def read_json(path: Path) -> Any:
    """A JSON file's value, or a UserError naming the file and what is wrong with it."""
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError:
        raise UserError(f"{path}: missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UserError(f"{path}: not valid JSON ({err})") from None


@lru_cache(maxsize=1)
def _schema_validator():
    import jsonschema

    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def schema_errors(meta: Any) -> list[str]:
    """Each way `meta` breaks the submission schema, in words (empty when it conforms)."""
    errors = sorted(_schema_validator().iter_errors(meta), key=lambda e: list(e.absolute_path))
    return [
        f"submission.json: {'.'.join(str(p) for p in err.absolute_path) or 'top level'}: {err.message}"
        for err in errors
    ]


def metric_values(task_results: dict[str, Any], numbers_only: bool = True) -> dict[str, Any]:
    """lm-eval's `{"kappa,none": 0.5, "kappa_stderr,none": "N/A", "alias": …}` -> `{"kappa": 0.5}`: the one
    reader of lm-eval's metric keys.

    Only the unfiltered ("none") values: the sde tasks score the raw generation, with no filter. With
    `numbers_only=False` a value of another type is kept as it is (validation reports it).
    """
    values = {}
    for key, value in task_results.items():
        metric, _, filter_name = key.rpartition(",")
        if filter_name != "none" or metric.endswith("_stderr"):
            continue
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            values[metric] = float(value)
        elif not numbers_only:
            values[metric] = value
    return values


RESULTS_OBJECTS = ("config", "configs", "versions", "n-shot", "n-samples", "higher_is_better")


def results_shape_errors(results: dict[str, Any]) -> list[str]:
    """Each field of an lm-eval results file that has the wrong JSON type, named (empty when fine)."""
    errors = [f"{RESULTS_NAME}: field '{name}': must be an object, not {type(results[name]).__name__}"
              for name in RESULTS_OBJECTS if results.get(name) is not None and not isinstance(results[name], dict)]
    for task, value in results["results"].items():
        if not isinstance(value, dict):
            errors.append(f"{RESULTS_NAME}: field 'results.{task}': must be an object, not {type(value).__name__}")
        for name in ("configs", "higher_is_better", "n-samples"):
            inner = results.get(name)
            if isinstance(inner, dict) and inner.get(task) is not None and not isinstance(inner[task], dict):
                errors.append(f"{RESULTS_NAME}: field '{name}.{task}': must be an object, "
                              f"not {type(inner[task]).__name__}")
    return errors


@dataclass(frozen=True)
class Submission:
    """One submission folder, with its metadata and its results parsed."""

    path: Path
    meta: dict[str, Any]
    results: dict[str, Any]

    @property
    def id(self) -> str:
        return self.path.name

    @property
    def tasks(self) -> list[str]:
        return sorted(self.results.get("results", {}))

    def samples_path(self, task: str) -> Path:
        return self.path / samples_name(task)


def submission_dirs(board: Path) -> list[Path]:
    """The submission folders of a board, in name order (hidden ones are unfinished submits)."""
    root = board / SUBMISSIONS_DIR
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def load_submission(path: Path) -> Submission:
    """Parse a submission folder's two JSON files (the shape of each is checked by the validator)."""
    meta = read_json(path / META_NAME)
    results = read_json(path / RESULTS_NAME)
    if not isinstance(meta, dict):
        raise UserError(f"{path / META_NAME}: must be a JSON object")
    if not isinstance(results, dict) or not isinstance(results.get("results"), dict):
        raise UserError(f"{path / RESULTS_NAME}: not an lm-eval results file (no 'results' object)")
    return Submission(path=path, meta=meta, results=results)
