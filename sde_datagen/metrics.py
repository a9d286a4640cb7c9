"""Corpus-level SDE metrics on structured targets (the paper's scoring rules, ../shared/SDE.md).

Shaped for lm-eval: a per-document *item* function turns one (gold, prediction) pair into the
small counts a metric needs, and an *aggregation* function turns the list of items of the whole
corpus into one value (pooled confusion matrix, summed TP/FP/FN), never a mean of per-item scores.
`sde score` and the leaderboard use the same functions through `sde_tasks.scoring`.

Matching follows the authors' published scoring code (beyondguo/LLM-Tuning, SDE/), so numbers can
be compared with theirs to 4 decimals:

* ED: predictions lower-cased and de-duplicated per sentence; TP = de-duplicated predictions found
  in the gold list, FP = all predictions of the sentence - TP, FN = gold - TP. Soft: each
  de-duplicated prediction's trigger is replaced by the most similar gold trigger **of the sentence,
  of any type** (SequenceMatcher ratio > 0.5, first best on ties). The type must still match for a
  TP, so a wrong-type prediction never becomes correct; restricting candidates to the same type
  would change the paper's numbers, so it is not done. Being the paper's rule, two distinct
  predictions may soft-match the same gold trigger and both count.
* Classification: kappa pools one confusion matrix whose class order is the task's label order. The
  paper's MASA label set (KAPPA_LABELS) gets the paper's agreement weights; any other label set
  (a user's task) gets Cohen's unweighted kappa (identity weights), which needs no ordinal meaning.
* NER, and every user-declared extraction task: TP = multiset intersection of predicted and gold
  (type, text) pairs (each gold pair matches at most as many predictions as it occurs), FP = predictions - TP, FN = gold - TP. Soft: a prediction
  is replaced by the most similar gold entity of the sentence (any type) when the ratio > 0.5 and
  one string contains the other.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from difflib import SequenceMatcher
from typing import NamedTuple

import numpy as np

# Class order of the kappa matrix (rows gold, columns predicted) and the paper's agreement weights.
KAPPA_LABELS: tuple[str, ...] = ("positive", "neutral", "negative", "unmentioned")
KAPPA_WEIGHTS: tuple[tuple[float, ...], ...] = (
    (1.0, 0.5, 0.0, 0.5),
    (0.67, 1.0, 0.67, 0.67),
    (0.0, 0.5, 1.0, 0.5),
    (0.5, 0.67, 0.5, 1.0),
)
SOFT_MATCH_THRESHOLD = 0.5

Pair = tuple[str, str]


class Counts(NamedTuple):
    """TP/FP/FN of one sentence (an extraction item); summed over the corpus by the aggregations."""

    tp: int
    fp: int
    fn: int


# ----------------------------------------------------------------------------- classification
def classification_item(gold: Mapping[str, str], pred: Mapping[str, str],
                        absent: str = "unmentioned") -> tuple[Pair, ...]:
    """(gold label, predicted label) for every gold target of one review; missing -> absent."""
    return tuple((label, pred.get(target, absent)) for target, label in gold.items())


def confusion_matrix(items: Iterable[Sequence[Pair]], labels: Sequence[str] = KAPPA_LABELS) -> list[list[int]]:
    """The pooled matrix over all (review, aspect) pairs in `labels` order, rows gold, columns predicted."""
    index = {label: i for i, label in enumerate(labels)}
    matrix = [[0] * len(labels) for _ in labels]
    for item in items:
        for gold, pred in item:
            matrix[index[gold]][index[pred]] += 1
    return matrix


def weighted_kappa(matrix: Sequence[Sequence[float]],
                   weights: Sequence[Sequence[float]] = KAPPA_WEIGHTS) -> float:
    """kappa = (p_o - p_e) / (1 - p_e) with agreement weights W (SDE.md), of one confusion matrix."""
    return float(kappa_of_matrices(np.asarray(matrix, dtype=float), weights))


def kappa_of_matrices(matrices: np.ndarray, weights: Sequence[Sequence[float]] = KAPPA_WEIGHTS) -> np.ndarray:
    """Weighted kappa of each matrix in a stack (..., k, k): the one implementation, for one corpus or many resamples.

    p_e = 1 only when gold and predictions are all one same class, i.e. perfect agreement: 1.0. The
    sums run cell by cell in a fixed order, so a stack of one gives the same float as any other caller.
    """
    k = matrices.shape[-1]
    n = matrices.sum(axis=(-2, -1))
    rows, cols = matrices.sum(axis=-1), matrices.sum(axis=-2)
    p_o = p_e = np.zeros(matrices.shape[:-2])
    for i in range(k):
        for j in range(k):
            p_o = p_o + weights[i][j] * matrices[..., i, j]
            p_e = p_e + weights[i][j] * rows[..., i] * cols[..., j]
    with np.errstate(divide="ignore", invalid="ignore"):
        p_o, p_e = p_o / n, p_e / (n * n)
        value = (p_o - p_e) / (1.0 - p_e)
    return np.where(n == 0, 0.0, np.where(p_e >= 1.0, 1.0, value))


def kappa_weights(labels: Sequence[str]) -> tuple[tuple[float, ...], ...]:
    """The paper's weights for its MASA labels; identity (Cohen's unweighted kappa) for any other label set."""
    if tuple(labels) == KAPPA_LABELS:
        return KAPPA_WEIGHTS
    return tuple(tuple(float(i == j) for j in range(len(labels))) for i in range(len(labels)))


def kappa(items: Sequence[Sequence[Pair]], labels: Sequence[str] = KAPPA_LABELS) -> float:
    """Aggregation: weighted kappa of the pooled confusion matrix (MASA's labels unless `labels` is given)."""
    return weighted_kappa(confusion_matrix(items, labels), kappa_weights(labels))


def accuracy(items: Sequence[Sequence[Pair]]) -> float:
    """Aggregation: accuracy over all (review, aspect) pairs."""
    pairs = [pair for item in items for pair in item]
    return sum(gold == pred for gold, pred in pairs) / len(pairs) if pairs else 0.0


def exact_match(items: Sequence[Sequence[Pair]]) -> float:
    """Aggregation: share of reviews whose every aspect is right."""
    return sum(all(g == p for g, p in item) for item in items) / len(items) if items else 0.0


def format_error_rate(items: Sequence[float]) -> float:
    """Aggregation: share of outputs that are format errors (items are 1 for an error, else 0)."""
    return sum(items) / len(items) if items else 0.0


# ----------------------------------------------------------------------------- extraction
def extraction_pairs(targets: Mapping[str, Sequence[str]]) -> list[Pair]:
    """(type, span) pairs, lower-cased and stripped, in the mapping's order; duplicates kept."""
    return [(t.strip().lower(), s.strip().lower()) for t, spans in targets.items() for s in spans]


def _most_similar(pred: str, golds: Sequence[str]) -> tuple[float, str]:
    """Best SequenceMatcher(a=pred, b=gold) ratio and its gold (first one on ties)."""
    best, best_gold = -1.0, ""
    for gold in golds:
        ratio = SequenceMatcher(a=pred, b=gold).ratio()
        if ratio > best:
            best, best_gold = ratio, gold
    return best, best_gold


def soft_trigger(pred: str, gold_triggers: Sequence[str]) -> str:
    """ED soft matching: the most similar gold trigger when the ratio > 0.5, else pred."""
    if not gold_triggers:
        return pred
    ratio, gold = _most_similar(pred, gold_triggers)
    return gold if ratio > SOFT_MATCH_THRESHOLD else pred


def soft_entity(pred: str, gold_entities: Sequence[str]) -> str:
    """NER soft matching: like ED, and one string must also contain the other."""
    if not gold_entities:
        return pred
    ratio, gold = _most_similar(pred, gold_entities)
    if ratio > SOFT_MATCH_THRESHOLD and (gold in pred or pred in gold):
        return gold
    return pred


def ed_counts(gold: Sequence[Pair], pred: Sequence[Pair], soft: bool = False) -> Counts:
    """TP/FP/FN of one sentence under the ED rule (de-duplicated predictions, see module doc)."""
    unique = list(dict.fromkeys(pred))
    if soft:
        triggers = [span for _, span in gold]
        unique = [(t, soft_trigger(span, triggers)) for t, span in unique]
    gold_set = set(gold)
    tp = sum(p in gold_set for p in unique)
    return Counts(tp, len(pred) - tp, len(gold) - tp)


def ner_counts(gold: Sequence[Pair], pred: Sequence[Pair], soft: bool = False) -> Counts:
    """TP/FP/FN of one sentence under the NER rule (multiset intersection, see module doc)."""
    if soft:
        entities = [span for _, span in gold]
        pred = [(t, soft_entity(span, entities)) for t, span in pred]
    tp = sum((Counter(pred) & Counter(gold)).values())
    return Counts(tp, len(pred) - tp, len(gold) - tp)


def _summed(items: Iterable[Sequence[int]]) -> Counts:
    tp = fp = fn = 0
    for item in items:
        tp, fp, fn = tp + item[0], fp + item[1], fn + item[2]
    return Counts(tp, fp, fn)


def prf(counts: Counts) -> tuple[float, float, float]:
    """Micro precision, recall and F1 from summed counts (0.0 where undefined, as the paper)."""
    return tuple(float(v) for v in prf_arrays(*(np.asarray(c, dtype=float) for c in counts)))


def prf_arrays(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Micro precision, recall and F1 of summed counts, elementwise: one corpus or many resamples."""
    with np.errstate(divide="ignore", invalid="ignore"):
        p = np.where(tp + fp > 0, tp / (tp + fp), 0.0)
        r = np.where(tp + fn > 0, tp / (tp + fn), 0.0)
        f1 = np.where(p + r > 0, 2 * p * r / (p + r), 0.0)
    return p, r, f1


def precision(items: Sequence[Sequence[int]]) -> float:
    """Aggregation: micro precision of the summed (tp, fp, fn) items."""
    return prf(_summed(items))[0]


def recall(items: Sequence[Sequence[int]]) -> float:
    """Aggregation: micro recall of the summed (tp, fp, fn) items."""
    return prf(_summed(items))[1]


def f1(items: Sequence[Sequence[int]]) -> float:
    """Aggregation: micro F1 of the summed (tp, fp, fn) items."""
    return prf(_summed(items))[2]
