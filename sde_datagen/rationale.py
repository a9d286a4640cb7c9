"""Rationales for CoT / R-CoT designs: a deterministic extractive default, overridable per target.

The default quotes the input: MASA, the clauses that mention the aspect (or a fixed "not
mentioned" sentence); ED, the clause around each trigger; NER, a few words around each entity.
A user's JSONL file ({"id", "target", "rationale"} per line) replaces any of them.
"""
from __future__ import annotations

from pathlib import Path

from sde_datagen.errors import RecordError, UserError
from sde_datagen.families import family_of
from sde_datagen.records import GoldRecord, read_jsonl
from sde_datagen.spec import TaskSpec

Overrides = dict[tuple[str, str], str]


def load_overrides(path: str | Path, spec: TaskSpec, ids: set[str]) -> Overrides:
    """A user's rationale file: one {"id", "target", "rationale"} object per line, each naming a
    record in `ids` and a target of the spec (a typo would otherwise leave the default in place)."""
    overrides: Overrides = {}
    for number, row in read_jsonl(path, "rationale file"):
        for key in ("id", "target", "rationale"):
            if not isinstance(row.get(key), str) or not row[key].strip():
                raise RecordError(path, number, key, "missing or not a non-empty string")
        if row["id"] not in ids:
            raise RecordError(path, number, "id", f"'{row['id']}' is no record of the exported splits")
        if row["target"] not in spec.target_names:
            raise RecordError(path, number, "target", f"'{row['target']}' is not a target of task {spec.name} "
                              f"(targets: {', '.join(spec.target_names)})")
        overrides[(row["id"], row["target"])] = row["rationale"]
    if not overrides:
        raise UserError(f"{path}: the rationale file holds no rows")
    return overrides


def rationales_for(spec: TaskSpec, record: GoldRecord, overrides: Overrides | None = None) -> dict[str, str]:
    """One single-line rationale per target, safe to put between the design's rationale brackets."""
    found = family_of(spec.family).rationales(spec, record.text, record.targets)
    if overrides:
        for name in found:
            found[name] = overrides.get((record.id, name), found[name])
    close, alt = spec.rationale["close"], spec.rationale["close_alt"]
    return {name: " ".join(text.split()).replace(close, alt) for name, text in found.items()}
