"""Task specs: a task declared as data; its `family` (sde_datagen.families) says what kind of answer it wants.

*classification*: a fixed list of targets, each given one label from a vocabulary (MASA).
*extraction*: a fixed list of types, each given zero or more text spans (ED, NER).
Built-in tasks and a user's YAML file go through the same `spec_from_dict`, so a new task gets
everything the built-in ones get.
"""
from __future__ import annotations

import string
from dataclasses import dataclass, field
from typing import Any, Mapping

from sde_datagen.errors import UserError
from sde_files.typed import expected, shown, unknown_key

PUNCTUATION = {  # per language: key/value, between pairs, between spans, at the end; instruction lists and legends
    "zh": {"kv": "：", "pairs": "，", "spans": "、", "end": "。", "list": "、", "legend": "{code}（{text}）"},
    "en": {"kv": ": ", "pairs": "; ", "spans": ", ", "end": "", "list": ", ", "legend": "{code} ({text})"},
}
RATIONALE = {
    "zh": {"open": "（理由：", "close": "）", "close_alt": ")", "gap": "", "absent": "文本没有提及{target}。", "fallback": "文本整体上涉及{target}。"},
    "en": {"open": "[reason: ", "close": "]", "close_alt": ")", "gap": " ", "absent": "The text mentions no {target}.", "fallback": "The text as a whole concerns {target}."},
}


@dataclass(frozen=True)
class Label:
    id: str  # the value stored in gold records, e.g. "positive"
    text: str  # how a text-label design writes it, e.g. 正面
    code: str  # how a numeric-label design writes it, e.g. "1"
    synonyms: tuple[str, ...] = ()  # also accepted by soft parsing


@dataclass(frozen=True)
class Target:
    name: str  # as written in prompts, outputs and gold records
    keywords: tuple[str, ...] = ()  # soft parsing maps an output key containing one of these to this target
    cues: tuple[str, ...] = ()  # words whose clauses make this target's extractive rationale


@dataclass(frozen=True, eq=False)  # compared and hashed by identity: loaded specs are cached
class TaskSpec:
    name: str
    family: str
    language: str
    targets: tuple[Target, ...]
    instructions: tuple[str, ...]
    input_prefix: str
    punctuation: dict[str, str]
    json_keys: dict[str, str]
    rationale: dict[str, str]
    record: dict[str, str]
    splits: dict[str, str]
    card: dict[str, str]
    labels: tuple[Label, ...] = ()
    absent_label: str = ""
    placeholder: str = "NONE"
    empty_answer: str = "NONE"
    domain: str | None = None
    known_targets: tuple[Target, ...] = field(default=(), compare=False)  # every target the spec knows

    @property
    def target_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.targets)

    @property
    def label_ids(self) -> tuple[str, ...]:
        return tuple(label.id for label in self.labels)


