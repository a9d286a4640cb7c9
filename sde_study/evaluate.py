"""Evaluation with lm-eval's Python API, on an LM an engine built once per worker (sde_study.engines).

Outputs are written as the CLI writes them (results_*.json and samples_*.jsonl, `--log_samples`)
into a temp folder renamed into place when complete.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


def run_lm_eval(lm, tasks: tuple[str, ...], metadata: dict[str, Any], out: Path, *,
                chat_template: bool, limit: int | None, num_fewshot: int | None = None,
                include_path: str | None = None, max_gen_toks: int | None = None,
                labels: tuple[str, ...] | None = None) -> Evaluation:
    """Evaluate the lm-eval LM `lm` as the lm_eval CLI would, writing its output files into `out` (replaced atomically).

    `labels`: a classification task's label order, for its per-document statistics (default MASA's).
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
        results = simple_evaluate(
            model=lm, tasks=list(tasks), num_fewshot=num_fewshot, limit=limit, log_samples=True,
            gen_kwargs={"max_gen_toks": max_gen_toks} if max_gen_toks else None,
            evaluation_tracker=tracker, apply_chat_template=chat_template, fewshot_as_multiturn=chat_template,
            task_manager=manager, metadata=metadata)
        samples = results.pop("samples")
        tracker.save_results_aggregated(results=results, samples=samples)
        for task in results["configs"]:
            tracker.save_results_samples(task_name=task, samples=samples[task])
        seconds = time.perf_counter() - start
    scores = {task: metrics_of(results, task) for task in tasks}
    stats = {task: logged_doc_stats(samples[task], labels) for task in tasks}
    return Evaluation(scores, stats, seconds, out)


def logged_samples(folder: Path) -> list[dict[str, Any]]:
    """The samples lm-eval logged in `folder` (every task), in document order."""
    rows = [json.loads(line) for path in sorted(folder.glob("**/samples_*.jsonl"))
            for line in path.read_text(encoding="utf-8").splitlines()]
    return sorted(rows, key=lambda r: r["doc_id"])


def generated(folder: Path) -> list[str]:
    """The strings the model generated in the lm-eval run logged in `folder`, in document order."""
    return [r["resps"][0][0] for r in logged_samples(folder)]


def logged_doc_stats(samples: list[dict[str, Any]], labels: tuple[str, ...] | None) -> DocStats:
    """Per-document statistics from the items lm-eval logged beside each output, in document order."""
    from sde_tasks.docstats import from_items
    from sde_tasks.metrics import KAPPA_LABELS

    return from_items(sorted(samples, key=lambda s: s["doc_id"]), labels or KAPPA_LABELS)


def metrics_of(results: dict[str, Any], task: str) -> dict[str, Any]:
    """The task's metrics (lm-eval keys `metric,none`, without stderr) and how many documents were scored."""
    from sde_tasks.board.store import metric_values

    return {**metric_values(results["results"][task]), "n_docs": results["n-samples"][task]["effective"]}
