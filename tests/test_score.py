"""`sde score` and sde_tasks.scoring.score_texts on the paper's example strings (SDE.md), by hand."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from sde_datagen.cli import main
from sde_datagen.errors import UserError
from sde_datagen import metrics as m
from sde_datagen.families import FAMILIES
from sde_tasks.scoring import score_texts

# SDE.md's example outputs.
MASA_NATURAL = "食品评价：正面，饮品评价：未提及，价格水平：正面，卫生情况：未提及，服务人员态度：正面，停车方便程度：未提及。"
ED_NATURAL_OU = "Attack: bombed, raid; Motion: flew"
ED_HEURISTIC = '["Attack", "bombed"]\n["Motion", "flew"]'


def test_paper_example_strings_score_perfectly_in_their_designs():
    lines = MASA_NATURAL.rstrip("。").replace("，", "\n")
    json_lines = "\n".join(json.dumps({"方面": k, "情感": v}, ensure_ascii=False)
                           for k, v in (pair.split("：") for pair in lines.split("\n")))
    numeric = lines.replace("未提及", "-2").replace("正面", "1")
    cases = [
        ("masa", "paper-base", MASA_NATURAL),  # natural, D1 of the paper (饮品评价) found from the target
        ("masa", "first-nomi-lines-pu-text-none", lines),
        ("masa", "first-nomi-json-pu-text-none", json_lines),
        ("masa", "first-nomi-lines-pu-numeric-none", numeric),
        ("ed", "ew-sde", ED_NATURAL_OU),
        ("ed", "heuristic", ED_HEURISTIC),
        ("ed", "last-nomi-natural-ou-numeric-none", "1: bombed, raid; 6: flew"),
    ]
    for task, design, text in cases:
        result = score_texts(task, design, [text], [text])
        assert result["format_error_rate"] == 0.0, (design, result)
        assert result["n"] == 1
        headline = result["accuracy"] if task == "masa" else result["f1"]
        assert headline == 1.0, (design, result)


def test_masa_soft_parsing_and_corpus_metrics_by_hand():
    gold2 = "食品评价：负面，饮品评价：未提及，价格水平：负面，卫生情况：正面，服务人员态度：正面，停车方便程度：未提及。"
    # keyword key 食品 -> 食品评价, synonym 积极 -> 正面 (wrong: gold 负面), invalid label 很好 -> 未提及
    # (wrong: gold 正面), missing 饮品评价/停车方便程度 -> 未提及 (right): 4 of 6 right, a format error.
    pred2 = "食品：积极，价格水平：负面，卫生情况：很好，服务人员态度：正面"
    result = score_texts("masa", "paper-base", [MASA_NATURAL, pred2], [MASA_NATURAL, gold2])
    # pooled matrix (rows gold pos/neu/neg/unm): [[4,0,0,1],[0,0,0,0],[1,0,1,0],[0,0,0,5]]
    # p_o = (4 + .5 + 0 + 1 + 5)/12 = 10.5/12; r=(5,0,2,5), c=(5,0,1,6): p_e = 93/144 -> kappa = 33/51
    assert m.weighted_kappa([[4, 0, 0, 1], [0, 0, 0, 0], [1, 0, 1, 0], [0, 0, 0, 5]]) == pytest.approx(11 / 17)
    assert result == pytest.approx({"kappa": 11 / 17, "accuracy": 10 / 12, "exact_match": 0.5,
                                    "format_error_rate": 0.5, "n": 2})


def test_masa_aspect_list_is_the_one_the_target_names():
    d2 = "交通便利程度：正面，排队等候情况：未提及，点菜上菜速度：负面，装修情况：未提及，嘈杂情况：未提及。"
    result = score_texts("masa", "paper-base", ["交通便利程度：正面。"], [d2])  # OU-like output, PU design
    assert result["accuracy"] == pytest.approx(4 / 5) and result["format_error_rate"] == 1.0


def test_ed_soft_matching_by_hand():
    # pred (attack,bomb) (motion,flew) (motion,ran); gold (attack,bombed) (attack,raid) (motion,flew)
    # hard: TP 1, FP 2, FN 2. soft: bomb -> bombed (0.8) TP; ran -> raid (0.57) but type motion: FP.
    result = score_texts("ed", "ew-sde", ["Attack: bomb; Motion: flew, ran"], [ED_NATURAL_OU])
    assert result["precision"] == pytest.approx(1 / 3) and result["recall"] == pytest.approx(1 / 3)
    assert result["soft_precision"] == pytest.approx(2 / 3) and result["soft_f1"] == pytest.approx(2 / 3)
    heuristic = score_texts("ed", "heuristic", ['["Attack", "bombed"]\n["attack", "raid"]'], [ED_HEURISTIC])
    assert heuristic["f1"] == 0.5 and heuristic["format_error_rate"] == 1.0  # lower-case type: strict error


def test_ner_soft_matching_by_hand():
    target = "DNA: NONE\nRNA: NONE\nprotein: IL-2\ncell_line: NONE\ncell_type: T cells"
    pred = "DNA: IL-2 gene\nRNA: NONE\nprotein: IL-2, IL-4\ncell_line: NONE\ncell_type: T cell"
    # hard: TP 1 (protein il-2), FP 3, FN 1. soft: "il-2 gene" -> "il-2" (0.62, contained) but DNA: FP;
    # "il-4" vs "il-2" 0.75 without containment: FP; "t cell" -> "t cells": TP.  TP 2, FP 2, FN 0.
    result = score_texts("ner", "es-sde", [pred], [target])
    assert (result["precision"], result["recall"]) == pytest.approx((0.25, 0.5))
    assert (result["soft_precision"], result["soft_recall"], result["soft_f1"]) == pytest.approx((0.5, 1.0, 2 / 3))
    assert result["format_error_rate"] == 0.0


def test_score_texts_errors():
    with pytest.raises(UserError, match="row 2"):
        score_texts("ed", "ew-sde", ["", ""], [ED_NATURAL_OU, "Bombing: x"])
    with pytest.raises(UserError, match="length"):
        score_texts("ed", "ew-sde", ["a"], [])
    with pytest.raises(UserError, match="unknown task"):
        score_texts("pos", "es-sde", [], [])


def write_rows(path: Path, rows: list[object]) -> Path:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r, ensure_ascii=False) for r in rows) + "\n",
                    encoding="utf-8")
    return path


def test_sde_score_cli_prints_metrics_json(tmp_path, capsys):
    rows = write_rows(tmp_path / "ed.jsonl", [{"prediction": ED_HEURISTIC, "target": ED_HEURISTIC},
                                              {"prediction": "", "target": ED_HEURISTIC}])
    assert main(["score", "--task", "ed", "--design", "heuristic", str(rows)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert list(result) == [*FAMILIES["extraction"].metrics, "n", "rule", "runaway_rate", "collapsed", "top_answer_share"]
    assert result["rule"] == "paper" and result["runaway_rate"] == 0.0 and result["collapsed"] is False
    assert result["n"] == 2 and result["format_error_rate"] == 0.5 and result["precision"] == 1.0
    masa = write_rows(tmp_path / "masa.jsonl", [{"prediction": MASA_NATURAL, "target": MASA_NATURAL}])
    assert main(["score", "--task", "masa", "--design", "paper-base", str(masa)]) == 0
    assert list(json.loads(capsys.readouterr().out))[:5] == [*FAMILIES["classification"].metrics, "n"]


@pytest.mark.parametrize("bad,field", [
    ("{not json", "(record)"),
    ({"prediction": "x"}, "target"),
    ({"prediction": 3, "target": ED_HEURISTIC}, "prediction"),
    ({"prediction": "x", "target": "Bombing: x"}, "target"),  # not in the design's format
])
def test_sde_score_cli_names_file_line_of_a_malformed_row(tmp_path, capsys, bad, field):
    rows = write_rows(tmp_path / "rows.jsonl", [{"prediction": "", "target": ED_HEURISTIC}, "", bad])
    assert main(["score", "--task", "ed", "--design", "heuristic", str(rows)]) == 2
    err = capsys.readouterr().err
    assert f"rows.jsonl:3: field '{field}'" in err


def test_unknown_types_and_repeats_count_as_false_positives():
    target = '["Attack", "bombed"]'
    clean = score_texts("ed", "heuristic", ['["Attack", "bombed"]'], [target])
    stray = score_texts("ed", "heuristic", ['["Attack", "bombed"]\n["Bombing", "raid"]'], [target])
    repeat = score_texts("ed", "heuristic", ['["Attack", "bombed"]\n["Attack", "bombed"]'], [target])
    assert clean["precision"] == 1.0 and stray["precision"] == 0.5 and repeat["precision"] == 0.5
    assert stray["recall"] == repeat["recall"] == 1.0


def test_domain_names_the_aspect_list_of_present_only_targets():
    # Under ew-sde a target with nothing present is "无": it cannot tell D1 from D2 by itself.
    target, prediction = "无", "交通便利程度：正面。"
    d2 = score_texts("masa", "ew-sde", [prediction], [target], domain="D2")
    assert d2["accuracy"] == 0.8 and d2["format_error_rate"] == 0.0  # 5 D2 aspects, one wrong
    d1 = score_texts("masa", "ew-sde", [prediction], [target])
    assert d1["accuracy"] == 1.0 and d1["format_error_rate"] == 1.0  # an unknown aspect under D1


def test_a_collapsed_run_is_named_with_its_answer_and_what_to_try(tmp_path, capsys):
    """The committed ES-SDE board entry on MAVEN ED answered 'no event' nearly everywhere: sde score says so on
    stderr (the JSON on stdout stays as it is), with how often that answer is right, and what undid it here."""
    board = Path(__file__).resolve().parents[1] / "leaderboards" / "submissions"
    entry = next(board.glob("*-first-nomi-lines-pu-text-none-16550876"))
    samples = [json.loads(line) for line in (entry / "samples_sde_ed.jsonl").read_text(encoding="utf-8").splitlines()]
    rows = tmp_path / "outputs.jsonl"
    rows.write_text("".join(json.dumps({"prediction": s["resps"][0][0], "target": s["target"]}) + "\n"
                            for s in samples), encoding="utf-8")
    assert main(["score", "--task", "ed", "--design", "es-sde", str(rows)]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["collapsed"] is True
    assert err.startswith("sde score: collapsed: 99% of the outputs are one answer ('Catastrophe: NONE Attack: NONE")
    assert "the gold answer of 52% of the documents" in err and "docs/studies/ed-recipe-smollm2" in err
