"""Metrics against hand-computed values (sde_datagen.metrics)."""
from __future__ import annotations

from difflib import SequenceMatcher

import pytest

from sde_datagen import metrics as m
from sde_datagen.families import FAMILIES

# The pooled D1 confusion matrix the SDE authors published beside their kappa
# (SDE/MASA/result_internlm-chat/..._soft.txt: "kappa:0.7639"; its 食品评价 block: 0.5682).
AUTHORS_MATRIX = [[92, 1, 2, 5], [12, 3, 4, 3], [5, 0, 7, 3], [4, 0, 1, 158]]
AUTHORS_FOOD_MATRIX = [[36, 0, 0, 0], [6, 3, 1, 0], [2, 0, 2, 0], [0, 0, 0, 0]]


def items_from_matrix(matrix: list[list[int]]) -> list[tuple[tuple[str, str], ...]]:
    """One single-aspect item per cell count, so the pooled matrix is `matrix` again."""
    labels = m.KAPPA_LABELS
    return [((labels[i], labels[j]),) for i, row in enumerate(matrix) for j, n in enumerate(row)
            for _ in range(n)]


def test_weighted_kappa_small_matrix_by_hand():
    # gold pos, pos, neg; predicted pos, neu, neg:
    # n=3, rows r=(2,0,1,0), cols c=(1,1,1,0)
    # p_o = (W00 + W01 + W22)/3 = (1 + .5 + 1)/3 = 2.5/3
    # p_e = sum W_ij r_i c_j / 9 = (2*(1+.5+0) + 1*(0+.5+1)) / 9 = 4.5/9 = .5
    # kappa = (2.5/3 - .5) / .5 = 2/3
    items = [(("positive", "positive"), ("positive", "neutral"), ("negative", "negative"))]
    assert m.confusion_matrix(items) == [[1, 1, 0, 0], [0, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]]
    assert m.kappa(items) == pytest.approx(2 / 3)


def test_weighted_kappa_reproduces_authors_published_values():
    assert round(m.weighted_kappa(AUTHORS_MATRIX), 4) == 0.7639
    assert round(m.weighted_kappa(AUTHORS_FOOD_MATRIX), 4) == 0.5682
    assert round(m.kappa(items_from_matrix(AUTHORS_MATRIX)), 4) == 0.7639


def test_kappa_degenerate_cases():
    assert m.weighted_kappa([[0] * 4] * 4) == 0.0
    assert m.kappa([(("unmentioned", "unmentioned"),)] * 3) == 1.0  # p_e = 1: perfect agreement
    # chance-level: p_o == p_e -> 0
    assert m.kappa([(("positive", "positive"),), (("negative", "positive"),)]) == pytest.approx(0.0)


def test_accuracy_and_exact_match_are_corpus_level():
    gold = {"a": "positive", "b": "unmentioned", "c": "negative"}
    perfect = m.classification_item(gold, dict(gold))
    one_wrong = m.classification_item(gold, {"a": "positive", "c": "neutral"})  # b missing -> unmentioned
    assert one_wrong == (("positive", "positive"), ("unmentioned", "unmentioned"), ("negative", "neutral"))
    short = m.classification_item({"a": "neutral"}, {"a": "positive"})
    items = [perfect, one_wrong, short]
    assert m.accuracy(items) == pytest.approx(5 / 7)  # pooled pairs, not the mean of 1, 2/3, 0
    assert m.exact_match(items) == pytest.approx(1 / 3)
    assert m.format_error_rate([1, 0, 0, 1]) == 0.5


def test_extraction_pairs_lowercase_strip_keep_duplicates():
    assert m.extraction_pairs({"Attack": [" Bombed", "raid", "raid"], "Motion": []}) == [
        ("attack", "bombed"), ("attack", "raid"), ("attack", "raid")]


