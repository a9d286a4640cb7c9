"""Evaluation with lm-eval's Python API: the base model is loaded once per worker, adapters swap.

`lm_eval --model hf --model_args pretrained=BASE,peft=ADAPTER` loads the base model for every
adapter; here `BaseModel` keeps it and each cell's adapter is injected (PeftModel.from_pretrained),
evaluated through an `HFLM` around the PEFT model, and removed again (`unload`, no merge), so the
next cell sees the untouched base. Outputs are written as the CLI writes them (results_*.json and
samples_*.jsonl, `--log_samples`) into a temp folder renamed into place when complete.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Iterator

from sde_files import swap_into_place
from sde_tasks.docstats import DocStats


class BaseModel:
    """The untuned base model and its tokenizer, loaded on first use (dtype as lm-eval's default, auto)."""

    def __init__(self, path: str):
        self.path = path
        self._model = None

    @property
    def model(self):
        if self._model is None:
            import torch
            from transformers import AutoModelForCausalLM

            model = AutoModelForCausalLM.from_pretrained(self.path, dtype="auto")
            self._model = model.to("cuda" if torch.cuda.is_available() else "cpu").eval()
        return self._model

    @cached_property
    def tokenizer(self):
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(self.path)

    @contextlib.contextmanager
    def adapter(self, path: Path | None) -> Iterator[Any]:
        """The base model with the adapter at `path` injected (or the base itself for None).

        PEFT injects LoRA layers into the base model's own modules, so on exit `unload()` takes them
        out again and the stripped model it returns becomes this object's base model.
        """
        if path is None:
            yield self.model
            return
        from peft import PeftModel

        tuned = PeftModel.from_pretrained(self.model, str(path)).eval()
        try:
            yield tuned
        finally:
            self._model = tuned.unload()


@dataclass(frozen=True)
class Evaluation:
    """What one lm-eval run gave: each task's metrics (and `n_docs`), its per-document statistics,
    its wall time, and the folder holding lm-eval's results and logged samples."""

    scores: dict[str, dict[str, Any]]
    doc_stats: dict[str, DocStats]
    seconds: float
    logs: Path


def run_lm_eval(model, tokenizer_path: str, tasks: tuple[str, ...], metadata: dict[str, Any], out: Path, *,
                chat_template: bool, limit: int | None, batch_size: int, num_fewshot: int | None = None,
                include_path: str | None = None, max_gen_toks: int | None = None,
                labels: tuple[str, ...] | None = None) -> Evaluation:
    """Evaluate `model` as the lm_eval CLI would, writing its output files into `out` (replaced atomically).

    `labels`: a classification task's label order, for its per-document statistics (default MASA's).
    """
    from lm_eval import simple_evaluate
    from lm_eval.loggers import EvaluationTracker
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    from sde_tasks.lm_eval_hook import tasks_dir

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        start = time.perf_counter()
        lm = HFLM(pretrained=model, tokenizer=tokenizer_path, batch_size=batch_size)
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
        swap_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    scores = {task: metrics_of(results, task) for task in tasks}
    stats = {task: logged_doc_stats(samples[task], labels) for task in tasks}
    return Evaluation(scores, stats, seconds, out)


def logged_doc_stats(samples: list[dict[str, Any]], labels: tuple[str, ...] | None) -> DocStats:
    """Per-document statistics from the items lm-eval logged beside each output, in document order."""
    from sde_tasks.docstats import from_items
    from sde_tasks.metrics import KAPPA_LABELS

    return from_items(sorted(samples, key=lambda s: s["doc_id"]), labels or KAPPA_LABELS)


def metrics_of(results: dict[str, Any], task: str) -> dict[str, Any]:
    """The task's metrics (lm-eval keys `metric,none`, without stderr) and how many documents were scored."""
    from sde_tasks.board.store import metric_values

    return {**metric_values(results["results"][task]), "n_docs": results["n-samples"][task]["effective"]}
