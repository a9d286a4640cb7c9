"""Task specs: the two task families, declared as data.

*classification*: a fixed list of targets, each given one label from a vocabulary (MASA).
*extraction*: a fixed list of types, each given zero or more text spans (ED, NER).
Built-in tasks and a user's YAML file go through the same `spec_from_dict`, so a new task gets
everything the built-in ones get.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sde_datagen.errors import UserError

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


def load_spec_yaml(path: str | Path, domain: str | None = None) -> TaskSpec:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: task spec not found") from None
    except yaml.YAMLError as err:
        raise UserError(f"{path}: not valid YAML: {err}") from None
    return spec_from_dict(data, domain, source=str(path))


def spec_from_dict(data: Any, domain: str | None = None, source: str = "<spec>") -> TaskSpec:
    """Validate a task declaration and select a domain's targets; errors name the source and field."""

    def get(container: Any, key: str, path: str, kind: str, default: Any = _MISSING) -> Any:
        if not isinstance(container, dict):
            raise UserError(f"{source}: field '{path.rsplit('.', 1)[0]}': must be a mapping")
        if key not in container:
            if default is _MISSING:
                raise UserError(f"{source}: field '{path}': missing")
            return default
        value = container[key]
        if not _KINDS[kind](value):
            raise UserError(f"{source}: field '{path}': must be {kind}")
        return value

    if not isinstance(data, dict):
        raise UserError(f"{source}: a task spec must be a mapping of fields")
    name = get(data, "name", "name", "text")
    family = get(data, "family", "family", "text")
    if family not in ("classification", "extraction"):
        raise UserError(f"{source}: field 'family': must be classification or extraction, not '{family}'")
    language = get(data, "language", "language", "text", "en")
    known = tuple(
        Target(
            name=get(t, "name", f"targets[{i}].name", "text"),
            keywords=tuple(get(t, "keywords", f"targets[{i}].keywords", "a list of texts", [])),
            cues=tuple(get(t, "cues", f"targets[{i}].cues", "a list of texts", [])),
        )
        for i, t in enumerate(get(data, "targets", "targets", "a list"))
    )
    names = [t.name for t in known]
    if len(set(names)) != len(names):
        raise UserError(f"{source}: field 'targets': names repeat")
    domains = get(data, "domains", "domains", "a mapping", {})
    domain = domain or get(data, "default_domain", "default_domain", "text", next(iter(domains), "all"))
    if domain == "all":
        selected = [n for n in names if not _only_in_alternative_domains(n, domains)]
    elif domain in domains:
        selected = get(domains, domain, f"domains.{domain}", "a list of texts")
        missing = [n for n in selected if n not in names]
        if missing:
            raise UserError(f"{source}: field 'domains.{domain}': unknown targets {missing}")
    else:
        raise UserError(f"{source}: task '{name}' has no domain '{domain}' (domains: {', '.join([*domains, 'all'])})")
    labels = tuple(
        Label(
            id=get(lab, "id", f"labels[{i}].id", "text"),
            text=get(lab, "text", f"labels[{i}].text", "text"),
            code=str(get(lab, "code", f"labels[{i}].code", "text or a number")),
            synonyms=tuple(get(lab, "synonyms", f"labels[{i}].synonyms", "a list of texts", [])),
        )
        for i, lab in enumerate(get(data, "labels", "labels", "a list", []))
    )
    absent = get(data, "absent_label", "absent_label", "text", "")
    if family == "classification":
        if not labels:
            raise UserError(f"{source}: field 'labels': a classification task needs labels")
        if absent not in {lab.id for lab in labels}:
            raise UserError(f"{source}: field 'absent_label': '{absent}' is not one of the label ids")
    instructions = tuple(get(data, "instructions", "instructions", "a list of texts"))
    if not instructions:
        raise UserError(f"{source}: field 'instructions': give at least one instruction")
    default_record = {"labels": "labels"} if family == "classification" else {"items": "items", "type": "type", "span": "text"}
    table = {t.name: t for t in known}

    def mapping(key: str, base: dict[str, str]) -> dict[str, str]:
        return {**base, **get(data, key, key, "a mapping", {})}

    return TaskSpec(
        name=name,
        family=family,
        language=language,
        targets=tuple(table[n] for n in selected),
        known_targets=known,
        instructions=instructions,
        input_prefix=get(data, "input_prefix", "input_prefix", "text", ""),
        punctuation=mapping("punctuation", PUNCTUATION.get(language, PUNCTUATION["en"])),
        json_keys=mapping("json_keys", {"target": "target", "value": "value", "rationale": "rationale"}),
        rationale=mapping("rationale", {**RATIONALE.get(language, RATIONALE["en"]), "context": "clause"}),
        record=mapping("record", default_record),
        splits=mapping("splits", {"train": "train", "validation": "valid", "test": "test"}),
        card=mapping("card", {}),
        labels=labels,
        absent_label=absent,
        placeholder=get(data, "placeholder", "placeholder", "text", "NONE"),
        empty_answer=get(data, "empty_answer", "empty_answer", "text", "NONE"),
        domain=domain,
    )


def _only_in_alternative_domains(name: str, domains: dict) -> bool:
    """Targets listed only in alternative domains (named *-paper, e.g. D1-paper) are not part of 'all'."""
    main = [d for d in domains if not str(d).endswith("-paper")]
    return bool(main) and not any(name in domains[d] for d in main)


_MISSING = object()
_KINDS = {
    "text": lambda v: isinstance(v, str),
    "text or a number": lambda v: isinstance(v, (str, int, float)) and not isinstance(v, bool),
    "a list": lambda v: isinstance(v, list),
    "a list of texts": lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
    "a mapping": lambda v: isinstance(v, dict),
}