def test_ed_hard_and_dedup():
    gold = [("attack", "bombed")]
    assert m.ed_counts(gold, [("attack", "bombed")]) == (1, 0, 0)
    # duplicated prediction: TP once (de-duplicated), the copy is a false positive (paper's rule)
    assert m.ed_counts(gold, [("attack", "bombed"), ("attack", "bombed")]) == (1, 1, 0)
    # a duplicated gold pair is matched once by de-duplicated predictions
    assert m.ed_counts(gold * 2, [("attack", "bombed")] * 2) == (1, 1, 1)
    assert m.ed_counts(gold, [("motion", "bombed")]) == (0, 1, 1)  # wrong type
    assert m.ed_counts([], [("attack", "x")], soft=True) == (0, 1, 0)


def test_ed_soft_matching_examples():
    gold = [("attack", "bombed"), ("motion", "flew")]
    # ratio("bomb", "bombed") = 2*4/10 = 0.8 > 0.5 -> replaced by "bombed"
    assert SequenceMatcher(a="bomb", b="bombed").ratio() == pytest.approx(0.8)
    assert m.ed_counts(gold, [("attack", "bomb")]) == (0, 1, 2)
    assert m.ed_counts(gold, [("attack", "bomb")], soft=True) == (1, 0, 1)
    # ratio("fly", "flew") = 2*2/7 = 0.571 -> replaced; the type still has to match
    assert m.ed_counts(gold, [("motion", "fly")], soft=True) == (1, 0, 1)
    assert m.ed_counts(gold, [("attack", "fly")], soft=True) == (0, 1, 2)
    # ratio("war", "bombed") = 0 -> kept
    assert m.soft_trigger("war", ["bombed", "flew"]) == "war"


def test_ed_soft_candidates_are_all_gold_triggers_of_the_sentence():
    # Candidates are the sentence's gold triggers of any type (SDE.md, authors' code):
    # "bomb" is closer to motion's "bombs" (8/9) than to attack's "bombing" (8/11), so the
    # attack prediction becomes ("attack", "bombs"), which is not gold.
    gold = [("attack", "bombing"), ("motion", "bombs")]
    assert m.soft_trigger("bomb", ["bombing", "bombs"]) == "bombs"
    assert m.ed_counts(gold, [("attack", "bomb")], soft=True) == (0, 1, 2)


def test_ner_hard_multiset_and_soft_containment():
    gold = [("protein", "il-2"), ("dna", "il-2 gene"), ("protein", "il-2")]
    assert m.ner_counts(gold, [("protein", "il-2")] * 3) == (2, 1, 1)  # min(3 predicted, 2 gold)
    # "il-2 gene expression" vs "il-2 gene": ratio 2*9/29 = 0.62 and containment -> soft TP
    pred = [("dna", "il-2 gene expression")]
    assert m.ner_counts(gold, pred) == (0, 1, 3)
    assert m.ner_counts(gold, pred, soft=True) == (1, 0, 2)
    # "il-3" vs "il-2": ratio 0.75 but neither contains the other -> no soft match
    assert m.soft_entity("il-3", ["il-2"]) == "il-3"
    assert m.ner_counts([("protein", "il-2")], [("protein", "il-3")], soft=True) == (0, 1, 1)
    # ED would accept that one (no containment rule)
    assert m.ed_counts([("protein", "il-2")], [("protein", "il-3")], soft=True) == (1, 0, 0)


def test_prf_aggregations_sum_counts_before_dividing():
    items = [(1, 0, 0), (0, 3, 1), (2, 1, 1)]  # tp=3, fp=4, fn=2
    assert m.precision(items) == pytest.approx(3 / 7)
    assert m.recall(items) == pytest.approx(3 / 5)
    assert m.f1(items) == pytest.approx(2 * (3 / 7) * (3 / 5) / (3 / 7 + 3 / 5))
    assert m.prf(m.Counts(0, 0, 0)) == (0.0, 0.0, 0.0)
    for family in FAMILIES.values():
        assert set(family.aggregations(m.KAPPA_LABELS)) == set(family.metrics)
