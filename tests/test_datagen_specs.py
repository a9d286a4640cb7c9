"""Designs, task specs (built-in and YAML) and gold-record validation."""
from __future__ import annotations

import json
import re

import pytest

from sde_datagen.data import bundled_dir
from sde_datagen.design import AXES, PRESETS, Design, grid, one_factor, resolve_design, resolve_designs
from sde_datagen.errors import RecordError, UserError
from sde_datagen.records import load_records
from sde_datagen.tasks import load_task


def test_presets_resolve_to_the_papers_designs():
    assert resolve_design("es-sde").id == "first-nomi-lines-pu-text-none"
    assert resolve_design("ew-sde").id == "last-nomi-natural-ou-text-none"
    assert resolve_design("paper-base").id == "last-nomi-natural-pu-text-none"
    assert resolve_design("heuristic").id == "first-nomi-heuristic-ou-text-none"
    for design in grid():
        assert Design.from_id(design.id) == design


def test_one_factor_changes_one_axis_from_paper_base():
    base = PRESETS["paper-base"]
    for family in ("classification", "extraction"):
        designs = one_factor(family)
        assert designs[0] == base and len(designs) == 10
        for design in designs[1:]:
            assert sum(getattr(design, a) != getattr(base, a) for a in AXES) == 1


def test_grid_counts_and_rejections_carry_a_reason():
    assert len(grid("extraction")) == 3 * 2 * 3 * 2 * 2 * 3 + 3 * 2 * 1 * 1 * 2 * 1
    assert {d.id for d in grid("classification") if d.format == "heuristic"} >= {"first-nomi-heuristic-ou-text-none"}
    with pytest.raises(UserError, match="cannot carry placeholders"):
        resolve_design("first-nomi-heuristic-pu-text-none")
    with pytest.raises(UserError, match="no option 'jsonl'"):
        resolve_design("first-nomi-jsonl-pu-text-none")
    with pytest.raises(UserError, match="neither a preset"):
        resolve_design("es_sde")
    assert [d.id for d in resolve_designs("es-sde, first-nomi-lines-pu-text-none,ew-sde")] == [
        "first-nomi-lines-pu-text-none",
        "last-nomi-natural-ou-text-none",
    ]


def test_masa_domains_and_the_papers_drink_aspect():
    assert load_task("masa").target_names[1] == "分量"
    assert load_task("masa", "D2").target_names[0] == "交通便利程度"
    assert len(load_task("masa", "all").targets) == 11
    paper = load_task("masa", "D1-paper")
    assert paper.target_names[1] == "饮品评价" and paper.targets[1].keywords == ("饮品",)
    keywords = {t.name: t.keywords for t in paper.known_targets}
    assert keywords["排队等候情况"] == ("排队", "等候") and keywords["分量"][0] == "分量"
    for task in ("masa", "ed", "ner"):
        assert len(load_task(task).instructions) >= 3
    with pytest.raises(UserError, match="no domain 'D3'"):
        load_task("masa", "D3")


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    "row, field",
    [
        ({"id": "a", "text": "x", "labels": {"食品评价": "good"}}, "labels.食品评价"),
        ({"id": "a", "text": "x"}, "labels"),
        ({"id": "a", "text": "", "labels": {}}, "text"),
        ({"text": "x", "labels": {}}, "id"),
    ],
)
def test_bad_masa_record_names_file_line_and_field(tmp_path, row, field):
    good = json.loads((bundled_dir("masa") / "train.jsonl").open(encoding="utf-8").readline())
    path = write_jsonl(tmp_path / "train.jsonl", [good, row])
    with pytest.raises(RecordError) as err:
        load_records(load_task("masa"), path)
    assert (err.value.path, err.value.line, err.value.field) == (str(path), 2, field)
    assert f"{path}:2: field '{field}'" in str(err.value)


def test_bad_extraction_records(tmp_path):
    spec = load_task("ed")
    cases = [
        ({"id": "a", "text": "they bombed it", "events": [{"type": "Bombing", "trigger": "bombed"}]}, "events[0].type"),
        ({"id": "a", "text": "they bombed it", "events": [{"type": "Attack", "trigger": "raid"}]}, "events[0].trigger"),
        ({"id": "a", "text": "they bombed it", "events": "Attack"}, "events"),
    ]
    for row, field in cases:
        path = write_jsonl(tmp_path / "t.jsonl", [row])
        with pytest.raises(RecordError, match=re.escape(f"t.jsonl:1: field '{field}'")):
            load_records(spec, path)
    (tmp_path / "bad.jsonl").write_text('{"id": "a", "text": "x", "events": []}\n{"id": "a",\n', encoding="utf-8")
    with pytest.raises(RecordError, match="bad.jsonl:2: field '\\(record\\)': not valid JSON"):
        load_records(spec, tmp_path / "bad.jsonl")
    write_jsonl(tmp_path / "dup.jsonl", [{"id": "a", "text": "x", "events": []}] * 2)
    with pytest.raises(RecordError, match="repeats the id of line 1"):
        load_records(spec, tmp_path / "dup.jsonl")


def test_duplicate_spans_collapse_in_gold(tmp_path):
    row = {"id": "a", "text": "IL-2 and IL-2", "entities": [{"type": "protein", "text": "IL-2"}] * 2}
    [record] = load_records(load_task("ner"), write_jsonl(tmp_path / "t.jsonl", [row]))
    assert record.targets["protein"] == ["IL-2"] and record.targets["DNA"] == []


def test_yaml_spec_errors_name_the_field(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nfamily: classification\ntargets: [{name: a}]\nlabels: [{id: good, text: Good}]\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"bad.yaml: field 'labels\[0\].code': missing"):
        load_task(str(bad))
    bad.write_text("name: x\nfamily: tagging\n", encoding="utf-8")
    with pytest.raises(UserError, match="field 'family'"):
        load_task(str(bad))
