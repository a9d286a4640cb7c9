"""The classification family: a fixed list of targets, each given one label from a vocabulary (MASA).

Everything that is particular to it lives here: how a record gives its labels, how a design writes and reads
them, its extractive rationales, its metrics (pooled kappa, accuracy, exact match) and the per-document
statistics (one review's contribution to the confusion matrix) that a bootstrap resamples.
"""
from __future__ import annotations

import re
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

import numpy as np

from sde_datagen import metrics as m
from sde_datagen.errors import RecordError
from sde_datagen.parsed import FormatError, Item, Reading, Targets

if TYPE_CHECKING:
    from sde_datagen.spec import TaskSpec

_CLAUSES = re.compile(r"[^。！？!?；;，,\n]+")
_MAX_CLAUSES = 2  # clauses quoted by a rationale
# Characters quoted from one clause at most, around its cue: a review with little punctuation is one long clause
# (the longest CoT answer of the bundled test set was 4,516 tokens before this cap; SDE's rationales are short).
_MAX_QUOTE = 30


class Classification:
    name = "classification"
    metrics = ("kappa", "accuracy", "exact_match", "format_error_rate")
    primary = "kappa"
    record_fields = {"labels": "labels"}  # the record key holding {target: label id}
    # Items of `doc_items` that are (gold, predicted) pairs; the others are format errors.
    _PAIRS = ("kappa", "accuracy", "exact_match")

    # ---------------------------------------------------------------- the spec
    def check_spec(self, labels: list, absent: str, fail: Callable[[str, str], Exception]) -> None:
        if not labels:
            raise fail("labels", "a classification task needs labels")
        if absent not in {lab.id for lab in labels}:
            raise fail("absent_label", f"'{absent}' is not one of the label ids")

    def design_problems(self, format: str) -> list[str]:
        return []

    def target_list(self, spec: TaskSpec, numeric: bool) -> str:
        """The targets as an instruction lists them; numeric designs number the labels, not the targets."""
        return spec.punctuation["list"].join(spec.target_names)

    # ---------------------------------------------------------------- data
    def targets(self, spec: TaskSpec, row: dict, text: str, path: Path, number: int) -> Targets:
        key = spec.record["labels"]
        labels = row.get(key)
        if not isinstance(labels, dict):
            raise RecordError(path, number, key, "missing or not an object of target -> label")
        valid = spec.label_ids
        targets = {}
        for name in spec.target_names:
            value = labels.get(name)
            if not isinstance(value, str) or value not in valid:
                problem = "missing" if value is None else f"'{value}' is not a label"
                raise RecordError(path, number, f"{key}.{name}", f"{problem} (labels: {', '.join(valid)})")
            targets[name] = value
        return targets

    def rationales(self, spec: TaskSpec, text: str, targets: Targets) -> dict[str, str]:
        """The clauses that mention each aspect, or a fixed sentence for an unmentioned one."""
        clauses = [c.strip() for c in _CLAUSES.findall(text) if c.strip()]
        words = spec.rationale
        joiner = spec.punctuation["pairs"]
        out = {}
        for target in spec.targets:
            if targets[target.name] == spec.absent_label:
                out[target.name] = words["absent"].format(target=target.name)
                continue
            cues = target.cues or target.keywords or (target.name,)
            hits = [_around(c, cues) for c in clauses if any(cue in c for cue in cues)][:_MAX_CLAUSES]
            out[target.name] = joiner.join(hits) if hits else words["fallback"].format(target=target.name)
        return out

    def reader(self, spec: TaskSpec, format: str, numeric: bool, spans_re: re.Pattern) -> "LabelReader":
        return LabelReader(spec, numeric)

    # ---------------------------------------------------------------- scoring
    def higher_is_better(self, metric: str) -> bool:
        return metric != "format_error_rate"

    def doc_items(self, spec: TaskSpec, gold: Mapping[str, Any], predicted: Targets,
                  stray: list[tuple[str, str]], error: int) -> dict[str, Any]:
        pairs = m.classification_item(gold, predicted, spec.absent_label)
        return {"kappa": pairs, "accuracy": pairs, "exact_match": pairs, "format_error_rate": error}

    def aggregations(self, labels: tuple[str, ...]) -> dict[str, Callable]:
        """kappa over the task's own label order (the paper's weights for MASA's labels)."""
        return {"kappa": partial(m.kappa, labels=labels) if labels != m.KAPPA_LABELS else m.kappa,
                "accuracy": m.accuracy, "exact_match": m.exact_match, "format_error_rate": m.format_error_rate}

    # ---------------------------------------------------------------- per-document statistics
    # Columns: the k x k confusion cells (rows gold, columns predicted), then exact, format_error, docs.
    def stats_rows(self, items: list[Mapping[str, Any]], labels: tuple[str, ...]) -> np.ndarray:
        index = {label: i for i, label in enumerate(labels)}
        k = len(labels)
        table = np.zeros((len(items), k * k + 3))
        for row, item in enumerate(items):
            for gold, pred in item["kappa"]:
                table[row, index[gold] * k + index[pred]] += 1
            table[row, -3:] = (all(g == p for g, p in item["kappa"]), item["format_error_rate"], 1)
        return table

    def values(self, sums: np.ndarray, labels: tuple[str, ...]) -> dict[str, np.ndarray]:
        exact, errors, docs = (sums[..., -3 + i] for i in range(3))
        k = len(labels)
        matrices = sums[..., :k * k].reshape(*sums.shape[:-1], k, k)
        pairs = matrices.sum(axis=(-2, -1))
        correct = np.trace(matrices, axis1=-2, axis2=-1)
        with np.errstate(divide="ignore", invalid="ignore"):
            return {"kappa": m.kappa_of_matrices(matrices, m.kappa_weights(labels)),
                    "accuracy": np.where(pairs > 0, correct / pairs, 0.0),
                    "exact_match": np.where(docs > 0, exact / docs, 0.0),
                    "format_error_rate": np.where(docs > 0, errors / docs, 0.0)}

    def reject(self, table: np.ndarray, labels: tuple[str, ...], absent: str) -> None:
        """The strict rule, in place on the rows of rejected documents: every target predicted absent."""
        k = len(labels)
        at = labels.index(absent)
        gold = table[:, :k * k].reshape(-1, k, k).sum(axis=2)  # gold label counts of each document
        empty = np.zeros((len(gold), k, k))
        empty[:, :, at] = gold
        table[:, :k * k] = empty.reshape(len(gold), k * k)
        table[:, -3] = (np.delete(gold, at, axis=1).sum(axis=1) == 0)


