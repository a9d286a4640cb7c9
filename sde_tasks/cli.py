"""`sde eval …` (lm_eval with the SDE tasks) and `sde score …` (metrics of any engine's outputs).

Imports stay light: lm_eval and the scoring stack load inside the handlers.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from sde_datagen.errors import RecordError, UserError
from sde_datagen.flags import DESIGN_HELP
from sde_datagen.records import read_jsonl
from sde_datagen.tasks import BUILTIN
from sde_tasks.rules import PAPER, RULES

EVAL_HELP = (
    "run lm_eval with the SDE tasks on its include path; every argument goes to lm_eval "
    "(e.g. sde eval --tasks sde --model hf --model_args pretrained=PATH); "
    "`sde eval tasks-dir` prints the task folder; "
    "`sde eval make-task --task-spec FILE.yaml --data DIR --out DIR` writes the task folder of your own task")


def register_eval(commands: argparse._SubParsersAction) -> None:
    """Add `sde eval` (entry point `eval`). No options of its own, so all of them reach lm_eval."""
    parser = commands.add_parser("eval", help=EVAL_HELP, description=EVAL_HELP, add_help=False)
    parser.set_defaults(handler=run_eval, accepts_extra=True)


def run_eval(args: argparse.Namespace, extra: list[str]) -> int:
    """`sde eval COMMAND …` runs the kit's own eval command; anything else is lm_eval's command line."""
    if extra[:1] and extra[0] in EVAL_COMMANDS:
        return EVAL_COMMANDS[extra[0]](extra[1:])
    return run_lm_eval(extra)


def run_lm_eval(extra: list[str]) -> int:
    """lm_eval's own command line, with the SDE task folder on its include path."""
    import lm_eval.tasks
    from lm_eval.__main__ import cli_evaluate

    from sde_tasks.lm_eval_hook import patch, tasks_dir

    if not patch(lm_eval.tasks.TaskManager, respect_env=False):
        extra = ["--include_path", str(tasks_dir()), *extra]
    sys.argv = ["lm_eval", *extra]
    try:
        cli_evaluate()
    except SystemExit as done:
        return done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
    return 0


def run_tasks_dir(argv: list[str]) -> int:
    """`sde eval tasks-dir`: the SDE task folder, for lm_eval --include_path."""
    argparse.ArgumentParser(prog="sde eval tasks-dir", description=run_tasks_dir.__doc__).parse_args(argv)
    from sde_tasks.lm_eval_hook import tasks_dir

    print(tasks_dir())
    return 0


def run_make_task(argv: list[str]) -> int:
    """`sde eval make-task`: an lm-eval task folder for a task declared in YAML."""
    parser = argparse.ArgumentParser(
        prog="sde eval make-task",
        description="Write an lm-eval task folder (task sde_<name>, and sde_<name>_ood when the spec declares "
                    "domains) for a task declared in YAML; run it with lm_eval --include_path OUT --tasks sde_<name>.")
    parser.add_argument("--task-spec", required=True, type=Path, metavar="FILE.yaml", help="the task spec (see README)")
    parser.add_argument("--data", required=True, type=Path, metavar="DIR",
                        help="folder with test.jsonl, and valid.jsonl or dev.jsonl for few-shot examples")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="the task folder to write")
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    args = parser.parse_args(argv)
    from sde_tasks.make_task import write_task_folder

    names = write_task_folder(args.task_spec, args.data, args.out, overwrite=args.overwrite)
    print(f"wrote {args.out}: lm-eval tasks {', '.join(names)} "
          f"(lm_eval --include_path {args.out} --tasks {names[0]} …)")
    return 0


EVAL_COMMANDS = {"tasks-dir": run_tasks_dir, "make-task": run_make_task}  # `sde eval`'s own; the rest is lm_eval's


