"""peft's LoRA linear layer as one autograd function: same result, fewer passes over the activations.

Why: peft computes base(x) + B(A(dropout(x))) * s op by op. On CPU the dropout mask alone (one
Mersenne-twister draw per input element) cost about as much as the frozen layer's matmul, the
dropped copy of x is kept for backward (4 bytes per element, per adapted layer), and the scaling and
the sum are each a full pass over the output. Here the mask is cut from 16-bit lanes of 64-bit draws
and kept as bool, the scalings act on the rank-r activations, the sum is folded into the matmul,
and backward recomputes x * mask instead of storing it. Weights, adapter files and the loss are
peft's; the dropout masks come from a different (equally seeded) stream.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from peft.tuners.lora import Linear as LoraLinear

LANE = 1 << 16  # dropout probabilities are rounded to multiples of 1/65536


def keep_mask(shape: torch.Size, p: float, device: torch.device) -> torch.Tensor:
    """Bernoulli(1 - p) bool mask from the default generator, four 16-bit lanes per 64-bit draw."""
    n = math.prod(shape)
    words = torch.empty(math.ceil(n / 4), dtype=torch.int64, device=device).random_(-2**63, 2**63 - 1)
    return (words.view(torch.int16)[:n] >= round(p * LANE) - LANE // 2).view(shape)


def dropped(x: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
    """x where `keep`, else 0: a product with the mask's bytes, the same values as torch.where(keep, x, 0) at a
    third to a quarter of its time on CPU (where() on a bool mask is not vectorized there: 13% of a MASA step)."""
    return x if keep is None else x * keep.view(torch.uint8)


class _LoraLinearFunction(torch.autograd.Function):
    """y = x W^T + b + scale * ((x * keep) A^T) B^T, with W and b frozen; x is (N, in)."""

    @staticmethod
    def forward(ctx, x, weight, bias, lora_a, lora_b, scale: float, keep):
        low = F.linear(dropped(x, keep), lora_a).mul_(scale)
        out = F.linear(x, weight, bias).addmm_(low, lora_b.t())
        ctx.save_for_backward(x, weight, lora_a, lora_b, low, keep)
        ctx.scale = scale
        return out

    @staticmethod
    def backward(ctx, grad):
        x, weight, lora_a, lora_b, low, keep = ctx.saved_tensors
        grad_low = (grad @ lora_b).mul_(ctx.scale)
        grad_b = grad.t() @ low
        grad_a = grad_low.t() @ dropped(x, keep)
        grad_x = None
        if ctx.needs_input_grad[0]:
            lora_part = grad_low @ lora_a
            grad_x = torch.addmm(dropped(lora_part, keep), grad, weight)
        return grad_x, None, None, grad_a, grad_b, None, None


class FusedLoraLinear(LoraLinear):
    """A peft LoRA Linear whose forward is `_LoraLinearFunction` when it can be (one plain adapter,
    frozen base, not merged); otherwise peft's own forward."""

    def _fusable(self) -> tuple[torch.nn.Module, torch.nn.Module] | None:
        if self.disable_adapters or self.merged or self.fan_in_fan_out or len(self.active_adapters) != 1:
            return None
        name = self.active_adapters[0]
        if name not in self.lora_A or name in self.lora_variant:
            return None
        a, b, base = self.lora_A[name], self.lora_B[name], self.get_base_layer()
        frozen = not base.weight.requires_grad and (base.bias is None or not base.bias.requires_grad)
        return (a, b) if frozen and b.bias is None and type(base) is torch.nn.Linear else None

    def forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        parts = self._fusable()
        if parts is None or args or kwargs:
            return super().forward(x, *args, **kwargs)
        a, b = parts
        name = self.active_adapters[0]
        dropout = self.lora_dropout[name]
        p = getattr(dropout, "p", 0.0) if dropout.training else 0.0
        base = self.get_base_layer()
        weight, bias, wa, wb = base.weight, base.bias, a.weight, b.weight
        device = x.device.type
        if torch.is_autocast_enabled(device):  # what autocast would do to each matmul, done once
            dtype = torch.get_autocast_dtype(device)
            x, weight, wa, wb = x.to(dtype), weight.to(dtype), wa.to(dtype), wb.to(dtype)
            bias = bias.to(dtype) if bias is not None else None
        flat = x.reshape(-1, x.shape[-1])
        keep = keep_mask(flat.shape, p, x.device) if p > 0 else None
        with torch.autocast(device, enabled=False):
            out = _LoraLinearFunction.apply(flat, weight, bias, wa, wb, self.scaling[name] / (1 - p), keep)
        return out.view(*x.shape[:-1], out.shape[-1])


def fuse_lora_layers(model: torch.nn.Module) -> int:
    """Give every peft LoRA Linear of `model` the fused forward; returns how many."""
    count = 0
    for module in model.modules():
        if type(module) is LoraLinear:
            module.__class__ = FusedLoraLinear
            count += 1
    return count
