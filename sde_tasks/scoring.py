"""One scoring path for lm-eval, `sde score` and the leaderboard.

Output text -> the design's codec (soft parsing, SDE.md) -> per-document metric items -> corpus-level
aggregation (sde_tasks.metrics). lm-eval's `process_results` calls `doc_items`; `sde score` and
the leaderboard call `score_texts`, so a metric has one definition and one name everywhere.
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from importlib import import_module
from typing import Any

from sde_datagen.codecs import Codec, Parsed, get_codec
from sde_datagen.design import Design, resolve_design
from sde_datagen.errors import UserError
from sde_datagen.spec import TaskSpec
from sde_datagen.tasks import load_task
from sde_tasks import metrics as m

TASKS = ("masa", "ed", "ner")
EXTRACTION_COUNTS = {"ed": m.ed_counts, "ner": m.ner_counts}
PARSE_MODE = "soft"  # the paper scores what lenient parsing recovers; errors still follow the strict format


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
    try:
        counts = EXTRACTION_COUNTS[spec.name]
    except KeyError:
        raise UserError(f"no scoring rule for extraction task '{spec.name}' (known: ed, ner)") from None
    gold_pairs = m.extraction_pairs(gold)
    # Items of unknown types are predictions too: they can only be false positives.
    pred_pairs = m.extraction_pairs(parsed.targets) + m.extraction_pairs({t: [s] for t, s in parsed.stray})
    hard, soft = counts(gold_pairs, pred_pairs), counts(gold_pairs, pred_pairs, soft=True)
    return {
        "precision": hard, "recall": hard, "f1": hard,
        "soft_precision": soft, "soft_recall": soft, "soft_f1": soft,
        "format_error_rate": error,
    }


def aggregate(items: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """Corpus-level value of every metric in the items (the same functions lm-eval aggregates with)."""
    if not items:
        return {}
    return {name: m.AGGREGATIONS[name]([item[name] for item in items]) for name in items[0]}


@lru_cache(maxsize=None)
def _domains(task: str) -> tuple[str | None, ...]:
    """The task's named domains (MASA: D1, D2, D1-paper), tried in order to find a target's aspects."""
    return tuple(getattr(import_module(f"sde_datagen.tasks.{task}"), "SPEC", {}).get("domains", {})) or (None,)


def _gold_codec(task: str, design: Design, target: str, domain: str | None = None) -> tuple[Codec, Parsed]:
    """The codec whose target list is the one the gold text names, and the strict parse of it.

    Extraction tasks have one type list. For MASA the aspect list is the one in the target: the
    first domain (D1, D2, D1-paper) under which the target parses without a format error, unless
    `domain` names it (needed where a design lists only present aspects: the target cannot tell).
    """
    first: tuple[Codec, Parsed] | None = None
    for domain in (domain,) if domain else _domains(task):
        codec = get_codec(load_task(task, domain), design)
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

    The scoring function the leaderboard calls to recompute metrics from logged samples (targets =
    the samples' `completion`). An unreadable target raises GoldTextError naming its 1-based row.
    """
    if task not in TASKS:
        raise UserError(f"unknown task '{task}' (tasks: {', '.join(TASKS)})")
    resolved = resolve_design(design, load_task(task).family)
    items = []
    for row, (prediction, target) in enumerate(_pairs(predictions, targets), start=1):
        try:
            codec, gold = _gold_codec(task, resolved, target, domain)
        except ValueError as err:
            raise GoldTextError(row, str(err)) from None
        items.append(doc_items(codec.spec, gold.targets, codec.parse(prediction, PARSE_MODE)))
    return {**aggregate(items), "n": len(items)}


def _pairs(predictions: Iterable[str], targets: Iterable[str]) -> Iterable[tuple[str, str]]:
    try:
        yield from zip(predictions, targets, strict=True)
    except ValueError:
        raise UserError("predictions and targets differ in length") from None


def gold_json(targets: Mapping[str, Any]) -> str:
    """The structured gold as stored in a document's `target` column."""
    return json.dumps(targets, ensure_ascii=False)
