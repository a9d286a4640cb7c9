"""`sde study run | status | report | submit` (entry point `study`). Heavy imports happen in the handlers."""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from sde_datagen.errors import UserError
from sde_datagen.flags import DEFAULT_TRAIN_SIZE, DESIGNS_HELP, add_task_choice
from sde_study.engines import DTYPES, ENGINES  # standard library only: the CLI stays light
from sde_tasks.rules import PAPER, RULES


RUN_HELP = "export, train and evaluate every (design, seed) of a study; resumable (rerun the same command)"


RACE_HELP = ("the best design at a fraction of the grid: every design with one seed, then one more seed per rung for "
             "the designs the data cannot yet rule out (README: the algorithm); resumable")


def register(commands: argparse._SubParsersAction) -> None:
    study = commands.add_parser("study", help="which sample design should I tune with? a whole design study")
    actions = study.add_subparsers(dest="study_command", required=True, metavar="COMMAND")

    run = actions.add_parser("run", help=RUN_HELP, description=RUN_HELP)
    add_study_arguments(run, analysis=True)
    run.add_argument("--seeds", type=seed_list, default=[0], help="training seeds, comma-separated (default 0)")
    run.set_defaults(handler=_run)

    race = actions.add_parser("race", help=RACE_HELP, description=RACE_HELP)
    add_study_arguments(race, analysis=False)
    race.add_argument("--max-seeds", type=int, default=5, help="seeds per design at most, 2 or more (default 5)")
    race.add_argument("--budget-hours", type=float, help="stop before a rung that would pass this much measured "
                      "training + evaluation time (default: no budget)")
    race.add_argument("--delta", type=float, default=0.0, help="differences smaller than this are ties: the race "
                      "stops when every survivor lies within +-delta of the best (default 0: never)")
    race.add_argument("--futility", type=float, help="stop when no design still in could be separated from the best "
                      "by the last seed, even at this upper confidence bound of its gap; 0: never (default 0.5 for a "
                      "new race; a rerun keeps its race's)")
    race.add_argument("--first-docs", type=int, help="evaluate each new cell on the first N test documents, which "
                      "every look reads, and the finalists' cells on all; 0: every cell on all (default 100 for a new "
                      "race; a rerun keeps its race's)")
    race.add_argument("--rule", choices=RULES, default=PAPER, help="the scoring rule it eliminates by (default "
                      "paper; the report gives the verdict under both)")
    race.set_defaults(handler=_race)

    status = actions.add_parser("status", help="list the work items as done / running / failed / to do, with the "
                                "Slurm array task of each item still in the queue")
    add_folder_argument(status)
    status.set_defaults(handler=_status)

    report = actions.add_parser("report", help="write DIR/REPORT.md and DIR/plots/*.png from the finished items")
    add_folder_argument(report)
    report.set_defaults(handler=_report)

    compare = actions.add_parser("compare", help="do the designs rank the same way across studies? Kendall's W and "
                                 "each pair's direction per task and rule, from the committed files (writes nothing)")
    compare.add_argument("dirs", type=Path, nargs="+", metavar="DIR", help="study folders (a study with several "
                         "tasks, such as MASA in and out of domain, counts each task)")
    compare.set_defaults(handler=_compare)

    submit = actions.add_parser("submit", help="every full-test-set cell -> a leaderboard submission (validated)")
    add_folder_argument(submit)
    submit.add_argument("--board", type=Path, default=Path("leaderboards"),
                        help="board folder holding submissions/ (default: %(default)s)")
    submit.add_argument("--submitter", help="name or handle recorded in each submission (default: the user name)")
    submit.add_argument("--base-model", help="the base model's name on the board (default: the study's --model)")
    submit.set_defaults(handler=_submit)


FOLDER_HELP = "the study folder (study.yaml, results, report; made by `sde study run` or `race`)"


