"""The `sde` console script: one dispatcher for every package's subcommands.

Subcommands come from the `sde.commands` entry-point group: each package registers its own, so
this dispatcher imports neither sde_train nor sde_tasks by name, and loads only the one asked for.
"""
from __future__ import annotations

import argparse
import sys
from importlib.metadata import entry_points

from sde_datagen.errors import UserError


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="sde", description="Sample Design Engineering toolkit")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    available = {ep.name: ep for ep in entry_points(group="sde.commands")}
    wanted = [argv[0]] if argv and argv[0] in available else sorted(available)
    for name in wanted:
        available[name].load()(commands)
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "accepts_extra", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return int(args.handler(args, extra) or 0)
    except UserError as err:
        print(f"sde: error: {err}", file=sys.stderr)
        return 2


def register(commands: argparse._SubParsersAction) -> None:
    """Add `sde data …` (entry point `data`)."""
    from sde_datagen.commands import add_data_commands

    add_data_commands(commands)


if __name__ == "__main__":
    sys.exit(main())
