"""Real data slices shipped with the package: full valid/dev and test splits, a 300-record train slice."""
from __future__ import annotations

from pathlib import Path

from sde_datagen.errors import UserError


def bundled_dir(task: str) -> Path:
    path = Path(__file__).parent / task
    if not path.is_dir():
        raise UserError(f"no bundled data for task '{task}'")
    return path
