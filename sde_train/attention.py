"""Packed-sequence attention without cross-sample work: causal SDPA run per sample.

Why: transformers turns restarting position ids into a block-diagonal mask for `sdpa`, which
still computes every (query, key) pair of the packed row, i.e. (sum of lengths)^2 instead of
sum(length^2), and masked kernels are slower. flash-attention's varlen kernel avoids that on GPU;
this is the same idea for any device, registered as a transformers attention implementation.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

VARLEN_SDPA = "sde_varlen_sdpa"


def varlen_sdpa_forward(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                        attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
                        seq_bounds: tuple[int, ...] | None = None, **kwargs) -> tuple[torch.Tensor, None]:
    """query (1, heads, T, dim), key/value (1, kv_heads, T, dim); `seq_bounds` = sample starts + [T]."""
    if seq_bounds is None:  # not called from the packed trainer (e.g. generate): one causal sequence
        seq_bounds = (0, query.shape[2])
    gqa = key.shape[1] != query.shape[1]
    parts = [
        F.scaled_dot_product_attention(query[:, :, s:e], key[:, :, s:e], value[:, :, s:e], is_causal=True,
                                       dropout_p=dropout if module.training else 0.0, scale=scaling,
                                       enable_gqa=gqa)
        for s, e in zip(seq_bounds[:-1], seq_bounds[1:])
    ]
    return torch.cat(parts, dim=2).transpose(1, 2).contiguous(), None


def register() -> str:
    """Make VARLEN_SDPA a valid `attn_implementation` (idempotent)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(VARLEN_SDPA, varlen_sdpa_forward)
    AttentionMaskInterface.register(VARLEN_SDPA, lambda *args, **kwargs: None)  # the bounds are the mask
    return VARLEN_SDPA