def spec_from_dict(data: Any, families: Mapping[str, Any], domain: str | None = None, source: str = "<spec>") -> TaskSpec:
    """Validate a task declaration and select a domain's targets; errors name the source and field.

    `families` (sde_datagen.families.FAMILIES) are the known families: each checks the spec's labels, and gives
    the default names of the record fields that hold an answer."""
    if not isinstance(data, dict):
        raise UserError(f"{source}: a task spec must be a mapping of fields")
    fields = _Fields(data, source)
    fields.keys(data, _SPEC_KEYS, "")
    name = fields.get(data, "name", "name", str)
    if not name.strip():
        raise fields.fail("name", "must not be empty")
    family_name = fields.get(data, "family", "family", str)
    if family_name not in families:
        raise fields.fail("family", f"must be {' or '.join(families)}, not '{family_name}'")
    family = families[family_name]
    language = fields.get(data, "language", "language", str, "en")
    if language not in PUNCTUATION:
        raise fields.fail("language", f"unknown language '{language}' (known: {', '.join(PUNCTUATION)})")
    known = _targets(fields)
    domain, selected = _domain_targets(fields, name, [t.name for t in known], domain)
    labels = _labels(fields)
    absent = fields.get(data, "absent_label", "absent_label", str, "")
    family.check_spec(labels, absent, fields.fail)
    instructions = tuple(fields.get(data, "instructions", "instructions", list[str]))
    if not instructions:
        raise fields.fail("instructions", "give at least one instruction")
    for i, text in enumerate(instructions):
        _check_placeholders(text, ("targets", "labels"), lambda msg, i=i: fields.fail(f"instructions[{i}]", msg))
    record = fields.texts("record", family.record_fields)
    for key, value in record.items():
        if not value.strip():
            raise fields.fail(f"record.{key}", "must not be empty")
    rationale = fields.texts("rationale", {**RATIONALE[language], "context": "clause"},
                             {"absent": ("target",), "fallback": ("target",)})
    if rationale["context"] not in ("clause", "window"):
        raise fields.fail("rationale.context", f"must be clause or window, not '{rationale['context']}'")
    table = {t.name: t for t in known}
    return TaskSpec(
        name=name,
        family=family_name,
        language=language,
        targets=tuple(table[n] for n in selected),
        known_targets=tuple(known),
        instructions=instructions,
        input_prefix=fields.get(data, "input_prefix", "input_prefix", str, ""),
        punctuation=fields.texts("punctuation", PUNCTUATION[language], {"legend": ("code", "text")}),
        json_keys=fields.texts("json_keys", {"target": "target", "value": "value", "rationale": "rationale"}),
        rationale=rationale,
        record=record,
        splits=fields.texts("splits", {"train": "train", "validation": "valid", "test": "test"}),
        card={k: v for k, v in fields.texts("card", _CARD_FIELDS).items() if v is not None},
        labels=tuple(labels),
        absent_label=absent,
        placeholder=fields.get(data, "placeholder", "placeholder", str, "NONE"),
        empty_answer=fields.get(data, "empty_answer", "empty_answer", str, "NONE"),
        domain=domain,
    )


class _Fields:
    """Typed access to a spec's fields; every error names the source and the field's path."""

    def __init__(self, data: dict, source: str):
        self.data, self.source = data, source

    def fail(self, path: str, message: str) -> UserError:
        return UserError(f"{self.source}: field '{path}': {message}")

    def get(self, container: Any, key: str, path: str, kind: Any, default: Any = None) -> Any:
        """container[key], of the `kind` named; `default` when absent, or an error when no default is given."""
        if not isinstance(container, dict):
            raise self.fail(path.rsplit(".", 1)[0], "must be a mapping")
        if key not in container:
            if default is None:
                raise self.fail(path, "missing")
            return default
        value = container[key]
        problem = expected(value, kind)
        if problem:
            raise self.fail(path, f"expected {problem}, got {shown(value)}")
        return value

    def keys(self, container: Any, allowed: tuple[str, ...], path: str) -> None:
        """A misspelled key would otherwise be ignored silently, and its default used."""
        if not isinstance(container, dict):
            raise self.fail(path or "(top level)", "must be a mapping")
        for key in container:
            if key not in allowed:
                raise self.fail(f"{path}.{key}" if path else str(key), unknown_key(key, allowed))

    def texts(self, key: str, defaults: dict, placeholders: dict[str, tuple[str, ...]] | None = None) -> dict:
        """A mapping of texts over `defaults` (its keys are the allowed ones), placeholders checked."""
        given = self.get(self.data, key, key, dict, {})
        self.keys(given, tuple(defaults), key)
        for name in given:
            self.get(given, name, f"{key}.{name}", str)
        merged = {**defaults, **given}
        for name, allowed in (placeholders or {}).items():
            _check_placeholders(merged[name], allowed, lambda msg, name=name: self.fail(f"{key}.{name}", msg))
        return merged


