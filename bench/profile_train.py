"""Where `sde train`'s time goes on a real model, and what each speed-up buys, measured in one run.

1. Profile: a few steps of `sde train` (as shipped) under torch.profiler; tables of the top
   operators by self CPU time (forward and backward) and of the forward time by module class.
2. Ablations, each in a fresh process on the same samples, against `sde train` as shipped:
   `peft-lora` (peft's own LoRA forward instead of the fused linear) and `block-mask` (transformers'
   block-diagonal SDPA mask over the packed row instead of one causal SDPA per sample).

    python bench/profile_train.py --model smollm2         # real SmolLM2-135M-Instruct (sde models get)
    python bench/profile_train.py --model random --steps 6

Ends with one JSON line: {"tokens_per_s": {variant: …}, "top_ops": […], "forward_by_module": {…}}.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from train import REAL, SHAPES, VARIANT, prepare  # noqa: E402  (bench/train.py: same data and models)

ROLES = ("lm_head", "embed_tokens", "rotary_emb")  # modules named by role, the others by class
VARIANTS = {"sde": "sde train as shipped (fused LoRA, SDPA per packed sample)",
            "peft-lora": "peft's LoRA forward (no fused linear)",
            "block-mask": "block-diagonal mask SDPA over the packed row"}


def config(args: argparse.Namespace, variant: str):
    from sde_train.config import TrainConfig

    return TrainConfig(model=args.model_dir, dataset=args.data, config=VARIANT, output=str(Path(args.work) / variant),
                       max_steps=args.steps, batch_size=args.batch_size, max_length=args.max_length, lr=1e-4,
                       logging_steps=args.steps, save_steps=args.steps + 1, seed=0, overwrite=True,
                       attn_implementation="sdpa" if variant == "block-mask" else None)


def worker(args: argparse.Namespace) -> dict:
    """One variant's training loop; with --profile, under torch.profiler with module ranges."""
    import torch

    import sde_train.lora
    import sde_train.trainer

    if args.worker == "peft-lora":
        sde_train.lora.fuse_lora_layers = lambda model: 0  # build_model imports it at call time
    if not args.profile:
        s = sde_train.trainer.train(config(args, args.worker))
        return {"tokens_per_s": s["tokens_per_s"], "tokens": s["tokens"], "final_loss": s["final_loss"]}
    ranges: list = []
    original_build = sde_train.trainer.build_model

    def build_with_ranges(cfg, device):  # a record_function range around every module's forward
        model = original_build(cfg, device)
        for path, module in model.named_modules():
            leaf = path.rpartition(".")[2]
            name = f"module::{leaf if leaf in ROLES else type(module).__name__}"
            module.register_forward_pre_hook(
                lambda m, a, name=name: ranges.append(torch.profiler.record_function(name).__enter__()))
            module.register_forward_hook(lambda m, a, out: ranges.pop().__exit__(None, None, None))
        return model

    sde_train.trainer.build_model = build_with_ranges
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        s = sde_train.trainer.train(config(args, args.worker))
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    ops = sorted((e for e in events if not e.key.startswith("module::")), key=lambda e: -e.self_cpu_time_total)
    modules = defaultdict(float)
    for e in events:
        if e.key.startswith("module::"):
            modules[e.key.removeprefix("module::")] += e.cpu_time_total
    return {"tokens_per_s": s["tokens_per_s"], "tokens": s["tokens"], "final_loss": s["final_loss"],
            "total_us": total, "top_ops": [(e.key, e.self_cpu_time_total, e.count) for e in ops[:args.top]],
            "forward_by_module": dict(sorted(modules.items(), key=lambda kv: -kv[1]))}


def run_worker(variant: str, args: argparse.Namespace, data: Path, model: Path, work: Path, profile: bool) -> dict:
    cmd = [sys.executable, __file__, "--worker", variant, "--data", str(data), "--model-dir", str(model),
           "--work", str(work), "--steps", str(args.steps), "--batch-size", str(args.batch_size),
           "--max-length", str(args.max_length), "--top", str(args.top)] + (["--profile"] if profile else [])
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"{variant} worker failed (exit status {proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="smollm2", choices=[*SHAPES, *REAL])
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--max-length", type=int, default=4096)
    parser.add_argument("--top", type=int, default=12, help="operators listed")
    parser.add_argument("--work", default=None, help="keep data, model and outputs here (default: a temp dir)")
    parser.add_argument("--worker", choices=list(VARIANTS), help=argparse.SUPPRESS)
    parser.add_argument("--profile", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return

    work = Path(args.work or tempfile.mkdtemp(prefix="sde-profile-"))
    data, model = prepare(work, args.model)
    import torch

    from sde_train.trainer import compute_dtype

    dtype = compute_dtype("auto", torch.device("cpu")) or torch.float32  # config() keeps sde train's default
    print(f"base model: {args.model}; MASA {VARIANT}; {args.steps} steps x batch {args.batch_size}, "
          f"max length {args.max_length}; cpu, frozen weights in {str(dtype).removeprefix('torch.')}", flush=True)
    profiled = run_worker("sde", args, data, model, work, profile=True)
    total = profiled["total_us"]
    print(f"\nTop operators by self CPU time (forward + backward + optimizer; {total / 1e6:.1f} s profiled):\n")
    print("| operator | self CPU s | share | calls |\n|---|---|---|---|")
    for name, us, calls in profiled["top_ops"]:
        print(f"| `{name}` | {us / 1e6:.2f} | {us / total:.1%} | {calls} |")
    forward = profiled["forward_by_module"]
    whole = sum(us for name, us in forward.items() if name in ("LlamaModel", "Qwen2Model", "lm_head"))
    print("\nForward time by module (inclusive: a layer's time includes its LoRA linears; shares of the decoder "
          "+ LM head forward; the LM head runs on loss positions only):\n")
    print("| module | forward CPU s | share of the forward |\n|---|---|---|")
    for name, us in forward.items():
        print(f"| `{name}` | {us / 1e6:.2f} | {us / whole:.1%} |")

    rates = {}
    for variant in VARIANTS:  # unprofiled, each in a fresh process: the profiler's own cost is not in these
        rates[variant] = run_worker(variant, args, data, model, work, profile=False)["tokens_per_s"]
    print("\n| variant | tokens/s | vs shipped |\n|---|---|---|")
    for variant, label in VARIANTS.items():
        print(f"| {label} | {rates[variant]:,.1f} | {rates[variant] / rates['sde']:.2f}x |")
    print(json.dumps({"model": args.model, "tokens_per_s": {k: round(v, 1) for k, v in rates.items()},
                      "top_ops": [[n, round(us / 1e6, 3)] for n, us, _ in profiled["top_ops"]],
                      "forward_by_module": {k: round(v / 1e6, 3) for k, v in forward.items()}}))


if __name__ == "__main__":
    main()
