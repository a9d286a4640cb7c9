"""The tiny model loads through the Auto classes and its tokenizer encodes any text."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def test_tiny_model_loads_and_generates(tiny_model_dir: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    assert (tiny_model_dir / "model.safetensors").exists()
    for text in ["食品评价：正面\n价格水平：未提及\n", "Attack: bombed; Motion: flew", "emoji 😀 ünï"]:
        ids = tok(text)["input_ids"]
        assert tok.unk_token_id not in ids or tok.unk_token_id == tok.pad_token_id
        assert tok.decode(ids) == text
    assert tok.eos_token == "<|im_end|>" and tok.pad_token is not None
    assert tok.eos_token_id != tok.pad_token_id
    chat = tok.apply_chat_template(
        [{"role": "user", "content": "q\n"}], add_generation_prompt=True, tokenize=False
    )
    assert chat.endswith("<|im_start|>assistant\n")
    with torch.no_grad():
        out = model.generate(**tok("食品", return_tensors="pt"), max_new_tokens=3, do_sample=False)
    assert out.shape[1] >= 2


def test_cli_builds_from_jsonl_corpus(tmp_path: Path) -> None:
    corpus = tmp_path / "c.jsonl"
    corpus.write_text("\n".join(json.dumps({"text": f"样例 {i} text"}) for i in range(50)), encoding="utf-8")
    out = tmp_path / "m"
    subprocess.run(
        [sys.executable, "-m", "sde_train.tiny_model", "--out", str(out), "--corpus", str(corpus),
         "--vocab-size", "400"],
        check=True, capture_output=True,
    )
    assert json.loads((out / "config.json").read_text())["model_type"] == "qwen2"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".m.")]  # temp dir renamed away
