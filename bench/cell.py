"""One real study cell on SmolLM2-135M-Instruct, timed by phase, with the kit's accelerations off and on.

A cell as `sde study run` makes it (the kit's own export, engine, trainer and evaluation), twice in one run:
- `plain`: the committed races' settings (vLLM's defaults: KV blocks of 128 tokens, no runaway stop) on glibc's
  malloc, as they ran;
- `fast`: the kit's defaults for a new study (sde_study.engines.VLLMSettings), or the settings `--fast` names, under
  tcmalloc where it is installed, as the `sde` command runs them (sde_files/allocator.py).
Each configuration runs in a fresh worker process (vLLM binds its threads and its caches when its engine starts,
so one process cannot start a second engine as the first one started), one after the other, on the same data,
seed and adapter settings. Training is deterministic, so both evaluate the same adapter weights.

Phases: export (the design's samples), model load (the evaluation engine's start), training, evaluation. Each with
its tokens/s, and, for training and evaluation, the model FLOP/s as a fraction of the machine's fp32 and bf16
matrix-product limits measured in this run (bench/limits.py). Then the outputs compared: the share of identical
outputs, both runs' headline metric and the paired 95% interval of the difference (documents resampled).

    python bench/cell.py                                  # NER, ES-SDE, 500 test sentences (the bar's cell)
    python bench/cell.py --task masa --eval-limit 50      # MASA: 50 reviews in and 50 out of domain
    python bench/cell.py --fast dtype=bfloat16,runaway_stop=true    # other settings against plain

Ends with one JSON line: {"speedup_vs_plain": …, "identical_fraction": …, "f1_diff_ci": […], …}.
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

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
# The committed NER race's cell (docs/studies/ner-race-smollm2-strict); MASA as docs/studies/masa-smollm2.
TASKS = {"ner": dict(eval_limit=500, max_gen_toks=280, max_length=512),
         "masa": dict(eval_limit=None, max_gen_toks=128, max_length=4096)}
CONFIGS = ("plain", "fast")


def fast_settings(words: str):
    """`--fast`: VLLMSettings from KEY=VALUE pairs (the defaults where none)."""
    from sde_study.engines import VLLMSettings

    given = dict(pair.split("=", 1) for pair in words.split(",") if pair)
    kinds = {"kv_block": int, "dtype": str, "runaway_stop": lambda v: v.lower() in ("1", "true", "yes", "on")}
    return VLLMSettings(**{key: kinds[key](value) for key, value in given.items()})


def plan_for(config: str, model: str, task: str, design: str, eval_limit: int | None, fast: str = ""):
    from sde_study.plan import Plan

    shape = TASKS[task]
    return Plan(model=model, task=task, designs=[design], seeds=[0], train_size=300, chat_template=True,
                eval_limit=eval_limit, max_gen_toks=shape["max_gen_toks"],
                train={"lr": 5e-4, "max_length": shape["max_length"]}, analysis=False, engine="vllm",
                vllm=None if config == "plain" else fast_settings(fast))


def worker(config: str, root: Path, model: str, task: str, design: str, eval_limit: int | None, fast: str) -> dict:
    """One cell under `config`, phase by phase, in this process."""
    from sde_study.engines import make_engine
    from sde_study.exports import ensure_exports
    from sde_study.plan import WorkItem, write_plan
    from sde_study.work import evaluate_cell, plan_lora_rank, train_cell
    from sde_tasks.logged import read_run

    plan = plan_for(config, model, task, design, eval_limit, fast)
    write_plan(root, plan)
    item = WorkItem("cell", plan.designs[0], 0)
    phases = {}
    start = time.perf_counter()
    ensure_exports(plan, root)
    phases["export"] = {"seconds": time.perf_counter() - start}
    start = time.perf_counter()
    engine = make_engine(plan.engine, plan.model, plan.eval_batch_size, plan_lora_rank(plan), plan.vllm)
    engine.engine  # vLLM starts: the model's weights loaded, its kernels compiled
    phases["model load"] = {"seconds": time.perf_counter() - start}
    start = time.perf_counter()
    trained = train_cell(root, plan, item, 1)
    phases["training"] = {"seconds": time.perf_counter() - start, "tokens": trained["tokens"],
                          "samples": trained["samples"], "loop_seconds": trained["train_seconds"]}
    item.folder(root).mkdir(parents=True, exist_ok=True)
    found, command = evaluate_cell(root, plan, item.design, engine, item.folder(root) / "adapter",
                                   item.folder(root) / "eval", plan.eval_limit)
    samples = read_run(found.logs)
    tok = engine.tokenizer
    phases["evaluation"] = {
        "seconds": found.seconds, "docs": len(samples),
        "prompt_tokens": sum(len(tok(s["arguments"]["gen_args_0"]["arg_0"], add_special_tokens=False)["input_ids"])
                             for s in samples),
        "generated_tokens": sum(len(tok(s["resps"][0][0], add_special_tokens=False)["input_ids"]) for s in samples)}
    return {"config": config, "phases": phases, "command": command,
            "outputs": [[s["doc_id"], s["resps"][0][0]] for s in samples],
            "stats": {name: {"family": st.family, "labels": list(st.labels), "absent": st.absent,
                             "table": st.table.tolist()} for name, st in found.doc_stats.items()},
            "metrics": found.scores}


def stats_of(result: dict) -> dict:
    """The worker's per-document statistics as DocStats, per lm-eval task."""
    import numpy as np

    from sde_tasks.docstats import DocStats

    return {name: DocStats(st["family"], tuple(st["labels"]), np.array(st["table"]), st["absent"])
            for name, st in result["stats"].items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--task", choices=list(TASKS), default="ner")
    parser.add_argument("--design", default="first-nomi-lines-pu-text-none", help="a variant id (default ES-SDE)")
    parser.add_argument("--eval-limit", type=int, default=None, help="test documents (default: NER 500, MASA all)")
    parser.add_argument("--model", default=None, help="SmolLM2's folder (default: fetched into the work folder)")
    parser.add_argument("--work", default=None, help="keep the cells here (default: a temp folder)")
    parser.add_argument("--fast", default="", help="the fast cell's vLLM settings, KEY=VALUE,... (default: the kit's "
                        "defaults for a new study)")
    parser.add_argument("--worker", choices=CONFIGS, help=argparse.SUPPRESS)
    parser.add_argument("--root", help=argparse.SUPPRESS)
    args = parser.parse_args()
    limit = args.eval_limit if args.eval_limit is not None else TASKS[args.task]["eval_limit"]
    if args.worker:
        print(json.dumps(worker(args.worker, Path(args.root), args.model, args.task, args.design, limit, args.fast)))
        return

    from sde_train.models import fetch_model
    from sde_train.threads import choose_threads

    work = Path(args.work or tempfile.mkdtemp(prefix="sde-bench-cell-"))
    model = Path(args.model) if args.model else fetch_model("smollm2-135m-instruct", work / "smollm2")
    threads = choose_threads()
    print(f"cell: SmolLM2-135M-Instruct, {args.task}, {args.design}, 300 training samples (75 steps), "
          f"{limit or 'all'} test documents; {threads} thread(s); load average {os.getloadavg()[0]:.1f}", flush=True)
    results, limit_of = run_cells(args, work, model, limit, threads)
    report(args, model, limit, threads, results, limit_of)


def run_cells(args: argparse.Namespace, work: Path, model: Path, limit: int | None, threads: int):
    """Each configuration's cell in a worker process of its own, between two measurements of the machine's limits."""
    from limits import cpu_limits

    limits = [cpu_limits(threads)]
    results = {}
    from sde_files.allocator import SWITCH, environment_with_tcmalloc

    # both workers alike but for the allocator, whatever is free when each starts
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"} | {"OMP_NUM_THREADS": str(threads)}
    envs = {"plain": env | {SWITCH: "0"}, "fast": environment_with_tcmalloc(env) or env}
    for config in CONFIGS:
        cmd = [sys.executable, __file__, "--worker", config, "--root", str(work / config), "--model", str(model),
               "--task", args.task, "--design", args.design, "--fast", args.fast] + (
                   ["--eval-limit", str(limit)] if limit else [])
        done = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, env=envs[config])
        if done.returncode:
            sys.exit(f"the {config} cell failed (exit status {done.returncode}); its error is above")
        results[config] = json.loads(done.stdout.strip().splitlines()[-1])
        results[config]["allocator"] = "tcmalloc" if "LD_PRELOAD" in envs[config] else "glibc malloc"
        print(f"{config}: {sum(p['seconds'] for p in results[config]['phases'].values()):.0f} s "
              f"({results[config]['allocator']})", flush=True)
    limits.append(cpu_limits(threads))
    return results, {name: max(m[name] for m in limits) for name in limits[0]}


