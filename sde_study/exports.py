"""The study's training data: one export (dataset repository) per design, written once.

One repository per design, not one for all, so that `--extend` adds designs without rewriting the
data earlier cells were trained on; each is written atomically by sde_datagen's exporter.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from tqdm.auto import tqdm

from sde_datagen.design import Design
from sde_study.plan import Plan

DATA_DIR = "data"


def export_dir(root: Path, design: str) -> Path:
    return root / DATA_DIR / design


def ensure_task_folder(plan: Plan, root: Path) -> None:
    """A user's task gets its lm-eval task folder (sde eval make-task), once."""
    from sde_study.plan import TASKS_DIR

    if plan.task_spec and not (root / TASKS_DIR).is_dir():
        from sde_tasks.make_task import write_task_folder

        write_task_folder(plan.task_spec, plan.data_folder, root / TASKS_DIR)


def ensure_exports(plan: Plan, root: Path) -> None:
    """Export the train split of every design that has no complete export yet."""
    from sde_datagen.export import export_dataset, read_splits

    for stale in (root / DATA_DIR).glob(".*.tmp-*"):  # left by a killed export
        shutil.rmtree(stale, ignore_errors=True)
    missing = [d for d in plan.designs if not (export_dir(root, d) / "README.md").is_file()]
    if not missing:
        return
    spec = plan.resolved_task().spec()
    splits = read_splits(spec, plan.data_folder, plan.train_size, plan.data_seed, wanted=("train",))
    note = (f"Train split: {plan.train_size} records sampled with seed {plan.data_seed}." if plan.train_size else "")
    for design in tqdm(missing, desc="export", unit="design"):
        export_dataset(spec, [Design.from_id(design)], splits, export_dir(root, design), note=note)
