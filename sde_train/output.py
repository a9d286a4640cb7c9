"""The --output folder: refused before any work when it cannot be written or holds another run."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from sde_train.errors import TrainError


def prepare_output(out: Path, checkpoints: Path, has_checkpoint: bool, resume: bool, overwrite: bool,
                   main: bool) -> None:
    """Refuse, before any work, an --output that cannot be written or holds another run's files
    (unless --resume or --overwrite); the folder itself is created only when training writes."""
    if out.exists() and not out.is_dir():
        raise TrainError(f"--output {out}: is a file; give a folder")
    if has_checkpoint and not resume and not overwrite:
        raise TrainError(f"--output {out} holds a checkpoint of an earlier run; pass --resume to continue it, "
                         "--overwrite to start over, or choose another --output")
    if out.is_dir() and not resume and not overwrite:
        found = sorted(p.name for p in out.iterdir())
        if "adapter_config.json" in found:
            raise TrainError(f"--output {out} holds another run's adapter; pass --overwrite to replace it, "
                             "or choose another --output")
        if found:
            shown = ", ".join(found[:5]) + (f", … ({len(found)} in all)" if len(found) > 5 else "")
            raise TrainError(f"--output {out} holds other files ({shown}); pass --overwrite to write into it, "
                             "or choose an empty or new folder")
    existing = next(p for p in (out, *out.parents) if p.exists())
    if not existing.is_dir():
        raise TrainError(f"--output {out}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise TrainError(f"--output {out}: cannot write in {existing} (permission denied)")
    if main and overwrite and not resume:
        shutil.rmtree(checkpoints, ignore_errors=True)  # an earlier run's checkpoints must not be resumed into this one
