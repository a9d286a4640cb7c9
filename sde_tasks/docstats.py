"""Per-document sufficient statistics of every SDE metric, and the metrics recomputed from their sums.

A corpus metric (pooled kappa, micro F1) is not a mean of per-document scores, so a bootstrap cannot
resample per-document scores. It can resample the documents' *statistics* (TP/FP/FN counts, or
contributions to the confusion matrix), sum them with weights (how often each document is drawn)
and turn the sums into the metric with the formulas of `sde_tasks.metrics`. With every weight 1
this is the corpus metric itself, to the last bit.
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
        return DocStats(self.family, self.labels, self.table[list(rows)])


def from_items(items: Sequence[Mapping[str, Any]], labels: Sequence[str] = m.KAPPA_LABELS) -> DocStats:
    """The statistics of per-document items as `sde_tasks.scoring.doc_items` makes them (and lm-eval logs them).

    `labels` is a classification task's label order (MASA's by default).
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
        return DocStats(CLASSIFICATION, tuple(labels), table)
    table = np.array([[*item["f1"], *item["soft_f1"], 0, item["format_error_rate"], 1] for item in items],
                     dtype=float)
    return DocStats(EXTRACTION, (), table)
