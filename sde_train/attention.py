"""Packed-sequence attention without cross-sample work, registered as a transformers implementation.

Why: transformers turns restarting position ids into a block-diagonal mask for `sdpa`, which
still computes every (query, key) pair of the packed row, i.e. (sum of lengths)^2 instead of
sum(length^2), and masked kernels are slower. On CUDA in bf16/fp16 the packed row goes to PyTorch's
variable-length flash kernel (`torch.nn.attention.varlen.varlen_attn`, one call for all samples, no
flash-attn package needed); elsewhere (CPU, fp32, older GPUs, attention dropout) a causal SDPA runs
per sample.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

try:
    from torch.nn.attention.varlen import varlen_attn
except ImportError:  # PyTorch < 2.10
    varlen_attn = None

VARLEN_SDPA = "sde_varlen_sdpa"
_cu_seqlens: dict[tuple, torch.Tensor] = {}  # the current row's bounds on its device: one copy per step, not per layer


def uses_varlen_kernel(query: torch.Tensor, dropout: float) -> bool:
    """varlen_attn runs flash-attention: CUDA, half precision, compute capability >= 8.0, no dropout."""
    return (varlen_attn is not None and query.is_cuda and query.dtype in (torch.bfloat16, torch.float16)
            and dropout == 0.0 and torch.cuda.get_device_capability(query.device) >= (8, 0))


def cu_seqlens(seq_bounds: tuple[int, ...], device: torch.device) -> torch.Tensor:
    key = (seq_bounds, device)
    if key not in _cu_seqlens:
        _cu_seqlens.clear()
        _cu_seqlens[key] = torch.tensor(seq_bounds, dtype=torch.int32).to(device, non_blocking=True)
    return _cu_seqlens[key]


def varlen_sdpa_forward(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                        attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
                        seq_bounds: tuple[int, ...] | None = None, **kwargs) -> tuple[torch.Tensor, None]:
    """query (1, heads, T, dim), key/value (1, kv_heads, T, dim); `seq_bounds` = sample starts + [T].
    Returns (1, T, heads, dim)."""
    if seq_bounds is None:  # not called from the packed trainer (e.g. generate): one causal sequence
        seq_bounds = (0, query.shape[2])
    dropout = dropout if module.training else 0.0
    gqa = key.shape[1] != query.shape[1]
    if uses_varlen_kernel(query, dropout):
        cu = cu_seqlens(seq_bounds, query.device)
        longest = max(e - s for s, e in zip(seq_bounds[:-1], seq_bounds[1:]))
        out = varlen_attn(query[0].transpose(0, 1), key[0].transpose(0, 1), value[0].transpose(0, 1), cu, cu,
                          longest, longest, scale=scaling, window_size=(-1, 0), enable_gqa=gqa)
        return out.unsqueeze(0), None
    parts = [
        F.scaled_dot_product_attention(query[:, :, s:e], key[:, :, s:e], value[:, :, s:e], is_causal=True,
                                       dropout_p=dropout, scale=scaling, enable_gqa=gqa)
        for s, e in zip(seq_bounds[:-1], seq_bounds[1:])
    ]
    out = parts[0] if len(parts) == 1 else torch.cat(parts, dim=2)
    return out.transpose(1, 2).contiguous(), None


def register() -> str:
    """Make VARLEN_SDPA a valid `attn_implementation` (idempotent)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(VARLEN_SDPA, varlen_sdpa_forward)
    AttentionMaskInterface.register(VARLEN_SDPA, lambda *args, **kwargs: None)  # the bounds are the mask
    return VARLEN_SDPA
