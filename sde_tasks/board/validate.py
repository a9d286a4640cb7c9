"""`sde board validate`: a submission is accepted only when it checks out.

Checks, each failure reported in words:
  schema      submission.json conforms to submission.schema.json and names a valid variant id;
  tasks       every task of the results is in the installed task pack at its version, or is a user's task whose
              spec the submission carries (sde_tasks.board.references: what each kind is checked against);
  full sets   no --limit, lm-eval's n-samples and the logged samples cover every test document once;
  design      the design of the run (lm-eval's task metadata) is the submission's design;
  docs        each logged document is the installed task pack's document (same prompt and gold);
  prompts     each logged context (`arguments`) is the prompt lm-eval builds for that document: the
              rendered prompt last, after exactly n-shot dev examples, through the run's chat template
              (sde_tasks.board.prompts);
  metrics     each reported metric equals its value recomputed from the logged outputs (1e-6);
  duplicates  no other submission has the same model, adapter, design and task, or the same outputs.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sde_datagen.errors import UserError
from sde_tasks.board.installed import installed_tasks
from sde_tasks.board.prompts import chat_settings
from sde_tasks.board.samples import FILTER, TOLERANCE, doc_ids, same_number
from sde_tasks.logged import answer, read_samples
from sde_tasks.board.store import (
    META_NAME, RESULTS_NAME, Submission, load_submission, metric_values, results_shape_errors, samples_name,
    schema_errors,
    spec_name, submission_dirs,
)
from sde_tasks.board.references import BuiltinReference, UserReference


def _object(value: Any, field: str, failures: list[str], optional: bool = True) -> dict[str, Any]:
    """`value` when it is a JSON object; otherwise a failure naming the field, and {}."""
    if isinstance(value, dict):
        return value
    if not (optional and value is None):
        failures.append(f"results.json: field '{field}': must be an object, not {type(value).__name__}")
    return {}


# ----------------------------------------------------------------------------------------- one submission

@dataclass
class Checked:
    """A submission after its own checks: its failures, and what the duplicate check compares."""

    path: Path
    failures: list[str]
    identities: set[tuple]  # (base id, base revision, adapter id, adapter revision, design, task)
    outputs: dict[str, str]  # task -> fingerprint of the logged outputs


def _check_task(sub: Submission, task: str, design: str, failures: list[str]) -> str | None:
    """Check one task of a submission (appending failures), built-in or user-declared alike, against its reference;
    the fingerprint of its outputs when readable."""
    reference = _reference(sub, task, failures)
    if reference is None:
        return None
    shape = _run_shape(sub.results, task, failures)
    if shape is None or not _same_design(shape.metadata, task, design, failures):
        return None
    if not same_number(shape.version, reference.version):
        failures.append(f"task {task}: evaluated with task version {shape.version!r}, {reference.name} has version "
                        f"{reference.version!r}; re-run with it")
    samples, problems = read_samples(sub.samples_path(task), task)
    failures.extend(problems)
    if not samples:
        return None
    by_id: dict[int, dict[str, Any]] = {}
    repeated = []
    for sample in samples:
        if sample["doc_id"] in by_id:
            repeated.append(sample["doc_id"])
        by_id.setdefault(sample["doc_id"], sample)
    docs = reference.documents(design, by_id, failures)
    if docs is None:
        return None
    n = len(docs)
    if shape.counts.get("original") != n or shape.counts.get("effective") != n:
        failures.append(f"task {task}: not the full test set: lm-eval evaluated {shape.counts.get('effective')!r} of "
                        f"{shape.counts.get('original')!r} documents, the test set has {n}")
    if repeated:
        failures.append(f"task {task}: documents logged more than once: {doc_ids(repeated)}")
    missing = [i for i in range(n) if i not in by_id]
    if missing:
        failures.append(f"task {task}: {len(missing)} of {n} test documents have no logged sample: {doc_ids(missing)}")
    unknown = sorted(i for i in by_id if not 0 <= i < n)
    if unknown:
        failures.append(f"task {task}: logged samples for documents that are not in the test set: {doc_ids(unknown)}")
    filters = sorted({str(s.get("filter")) for s in samples} - {FILTER})
    if filters:
        failures.append(f"task {task}: logged samples use filter(s) {', '.join(filters)}; the sde tasks have none")
    changed = [i for i in range(n) if i in by_id and by_id[i].get("doc") != docs[i]]
    if changed:
        failures.append(f"task {task}: logged documents differ from {reference.name}'s test set (prompt or gold): "
                        f"{doc_ids(changed)}")
    else:
        failures.extend(problems := reference.prompt_failures(design, docs, by_id, shape.n_shot, shape.chat))
        changed = [True] if problems else []
    predictions = [answer(by_id[i]) if i in by_id else None for i in range(n)]
    unreadable = [i for i, p in enumerate(predictions) if p is None and i in by_id]
    if unreadable:
        failures.append(f"task {task}: logged samples without one generated text in filtered_resps equal to "
                        f"their resps: {doc_ids(unreadable)}")
    fingerprint = hashlib.sha256(json.dumps(predictions).encode("ascii")).hexdigest()  # ASCII: lone surrogates too
    if not (missing or unknown or repeated or changed or unreadable or filters):
        _check_metrics(task, reference, shape, reference.recompute(docs, predictions), failures)
    return fingerprint


def _reference(sub: Submission, task: str, failures: list[str]) -> BuiltinReference | UserReference | None:
    """What a task's run is checked against: the installed task pack, or the spec the submission carries."""
    installed = installed_tasks().get(task)
    if installed is not None:
        return BuiltinReference(task, installed)
    if (sub.path / spec_name(task)).is_file():
        return UserReference.load(sub.path, sub.results, task, failures)
    failures.append(f"task {task}: not in the installed task pack (tasks: {', '.join(installed_tasks())}); "
                    "a task of your own needs its spec: sde board submit … --task-spec FILE.yaml")
    return None