def phase_table(results: dict, model: Path, limit_of: dict[str, float]) -> dict[str, float]:
    """Print each phase's seconds, tokens/s and share of the limits per configuration; returns each one's total."""
    from limits import forward_flops_per_token, train_flops_per_token

    prompt_flops, gen_flops = forward_flops_per_token(model)
    print("\n| phase | " + " | ".join(f"{c} seconds | {c} tokens/s | {c} of fp32 / bf16 limit" for c in CONFIGS)
          + " | speed-up |")
    print("|---" * (2 + 3 * len(CONFIGS)) + "|")
    for phase in results["plain"]["phases"]:
        cells = []
        for config in CONFIGS:
            p = results[config]["phases"][phase]
            # training: tokens/s of the loop (the trainer's clock, its process start and model load apart)
            seconds = p.get("loop_seconds", p["seconds"])
            tokens = p.get("tokens") or (p.get("prompt_tokens", 0) + p.get("generated_tokens", 0))
            flops = (p["tokens"] * train_flops_per_token(model, p["tokens"] / p["samples"]) if phase == "training"
                     else p.get("prompt_tokens", 0) * prompt_flops + p.get("generated_tokens", 0) * gen_flops)
            share = " / ".join(f"{flops / seconds / v:.0%}" for v in limit_of.values()) if flops else "—"
            cells += [f"{p['seconds']:.1f}", f"{tokens / seconds:,.0f}" if tokens else "—", share]
        speedup = results["plain"]["phases"][phase]["seconds"] / results["fast"]["phases"][phase]["seconds"]
        print(f"| {phase} | " + " | ".join(cells) + f" | {speedup:.2f}x |")
    totals = {c: sum(p["seconds"] for p in results[c]["phases"].values()) for c in CONFIGS}
    print(f"| whole cell | {totals['plain']:.1f} | | | {totals['fast']:.1f} | | | {totals['plain'] / totals['fast']:.2f}x |")
    return totals


