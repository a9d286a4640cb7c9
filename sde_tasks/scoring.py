"""One scoring path for lm-eval, `sde score` and the leaderboard.

Output text -> the design's codec (soft parsing, SDE.md) -> per-document metric items -> corpus-level
aggregation (sde_datagen.metrics). lm-eval's `process_results` calls `doc_items`; `sde score` and
the leaderboard call `score_texts`, so a metric has one definition and one name everywhere. A task
is a built-in name (masa, ed, ner) or the path of a user's YAML task spec; both score the same way.
"""
from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any


from sde_datagen.codecs import Codec, Parsed, get_codec
from sde_datagen.design import Design, resolve_design
from sde_datagen.errors import UserError
from sde_datagen.families import family_of
from sde_datagen.spec import TaskSpec
from sde_datagen.tasks import Task, get_task
from sde_tasks.docstats import DocStats, from_items
from sde_tasks.logged import answer
from sde_tasks.rules import PAPER, RULES, STRICT  # noqa: F401 (re-exported: scoring's callers name the rules by it)

PARSE_MODE = "soft"  # the paper scores what lenient parsing recovers; errors still follow the strict format
COLLAPSE_SHARE = 0.9  # a run is collapsed when one answer is this share of its outputs while the gold answers vary
# What a collapse most often means, and what undid one here (docs/studies/ed-recipe-smollm2).
COLLAPSE_ADVICE = ("A model that gives the most frequent training answer to every document has learned only that "
                   "answer: train for more steps (epochs), on more records, or at a higher learning rate (on MAVEN ED, "
                   "SmolLM2-135M-Instruct collapsed after 75 steps on 300 sentences, and did not after 300 steps, on "
                   "the same 300 sentences or on 1,200: docs/studies/ed-recipe-smollm2).")


class GoldTextError(UserError):
    """A target text that does not parse in the design's format; `row` is 1-based."""

    def __init__(self, row: int, reason: str):
        self.row, self.reason = row, reason
        super().__init__(f"row {row}: {reason}")


def doc_items(spec: TaskSpec, gold: Mapping[str, Any], parsed: Parsed, rule: str = PAPER) -> dict[str, Any]:
    """Per-document items, one per metric name, for the aggregations of sde_datagen.metrics, under a scoring rule."""
    error = 1 if parsed.errors else 0
    rejected = rule == STRICT and error
    predicted, stray = ({}, []) if rejected else (parsed.targets, parsed.stray)
    return family_of(spec.family).doc_items(spec, gold, predicted, stray, error)


def aggregate(items: Sequence[Mapping[str, Any]], spec: TaskSpec) -> dict[str, float]:
    """Corpus-level value of every metric in the items (the same functions lm-eval aggregates with), with the
    aggregations of the task's family over its own label order."""
    if not items:
        return {}
    functions = family_of(spec.family).aggregations(spec.label_ids)
    return {name: functions[name]([item[name] for item in items]) for name in items[0]}


def _gold_codec(task: Task, design: Design, target: str, domain: str | None = None) -> tuple[Codec, Parsed]:
    """The codec whose target list is the one the gold text names, and the strict parse of it.

    Extraction tasks have one type list. For MASA the aspect list is the one in the target: the
    first domain (D1, D2, D1-paper) under which the target parses without a format error, unless
    `domain` names it (needed where a design lists only present aspects: the target cannot tell).
    """
    first: tuple[Codec, Parsed] | None = None
    for domain in (domain,) if domain else task.domains:
        codec = get_codec(task.spec(domain), design)
        parsed = codec.parse(target, "strict")
        if parsed.ok:
            return codec, parsed
        first = first or (codec, parsed)
    assert first is not None
    detail = "; ".join(f"{e.kind}: {e.detail}" for e in first[1].errors)
    raise ValueError(f"the target is not in design {design.id}'s format ({detail})")


def score_texts(task: str, design: str, predictions: Iterable[str], targets: Iterable[str],
                domain: str | None = None, rule: str = PAPER) -> dict[str, float]:
    """Metrics of model outputs against gold targets, both text in `design`'s format, under `rule`
    (`score_items(...).degeneracy` says how degenerate the outputs are).

    `task` is a built-in task or the path of a user's YAML task spec. The scoring function of
    `sde score` (targets = the gold completions). An unreadable target raises GoldTextError naming its 1-based row.
    """
    scored = score_items(task, design, predictions, targets, domain, rule)
    return {**aggregate(scored.items, scored.spec), "n": len(scored.items)}