@dataclass
class RunShape:
    """The parts of results.json that describe one task's run, each checked to be of the right type."""

    version: Any
    metadata: dict[str, Any]
    counts: dict[str, Any]
    n_shot: int
    chat: dict[str, Any] | None
    reported: dict[str, Any]
    directions: Any


def _run_shape(results: dict[str, Any], task: str, failures: list[str]) -> RunShape | None:
    before = len(failures)
    versions = _object(results.get("versions"), "versions", failures)
    configs = _object(results.get("configs"), "configs", failures)
    task_config = _object(configs.get(task), f"configs.{task}", failures)
    metadata = _object(task_config.get("metadata"), f"configs.{task}.metadata", failures)
    n_samples = _object(results.get("n-samples"), "n-samples", failures)
    counts = _object(n_samples.get(task), f"n-samples.{task}", failures)
    n_shots = _object(results.get("n-shot"), "n-shot", failures)
    reported = _object(results["results"].get(task), f"results.{task}", failures, optional=False)
    directions = _object(results.get("higher_is_better"), "higher_is_better", failures)
    n_shot = n_shots.get(task, 0)
    if not isinstance(n_shot, int) or isinstance(n_shot, bool) or n_shot < 0:
        failures.append(f"results.json: field 'n-shot.{task}': must be a whole number, not {n_shot!r}")
    readable, chat = chat_settings(results, task, failures)
    if len(failures) > before or not readable:
        return None
    return RunShape(versions.get(task), metadata, counts, n_shot, chat, reported, directions.get(task))


def _same_design(metadata: dict[str, Any], task: str, design: str, failures: list[str]) -> bool:
    """The run's design (lm-eval's metadata) is the submission's, under the canonical instruction."""
    from sde_datagen.design import resolve_design

    run_design_name = metadata.get("design")
    try:
        run_design = resolve_design(str(run_design_name)).id if run_design_name is not None else None
    except UserError as err:
        failures.append(f"task {task}: the run's design {run_design_name!r} is not a design ({err})")
        return False
    if run_design != design:
        failures.append(f"task {task}: evaluated with design {run_design or '(none recorded)'}, but the submission "
                        f"says {design}; pass --metadata '{{\"design\": \"{design}\"}}' to lm_eval")
        return False
    instruction = metadata.get("instruction", 0)
    if str(instruction) != "0":
        failures.append(f"task {task}: evaluated with paraphrased instruction {instruction!r}; the board compares "
                        "designs under the canonical instruction (0)")
        return False
    return True


def _check_metrics(task: str, reference: BuiltinReference | UserReference, shape: RunShape,
                   recomputed: dict[str, float], failures: list[str]) -> None:
    """The run's directions are the task's, and every reported metric is its value recomputed from the outputs."""
    reported = metric_values(shape.reported, numbers_only=False)
    unknown_metrics = sorted(set(reported) - set(reference.higher_is_better))
    if unknown_metrics:
        failures.append(f"task {task}: reports metric(s) the task does not compute: {', '.join(unknown_metrics)}")
    if shape.directions != reference.higher_is_better:
        failures.append(f"task {task}: higher_is_better is {shape.directions!r}, {reference.name} says "
                        f"{reference.higher_is_better!r}")
    for metric, value in recomputed.items():
        if metric not in reported:
            failures.append(f"task {task}: metric {metric} is missing from the results")
        elif not isinstance(reported[metric], (int, float)) or not abs(reported[metric] - value) <= TOLERANCE:
            failures.append(f"task {task}: reported {metric} = {reported[metric]!r}, but the logged outputs give "
                            f"{value!r} (difference above {TOLERANCE:g})")


def check_submission(path: Path) -> Checked:
    """Every check that needs only this submission (duplicates are compared across submissions)."""
    from sde_datagen.design import Design

    try:
        sub = load_submission(path)
    except UserError as err:
        return Checked(path, [str(err)], set(), {})
    failures = schema_errors(sub.meta) + results_shape_errors(sub.results)
    if failures:
        return Checked(path, failures, set(), {})
    meta = sub.meta
    try:
        design = Design.from_id(meta["design"]).id
    except UserError as err:
        return Checked(path, [f"submission.json: design: {err}"], set(), {})
    config = _object(sub.results.get("config"), "config", failures)
    if config.get("limit") is not None:
        failures.append(f"the run used --limit {config['limit']}: only full test sets are accepted")
    if not sub.tasks:
        failures.append("results.json holds no task results")
    expected_files = {META_NAME, RESULTS_NAME} | {samples_name(t) for t in sub.tasks} | {spec_name(t) for t in sub.tasks}
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
    report: dict[Path, list[str]] = {p: [f"{p}: not a submission folder"] for p in wanted if not p.is_dir()}
    wanted = [p for p in wanted if p not in report]  # one bad path does not stop the others being checked
    wanted_keys = {p.resolve() for p in wanted}
    checked = {p.resolve(): check_submission(p) for p in tqdm(
        wanted + [p for p in everything if p.resolve() not in wanted_keys], desc="validating", unit="submission",
        disable=len(everything) + len(wanted) < 5)}
    for path in wanted:
        mine = checked[path.resolve()]
        failures = list(mine.failures)
        for key, other in checked.items():
            if key != path.resolve():
                failures += duplicate_failures(mine, other)
        report[path] = failures
    return report
