"""The plan a study command asks for: its request checked, everything that can be before anything is written (flags,
the model folder, designs, the task's data, the trainer's settings), built into a Plan and merged with the folder's."""
from __future__ import annotations

import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

from sde_datagen.errors import UserError
from sde_datagen.flags import DEFAULT_TRAIN_SIZE
from sde_study.engines import VLLMSettings
from sde_study.plan import CELL_SETTINGS, Plan, RaceSettings, merge, read_plan, resolve_plan_designs, write_plan


@dataclass
class PlanRequest:
    """What a `sde study run` or `race` command asks for, typed as its flags parse (defaults: the flags')."""

    model: str
    task: str | None = None
    task_spec: str | None = None
    data: str | None = None
    designs: str = "one-factor"
    seeds: list[int] = field(default_factory=lambda: [0])
    train_size: int | None = None
    chat_template: bool = False
    eval_limit: int | None = None
    eval_batch_size: int = 8
    max_gen_toks: int | None = None
    engine: str = "auto"  # as asked: auto, vllm or hf
    kv_block: int | None = None
    eval_dtype: str | None = None
    runaway_stop: bool | None = None
    train_config: str | None = None
    max_steps: int | None = None
    analysis: bool = True
    signal_limit: int | None = None
    icl_shots: int = 3
    ppl_samples: int = 200
    extend: bool = False


def checked_train_config(config_file: str | None, max_steps: int | None) -> dict:
    """The --train-config settings (validated and typed by sde_train), plus --max-steps."""
    from sde_train.config import TrainConfig, load_yaml, settings_from_mapping
    from sde_train.errors import TrainError

    settings: dict = {}
    if config_file:
        try:
            settings = settings_from_mapping(load_yaml(config_file), config_file)
            TrainConfig(**settings).check_values()
        except TrainError as err:
            raise UserError(f"--train-config: {err}") from None
        fixed = sorted(set(settings) & set(CELL_SETTINGS))
        if fixed:
            raise UserError(f"--train-config {config_file}: {', '.join(fixed)} is set by the study per cell; remove it")
    if max_steps is not None:
        if max_steps < 1:
            raise UserError("--max-steps must be at least 1")
        settings["max_steps"] = max_steps
    return settings


def choose_engine(asked: str, existing: Plan | None) -> str:
    """The engine to evaluate with: `auto` on a study folder keeps the engine its plan was started with."""
    from sde_study.engines import resolve_engine

    if asked == "auto" and existing is not None:
        asked = existing.engine
    engine, note = resolve_engine(asked)
    if note:
        print(note, file=sys.stderr)
    return engine


def vllm_settings(request: PlanRequest, engine: str, existing: Plan | None) -> VLLMSettings | None:
    """The vllm engine's settings: the flags given, the others as the study in the folder has them (a study planned
    before they existed has none, and keeps vLLM's defaults unless a flag is given), or the defaults."""
    given = {name: value for name, value in (("kv_block", request.kv_block), ("dtype", request.eval_dtype),
                                             ("runaway_stop", request.runaway_stop)) if value is not None}
    if engine != "vllm":
        if given:
            raise UserError(f"--kv-block, --eval-dtype and --runaway-stop set the vllm engine; this study evaluates "
                            f"with {engine}")
        return None
    if existing is not None and existing.engine == "vllm" and existing.vllm is None and not given:
        return None
    settings = replace((existing.vllm if existing is not None and existing.vllm else None) or VLLMSettings(), **given)
    if problem := settings.problem():
        name, expected = problem
        raise UserError(f"--{'eval-dtype' if name == 'dtype' else name.replace('_', '-')}: expected {expected}, "
                        f"got {getattr(settings, name)}")
    return settings


