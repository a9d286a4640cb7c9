"""One worker: runs work items of a study folder in order, each resumable and each marked when done.

A cell is done when `result.json` exists (written atomically, last). Training runs with sde_train's
`--resume`, so a killed cell continues from its last checkpoint; a cell killed while evaluating is
evaluated again from the start. A failing item is recorded (`state.json`, with the error) and the
worker goes on with the next one. Several workers share a study folder: each item is run under a file lock
(`worker.lock` in its folder), and a worker leaves an item whose lock another one holds.
"""
from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from sde_files import write_atomic
from sde_study.folder import StudyFolder, stats_entry
from sde_study.plan import ADAPTER, ALL_DOCS, EVAL, LOCK, RESULT, STATE, TRAINED, Plan, WorkItem, require_plan


def item_by_id(plan: Plan, item_id: str) -> tuple[WorkItem, bool]:
    """The work item an id names, and whether it asks for a cell's evaluation on every test document (a staged
    race's finalist: `<design>/seed-<n>:all`)."""
    base, all_docs = (item_id[:-len(ALL_DOCS)], True) if item_id.endswith(ALL_DOCS) else (item_id, False)
    found = next((i for i in plan.items() if i.id == base and (i.kind == "cell" or not all_docs)), None)
    if found is None:
        from sde_datagen.errors import UserError

        raise UserError(f"no work item '{item_id}' in this study's plan (`sde study status` lists them)")
    return found, all_docs


def is_done(root: Path, plan: Plan, item: WorkItem, all_docs: bool = False) -> bool:
    """Its result is there (and, asked for every document, holds every document's evaluation)."""
    path = item.folder(root) / RESULT
    if not path.is_file():
        return False
    return not all_docs or all(row.get("eval_limit") == plan.eval_limit
                               for row in json.loads(path.read_text(encoding="utf-8"))["rows"])


def cell_limit(plan: Plan, all_docs: bool) -> int | None:
    """The test documents a cell is evaluated on: a staged race's first ones, else (and for its finalists) the plan's."""
    from sde_study.race import stages_of

    stages = None if all_docs else stages_of(plan)
    return stages.first_docs if stages else plan.eval_limit


@dataclass
class Outcome:
    """What a worker's run of items ended with: the failures ("item: error") and the items another worker held."""

    failures: list[str] = field(default_factory=list)
    elsewhere: list[str] = field(default_factory=list)

    def add(self, other: "Outcome") -> "Outcome":
        return Outcome(self.failures + other.failures, self.elsewhere + other.elsewhere)


def run_items(root: Path, item_ids: list[str], nproc_per_node: int = 1) -> Outcome:
    """Run the items (skipping finished ones, and those another worker holds) with one evaluation engine for all."""
    from tqdm.auto import tqdm

    from sde_study.engines import make_engine

    root = Path(root)
    plan = require_plan(root)
    engine = make_engine(plan.engine, plan.model, plan.eval_batch_size, plan_lora_rank(plan), plan.vllm)
    outcome = Outcome()
    for item, all_docs in tqdm([item_by_id(plan, i) for i in item_ids], desc="study", unit="item", position=0):
        folder = item.folder(root)
        with claimed(folder) as mine:
            if not mine:
                outcome.elsewhere.append(item.id)
            elif not is_done(root, plan, item, all_docs):  # again under the lock: another worker may have just done it
                failure = run_item(root, plan, item, engine, nproc_per_node, all_docs)
                if failure:
                    outcome.failures.append(failure)
    return outcome


def run_item(root: Path, plan: Plan, item: WorkItem, engine, nproc_per_node: int, all_docs: bool = False) -> str | None:
    """Run one item the caller holds the lock of: its result.json when it succeeds, else the failure in words."""
    folder = item.folder(root)
    errors = earlier_errors(folder)
    set_state(folder, "running", errors=errors)
    try:
        rows, stats = (run_cell(root, plan, item, engine, nproc_per_node, all_docs) if item.kind == "cell"
                       else run_signals(root, plan, item, engine))
    except Exception as err:  # recorded, shown by `sde study status`, retried by the next run
        message = f"{type(err).__name__}: {err}".strip().splitlines()[0]
        set_state(folder, "failed", error=message, errors=[*errors, message], traceback=traceback.format_exc())
        return f"{item.id}: {message}"
    write_atomic(folder / RESULT, json.dumps({"rows": rows, "doc_stats": stats}, ensure_ascii=False,
                                             separators=(",", ":")) + "\n")
    set_state(folder, "done")
    return None