def register_score(commands: argparse._SubParsersAction) -> None:
    """Add `sde score` (entry point `score`)."""
    parser = commands.add_parser(
        "score", help="score model outputs against gold targets (JSONL rows with prediction and target text)",
        description="Prints the task's metrics as JSON. Each row of FILE holds `prediction` and `target`, "
                    "both text in the design's output format; for MASA the aspect list is the one the target names.")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--task", choices=BUILTIN, help="a built-in task")
    which.add_argument("--task-spec", metavar="FILE.yaml", help="a task declared in YAML (see README)")
    parser.add_argument("--design", required=True, help=DESIGN_HELP)
    parser.add_argument("--domain", help="target list (MASA: D1, D2, D1-paper, all); default: the first under which each "
                        "target parses (give it for designs that list only present aspects)")
    parser.add_argument("--rule", choices=RULES, default=PAPER,
                        help="how an answer with a format error is scored: paper (with what soft parsing recovers, the "
                        "authors' rule; default) or strict (as an empty prediction)")
    parser.add_argument("--ci", action="store_true",
                        help="add <metric>_ci: the 95%% bootstrap confidence interval of every metric")
    parser.add_argument("--baseline", type=Path, metavar="B.jsonl",
                        help="compare FILE with another engine's or model's outputs on the same documents (same "
                             "targets in the same order): adds 'comparison', one paired test per metric")
    parser.add_argument("file", type=Path, metavar="FILE.jsonl")
    parser.set_defaults(handler=run_score)


def read_rows(path: Path) -> tuple[list[str], list[str], list[int]]:
    """Predictions, targets and line numbers of a JSONL file; a malformed row raises RecordError."""
    predictions, targets, numbers = [], [], []
    for number, row in read_jsonl(path):
        for field in ("prediction", "target"):
            if not isinstance(row.get(field), str):
                raise RecordError(path, number, field, "missing or not a string")
        predictions.append(row["prediction"])
        targets.append(row["target"])
        numbers.append(number)
    if not targets:
        raise UserError(f"{path}: no rows to score")
    return predictions, targets, numbers


def run_score(args: argparse.Namespace, extra: list[str]) -> int:
    from sde_tasks.scoring import aggregate, doc_stats

    task = args.task or args.task_spec
    rows = read_rows(args.file)
    scored = _scored(args.file, rows, task, args.design, args.domain, args.rule)
    result: dict = {**aggregate(scored.items, scored.spec), "n": len(scored.items), "rule": args.rule,
                    **scored.degeneracy.as_json()}
    if args.ci or args.baseline:
        from sde_tasks import significance

        stats = doc_stats(scored.items, scored.spec)
    if args.ci:
        for metric, (lo, hi) in significance.confidence_intervals([stats]).items():
            result[f"{metric}_ci"] = [lo, hi]
    if args.baseline:
        base_rows = read_rows(args.baseline)
        _same_targets(args.file, rows, args.baseline, base_rows)
        base = _scored(args.baseline, base_rows, task, args.design, args.domain, args.rule)
        result["comparison"] = [c.as_json() for c in
                                significance.compare_runs([stats], [doc_stats(base.items, base.spec)])]
    print(json.dumps(result, ensure_ascii=False))
    if scored.degeneracy.collapsed:
        from sde_tasks.scoring import collapse_note

        print(f"sde score: {collapse_note(scored.degeneracy, rows[1])}", file=sys.stderr)
    return 0


def _scored(path: Path, rows: tuple[list[str], list[str], list[int]], task: str, design: str, domain: str | None,
            rule: str):
    """One outputs file's rows scored under `rule`; an unreadable gold text names its line."""
    from sde_tasks.scoring import GoldTextError, score_items

    predictions, targets, numbers = rows
    try:
        return score_items(task, design, predictions, targets, domain, rule)
    except GoldTextError as err:
        raise RecordError(path, numbers[err.row - 1], "target", err.reason) from None


def _same_targets(path: Path, rows: tuple, baseline: Path, base_rows: tuple) -> None:
    """Refuse a comparison of outputs on different documents, naming the first row where they part."""
    _, mine, my_lines = rows
    _, theirs, their_lines = base_rows
    for row, (a, b) in enumerate(zip(mine, theirs), start=1):
        if a != b:
            raise UserError(f"{path}:{my_lines[row - 1]} and {baseline}:{their_lines[row - 1]}: the targets differ "
                            f"(row {row}); --baseline needs outputs on the same documents in the same order")
    if len(mine) != len(theirs):
        raise UserError(f"{path} has {len(mine)} rows, {baseline} has {len(theirs)}; --baseline needs outputs on the "
                        "same documents in the same order")