def build_plan(request: PlanRequest, engine: str, race: RaceSettings | None = None,
               existing: Plan | None = None) -> Plan:
    """The plan the arguments ask for, everything checked that can be before anything is written: flags, the
    model folder, designs, seeds, the task and every record of the data it reads, the train size against it."""
    if request.task_spec and not request.data:
        raise UserError("--task-spec needs --data DIR with the task's <split>.jsonl files")
    check_model(request.model)
    for flag in ("eval_limit", "signal_limit", "eval_batch_size", "max_gen_toks", "icl_shots", "ppl_samples",
                 "train_size"):
        value = getattr(request, flag)
        if value is not None and value < (0 if flag == "icl_shots" else 1):
            raise UserError(f"--{flag.replace('_', '-')} must be at least {0 if flag == 'icl_shots' else 1}")
    from sde_datagen.tasks import get_task

    task = get_task(request.task_spec or request.task)
    spec = task.spec()
    designs, seeds = resolve_plan_designs(request.designs, spec.family), request.seeds
    if race is not None and len(designs) < 2:
        raise UserError(f"--designs {request.designs}: a race needs at least two designs (this names "
                        f"{len(designs)}); `sde study run` trains and evaluates one")
    train = checked_train_config(request.train_config, request.max_steps)
    user_tasks = None if task.builtin else list(task.lm_eval_tasks)
    task_spec = str(Path(request.task_spec).resolve()) if request.task_spec else None
    return Plan(model=request.model, task=spec.name if request.task_spec else request.task, designs=designs,
                seeds=seeds, train_size=train_size(request, task), task_spec=task_spec,
                data=str(Path(request.data).resolve()) if request.data else None, chat_template=request.chat_template,
                eval_limit=request.eval_limit, eval_batch_size=request.eval_batch_size,
                max_gen_toks=request.max_gen_toks, train=train, analysis=request.analysis, icl_shots=request.icl_shots,
                ppl_samples=request.ppl_samples, user_tasks=user_tasks, engine=engine,
                signal_limit=request.signal_limit, race=race, vllm=vllm_settings(request, engine, existing))


def check_model(model: str) -> None:
    """A local --model is a folder holding a transformers model (a Hub id is NAME or ORG/NAME, checked on use)."""
    local = model.startswith(("/", ".", "~")) or model.count("/") > 1
    folder = Path(model).expanduser()
    if local and not folder.is_dir():
        raise UserError(f"--model {model}: no such model folder (a local folder, or a Hub id ORG/NAME)")
    if folder.is_dir() and not (folder / "config.json").is_file():
        raise UserError(f"--model {model}: the folder holds no model (no config.json; `sde models get` makes one, "
                        "or give a Hub id ORG/NAME)")


def train_size(request: PlanRequest, task) -> int:
    """--train-size checked against the records of the train split (each record read and validated now); by
    default the paper's 500, or all of them when there are fewer (said in one line)."""
    from sde_datagen.export import read_splits

    wanted = ("train", "test") if request.task_spec else ("train",)
    splits = read_splits(task.spec(), Path(request.data) if request.data else task.data_folder, None, wanted=wanted)
    available = len(splits[0].records)
    if request.train_size is not None and request.train_size > available:
        raise UserError(f"--train-size {request.train_size}: {splits[0].path} has only {available} records")
    if request.train_size is None and available < DEFAULT_TRAIN_SIZE:
        print(f"sde study: training on all {available} records of {splits[0].path} (the default "
              f"--train-size {DEFAULT_TRAIN_SIZE} is more than it has)", file=sys.stderr)
    return request.train_size or min(DEFAULT_TRAIN_SIZE, available)


def prepare(root: Path, request: PlanRequest, race: RaceSettings | None = None) -> Plan:
    """Check the arguments, write the plan (a rerun's must match, or only add with --extend), the exports and a
    user task's folder: the study folder ready for its work items."""
    from sde_study.exports import ensure_exports, ensure_task_folder

    if root.exists() and not root.is_dir():
        raise UserError(f"--out {root}: is a file; give a study folder")
    existing = read_plan(root)
    plan = build_plan(request, choose_engine(request.engine, existing), race, existing)
    if existing is not None:
        plan = merge(existing, plan, request.extend)
        if existing.race != plan.race:
            print(f"{root}: the race's settings changed ({existing.race.words()} -> {plan.race.words()}); it decides "
                  "again from its cells")
    write_plan(root, plan)
    ensure_task_folder(plan, root)
    ensure_exports(plan, root)
    return plan
