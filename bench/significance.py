"""Benchmark the bootstrap of sde_tasks.significance: 10,000 resamples of every metric of one run.

Runs on the full NER test set (1,425 documents; gold answers with a third of them cut, so that the
metrics are not trivial) and the MASA test set (500 reviews x 6 aspects), and compares with the
baseline a user would write on lm-eval's per-document items: draw documents, call the corpus
aggregation (`sde_tasks.scoring.aggregate`) once per resample (timed on 200 resamples, scaled).

    python bench/significance.py [--resamples 10000]

Ends with one JSON line: {"ner_seconds": ..., "masa_seconds": ..., "speedup_vs_per_resample_aggregate": ...}.
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np

from sde_datagen.data import bundled_dir
from sde_datagen.design import resolve_design
from sde_datagen.records import load_records
from sde_datagen.render import render_sample
from sde_datagen.tasks import load_task
from sde_tasks import significance as sig
from sde_tasks.scoring import aggregate, doc_stats, score_items


def outputs(task: str, design: str) -> tuple[list[str], list[str]]:
    """Gold completions of the whole test set, and the same with every third one cut in half."""
    spec = load_task(task)
    chosen = resolve_design(design, spec.family)
    records = load_records(spec, bundled_dir(task) / f"{spec.splits['test']}.jsonl")
    gold = [render_sample(spec, chosen, r).completion for r in records]
    return [g if i % 3 else g[: len(g) // 2] for i, g in enumerate(gold)], gold


def naive_seconds(items: list[dict], spec, resamples: int) -> float:
    """Per-resample corpus aggregation over drawn documents (the baseline), seconds for `resamples`."""
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    for _ in range(resamples):
        drawn = rng.integers(0, len(items), len(items))
        aggregate([items[i] for i in drawn], spec)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--resamples", type=int, default=sig.RESAMPLES)
    parser.add_argument("--naive-resamples", type=int, default=200, help="resamples timed for the baseline")
    args = parser.parse_args()
    found = {}
    for task, design in (("ner", "es-sde"), ("masa", "es-sde")):
        scored = score_items(task, design, *outputs(task, design))
        spec, items = scored.spec, scored.items
        stats = doc_stats(items, spec)
        sig.confidence_intervals([stats], 100)  # warm-up
        start = time.perf_counter()
        intervals = sig.confidence_intervals([stats], args.resamples)
        seconds = time.perf_counter() - start
        naive = naive_seconds(items, spec, args.naive_resamples) * args.resamples / args.naive_resamples
        metric = "kappa" if "kappa" in intervals else "f1"
        print(f"{task}: {stats.n_docs} documents, {len(intervals)} metrics, {args.resamples:,} resamples: "
              f"{seconds:.3f} s (per-resample aggregate baseline: {naive:.1f} s, {naive / seconds:.0f}x); "
              f"{metric} {stats.corpus()[metric]:.4f} CI [{intervals[metric][0]:.4f}, {intervals[metric][1]:.4f}]")
        found[task] = (seconds, naive)
    print(json.dumps({"ner_seconds": round(found["ner"][0], 3), "masa_seconds": round(found["masa"][0], 3),
                      "speedup_vs_per_resample_aggregate": round(found["ner"][1] / found["ner"][0], 1)}))


if __name__ == "__main__":
    main()
