"""Board checks of a user-declared task (`sde eval make-task`): the submission carries the spec.

The spec travels as `task_spec_<task>.yaml`; its sha256 must be the one lm-eval recorded for the
task (the task folder's `dataset_kwargs.sde_spec_sha256`), the task must be one its spec names,
every logged document must be consistent with the spec and design (its completion is the gold in
the design's format), and every metric is recomputed from the logged outputs with the spec, by
the functions lm-eval called. The test data is the submitter's, so the documents cannot be
compared with a copy of it: these runs get a table per task of their own, never a built-in one.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

from sde_datagen.errors import UserError
from sde_tasks.board.store import metric_values, spec_name


def check_user_task(path: Path, results: dict[str, Any], task: str, design: str, failures: list[str]) -> str | None:
    """Check one user task of a submission (appending failures); the fingerprint of its outputs when readable."""
    from sde_datagen.codecs import get_codec
    from sde_datagen.design import resolve_design
    from sde_tasks import metrics as m
    from sde_tasks.board.samples import FILTER, TOLERANCE, prediction, read_samples, same_number
    from sde_tasks.make_task import TASK_VERSION, task_names
    from sde_tasks.scoring import aggregate
    from sde_tasks.tasks.utils import UserTask, spec_sha256

    spec_path = path / spec_name(task)
    config = (results.get("configs") or {}).get(task) or {}
    kwargs = config.get("dataset_kwargs") or {}
    if kwargs.get("sde_spec_sha256") != spec_sha256(spec_path):
        failures.append(f"task {task}: {spec_path.name} is not the spec the run was evaluated with (sha256 "
                        f"{spec_sha256(spec_path)[:12]}…, the run recorded {str(kwargs.get('sde_spec_sha256'))[:12]}…)")
        return None
    user = UserTask(spec_path)
    try:
        spec = user.spec(kwargs.get("sde_domain"))
    except UserError as err:
        failures.append(f"task {task}: {err}")
        return None
    if task not in task_names(spec.name, True):
        failures.append(f"task {task}: its spec names the task {spec.name} (tasks sde_{spec.name}, sde_{spec.name}_ood)")
        return None
    if not same_number((results.get("versions") or {}).get(task), TASK_VERSION):
        failures.append(f"task {task}: not evaluated with the task version of this sde-kit ({TASK_VERSION})")
    metadata = config.get("metadata") or {}
    try:
        run_design = resolve_design(str(metadata.get("design")), spec.family).id
    except UserError as err:
        failures.append(f"task {task}: the run's design is not valid ({err})")
        return None
    if run_design != design or str(metadata.get("instruction", 0)) != "0":
        failures.append(f"task {task}: evaluated with design {run_design} (instruction "
                        f"{metadata.get('instruction', 0)!r}), the submission says {design} (instruction 0)")
        return None

    samples, problems = read_samples(path / f"samples_{task}.jsonl", task)
    failures.extend(problems)
    if not samples:
        return None
    by_id = {s["doc_id"]: s for s in samples}
    n = len(by_id)
    counts = (results.get("n-samples") or {}).get(task) or {}
    if sorted(by_id) != list(range(n)) or len(samples) != n or counts.get("original") != n \
            or counts.get("effective") != n:
        failures.append(f"task {task}: not the full test set once: {len(samples)} logged samples of documents "
                        f"{min(by_id)}..{max(by_id)}, lm-eval counted {counts!r}")
        return None
    codec = get_codec(spec, resolve_design(design, spec.family))
    docs = [by_id[i].get("doc") or {} for i in range(n)]
    inconsistent = []
    for i, doc in enumerate(docs):
        try:
            parsed = codec.parse(str(doc["completion"]), "strict")
            same = parsed.ok and parsed.targets == json.loads(doc["target"])
        except (KeyError, TypeError, ValueError):
            same = False
        if not same or doc.get("design") != design or doc.get("task") != spec.name \
                or doc.get("domain") != (kwargs.get("sde_domain") or ""):
            inconsistent.append(i)
    if inconsistent:
        failures.append(f"task {task}: logged documents are not this spec's documents for design {design}: "
                        f"{', '.join(map(str, inconsistent[:8]))}")
        return None
    predictions = [prediction(by_id[i]) for i in range(n)]
    fingerprint = hashlib.sha256(json.dumps(predictions).encode("ascii")).hexdigest()
    if any(p is None for p in predictions) or {str(s.get("filter")) for s in samples} != {FILTER}:
        failures.append(f"task {task}: logged samples without one unfiltered generated text")
        return fingerprint
    family = m.CLASSIFICATION_METRICS if spec.family == "classification" else m.EXTRACTION_METRICS
    directions = {name: name != "format_error_rate" for name in family}
    if (results.get("higher_is_better") or {}).get(task) != directions:
        failures.append(f"task {task}: higher_is_better is not the task's {directions!r}")
    reported = metric_values((results.get("results") or {}).get(task) or {}, numbers_only=False)
    values = aggregate([user.process_results(doc, [p]) for doc, p in zip(docs, predictions)], spec)
    for metric, value in values.items():
        got = reported.get(metric)
        if not isinstance(got, (int, float)) or not abs(got - value) <= TOLERANCE:
            failures.append(f"task {task}: reported {metric} = {got!r}, but the logged outputs give {value!r}")
    return fingerprint


def carry_specs(specs: list[Path], results: dict[str, Any], stage: Path) -> list[str]:
    """Copy each given spec beside the run's tasks it was evaluated with; failures for specs that fit none."""
    from sde_tasks.tasks.utils import spec_sha256

    failures = []
    for spec in specs:
        if not spec.is_file():
            raise UserError(f"--task-spec {spec}: not found")
        digest = spec_sha256(spec)
        tasks = [t for t, c in (results.get("configs") or {}).items()
                 if ((c or {}).get("dataset_kwargs") or {}).get("sde_spec_sha256") == digest]
        if not tasks:
            failures.append(f"--task-spec {spec}: no task of the run was evaluated with this spec")
        for task in tasks:
            shutil.copyfile(spec, stage / spec_name(task))
    return failures
