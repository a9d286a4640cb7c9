"""Perplexity signals of a design on the untuned base model (issue 9): cheap predictors of the tuned winner.

Mean per-token negative log-likelihood of the prompts (every prompt token after the first) and of
the completions given their prompts (completion tokens and EOS, the tokens a No-MI design trains
on), over a fixed sample of training rows, tokenized exactly as sde_train tokenizes them.
"""
from __future__ import annotations

import math
import random

import torch
import torch.nn.functional as F


@torch.no_grad()
def perplexities(model, tokenizer, rows: list[dict], chat_template: bool, batch_size: int) -> dict[str, float]:
    """{prompt_nll, output_nll, prompt_ppl, output_ppl, prompt_tokens, output_tokens} over `rows`."""
    from tqdm.auto import tqdm

    from sde_train.data import encode_sample

    samples = [encode_sample(tokenizer, r["prompt"], r["completion"], False, chat_template, 1 << 30) for r in rows]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    device = next(model.parameters()).device
    sums = {"prompt": 0.0, "output": 0.0}
    counts = {"prompt": 0, "output": 0}
    for start in tqdm(range(0, len(samples), batch_size), desc="perplexity", unit="batch", leave=False):
        batch = samples[start:start + batch_size]
        width = max(len(s.ids) for s in batch)
        ids = torch.full((len(batch), width), pad, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for i, s in enumerate(batch):
            ids[i, :len(s.ids)] = torch.tensor(s.ids)
            mask[i, :len(s.ids)] = 1
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float()
        nll = F.cross_entropy(logits[:, :-1].transpose(1, 2), ids[:, 1:].to(device), reduction="none").cpu()
        for i, s in enumerate(batch):
            # nll[i, t] is the loss of token t + 1
            sums["prompt"] += nll[i, :s.loss_start - 1].sum().item()
            counts["prompt"] += s.loss_start - 1
            sums["output"] += nll[i, s.loss_start - 1:len(s.ids) - 1].sum().item()
            counts["output"] += len(s.ids) - s.loss_start
    found: dict[str, float] = {}
    for part in ("prompt", "output"):
        mean = sums[part] / max(counts[part], 1)
        found.update({f"{part}_nll": mean, f"{part}_ppl": math.exp(mean), f"{part}_tokens": counts[part]})
    return found


def sample_rows(rows: list[dict], n: int, seed: int) -> list[dict]:
    """The same `n` rows (by position) for every design: exports keep the records' order."""
    if n >= len(rows):
        return rows
    return [rows[i] for i in sorted(random.Random(seed).sample(range(len(rows)), n))]