def add_folder_argument(parser: argparse.ArgumentParser) -> None:
    """--out DIR, as every study command takes its folder; the positional DIR of earlier versions still works."""
    parser.add_argument("--out", type=Path, metavar="DIR", help=FOLDER_HELP)
    parser.add_argument("dir", type=Path, nargs="?", help=argparse.SUPPRESS)


def study_folder(args: argparse.Namespace) -> Path:
    """The folder a status, report or submit command names (--out DIR, or DIR as earlier versions took it)."""
    if args.out is not None and args.dir is not None and args.out != args.dir:
        raise UserError(f"two study folders given ({args.dir} and --out {args.out}); give one")
    folder = args.out or args.dir
    if folder is None:
        raise UserError("give the study folder: --out DIR")
    return folder


def add_study_arguments(parser: argparse.ArgumentParser, analysis: bool) -> None:
    """What `sde study run` and `sde study race` share: the model, task, designs, data, evaluation, engine,
    training settings and executor (each command adds how it chooses seeds)."""
    from sde_study.executors import EXECUTORS

    parser.add_argument("--model", required=True, help="base model: a local folder or a Hub id")
    add_task_choice(parser)
    parser.add_argument("--designs", default="one-factor", help=f"{DESIGNS_HELP} (default one-factor)")
    parser.add_argument("--train-size", type=int, help="train records sampled, once for all cells (default: the "
                        f"paper's {DEFAULT_TRAIN_SIZE}, or every record when the train split has fewer)")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help=FOLDER_HELP)
    parser.add_argument("--chat-template", action="store_true", help="train and evaluate with the chat template "
                        "(default: plain prompt + completion)")
    parser.add_argument("--eval-limit", type=int, help="evaluate on the first N test documents (default: full test sets)")
    parser.add_argument("--eval-batch-size", type=int, default=8, help="lm-eval batch size (default 8)")
    parser.add_argument("--max-gen-toks", type=int, help="generated tokens per document at most (default: the task's "
                        "512); a budget just above the longest answer of your designs saves time when a model rambles")
    parser.add_argument("--engine", choices=ENGINES, default="auto",
                        help="what generates the evaluated outputs: vllm (one engine, adapters as LoRA requests; "
                        "several times faster) or hf (transformers + PEFT); auto: vllm where it imports, else hf, "
                        "and a rerun keeps the study's engine (default auto)")
    parser.add_argument("--kv-block", type=int, help="vllm: tokens per KV-cache block; the prefix cache shares whole "
                        "blocks (default 32 for a new study; a rerun keeps its study's)")
    parser.add_argument("--eval-dtype", choices=DTYPES, help="vllm: the base weights' dtype in evaluation; bfloat16 is "
                        "faster on CPUs with AMX and changes some outputs (default auto: the checkpoint's; a rerun "
                        "keeps its study's)")
    parser.add_argument("--runaway-stop", action=argparse.BooleanOptionalAction, help="vllm: stop an answer once it "
                        "is a runaway whatever follows: 20-23%% fewer generated tokens on NER, every strict score the "
                        "same, paper-rule scores not (default off; a rerun keeps its study's)")
    parser.add_argument("--train-config", metavar="FILE.yaml", help="sde train settings (lr, lora_r, epochs, ...; "
                        "default: sde train's, LoRA r 8, 1 epoch, batch 4, lr 1e-4)")
    parser.add_argument("--max-steps", type=int, help="optimizer steps per cell (default: the epochs' steps; overrides "
                        "--train-config's epochs)")
    parser.add_argument("--analysis", action=argparse.BooleanOptionalAction, default=analysis,
                        help=f"PE signals of every design on the untuned model (default {'on' if analysis else 'off'})")
    parser.add_argument("--signal-limit", type=int, help="score the PE signals on the first N test documents (default: "
                        "as the cells); the untuned model often writes to the token budget, so signals cost more per "
                        "document")
    parser.add_argument("--icl-shots", type=int, default=3, help="in-context examples for the PE signal (default 3)")
    parser.add_argument("--ppl-samples", type=int, default=200, help="train rows for the perplexity signals (default 200)")
    parser.add_argument("--extend", action="store_true", help="accept a plan that only adds designs, seeds or analysis")
    parser.add_argument("--executor", choices=EXECUTORS, default="local",
                        help="local: this process; slurm: a submitit job array (per rung, in a race); "
                        "submitit-local: the same on this machine, its workers sharing the cores, each with its own "
                        "GPUs where there are several (default local)")
    parser.add_argument("--workers", type=int, help="array tasks (default: --slurm-array-parallelism, else one per item)")
    parser.add_argument("--nproc-per-node", type=int, default=1, help="training processes per cell (torchrun; default 1)")
    parser.add_argument("--slurm-partition", help="Slurm partition (default: the cluster's default partition)")
    parser.add_argument("--slurm-gpus-per-node", type=int, help="GPUs per array task (default: --nproc-per-node where "
                        "the partition has GPUs, else 0)")
    parser.add_argument("--slurm-time", type=int, help="minutes per array task (default 1440, or the partition's "
                        "time limit when it is shorter)")
    parser.add_argument("--slurm-array-parallelism", type=int, help="array tasks running at once (default: as many "
                        "as the cluster runs)")


