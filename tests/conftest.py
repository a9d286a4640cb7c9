"""Shared fixtures: a tiny random-weight Qwen2 model built locally (no Hub downloads)."""
from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder AutoModelForCausalLM/AutoTokenizer (and lm_eval's hf model) load offline."""
    from sde_train.tiny_model import build_tiny_model, bundled_data_files, iter_jsonl_texts

    out = tmp_path_factory.mktemp("tiny_model") / "model"
    return build_tiny_model(out, iter_jsonl_texts(bundled_data_files()))
