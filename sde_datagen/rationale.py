"""Rationales for CoT / R-CoT designs: a deterministic extractive default, overridable per target.

The default quotes the input: MASA, the clauses that mention the aspect (or a fixed "not
mentioned" sentence); ED, the clause around each trigger; NER, a few words around each entity.
A user's JSONL file ({"id", "target", "rationale"} per line) replaces any of them.
"""
from __future__ import annotations

import re
from pathlib import Path

from sde_datagen.errors import RecordError, UserError
from sde_datagen.records import GoldRecord, read_jsonl
from sde_datagen.spec import TaskSpec

_CLAUSE_END = re.compile(r"[。！？!?；;，,\n.:：]")
_CLAUSES = re.compile(r"[^。！？!?；;，,\n]+")
_WINDOW = 5  # words on each side of an entity
_MAX_CLAUSES = 2

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
    make = _classification if spec.family == "classification" else _extraction
    found = make(spec, record)
    if overrides:
        for name in found:
            found[name] = overrides.get((record.id, name), found[name])
    close, alt = spec.rationale["close"], spec.rationale["close_alt"]
    return {name: " ".join(text.split()).replace(close, alt) for name, text in found.items()}


def _classification(spec: TaskSpec, record: GoldRecord) -> dict[str, str]:
    clauses = [c.strip() for c in _CLAUSES.findall(record.text) if c.strip()]
    words = spec.rationale
    joiner = spec.punctuation["pairs"]
    out = {}
    for target in spec.targets:
        if record.targets[target.name] == spec.absent_label:
            out[target.name] = words["absent"].format(target=target.name)
            continue
        cues = target.cues or target.keywords or (target.name,)
        hits = [c for c in clauses if any(cue in c for cue in cues)][:_MAX_CLAUSES]
        out[target.name] = joiner.join(hits) if hits else words["fallback"].format(target=target.name)
    return out


def _extraction(spec: TaskSpec, record: GoldRecord) -> dict[str, str]:
    context = _window if spec.rationale["context"] == "window" else _clause
    out = {}
    for name in spec.target_names:
        spans = record.targets[name]
        if spans:
            out[name] = " | ".join(dict.fromkeys(context(record.text, span) for span in spans))
        else:
            out[name] = spec.rationale["absent"].format(target=name)
    return out


def _clause(text: str, span: str) -> str:
    at = max(text.find(span), 0)
    start = max((m.end() for m in _CLAUSE_END.finditer(text, 0, at)), default=0)
    after = _CLAUSE_END.search(text, at + len(span))
    return text[start : after.start() if after else len(text)].strip()


def _window(text: str, span: str) -> str:
    at = max(text.find(span), 0)
    left, right = text[:at].split()[-_WINDOW:], text[at + len(span) :].split()[:_WINDOW]
    return " ".join([*left, span, *right])
