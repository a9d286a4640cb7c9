"""Where a study cell's evaluation time goes: vLLM on the prompts one cell logged, one setting changed at a time.

Reads a cell's logged lm-eval samples (the exact prompts, stop strings and token budget), and generates them
again with vLLM and the cell's adapter, greedy, as the study does: each setting in a fresh process (vLLM binds
its threads and its cache at start). Settings:
- `cell`: as the study evaluates (the checkpoint's dtype, vLLM's defaults, the adapter);
- `prefill`: one generated token per document: the prompt's share of the time;
- `no-prefix-cache`: vLLM's prefix cache off: what the prompt prefix every document shares costs;
- `no-lora`: the base model without the adapter (prefill only, so that output lengths do not differ);
- `budget-N`: at most N new tokens: what the runaway tail (answers that run to the budget) costs;
- `bf16`: the base model's weights in bf16;
- `block-N`: KV-cache blocks of N tokens (vLLM's CPU default is 128, and a shared prefix shorter than one
  block is never found in the prefix cache; its CPU attention takes multiples of 32).
Each row: seconds, prompt and generated tokens, tokens found in the prefix cache, and the share of outputs
identical to the cell's logged outputs.

    python bench/profile_eval.py CELL_EVAL_DIR ADAPTER_DIR [--model DIR] [--settings cell,prefill,...]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

SETTINGS = ("cell", "prefill", "no-prefix-cache", "no-lora", "budget-100", "bf16", "block-32")


def logged(folder: Path) -> list[dict]:
    """The cell's logged samples in document order."""
    rows = [json.loads(line) for f in sorted(folder.glob("**/samples_*.jsonl")) for line in f.open(encoding="utf-8")]
    return sorted(rows, key=lambda r: r["doc_id"])


def worker(setting: str, samples: Path, adapter: Path, model: str, limit: int | None) -> dict:
    """Generate the logged prompts under one setting; returns its measurements."""
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "4")
    from vllm import LLM, SamplingParams
    from vllm.lora.request import LoRARequest

    from sde_study.vllm_model import one_adapter_lora_on_cpu

    rows = logged(samples)[:limit]
    prompts = [r["arguments"]["gen_args_0"]["arg_0"] for r in rows]
    gen = rows[0]["arguments"]["gen_args_0"]["arg_1"]
    budget = int(setting.split("-")[1]) if setting.startswith("budget-") else gen["max_gen_toks"]
    if setting in ("prefill", "no-lora"):
        budget = 1
    one_adapter_lora_on_cpu()
    block = {"block_size": int(setting.split("-")[1])} if setting.startswith("block-") else {}
    llm = LLM(model=model, dtype="bfloat16" if setting == "bf16" else "float32", enable_lora=True, max_lora_rank=8,
              enable_prefix_caching=setting != "no-prefix-cache", seed=1234, **block)
    lora = None if setting == "no-lora" else LoRARequest("cell", 1, str(adapter))
    params = SamplingParams(temperature=0, max_tokens=budget, stop=gen["until"])
    llm.generate(prompts[:2], params, lora_request=lora, use_tqdm=False)  # warm: kernels, the adapter's load
    llm.reset_prefix_cache()
    start = time.perf_counter()
    outs = llm.generate(prompts, params, lora_request=lora, use_tqdm=False)
    seconds = time.perf_counter() - start
    texts = [o.outputs[0].text for o in outs]
    same = sum(t == r["resps"][0][0] for t, r in zip(texts, rows))
    return {"setting": setting, "seconds": seconds, "docs": len(rows),
            "prompt_tokens": sum(len(o.prompt_token_ids) for o in outs),
            "cached_tokens": sum(o.num_cached_tokens or 0 for o in outs),
            "generated_tokens": sum(len(o.outputs[0].token_ids) for o in outs),
            "at_budget": sum(len(o.outputs[0].token_ids) >= budget for o in outs),
            "identical": same, "budget": budget}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("samples", type=Path, help="a cell's eval folder (lm-eval's logged samples)")
    parser.add_argument("adapter", type=Path, help="the cell's adapter folder")
    parser.add_argument("--model", default="out/models/smollm2", help="the base model folder")
    parser.add_argument("--settings", default=",".join(SETTINGS))
    parser.add_argument("--limit", type=int, default=None, help="the first N documents")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.samples, args.adapter, str(Path(args.model).resolve()), args.limit)))
        return
    rows = []
    for setting in args.settings.split(","):
        cmd = [sys.executable, __file__, str(args.samples), str(args.adapter), "--model", args.model,
               "--worker", setting] + (["--limit", str(args.limit)] if args.limit else [])
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode:
            sys.exit(f"{setting}: {done.stderr[-2000:]}")
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        r = rows[-1]
        print(f"{setting}: {r['seconds']:.1f} s", flush=True)
    print(f"\nthreads: {os.environ.get('OMP_NUM_THREADS', 'auto')}; load average {os.getloadavg()[0]:.1f}")
    print("| setting | seconds | docs/s | prompt tokens | from prefix cache | generated tokens | at the budget | "
          "identical to the cell |")
    print("|---" * 8 + "|")
    for r in rows:
        print(f"| {r['setting']} | {r['seconds']:.1f} | {r['docs'] / r['seconds']:.2f} | {r['prompt_tokens']:,} | "
              f"{r['cached_tokens']:,} | {r['generated_tokens']:,} | {r['at_budget']} | "
              f"{r['identical']}/{r['docs']} |")
    print(json.dumps({r["setting"]: {k: (round(v, 2) if isinstance(v, float) else v) for k, v in r.items()}
                      for r in rows}))


if __name__ == "__main__":
    main()
