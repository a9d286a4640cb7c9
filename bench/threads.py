"""How many torch threads a study cell should use on a CPU, measured: generation and training, idle and loaded.

On a small shared CPU two torch threads can stall each other (each waits at the end of every parallel
region for the other, which another process may have preempted). This bench measures, in fresh
processes, each at 1 thread and at all cores:
  - generation: lm-eval's HF backend on SmolLM2-135M-Instruct, NER ES-SDE prompts with the chat
    template, `--docs` test documents in one batch, greedy, at most `--max-gen-toks` new tokens;
  - training: `sde train` on SmolLM2, NER ES-SDE, `--steps` steps of batch 4 (--precision auto);
once on an idle machine and once beside a CPU-bound process that keeps one core busy (what a second
job, a browser or a CI neighbour does).

    python bench/threads.py [--docs 16] [--max-gen-toks 128] [--steps 4]

Ends with one JSON line: {"generation_docs_per_s": {...}, "training_tokens_per_s": {...}, "best": {...}}.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DESIGN = "first-nomi-lines-pu-text-none"


def generation_worker(model: str, docs: int, max_gen_toks: int) -> float:
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    from sde_tasks.lm_eval_hook import tasks_dir

    import torch

    lm = HFLM(pretrained=model, batch_size=docs, device="cuda" if torch.cuda.is_available() else "cpu")
    tasks = TaskManager(include_path=str(tasks_dir()), include_defaults=False, metadata={"design": DESIGN})
    start = time.perf_counter()
    simple_evaluate(model=lm, tasks=["sde_ner"], limit=docs, task_manager=tasks, apply_chat_template=True,
                    gen_kwargs={"max_gen_toks": max_gen_toks}, bootstrap_iters=0, metadata={"design": DESIGN})
    return docs / (time.perf_counter() - start)


def training_worker(model: str, data: str, steps: int, out: str) -> float:
    from sde_train.config import TrainConfig
    from sde_train.trainer import train

    summary = train(TrainConfig(model=model, dataset=data, config=DESIGN, output=out, max_steps=steps, batch_size=4,
                                max_length=512, chat_template=True, logging_steps=steps, save_steps=steps + 1,
                                overwrite=True).check())
    return summary["tokens_per_s"]


def run(kind: str, threads: int, args: argparse.Namespace, model: Path, data: Path, work: Path) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    cmd = [sys.executable, __file__, "--worker", kind, "--model-dir", str(model), "--data", str(data),
           "--work", str(work), "--docs", str(args.docs), "--max-gen-toks", str(args.max_gen_toks),
           "--steps", str(args.steps)]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        sys.exit(f"{kind} worker failed:\n{done.stderr[-3000:]}")
    return float(done.stdout.strip().splitlines()[-1])


def burner() -> subprocess.Popen:
    """A process that keeps one core busy until it is killed."""
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--docs", type=int, default=16)
    parser.add_argument("--max-gen-toks", type=int, default=128)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--work", default=None)
    parser.add_argument("--worker", choices=("generation", "training"), help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker == "generation":
        print(generation_worker(args.model_dir, args.docs, args.max_gen_toks))
        return
    if args.worker == "training":
        print(training_worker(args.model_dir, args.data, args.steps, str(Path(args.work) / "train-out")))
        return

    from sde_train.models import fetch_model

    work = Path(args.work or tempfile.mkdtemp(prefix="sde-threads-"))
    model = fetch_model("smollm2-135m-instruct", work / "smollm2")
    data = work / "data"
    subprocess.run([str(Path(sys.executable).parent / "sde"), "data", "export", "--task", "ner", "--designs", "es-sde",
                    "--train-size", "64", "--splits", "train", "--out", str(data), "--overwrite"],
                   check=True, capture_output=True)
    cores = os.cpu_count() or 1
    print(f"{cores} cores; load average {os.getloadavg()[0]:.1f} before the runs; SmolLM2-135M-Instruct, NER ES-SDE")
    found: dict[str, dict[str, float]] = {"generation": {}, "training": {}}
    for machine in ("idle", "loaded"):
        hog = burner() if machine == "loaded" else None
        try:
            for kind in ("generation", "training"):
                for threads in dict.fromkeys((1, cores)):
                    rate = run(kind, threads, args, model, data, work)
                    found[kind][f"{machine}, {threads} thread(s)"] = round(rate, 3)
                    unit = "documents/s" if kind == "generation" else "tokens/s"
                    print(f"{machine:>6} {kind:<10} {threads} thread(s): {rate:8.3f} {unit}", flush=True)
        finally:
            if hog is not None:
                hog.kill()
    best = {f"{kind}, {machine}": max((t for t in rates if t.startswith(machine)), key=rates.get).split(", ")[1]
            for kind, rates in found.items() for machine in ("idle", "loaded")}
    print(json.dumps({"generation_docs_per_s": found["generation"], "training_tokens_per_s": found["training"],
                      "best": best}))


if __name__ == "__main__":
    main()
