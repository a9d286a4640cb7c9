"""Task families: the one place that knows there are several.

A family owns every rule that differs between kinds of task: which record fields hold the gold answer, how a
design writes and reads it, its extractive rationales, its metrics (names, the primary one, which way is
better, per-document items, corpus aggregation), the per-document statistics that a bootstrap resamples and
how an answer with a format error scores under the strict rule. Everything else asks `family_of(spec.family)`
and never compares a family's name. A new family is one module defining a `Family` and one `register` call.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Protocol

import numpy as np

from sde_datagen.errors import UserError
from sde_datagen.families.classification import Classification
from sde_datagen.families.extraction import Extraction
from sde_datagen.parsed import Item, Reading, Targets

if TYPE_CHECKING:
    from sde_datagen.spec import TaskSpec


class Reader(Protocol):
    """A codec's family half, built once per (spec, design): what the output lists, and what its items say."""

    def items(self, targets: Targets, listed: bool) -> list[tuple[str, str, object]]:
        """(target name, key as written, value) for every target an output lists."""

    def value_text(self, value: object, sep: str) -> str:
        """A value as natural/lines text."""

    def json_value(self, value: object) -> object:
        """A value as a JSON value."""

    def heuristic_values(self, value: object) -> list[str]:
        """What the heuristic format writes beside a target's key, one `[key, x]` line each."""

    def heuristic_item(self, key: str, written: str) -> Item:
        """One heuristic `[key, written]` line as an item of `read`."""

    def read(self, items: list[Item], soft: bool) -> Reading:
        """Values per target from an output's items."""

    def fill(self, values: dict) -> Targets:
        """Every target, absent ones given the family's empty value."""


class Family(Protocol):
    name: str
    metrics: tuple[str, ...]  # in lm-eval's and `sde score`'s order; the last is format_error_rate
    primary: str  # the metric boards rank by and studies compare designs by
    record_fields: dict[str, str]  # the spec's default `record:` keys, naming where a record holds its answer

    def check_spec(self, labels: list, absent: str, fail: Callable[[str, str], Exception]) -> None:
        """Raise fail(field, message) when the spec's labels do not suit the family."""

    def design_problems(self, format: str) -> list[str]:
        """Why a design's output format cannot write this family's answers (empty when it can)."""

    def target_list(self, spec: TaskSpec, numeric: bool) -> str:
        """The targets as the instruction's {targets} shows them."""

    def targets(self, spec: TaskSpec, row: dict, text: str, path: Path, number: int) -> Targets:
        """A record's canonical answer; RecordError names the file, line and field of a bad one."""

    def rationales(self, spec: TaskSpec, text: str, targets: Targets) -> dict[str, str]:
        """The default (extractive) rationale of every target of a record, for CoT and R-CoT designs."""

    def reader(self, spec: TaskSpec, format: str, numeric: bool, spans_re: re.Pattern) -> Reader:
        """The codec's family half for a design's output format and label style."""

    def higher_is_better(self, metric: str) -> bool: ...

    def doc_items(self, spec: TaskSpec, gold: Mapping[str, Any], predicted: Targets,
                  stray: list[tuple[str, str]], error: int) -> dict[str, Any]:
        """One document's item per metric name (lm-eval's process_results), from what was read of the answer."""

    def aggregations(self, labels: tuple[str, ...]) -> dict[str, Callable]:
        """Each metric's corpus-level aggregation of the items."""

    def stats_rows(self, items: list[Mapping[str, Any]], labels: tuple[str, ...]) -> np.ndarray:
        """Per-document statistics (documents, columns); the last three columns are exact, format_error, docs."""

    def values(self, sums: np.ndarray, labels: tuple[str, ...]) -> dict[str, np.ndarray]:
        """Every metric of summed statistics (..., columns)."""

    def reject(self, table: np.ndarray, labels: tuple[str, ...], absent: str) -> None:
        """Rewrite rows (in place) as an empty prediction would have scored: the strict rule."""


FAMILIES: dict[str, Family] = {family.name: family for family in (Classification(), Extraction())}


def register(family: Family) -> Family:
    """Make a family known to task specs (`family: <name>`) and to everything that scores them."""
    FAMILIES[family.name] = family
    return family


def family_of(name: str) -> Family:
    try:
        return FAMILIES[name]
    except KeyError:
        raise UserError(f"unknown task family '{name}' (families: {', '.join(FAMILIES)})") from None
