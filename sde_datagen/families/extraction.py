"""The extraction family: a fixed list of types, each given zero or more text spans of the input (ED, NER).

Everything that is particular to it lives here: how a record gives its spans, how a design writes and reads
them, its extractive rationales, its metrics (micro precision, recall and F1, exact and soft) and the
per-document statistics (one sentence's TP/FP/FN) that a bootstrap resamples.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

import numpy as np

from sde_datagen import metrics as m
from sde_datagen.errors import RecordError
from sde_datagen.parsed import FormatError, Item, Reading, Targets

if TYPE_CHECKING:
    from sde_datagen.spec import TaskSpec

# The paper's counting rule of each built-in extraction task; a user's task uses the multiset rule (NER's),
# which scores repeated gold items exactly (a user's task never takes a built-in task's name).
COUNTS = {"ed": m.ed_counts}
_CLAUSE_END = re.compile(r"[。！？!?；;，,\n.:：]")
_WINDOW = 5  # words on each side of an entity


class Extraction:
    name = "extraction"
    metrics = ("precision", "recall", "f1", "soft_precision", "soft_recall", "soft_f1", "format_error_rate")
    primary = "f1"
    record_fields = {"items": "items", "type": "type", "span": "text"}  # record keys: the list, each item's type and span

    # ---------------------------------------------------------------- the spec
    def check_spec(self, labels: list, absent: str, fail: Callable[[str, str], Exception]) -> None:
        """Extraction tasks have no labels to check."""

    def design_problems(self, format: str) -> list[str]:
        return []

    def target_list(self, spec: TaskSpec, numeric: bool) -> str:
        """The types as an instruction lists them; numeric designs write each type's number beside it."""
        p = spec.punctuation
        if numeric:
            return p["list"].join(p["legend"].format(code=i, text=n) for i, n in enumerate(spec.target_names))
        return p["list"].join(spec.target_names)

    # ---------------------------------------------------------------- data
    def targets(self, spec: TaskSpec, row: dict, text: str, path: Path, number: int) -> Targets:
        items_key, type_key, span_key = spec.record["items"], spec.record["type"], spec.record["span"]
        items = row.get(items_key)
        if not isinstance(items, list):
            raise RecordError(path, number, items_key, "missing or not a list")
        targets: dict[str, list[str]] = {name: [] for name in spec.target_names}
        for i, item in enumerate(items):
            where = f"{items_key}[{i}]"
            if not isinstance(item, dict):
                raise RecordError(path, number, where, "must be an object")
            kind, span = item.get(type_key), item.get(span_key)
            if not isinstance(kind, str) or kind not in targets:
                raise RecordError(path, number, f"{where}.{type_key}", f"'{kind}' is not a type of task {spec.name}")
            if not isinstance(span, str) or not span.strip():
                raise RecordError(path, number, f"{where}.{span_key}", "missing or empty")
            span = span.strip()
            if "\n" in span:
                raise RecordError(path, number, f"{where}.{span_key}", "a span cannot contain a line break")
            if span not in text:
                raise RecordError(path, number, f"{where}.{span_key}", f"'{span}' does not occur in the text")
            if span not in targets[kind]:
                targets[kind].append(span)
        return targets

    def rationales(self, spec: TaskSpec, text: str, targets: Targets) -> dict[str, str]:
        """The clause around each span (ED), or a few words around it (NER: `context: window`)."""
        context = _window if spec.rationale["context"] == "window" else _clause
        out = {}
        for name in spec.target_names:
            spans = targets[name]
            if spans:
                out[name] = " | ".join(dict.fromkeys(context(text, span) for span in spans))
            else:
                out[name] = spec.rationale["absent"].format(target=name)
        return out

    def reader(self, spec: TaskSpec, format: str, numeric: bool, spans_re: re.Pattern) -> "SpanReader":
        return SpanReader(spec, numeric, spans_re, repeats=format == "heuristic")

    # ---------------------------------------------------------------- scoring
    def higher_is_better(self, metric: str) -> bool:
        return metric != "format_error_rate"

    def doc_items(self, spec: TaskSpec, gold: Mapping[str, Any], predicted: Targets,
                  stray: list[tuple[str, str]], error: int) -> dict[str, Any]:
        counts = COUNTS.get(spec.name, m.ner_counts)
        # Items of unknown types are predictions too: they can only be false positives, every one of them.
        strays: dict[str, list[str]] = {}
        for kind, span in stray:
            strays.setdefault(kind, []).append(span)
        gold_pairs = m.extraction_pairs(gold)
        pred_pairs = m.extraction_pairs(predicted) + m.extraction_pairs(strays)
        hard, soft = counts(gold_pairs, pred_pairs), counts(gold_pairs, pred_pairs, soft=True)
        return {"precision": hard, "recall": hard, "f1": hard,
                "soft_precision": soft, "soft_recall": soft, "soft_f1": soft, "format_error_rate": error}

    def aggregations(self, labels: tuple[str, ...]) -> dict[str, Callable]:
        """soft_* aggregate their own soft-matched counts with the same functions."""
        return {"precision": m.precision, "recall": m.recall, "f1": m.f1, "soft_precision": m.precision,
                "soft_recall": m.recall, "soft_f1": m.f1, "format_error_rate": m.format_error_rate}

    # ---------------------------------------------------------------- per-document statistics
    # Columns: tp, fp, fn, soft_tp, soft_fp, soft_fn, exact (unused, 0), format_error, docs.
    def stats_rows(self, items: list[Mapping[str, Any]], labels: tuple[str, ...]) -> np.ndarray:
        return np.array([[*item["f1"], *item["soft_f1"], 0, item["format_error_rate"], 1] for item in items],
                        dtype=float)

    def values(self, sums: np.ndarray, labels: tuple[str, ...]) -> dict[str, np.ndarray]:
        hard = m.prf_arrays(*(sums[..., i] for i in range(3)))
        soft = m.prf_arrays(*(sums[..., i] for i in range(3, 6)))
        errors, docs = sums[..., -2], sums[..., -1]
        with np.errstate(divide="ignore", invalid="ignore"):
            rate = np.where(docs > 0, errors / docs, 0.0)
        return {"precision": hard[0], "recall": hard[1], "f1": hard[2], "soft_precision": soft[0],
                "soft_recall": soft[1], "soft_f1": soft[2], "format_error_rate": rate}

    def reject(self, table: np.ndarray, labels: tuple[str, ...], absent: str) -> None:
        """The strict rule, in place on the rows of rejected documents: no TP or FP, every gold item a FN."""
        for tp, fp, fn in ((0, 1, 2), (3, 4, 5)):
            table[:, fn] += table[:, tp]
            table[:, tp] = table[:, fp] = 0


