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
    python bench/eval.py --engines [--ner-docs 200] [--masa-docs 100] [--engine-max-gen-toks 128]
      (HF vs vLLM on SmolLM2, NER and MASA, untuned and with an adapter: speed, identical outputs, machine limit;
       see bench/eval_engines.py)
    python bench/eval.py --adapter-swap [--swap-model tiny|smollm2|DIR] [--swap-adapters 3] [--swap-limit 8]
      (evaluating K adapters: sde study's one base model with adapters swapped, against a base reload per cell)

Ends with one JSON line: {"parses_per_s_min": ..., "lm_eval_s_per_100_docs": {...}}.
"""
from __future__ import annotations

import argparse
import importlib
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
REAL_BATCH_SIZES = ("1", "8", "32", "auto")


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


# ------------------------------------------------- --adapter-swap: one base model for K adapters vs a reload per cell

def make_adapters(base: Path, count: int, out: Path) -> list[Path]:
    """`count` LoRA adapters as sde train makes them (r 8, all linear layers); their values do not change the cost."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base), LoraConfig(r=8, lora_alpha=16,
                                                                                  target_modules="all-linear"))
    paths = []
    for k in range(count):
        torch.manual_seed(k)  # distinct adapters, near the base: B small instead of zero
        for name, weight in model.named_parameters():
            if "lora_B" in name:
                torch.nn.init.normal_(weight, std=1e-3)
        model.save_pretrained(out / f"adapter-{k}")
        paths.append(out / f"adapter-{k}")
    return paths


def adapter_swap_seconds(base: Path, adapters: list[Path], task: str, limit: int, max_gen_toks: int,
                         out: Path) -> list[dict]:
    """Per cell, wall seconds of loading and of evaluating: (a) the study's HF engine swapping adapters (its one
    base load counted in the first cell) and (b) a fresh HFLM(pretrained=BASE, peft=ADAPTER), the lm_eval CLI's
    loading; the same evaluation after it. The order of (a) and (b) alternates per cell (no order bias)."""
    import torch
    from lm_eval.models.huggingface import HFLM

    from sde_study.engines import HFEngine
    from sde_study.evaluate import run_lm_eval

    for module in ("lm_eval", "lm_eval.loggers", "lm_eval.tasks", "peft", "sde_tasks.lm_eval_hook"):
        importlib.import_module(module)  # before timing: imports are paid once per process either way
    device = "cuda" if torch.cuda.is_available() else "cpu"
    shared = HFEngine(str(base), batch_size=8)
    settings = dict(tasks=(task,), metadata={"design": "es-sde"}, chat_template=False, limit=limit,
                    max_gen_toks=max_gen_toks)

    def swap(k: int, adapter: Path) -> tuple[float, dict]:
        start = time.perf_counter()
        with shared.lm(adapter) as lm:
            found = run_lm_eval(lm, out=out / f"swap-{k}", **settings)
        return time.perf_counter() - start, found

    def reload(k: int, adapter: Path) -> tuple[float, dict]:
        start = time.perf_counter()
        fresh = HFLM(pretrained=str(base), peft=str(adapter), device=device, batch_size=8)
        found = run_lm_eval(fresh, out=out / f"reload-{k}", **settings)
        return time.perf_counter() - start, found

    cells = []
    for k, adapter in enumerate(adapters):
        ways = {"swap": swap, "reload": reload}
        order = ("swap", "reload") if k % 2 == 0 else ("reload", "swap")
        done = {way: ways[way](k, adapter) for way in order}
        cell = {}
        for way, (total, found) in done.items():
            cell[f"{way}_eval_s"] = found.seconds
            cell[f"{way}_load_s"] = total - cell[f"{way}_eval_s"]
            cell[f"{way}_s"] = total
        cell["same_metrics"] = done["swap"][1].scores == done["reload"][1].scores
        cells.append(cell)
        print(f"cell {k}: (a) swap load {cell['swap_load_s']:5.2f}s + eval {cell['swap_eval_s']:5.2f}s   "
              f"(b) reload load {cell['reload_load_s']:5.2f}s + eval {cell['reload_eval_s']:5.2f}s   "
              f"same metrics: {'yes' if cell['same_metrics'] else 'NO'}")
    return cells


def adapter_swap_main(model: str, count: int, task: str, limit: int, max_gen_toks: int) -> int:
    from sde_train.models import fetch_model
    from sde_train.tiny_model import build_tiny_model, bundled_data_files, iter_jsonl_texts

    with tempfile.TemporaryDirectory() as tmp:
        if model == "tiny":
            base = build_tiny_model(Path(tmp) / "model", iter_jsonl_texts(bundled_data_files()))
        elif model == "smollm2":
            base = fetch_model("smollm2-135m-instruct", Path(tmp) / "model")
        else:
            base = Path(model)
        adapters = make_adapters(base, count, Path(tmp))
        print(f"adapter swap vs reload per cell: {model}, {count} LoRA adapters, {task} --limit {limit}, "
              f"max_gen_toks={max_gen_toks}")
        cells = adapter_swap_seconds(base, adapters, task, limit, max_gen_toks, Path(tmp) / "eval")
    mean = {key: sum(c[key] for c in cells) / count for key in cells[0] if key != "same_metrics"}
    saved = mean["reload_load_s"] - mean["swap_load_s"]
    print(f"mean per cell over {count}: loading (a) {mean['swap_load_s']:.2f}s (one base load shared) vs "
          f"(b) {mean['reload_load_s']:.2f}s; evaluating (a) {mean['swap_eval_s']:.2f}s vs (b) {mean['reload_eval_s']:.2f}s; "
          f"total (a) {mean['swap_s']:.2f}s vs (b) {mean['reload_s']:.2f}s")
    print(f"loading time saved per cell by the adapter swap: {saved:.2f}s "
          f"(the lm_eval CLI also pays a process start and imports per cell, not counted here)")
    print(json.dumps({"adapter_swap": {"model": model, "adapters": count, "task": task, "limit": limit,
                                       **{f"{k}_per_cell": round(v, 3) for k, v in mean.items()},
                                       "load_s_saved_per_cell": round(saved, 3),
                                       "same_metrics": all(c["same_metrics"] for c in cells)}}))
    return 0


