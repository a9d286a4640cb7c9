"""Codecs: how a design writes a task's targets, and how its outputs are read back.

Render and parse live side by side so `parse(render(x)) == x` holds by construction (a property
test checks it for every task and design). Parsing never raises and never evaluates model output:
what it cannot read becomes a classified `FormatError`. Errors always follow the strict format;
`mode="soft"` only changes what is recovered (the paper's lenient rules for MASA keys and labels).
"""
from __future__ import annotations

import json
import json.scanner
import re
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from typing import NamedTuple, Protocol

from sde_datagen.design import Design
from sde_datagen.records import Targets
from sde_datagen.spec import TaskSpec

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
MASK = "\x00"  # stands in for a rationale while an item is split
# A runaway answer repeats one item this many times (no gold answer of the bundled data repeats one at all, and
# none of them, in any one-factor design, is taken for a runaway), or ends in this many copies of one unit of
# text: a loop that the token budget cut, often mid-item.
RUNAWAY_REPEATS = 5
LONGEST_LOOP = 200  # characters of the longest repeated unit looked for at an answer's end


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


class _Item(NamedTuple):
    """One key/value of an output before the task family reads it."""

    key: str
    value: object  # str for natural/lines, a JSON value for json/heuristic


class Reading(NamedTuple):
    """What a task family reads from an output's items: values per target, the format errors on the way,
    and (extraction) (key, span) items of unknown types."""

    values: dict
    errors: list[FormatError]
    stray: list[tuple[str, str]]


class TaskFamily(Protocol):
    """What a codec needs of a task family (classification: one label per target; extraction: spans per type)."""

    def items(self, targets: Targets, listed: bool) -> list[tuple[str, str, object]]:
        """(target name, key as written, value) for every target an output lists."""

    def value_text(self, value: object, sep: str) -> str:
        """A value as natural/lines text."""

    def json_value(self, value: object) -> object:
        """A value as a JSON value."""

    def read(self, items: list[_Item], soft: bool) -> Reading:
        """Values per target from an output's items."""

    def fill(self, values: dict) -> Targets:
        """Every target, absent ones given the family's empty value."""


