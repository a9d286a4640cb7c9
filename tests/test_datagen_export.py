"""Export to a Hub-ready dataset repository, the `sde data` commands, and the one-factor export of the real data."""
from __future__ import annotations

import json
from pathlib import Path

import datasets
import pyarrow.parquet as pq
import pytest

from sde_datagen import export as export_module
from sde_datagen.cli import main as sde
from sde_datagen.codecs import get_codec
from sde_datagen.data import bundled_dir
from sde_datagen.design import one_factor, resolve_design, resolve_designs
from sde_datagen.export import export_dataset, read_splits
from sde_datagen.render import render_sample
from sde_datagen.tasks import load_task

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(autouse=True)
def _datasets_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))


def small_data(tmp_path: Path, task: str, n: int = 20) -> Path:
    """The first n records of each bundled split, so exports stay small."""
    out = tmp_path / f"data-{task}"
    out.mkdir()
    for path in bundled_dir(task).glob("*.jsonl"):
        if not path.name.startswith("sde_authors"):
            out.joinpath(path.name).write_text("".join(path.open(encoding="utf-8").readlines()[:n]), encoding="utf-8")
    return out


def test_load_dataset_returns_exactly_the_exported_rows(tmp_path):
    spec = load_task("ed")
    designs = resolve_designs("es-sde,heuristic,first-mi-json-pu-numeric-rcot", spec.family)
    splits = read_splits(spec, small_data(tmp_path, "ed"))
    counts = export_dataset(spec, designs, splits, tmp_path / "repo")
    assert counts["first-nomi-lines-pu-text-none"] == {"train": 20, "validation": 20, "test": 20}
    for design in designs:
        loaded = datasets.load_dataset(str(tmp_path / "repo"), design.id)
        for split in splits:
            rows = loaded[split.name]
            assert rows.num_rows == len(split.records)
            for row, record in zip(rows, split.records):
                sample = render_sample(spec, design, record)
                assert row["id"] == record.id and row["prompt"] == sample.prompt
                assert row["completion"] == sample.completion and row["design"] == design.id
                assert row["messages"] == sample.messages()
                assert json.loads(row["target"]) == record.targets
                assert row["loss_on_prompt"] is (design.input == "mi")
    card = (tmp_path / "repo" / "README.md").read_text(encoding="utf-8")
    assert "config_name: first-mi-json-pu-numeric-rcot" in card and "EMNLP 2020" in card
    assert "one JSON object per line" in card


def test_interrupted_export_leaves_nothing(tmp_path, monkeypatch):
    spec = load_task("masa")
    splits = read_splits(spec, small_data(tmp_path, "masa"))
    calls = []

    def failing_write(table, path):
        calls.append(path)
        if len(calls) == 2:
            raise KeyboardInterrupt
        pq.write_table(table, path)

    monkeypatch.setattr(export_module.pq, "write_table", failing_write)
    with pytest.raises(KeyboardInterrupt):
        export_dataset(spec, resolve_designs("es-sde", "classification"), splits, tmp_path / "repo")
    assert not (tmp_path / "repo").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".repo")] == []


def test_export_refuses_to_overwrite_without_the_flag(tmp_path):
    data = small_data(tmp_path, "ner", 5)
    out = tmp_path / "repo"
    assert sde(["data", "export", "--task", "ner", "--designs", "es-sde", "--data", str(data), "--out", str(out)]) == 0
    assert sde(["data", "export", "--task", "ner", "--designs", "es-sde", "--data", str(data), "--out", str(out)]) == 2
    args = ["data", "export", "--task", "ner", "--designs", "ew-sde", "--data", str(data), "--out", str(out), "--overwrite"]
    assert sde(args) == 0
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "last-nomi-natural-ou-text-none"]


def test_train_size_samples_reproducibly(tmp_path):
    spec = load_task("masa")
    first = read_splits(spec, bundled_dir("masa"), train_size=50, seed=3)[0].records
    again = read_splits(spec, bundled_dir("masa"), train_size=50, seed=3)[0].records
    other = read_splits(spec, bundled_dir("masa"), train_size=50, seed=4)[0].records
    assert [r.id for r in first] == [r.id for r in again] != [r.id for r in other]
    assert len(first) == 50


