"""Model FLOPs per token and the CPU's matrix-product limits, measured in the run that compares against them
(MFU on a GPU uses the data sheet's peak; a CPU has none to quote, and a busy machine's limit is what its other
work leaves). Shared by bench/train.py, bench/eval_engines.py and bench/cell.py."""
from __future__ import annotations

import json
import time
from pathlib import Path

SIZES = (1024, 2048, 4096)  # square products: the smallest already reaches oneDNN's AMX peak here


def matmul_flops(dtype_name: str, threads: int, seconds: float = 1.0) -> float:
    """The best FLOP/s of square matrix products in `dtype_name` (float32, bfloat16) at `threads` torch threads."""
    import torch

    dtype = getattr(torch, dtype_name)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    best = 0.0
    try:
        for n in SIZES:
            a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
            a @ b  # oneDNN picks and caches its kernel on the first product
            done, start = 0, time.perf_counter()
            while time.perf_counter() - start < seconds:
                a @ b
                done += 1
            best = max(best, 2 * n**3 * done / (time.perf_counter() - start))
    finally:
        torch.set_num_threads(before)
    return best


def cpu_limits(threads: int) -> dict[str, float]:
    """{"float32": FLOP/s, "bfloat16": FLOP/s} (bfloat16 only where the CPU has bf16 instructions)."""
    from sde_train.trainer import cpu_has_bf16

    names = ("float32", "bfloat16") if cpu_has_bf16() else ("float32",)
    return {name: matmul_flops(name, threads) for name in names}


def _shape(model_dir: Path) -> tuple[dict, int, int]:
    cfg = json.loads((Path(model_dir) / "config.json").read_text(encoding="utf-8"))
    head = cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]
    return cfg, cfg["num_attention_heads"] * head, cfg["num_key_value_heads"] * head


def _body(model_dir: Path) -> int:
    """Decoder weights (attention and MLP matrices of every layer), embeddings apart."""
    cfg, q, kv = _shape(model_dir)
    h = cfg["hidden_size"]
    return cfg["num_hidden_layers"] * (2 * h * q + 2 * h * kv + 3 * h * cfg["intermediate_size"])


def forward_flops_per_token(model_dir: Path) -> tuple[float, float]:
    """(prompt token, generated token) forward FLOPs: 2 x decoder weights; a generated token adds the output
    layer (vLLM computes logits only where it samples)."""
    cfg, _, _ = _shape(model_dir)
    body = 2 * _body(model_dir)
    return body, body + 2 * cfg["hidden_size"] * cfg["vocab_size"]


def train_flops_per_token(model_dir: Path, seq_len: float) -> float:
    """Model FLOPs as MFU usually counts them (PaLM): 6 x (decoder + LM head weights) + 12·layers·d·seq.
    The same count for every trainer: work one of them skips (frozen-weight gradients under LoRA, the
    LM head off the loss positions, padding) is not credited to anyone."""
    cfg, q, _ = _shape(model_dir)
    head = cfg["hidden_size"] * cfg["vocab_size"]
    return 6 * (_body(model_dir) + head) + 12 * cfg["num_hidden_layers"] * q * seq_len
