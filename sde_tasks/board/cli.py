"""`sde board build|submit|validate` (entry point `board`). Heavy imports happen inside handlers."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

DEFAULT_BOARD = Path("leaderboards")


def register(commands: argparse._SubParsersAction) -> None:
    board = commands.add_parser("board", help="leaderboard: validate and submit lm-eval runs, build tables and page")
    actions = board.add_subparsers(dest="board_command", required=True, metavar="COMMAND")

    def with_board(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
        parser.add_argument("--board", type=Path, default=DEFAULT_BOARD,
                            help="board folder holding submissions/ (default: %(default)s)")
        return parser

    build = with_board(actions.add_parser("build", help="write README.md tables, site/index.html and plots"))
    build.set_defaults(handler=_build)

    submit = with_board(actions.add_parser(
        "submit", help="copy an lm-eval run (--output_path folder, run with --log_samples) into a new submission"))
    submit.add_argument("results_dir", type=Path, metavar="RESULTS_DIR",
                        help="lm-eval --output_path folder (or the model folder inside it) with one results_*.json")
    submit.add_argument("--meta", type=Path, required=True, metavar="META.json",
                        help="submission.json content (schema: `sde board schema`)")
    submit.add_argument("--task-spec", type=Path, action="append", default=[], metavar="FILE.yaml",
                        help="the spec of a task of your own in the run (sde eval make-task); repeat for several")
    submit.set_defaults(handler=_submit)

    validate = with_board(actions.add_parser(
        "validate", help="check submissions (all of the board's when no PATH is given); exit 1 on any failure"))
    validate.add_argument("paths", type=Path, nargs="*", metavar="PATH", help="submission folders")
    validate.set_defaults(handler=_validate)

    rescore = with_board(actions.add_parser(
        "rescore", help="recompute the submissions' metrics from their logged outputs with this version's scorer "
        "(after a scoring fix) and update their results.json"))
    rescore.add_argument("paths", type=Path, nargs="*", metavar="PATH", help="submission folders (default: all)")
    rescore.set_defaults(handler=_rescore)

    schema = actions.add_parser("schema", help="print the JSON Schema of submission.json")
    schema.set_defaults(handler=_schema)


def _build(args: argparse.Namespace, extra: list[str]) -> int:
    from sde_tasks.board.build import build

    start = time.perf_counter()
    readme, page, n = build(args.board)
    print(f"built {n} submission(s) in {time.perf_counter() - start:.2f} s: {readme}, {page}")
    return 0


def _submit(args: argparse.Namespace, extra: list[str]) -> int:
    from sde_tasks.board.submit import submit

    path, failures = submit(args.results_dir, args.meta, args.board, args.task_spec)
    if failures:
        print(f"rejected: {len(failures)} problem(s); nothing was added to {args.board}", file=sys.stderr)
        for failure in failures:
            print(f"  - {failure}", file=sys.stderr)
        return 1
    print(f"added {path}; now run `sde board build` and open a pull request with {path} and the rebuilt board")
    return 0


def _validate(args: argparse.Namespace, extra: list[str]) -> int:
    from sde_tasks.board.validate import validate_board

    report = validate_board(args.board, args.paths or None)
    if not report:
        print(f"no submissions to validate under {args.board}")
        return 0
    bad = 0
    for path, failures in report.items():
        if failures:
            bad += 1
            print(f"FAIL {path}")
            for failure in failures:
                print(f"  - {failure}")
        else:
            print(f"ok   {path}")
    print(f"{len(report) - bad} valid, {bad} invalid")
    return 1 if bad else 0


def _rescore(args: argparse.Namespace, extra: list[str]) -> int:
    from sde_tasks.board.rescore import rescore

    changes = rescore(args.board, args.paths or None)
    print("\n".join(changes) if changes else "every submission already scores as this version scores it")
    return 0


def _schema(args: argparse.Namespace, extra: list[str]) -> int:
    from sde_tasks.board.store import SCHEMA_PATH

    print(SCHEMA_PATH.read_text(encoding="utf-8"), end="")
    return 0
