"""Gold records: read JSONL in the task's schema, validate every field, build canonical targets.

Canonical targets are what codecs render and parse; the task's family reads them from a record
(classification: {target: label id}; extraction: {type: [span, ...]}, spans de-duplicated in order).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from sde_datagen.errors import RecordError, read_user_text
from sde_datagen.families import family_of
from sde_datagen.parsed import Targets
from sde_datagen.spec import TaskSpec


@dataclass(frozen=True)
class GoldRecord:
    id: str
    text: str
    targets: Targets


def read_jsonl(path: str | Path, what: str = "file") -> Iterator[tuple[int, dict]]:
    """(1-based line number, object) for every non-blank line; bad JSON names the file and line."""
    path = Path(path)
    text = read_user_text(path, what, f"a JSONL {what} belongs here")
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise RecordError(path, number, "(record)", f"not valid JSON: {err.msg} at column {err.colno}") from None
        except RecursionError:
            raise RecordError(path, number, "(record)", "not valid JSON: nested too deeply") from None
        if not isinstance(row, dict):
            raise RecordError(path, number, "(record)", "a record must be a JSON object")
        if _ESCAPED_SURROGATE.search(line):
            field = _surrogate_field(row)
            if field is not None:
                raise RecordError(path, number, field, "holds a lone surrogate (\\ud800-\\udfff), which is no character")
        yield number, row


_ESCAPED_SURROGATE = re.compile(r"\\u[dD][89a-fA-F]")


def _surrogate_field(value: object, where: str = "") -> str | None:
    """The path of the first text holding a lone surrogate (a JSON escape that UTF-8 cannot write)."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return where or "(record)"
        return None
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        if isinstance(key, str) and _surrogate_field(key) is not None:
            return f"{where}.{key}".lstrip(".") if where else "(key)"
        found = _surrogate_field(item, f"{where}[{key}]" if isinstance(key, int) else f"{where}.{key}".lstrip("."))
        if found is not None:
            return found
    return None


def load_records(spec: TaskSpec, path: str | Path) -> list[GoldRecord]:
    """Every record of a JSONL file; the first bad one stops the run, naming file, line and field."""
    path = Path(path)
    family = family_of(spec.family)
    records, seen = [], {}
    for number, row in read_jsonl(path):
        rid, text = row.get("id"), row.get("text")
        if not isinstance(rid, str) or not rid:
            raise RecordError(path, number, "id", "missing or not a non-empty string")
        if rid in seen:
            raise RecordError(path, number, "id", f"'{rid}' repeats the id of line {seen[rid]}")
        seen[rid] = number
        if not isinstance(text, str) or not text.strip():
            raise RecordError(path, number, "text", "missing or empty")
        records.append(GoldRecord(rid, text, family.targets(spec, row, text, path, number)))
    return records
