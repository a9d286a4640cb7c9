"""Codecs: exact formats of SDE.md, round trips on real data and on generated targets, parse robustness."""
from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sde_datagen.codecs import get_codec
from sde_datagen.parsed import ERROR_KINDS
from sde_datagen.data import bundled_dir
from sde_datagen.design import Design, grid, resolve_design
from sde_datagen.records import load_records
from sde_datagen.render import render_sample
from sde_datagen.tasks import load_task

TASKS = ["masa", "ed", "ner"]
D1_PAPER = {
    "食品评价": "positive", "饮品评价": "unmentioned", "价格水平": "positive",
    "卫生情况": "unmentioned", "服务人员态度": "positive", "停车方便程度": "unmentioned",
}  # fmt: skip


def d(design_id: str) -> Design:
    return resolve_design(design_id)


def ed_targets(**spans: list[str]) -> dict[str, list[str]]:
    return {name: spans.get(name, []) for name in load_task("ed").target_names}


# ---------------------------------------------------------------- SDE.md's examples, exactly
def test_masa_formats_match_the_method():
    spec = load_task("masa", "D1-paper")
    natural = get_codec(spec, d("last-nomi-natural-pu-text-none")).render(D1_PAPER)
    assert natural == "食品评价：正面，饮品评价：未提及，价格水平：正面，卫生情况：未提及，服务人员态度：正面，停车方便程度：未提及。"
    lines = get_codec(spec, d("es-sde")).render(D1_PAPER).split("\n")
    assert lines[:2] == ["食品评价：正面", "饮品评价：未提及"] and len(lines) == 6
    json_line = get_codec(spec, d("first-nomi-json-pu-text-none")).render(D1_PAPER).split("\n")[0]
    assert json_line == '{"方面": "食品评价", "情感": "正面"}'
    assert get_codec(spec, d("first-nomi-lines-pu-numeric-none")).render(D1_PAPER).startswith("食品评价：1\n饮品评价：-2")
    assert get_codec(spec, d("ew-sde")).render(D1_PAPER) == "食品评价：正面，价格水平：正面，服务人员态度：正面。"
    # heuristic: one [aspect, label] array per mentioned aspect, nothing for the unmentioned ones (an OU design)
    heuristic = get_codec(spec, d("heuristic"))
    assert heuristic.render(D1_PAPER) == '["食品评价", "正面"]\n["价格水平", "正面"]\n["服务人员态度", "正面"]'
    assert heuristic.parse(heuristic.render(D1_PAPER)).targets == D1_PAPER and not heuristic.parse("[]").errors
    assert [e.kind for e in heuristic.parse('["食品评价", "好"]\n["食品评价", "正面"]').errors] == [
        "invalid_label", "duplicate_target"]


def test_extraction_formats_match_the_method():
    spec = load_task("ed")
    targets = ed_targets(Attack=["bombed", "raid"], Motion=["flew"])
    assert get_codec(spec, d("ew-sde")).render(targets) == "Attack: bombed, raid; Motion: flew"
    lines = get_codec(spec, d("es-sde")).render(targets).split("\n")
    assert lines[1] == "Attack: bombed, raid" and lines[8] == "Killing: NONE" and len(lines) == 10
    assert get_codec(spec, d("heuristic")).render(targets) == '["Attack", "bombed"]\n["Attack", "raid"]\n["Motion", "flew"]'
    assert get_codec(spec, d("heuristic")).render(ed_targets()) == "[]"
    js = get_codec(spec, d("first-nomi-json-ou-text-none")).render(targets).split("\n")
    assert js[0] == '{"event_type": "Attack", "triggers": ["bombed", "raid"]}'
    assert get_codec(spec, d("first-nomi-lines-ou-numeric-none")).render(targets) == "1: bombed, raid\n6: flew"
    ner = load_task("ner")
    entity = {n: (["IL-2"] if n == "protein" else []) for n in ner.target_names}
    assert get_codec(ner, d("first-nomi-json-ou-text-none")).render(entity) == '{"entity_type": "protein", "entities": ["IL-2"]}'


def test_cot_puts_the_rationale_first_and_rcot_last():
    spec = load_task("masa", "D1-paper")
    why = {name: f"因为{name}" for name in spec.target_names}
    cot = get_codec(spec, d("first-nomi-json-pu-text-cot")).render(D1_PAPER, why).split("\n")[0]
    assert list(json.loads(cot)) == ["方面", "理由", "情感"]
    rcot = get_codec(spec, d("first-nomi-json-pu-text-rcot")).render(D1_PAPER, why).split("\n")[0]
    assert list(json.loads(rcot)) == ["方面", "情感", "理由"]
    line = get_codec(spec, d("first-nomi-lines-pu-text-cot")).render(D1_PAPER, why).split("\n")[0]
    assert line == "食品评价：（理由：因为食品评价）正面"


def test_a_masa_rationale_quotes_a_few_words_around_its_cue_even_in_a_review_without_punctuation():
    """A review with little punctuation is one long clause: quoting it whole made CoT answers of 4,516 tokens."""
    from sde_datagen.families import family_of

    spec = load_task("masa", "D1")
    review = "这家店" * 200 + "菜很好吃" + "环境一般" * 200
    targets = {name: "unmentioned" for name in spec.target_names} | {"食品评价": "positive"}
    why = family_of(spec.family).rationales(spec, review, targets)["食品评价"]
    assert len(why) <= 30 and "菜" in why
    assert family_of(spec.family).rationales(spec, "菜很好吃，服务好。", targets)["食品评价"] == "菜很好吃"


