"""`sde train` (entry point `train`) and `python -m sde_train` / `torchrun -m sde_train`."""
from __future__ import annotations

import argparse
import json
import os
import sys

DESCRIPTION = "LoRA-tune a model on one design variant of an exported SDE dataset"


def register(commands: argparse._SubParsersAction) -> None:
    """Add `sde train`; torch and transformers are imported only when it runs."""
    from sde_train.config import add_train_arguments

    parser = commands.add_parser("train", help=DESCRIPTION, description=DESCRIPTION)
    add_train_arguments(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, extra: list[str] | None = None) -> int:
    from sde_train.errors import TrainError

    try:
        from sde_train.config import config_from_args
        from sde_train.trainer import train

        summary = train(config_from_args(args))
    except TrainError as err:
        print(f"sde train: error: {err}", file=sys.stderr)
        return 2
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps(summary, ensure_ascii=False))
    return 0


def main(argv: list[str] | None = None) -> int:
    from sde_train.config import add_train_arguments

    parser = argparse.ArgumentParser(prog="python -m sde_train", description=DESCRIPTION)
    add_train_arguments(parser)
    return run(parser.parse_args(argv))
