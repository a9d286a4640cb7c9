"""`sde data …`, registered with the `sde` dispatcher (sde_datagen.main); `python -m sde_datagen.cli` runs `sde`."""
from __future__ import annotations

import argparse
import sys

from sde_datagen.main import main


def register(commands: argparse._SubParsersAction) -> None:
    """Add `sde data …` (entry point `data`)."""
    from sde_datagen.commands import add_data_commands

    add_data_commands(commands)


if __name__ == "__main__":
    sys.exit(main())