# ---------------------------------------------------------------- round trips
@pytest.mark.parametrize("task", TASKS)
def test_every_design_round_trips_on_real_data(task):
    spec = load_task(task)
    records = load_records(spec, bundled_dir(task) / "train.jsonl")[:120]
    for design in grid(spec.family):
        codec = get_codec(spec, design)
        for record in records:
            completion = render_sample(spec, design, record).completion
            for mode in ("strict", "soft"):
                parsed = codec.parse(completion, mode)
                assert parsed.errors == [] and parsed.targets == record.targets, (design.id, record.id, completion)


_span = st.text(st.characters(codec="utf-8", exclude_characters="\n\r,;:[]\"\\\x00"), min_size=1, max_size=12).map(str.strip).filter(
    lambda s: s and s != "NONE"
)


@st.composite
def task_design_targets(draw):
    task = draw(st.sampled_from(TASKS))
    spec = load_task(task)
    design = draw(st.sampled_from(grid(spec.family)))
    if spec.family == "classification":
        targets = {n: draw(st.sampled_from(spec.label_ids)) for n in spec.target_names}
    else:
        targets = {n: list(dict.fromkeys(draw(st.lists(_span, max_size=3)))) for n in spec.target_names}
    why = {n: draw(st.text(max_size=20)).replace(spec.rationale["close"], "").replace("\n", " ").strip() or "x" for n in spec.target_names}
    return spec, design, targets, why


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(task_design_targets())
def test_parse_inverts_render(case):
    spec, design, targets, why = case
    codec = get_codec(spec, design)
    parsed = codec.parse(codec.render(targets, why))
    assert parsed.targets == targets and parsed.errors == []


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(TASKS), st.data(), st.text(max_size=300), st.sampled_from(["strict", "soft"]))
def test_parse_never_raises_and_always_names_every_target(task, data, text, mode):
    spec = load_task(task)
    design = data.draw(st.sampled_from(grid(spec.family)))
    parsed = get_codec(spec, design).parse(text, mode)
    assert list(parsed.targets) == list(spec.target_names)
    assert all(e.kind in ERROR_KINDS for e in parsed.errors)


# ---------------------------------------------------------------- strict adherence vs soft recovery
def test_masa_strict_errors_and_soft_recovery():
    spec = load_task("masa", "D1-paper")
    codec = get_codec(spec, d("es-sde"))
    text = "食品：积极\n饮品评价：未提及\n价格水平：正面\n卫生情况：未提及\n服务人员态度：好\n"
    strict, soft = codec.parse(text, "strict"), codec.parse(text, "soft")
    kinds = sorted(e.kind for e in strict.errors)
    assert kinds == ["invalid_label", "missing_target", "unknown_target"]
    assert strict.targets["食品评价"] == "unmentioned" and soft.targets["食品评价"] == "positive"
    assert soft.targets["服务人员态度"] == "unmentioned"  # an invalid label counts as unmentioned
    assert soft.targets["停车方便程度"] == "unmentioned"  # a missing aspect too
    assert codec.parse("", "soft").errors[0].kind == "empty"
    assert set(codec.parse("I cannot answer.", "soft").targets.values()) == {"unmentioned"}


def test_extraction_strict_errors():
    spec = load_task("ed")
    es = get_codec(spec, d("es-sde"))
    dup = es.parse("Attack: bombed\nAttack: raid")
    assert {e.kind for e in dup.errors} == {"duplicate_target", "missing_target"}
    assert es.parse("Attack: bombed\nAttack: raid", "soft").targets["Attack"] == ["bombed", "raid"]
    ew = get_codec(spec, d("ew-sde"))
    assert ew.parse("attack: bombed", "strict").targets["Attack"] == []
    assert ew.parse("attack: bombed", "soft").targets["Attack"] == ["bombed"]
    assert ew.parse("NONE").errors == [] and ew.parse("Attack bombed").errors[0].kind == "unsplittable"
    heur = get_codec(spec, d("heuristic"))
    assert heur.parse('["Attack", "bombed"]\n{"x": 1}').errors[0].kind == "invalid_json"
    assert heur.parse('[["Attack", "bombed"], ["Motion", "flew"]]', "soft").targets["Motion"] == ["flew"]


def test_tokenised_commas_inside_spans_do_not_split():
    spec = load_task("ner")
    targets = {n: [] for n in spec.target_names}
    targets["cell_type"] = ["B , T cells", "monocytes"]
    codec = get_codec(spec, d("ew-sde"))
    assert codec.parse(codec.render(targets)).targets == targets


def test_model_repeats_and_unknown_types_are_kept_for_scoring():
    spec = load_task("ed")
    heur = get_codec(spec, d("heuristic"))
    parsed = heur.parse('["Attack", "bombed"]\n["Attack", "bombed"]\n["Bombing", "raid"]', "soft")
    assert parsed.targets["Attack"] == ["bombed", "bombed"]
    assert parsed.stray == [("Bombing", "raid")] and parsed.errors[0].kind == "unknown_target"
    natural = get_codec(spec, d("ew-sde")).parse("Attack: bombed, bombed; Riot: riots, unrest", "strict")
    assert natural.targets["Attack"] == ["bombed", "bombed"] and natural.stray == [("Riot", "riots"), ("Riot", "unrest")]


def test_json_lines_are_read_one_by_one():
    spec = load_task("ed")
    codec = get_codec(spec, d("first-nomi-json-ou-text-none"))
    shifted = '{"event_type": "Attack", "triggers": ["a"]}, {"event_type": "Motion",\n"triggers": ["b"]}'
    parsed = codec.parse(shifted)
    assert parsed.targets["Motion"] == [] and {e.kind for e in parsed.errors} == {"invalid_json"}
