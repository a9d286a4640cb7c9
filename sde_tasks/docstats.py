"""Per-document sufficient statistics of every SDE metric, and the metrics recomputed from their sums.

A corpus metric (pooled kappa, micro F1) is not a mean of per-document scores, so a bootstrap cannot
resample per-document scores. It can resample the documents' *statistics* (TP/FP/FN counts, or
contributions to the confusion matrix), sum them with weights (how often each document is drawn)
and turn the sums into the metric with the formulas of `sde_tasks.metrics`. With every weight 1
this is the corpus metric itself, to the last bit.

The same statistics serve both scoring rules (sde_tasks.scoring.RULES): they are kept under the paper's rule,
and `under("strict")` turns each document with a format error into what an empty prediction scores (no TP or
FP, every gold item a FN; a classification target predicted absent), computed from its own row, so a study
scored under one rule is reported under both without rerunning anything.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from sde_tasks import metrics as m

CLASSIFICATION = "classification"
EXTRACTION = "extraction"
# Extraction columns; a classification table has the k x k confusion cells, then these three last.
EXTRACTION_COLUMNS = ("tp", "fp", "fn", "soft_tp", "soft_fp", "soft_fn", "exact", "format_error", "docs")
TAIL_COLUMNS = ("exact", "format_error", "docs")


@dataclass(frozen=True)
class DocStats:
    """One run's documents: a row of sufficient statistics per document, in the documents' order."""

    family: str
    labels: tuple[str, ...]  # the confusion matrix's class order (classification); () for extraction
    table: np.ndarray  # (documents, columns), integer-valued
    absent: str | None = None  # classification: the label of an unmentioned target (default: MASA's, else the last)

    @property
    def n_docs(self) -> int:
        return self.table.shape[0]

    @property
    def metrics(self) -> tuple[str, ...]:
        return m.CLASSIFICATION_METRICS if self.family == CLASSIFICATION else m.EXTRACTION_METRICS

    def corpus(self) -> dict[str, float]:
        """Every metric on the documents as they are (equal to `sde_tasks.scoring.aggregate`)."""
        return {name: float(value) for name, value in self.values(self.table.sum(axis=0)).items()}

    def resampled(self, weights: np.ndarray) -> dict[str, np.ndarray]:
        """Every metric on each resample: `weights` (resamples, documents) counts how often a document is drawn."""
        return self.values(weights @ self.table)

    def values(self, sums: np.ndarray) -> dict[str, np.ndarray]:
        """The metrics of summed statistics (..., columns)."""
        exact, errors, docs = (sums[..., -3 + i] for i in range(3))
        with np.errstate(divide="ignore", invalid="ignore"):
            rate = np.where(docs > 0, errors / docs, 0.0)
            if self.family == EXTRACTION:
                hard, soft = m.prf_arrays(*(sums[..., i] for i in range(3))), m.prf_arrays(*(sums[..., i] for i in range(3, 6)))
                return {"precision": hard[0], "recall": hard[1], "f1": hard[2], "soft_precision": soft[0],
                        "soft_recall": soft[1], "soft_f1": soft[2], "format_error_rate": rate}
            k = len(self.labels)
            matrices = sums[..., :k * k].reshape(*sums.shape[:-1], k, k)
            pairs = matrices.sum(axis=(-2, -1))
            correct = np.trace(matrices, axis1=-2, axis2=-1)
            return {"kappa": m.kappa_of_matrices(matrices, m.kappa_weights(self.labels)),
                    "accuracy": np.where(pairs > 0, correct / pairs, 0.0),
                    "exact_match": np.where(docs > 0, exact / docs, 0.0), "format_error_rate": rate}

    def subset(self, rows: Sequence[int]) -> "DocStats":
        return DocStats(self.family, self.labels, self.table[list(rows)], self.absent)

    def under(self, rule: str) -> "DocStats":
        """These documents scored under `rule`: "paper" as they are, "strict" with every document that has a format
        error scored as an empty prediction."""
        if rule == "paper":
            return self
        if rule != "strict":
            raise ValueError(f"unknown scoring rule '{rule}'")
        table = self.table.copy()
        rejected = table[:, -2] > 0
        if self.family == EXTRACTION:
            for tp, fp, fn in ((0, 1, 2), (3, 4, 5)):
                table[rejected, fn] += table[rejected, tp]
                table[rejected, tp] = table[rejected, fp] = 0
            return DocStats(self.family, self.labels, table, self.absent)
        k = len(self.labels)
        absent = self.labels.index(self.absent_label)
        gold = table[rejected, :k * k].reshape(-1, k, k).sum(axis=2)  # gold label counts of each rejected document
        empty = np.zeros((len(gold), k, k))
        empty[:, :, absent] = gold
        table[rejected, :k * k] = empty.reshape(len(gold), k * k)
        table[rejected, -3] = (np.delete(gold, absent, axis=1).sum(axis=1) == 0)
        return DocStats(self.family, self.labels, table, self.absent)

    @property
    def absent_label(self) -> str:
        if self.absent is not None:
            return self.absent
        return m.KAPPA_LABELS[-1] if m.KAPPA_LABELS[-1] in self.labels else self.labels[-1]


def from_items(items: Sequence[Mapping[str, Any]], labels: Sequence[str] = m.KAPPA_LABELS,
               absent: str | None = None) -> DocStats:
    """The statistics of per-document items as `sde_tasks.scoring.doc_items` makes them (and lm-eval logs them).

    `labels` is a classification task's label order (MASA's by default), `absent` its label of an unmentioned target.
    """
    if not items:
        raise ValueError("no documents")
    if "kappa" in items[0]:
        index = {label: i for i, label in enumerate(labels)}
        k = len(labels)
        table = np.zeros((len(items), k * k + len(TAIL_COLUMNS)))
        for row, item in enumerate(items):
            for gold, pred in item["kappa"]:
                table[row, index[gold] * k + index[pred]] += 1
            table[row, -3:] = (all(g == p for g, p in item["kappa"]), item["format_error_rate"], 1)
        return DocStats(CLASSIFICATION, tuple(labels), table, absent)
    table = np.array([[*item["f1"], *item["soft_f1"], 0, item["format_error_rate"], 1] for item in items],
                     dtype=float)
    return DocStats(EXTRACTION, (), table)
