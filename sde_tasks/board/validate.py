"""`sde board validate` and `sde board submit`: a submission is accepted only when it checks out.

Checks, each failure reported in words:
  schema      submission.json conforms to submission.schema.json and names a valid variant id;
  tasks       every task of the results is in the installed task pack, at the installed version;
  full sets   no --limit, lm-eval's n-samples and the logged samples cover every test document once;
  design      the design of the run (lm-eval's task metadata) is the submission's design;
  docs        each logged document is the installed task pack's document (same prompt and gold);
  metrics     each reported metric equals its value recomputed from the logged outputs (1e-6);
  duplicates  no other submission has the same model, adapter, design and task, or the same outputs.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from sde_datagen.errors import UserError
from sde_tasks.board.store import (
    META_NAME, RESULTS_NAME, SUBMISSIONS_DIR, Submission, load_submission, read_json, samples_name,
    schema_errors, submission_dirs,
)

TOLERANCE = 1e-6
FILTER = "none"  # the sde tasks define no filter: metrics are computed on the raw generation


# ------------------------------------------------------------------------------ the installed task pack

@dataclass(frozen=True)
class InstalledTask:
    """What the installed task pack says about one lm-eval task (read from its YAML)."""

    name: str
    version: Any
    dataset_kwargs: dict[str, Any]
    higher_is_better: dict[str, bool]  # metric -> direction, in the YAML's metric_list order


class _TaskYamlLoader(yaml.SafeLoader):
    """Safe YAML that reads lm-eval's `!function` tags as plain strings (nothing is imported)."""


_TaskYamlLoader.add_constructor("!function", lambda loader, node: loader.construct_scalar(node))


@lru_cache(maxsize=1)
def installed_tasks() -> dict[str, InstalledTask]:
    from sde_tasks.lm_eval_hook import tasks_dir

    tasks = {}
    for path in sorted(tasks_dir().glob("*.yaml")):
        config = yaml.load(path.read_text(encoding="utf-8"), Loader=_TaskYamlLoader)  # noqa: S506 (safe)
        if isinstance(config, dict) and "task" in config:
            tasks[config["task"]] = InstalledTask(
                name=config["task"],
                version=(config.get("metadata") or {}).get("version"),
                dataset_kwargs=dict(config.get("dataset_kwargs") or {}),
                higher_is_better={m["metric"]: bool(m.get("higher_is_better", True))
                                  for m in config.get("metric_list") or []},
            )
    return tasks


@lru_cache(maxsize=32)
def expected_docs(task: str, design: str, instruction: int) -> tuple[dict[str, Any], ...]:
    """The installed task pack's test documents, rendered for a design, exactly as lm-eval builds them."""
    from sde_tasks.tasks.utils import load_docs

    kwargs = installed_tasks()[task].dataset_kwargs
    return tuple(load_docs(**kwargs, design=design, instruction=instruction)["test"].to_list())


def recompute(docs: list[dict[str, Any]], predictions: list[str]) -> dict[str, float]:
    """Corpus metrics of predictions on documents, through the function lm-eval itself calls."""
    from sde_tasks.scoring import aggregate
    from sde_tasks.tasks.utils import process_results

    return aggregate([process_results(doc, [prediction]) for doc, prediction in zip(docs, predictions, strict=True)])


# ----------------------------------------------------------------------------------------- one submission

@dataclass
class Checked:
    """A submission after its own checks: its failures, and what the duplicate check compares."""

    path: Path
    failures: list[str]
    identities: set[tuple]  # (base id, base revision, adapter id, adapter revision, design, task)
    outputs: dict[str, str]  # task -> fingerprint of the logged outputs