@dataclass(frozen=True)
class Degeneracy:
    """How degenerate a run's outputs are: looping answers, and one answer given to (nearly) every document."""

    runaway_rate: float  # share of outputs with a `runaway` format error
    top_answer_share: float  # share of outputs equal to the most common one (whitespace normalised)
    top_answer: str
    collapsed: bool  # top_answer_share >= COLLAPSE_SHARE while the gold answers vary (their top share is below it)

    def as_json(self) -> dict[str, Any]:
        return {"runaway_rate": self.runaway_rate, "collapsed": self.collapsed,
                "top_answer_share": self.top_answer_share}


def degeneracy(predictions: Sequence[str], targets: Sequence[str], parsed: Sequence[Parsed]) -> Degeneracy:
    """Runaway and collapse of one run (outputs, gold texts and the outputs as read, in document order)."""
    def normal(text: object) -> str:
        return " ".join(str(text).split())

    if not predictions:
        return Degeneracy(0.0, 0.0, "", False)
    (top, count), = Counter(map(normal, predictions)).most_common(1)
    (_, gold_count), = Counter(map(normal, targets)).most_common(1)
    share, gold_share = count / len(predictions), gold_count / len(targets)
    runaway = sum(any(e.kind == "runaway" for e in p.errors) for p in parsed) / len(parsed)
    return Degeneracy(runaway, share, top, share >= COLLAPSE_SHARE and gold_share < COLLAPSE_SHARE)


def collapse_note(degeneracy: Degeneracy, targets: Sequence[str]) -> str:
    """A collapsed run in words: its one answer, how often the gold answers are that answer, and what to try."""
    gold = sum(" ".join(t.split()) == degeneracy.top_answer for t in targets) / len(targets)
    shown = degeneracy.top_answer if len(degeneracy.top_answer) <= 60 else degeneracy.top_answer[:57] + "..."
    return (f"collapsed: {degeneracy.top_answer_share:.0%} of the outputs are one answer ({shown!r}), the gold answer "
            f"of {gold:.0%} of the documents. {COLLAPSE_ADVICE}")


def logged_degeneracy(samples: Sequence[Mapping[str, Any]], spec: TaskSpec) -> Degeneracy:
    """Runaway and collapse of one lm-eval run, from its logged samples in document order (each names its design)."""
    codec = get_codec(spec, resolve_design(samples[0]["doc"]["design"], spec.family))
    answers = [answer(s) or "" for s in samples]
    return degeneracy(answers, [s["target"] for s in samples], [codec.parse(a, PARSE_MODE) for a in answers])


@dataclass(frozen=True)
class Scored:
    """One run of outputs scored: the task's spec, the per-document metric items, each output as read."""

    spec: TaskSpec
    items: list[dict[str, Any]]
    parsed: list[Parsed]
    degeneracy: Degeneracy


def score_items(task: str, design: str, predictions: Iterable[str], targets: Iterable[str],
                domain: str | None = None, rule: str = PAPER) -> Scored:
    """The per-document metric items of model outputs under `rule`, and what `score_texts` needs besides."""
    if rule not in RULES:
        raise UserError(f"unknown scoring rule '{rule}' (rules: {', '.join(RULES)})")
    resolved_task = get_task(task)
    spec = resolved_task.spec()
    resolved = resolve_design(design, spec.family)
    items, parsed, texts, golds = [], [], [], []
    for row, (prediction, target) in enumerate(_pairs(predictions, targets), start=1):
        try:
            codec, gold = _gold_codec(resolved_task, resolved, target, domain)
        except ValueError as err:
            raise GoldTextError(row, str(err)) from None
        read = codec.parse(prediction, PARSE_MODE)
        items.append(doc_items(codec.spec, gold.targets, read, rule))
        parsed.append(read)
        texts.append(prediction)
        golds.append(target)
    return Scored(spec, items, parsed, degeneracy(texts, golds, parsed))


def doc_stats(items: Sequence[Mapping[str, Any]], spec: TaskSpec) -> DocStats:
    """Per-document statistics of items, with a classification task's own label order."""
    return from_items(items, spec.family, spec.label_ids, spec.absent_label or None)


def _pairs(predictions: Iterable[str], targets: Iterable[str]) -> Iterable[tuple[str, str]]:
    try:
        yield from zip(predictions, targets, strict=True)
    except ValueError:
        raise UserError("predictions and targets differ in length") from None


def gold_json(targets: Mapping[str, Any]) -> str:
    """The structured gold as stored in a document's `target` column."""
    return json.dumps(targets, ensure_ascii=False)
