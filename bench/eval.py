"""Benchmark sde_tasks: output parsing rate per format, and lm_eval wall time per 100 documents.

1. Parsing: for each task and each distinct output format (format x unmentioned x labels x
   reasoning; placement and input do not change the completion), the codec parses the gold
   completions of the bundled test split, in the mode scoring uses. Rates are per core: CPU time
   of this single-threaded process (not wall time, which other jobs on the machine inflate); the
   best of `--repeat` passes counts. Bar: >= 20,000 parses/s for every format.
2. lm_eval: the real CLI (subprocess, tasks found through --include_path) on the tiny random model,
   `--limit 100` per task, greedy, `max_gen_toks` capped (a random model never stops early).
   Wall time includes lm_eval's start-up (a `--limit 1` run of sde_ed is printed for reference).

    python bench/eval.py [--docs 1000] [--max-gen-toks 32] [--skip-lm-eval]

Ends with one JSON line: {"parses_per_s_min": ..., "lm_eval_s_per_100_docs": {...}}.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from sde_datagen.codecs import get_codec
from sde_datagen.data import bundled_dir
from sde_datagen.design import grid
from sde_datagen.records import load_records
from sde_datagen.render import render_sample
from sde_datagen.tasks import load_task
from sde_tasks.lm_eval_hook import tasks_dir
from sde_tasks.scoring import PARSE_MODE

TASKS = {"masa": "D1", "ed": None, "ner": None}
LM_EVAL_TASKS = ("sde_masa_id", "sde_masa_ood", "sde_ed", "sde_ner")
BAR = 20_000


def output_formats(family: str):
    """One design per distinct completion format (placement/input fixed: they do not change it)."""
    seen = {}
    for design in grid(family):
        key = replace(design, placement="first", input="nomi")
        seen.setdefault(key.id, key)
    return list(seen.values())


def parse_rates(docs: int, repeat: int) -> list[tuple[str, str, float]]:
    rows = []
    for task, domain in TASKS.items():
        spec = load_task(task, domain)
        records = load_records(spec, bundled_dir(task) / f"{spec.splits['test']}.jsonl")[:docs]
        for design in output_formats(spec.family):
            codec = get_codec(spec, design)
            texts = [render_sample(spec, design, r).completion for r in records]
            best = float("inf")
            for _ in range(repeat):
                start = time.process_time()
                for text in texts:
                    codec.parse(text, PARSE_MODE)
                best = min(best, time.process_time() - start)
            label = "-".join(design.id.split("-")[2:])  # format-unmentioned-labels-reasoning
            rows.append((task, label, len(texts) / best))
    return rows


def lm_eval_seconds(model: Path, task: str, limit: int, max_gen_toks: int) -> float:
    cmd = [sys.executable, "-m", "lm_eval", "--include_path", str(tasks_dir()), "--tasks", task,
           "--model", "hf", "--model_args", f"pretrained={model}", "--device", "cpu",
           "--limit", str(limit), "--gen_kwargs", f"max_gen_toks={max_gen_toks}"]
    env = {**os.environ, "SDE_KIT_NO_LM_EVAL_HOOK": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false"}
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"lm_eval failed on {task}:\n{proc.stderr[-3000:]}")
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--docs", type=int, default=1000, help="completions parsed per format (test split)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--max-gen-toks", type=int, default=32)
    parser.add_argument("--skip-lm-eval", action="store_true")
    args = parser.parse_args(argv)

    rates = parse_rates(args.docs, args.repeat)
    print(f"{'task':<5} {'format (format-unmentioned-labels-reasoning)':<44} {'parses/s':>10}")
    for task, label, rate in rates:
        print(f"{task:<5} {label:<44} {rate:>10,.0f}{'' if rate >= BAR else '  < 20,000'}")
    slowest = min(rates, key=lambda row: row[2])
    print(f"slowest: {slowest[0]} {slowest[1]} {slowest[2]:,.0f}/s (bar {BAR:,}/s per core)")

    per_100: dict[str, float] = {}
    if not args.skip_lm_eval:
        from sde_train.tiny_model import build_tiny_model, bundled_data_files, iter_jsonl_texts

        with tempfile.TemporaryDirectory() as tmp:
            model = build_tiny_model(Path(tmp) / "model", iter_jsonl_texts(bundled_data_files()))
            start_up = lm_eval_seconds(model, "sde_ed", 1, args.max_gen_toks)
            print(f"\nlm_eval, tiny model, max_gen_toks={args.max_gen_toks}; start-up (sde_ed --limit 1): {start_up:.1f}s")
            for task in LM_EVAL_TASKS:
                per_100[task] = round(lm_eval_seconds(model, task, 100, args.max_gen_toks), 1)
                print(f"{task:<13} {per_100[task]:>6.1f}s per 100 docs (wall, incl. start-up)")
    print(json.dumps({"parses_per_s_min": round(slowest[2]), "lm_eval_s_per_100_docs": per_100}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
