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
from functools import lru_cache

from sde_datagen.design import Design
from sde_datagen.families import Reader, family_of
from sde_datagen.parsed import FormatError, Item, Parsed, Targets
from sde_datagen.spec import TaskSpec

MASK = "\x00"  # stands in for a rationale while an item is split
# A runaway answer repeats one item this many times (no gold answer of the bundled data repeats one at all, and
# none of them, in any one-factor design, is taken for a runaway), or ends in this many copies of one unit of
# text: a loop that the token budget cut, often mid-item.
RUNAWAY_REPEATS = 5
LONGEST_LOOP = 200  # characters of the longest repeated unit looked for at an answer's end


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
        self._spans_re = re.compile(r"(?<! )" + re.escape(self.spans_sep))
        self._family: Reader = family_of(spec.family).reader(spec, design.format, design.labels == "numeric",
                                                              self._spans_re)

    # ---------------------------------------------------------------- render
    def render(self, targets: Targets, rationales: dict[str, str] | None = None) -> str:
        items = self._family.items(targets, self.listed)
        if not items:
            return self.empty
        fmt = self.design.format
        if fmt == "heuristic":
            return "\n".join(json.dumps([key, x], ensure_ascii=False)
                             for _, key, value in items for x in self._family.heuristic_values(value))
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
            items: list[Item] = []
        else:
            items = self._items(text, errors, soft)
        values, found_errors, stray = self._family.read(items, soft)
        errors += found_errors
        loop = repeated_item(atoms_of(items, values, stray)) or ends_in_loop(text)
        if loop:
            errors.append(FormatError("runaway", loop))
        if self.listed:
            missing = [name for name in self.spec.target_names if name not in values]
            if missing:
                errors.append(FormatError("missing_target", f"nothing for {', '.join(missing)}"))
        return Parsed(self._family.fill(values), errors, stray)

    def runaway_stop(self, partial: str) -> str | None:
        """The answer to keep when generation may stop at `partial`, a runaway whatever is added to it: the partial
        answer up to its last boundary (the end of an item, or of a span in a list of spans), when that already
        repeats one item or span RUNAWAY_REPEATS times; None when generation must go on. Items and spans only
        accumulate as text is added, so the whole answer would repeat it as often: a format error, as the kept
        answer is, and the strict rule scores both as empty (tests/test_runaway_stop.py checks it on every
        committed output)."""
        kept = partial[:max(self.boundaries(partial), default=0)].strip()
        if not kept:
            return None
        items = self._items(kept, [], False)
        values, _, stray = self._family.read(items, False)
        return kept if repeated_item(atoms_of(items, values, stray)) is not None else None

    def _items(self, text: str, errors: list[FormatError], soft: bool) -> list[Item]:
        """The items of a (stripped, non-empty) answer in the design's format."""
        if self.design.format in ("json", "heuristic"):
            return self._json_items(text, errors, soft)
        return self._text_items(text, errors, soft)

    def boundaries(self, text: str) -> list[int]:
        """Where an item or a span of a list may end in `text`: line breaks, the natural format's separators between
        pairs, and an extraction answer's separators between spans (JSON lists apart: a cut inside one is no JSON)."""
        found = [m.start() for m in re.finditer("\n", text)]
        if self.design.format == "natural":
            found += [m.start() for m in self._pairs_re.finditer(text)]
        if self.spec.family == "extraction" and self.design.format in ("natural", "lines"):
            found += [m.start() for m in self._spans_re.finditer(text)]
        return sorted(found)

    def _text_items(self, text: str, errors: list[FormatError], soft: bool) -> list[Item]:
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

    def _unmask(self, key: str, value: str, errors: list[FormatError]) -> Item:
        if self.reasoning == "none":
            return Item(key, value)
        placed = value.startswith(MASK) if self.reasoning == "cot" else value.endswith(MASK)
        if not placed or value.count(MASK) != 1:
            errors.append(FormatError("missing_rationale", f"'{key}' has no rationale where the design puts it"))
        return Item(key, value.replace(MASK, "").strip())

    def _json_items(self, text: str, errors: list[FormatError], soft: bool) -> list[Item]:
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
                    items.append(self._family.heuristic_item(str(obj[0]).strip(), str(obj[1])))
                    continue
            elif type(obj) is dict and tkey in obj and vkey in obj:
                key = obj[tkey]
                if type(key) is str or type(key) is int:
                    if needs_rationale and type(obj.get(rkey)) is not str:
                        errors.append(FormatError("missing_rationale", f"'{key}' has no '{rkey}'"))
                    items.append(Item(str(key).strip(), obj[vkey]))
                    continue
            errors.append(FormatError("invalid_json", f"not an item of this design: '{line[:40]}'"))
        return items


def atoms_of(items: list[Item], values: dict, stray: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """What an answer may repeat: its items (a key and value, or a type and span), strays, and each span."""
    return ([(i.key, str(i.value)) for i in items] + stray
            + [(k, s) for k, v in values.items() if isinstance(v, list) for s in v])


def repeated_item(atoms: list[tuple[str, str]]) -> str | None:
    """Why an answer is a runaway, when one item is given RUNAWAY_REPEATS times or more (None when none is)."""
    if atoms:
        (key, value), count = Counter(atoms).most_common(1)[0]
        if count >= RUNAWAY_REPEATS:
            return f"'{key}: {value[:30]}' {count} times"
    return None


def ends_in_loop(text: str) -> str | None:
    """Why an answer is a runaway, when it ends in RUNAWAY_REPEATS copies of one unit of 2 or more characters: the
    end of a loop that generation stopped wherever the token budget ran out (None when it does not)."""
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


@lru_cache(maxsize=1024)
def get_codec(spec: TaskSpec, design: Design) -> Codec:
    return Codec(spec, design)
