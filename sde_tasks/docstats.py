"""Per-document sufficient statistics of every SDE metric, and the metrics recomputed from their sums.

A corpus metric (pooled kappa, micro F1) is not a mean of per-document scores, so a bootstrap cannot
resample per-document scores. It can resample the documents' *statistics* (TP/FP/FN counts, or
contributions to the confusion matrix), sum them with weights (how often each document is drawn)
and turn the sums into the metric with the formulas of `sde_datagen.metrics`. With every weight 1
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

from sde_datagen import metrics as m
from sde_datagen.families import family_of

CLASSIFICATION, EXTRACTION = "classification", "extraction"  # the built-in families' names


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
        return family_of(self.family).metrics

    def corpus(self) -> dict[str, float]:
        """Every metric on the documents as they are (equal to `sde_tasks.scoring.aggregate`)."""
        return {name: float(value) for name, value in self.values(self.table.sum(axis=0)).items()}

    def resampled(self, weights: np.ndarray) -> dict[str, np.ndarray]:
        """Every metric on each resample: `weights` (resamples, documents) counts how often a document is drawn."""
        return self.values(weights @ self.table)

    def values(self, sums: np.ndarray) -> dict[str, np.ndarray]:
        """The metrics of summed statistics (..., columns)."""
        return family_of(self.family).values(sums, self.labels)

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
        rows = table[rejected]
        family_of(self.family).reject(rows, self.labels, self.absent_label)
        table[rejected] = rows
        return DocStats(self.family, self.labels, table, self.absent)

    @property
    def absent_label(self) -> str:
        if self.absent is not None or not self.labels:
            return self.absent or ""
        return m.KAPPA_LABELS[-1] if m.KAPPA_LABELS[-1] in self.labels else self.labels[-1]


def from_items(items: Sequence[Mapping[str, Any]], family: str, labels: Sequence[str] = (),
               absent: str | None = None) -> DocStats:
    """The statistics of per-document items as `sde_tasks.scoring.doc_items` makes them (and lm-eval logs them).

    `labels` is a classification task's label order, `absent` its label of an unmentioned target.
    """
    if not items:
        raise ValueError("no documents")
    return DocStats(family, tuple(labels), family_of(family).stats_rows(list(items), tuple(labels)), absent)
