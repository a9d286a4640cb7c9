"""`bench/eval.py --engines`: the study's two evaluation engines side by side on SmolLM2-135M-Instruct.

HF (transformers + PEFT, at the best thread count and batch size of a short probe) against vLLM (one engine,
the adapter as a LoRARequest), on NER and MASA test documents, untuned and with an adapter, greedy, the
design's prompts with the chat template, fp32 on both (the checkpoint's dtype, what `hf` evaluates in).
Reported: documents/s of each (vLLM's engine start apart), how many generated strings are identical and how
far the metrics move, and the machine's limit: its measured fp32 matmul GFLOP/s over the FLOPs a document
costs at the measured prompt and output lengths (2 x non-embedding parameters per prompt token, plus the
output layer per generated token). vLLM's prefix cache computes a prompt prefix shared by documents once, so
on long shared instructions (MASA) it can beat that limit. Ends with one JSON line
{"speedup_vs_hf": ..., "identical_fraction": ..., "fraction_of_limit": ...}: vLLM with the adapter on NER (the
bar's setting); `identical_fraction_all` pools every document of the four comparisons.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

DESIGN = "first-nomi-lines-pu-text-none"  # ES-SDE
TASKS = {"ner": ("ner", "sde_ner"), "masa": ("masa", "sde_masa_id")}
PROBE = {"threads": (1, 2), "batch": (8, 32)}


def copy_gb_per_s(mib: int = 512, repeats: int = 5) -> float:
    """Memory bandwidth: bytes read + written per second by a large tensor copy (best of `repeats`)."""
    import torch

    src = torch.ones(mib * 2 ** 18)
    dst = torch.empty_like(src)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        dst.copy_(src)
        best = min(best, time.perf_counter() - start)
    return 2 * src.numel() * 4 / best / 1e9


def train_adapter(base: Path, task: str, out: Path, steps: int) -> Path:
    """A short LoRA fine-tune of `base` on the task's ES-SDE samples (what a study cell makes, fewer steps)."""
    from sde_datagen.cli import main as sde

    data = out.parent / f"data-{task}"
    if not data.exists():
        sde(["data", "export", "--task", task, "--designs", "es-sde", "--train-size", "300", "--splits", "train",
             "--out", str(data)])
    if not (out / "adapter_config.json").exists():
        from sde_train.config import TrainConfig
        from sde_train.trainer import train

        train(TrainConfig(model=str(base), dataset=str(data), config=DESIGN, output=str(out), max_steps=steps,
                          lr=5e-4, max_length=4096, chat_template=True, seed=0).check())
    return out


def evaluate(lm, lm_task: str, docs: int, out: Path, max_gen_toks: int):
    from sde_study.evaluate import run_lm_eval

    return run_lm_eval(lm, (lm_task,), {"design": DESIGN}, out, chat_template=True, limit=docs,
                       max_gen_toks=max_gen_toks)


def token_counts(tokenizer, rows: list[dict[str, Any]]) -> tuple[float, float]:
    """Mean prompt tokens (as rendered with the chat template) and generated tokens (+1 for the stop) per document."""
    prompts = [tokenizer.apply_chat_template([{"role": "user", "content": r["arguments"]["gen_args_0"]["arg_0"]}],
                                             add_generation_prompt=True, tokenize=True) for r in rows]
    outputs = [tokenizer(r["resps"][0][0], add_special_tokens=False)["input_ids"] for r in rows]
    n = max(len(rows), 1)
    return sum(len(p if isinstance(p, list) else p["input_ids"]) for p in prompts) / n, sum(len(o) + 1 for o in outputs) / n


def probe_hf(base: Path, docs: int, work: Path, max_gen_toks: int) -> tuple[int, int]:
    """The HF thread count and batch size with the most NER documents/s on a short run."""
    import torch

    from sde_study.engines import HFEngine

    best, pick = 0.0, (PROBE["threads"][0], PROBE["batch"][0])
    for threads in PROBE["threads"]:
        torch.set_num_threads(threads)
        for batch in PROBE["batch"]:
            with HFEngine(str(base), batch_size=batch).lm(None) as lm:
                found = evaluate(lm, "sde_ner", docs, work / f"probe-{threads}-{batch}", max_gen_toks)
            rate = docs / found.seconds
            print(f"  HF probe: {threads} thread(s), batch {batch:>2}: {rate:.3f} NER documents/s", flush=True)
            if rate > best:
                best, pick = rate, (threads, batch)
    return pick