def _around(clause: str, cues: tuple[str, ...] | list[str]) -> str:
    """The clause, or its _MAX_QUOTE characters around the first cue it holds when it is longer."""
    if len(clause) <= _MAX_QUOTE:
        return clause
    at = min(i for cue in cues if (i := clause.find(cue)) >= 0)
    start = max(0, min(at - _MAX_QUOTE // 2, len(clause) - _MAX_QUOTE))
    return clause[start:start + _MAX_QUOTE].strip()


class LabelReader:
    """A codec's classification half: one label per target, written as its text or its code."""

    def __init__(self, spec: TaskSpec, numeric: bool):
        self.absent = spec.absent_label
        self.names = spec.target_names
        self.label_out = {lab.id: (lab.code if numeric else lab.text) for lab in spec.labels}
        self.label_in = {v: k for k, v in self.label_out.items()}
        soft: dict[str, str] = {}
        for lab in spec.labels:
            for word in (lab.text, lab.code, lab.id, *lab.synonyms):
                soft.setdefault(word, lab.id)
        self.label_soft = soft
        self.keywords = [(t.name, t.keywords or (t.name,)) for t in spec.targets]

    def items(self, targets: Targets, listed: bool) -> list[tuple[str, str, object]]:
        """(target name, key as written, value) for every target the output lists."""
        absent = self.absent
        return [(name, name, targets[name]) for name in self.names if listed or targets[name] != absent]

    def value_text(self, value: object, sep: str) -> str:
        return self.label_out[value]

    def json_value(self, value: object) -> object:
        return self.label_out[value]

    def heuristic_values(self, value: object) -> list[str]:
        """The heuristic format lists the mentioned aspects only: `["食品评价", "正面"]` (it is an OU design)."""
        return [self.label_out[value]]

    def heuristic_item(self, key: str, written: str) -> Item:
        return Item(key, written)

    def _by_keyword(self, key: str) -> str | None:
        """Soft parsing: the target whose keyword the key contains (食品 -> 食品评价)."""
        for name, words in self.keywords:
            if any(w in key for w in words):
                return name
        return None

    def read(self, items: list[Item], soft: bool) -> Reading:
        values: dict[str, str] = {}
        errors: list[FormatError] = []
        for item in items:
            key = item.key
            name = key if key in self.names else None
            if name is None:
                errors.append(FormatError("unknown_target", f"'{key[:40]}' is not an expected target"))
                name = self._by_keyword(key) if soft else None
                if name is None:
                    continue
            if name in values:
                errors.append(FormatError("duplicate_target", f"'{name}' appears twice"))
                continue
            value = item.value if isinstance(item.value, str) else str(item.value)
            label = self.label_in.get(value)
            if label is None:
                errors.append(FormatError("invalid_label", f"'{value[:20]}' is not a label for '{name}'"))
                if soft:
                    label = self.label_soft.get(value.strip(" 。.，,；;！!\"'"))
                if label is None:
                    label = self.absent
            values[name] = label
        return Reading(values, errors, [])

    def fill(self, values: dict[str, str]) -> dict[str, str]:
        return {name: values.get(name, self.absent) for name in self.names}
