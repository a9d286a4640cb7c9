"""sde_train.lora: the fused LoRA linear gives peft's outputs and gradients."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sde_train.lora import FusedLoraLinear, dropped, fuse_lora_layers, keep_mask


class TwoLayers(nn.Module):
    def __init__(self):
        super().__init__()
        self.up = nn.Linear(24, 40, bias=True)
        self.down = nn.Linear(40, 24, bias=False)

    def forward(self, x):
        return self.down(torch.relu(self.up(x)))


def lora_model(dropout: float) -> nn.Module:
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    model = get_peft_model(TwoLayers(), LoraConfig(r=4, lora_alpha=8, lora_dropout=dropout,
                                                   target_modules=["up", "down"]))
    for name, p in model.named_parameters():  # B starts at 0 in peft: make the LoRA path matter
        if "lora_B" in name:
            nn.init.normal_(p)
    return model


def grads(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, dict, torch.Tensor]:
    x = x.clone().requires_grad_(True)
    out = model(x)
    (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
    return out.detach(), {n: p.grad for n, p in model.named_parameters() if p.requires_grad}, x.grad


def test_fused_equals_peft_without_dropout():
    peft_model = lora_model(0.0)
    fused = copy.deepcopy(peft_model)
    assert fuse_lora_layers(fused) == 2
    assert all(isinstance(m, FusedLoraLinear) for m in (fused.base_model.model.up, fused.base_model.model.down))
    x = torch.randn(3, 7, 24)
    want, fused_out = grads(peft_model, x), grads(fused, x)
    torch.testing.assert_close(fused_out[0], want[0])
    assert fused_out[1].keys() == want[1].keys() and len(want[1]) == 4
    for name in want[1]:
        torch.testing.assert_close(fused_out[1][name], want[1][name])
    torch.testing.assert_close(fused_out[2], want[2])


def test_fused_dropout_is_inverted_dropout_on_the_lora_input():
    """With dropout: y = base(x) + s/(1-p) * B A (x * keep), keep drawn by keep_mask; gradients by autograd."""
    p = 0.25
    model = lora_model(p)
    fuse_lora_layers(model)
    layer = model.base_model.model.up
    x = torch.randn(5, 24, requires_grad=True)
    torch.manual_seed(123)
    out = layer(x)
    torch.manual_seed(123)
    keep = keep_mask(torch.Size([5, 24]), p, x.device)
    a, b, s = layer.lora_A["default"].weight, layer.lora_B["default"].weight, layer.scaling["default"]
    x_ref = x.detach().clone().requires_grad_(True)
    a_ref, b_ref = a.detach().clone().requires_grad_(True), b.detach().clone().requires_grad_(True)
    ref = layer.base_layer(x_ref) + (x_ref * keep) @ a_ref.t() @ b_ref.t() * (s / (1 - p))
    torch.testing.assert_close(out, ref)
    weights = torch.randn_like(out)
    (out * weights).sum().backward()
    (ref * weights).sum().backward()
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(a.grad, a_ref.grad, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(b.grad, b_ref.grad, rtol=1e-4, atol=1e-5)
    model.eval()  # no dropout outside training
    torch.testing.assert_close(layer(x), layer.base_layer(x) + x @ a.t() @ b.t() * s)


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_keep_mask_rate(p):
    torch.manual_seed(0)
    keep = keep_mask(torch.Size([400, 1000]), p, torch.device("cpu"))
    assert keep.dtype == torch.bool and keep.shape == (400, 1000)
    assert abs(keep.float().mean().item() - (1 - p)) < 0.005  # 400k draws: sd ~ 0.0006


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_dropped_has_the_bits_of_where(dtype):
    """The mask applied as a product gives the bits torch.where gave (adapters trained before it are reproduced),
    in the LoRA input's matmul as well."""
    torch.manual_seed(0)
    x = torch.randn(300, 96).to(dtype)
    keep = keep_mask(x.shape, 0.1, x.device)
    a = torch.randn(8, 96).to(dtype)
    want = torch.where(keep, x, 0)
    got = dropped(x, keep)
    assert got.dtype == dtype
    assert torch.equal(got, want)  # x where kept, zero (of either sign) where dropped
    bits = torch.int16 if dtype == torch.bfloat16 else torch.int32
    assert torch.equal(F.linear(got, a).view(bits), F.linear(want, a).view(bits))
    assert dropped(x, None) is x
