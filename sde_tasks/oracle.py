"""A perfect answer scores perfectly: each task's gold completions, scored as model outputs.

For every lm-eval task (built-in, or a user's spec and data), every design and every split, the
gold completion of each document goes through the task's own `process_results` path (codec,
per-document items, corpus aggregation). Anything short of 0 format errors and 1.0 on every
metric is a bug, except the paper's ED rule (sde_tasks/tasks/README.md). Run it on everything:

    python -m sde_tasks.oracle [--designs grid] [--task-spec FILE.yaml --data DIR]
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from sde_datagen.data import bundled_dir
from sde_datagen.design import Design, resolve_designs
from sde_datagen.errors import UserError
from sde_datagen.export import read_splits
from sde_datagen.records import GoldRecord
from sde_datagen.spec import TaskSpec
from sde_datagen.tasks import get_task, load_task
from sde_tasks.scoring import aggregate


@dataclass(frozen=True)
class OracleTask:
    """One lm-eval task's spec and gold splits, as its documents are built."""

    name: str  # the lm-eval task, e.g. sde_masa_ood
    spec: TaskSpec
    task: str  # the documents' `task` column
    domain: str | None
    out_of_domain: bool
    splits: dict[str, list[GoldRecord]]  # train, validation, test


def builtin_tasks() -> list[OracleTask]:
    """The installed task pack's tasks, with every bundled split."""
    from sde_tasks.board.installed import installed_tasks

    found = []
    for name, installed in installed_tasks().items():
        kwargs = installed.dataset_kwargs
        spec = load_task(kwargs["sde_task"], kwargs.get("sde_domain"))
        splits = {s.name: s.records for s in read_splits(spec, bundled_dir(kwargs["sde_task"]))}
        found.append(OracleTask(name, spec, kwargs["sde_task"], kwargs.get("sde_domain"),
                                bool(kwargs.get("sde_out_of_domain")), splits))
    return found


def user_tasks(spec_path: Path, data_dir: Path) -> list[OracleTask]:
    """The tasks `sde eval make-task` writes for a user's spec, with every split of its data."""
    task = get_task(str(spec_path))
    found = []
    for name, domain, ood in zip(task.lm_eval_tasks, task.domain_pair, (False, True)):
        spec = task.spec(domain)
        splits = {s.name: s.records for s in read_splits(spec, data_dir)}
        found.append(OracleTask(name, spec, spec.name, domain, ood, splits))
    return found


def oracle_items(task: OracleTask, design: Design, records: Sequence[GoldRecord]) -> list[dict]:
    """Per-document metric items of the gold completions, through the lm-eval hooks' own functions."""
    from sde_tasks.tasks.utils import render_docs, score_doc

    docs = render_docs(task.spec, task.task, task.domain, records, design)
    return [score_doc(task.spec, doc, doc["completion"]) for doc in docs]


def designs_of(task: OracleTask, designs: str) -> list[Design]:
    """The designs the task accepts (no No-Inst out of domain)."""
    return [d for d in resolve_designs(designs) if not d.problems(task.spec.family)
            and (d.goes_out_of_domain or not task.out_of_domain)]


def oracle_rows(tasks: Sequence[OracleTask], designs: str = "grid") -> Iterator[dict]:
    """One row per (task, design, split): the corpus metrics of the gold completions and n."""
    from tqdm import tqdm

    work = [(t, d) for t in tasks for d in designs_of(t, designs)]
    for task, design in tqdm(work, desc="oracle", unit="design", disable=len(work) < 20):
        for split, records in task.splits.items():
            items = oracle_items(task, design, records)
            yield {"task": task.name, "design": design.id, "split": split,
                   **aggregate(items, task.spec), "n": len(items)}


def imperfect(row: dict) -> dict[str, float]:
    """The metrics of a row that a perfect answer missed."""
    return {k: v for k, v in row.items()
            if isinstance(v, float) and (v != 0.0 if k == "format_error_rate" else v != 1.0)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sde_tasks.oracle", description=__doc__.split("\n\n")[0])
    parser.add_argument("--designs", default="grid", help="presets, variant ids or sets (default: grid)")
    parser.add_argument("--task-spec", type=Path, help="also a user's task (needs --data)")
    parser.add_argument("--data", type=Path)
    args = parser.parse_args(argv)
    try:
        tasks = builtin_tasks() + (user_tasks(args.task_spec, args.data) if args.task_spec else [])
        rows = list(oracle_rows(tasks, args.designs))
    except UserError as err:
        print(f"oracle: error: {err}", file=sys.stderr)
        return 2
    print(f"{'task':<16} {'split':<11} {'designs':>7} {'docs':>6}  imperfect (design: metric = value)")
    for task in tasks:
        for split in task.splits:
            mine = [r for r in rows if r["task"] == task.name and r["split"] == split]
            bad = [r for r in mine if imperfect(r)]
            print(f"{task.name:<16} {split:<11} {len(mine):>7} {mine[0]['n']:>6}  "
                  + ("none" if not bad else f"{len(bad)} designs"))
            for row in bad:
                print(f"    {row['design']}: " + ", ".join(f"{k} = {v:.4f}" for k, v in imperfect(row).items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
