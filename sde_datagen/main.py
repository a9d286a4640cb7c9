"""The `sde` console script: one dispatcher for every package's subcommands.

Subcommands come from the `sde.commands` entry-point group: each package registers its own, so
this dispatcher imports neither sde_train nor sde_tasks by name, and loads only the one asked for.
"""
from __future__ import annotations

import argparse
import os
import sys
from importlib.metadata import entry_points

from sde_datagen.errors import UserError
from sde_files.allocator import restart_with_tcmalloc


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand; a user's mistake, Ctrl-C or a closed pipe ends it with one line, no traceback.
    From the command line (argv None) it first starts itself again under tcmalloc (sde_files/allocator.py)."""
    if argv is None:
        restart_with_tcmalloc()
    argv = sys.argv[1:] if argv is None else argv
    try:
        parser = argparse.ArgumentParser(prog="sde", description="Sample Design Engineering toolkit")
        commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
        available = {ep.name: ep for ep in entry_points(group="sde.commands")}
        wanted = [argv[0]] if argv and argv[0] in available else sorted(available)
        for name in wanted:
            available[name].load()(commands)
        args, extra = parser.parse_known_args(argv)
        if extra and not getattr(args, "accepts_extra", False):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        code = int(args.handler(args, extra) or 0)
        sys.stdout.flush()  # a closed pipe (`| head`) shows here, inside the handler below
        return code
    except UserError as err:
        print(f"sde: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("sde: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader (e.g. `head`) is gone: stop quietly; stdout goes to devnull so that Python's own
        # flush at exit does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except OSError as err:  # the file system refused: a path the user gave, permissions, a full disk
        where = f"{err.filename}: " if err.filename else ""
        print(f"sde: error: {where}{err.strerror or err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
