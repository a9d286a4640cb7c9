"""Evaluation with lm-eval's Python API, on an LM an engine built once per worker (sde_study.engines).

Outputs are written as the CLI writes them (results_*.json and samples_*.jsonl, `--log_samples`)
into a temp folder renamed into place when complete.
"""
from __future__ import annotations

import contextlib
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from sde_datagen.tasks import Task
from sde_files import atomic_folder
from sde_tasks.docstats import DocStats


@dataclass(frozen=True)
class Evaluation:
    """What one lm-eval run gave: each task's metrics (and `n_docs`), its per-document statistics,
    its wall time, and the folder holding lm-eval's results and logged samples."""

    scores: dict[str, dict[str, Any]]
    doc_stats: dict[str, DocStats]
    seconds: float
    logs: Path
    top_answers: dict[str, str]  # each task's most common output (a collapsed run gives it to nearly every document)


def run_lm_eval(lm, tasks: tuple[str, ...], metadata: dict[str, Any], out: Path, *,
                chat_template: bool, limit: int | None, num_fewshot: int | None = None,
                include_path: str | None = None, max_gen_toks: int | None = None,
                task: Task | None = None) -> Evaluation:
    """Evaluate the lm-eval LM `lm` as the lm_eval CLI would, writing its output files into `out` (replaced atomically).

    `task`: the study's task (default: the one each document names), which gives the
    per-document statistics their label order and the outputs their parser for `runaway_rate` and `collapsed`.
    """
    from lm_eval import simple_evaluate
    from lm_eval.loggers import EvaluationTracker
    from lm_eval.tasks import TaskManager

    from sde_tasks.lm_eval_hook import tasks_dir

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    with atomic_folder(out) as tmp:
        start = time.perf_counter()
        tracker = EvaluationTracker(output_path=str(tmp))
        # Only the task folder is indexed (lm-eval's own thousands of tasks take ~10 s to index).
        manager = TaskManager(include_path=include_path or str(tasks_dir()), include_defaults=False, metadata=metadata)
        with quiet_git_hash():
            results = simple_evaluate(
                model=lm, tasks=list(tasks), num_fewshot=num_fewshot, limit=limit, log_samples=True,
                gen_kwargs={"max_gen_toks": max_gen_toks} if max_gen_toks else None,
                evaluation_tracker=tracker, apply_chat_template=chat_template, fewshot_as_multiturn=chat_template,
                task_manager=manager, metadata=metadata)
        samples = results.pop("samples")
        tracker.save_results_aggregated(results=results, samples=samples)
        for name in results["configs"]:
            tracker.save_results_samples(task_name=name, samples=samples[name])
        seconds = time.perf_counter() - start
    runs = {name: logged_run(samples[name], task) for name in tasks}
    scores = {name: {**metrics_of(results, name), **runs[name][1].as_json()} for name in tasks}
    return Evaluation(scores, {name: runs[name][0] for name in tasks}, seconds, out,
                      {name: runs[name][1].top_answer for name in tasks})


@contextlib.contextmanager
def quiet_git_hash() -> Iterator[None]:
    """lm-eval records the commit of the working directory with `git describe`, whose stderr (`fatal: not a git
    repository` outside one) would reach the user's terminal at every cell: the same record, with git kept quiet."""
    from lm_eval import evaluator
    from lm_eval.loggers.utils import get_commit_from_path

    def commit() -> str | None:
        try:
            done = subprocess.run(["git", "describe", "--always"], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            done = None
        return done.stdout.strip() if done is not None and done.returncode == 0 else get_commit_from_path(os.getcwd())

    loud = evaluator.get_git_commit_hash
    evaluator.get_git_commit_hash = commit
    try:
        yield
    finally:
        evaluator.get_git_commit_hash = loud


def generated(folder: Path) -> list[str | None]:
    """The answers of the lm-eval run logged in `folder`, in document order."""
    from sde_tasks.logged import answer, read_run

    return [answer(r) for r in read_run(folder)]


def logged_run(samples: list[dict[str, Any]], task: Task | None = None):
    """One task's run from the samples lm-eval logged, in document order: the per-document statistics of the items
    it logged beside each output, and how degenerate the outputs are (sde_tasks.scoring.Degeneracy)."""
    from sde_datagen.tasks import get_task
    from sde_tasks.scoring import doc_stats, logged_degeneracy

    ordered = sorted(samples, key=lambda s: s["doc_id"])
    doc = ordered[0]["doc"]
    spec = (task or get_task(doc["task"])).spec(doc.get("domain") or None)
    return doc_stats(ordered, spec), logged_degeneracy(ordered, spec)


def metrics_of(results: dict[str, Any], task: str) -> dict[str, Any]:
    """The task's metrics (lm-eval keys `metric,none`, without stderr) and how many documents were scored."""
    from sde_tasks.board.store import metric_values

    return {**metric_values(results["results"][task]), "n_docs": results["n-samples"][task]["effective"]}