class Codec:
    """render/parse for one (task spec, design); built once per pair, see `get_codec`."""

    def __init__(self, spec: TaskSpec, design: Design):
        design.check(spec.family)
        self.spec, self.design = spec, design
        p, r = spec.punctuation, spec.rationale
        self.kv, self.pairs, self.spans_sep, self.end = p["kv"], p["pairs"], p["spans"], p["end"]
        self.tkey, self.vkey, self.rkey = spec.json_keys["target"], spec.json_keys["value"], spec.json_keys["rationale"]
        self.open, self.close, self.gap = r["open"], r["close"], r["gap"]
        self.reasoning = design.reasoning
        self.listed = design.unmentioned == "pu"
        self.empty = "[]" if design.format in ("json", "heuristic") else spec.empty_answer
        # A separator counts only when not preceded by a space: GENIA spans keep their tokenised
        # " , " and " ; ", which then never split.
        self._pairs_re = re.compile(r"(?<! )" + re.escape(self.pairs))
        self._soft_kv = tuple(dict.fromkeys((self.kv, self.kv.strip(), "：", ":")))
        numeric = design.labels == "numeric"
        if spec.family == "classification":
            self._family: TaskFamily = _Classification(spec, numeric)
        else:
            spans_re = re.compile(r"(?<! )" + re.escape(self.spans_sep))
            self._family = _Extraction(spec, numeric, spans_re, repeats=design.format == "heuristic")

    # ---------------------------------------------------------------- render
    def render(self, targets: Targets, rationales: dict[str, str] | None = None) -> str:
        items = self._family.items(targets, self.listed)
        if not items:
            return self.empty
        fmt = self.design.format
        if fmt == "heuristic":
            return "\n".join(json.dumps([key, span], ensure_ascii=False) for _, key, spans in items for span in spans)
        rat = rationales if self.reasoning != "none" else None
        if fmt == "json":
            return "\n".join(
                self._json_item(key, self._family.json_value(value), rat and rat[name])
                for name, key, value in items
            )
        parts = []
        for name, key, value in items:
            shown = self._family.value_text(value, self.spans_sep)
            if rat is not None:
                wrapped = f"{self.open}{rat[name]}{self.close}"
                shown = wrapped + self.gap + shown if self.reasoning == "cot" else shown + self.gap + wrapped
            parts.append(f"{key}{self.kv}{shown}")
        if fmt == "lines":
            return "\n".join(parts)
        return self.pairs.join(parts) + self.end

    def _json_item(self, key: str, value: object, rationale: str | None) -> str:
        if rationale is None:
            obj = {self.tkey: key, self.vkey: value}
        elif self.reasoning == "cot":
            obj = {self.tkey: key, self.rkey: rationale, self.vkey: value}
        else:
            obj = {self.tkey: key, self.vkey: value, self.rkey: rationale}
        return json.dumps(obj, ensure_ascii=False)

    # ----------------------------------------------------------------- parse
    def parse(self, text: object, mode: str = "strict") -> Parsed:
        soft = mode == "soft"
        errors: list[FormatError] = []
        if not isinstance(text, str) or not text.strip():
            errors.append(FormatError("empty", "the output is empty"))
            return Parsed(self._family.fill({}), errors)
        text = text.strip()
        if text == self.empty or (soft and text in (self.spec.empty_answer, "[]")):
            items: list[_Item] = []
        elif self.design.format in ("json", "heuristic"):
            items = self._json_items(text, errors, soft)
        else:
            items = self._text_items(text, errors, soft)
        values, found_errors, stray = self._family.read(items, soft)
        errors += found_errors
        loop = runaway(text, [(i.key, str(i.value)) for i in items] + stray
                       + [(k, s) for k, v in values.items() if isinstance(v, list) for s in v])
        if loop:
            errors.append(FormatError("runaway", loop))
        if self.listed:
            missing = [name for name in self.spec.target_names if name not in values]
            if missing:
                errors.append(FormatError("missing_target", f"nothing for {', '.join(missing)}"))
        return Parsed(self._family.fill(values), errors, stray)

    def _text_items(self, text: str, errors: list[FormatError], soft: bool) -> list[_Item]:
        if self.reasoning != "none" and self.open in text:
            text = self._mask_rationales(text)
        if self.design.format == "lines":
            chunks = [line.strip() for line in text.split("\n")]
        else:
            if self.end and text.endswith(self.end):
                text = text[: -len(self.end)]
            chunks = [c.strip() for c in self._pairs_re.split(text)]
        items = []
        for chunk in chunks:
            if not chunk:
                continue
            key, sep, value = chunk.partition(self.kv)
            if not sep and soft:
                for alt in self._soft_kv:
                    key, sep, value = chunk.partition(alt)
                    if sep:
                        break
            if not sep:
                errors.append(FormatError("unsplittable", f"no '{self.kv.strip()}' in '{chunk[:40]}'"))
                continue
            items.append(self._unmask(key.strip(), value.strip(), errors))
        return items

    def _mask_rationales(self, text: str) -> str:
        """Each `open … close` on one line becomes MASK, in one pass: a regex `open.*?close` takes
        quadratic time on outputs with many opens and no close (44 s for 80 kB). The next close and
        the next newline are looked up again only once an open lies past them (None: not yet looked
        up; -1 is str.find's "none left")."""
        parts, at, search = [], 0, 0
        close_at: int | None = None
        newline_at: int | None = None
        while (start := text.find(self.open, search)) != -1:
            body = start + len(self.open)
            if close_at is None or -1 < close_at < body:
                close_at = text.find(self.close, body)
            if close_at == -1:
                break
            if newline_at is None or -1 < newline_at < body:
                newline_at = text.find("\n", body)
            if -1 < newline_at < close_at:  # no close on this line: the next open can only be on a later one
                search = newline_at + 1
                continue
            parts += [text[at:start], MASK]
            at = search = close_at + len(self.close)
        parts.append(text[at:])
        return "".join(parts)

    def _unmask(self, key: str, value: str, errors: list[FormatError]) -> _Item:
        if self.reasoning == "none":
            return _Item(key, value)
        placed = value.startswith(MASK) if self.reasoning == "cot" else value.endswith(MASK)
        if not placed or value.count(MASK) != 1:
            errors.append(FormatError("missing_rationale", f"'{key}' has no rationale where the design puts it"))
        return _Item(key, value.replace(MASK, "").strip())

    def _json_items(self, text: str, errors: list[FormatError], soft: bool) -> list[_Item]:
        lines = [line for line in map(str.strip, text.split("\n")) if line]
        if soft and len(lines) == 1 and lines[0].startswith("[["):
            decoded = _loads(lines[0])
            if isinstance(decoded, list):
                lines = [json.dumps(x, ensure_ascii=False) for x in decoded]
        heuristic = self.design.format == "heuristic"
        tkey, vkey, rkey, needs_rationale = self.tkey, self.vkey, self.rkey, self.reasoning != "none"
        items = []
        # One decode per line: joining lines into one JSON array would be faster, but an output
        # whose lines are not each a JSON value could then be read with items shifted between lines.
        for line in lines:
            obj = _loads(line)
            if heuristic:
                if obj == []:
                    continue
                if isinstance(obj, list) and len(obj) == 2 and all(isinstance(x, (str, int)) for x in obj):
                    items.append(_Item(str(obj[0]).strip(), [str(obj[1])]))
                    continue
            elif type(obj) is dict and tkey in obj and vkey in obj:
                key = obj[tkey]
                if type(key) is str or type(key) is int:
                    if needs_rationale and type(obj.get(rkey)) is not str:
                        errors.append(FormatError("missing_rationale", f"'{key}' has no '{rkey}'"))
                    items.append(_Item(str(key).strip(), obj[vkey]))
                    continue
            errors.append(FormatError("invalid_json", f"not an item of this design: '{line[:40]}'"))
        return items