class SpanReader:
    """A codec's extraction half: spans per type, a type written as its name or its number."""

    def __init__(self, spec: TaskSpec, numeric: bool, spans_re: re.Pattern, repeats: bool):
        self.names = spec.target_names
        self.placeholder = spec.placeholder
        self.spans_re = spans_re
        self.repeats = repeats  # heuristic outputs name a type once per span
        self.key_out = {name: (str(i) if numeric else name) for i, name in enumerate(self.names)}
        self.key_in = {v: k for k, v in self.key_out.items()}
        soft: dict[str, str] = {}
        for i, target in enumerate(spec.targets):
            for word in (target.name, str(i), *target.keywords):
                soft.setdefault(_fold(word), target.name)
        self.key_soft = soft

    def items(self, targets: Targets, listed: bool) -> list[tuple[str, str, object]]:
        """(type name, key as written: the name or its index, spans) for every type the output lists."""
        return [(name, self.key_out[name], targets[name]) for name in self.names if listed or targets[name]]

    def value_text(self, value: object, sep: str) -> str:
        return sep.join(value) if value else self.placeholder

    def json_value(self, value: object) -> object:
        return value

    def heuristic_values(self, value: object) -> list[str]:
        return list(value)

    def heuristic_item(self, key: str, written: str) -> Item:
        return Item(key, [written])

    def read(self, items: list[Item], soft: bool) -> Reading:
        """Spans per type. A model's repeated spans are kept: the paper counts repeats as false positives."""
        values: dict[str, list[str]] = {}
        errors: list[FormatError] = []
        stray: list[tuple[str, str]] = []
        for item in items:
            found = self._spans(item.value)
            if found is None:
                errors.append(FormatError("invalid_json", f"the spans of '{item.key[:40]}' are not a list of texts"))
                continue
            name = self.key_in.get(item.key)
            if name is None:
                errors.append(FormatError("unknown_target", f"'{item.key[:40]}' is not an expected type"))
                name = self.key_soft.get(_fold(item.key)) if soft else None
                if name is None:
                    stray.extend((item.key, span) for span in found if span)
                    continue
            if name in values and not self.repeats:
                errors.append(FormatError("duplicate_target", f"'{name}' appears twice"))
                if not soft:
                    continue
            spans = values.setdefault(name, [])
            for span in found:
                if span:
                    spans.append(span)
                else:
                    errors.append(FormatError("empty_span", f"an empty span for '{name}'"))
        return Reading(values, errors, stray)

    def _spans(self, value: object) -> list[str] | None:
        if isinstance(value, str):
            return [] if value == self.placeholder else [s.strip() for s in self.spans_re.split(value)]
        if isinstance(value, list) and all(isinstance(s, str) for s in value):
            return [s.strip() for s in value]
        return None

    def fill(self, values: dict[str, list[str]]) -> dict[str, list[str]]:
        return {name: values.get(name, []) for name in self.names}


def _fold(word: str) -> str:
    return word.strip().lower().replace(" ", "_").replace("-", "_")


def _clause(text: str, span: str) -> str:
    at = max(text.find(span), 0)
    start = max((found.end() for found in _CLAUSE_END.finditer(text, 0, at)), default=0)
    after = _CLAUSE_END.search(text, at + len(span))
    return text[start : after.start() if after else len(text)].strip()


def _window(text: str, span: str) -> str:
    at = max(text.find(span), 0)
    left, right = text[:at].split()[-_WINDOW:], text[at + len(span) :].split()[:_WINDOW]
    return " ".join([*left, span, *right])
