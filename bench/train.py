"""`sde train`'s loop vs TRL's SFTTrainer (its default and its fastest configuration) on the same work.

Same base model, same data (the ES-SDE MASA variant from `sde data export`), same LoRA settings,
learning rate, schedule, clipping, max length; gradient checkpointing off; bf16 on GPU for all; on
CPU fp32 rows and, where the CPU has bf16 instructions, bf16 rows of both trainers (`sde train
--precision auto` is bf16 there). Both trainers see the same samples in the same order: the bench computes `sde train`'s data
plan (seed 0) and hands TRL exactly those samples in that order with a sequential sampler, so TRL's
default row trains on the very batches `sde train` does; TRL's packed row regroups the same samples
into bins of up to max length tokens (best-fit decreasing) and trains one pass over them, one bin
per step (a batch of bins is flattened into one row whose mask grows with the square of its length).

TRL rows: `default` (padding to the longest sample of each batch) and `bfd` (`packing=True,
packing_strategy="bfd"`: padding-free rows, position ids restarting per sample); on GPU the packed
row also uses the fastest attention installed (flash-attn) and `use_liger_kernel` when liger-kernel
is installed. Ratios are against the FASTEST TRL row.

Each run is a fresh subprocess: peak memory is its peak RSS on CPU (model loading included, for
all alike), the CUDA allocator's peak on GPU. Tokens are the real tokens trained on (no padding),
counted alike; the clock covers the training loop only (not loading or tokenizing).

    python bench/train.py                          # CPU, random Qwen2-shaped 30M model
    python bench/train.py --model smollm2          # CPU, real SmolLM2-135M-Instruct (sde models get)
    python bench/train.py --gpu --model qwen2.5-1.5b-shape   # CUDA bf16, with MFU

On CPU the bench also measures the machine's limits in the same run (bench/limits.py: the best FLOP/s of
large fp32 and bf16 matrix products at the workers' thread count, before and after the rows), and reports
each row's model FLOP/s (the PaLM count MFU uses) as a fraction of the limit of its dtype.

Ends with one JSON line: {"speedup_vs_trl": …, "memory_ratio_vs_trl": …, "tokens_per_s": …,
"speedup_vs_fp32": …, "loss_vs_fp32": …, "fraction_of_bf16_limit": …, …} (`speedup_vs_fp32`, `loss_vs_fp32`:
`sde train` auto against --precision fp32).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

VARIANT = "first-nomi-lines-pu-text-none"  # ES-SDE
# Random-weight shapes. ~30M parameters: 8 layers of 2.8M + a 16k x 512 tied embedding.
SHAPES = {
    "random": dict(hidden_size=512, num_layers=8, num_heads=8, num_kv_heads=2, intermediate_size=1408,
                   vocab_size=16000),
    # Qwen2.5-0.5B / 1.5B: layers, widths, heads and the tied 151936 vocabulary of the real models.
    "qwen2.5-0.5b-shape": dict(hidden_size=896, num_layers=24, num_heads=14, num_kv_heads=2,
                               intermediate_size=4864, vocab_size=32000, model_vocab_size=151936),
    "qwen2.5-1.5b-shape": dict(hidden_size=1536, num_layers=28, num_heads=12, num_kv_heads=2,
                               intermediate_size=8960, vocab_size=32000, model_vocab_size=151936),
}
REAL = {"smollm2": "smollm2-135m-instruct"}
# (steps, batch size, max length) per model when not given: a full CPU run stays near 10 minutes.
# SmolLM2's tokenizer spends ~3 tokens per Chinese character: samples run to 3.6k tokens (median 737).
# TRL's default pads a batch to its longest sample: batch 2 keeps its peak RSS near 7 GB.
# The random model's tokenizer (trained on the bundled texts) spends up to ~1.6k tokens on a MASA sample.
RUN_DEFAULTS = {"random": (10, 4, 2048), "smollm2": (6, 2, 4096)}
GPU_RUN_DEFAULTS = (50, 8, 2048)
GPU_PEAK_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12}  # dense bf16, no sparsity
TRAINERS = {"trl-default": "TRL SFTTrainer, default", "trl-default-bf16": "TRL SFTTrainer, default, bf16=True",
            "trl-bfd": "TRL SFTTrainer, packing bfd (padding-free)", "sde-fp32": "sde train --precision fp32",
            "sde": "sde train (--precision auto)"}
BF16_ROWS = ("trl-default-bf16",)
FP32_ROWS = ("trl-default", "trl-bfd", "sde-fp32")  # on CPU: TRL's rows without bf16=True compute in fp32  # run where the hardware has bf16 (CUDA; CPU with AVX512_BF16 or AMX)


def prepare(work: Path, model_name: str) -> tuple[Path, Path]:
    """Export the ES-SDE MASA variant; fetch the real model or build the random-weight one."""
    data = work / "data"
    sde = Path(sys.executable).parent / "sde"
    subprocess.run([str(sde), "data", "export", "--task", "masa", "--designs", "es-sde", "--out", str(data),
                    "--overwrite"], check=True, capture_output=True)  # always fresh: a kept --work holds no stale rows
    if model_name in REAL:
        from sde_train.models import fetch_model

        return data, fetch_model(REAL[model_name], work / model_name)
    from sde_train.tiny_model import build_tiny_model, bundled_data_files, iter_jsonl_texts

    return data, build_tiny_model(work / model_name, iter_jsonl_texts(bundled_data_files()), **SHAPES[model_name])


def sample_order(data: Path, steps: int, batch_size: int) -> list[int]:
    """The dataset rows `sde train` reads, in its order (its DataPlan, seed 0, one process)."""
    import datasets

    from sde_train.data import DataPlan

    n = datasets.load_dataset(str(data), VARIANT, split="train").num_rows
    plan = DataPlan(n, batch_size, 1, 1, seed=0)
    return [i for step in range(steps) for micro in plan.micro_batches(step, 0) for i in micro]


def peak_memory() -> int:
    import torch

    if torch.cuda.is_available():
        return int(torch.cuda.max_memory_allocated())
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def worker_sde(args: argparse.Namespace) -> dict:
    from sde_train.config import TrainConfig
    from sde_train.trainer import train

    cfg = TrainConfig(model=args.model_dir, dataset=args.data, config=VARIANT, output=str(Path(args.work) / "sde-out"),
                      max_steps=args.steps, batch_size=args.batch_size, max_length=args.max_length, lr=1e-4,
                      logging_steps=args.steps, save_steps=args.steps + 1, seed=0, overwrite=True,
                      precision="fp32" if args.worker == "sde-fp32" else "auto")
    s = train(cfg)  # one logging window = the whole loop: tokens / tokens_per_s is the loop's time
    return {"tokens": s["tokens"], "computed": s["tokens"], "seconds": s["tokens"] / s["tokens_per_s"],
            "final_loss": s["final_loss"], "steps": s["steps"]}


def worker_trl(args: argparse.Namespace) -> dict:
    import datasets
    import torch
    from peft import LoraConfig
    from torch.utils.data import SequentialSampler
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    gpu = torch.cuda.is_available()
    packed = args.worker == "trl-bfd"
    bf16 = gpu or args.worker in BF16_ROWS
    attn = fastest_attention(gpu) if packed else None
    tokenizer = AutoTokenizer.from_pretrained(args.model_dir)
    model = AutoModelForCausalLM.from_pretrained(args.model_dir, dtype=torch.bfloat16 if gpu else torch.float32,
                                                 **({"attn_implementation": attn} if attn else {}))
    order = json.loads(Path(args.order).read_text())
    train_set = (datasets.load_dataset(args.data, VARIANT, split="train").select(order)
                 .select_columns(["prompt", "completion"]))
    counted = {"tokens": 0, "computed": 0, "steps": 0}
    clock: dict[str, float] = {}

    class Timer(TrainerCallback):
        def on_train_begin(self, *a, **k):
            clock["start"] = time.perf_counter()

        def on_train_end(self, *a, **k):
            if gpu:
                torch.cuda.synchronize()
            clock["end"] = time.perf_counter()

    class InOrderSFTTrainer(SFTTrainer):
        def _get_train_sampler(self, *a, **k):  # the bench's order, not a reshuffle
            return SequentialSampler(self.train_dataset)

        def training_step(self, model, inputs, *rest, **kw):
            mask = inputs.get("attention_mask")  # absent when padding-free: every token is real
            counted["tokens"] += int(mask.sum()) if mask is not None else inputs["input_ids"].numel()
            counted["computed"] += inputs["input_ids"].numel()
            counted["steps"] += 1
            return super().training_step(model, inputs, *rest, **kw)

    config = SFTConfig(
        # packed: one bin of up to max_length tokens per step; more bins would be flattened into one row
        # whose block-diagonal mask costs (bins x max_length)^2 on SDPA
        output_dir=str(Path(args.work) / f"{args.worker}-out"), per_device_train_batch_size=1 if packed else args.batch_size,
        gradient_accumulation_steps=1, num_train_epochs=1, max_steps=-1 if packed else args.steps,
        learning_rate=1e-4, lr_scheduler_type="linear", warmup_steps=0, weight_decay=0.0, max_grad_norm=1.0,
        max_length=args.max_length, packing=packed, packing_strategy="bfd", gradient_checkpointing=False,
        bf16=bf16, use_cpu=not gpu, save_strategy="no", report_to="none", logging_steps=args.steps, seed=0,
        dataloader_num_workers=0, disable_tqdm=True,
        use_liger_kernel=packed and gpu and importlib.util.find_spec("liger_kernel") is not None)
    lora = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.1, target_modules="all-linear", task_type="CAUSAL_LM")
    trainer = InOrderSFTTrainer(model=model, args=config, train_dataset=train_set, processing_class=tokenizer,
                                peft_config=lora, callbacks=[Timer()])
    result = trainer.train()
    return {"tokens": counted["tokens"], "computed": counted["computed"], "seconds": clock["end"] - clock["start"],
            "final_loss": result.training_loss, "steps": counted["steps"],
            "config": f"attn={model.config._attn_implementation}, liger={config.use_liger_kernel}"}


def fastest_attention(gpu: bool) -> str:
    """flash-attention 2 when the package is installed on GPU, else SDPA (transformers' default)."""
    return "flash_attention_2" if gpu and importlib.util.find_spec("flash_attn") else "sdpa"


def run_worker(kind: str, args: argparse.Namespace, data: Path, model: Path, work: Path, order: Path) -> dict:
    cmd = [sys.executable, __file__, "--worker", kind, "--data", str(data), "--model-dir", str(model), "--work",
           str(work), "--order", str(order), "--steps", str(args.steps), "--batch-size", str(args.batch_size),
           "--max-length", str(args.max_length)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"{kind} worker failed (exit status {proc.returncode}; -9: killed, e.g. out of memory):\n"
                 f"{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=None, choices=[*SHAPES, *REAL],
                        help="base model (default: random on CPU, qwen2.5-0.5b-shape with --gpu)")
    parser.add_argument("--steps", type=int, default=None, help="optimizer steps of sde and TRL-default")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--max-length", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=1, help="interleaved rounds; the best of each is kept")
    parser.add_argument("--gpu", action="store_true", help="CUDA, bf16, with MFU")
    parser.add_argument("--work", default=None, help="keep data, model and outputs here (default: a temp dir)")
    parser.add_argument("--worker", choices=list(TRAINERS), help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", help=argparse.SUPPRESS)
    parser.add_argument("--order", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.model = args.model or ("qwen2.5-0.5b-shape" if args.gpu else "random")
    defaults = GPU_RUN_DEFAULTS if args.gpu else RUN_DEFAULTS.get(args.model, RUN_DEFAULTS["random"])
    args.steps, args.batch_size, args.max_length = (given or default for given, default in zip(
        (args.steps, args.batch_size, args.max_length), defaults))

    if args.worker:
        result = (worker_sde if args.worker.startswith("sde") else worker_trl)(args)
        print(json.dumps({**result, "peak_memory": peak_memory()}))
        return

    import torch

    if args.gpu and not torch.cuda.is_available():
        sys.exit("--gpu: no CUDA device")
    if not args.gpu and torch.cuda.is_available():
        sys.exit("a CUDA device is visible: pass --gpu, or hide it with CUDA_VISIBLE_DEVICES=")
    work = Path(args.work or tempfile.mkdtemp(prefix="sde-bench-"))
    data, model = prepare(work, args.model)
    order = work / "order.json"
    order.write_text(json.dumps(sample_order(data, args.steps, args.batch_size)))
    from transformers import AutoConfig

    c = AutoConfig.from_pretrained(model)
    print(f"base model: {args.model} ({c.model_type}, {c.num_hidden_layers} layers, hidden {c.hidden_size}, "
          f"vocabulary {c.vocab_size}); data: MASA {VARIANT}; {args.steps} steps x batch {args.batch_size}, "
          f"max length {args.max_length}, LoRA r8 all-linear dropout 0.1; "
          f"{'cuda bf16 ' + torch.cuda.get_device_name() if args.gpu else f'cpu, {torch.get_num_threads()} threads'}; "
          f"load average {os.getloadavg()[0]:.1f}", flush=True)
    from limits import cpu_limits, train_flops_per_token
    from sde_train.threads import choose_threads
    from sde_train.trainer import cpu_has_bf16

    kinds = [k for k in TRAINERS if k not in BF16_ROWS or args.gpu or cpu_has_bf16()]
    if args.gpu:  # on CUDA every row is bf16 already
        kinds = [k for k in kinds if k not in BF16_ROWS and k != "sde-fp32"]
    runs: dict[str, list[dict]] = {kind: [] for kind in kinds}
    threads = None if args.gpu else choose_threads()  # what each worker process takes, measured alike
    limits = [] if args.gpu else [cpu_limits(threads)]
    for round_ in range(args.repeats):  # interleaved, so drifting machine load hits all alike
        for kind in kinds:
            r = run_worker(kind, args, data, model, work, order)
            r["tokens_per_s"] = r["tokens"] / r["seconds"]
            runs[kind].append(r)
            print(f"round {round_ + 1} {kind}: {r['tokens_per_s']:,.1f} tokens/s", flush=True)
    if not args.gpu:  # the limit at both ends of the rows: the best of the two, as for the rows
        limits.append(cpu_limits(threads))
        limit = {name: max(m[name] for m in limits) for name in limits[0]}
        print("limits at " + f"{threads} thread(s): " + ", ".join(f"{n} {v / 1e9:,.0f} GFLOP/s" for n, v in limit.items()))
    # best round of each: noise on a shared machine only ever slows a run down
    best = {kind: max(rs, key=lambda r: r["tokens_per_s"]) for kind, rs in runs.items()}
    peak = {kind: max(r["peak_memory"] for r in rs) for kind, rs in runs.items()}
    fastest_trl = max((k for k in kinds if k.startswith("trl")), key=lambda k: best[k]["tokens_per_s"])
    seq_len = best["sde"]["tokens"] / (args.steps * args.batch_size)
    flops = train_flops_per_token(model, seq_len)
    gpu_peak = next((v for k, v in GPU_PEAK_FLOPS.items() if k in torch.cuda.get_device_name()), None) \
        if args.gpu else None
    # each row's own dtype: fp32 rows against the fp32 limit, bf16 rows against the bf16 limit
    row_limit = {} if args.gpu else {k: limit["float32" if k in FP32_ROWS or "bfloat16" not in limit else "bfloat16"]
                                     for k in kinds}

    mem_name = "peak CUDA alloc MiB" if args.gpu else "peak RSS MiB"
    print(f"\n| trainer | steps | real tokens | tokens computed (incl. padding) | seconds | tokens/s | {mem_name} | "
          f"final loss | vs fastest TRL (speed, memory) |{' MFU |' if gpu_peak else ' of its dtype limit |'}")
    print("|---" * 10 + "|")
    for kind in kinds:
        name, r = TRAINERS[kind], best[kind]
        ratio = f"{r['tokens_per_s'] / best[fastest_trl]['tokens_per_s']:.2f}x, {peak[kind] / peak[fastest_trl]:.2f}x"
        peak_flops = gpu_peak or row_limit.get(kind)
        mfu = f" {r['tokens_per_s'] * flops / peak_flops:.1%} |" if peak_flops else " n/a |"
        print(f"| {name} | {r['steps']} | {r['tokens']:.0f} | {r['computed']:.0f} | {r['seconds']:.1f} | "
              f"{r['tokens_per_s']:,.1f} | {peak[kind] / 2**20:,.0f} | {r['final_loss']:.4f} | {ratio} |{mfu}")
    for kind in kinds:
        if "config" in best[kind]:
            print(f"{kind}: {best[kind]['config']}")
    speedup = best["sde"]["tokens_per_s"] / best[fastest_trl]["tokens_per_s"]
    memory_ratio = peak["sde"] / peak[fastest_trl]
    out = {"model": args.model, "fastest_trl": fastest_trl, "speedup_vs_trl": round(speedup, 3),
           "memory_ratio_vs_trl": round(memory_ratio, 3), "tokens_per_s": round(best["sde"]["tokens_per_s"], 1),
           "trl_tokens_per_s": {k: round(best[k]["tokens_per_s"], 1) for k in kinds if k.startswith("trl")}}
    if "sde-fp32" in best:  # bf16 against fp32 on the same samples: speed and the mean loss of the run
        out["speedup_vs_fp32"] = round(best["sde"]["tokens_per_s"] / best["sde-fp32"]["tokens_per_s"], 3)
        out["loss_vs_fp32"] = round(best["sde"]["final_loss"] / best["sde-fp32"]["final_loss"] - 1, 4)
    if not args.gpu and "bfloat16" in limit:
        out["fraction_of_bf16_limit"] = round(best["sde"]["tokens_per_s"] * flops / limit["bfloat16"], 3)
        out["bf16_limit_gflops"] = round(limit["bfloat16"] / 1e9, 1)
        out["threads"] = threads
    if gpu_peak:
        out["mfu"] = round(best["sde"]["tokens_per_s"] * flops / gpu_peak, 4)
        out["mfu_trl"] = round(best[fastest_trl]["tokens_per_s"] * flops / gpu_peak, 4)
    print(f"\nspeed-up {speedup:.2f}x, peak memory ratio {memory_ratio:.2f} (sde / fastest TRL row: {fastest_trl}); "
          f"load average {os.getloadavg()[0]:.1f}")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
