"""sde_train.attention: a packed row gives each sample's own logits and gradients (CPU per-sample
SDPA; on CUDA the varlen flash kernel, checked to be the one that ran)."""
from __future__ import annotations

import copy

import pytest
import torch

from sde_train import attention
from sde_train.attention import VARLEN_SDPA, register

LENGTHS = (5, 17, 1, 9)


def twin_models(arch: str, device: str, dtype: torch.dtype):
    """The same random GQA model twice: with the packed attention, and with plain sdpa."""
    from transformers import AutoModelForCausalLM, LlamaConfig, Qwen2Config

    register()
    config_cls = {"llama": LlamaConfig, "qwen2": Qwen2Config}[arch]
    config = config_cls(vocab_size=101, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    torch.manual_seed(0)
    packed = AutoModelForCausalLM.from_config(copy.deepcopy(config), attn_implementation=VARLEN_SDPA)
    alone = AutoModelForCausalLM.from_config(copy.deepcopy(config), attn_implementation="sdpa")
    alone.load_state_dict(packed.state_dict())
    assert packed.config._attn_implementation == VARLEN_SDPA
    return packed.to(device, dtype).train(), alone.to(device, dtype).train()


def logits_and_grads(model, rows: list[torch.Tensor], weights: list[torch.Tensor], packed: bool):
    """Logits of every token, and parameter gradients of sum(logits * weights)."""
    model.zero_grad(set_to_none=True)
    if packed:
        ids = torch.cat(rows).unsqueeze(0)
        positions = torch.cat([torch.arange(len(r), device=ids.device) for r in rows]).unsqueeze(0)
        bounds = tuple(torch.tensor([0, *map(len, rows)]).cumsum(0).tolist())
        logits = model(input_ids=ids, position_ids=positions, seq_bounds=bounds).logits[0]
        (logits.float() * torch.cat(weights)).sum().backward()
    else:
        outs = []
        for r, w in zip(rows, weights):
            out = model(input_ids=r.unsqueeze(0)).logits[0]
            (out.float() * w).sum().backward()
            outs.append(out)
        logits = torch.cat(outs)
    return logits.detach().float(), {n: p.grad.float() for n, p in model.named_parameters()}


def check_packed_equals_alone(arch: str, device: str, dtype: torch.dtype, tol: float) -> None:
    packed_model, alone_model = twin_models(arch, device, dtype)
    gen = torch.Generator().manual_seed(1)
    rows = [torch.randint(0, 101, (n,), generator=gen).to(device) for n in LENGTHS]
    weights = [torch.randn(n, 101, generator=gen).to(device) for n in LENGTHS]
    logits_p, grads_p = logits_and_grads(packed_model, rows, weights, packed=True)
    logits_a, grads_a = logits_and_grads(alone_model, rows, weights, packed=False)
    assert logits_p.shape == (sum(LENGTHS), 101)
    assert (logits_p - logits_a).norm() <= tol * logits_a.norm()
    assert grads_p.keys() == grads_a.keys()
    for name, grad in grads_a.items():
        assert (grads_p[name] - grad).norm() <= tol * grad.norm() + 1e-12, name


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_packed_row_equals_each_sample_alone_cpu(arch):
    check_packed_equals_alone(arch, "cpu", torch.float32, tol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_packed_row_equals_each_sample_alone_cuda_varlen(arch, monkeypatch):
    if attention.varlen_attn is None or torch.cuda.get_device_capability() < (8, 0):
        pytest.skip("varlen_attn needs PyTorch >= 2.10 and compute capability >= 8.0")
    calls, kernel = [], attention.varlen_attn

    def counted(*args, **kwargs):
        calls.append(args[3].tolist())  # cu_seq_q
        return kernel(*args, **kwargs)

    monkeypatch.setattr(attention, "varlen_attn", counted)
    check_packed_equals_alone(arch, "cuda", torch.bfloat16, tol=2e-2)
    bounds = torch.tensor([0, *LENGTHS]).cumsum(0).tolist()
    assert calls and all(c == bounds for c in calls)  # one kernel call per layer, all samples in it
