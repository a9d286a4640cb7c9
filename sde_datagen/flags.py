"""Flags several `sde` commands share, each with one help text wherever it appears."""
from __future__ import annotations

import argparse

from sde_datagen.tasks import BUILTIN

DEFAULT_TRAIN_SIZE = 500  # train records a study samples unless told: the paper's
DESIGNS_HELP = "presets, variant ids or sets (one-factor, grid), comma-separated"
DESIGN_HELP = "a preset (es-sde, ew-sde, paper-base, heuristic) or a variant id"
INSTRUCTION_HELP = "instruction index: 0 canonical, 1.. paraphrases (default 0)"
PUSH_HELP = "upload to this Hugging Face Hub repository"
PRIVATE_HELP = "create the Hub repository as private"


def add_task_choice(parser: argparse.ArgumentParser) -> None:
    """--task or --task-spec (one of them), and --data."""
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--task", choices=BUILTIN, help="a built-in task")
    which.add_argument("--task-spec", metavar="FILE.yaml", help="a task declared in YAML (see README; needs --data)")
    parser.add_argument("--data", metavar="DIR", help="folder with the task's <split>.jsonl (default: the task's "
                        "bundled data)")