def _read_samples(path: Path, task: str) -> tuple[list[dict[str, Any]], list[str]]:
    samples, failures = [], []
    try:
        with open(path, encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    sample = json.loads(line)
                except json.JSONDecodeError as err:
                    failures.append(f"{path.name}:{number}: not valid JSON ({err.msg})")
                    continue
                if not isinstance(sample, dict) or not isinstance(sample.get("doc_id"), int):
                    failures.append(f"{path.name}:{number}: not an lm-eval logged sample (no integer doc_id)")
                    continue
                samples.append(sample)
    except FileNotFoundError:
        failures.append(f"task {task}: no logged samples ({path.name}); run lm_eval with --log_samples")
    except UnicodeDecodeError as err:
        failures.append(f"{path.name}: not UTF-8 text ({err})")
    return samples, failures


def _prediction(sample: dict[str, Any]) -> str | None:
    """The generation lm-eval scored: filtered_resps holds one string per request (one request here)."""
    responses = sample.get("filtered_resps")
    if isinstance(responses, list) and len(responses) == 1 and isinstance(responses[0], str):
        return responses[0]
    return None


def _same_number(a: Any, b: Any) -> bool:
    try:
        return math.isclose(float(a), float(b), rel_tol=0, abs_tol=1e-9)
    except (TypeError, ValueError):
        return False


def _check_task(sub: Submission, task: str, design: str, failures: list[str]) -> str | None:
    """Check one task of a submission (appending failures); the fingerprint of its outputs when readable."""
    from sde_datagen.design import resolve_design

    results = sub.results
    installed = installed_tasks().get(task)
    if installed is None:
        failures.append(f"task {task}: not in the installed task pack (tasks: {', '.join(installed_tasks())})")
        return None
    version = (results.get("versions") or {}).get(task)
    if not _same_number(version, installed.version):
        failures.append(f"task {task}: evaluated with task version {version!r}, the installed task pack has "
                        f"version {installed.version!r}; re-run with the installed task pack")

    metadata = ((results.get("configs") or {}).get(task) or {}).get("metadata") or {}
    run_design_name = metadata.get("design")
    try:
        run_design = resolve_design(str(run_design_name)).id if run_design_name is not None else None
    except UserError as err:
        failures.append(f"task {task}: the run's design {run_design_name!r} is not a design ({err})")
        return None
    if run_design != design:
        failures.append(f"task {task}: evaluated with design {run_design or '(none recorded)'}, but the submission "
                        f"says {design}; pass --metadata '{{\"design\": \"{design}\"}}' to lm_eval")
        return None
    instruction = metadata.get("instruction", 0)
    if str(instruction) != "0":
        failures.append(f"task {task}: evaluated with paraphrased instruction {instruction!r}; the board compares "
                        "designs under the canonical instruction (0)")
        return None

    try:
        docs = expected_docs(task, design, 0)
    except UserError as err:  # e.g. a No-Inst design on the out-of-domain task: lm-eval cannot have run it
        failures.append(f"task {task}: {err}")
        return None
    n = len(docs)
    counts = (results.get("n-samples") or {}).get(task) or {}
    if counts.get("original") != n or counts.get("effective") != n:
        failures.append(f"task {task}: not the full test set: lm-eval evaluated {counts.get('effective')!r} of "
                        f"{counts.get('original')!r} documents, the test set has {n}")

    samples, problems = _read_samples(sub.samples_path(task), task)
    failures.extend(problems)
    if not samples:
        return None
    by_id: dict[int, dict[str, Any]] = {}
    repeated = []
    for sample in samples:
        if sample["doc_id"] in by_id:
            repeated.append(sample["doc_id"])
        by_id.setdefault(sample["doc_id"], sample)
    if repeated:
        failures.append(f"task {task}: documents logged more than once: {_ids(repeated)}")
    missing = [i for i in range(n) if i not in by_id]
    if missing:
        failures.append(f"task {task}: {len(missing)} of {n} test documents have no logged sample: {_ids(missing)}")
    unknown = sorted(i for i in by_id if not 0 <= i < n)
    if unknown:
        failures.append(f"task {task}: logged samples for documents that are not in the test set: {_ids(unknown)}")
    filters = sorted({str(s.get("filter")) for s in samples} - {FILTER})
    if filters:
        failures.append(f"task {task}: logged samples use filter(s) {', '.join(filters)}; the sde tasks have none")
    changed = [i for i in range(n) if i in by_id and by_id[i].get("doc") != docs[i]]
    if changed:
        failures.append(f"task {task}: logged documents differ from the installed test set (prompt or gold): "
                        f"{_ids(changed)}")
    predictions = [_prediction(by_id[i]) if i in by_id else None for i in range(n)]
    unreadable = [i for i, p in enumerate(predictions) if p is None and i in by_id]
    if unreadable:
        failures.append(f"task {task}: logged samples without one generated text in filtered_resps: {_ids(unreadable)}")
    fingerprint = hashlib.sha256(json.dumps(predictions, ensure_ascii=False).encode("utf-8")).hexdigest()
    if missing or unknown or repeated or changed or unreadable or filters:
        return fingerprint

    reported = {}
    for key, value in (results["results"].get(task) or {}).items():
        metric, _, filter_name = key.rpartition(",")
        if filter_name == FILTER and not metric.endswith("_stderr"):
            reported[metric] = value
    unknown_metrics = sorted(set(reported) - set(installed.higher_is_better))
    if unknown_metrics:
        failures.append(f"task {task}: reports metric(s) the task pack does not compute: {', '.join(unknown_metrics)}")
    directions = (results.get("higher_is_better") or {}).get(task)
    if directions != installed.higher_is_better:
        failures.append(f"task {task}: higher_is_better is {directions!r}, the task pack says {installed.higher_is_better!r}")
    for metric, value in recompute(docs, predictions).items():
        if metric not in reported:
            failures.append(f"task {task}: metric {metric} is missing from the results")
        elif not isinstance(reported[metric], (int, float)) or not abs(reported[metric] - value) <= TOLERANCE:
            failures.append(f"task {task}: reported {metric} = {reported[metric]!r}, but the logged outputs give "
                            f"{value!r} (difference above {TOLERANCE:g})")
    return fingerprint


def _ids(ids: list[int], shown: int = 8) -> str:
    head = ", ".join(str(i) for i in ids[:shown])
    return head + (f", … ({len(ids)} in all)" if len(ids) > shown else "")


def check_submission(path: Path) -> Checked:
    """Every check that needs only this submission (duplicates are compared across submissions)."""
    from sde_datagen.design import Design

    try:
        sub = load_submission(path)
    except UserError as err:
        return Checked(path, [str(err)], set(), {})
    failures = schema_errors(sub.meta)
    if failures:
        return Checked(path, failures, set(), {})
    meta = sub.meta
    try:
        design = Design.from_id(meta["design"]).id
    except UserError as err:
        return Checked(path, [f"submission.json: design: {err}"], set(), {})
    config = sub.results.get("config") or {}
    if config.get("limit") is not None:
        failures.append(f"the run used --limit {config['limit']}: only full test sets are accepted")
    if not sub.tasks:
        failures.append("results.json holds no task results")
    expected_files = {META_NAME, RESULTS_NAME} | {samples_name(t) for t in sub.tasks}
    extra = sorted(p.name for p in path.iterdir() if p.name not in expected_files)
    if extra:
        failures.append(f"files that belong to no task of the results: {', '.join(extra)}")
    adapter = meta["adapter"] or {"id": None, "revision": None}
    identities, outputs = set(), {}
    for task in sub.tasks:
        fingerprint = _check_task(sub, task, design, failures)
        identities.add((meta["base_model"]["id"], meta["base_model"]["revision"], adapter["id"], adapter["revision"],
                        design, task))
        if fingerprint is not None:
            outputs[task] = fingerprint
    return Checked(path, failures, identities, outputs)


def duplicate_failures(checked: Checked, other: Checked) -> list[str]:
    same = sorted(checked.identities & other.identities)
    failures = [f"duplicate of {other.path.name}: same base model, adapter and design on {t[-1]}" for t in same]
    shared = {t for t in checked.outputs.keys() & other.outputs.keys() if checked.outputs[t] == other.outputs[t]}
    failures += [f"duplicate of {other.path.name}: identical logged outputs on {t}"
                 for t in sorted(shared - {t[-1] for t in same})]
    return failures


# ------------------------------------------------------------------------------------------- a board

def validate_board(board: Path, paths: list[Path] | None = None) -> dict[Path, list[str]]:
    """Failures of each submission (all of the board's when paths is None), duplicates included."""
    from tqdm import tqdm

    everything = submission_dirs(board)
    wanted = everything if paths is None else list(paths)
    for path in wanted:
        if not path.is_dir():
            raise UserError(f"{path}: not a submission folder")
    wanted_keys = {p.resolve() for p in wanted}
    checked = {p.resolve(): check_submission(p) for p in tqdm(
        wanted + [p for p in everything if p.resolve() not in wanted_keys], desc="validating", unit="submission",
        disable=len(everything) + len(wanted) < 5)}
    report = {}
    for path in wanted:
        mine = checked[path.resolve()]
        failures = list(mine.failures)
        for key, other in checked.items():
            if key != path.resolve():
                failures += duplicate_failures(mine, other)
        report[path] = failures
    return report


# ------------------------------------------------------------------------------------------- submit

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
    for path in results_file.parent.glob(f"samples_*_{date_id}.jsonl"):
        samples[path.name.removeprefix("samples_").removesuffix(f"_{date_id}.jsonl")] = path
    return results_file, samples


def submission_id(meta: dict[str, Any], results_file: Path) -> str:
    """`<date>-<base model>-<design>-<8 hex of the results file>`: readable, sortable, unique per run."""
    model = _SLUG.sub("-", str(meta.get("base_model", {}).get("id", "model")).lower()).strip("-.")[:48] or "model"
    digest = hashlib.sha256(results_file.read_bytes()).hexdigest()[:8]
    return f"{meta.get('date', 'undated')}-{model}-{meta.get('design', 'design')}-{digest}"


def submit(results_dir: Path, meta_path: Path, board: Path) -> tuple[Path | None, list[str]]:
    """Stage the run as a hidden folder, validate it against the board, then rename it into place.

    Returns (the new submission folder, []) or (None, failures); nothing stays behind on failure.
    """
    from sde_datagen.design import PRESETS

    meta = read_json(meta_path)
    if not isinstance(meta, dict):
        raise UserError(f"{meta_path}: must be a JSON object")
    if meta.get("design") in PRESETS:  # the board records variant ids, which never change meaning
        meta["design"] = PRESETS[meta["design"]].id
    results_file, samples = find_run(results_dir)
    results = read_json(results_file)
    tasks = sorted((results.get("results") or {}) if isinstance(results, dict) else {})
    failures = [f"task {t}: no logged samples beside {results_file.name}; run lm_eval with --log_samples"
                for t in tasks if t not in samples]
    if failures:
        return None, failures
    root = board / SUBMISSIONS_DIR
    root.mkdir(parents=True, exist_ok=True)
    final = root / submission_id(meta, results_file)
    if final.exists():
        return None, [f"this run is already submitted as {final}"]
    stage = Path(tempfile.mkdtemp(dir=root, prefix=".submit-"))
    try:
        shutil.copyfile(results_file, stage / RESULTS_NAME)
        for task in tasks:
            shutil.copyfile(samples[task], stage / samples_name(task))
        (stage / META_NAME).write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        report = validate_board(board, [stage])
        failures = report[stage]
        if failures:
            shutil.rmtree(stage)
            return None, failures
        os.chmod(stage, 0o755)
        stage.rename(final)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return final, []