def seed_list(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise UserError(f"--seeds {text!r}: expected comma-separated integers, e.g. 0,1,2") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise UserError(f"--seeds {text!r}: give one or more distinct integers")
    return seeds


def plan_request(args: argparse.Namespace):
    """What the command's flags ask the study to be (sde_study.planning checks and builds it)."""
    from dataclasses import fields

    from sde_study.planning import PlanRequest

    return PlanRequest(**{f.name: getattr(args, f.name) for f in fields(PlanRequest)})


def prepare(args: argparse.Namespace, race=None):
    """The study folder ready for its work items, as the command's flags ask."""
    from sde_study.planning import prepare as prepare_folder

    return prepare_folder(args.out, plan_request(args), race)


def executor_options(args: argparse.Namespace):
    from sde_study.executors import ExecutorOptions

    return ExecutorOptions(args.executor, args.workers, args.nproc_per_node, args.slurm_partition,
                           args.slurm_gpus_per_node, args.slurm_time, args.slurm_array_parallelism)


def _run(args: argparse.Namespace, extra: list[str]) -> int:
    from sde_study.executors import execute
    from sde_study.results import collect, to_do

    root: Path = args.out
    options = executor_options(args)
    slurm = options.check()
    plan = prepare(args)
    todo = to_do(root, plan)
    print(f"{root}: {len(plan.items()) - len(todo)} of {len(plan.items())} work item(s) done, {len(todo)} to do")
    outcome = execute(root, todo, options, slurm)
    return conclude(root, plan, collect(root, plan), outcome)


def conclude(root: Path, plan, rows: list[dict], outcome) -> int:
    """Say where the study stands after a run: the report when it is complete, else what keeps it from being."""
    from sde_study.folder import StudyFolder
    from sde_study.results import status_lines

    print(f"wrote {StudyFolder(root).results} ({len(rows)} rows)")
    if outcome.elsewhere:
        print(f"sde study: {len(outcome.elsewhere)} item(s) are run by another worker ({', '.join(outcome.elsewhere)}); "
              f"the study is not complete: `sde study status {root}` follows them, `sde study report {root}` reports "
              "once they are done", file=sys.stderr)
    elif not outcome.failures and rows:
        from sde_study.report import write_report

        print(f"wrote {write_report(root, plan, rows)}")
    if outcome.failures:
        print("\n".join(status_lines(root, plan)), file=sys.stderr)
        print("\n".join(f"sde study: failed: {failure}" for failure in outcome.failures), file=sys.stderr)
        print(f"sde study: {len(outcome.failures)} failure(s), no report written; fix the cause and rerun the same "
              "command (it runs what is not done)", file=sys.stderr)
        return 1
    return 3 if outcome.elsewhere else 0


def _race(args: argparse.Namespace, extra: list[str]) -> int:
    """Check the race's flags, then run it (sde_study.race_folder.run) and say where it stands."""
    from sde_study.executors import execute
    from sde_study.plan import RaceSettings
    from sde_study.race_folder import run

    if args.max_seeds < 2:
        raise UserError("--max-seeds must be at least 2 (a race compares designs from their second seed on)")
    if args.budget_hours is not None and not (0 < args.budget_hours < math.inf):
        raise UserError(f"--budget-hours {args.budget_hours}: give a number of hours more than 0")
    if not 0 <= args.delta < math.inf:
        raise UserError(f"--delta {args.delta}: give a margin of 0 or more")
    if args.futility is not None and not 0 <= args.futility < 1:
        raise UserError(f"--futility {args.futility}: give a confidence from 0 (off) to below 1")
    args.seeds = list(range(args.max_seeds))
    root: Path = args.out
    options = executor_options(args)
    slurm = options.check()
    if args.first_docs is not None and args.first_docs < 0:
        raise UserError(f"--first-docs {args.first_docs}: give a number of documents, or 0 (every cell on all)")
    asked = {name: None if name == "first_docs" and value == 0 else value  # --first-docs 0: every cell on all
             for name, value in (("futility", args.futility), ("first_docs", args.first_docs)) if value is not None}
    plan = prepare(args, RaceSettings(args.max_seeds, args.budget_hours, args.delta, args.rule, **asked))
    for name, value in asked.items():
        if getattr(plan.race, name) != value:
            print(f"{root}: --{name.replace('_', '-')} {value if value is not None else 0} not taken: this race was "
                  f"planned with {name.replace('_', ' ')} {getattr(plan.race, name)}, and a race keeps it (its looks "
                  "were made with it); a new --out races with yours", file=sys.stderr)
    state, rows, outcome = run(root, plan, lambda todo: execute(root, todo, options, slurm))
    print(f"{root}: the race is {'decided: ' + state.decided if state.decided else 'not decided yet'}; "
          f"finalists: {', '.join(state.survivors)}")
    return conclude(root, plan, rows, outcome)


def _status(args: argparse.Namespace, extra: list[str]) -> int:
    from sde_study.plan import require_plan
    from sde_study.queue import queue_notes
    from sde_study.results import status_lines

    folder = study_folder(args)
    plan = require_plan(folder)
    queue, unreachable = queue_notes(folder)
    race, waiting = ([], None)
    if plan.race:
        from sde_study.race_folder import status

        race, waiting = status(folder, plan)
    summary, *items = status_lines(folder, plan, queue, waiting)
    print("\n".join([summary, *race, *items]))
    if unreachable:
        print(f"sde study: {unreachable}", file=sys.stderr)
    return 0


def _report(args: argparse.Namespace, extra: list[str]) -> int:
    from sde_study.plan import require_plan
    from sde_study.report import write_report
    from sde_study.results import collect

    folder = study_folder(args)
    plan = require_plan(folder)
    path = write_report(folder, plan, collect(folder, plan))
    print(f"wrote {path} and {folder / 'plots'}")
    return 0


def _compare(args: argparse.Namespace, extra: list[str]) -> int:
    from sde_study.compare import compare_lines

    print("\n".join(compare_lines(args.dirs)))
    return 0


def _submit(args: argparse.Namespace, extra: list[str]) -> int:
    from sde_study.plan import require_plan
    from sde_study.submit import submit_study

    folder = study_folder(args)
    lines = submit_study(folder, require_plan(folder), args.board, args.submitter, args.base_model)
    print("\n".join(lines))
    return 0 if any(": added " in line for line in lines) else 1
