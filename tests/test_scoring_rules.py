"""Scoring rules, runaway and collapse: the strict rule scores a malformed answer as an empty prediction (and the
per-document statistics give it without rescoring), every stray span counts, looping answers are named, and a
run that gives one answer to everything is called collapsed."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sde_datagen.data import bundled_dir
from sde_datagen.design import resolve_design
from sde_datagen.records import load_records
from sde_datagen.render import render_sample
from sde_datagen.tasks import load_task
from sde_tasks.scoring import aggregate, doc_stats, score_items, score_texts

SDE = [sys.executable, "-m", "sde_datagen.cli"]


def gold_and_damaged(task: str, design: str, n: int, seed: int) -> tuple[list[str], list[str]]:
    """Gold completions of the first n test records, and the same with a third of the answers cut or looped."""
    spec = load_task(task)
    chosen = resolve_design(design, spec.family)
    records = load_records(spec, bundled_dir(task) / f"{spec.splits['test']}.jsonl")[:n]
    gold = [render_sample(spec, chosen, r).completion for r in records]
    rng = np.random.default_rng(seed)
    damaged = []
    for g in gold:
        roll = rng.random()
        damaged.append(g[: len(g) // 2] if roll < 0.2 else g + "\n" + g.split("\n")[0] * 6 if roll < 0.35 else g)
    return gold, damaged


@pytest.mark.parametrize("task,design", [("ner", "es-sde"), ("ner", "ew-sde"), ("ed", "heuristic"),
                                         ("masa", "paper-base"), ("masa", "es-sde")])
def test_strict_statistics_equal_strict_scoring(task: str, design: str) -> None:
    """DocStats.under("strict") of the paper rule's statistics is the strict rule's scoring, every metric, exactly."""
    gold, damaged = gold_and_damaged(task, design, 200, 0)
    paper, strict = (score_items(task, design, damaged, gold, rule=rule) for rule in ("paper", "strict"))
    assert aggregate(strict.items, strict.spec) == doc_stats(paper.items, paper.spec).under("strict").corpus()
    assert doc_stats(strict.items, strict.spec).table.tolist() == \
        doc_stats(paper.items, paper.spec).under("strict").table.tolist()
    headline = "f1" if "f1" in strict.items[0] else "kappa"
    assert aggregate(strict.items, strict.spec)[headline] != aggregate(paper.items, paper.spec)[headline]


def test_strict_rule_scores_a_malformed_answer_as_empty() -> None:
    target = "protein: IL-2\ncell_type: NONE\ncell_line: NONE\nDNA: NONE\nRNA: NONE"
    # soft parsing recovers the protein; a missing line is a format error
    loose = "protein: IL-2, IL-4\ncell_type: T cells"
    paper, strict = (score_texts("ner", "es-sde", [loose], [target], rule=r) for r in ("paper", "strict"))
    assert paper["format_error_rate"] == strict["format_error_rate"] == 1.0
    assert paper["recall"] == 1.0 and paper["precision"] == pytest.approx(1 / 3)
    assert strict["recall"] == 0.0 and strict["precision"] == 0.0


def test_every_span_of_an_unknown_type_is_a_false_positive() -> None:
    target = '["protein", "IL-2"]'
    two_stray = '["protein", "IL-2"]\n["enzyme", "kinase"]\n["enzyme", "phosphatase"]'
    result = score_texts("ner", "heuristic", [two_stray], [target])
    assert result["precision"] == pytest.approx(1 / 3)  # 1 TP, 2 FP: both stray spans count


def test_runaway_rate_and_collapse() -> None:
    gold, _ = gold_and_damaged("ner", "ew-sde", 100, 0)
    loop = "protein: IL-2, IL-2, IL-2, IL-2, IL-2, IL-2, IL-2, IL-"
    outputs = [loop if i % 10 < 3 else g for i, g in enumerate(gold)]
    result = score_items("ner", "ew-sde", outputs, gold).degeneracy
    assert result.runaway_rate == pytest.approx(0.3)
    assert result.collapsed is False
    same = score_items("ner", "ew-sde", ["protein: IL-2"] * len(gold), gold).degeneracy
    assert same.collapsed is True and same.top_answer_share == 1.0 and same.runaway_rate == 0.0
    gold_alike = score_items("ner", "ew-sde", [gold[0]] * 10, [gold[0]] * 10).degeneracy
    assert gold_alike.collapsed is False  # the gold answers do not vary: one answer is right


def test_sde_score_rule_flag(tmp_path: Path) -> None:
    target = "protein: IL-2\ncell_type: NONE\ncell_line: NONE\nDNA: NONE\nRNA: NONE"
    path = tmp_path / "out.jsonl"
    path.write_text(json.dumps({"prediction": "protein: IL-2, IL-4\ncell_type: T cells", "target": target}) + "\n")
    found = {}
    for rule in ("paper", "strict"):
        done = subprocess.run([*SDE, "score", "--task", "ner", "--design", "es-sde", "--rule", rule, "--ci", str(path)],
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr
        found[rule] = json.loads(done.stdout)
    assert found["paper"]["recall"] == 1.0 and found["strict"]["recall"] == 0.0
    assert found["strict"]["rule"] == "strict" and "runaway_rate" in found["strict"]
    assert found["strict"]["collapsed"] is False