def report(args: argparse.Namespace, model: Path, limit: int | None, threads: int, results: dict,
           limit_of: dict[str, float]) -> None:
    """The phase table, the outputs compared, and the JSON line."""
    from sde_tasks.significance import compare_runs

    metric = plan_for("plain", str(model), args.task, args.design, limit).resolved_task().family.primary
    print(f"fast: {fast_settings(args.fast)}; allocators: plain {results['plain']['allocator']}, fast "
          f"{results['fast']['allocator']}")
    print(f"\nlimits at {threads} thread(s): " + ", ".join(f"{n} {v / 1e9:,.0f} GFLOP/s" for n, v in limit_of.items()))
    totals = phase_table(results, model, limit_of)
    plain_out, fast_out = (dict((d, t) for d, t in results[c]["outputs"]) for c in CONFIGS)
    same = sum(plain_out[d] == fast_out.get(d) for d in plain_out)
    stats = {c: stats_of(results[c]) for c in CONFIGS}
    diffs = {}
    for name in stats["plain"]:
        comparison = next(c for c in compare_runs([stats["fast"][name]], [stats["plain"][name]]) if c.metric == metric)
        diffs[name] = comparison
        print(f"\n{name} {metric}: plain {comparison.baseline:.4f}, fast {comparison.value:.4f}, fast - plain "
              f"{comparison.delta:+.4f} [{comparison.ci[0]:+.4f}, {comparison.ci[1]:+.4f}] (paired, 95%)")
    print(f"identical outputs: {same} of {len(plain_out)}; load average {os.getloadavg()[0]:.1f}")
    print(f"plain: {results['plain']['command']}\nfast: {results['fast']['command']}")
    headline = next(iter(diffs))
    print(json.dumps({
        "task": args.task, "design": args.design, "threads": threads, "fast": str(fast_settings(args.fast)),
        "allocator": {c: results[c]["allocator"] for c in CONFIGS},
        "speedup_vs_plain": round(totals["plain"] / totals["fast"], 3),
        "eval_speedup": round(results["plain"]["phases"]["evaluation"]["seconds"]
                              / results["fast"]["phases"]["evaluation"]["seconds"], 3),
        "seconds": {c: {phase: round(p["seconds"], 1) for phase, p in results[c]["phases"].items()} for c in CONFIGS},
        "identical_fraction": round(same / len(plain_out), 4),
        f"{metric}_plain": diffs[headline].baseline, f"{metric}_fast": diffs[headline].value,
        f"{metric}_diff_ci": [round(v, 4) for v in diffs[headline].ci],
        "limits_gflops": {n: round(v / 1e9, 1) for n, v in limit_of.items()}}))

if __name__ == "__main__":
    main()