def runaway(text: str, atoms: list[tuple[str, str]]) -> str | None:
    """Why an answer is degenerate (None when it is not): an item (a key and value, or a type and span) given
    RUNAWAY_REPEATS times or more, or a text that ends in RUNAWAY_REPEATS copies of one unit of 2 or more
    characters, the end of a loop that generation stopped wherever the token budget ran out."""
    if atoms:
        (key, value), count = Counter(atoms).most_common(1)[0]
        if count >= RUNAWAY_REPEATS:
            return f"'{key}: {value[:30]}' {count} times"
    n = len(text)
    for unit in range(2, min(LONGEST_LOOP, n // RUNAWAY_REPEATS) + 1):
        if text[-1] != text[-1 - unit] or text[-2] != text[-2 - unit]:
            continue  # cheap test first: most units fail on the last two characters
        start = n - RUNAWAY_REPEATS * unit
        if text[start + unit:] == text[start:n - unit]:
            return f"ends in a loop of '{text[n - unit:][:30]}' ({RUNAWAY_REPEATS}+ times)"
    return None


_scan = json.scanner.make_scanner(json.JSONDecoder())  # the C scanner, without json.loads' wrapping


def _loads(line: str) -> object:
    """The one JSON value that is the whole (stripped) line, or None: 3x faster than json.loads."""
    try:
        value, end = _scan(line, 0)
    except (StopIteration, ValueError, RecursionError):  # RecursionError: nesting deeper than Python's stack
        return None
    return value if end == len(line) else None


class _Classification:
    """Fixed targets, one label each (MASA)."""

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

    def _by_keyword(self, key: str) -> str | None:
        """Soft parsing: the target whose keyword the key contains (食品 -> 食品评价)."""
        for name, words in self.keywords:
            if any(w in key for w in words):
                return name
        return None

    def read(self, items: list[_Item], soft: bool) -> Reading:
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


class _Extraction:
    """Fixed types, zero or more spans each (ED, NER)."""

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

    def read(self, items: list[_Item], soft: bool) -> Reading:
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


@lru_cache(maxsize=1024)
def get_codec(spec: TaskSpec, design: Design) -> Codec:
    return Codec(spec, design)
