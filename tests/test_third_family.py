"""A new task family is one module (issue 26, bar shape-task): tests/yesno_family.py declares a yes/no family,
and a task of it goes through `sde data export` and `sde score` (both scoring rules, intervals) without any
other file of the kit naming it."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import pyarrow.parquet as pq

from sde_datagen.cli import main
from sde_datagen.design import resolve_design
from sde_datagen.families import FAMILIES, register
from yesno_family import YesNo

SPEC = """name: amenities
family: yesno
targets:
  - name: wifi
  - name: breakfast
  - name: parking
instructions:
  - "Answer yes or no for each of {targets}."
"""
TEXTS = [("Fast wifi and a big breakfast.", ("yes", "yes", "no")), ("Parking was free.", ("no", "no", "yes")),
         ("Nothing to report.", ("no", "no", "no")), ("Wifi, breakfast and parking.", ("yes", "yes", "yes"))]
DESIGNS = ("es-sde", "ew-sde", "first-mi-json-pu-numeric-cot", "last-nomi-lines-ou-text-rcot")


@pytest.fixture
def yesno_task(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    monkeypatch.setitem(FAMILIES, "yesno", FAMILIES.get("yesno") or YesNo())
    assert register(FAMILIES["yesno"]) is FAMILIES["yesno"]
    data = tmp_path / "data"
    data.mkdir()
    for split, n in (("train", 4), ("valid", 4), ("test", 8)):
        rows = [{"id": f"{split}-{i}", "text": TEXTS[i % 4][0],
                 "answers": dict(zip(("wifi", "breakfast", "parking"), TEXTS[i % 4][1]))} for i in range(n)]
        (data / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    spec = tmp_path / "amenities.yaml"
    spec.write_text(SPEC, encoding="utf-8")
    return spec, data


def score(tmp_path: Path, capsys: pytest.CaptureFixture, spec: Path, design: str, rows: list[dict], *extra: str) -> dict:
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    capsys.readouterr()
    assert main(["score", "--task-spec", str(spec), "--design", design, *extra, str(path)]) == 0
    return json.loads(capsys.readouterr().out)


def exported_completions(out: Path, design: str) -> list[str]:
    """Read from the export's files: `datasets.load_dataset(folder)` caches by the folder's name."""
    return pq.read_table(out / resolve_design(design).id / "test.parquet").column("completion").to_pylist()


def test_a_family_of_one_module_exports_and_scores(yesno_task, tmp_path, capsys):
    spec, data = yesno_task
    out = tmp_path / "export"
    assert main(["data", "export", "--task-spec", str(spec), "--data", str(data), "--designs", ",".join(DESIGNS),
                 "--out", str(out)]) == 0
    for design in DESIGNS:
        completions = exported_completions(out, design)
        result = score(tmp_path, capsys, spec, design, [{"prediction": c, "target": c} for c in completions])
        assert (result["yes_f1"], result["accuracy"], result["format_error_rate"], result["n"]) == (1.0, 1.0, 0.0, 8)
    completions = exported_completions(out, "es-sde")
    assert completions[0] == "wifi: yes\nbreakfast: yes\nparking: no"  # es-sde: one line per target, every target


def test_its_metrics_rules_and_intervals_come_from_the_family(yesno_task, tmp_path, capsys):
    spec, _ = yesno_task
    gold = ["wifi: yes\nbreakfast: no\nparking: no", "wifi: no\nbreakfast: no\nparking: yes"]
    # One wrong answer (breakfast), one malformed answer that soft parsing still reads right (parking is missing).
    rows = [{"prediction": "wifi: yes\nbreakfast: yes\nparking: no", "target": gold[0]},
            {"prediction": "wifi: no\nbreakfast: no\nparking: yes\nhello", "target": gold[1]}]
    paper = score(tmp_path, capsys, spec, "es-sde", rows, "--ci")
    # tp 2 (wifi, parking), fp 1 (breakfast), fn 0; 5 of 6 answers right; 1 of 2 outputs has a format error.
    assert paper["yes_f1"] == pytest.approx(0.8) and paper["accuracy"] == pytest.approx(5 / 6)
    assert paper["format_error_rate"] == 0.5 and len(paper["yes_f1_ci"]) == 2
    strict = score(tmp_path, capsys, spec, "es-sde", rows, "--rule", "strict")
    # Strict: the malformed answer says no to everything, so its parking becomes a FN: tp 1, fp 1, fn 1.
    assert strict["yes_f1"] == pytest.approx(0.5) and strict["accuracy"] == pytest.approx(4 / 6)
