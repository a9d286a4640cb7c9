"""What stopping runaway answers early would have done to the committed studies, replayed from their samples.

The runaway stop (`--runaway-stop`, sde_study.vllm_model) looks at every answer each CHECK_EVERY generated tokens
and stops it once it is a runaway whatever follows (`Codec.runaway_stop`: an item or span repeated
RUNAWAY_REPEATS times before its last boundary, kept up to there). Here every committed cell's logged outputs are cut where the stop
would have cut them (SmolLM2's tokenizer, the same looks), and each cell is scored again under both rules.
Reported per study: the share of generated tokens the stop saves, the outputs it changes, the largest change of a
cell's strict and paper metric (strict must be 0), and whether the verdict (a race's finalists, a grid's best
design) under each rule stays the same.

    python bench/runaway_stop.py [--model out/models/smollm2]   (the last line is JSON)
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sde_datagen.codecs import get_codec  # noqa: E402
from sde_datagen.design import resolve_design  # noqa: E402
from sde_study.folder import StudyFolder, tuned_key  # noqa: E402
from sde_study.plan import read_plan  # noqa: E402
from sde_study.race import cells_from_rows, decide  # noqa: E402
from sde_study.summary import summarise  # noqa: E402
from sde_study.vllm_model import CHECK_EVERY  # noqa: E402
from sde_tasks.docstats import from_items  # noqa: E402
from sde_tasks.logged import answer  # noqa: E402
from sde_tasks.rules import PAPER, RULES, STRICT  # noqa: E402
from sde_tasks.tasks.utils import score_doc  # noqa: E402


def stopped(text: str, ids: list[int], tokenizer, codec) -> tuple[str, int]:
    """The answer as the runaway stop leaves it, and the generated tokens it saves."""
    if codec.runaway_stop(text) is None:  # a partial answer stops only where the whole one would
        return text, 0
    for look in range(CHECK_EVERY, len(ids), CHECK_EVERY):
        kept = codec.runaway_stop(tokenizer.decode(ids[:look]))
        if kept is not None:
            return kept, len(ids) - look
    return text, 0


def replay_study(study: Path, tokenizer) -> dict | None:
    plan = read_plan(study)
    folder = StudyFolder(study)
    rows = folder.read_rows()
    task_name = plan.lm_eval_tasks[0]
    task = plan.resolved_task()
    committed = folder.read_doc_stats()
    original, changed_stats = dict(committed), {}  # both rescored here: the same scorer on either side
    saved = total = changed = 0
    strict_shift = paper_shift = 0.0
    metric = task.family.primary
    for row in rows:
        if row["kind"] != "tuned" or row["task"] != task_name:
            continue
        samples = folder.read_samples(row["design"], row["seed"], task_name)
        if samples is None:
            return None
        samples = sorted(samples, key=lambda s: s["doc_id"])
        design = resolve_design(row["design"], task.spec().family)
        items, kept = [], []
        for s in samples:
            codec = get_codec(task.spec(s["doc"].get("domain") or None), design)
            text = answer(s) or ""
            ids = tokenizer.encode(text, add_special_tokens=False)
            cut, spared = stopped(text, ids, tokenizer, codec)
            saved += spared
            total += len(ids)
            changed += cut != text
            items.append(score_doc(codec.spec, s["doc"], cut))
            kept.append(score_doc(codec.spec, s["doc"], text))
        spec = task.spec(samples[0]["doc"].get("domain") or None)
        stats, before = (from_items(found, spec.family, spec.label_ids, spec.absent_label or None)
                         for found in (items, kept))
        key = tuned_key(row["design"], row["seed"], task_name)
        original[key], changed_stats[key] = before, stats
        strict_shift = max(strict_shift, abs(stats.under(STRICT).corpus()[metric] - before.under(STRICT).corpus()[metric]))
        paper_shift = max(paper_shift, abs(stats.under(PAPER).corpus()[metric] - before.under(PAPER).corpus()[metric]))
    found = {"study": study.relative_to(REPO).as_posix(), "tokens_saved": round(saved / max(total, 1), 3),
             "outputs_changed": changed, "max_strict_change": strict_shift, "max_paper_change": round(paper_shift, 4)}
    if plan.race is not None:
        for rule in RULES:
            ends = []
            for stats in (original, {**original, **changed_stats}):
                cells = cells_from_rows(rows, stats, task_name)
                settings = replace(plan.race, rule=rule)
                ends.append(sorted(decide(cells, list(plan.designs), settings, metric).survivors))
            found[f"finalists_same_{rule}"] = ends[0] == ends[1]
    else:
        for rule in RULES:
            best = [summarise(rows, plan, stats, None, rule).best for stats in (original, {**original, **changed_stats})]
            found[f"best_same_{rule}"] = best[0] == best[1]
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=str(REPO / "out" / "models" / "smollm2"), help="SmolLM2's folder")
    args = parser.parse_args()
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(args.model)
    studies = sorted(p.parent for p in (REPO / "docs" / "studies").glob("**/study.yaml")
                     if (p.parent / "samples").is_dir())
    found = [r for study in studies if (r := replay_study(study, tokenizer))]
    print(f"| study | generated tokens saved | outputs changed | largest strict change | largest paper change | "
          f"same verdict ({', '.join(RULES)}) |\n|---|---|---|---|---|---|")
    for r in found:
        same = [r.get(f"finalists_same_{rule}", r.get(f"best_same_{rule}")) for rule in RULES]
        print(f"| {r['study']} | {r['tokens_saved']:.1%} | {r['outputs_changed']} | {r['max_strict_change']:.4f} | "
              f"{r['max_paper_change']:.4f} | {', '.join('yes' if s else '**no**' for s in same)} |")
    print(json.dumps(found))


if __name__ == "__main__":
    main()
