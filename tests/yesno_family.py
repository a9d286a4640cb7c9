"""A third task family, declared in this one module: one yes/no question per target ("does the text mention X?").

It exists to show that a family is one module: tests/test_third_family.py registers it and runs a task of it
through export and scoring without any other file knowing it. Answers are "yes"/"no" (numeric designs: 1/0);
the metrics are F1 of the "yes" answers pooled over targets, accuracy over (document, target) pairs, and the
format-error rate.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from sde_datagen import metrics as m
from sde_datagen.errors import RecordError
from sde_datagen.parsed import FormatError, Item, Reading, Targets

ANSWERS = ("yes", "no")
CODES = {"yes": "1", "no": "0"}


class YesNo:
    name = "yesno"
    metrics = ("yes_f1", "accuracy", "format_error_rate")
    primary = "yes_f1"
    record_fields = {"answers": "answers"}

    def check_spec(self, labels: list, absent: str, fail: Callable[[str, str], Exception]) -> None:
        if labels:
            raise fail("labels", "a yes/no task answers yes or no; it declares no labels")

    def design_problems(self, format: str) -> list[str]:
        return ["a yes/no task has no (type, span) pairs"] if format == "heuristic" else []

    def target_list(self, spec: Any, numeric: bool) -> str:
        return spec.punctuation["list"].join(spec.target_names)

    def targets(self, spec: Any, row: dict, text: str, path: Path, number: int) -> Targets:
        key = spec.record["answers"]
        answers = row.get(key)
        if not isinstance(answers, dict):
            raise RecordError(path, number, key, "missing or not an object of target -> yes/no")
        for name in spec.target_names:
            if answers.get(name) not in ANSWERS:
                raise RecordError(path, number, f"{key}.{name}", "must be yes or no")
        return {name: answers[name] for name in spec.target_names}

    def rationales(self, spec: Any, text: str, targets: Targets) -> dict[str, str]:
        return {name: (f"The text names {name}." if answer == "yes" else spec.rationale["absent"].format(target=name))
                for name, answer in targets.items()}

    def reader(self, spec: Any, format: str, numeric: bool, spans_re: re.Pattern) -> "AnswerReader":
        return AnswerReader(spec.target_names, numeric)

    def higher_is_better(self, metric: str) -> bool:
        return metric != "format_error_rate"

    def doc_items(self, spec: Any, gold: Mapping[str, Any], predicted: Targets, stray: list, error: int) -> dict:
        pairs = [(answer, predicted.get(name, "no")) for name, answer in gold.items()]
        tp = sum(g == p == "yes" for g, p in pairs)
        fp = sum(g == "no" and p == "yes" for g, p in pairs)
        fn = sum(g == "yes" and p == "no" for g, p in pairs)
        return {"yes_f1": (tp, fp, fn), "accuracy": (sum(g == p for g, p in pairs), len(pairs)),
                "format_error_rate": error}

    def aggregations(self, labels: tuple[str, ...]) -> dict[str, Callable]:
        def accuracy(items: list) -> float:
            right, total = (sum(column) for column in zip(*items)) if items else (0, 0)
            return right / total if total else 0.0

        return {"yes_f1": m.f1, "accuracy": accuracy, "format_error_rate": m.format_error_rate}

    # Columns: tp, fp, fn, right, pairs, then exact, format_error, docs (the last three of every family).
    def stats_rows(self, items: list, labels: tuple[str, ...]) -> np.ndarray:
        return np.array([[*i["yes_f1"], *i["accuracy"], i["accuracy"][0] == i["accuracy"][1], i["format_error_rate"], 1]
                         for i in items], dtype=float)

    def values(self, sums: np.ndarray, labels: tuple[str, ...]) -> dict[str, np.ndarray]:
        f1 = m.prf_arrays(sums[..., 0], sums[..., 1], sums[..., 2])[2]
        with np.errstate(divide="ignore", invalid="ignore"):
            return {"yes_f1": f1, "accuracy": np.where(sums[..., 4] > 0, sums[..., 3] / sums[..., 4], 0.0),
                    "format_error_rate": np.where(sums[..., -1] > 0, sums[..., -2] / sums[..., -1], 0.0)}

    def reject(self, table: np.ndarray, labels: tuple[str, ...], absent: str) -> None:
        """An empty answer says no to every target: gold yes become FN, gold no are right."""
        gold_yes = table[:, 0] + table[:, 2]
        table[:, 2] = gold_yes
        table[:, 0] = table[:, 1] = 0
        table[:, 3] = table[:, 4] - gold_yes
        table[:, 5] = gold_yes == 0


class AnswerReader:
    def __init__(self, names: tuple[str, ...], numeric: bool):
        self.names = names
        self.out = CODES if numeric else {a: a for a in ANSWERS}
        self.back = {v: k for k, v in self.out.items()}

    def items(self, targets: Targets, listed: bool) -> list[tuple[str, str, object]]:
        return [(name, name, targets[name]) for name in self.names if listed or targets[name] == "yes"]

    def value_text(self, value: object, sep: str) -> str:
        return self.out[value]

    def json_value(self, value: object) -> object:
        return self.out[value]

    def read(self, items: list[Item], soft: bool) -> Reading:
        values: dict[str, str] = {}
        errors: list[FormatError] = []
        for item in items:
            answer = self.back.get(str(item.value).strip())
            if item.key not in self.names:
                errors.append(FormatError("unknown_target", f"'{item.key[:40]}' is not an expected target"))
            elif item.key in values:
                errors.append(FormatError("duplicate_target", f"'{item.key}' appears twice"))
            elif answer is None:
                errors.append(FormatError("invalid_label", f"'{str(item.value)[:20]}' is not yes or no"))
            else:
                values[item.key] = answer
        return Reading(values, errors, [])

    def fill(self, values: dict) -> Targets:
        return {name: values.get(name, "no") for name in self.names}