def _targets(fields: _Fields) -> list[Target]:
    """Every declared target, names unique and non-empty."""
    declared = fields.get(fields.data, "targets", "targets", list)
    if not declared:
        raise fields.fail("targets", "give at least one target")
    known = []
    for i, t in enumerate(declared):
        fields.keys(t, ("name", "keywords", "cues"), f"targets[{i}]")
        target = Target(
            name=fields.get(t, "name", f"targets[{i}].name", str),
            keywords=tuple(fields.get(t, "keywords", f"targets[{i}].keywords", list[str], [])),
            cues=tuple(fields.get(t, "cues", f"targets[{i}].cues", list[str], [])),
        )
        if not target.name.strip():
            raise fields.fail(f"targets[{i}].name", "must not be empty")
        known.append(target)
    names = [t.name for t in known]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise fields.fail("targets", f"names repeat: {', '.join(repeated)}")
    return known


def _domain_targets(fields: _Fields, name: str, names: list[str], domain: str | None) -> tuple[str, list[str]]:
    """The domain chosen (the given one, else the spec's default) and the names of its targets."""
    domains = fields.get(fields.data, "domains", "domains", dict, {})
    for key in domains:
        listed = fields.get(domains, key, f"domains.{key}", list[str])
        missing = [n for n in listed if n not in names]
        if missing:
            raise fields.fail(f"domains.{key}", f"unknown targets {missing}")
        if not listed:
            raise fields.fail(f"domains.{key}", "give at least one target")
    domain = domain or fields.get(fields.data, "default_domain", "default_domain", str, next(iter(domains), "all"))
    if domain == "all":
        return domain, [n for n in names if not _only_in_alternative_domains(n, domains)]
    if domain in domains:
        return domain, domains[domain]
    raise UserError(f"{fields.source}: task '{name}' has no domain '{domain}' (domains: {', '.join([*domains, 'all'])})")


def _labels(fields: _Fields) -> list[Label]:
    """Every declared label; ids, texts and codes each unique and non-empty."""
    labels: list[Label] = []
    for i, lab in enumerate(fields.get(fields.data, "labels", "labels", list, [])):
        fields.keys(lab, ("id", "text", "code", "synonyms"), f"labels[{i}]")
        label = Label(
            id=fields.get(lab, "id", f"labels[{i}].id", str),
            text=fields.get(lab, "text", f"labels[{i}].text", str),
            code=str(fields.get(lab, "code", f"labels[{i}].code", str | float)),
            synonyms=tuple(fields.get(lab, "synonyms", f"labels[{i}].synonyms", list[str], [])),
        )
        for part in ("id", "text", "code"):
            value = getattr(label, part)
            if not value.strip():
                raise fields.fail(f"labels[{i}].{part}", "must not be empty")
            earlier = next((j for j, other in enumerate(labels) if getattr(other, part) == value), None)
            if earlier is not None:
                raise fields.fail(f"labels[{i}].{part}", f"'{value}' repeats labels[{earlier}].{part}")
        labels.append(label)
    return labels


def _check_placeholders(text: str, allowed: tuple[str, ...], fail) -> None:
    """Only `{name}` fields from `allowed` (str.format fills them); `{{`/`}}` are literal braces."""
    try:
        fields = [name for _, name, _, _ in string.Formatter().parse(text) if name is not None]
    except ValueError as err:
        raise fail(f"unbalanced brace in {text!r} ({err}); write {{{{ or }}}} for a literal brace") from None
    names = ", ".join("{" + a + "}" for a in allowed)
    for name in fields:
        if name not in allowed:
            raise fail(f"placeholder {{{name}}} is not one of {names}; write {{{{ or }}}} for a literal brace")


def _only_in_alternative_domains(name: str, domains: dict) -> bool:
    """Targets listed only in alternative domains (named *-paper, e.g. D1-paper) are not part of 'all'."""
    main = [d for d in domains if not str(d).endswith("-paper")]
    return bool(main) and not any(name in domains[d] for d in main)


_SPEC_KEYS = (
    "name", "family", "language", "targets", "domains", "default_domain", "labels", "absent_label", "instructions",
    "input_prefix", "punctuation", "json_keys", "rationale", "record", "splits", "card", "placeholder", "empty_answer",
)
_CARD_FIELDS: dict = dict.fromkeys(("pretty_name", "language", "license", "license_note", "citation"))  # no defaults
