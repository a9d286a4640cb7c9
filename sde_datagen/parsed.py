"""What reading a model's output gives: the targets recovered and the format errors met on the way.

Shared by the codecs (which split an output into items) and the task families (which read the items).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

Targets = dict  # classification: dict[str, str]; extraction: dict[str, list[str]]

ERROR_KINDS = (
    "empty",  # nothing but whitespace
    "unsplittable",  # an item without the key/value separator
    "invalid_json",  # a line that is not the JSON this design writes
    "unknown_target",  # a key that names no expected target or type
    "invalid_label",  # a value that is no label of the task (classification)
    "duplicate_target",  # the same target twice
    "missing_target",  # a target absent from a design that lists every target (pu)
    "missing_rationale",  # a reasoning design's item without its rationale in place
    "empty_span",  # an empty span in a list of spans (extraction)
    "runaway",  # a degenerate answer: one item repeated RUNAWAY_REPEATS times or more, or a loop cut off mid-item
)


@dataclass(frozen=True)
class FormatError:
    kind: str
    detail: str


@dataclass
class Parsed:
    targets: Targets
    errors: list[FormatError] = field(default_factory=list)
    # Extraction: (key, span) items whose type names no expected type; scoring counts them as
    # false positives, as the paper does.
    stray: list[tuple[str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


class Item(NamedTuple):
    """One key/value of an output before the task family reads it."""

    key: str
    value: object  # str for natural/lines, a JSON value for json/heuristic


class Reading(NamedTuple):
    """What a task family reads from an output's items: values per target, the format errors on the way,
    and (extraction) (key, span) items of unknown types."""

    values: dict
    errors: list[FormatError]
    stray: list[tuple[str, str]]