@contextlib.contextmanager
def claimed(folder: Path) -> Iterator[bool]:
    """The item's lock, held for the block: True when this worker holds it, False when another one does. It is a
    file lock, which the operating system releases when its holder dies, however it dies (no pid to trust)."""
    from filelock import FileLock, Timeout

    folder.mkdir(parents=True, exist_ok=True)
    lock = FileLock(folder / LOCK)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        yield False
        return
    try:
        yield True
    finally:
        lock.release()


def is_locked(folder: Path) -> bool:
    """A worker (in another process) runs the item in `folder` now."""
    if not (folder / LOCK).is_file():
        return False
    with claimed(folder) as mine:
        return not mine


def earlier_errors(folder: Path) -> list[str]:
    """The errors of the item's earlier failed attempts (the race gives up on a cell that failed twice the same way)."""
    try:
        errors = json.loads((folder / STATE).read_text(encoding="utf-8")).get("errors", [])
    except (OSError, ValueError, AttributeError):
        return []
    return [str(e) for e in errors] if isinstance(errors, list) else []


def set_state(folder: Path, status: str, **extra: Any) -> None:
    state = {"status": status, "host": socket.gethostname(), "pid": os.getpid(), "time": time.time(), **extra}
    write_atomic(folder / STATE, json.dumps(state, ensure_ascii=False) + "\n")


# --------------------------------------------------------------------------------------------- a tuned cell

def cell_train_config(root: Path, plan: Plan, item: WorkItem) -> dict[str, Any]:
    from sde_study.exports import export_dir

    return {**plan.train, "model": plan.model, "dataset": str(export_dir(root, item.design)),
            "config": item.design, "output": str(item.folder(root) / ADAPTER), "seed": item.seed,
            "chat_template": plan.chat_template, "resume": True}


def train_cell(root: Path, plan: Plan, item: WorkItem, nproc_per_node: int) -> dict[str, Any]:
    """Train (or resume) the cell's adapter with sde_train: in this process, or in a process of its own (torchrun
    with several processes per cell, and always beside a vLLM engine: vLLM changes the process that holds it)."""
    settings = cell_train_config(root, plan, item)
    if nproc_per_node == 1 and plan.engine != "vllm":
        from sde_train.config import TrainConfig
        from sde_train.trainer import train

        return train(TrainConfig(**settings).check())
    import yaml

    config_file = item.folder(root) / "train_config.yaml"
    write_atomic(config_file, yaml.safe_dump(settings, sort_keys=False, allow_unicode=True))
    launcher = ["-m", "torch.distributed.run", f"--nproc_per_node={nproc_per_node}"] if nproc_per_node > 1 else []
    done = subprocess.run([sys.executable, *launcher, "-m", "sde_train", "--train-config", str(config_file)],
                          stdout=subprocess.PIPE, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"sde_train exited with {done.returncode} (its error is above)")
    return json.loads(done.stdout.strip().splitlines()[-1])


def plan_lora_rank(plan: Plan) -> int:
    """The LoRA rank of the plan's adapters (the vLLM engine provisions for it)."""
    from sde_train.config import TrainConfig

    return int(plan.train.get("lora_r", TrainConfig.lora_r))


def evaluate_cell(root: Path, plan: Plan, design: str, engine, adapter: Path | None, out: Path, limit: int | None,
                  num_fewshot: int | None = None):
    """lm-eval of the base model with `adapter` (None: untuned) on the plan's tasks and chat template, the first
    `limit` test documents, in `design`'s prompts; returns the Evaluation and the `lm_eval` command line that
    reproduces it (run in `root`)."""
    from sde_study.engines import lm_eval_command
    from sde_study.evaluate import run_lm_eval
    from sde_train.threads import choose_threads

    choose_threads()  # the cores free now: $OMP_NUM_THREADS, else measured
    settings = dict(chat_template=plan.chat_template, limit=limit, num_fewshot=num_fewshot,
                    include_path=plan.include_path(root), max_gen_toks=plan.max_gen_toks)
    runaways = (plan.task_spec or plan.task, design)
    with engine.lm(adapter, runaways) as lm:
        found = run_lm_eval(lm, plan.eval_tasks(design), {"design": design}, out, task=plan.resolved_task(),
                            **settings)
    # Run from the study folder: the cell's own paths are relative to it, so the command outlives a moved folder.
    command = lm_eval_command(engine.model_name(runaways), engine.model_args(adapter and inside(adapter, root), runaways),
                              plan.eval_tasks(design), design, inside(out, root), batch_size=plan.eval_batch_size,
                              **settings)
    return found, command