def real_model_docs_per_s(docs: int, max_gen_toks: int, work: Path) -> dict[str, float]:
    """lm-eval generation documents/s on SmolLM2-135M-Instruct (HF backend, CPU) per batch size."""
    import torch
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    from sde_train.models import fetch_model

    model = fetch_model("smollm2-135m-instruct", work / "smollm2")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    tasks = TaskManager(include_path=str(tasks_dir()))
    rates = {}
    sizes = REAL_BATCH_SIZES if device == "cuda" else tuple(b for b in REAL_BATCH_SIZES if b != "auto")
    if device != "cuda":
        print("batch size auto: skipped on CPU (lm-eval sizes it by probing memory with forwards of up to 64 x "
              "the model's 8192-token context, which on CPU only measures the probe)")
    for batch_size in sizes:
        lm = HFLM(pretrained=str(model), device=device, batch_size=batch_size, max_batch_size=64)
        start = time.perf_counter()
        simple_evaluate(model=lm, tasks=["sde_masa_id"], limit=docs, task_manager=tasks, log_samples=False,
                        gen_kwargs=f"max_gen_toks={max_gen_toks}", bootstrap_iters=0)
        rates[batch_size] = docs / (time.perf_counter() - start)
        picked = f" (picked {lm.batch_size})" if batch_size == "auto" else ""
        print(f"batch size {batch_size:>4}{picked}: {rates[batch_size]:6.2f} documents/s", flush=True)
    return rates


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--docs", type=int, default=1000, help="completions parsed per format (test split)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--max-gen-toks", type=int, default=32)
    parser.add_argument("--skip-lm-eval", action="store_true")
    parser.add_argument("--real-model", action="store_true", help="also: generation documents/s on SmolLM2")
    parser.add_argument("--real-docs", type=int, default=32, help="documents per batch size (--real-model)")
    parser.add_argument("--real-max-gen-toks", type=int, default=128)
    parser.add_argument("--adapter-swap", action="store_true", help="only time evaluating K adapters: the study's "
                        "adapter swap vs reloading the base per cell")
    parser.add_argument("--swap-model", default="tiny", help="tiny, smollm2 or a model folder (default tiny)")
    parser.add_argument("--swap-adapters", type=int, default=3, help="K adapters (default 3)")
    parser.add_argument("--swap-task", default="sde_ner")
    parser.add_argument("--swap-limit", type=int, default=8, help="test documents per cell (default 8)")
    parser.add_argument("--engines", action="store_true", help="only compare the study's engines, HF and vLLM, on "
                        "SmolLM2 (bench/eval_engines.py)")
    parser.add_argument("--ner-docs", type=int, default=200, help="NER test documents per run (--engines; default 200)")
    parser.add_argument("--masa-docs", type=int, default=100, help="MASA test documents per run (--engines; default 100)")
    parser.add_argument("--engine-max-gen-toks", type=int, default=128, help="generated tokens at most (--engines)")
    parser.add_argument("--adapter-steps", type=int, default=20, help="LoRA steps of each task's adapter (--engines)")
    parser.add_argument("--work", type=Path, help="folder kept for the model, adapters and logs (--engines; "
                        "default: a temporary one)")
    args = parser.parse_args(argv)
    if args.engines:
        from eval_engines import engines_main

        with tempfile.TemporaryDirectory() as tmp:
            return engines_main(args.ner_docs, args.masa_docs, args.engine_max_gen_toks, args.adapter_steps,
                                args.work or Path(tmp))
    if args.adapter_swap:
        return adapter_swap_main(args.swap_model, args.swap_adapters, args.swap_task, args.swap_limit, args.max_gen_toks)

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
    real: dict[str, float] = {}
    if args.real_model:
        print(f"\nlm-eval HF backend, SmolLM2-135M-Instruct, sde_masa_id, {args.real_docs} documents, "
              f"max_gen_toks={args.real_max_gen_toks}")
        with tempfile.TemporaryDirectory() as tmp:
            real = real_model_docs_per_s(args.real_docs, args.real_max_gen_toks, Path(tmp))
    print(json.dumps({"parses_per_s_min": round(slowest[2]), "lm_eval_s_per_100_docs": per_100,
                      "real_docs_per_s": {k: round(v, 3) for k, v in real.items()}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
