"""A perfect answer scores perfectly: gold completions scored as outputs, every task, design and split.

Through the lm-eval hooks' own functions (render_docs, score_doc, aggregate), not lm_eval itself,
so the whole grid stays fast; the full data is `python -m sde_tasks.oracle` (tasks README).
"""
from __future__ import annotations

from dataclasses import replace

from sde_datagen.design import PRESETS
from sde_datagen.records import GoldRecord
from sde_datagen import metrics as m
from sde_datagen.families import FAMILIES
from sde_tasks.oracle import builtin_tasks, designs_of, imperfect, oracle_items, oracle_rows
from sde_tasks.oracle import user_tasks as oracle_tasks_of

HEAD = 12  # records per split in the grid test


def repeated_gold(record: GoldRecord) -> bool:
    """Gold with the same lower-cased (type, span) twice: the paper's ED rule cannot score it 1.0."""
    pairs = m.extraction_pairs(record.targets)
    return len(set(pairs)) < len(pairs)


def test_every_task_design_and_split_scores_perfectly_on_its_gold(user_tasks):
    tasks = builtin_tasks() + [t for spec, data in user_tasks.values() for t in oracle_tasks_of(spec, data)]
    assert {t.name for t in tasks} == {"sde_masa_id", "sde_masa_ood", "sde_ed", "sde_ner",
                                       "sde_hotel", "sde_hotel_ood", "sde_drug_events"}
    trimmed = [replace(t, splits={split: [r for r in records if not (t.task == "ed" and repeated_gold(r))][:HEAD]
                                  for split, records in t.splits.items()}) for t in tasks]
    assert all(set(t.splits) == {"train", "validation", "test"} for t in trimmed)
    rows = list(oracle_rows(trimmed, "grid"))
    per_task = {t.name: len(designs_of(t, "grid")) for t in trimmed}
    assert per_task["sde_masa_id"] == per_task["sde_ner"] == 228  # 216 + 12 heuristic designs in every family
    assert per_task["sde_masa_ood"] == per_task["sde_hotel_ood"] == 228 - 76  # no No-Inst design out of domain
    assert len(rows) == 3 * sum(per_task.values())
    for row in rows:
        family = FAMILIES["classification"].metrics if "kappa" in row else FAMILIES["extraction"].metrics
        assert set(row) == {"task", "design", "split", "n", *family}
    assert [(r["task"], r["design"], r["split"], imperfect(r)) for r in rows if imperfect(r)] == []


def test_repeated_user_spans_score_perfectly_under_the_multiset_rule(user_tasks):
    (task,) = oracle_tasks_of(*user_tasks["extraction"])
    assert any(repeated_gold(r) for r in task.splits["test"])  # Aspirin / aspirin, Nausea / nausea
    items = oracle_items(task, PRESETS["es-sde"], task.splits["test"])
    assert all(item["precision"] == (len(m.extraction_pairs(r.targets)), 0, 0)
               for r, item in zip(task.splits["test"], items))


def test_ed_shortfall_is_exactly_the_papers_rule_on_repeated_gold():
    """Predictions are de-duplicated, gold is not: a repeated gold trigger is one TP, one FP and one FN."""
    (ed,) = [t for t in builtin_tasks() if t.name == "sde_ed"]
    repeated = 0
    for design in (PRESETS["es-sde"], PRESETS["heuristic"]):
        for records in ed.splits.values():
            for record, item in zip(records, oracle_items(ed, design, records)):
                pairs = m.extraction_pairs(record.targets)
                unique = len(set(pairs))
                expected = m.Counts(unique, len(pairs) - unique, len(pairs) - unique)
                assert item["precision"] == expected and item["soft_precision"] == expected
                assert item["format_error_rate"] == 0
                repeated += unique < len(pairs)
    assert repeated > 0