def inside(path: Path, root: Path) -> Path:
    """`path` relative to the study folder `root` when it lies inside it, else as it is."""
    return path.relative_to(root) if path.is_relative_to(root) else path


def run_cell(root: Path, plan: Plan, item: WorkItem, engine, nproc_per_node: int,
             all_docs: bool = False) -> tuple[list[dict], list[dict]]:
    """Train (or resume) and evaluate one cell: its results rows and their per-document statistics. A staged race's
    cell is evaluated on its first documents; `all_docs` evaluates it again on all (its evaluation seconds add up)."""
    folder = item.folder(root)
    trained_file = folder / TRAINED
    if not trained_file.is_file():
        summary = train_cell(root, plan, item, nproc_per_node)
        kept = {k: summary[k] for k in ("final_loss", "train_seconds", "steps", "samples", "tokens", "data_fingerprint",
                                        "environment")}
        write_atomic(trained_file, json.dumps(kept) + "\n")
    trained = json.loads(trained_file.read_text(encoding="utf-8"))
    earlier = first_stage_seconds(folder) if all_docs else 0.0
    limit = cell_limit(plan, all_docs)
    found, command = evaluate_cell(root, plan, item.design, engine, folder / ADAPTER, folder / EVAL, limit)
    StudyFolder(root).keep_samples(item.design, item.seed, found.logs)
    rows = [{**item.describe(), "task": task, **metrics, "eval_limit": limit,
             "final_loss": trained["final_loss"], "steps": trained["steps"],
             "train_seconds": trained["train_seconds"], "eval_seconds": earlier + found.seconds,
             "lm_eval_command": command, **train_environment(trained),
             **(collapse_evidence(root, item, found.top_answers[task]) if metrics.get("collapsed") else {})}
            for task, metrics in found.scores.items()]
    return rows, [stats_entry(row, found.doc_stats[row["task"]]) for row in rows]


def train_environment(trained: dict[str, Any]) -> dict[str, Any]:
    """What the cell was trained with (library versions, processor, threads), where its training recorded it."""
    return {"train_environment": trained["environment"]} if trained.get("environment") else {}


def first_stage_seconds(folder: Path) -> float:
    """The evaluation seconds a cell's result holds so far (its first stage, in a staged race)."""
    try:
        rows = json.loads((folder / RESULT).read_text(encoding="utf-8"))["rows"]
    except (OSError, ValueError, KeyError):
        return 0.0
    return float(rows[0].get("eval_seconds", 0.0)) if rows else 0.0


def collapse_evidence(root: Path, item: WorkItem, top_answer: str) -> dict[str, Any]:
    """What a collapsed cell's training data says of its one answer: the share of the training answers that are
    that very answer (a model that learned only the most frequent answer gives it everywhere)."""
    from sde_study.exports import export_dir
    from sde_train.data import load_rows

    answers = [" ".join(str(r["completion"]).split()) for r in load_rows(str(export_dir(root, item.design)),
                                                                          item.design, "train")]
    return {"top_answer": top_answer, "top_answer_train_share": answers.count(top_answer) / len(answers) if answers else 0.0}


# ----------------------------------------------------------------------------- PE signals of one design

def run_signals(root: Path, plan: Plan, item: WorkItem, engine) -> tuple[list[dict], list[dict]]:
    """Zero-shot and in-context scores (lm-eval, no adapter) and the perplexities of the design's samples."""
    from sde_study.exports import export_dir
    from sde_study.signals import perplexities, sample_rows
    from sde_train.data import load_rows

    folder = item.folder(root)
    rows, stats = [], []
    for signal, shots in (("zero-shot", None), ("in-context", plan.icl_shots)):
        found, command = evaluate_cell(root, plan, item.design, engine, None, folder / signal, plan.signal_docs,
                                       num_fewshot=shots)
        mine = [{**item.describe(), "signal": signal, "shots": shots or 0, "task": task, **metrics,
                 "eval_limit": plan.signal_docs, "eval_seconds": found.seconds, "lm_eval_command": command}
                for task, metrics in found.scores.items()]
        rows += mine
        stats += [stats_entry(row, found.doc_stats[row["task"]]) for row in mine]
    start = time.perf_counter()
    train_rows = sample_rows(load_rows(str(export_dir(root, item.design)), item.design, "train"),
                             plan.ppl_samples, plan.data_seed)
    nll = perplexities(engine.model, engine.tokenizer, train_rows, plan.chat_template, plan.eval_batch_size)
    rows.append({**item.describe(), "signal": "perplexity", "rows": len(train_rows), **nll,
                 "seconds": time.perf_counter() - start})
    return rows, stats
