"""One scoring path for lm-eval, `sde score` and the leaderboard.

Output text -> the design's codec (soft parsing, SDE.md) -> per-document metric items -> corpus-level
aggregation (sde_tasks.metrics). lm-eval's `process_results` calls `doc_items`; `sde score` and
the leaderboard call `score_texts`, so a metric has one definition and one name everywhere. A task
is a built-in name (masa, ed, ner) or the path of a user's YAML task spec; both score the same way.
"""
from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from importlib import import_module
from pathlib import Path
from typing import Any

import yaml

from sde_datagen.codecs import Codec, Parsed, get_codec
from sde_datagen.design import Design, resolve_design
from sde_datagen.errors import UserError
from sde_datagen.spec import TaskSpec, load_spec_yaml
from sde_datagen.tasks import load_task
from sde_tasks import metrics as m
from sde_tasks.docstats import DocStats, from_items

TASKS = ("masa", "ed", "ner")
# The paper's counting rule of each built-in extraction task; a user's extraction task uses the
# multiset rule (NER's), which scores repeated gold items exactly.
EXTRACTION_COUNTS = {"ed": m.ed_counts, "ner": m.ner_counts}
USER_EXTRACTION_COUNTS = m.ner_counts
PARSE_MODE = "soft"  # the paper scores what lenient parsing recovers; errors still follow the strict format
TASK_NAME = re.compile(r"[a-z0-9_]+")  # a user task's name makes the lm-eval task sde_<name>


class GoldTextError(UserError):
    """A target text that does not parse in the design's format; `row` is 1-based."""

    def __init__(self, row: int, reason: str):
        self.row, self.reason = row, reason
        super().__init__(f"row {row}: {reason}")


def doc_items(spec: TaskSpec, gold: Mapping[str, Any], parsed: Parsed) -> dict[str, Any]:
    """Per-document items, one per metric name, for the aggregations of sde_tasks.metrics."""
    error = 1 if parsed.errors else 0
    if spec.family == "classification":
        pairs = m.classification_item(gold, parsed.targets, spec.absent_label)
        return {"kappa": pairs, "accuracy": pairs, "exact_match": pairs, "format_error_rate": error}
    counts = EXTRACTION_COUNTS.get(spec.name, USER_EXTRACTION_COUNTS)  # user specs never take a built-in name
    gold_pairs = m.extraction_pairs(gold)
    # Items of unknown types are predictions too: they can only be false positives.
    pred_pairs = m.extraction_pairs(parsed.targets) + m.extraction_pairs({t: [s] for t, s in parsed.stray})
    hard, soft = counts(gold_pairs, pred_pairs), counts(gold_pairs, pred_pairs, soft=True)
    return {
        "precision": hard, "recall": hard, "f1": hard,
        "soft_precision": soft, "soft_recall": soft, "soft_f1": soft,
        "format_error_rate": error,
    }


def aggregate(items: Sequence[Mapping[str, Any]], spec: TaskSpec | None = None) -> dict[str, float]:
    """Corpus-level value of every metric in the items (the same functions lm-eval aggregates with).

    `spec` gives a classification task's label order to kappa; without it, MASA's.
    """
    if not items:
        return {}
    functions = m.aggregations(spec.label_ids) if spec is not None and spec.labels else m.AGGREGATIONS
    return {name: functions[name]([item[name] for item in items]) for name in items[0]}


def user_spec(path: str | Path, domain: str | None = None) -> TaskSpec:
    """A user's YAML task spec, checked for what scoring and lm-eval need of its name; loaded once per file."""
    path = Path(path)
    try:
        stat = path.stat()
    except OSError:
        raise UserError(f"{path}: task spec not found") from None
    return _user_spec(str(path.resolve()), stat.st_mtime_ns, stat.st_size, domain)


@lru_cache(maxsize=64)
def _user_spec(path: str, mtime_ns: int, size: int, domain: str | None) -> TaskSpec:
    spec = load_spec_yaml(path, domain)
    if spec.name in TASKS:
        raise UserError(f"{path}: field 'name': '{spec.name}' is a built-in task; give your task another name")
    if not TASK_NAME.fullmatch(spec.name):
        raise UserError(f"{path}: field 'name': '{spec.name}' must be lower-case letters, digits and underscores "
                        f"(it names the lm-eval task sde_<name>)")
    return spec


