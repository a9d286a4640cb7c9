"""`sde board validate` and `sde board submit`: a submission is accepted only when it checks out.

Checks, each failure reported in words:
  schema      submission.json conforms to submission.schema.json and names a valid variant id;
  tasks       every task of the results is in the installed task pack, at the installed version;
  full sets   no --limit, lm-eval's n-samples and the logged samples cover every test document once;
  design      the design of the run (lm-eval's task metadata) is the submission's design;
  docs        each logged document is the installed task pack's document (same prompt and gold);
  prompts     each logged context (`arguments`) is the prompt lm-eval builds for that document: the
              rendered prompt last, after exactly n-shot dev examples, through the run's chat template;
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
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from sde_datagen.errors import UserError
from sde_datagen.files import umask_mode
from sde_tasks.board.store import (
    META_NAME, RESULTS_NAME, SUBMISSIONS_DIR, Submission, load_submission, read_json, results_shape_errors,
    samples_name, schema_errors, submission_dirs,
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


@lru_cache(maxsize=32)
def fewshot_docs(task: str, design: str) -> tuple[dict[str, Any], ...]:
    """The dev documents lm-eval draws few-shot examples from, rendered for a design."""
    from sde_tasks.tasks.utils import FEWSHOT_SPLIT, load_docs

    kwargs = installed_tasks()[task].dataset_kwargs
    return tuple(load_docs(**kwargs, design=design, instruction=0)[FEWSHOT_SPLIT].to_list())


# How lm-eval joins a few-shot context (the task pack's _default_template_yaml sets both).
TARGET_DELIMITER, FEWSHOT_DELIMITER = "", "\n\n"


def logged_context(sample: dict[str, Any]) -> str | None:
    """The text lm-eval sent to the model for a generate_until sample (dict or older list form)."""
    arguments = sample.get("arguments")
    if isinstance(arguments, dict) and len(arguments) == 1:
        (first,) = arguments.values()
        context = first.get("arg_0") if isinstance(first, dict) else None
    elif isinstance(arguments, list) and len(arguments) == 1 and isinstance(arguments[0], list) and arguments[0]:
        context = arguments[0][0]
    else:
        context = None
    return context if isinstance(context, str) else None


def expected_context(prompt: str, examples: list[dict[str, Any]], chat: dict[str, Any] | None) -> str:
    """The context lm-eval builds: few-shot examples then the prompt, as plain text or as chat turns."""
    if chat is None:
        shots = "".join(e["prompt"] + TARGET_DELIMITER + e["completion"] + FEWSHOT_DELIMITER for e in examples)
        return shots + prompt
    from transformers.utils.chat_template_utils import render_jinja_template

    if chat["multiturn"]:
        messages = [turn for e in examples for turn in (
            {"role": "user", "content": e["prompt"]},
            {"role": "assistant", "content": TARGET_DELIMITER + e["completion"]})]
        messages.append({"role": "user", "content": prompt})
    else:
        messages = [{"role": "user", "content": expected_context(prompt, examples, None)}]
    rendered, _ = render_jinja_template([messages], chat_template=chat["template"], add_generation_prompt=True,
                                        **chat["tokens"])
    return rendered[0]


def _chat_settings(results: dict[str, Any], task: str, failures: list[str]) -> tuple[bool, dict[str, Any] | None]:
    """(readable, the run's chat template settings or None when it used none)."""
    if results.get("system_instruction") not in (None, ""):
        failures.append(f"task {task}: the run used a system instruction; the board compares designs by their "
                        "prompts alone, so run lm_eval without --system_instruction")
        return False, None
    template = results.get("chat_template")
    if template is None:
        return True, None
    if not isinstance(template, str):
        failures.append("results.json: field 'chat_template': must be text or null")
        return False, None
    tokens = {}
    for name in ("bos_token", "eos_token"):
        value = results.get(f"tokenizer_{name}")
        tokens[name] = value[0] if isinstance(value, list) and value and isinstance(value[0], str) else None
    return True, {"template": template, "multiturn": results.get("fewshot_as_multiturn") is not False,
                  "tokens": tokens}


def _prompt_failures(task: str, design: str, docs: tuple[dict[str, Any], ...], by_id: dict[int, dict[str, Any]],
                     n_shot: int, chat: dict[str, Any] | None) -> list[str]:
    """Documents whose logged context is not the one lm-eval builds from the installed task pack."""
    pool = fewshot_docs(task, design) if n_shot else ()
    wrong_count, edited, unrenderable = [], [], None
    for i, sample in sorted(by_id.items()):
        if not 0 <= i < len(docs):
            continue
        context = logged_context(sample)
        prompt = docs[i]["prompt"]
        if context is None or prompt not in context:
            edited.append(i)
            continue
        last = context.rindex(prompt)
        examples = sorted((context.find(e["prompt"]), k) for k, e in enumerate(pool) if e["prompt"] in context[:last])
        examples = [pool[k] for _, k in examples]
        if len(examples) != n_shot:
            wrong_count.append(i)
            continue
        try:
            expected = expected_context(prompt, examples, chat)
        except Exception as err:  # the run's own template: jinja raises anything  # noqa: BLE001
            unrenderable = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
            break
        if context != expected:
            edited.append(i)
    failures = []
    if unrenderable:
        failures.append(f"task {task}: the run's chat template cannot be re-rendered to check the prompts ({unrenderable})")
    if wrong_count:
        failures.append(f"task {task}: the results say {n_shot}-shot, but the logged contexts of these documents hold "
                        f"another number of dev examples: {_ids(wrong_count)}")
    if edited:
        failures.append(f"task {task}: the logged prompt (arguments) is not the prompt the task pack builds for "
                        f"documents {_ids(edited)}")
    return failures


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
    """The generation lm-eval scored: filtered_resps holds one string per request (one request here),
    the same as the raw response in resps, since the sde tasks apply no filter."""
    responses = sample.get("filtered_resps")
    if isinstance(responses, list) and len(responses) == 1 and isinstance(responses[0], str):
        if sample.get("resps") == [[responses[0]]]:
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
        from sde_tasks.board.user_task import check_user_task, spec_name

        if (sub.path / spec_name(task)).is_file():  # a user-declared task, carrying its spec
            return check_user_task(sub.path, results, task, design, failures)
        failures.append(f"task {task}: not in the installed task pack (tasks: {', '.join(installed_tasks())}); "
                        "a task of your own needs its spec: sde board submit … --task-spec FILE.yaml")
        return None
    before = len(failures)
    versions = _object(results.get("versions"), "versions", failures)
    configs = _object(results.get("configs"), "configs", failures)
    task_config = _object(configs.get(task), f"configs.{task}", failures)
    metadata = _object(task_config.get("metadata"), f"configs.{task}.metadata", failures)
    n_samples = _object(results.get("n-samples"), "n-samples", failures)
    counts = _object(n_samples.get(task), f"n-samples.{task}", failures)
    n_shots = _object(results.get("n-shot"), "n-shot", failures)
    reported_results = _object(results["results"].get(task), f"results.{task}", failures, optional=False)
    directions_all = _object(results.get("higher_is_better"), "higher_is_better", failures)
    n_shot = n_shots.get(task, 0)
    if not isinstance(n_shot, int) or isinstance(n_shot, bool) or n_shot < 0:
        failures.append(f"results.json: field 'n-shot.{task}': must be a whole number, not {n_shot!r}")
    readable, chat = _chat_settings(results, task, failures)
    if len(failures) > before or not readable:
        return None
    version = versions.get(task)
    if not _same_number(version, installed.version):
        failures.append(f"task {task}: evaluated with task version {version!r}, the installed task pack has "
                        f"version {installed.version!r}; re-run with the installed task pack")

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
    if not changed:
        failures.extend(problems := _prompt_failures(task, design, docs, by_id, n_shot, chat))
        changed = [True] if problems else []
    predictions = [_prediction(by_id[i]) if i in by_id else None for i in range(n)]
    unreadable = [i for i, p in enumerate(predictions) if p is None and i in by_id]
    if unreadable:
        failures.append(f"task {task}: logged samples without one generated text in filtered_resps equal to "
                        f"their resps: {_ids(unreadable)}")
    fingerprint = hashlib.sha256(json.dumps(predictions).encode("ascii")).hexdigest()  # ASCII: lone surrogates too
    if missing or unknown or repeated or changed or unreadable or filters:
        return fingerprint

    reported = {}
    for key, value in reported_results.items():
        metric, _, filter_name = key.rpartition(",")
        if filter_name == FILTER and not metric.endswith("_stderr"):
            reported[metric] = value
    unknown_metrics = sorted(set(reported) - set(installed.higher_is_better))
    if unknown_metrics:
        failures.append(f"task {task}: reports metric(s) the task pack does not compute: {', '.join(unknown_metrics)}")
    directions = directions_all.get(task)
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
    from sde_tasks.board.user_task import spec_name

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
    if meta.get("design") in PRESETS:  # the board records variant ids, which never change meaning
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
        stage = Path(tempfile.mkdtemp(dir=root, prefix=".submit-"))
    except OSError as err:
        raise UserError(f"--board {board}: cannot write there ({err.strerror})") from None
    final = root / submission_id(meta, results_file)
    if final.exists():
        stage.rmdir()
        return None, [f"this run is already submitted as {final}"]
    try:
        shutil.copyfile(results_file, stage / RESULTS_NAME)
        for task in tasks:
            shutil.copyfile(samples[task], stage / samples_name(task))
        (stage / META_NAME).write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        from sde_tasks.board.user_task import carry_specs

        failures = carry_specs(list(specs), results, stage) or validate_board(board, [stage])[stage]
        if failures:
            shutil.rmtree(stage)
            return None, failures
        os.chmod(stage, umask_mode(directory=True))
        stage.rename(final)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return final, []