def test_bad_record_stops_the_export_with_file_line_field(tmp_path, capsys):
    data = small_data(tmp_path, "masa", 3)
    lines = (data / "test.jsonl").read_text(encoding="utf-8").splitlines()
    row = json.loads(lines[2])
    row["labels"]["价格水平"] = "pos"
    lines[2] = json.dumps(row, ensure_ascii=False)
    (data / "test.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    code = sde(["data", "export", "--task", "masa", "--designs", "es-sde", "--data", str(data), "--out", str(tmp_path / "o")])
    assert code == 2 and not (tmp_path / "o").exists()
    assert f"{data / 'test.jsonl'}:3: field 'labels.价格水平'" in capsys.readouterr().err


def test_push_to_hub_creates_a_dataset_repo_and_uploads_the_folder(tmp_path, monkeypatch):
    import huggingface_hub

    calls = []

    class FakeApi:
        def create_repo(self, repo_id, **kw):
            calls.append(("create_repo", repo_id, kw))
            return f"https://huggingface.co/datasets/{repo_id}"

        def upload_folder(self, **kw):
            calls.append(("upload_folder", kw))

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    out = tmp_path / "repo"
    args = ["data", "export", "--task", "ed", "--designs", "es-sde", "--data", str(small_data(tmp_path, "ed", 3))]
    assert sde([*args, "--out", str(out), "--push-to-hub", "org/sde-ed", "--private"]) == 0
    assert calls[0] == ("create_repo", "org/sde-ed", {"repo_type": "dataset", "private": True, "exist_ok": True})
    assert calls[1][1]["folder_path"] == str(out) and calls[1][1]["repo_type"] == "dataset"


def test_rationale_file_overrides_the_extractive_default(tmp_path):
    data = small_data(tmp_path, "masa", 2)
    first = json.loads((data / "train.jsonl").open(encoding="utf-8").readline())
    rationales = tmp_path / "why.jsonl"
    rationales.write_text(json.dumps({"id": first["id"], "target": "食品评价", "rationale": "人工理由"}) + "\n", encoding="utf-8")
    out = tmp_path / "repo"
    args = ["data", "export", "--task", "masa", "--designs", "first-nomi-lines-pu-text-cot", "--data", str(data)]
    assert sde([*args, "--rationales", str(rationales), "--out", str(out)]) == 0
    row = datasets.load_dataset(str(out), "first-nomi-lines-pu-text-cot", split="train")[0]
    assert row["completion"].split("\n")[0].startswith("食品评价：（理由：人工理由）")


def test_a_yaml_task_gets_what_built_in_tasks_get(tmp_path):
    spec_file = tmp_path / "reviews.yaml"
    spec_file.write_text(
        """
name: hotel
family: classification
language: en
targets:
  - {name: room, keywords: [room]}
  - {name: staff, keywords: [staff, service], cues: [staff, friendly]}
labels:
  - {id: pos, text: good, code: 1, synonyms: [great]}
  - {id: neg, text: bad, code: 0}
  - {id: none, text: not mentioned, code: -1}
absent_label: none
instructions: ["Rate the hotel review on {targets} as {labels}.", "Review aspects {targets}; labels {labels}."]
input_prefix: "Review: "
card: {license: cc-by-4.0, citation: "Our hotel reviews, 2026."}
""",
        encoding="utf-8",
    )
    data = tmp_path / "hotel"
    data.mkdir()
    rows = [
        {"id": "h1", "text": "Friendly staff, tiny room.", "labels": {"room": "neg", "staff": "pos"}},
        {"id": "h2", "text": "Friendly staff.", "labels": {"room": "none", "staff": "pos"}},
    ]
    (data / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    out = tmp_path / "repo"
    assert sde(["data", "export", "--task-spec", str(spec_file), "--designs", "one-factor", "--data", str(data), "--splits", "train",
                "--out", str(out)]) == 0
    spec = load_task(str(spec_file))
    for design in one_factor("classification"):
        loaded = datasets.load_dataset(str(out), design.id, split="train")
        for row in loaded:
            parsed = get_codec(spec, design).parse(row["completion"])
            assert parsed.errors == [] and parsed.targets == json.loads(row["target"])
    row = datasets.load_dataset(str(out), "last-nomi-natural-pu-text-none", split="train")[0]
    assert row["completion"] == "room: bad; staff: good" and "Rate the hotel review on room, staff as good, bad, not mentioned." in row["prompt"]
    soft = get_codec(spec, resolve_design("es-sde")).parse("room: bad\nstaff service: great", "soft")
    assert soft.targets == {"room": "neg", "staff": "pos"}


def test_show_and_designs_print_for_a_person(capsys):
    assert sde(["data", "show", "--task", "masa", "--design", "last-mi-natural-pu-text-none", "-n", "2"]) == 0
    out = capsys.readouterr().out
    assert out.count("── sample") == 2 and "[prompt · loss]" in out and "[completion · loss, then EOS]" in out
    assert sde(["data", "designs"]) == 0
    out = capsys.readouterr().out
    assert "es-sde      first-nomi-lines-pu-text-none" in out and "one-factor" in out and "grid" in out


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data is not beside this checkout")
def test_one_factor_of_the_real_data_loads_back_and_scores_perfectly(tmp_path):
    folders = {"masa": "masa", "ed": "maven", "ner": "genia"}
    for task, folder in folders.items():
        spec = load_task(task)
        splits = read_splits(spec, SHARED / folder)
        designs = one_factor(spec.family)
        export_dataset(spec, designs, splits, tmp_path / task)
        for design in designs:
            loaded = datasets.load_dataset(str(tmp_path / task), design.id)
            codec = get_codec(spec, design)
            for split in splits:
                rows = loaded[split.name]
                assert rows.num_rows == len(split.records)
                for completion, target in zip(rows["completion"], rows["target"]):
                    parsed = codec.parse(completion, "soft")
                    assert parsed.errors == [] and parsed.targets == json.loads(target)