def task_spec(task: str, domain: str | None = None) -> TaskSpec:
    """A built-in task by name, or a user's task by the path of its YAML spec."""
    if task in TASKS:
        return load_task(task, domain)
    if task.endswith((".yaml", ".yml")):
        return user_spec(task, domain)
    raise UserError(f"unknown task '{task}' (tasks: {', '.join(TASKS)}, or the path of a YAML task spec)")


@lru_cache(maxsize=None)
def task_domains(task: str) -> tuple[str | None, ...]:
    """The task's named domains (MASA: D1, D2, D1-paper), tried in order to find a target's aspects."""
    if task in TASKS:
        declared = getattr(import_module(f"sde_datagen.tasks.{task}"), "SPEC", {}).get("domains", {})
    else:
        task_spec(task)  # validates the spec, so its domains are a mapping
        declared = yaml.safe_load(Path(task).read_text(encoding="utf-8")).get("domains", {})
    return tuple(declared) or (None,)


def _gold_codec(task: str, design: Design, target: str, domain: str | None = None) -> tuple[Codec, Parsed]:
    """The codec whose target list is the one the gold text names, and the strict parse of it.

    Extraction tasks have one type list. For MASA the aspect list is the one in the target: the
    first domain (D1, D2, D1-paper) under which the target parses without a format error, unless
    `domain` names it (needed where a design lists only present aspects: the target cannot tell).
    """
    first: tuple[Codec, Parsed] | None = None
    for domain in (domain,) if domain else task_domains(task):
        codec = get_codec(task_spec(task, domain), design)
        parsed = codec.parse(target, "strict")
        if parsed.ok:
            return codec, parsed
        first = first or (codec, parsed)
    assert first is not None
    detail = "; ".join(f"{e.kind}: {e.detail}" for e in first[1].errors)
    raise ValueError(f"the target is not in design {design.id}'s format ({detail})")


def score_texts(
    task: str, design: str, predictions: Iterable[str], targets: Iterable[str], domain: str | None = None
) -> dict[str, float]:
    """Metrics of model outputs against gold targets, both text in `design`'s format.

    `task` is a built-in task or the path of a user's YAML task spec. The scoring function of
    `sde score` (targets = the gold completions). An unreadable target raises GoldTextError naming its 1-based row.
    """
    spec, items = score_items(task, design, predictions, targets, domain)
    return {**aggregate(items, spec), "n": len(items)}


def score_items(task: str, design: str, predictions: Iterable[str], targets: Iterable[str],
                domain: str | None = None) -> tuple[TaskSpec, list[dict[str, Any]]]:
    """The task's spec and the per-document metric items of model outputs (see `score_texts`)."""
    spec = task_spec(task)
    resolved = resolve_design(design, spec.family)
    items = []
    for row, (prediction, target) in enumerate(_pairs(predictions, targets), start=1):
        try:
            codec, gold = _gold_codec(task, resolved, target, domain)
        except ValueError as err:
            raise GoldTextError(row, str(err)) from None
        items.append(doc_items(codec.spec, gold.targets, codec.parse(prediction, PARSE_MODE)))
    return spec, items


def doc_stats(items: Sequence[Mapping[str, Any]], spec: TaskSpec) -> DocStats:
    """Per-document statistics of items, with a classification task's own label order."""
    return from_items(items, spec.label_ids if spec.labels else m.KAPPA_LABELS)


def _pairs(predictions: Iterable[str], targets: Iterable[str]) -> Iterable[tuple[str, str]]:
    try:
        yield from zip(predictions, targets, strict=True)
    except ValueError:
        raise UserError("predictions and targets differ in length") from None


def gold_json(targets: Mapping[str, Any]) -> str:
    """The structured gold as stored in a document's `target` column."""
    return json.dumps(targets, ensure_ascii=False)