def engines_main(ner_docs: int, masa_docs: int, max_gen_toks: int, adapter_steps: int, work: Path,
                 probe_docs: int = 8) -> int:
    import torch

    from sde_study.engines import HFEngine, VLLMEngine, same_generation
    from sde_tasks.logged import read_run as logged_samples
    from sde_train.models import fetch_model
    from sde_train.threads import free_cores

    from limits import forward_flops_per_token, matmul_flops

    base = fetch_model("smollm2-135m-instruct", work / "smollm2")
    cores = free_cores()
    torch.set_num_threads(cores)
    fp32, bf16 = (matmul_flops(name, cores) / 1e9 for name in ("float32", "bfloat16"))
    bandwidth = copy_gb_per_s()
    print(f"machine: {os.cpu_count()} cores ({cores} free), fp32 matmul {fp32:.0f} GFLOP/s, bf16 {bf16:.0f} GFLOP/s, "
          f"copy {bandwidth:.1f} GB/s", flush=True)
    adapters = {task: train_adapter(base, task, work / f"adapter-{task}", adapter_steps) for task in TASKS}
    docs = {"ner": ner_docs, "masa": masa_docs}

    threads, batch = probe_hf(base, probe_docs, work, max_gen_toks)
    print(f"HF: {threads} thread(s), batch {batch} (best of the probe)", flush=True)
    torch.set_num_threads(threads)
    hf = HFEngine(str(base), batch_size=batch)
    runs: dict[tuple[str, str, str], Any] = {}
    for task, (_, lm_task) in TASKS.items():
        for kind, adapter in (("base", None), ("adapter", adapters[task])):
            with hf.lm(adapter) as lm:
                runs["hf", task, kind] = evaluate(lm, lm_task, docs[task], work / f"hf-{task}-{kind}", max_gen_toks)
            print(f"  hf   {task:<4} {kind:<7} {docs[task] / runs['hf', task, kind].seconds:.3f} docs/s", flush=True)

    os.environ.setdefault("OMP_NUM_THREADS", str(cores))
    vllm = VLLMEngine(str(base))
    start = time.perf_counter()
    vllm.engine
    started = time.perf_counter() - start
    print(f"vLLM engine start: {started:.1f}s ({cores} thread(s))", flush=True)
    for task, (_, lm_task) in TASKS.items():
        for kind, adapter in (("base", None), ("adapter", adapters[task])):
            with vllm.lm(adapter) as lm:
                runs["vllm", task, kind] = evaluate(lm, lm_task, docs[task], work / f"vllm-{task}-{kind}", max_gen_toks)
            print(f"  vllm {task:<4} {kind:<7} {docs[task] / runs['vllm', task, kind].seconds:.3f} docs/s", flush=True)

    prompt_flops, gen_flops = forward_flops_per_token(base)
    print(f"\nSmolLM2-135M-Instruct fp32, ES-SDE prompts with the chat template, greedy, max_gen_toks={max_gen_toks}; "
          f"limit = fp32 {fp32:.0f} GFLOP/s / FLOPs per document ({prompt_flops / 1e9:.3f} GFLOP per prompt token, "
          f"{gen_flops / 1e9:.3f} per generated token)")
    print(f"{'task':<5} {'model':<8} {'docs':>5} {'prompt tok':>10} {'output tok':>10} {'HF docs/s':>10} "
          f"{'vLLM docs/s':>11} {'x HF':>6} {'limit docs/s':>12} {'of limit':>9} {'identical':>10} {'+cut char':>10} "
          f"{'max |Δmetric|':>14}")
    summary: dict[str, dict[str, float]] = {}
    for task in TASKS:
        for kind in ("base", "adapter"):
            ours, theirs = runs["vllm", task, kind], runs["hf", task, kind]
            a, b = logged_samples(ours.logs), logged_samples(theirs.logs)
            same = sum(x["resps"][0][0] == y["resps"][0][0] for x, y in zip(a, b)) / max(len(a), 1)
            cut = sum(same_generation(x["resps"][0][0], y["resps"][0][0]) for x, y in zip(a, b)) / max(len(a), 1)
            prompt_toks, out_toks = token_counts(vllm.tokenizer, a)
            limit = fp32 * 1e9 / (prompt_toks * prompt_flops + out_toks * gen_flops)
            rate_v, rate_h = docs[task] / ours.seconds, docs[task] / theirs.seconds
            metrics = ours.scores[TASKS[task][1]]
            delta = max(abs(v - theirs.scores[TASKS[task][1]][k]) for k, v in metrics.items() if k != "n_docs")
            summary[f"{task}-{kind}"] = {"hf_docs_per_s": rate_h, "vllm_docs_per_s": rate_v, "speedup": rate_v / rate_h,
                                         "identical": same, "identical_but_a_cut_character": cut,
                                         "max_metric_delta": delta, "limit_docs_per_s": limit,
                                         "fraction_of_limit": rate_v / limit, "prompt_tokens": prompt_toks,
                                         "output_tokens": out_toks}
            print(f"{task:<5} {kind:<8} {docs[task]:>5} {prompt_toks:>10.0f} {out_toks:>10.1f} {rate_h:>10.3f} "
                  f"{rate_v:>11.3f} {rate_v / rate_h:>6.2f} {limit:>12.3f} {rate_v / limit:>9.2f} {same:>10.3f} {cut:>10.3f} "
                  f"{delta:>14.4f}")
    headline = summary["ner-adapter"]
    weight = {key: docs[key.split("-")[0]] / (2 * sum(docs.values())) for key in summary}
    pooled = sum(row["identical"] * weight[key] for key, row in summary.items())
    pooled_cut = sum(row["identical_but_a_cut_character"] * weight[key] for key, row in summary.items())
    print(f"vLLM engine start (once per study worker): {started:.1f}s; HF at {threads} thread(s), batch {batch}")
    print(f"identical strings over all {2 * sum(docs.values())} documents: {pooled:.4f}; {pooled_cut:.4f} counting "
          "those equal but for a last multi-byte character cut by max_gen_toks ('+cut char': HF decodes its bytes as "
          "U+FFFD, vLLM holds them back)")
    print(json.dumps({"speedup_vs_hf": round(headline["speedup"], 2), "identical_fraction": round(headline["identical"], 4),
                      "identical_fraction_all": round(pooled, 4), "identical_fraction_all_but_cut_characters":
                      round(pooled_cut, 4),
                      "fraction_of_limit": round(headline["fraction_of_limit"], 3),
                      "engine_start_s": round(started, 1), "hf_threads": threads, "hf_batch": batch,
                      "fp32_gflops": round(fp32, 1), "bf16_gflops": round(bf16, 1), "copy_gb_per_s": round(bandwidth, 1),
                      "runs": {k: {m: round(v, 4) for m, v in row.items()} for k, row in summary.items()}}))
    return 0
