"""Parsing never raises, whatever a model writes: every codec, both modes, and the scoring path."""
from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sde_datagen.codecs import Parsed, get_codec
from sde_datagen.design import resolve_design
from sde_datagen.tasks import load_task
from sde_tasks.scoring import score_texts

DESIGNS = {  # every format, reasoning and label kind, per family
    "masa": ["es-sde", "ew-sde", "last-nomi-json-pu-numeric-cot", "first-mi-natural-ou-text-rcot",
             "none-nomi-lines-ou-numeric-cot"],
    "ed": ["heuristic", "first-nomi-json-ou-text-rcot", "last-nomi-natural-pu-numeric-cot"],
    "ner": ["first-nomi-lines-pu-text-cot", "heuristic"],
}
CODECS = [get_codec(load_task(task), resolve_design(d, load_task(task).family))
          for task, designs in DESIGNS.items() for d in designs]
PIECES = ["[", "]", "{", "}", '"', ":", "：", "，", "、", "; ", ", ", "\n", "\x00", "\ud800", "\udfff", "NONE", "无",
          "[reason: ", "（理由：", "）", ")", "食品评价", "正面", "-2", "DNA", "Attack", '{"方面": ', '"entities": [',
          '["DNA", ', "null", "1e999", "\\", "\u2028", " "]
HOSTILE = [
    "[" * 100_000, "[" * 1_000 + "]" * 1_000, '{"a":' * 50_000, "[[" + "[" * 5_000, '["DNA", ' * 20_000,
    "\ud800" * 1_000, "食品评价：正面，" * 50_000, "[reason: " * 20_000, "（理由：" * 20_000, "x" * 3_000_000,
    "\n".join(["[" * 2_000] * 50), json.dumps([["DNA", "x"]] * 10_000),
]


def _check(text: str) -> None:
    for codec in CODECS:
        for mode in ("strict", "soft"):
            parsed = codec.parse(text, mode)
            assert isinstance(parsed, Parsed)
            assert set(parsed.targets) == set(codec.spec.target_names)


def test_hostile_outputs_parse_without_raising():
    for text in HOSTILE:
        _check(text)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(PIECES) | st.text(max_size=5), max_size=60).map("".join))
def test_any_output_parses_without_raising(text):
    _check(text)


def test_hostile_outputs_score_through_sde_score_path():
    gold = get_codec(load_task("ed"), resolve_design("heuristic")).render({"Attack": ["fired"]} | {
        t: [] for t in load_task("ed").target_names if t != "Attack"})
    result = score_texts("ed", "heuristic", HOSTILE, [gold] * len(HOSTILE))
    assert result["n"] == len(HOSTILE) and result["format_error_rate"] > 0.5
