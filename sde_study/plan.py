"""The study plan (DIR/study.yaml) and its work items.

The plan is everything that shapes a study's results; it is written before any work starts, so a
rerun on the same folder can tell "continue" from "another study" and name the difference.
Executor settings are not part of it: they change how, not what.
"""
from __future__ import annotations

import shlex
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from sde_datagen.design import Design, design_axes, resolve_designs
from sde_datagen.errors import UserError
from sde_datagen.tasks import Task, get_task
from sde_files import write_atomic
from sde_files.typed import shown, typed
from sde_study.engines import ENGINE_NAMES, VLLMSettings
from sde_tasks import significance as sig
from sde_tasks.rules import PAPER, RULES

PLAN_NAME = "study.yaml"
TASKS_DIR = "tasks"
# What an item's folder holds: the adapter and the lm-eval output of its evaluation (a cell), its training summary,
# its result and state, and the lock of the worker that runs it.
ADAPTER, EVAL, TRAINED, RESULT, STATE, LOCK = "adapter", "eval", "train.json", "result.json", "state.json", "worker.lock"
# Training settings the study itself decides per cell; a --train-config may not set them.
CELL_SETTINGS = ("model", "dataset", "config", "output", "seed", "chat_template", "resume", "overwrite", "push_to_hub",
                 "private", "split")
EXTENDABLE = ("designs", "seeds", "analysis")
WELCH, WIDENED = "welch", "widened"  # a race's tests; a plan whose race names none was planned with `widened`
RACE_TESTS = (WELCH, WIDENED)
FUTILITY = 0.5  # a new race's futility stop (sde_study.race.compare_with_best); races planned before it read 0: off
FIRST_DOCS = 100  # a new race evaluates a new cell on the first 100 test documents, its finalists on all of them
ALL_DOCS = ":all"  # the id suffix of a cell's evaluation on every test document (a staged race's finalists)


@dataclass(frozen=True)
class RaceSettings:
    """How a race runs (a race's plan holds them): seeds per design at most, compute budget, the tie margin, the rule
    it eliminates by, its test (sde_study.race.compare_with_best: `welch`, or `widened` for races planned before
    it), its futility stop (the confidence of the bound it judges a gap by; 0: off, as in races planned before
    it) and its staged evaluation (`first_docs`: the test documents a new cell is evaluated on, the finalists on
    all; None: every cell on all, as in races planned before it). A race keeps the test, futility stop and stages
    its looks were made with."""

    max_seeds: int = 5
    budget_hours: float | None = None
    delta: float = 0.0
    rule: str = PAPER
    test: str = WELCH
    futility: float = FUTILITY
    first_docs: int | None = FIRST_DOCS
    alpha = sig.ALPHA  # not a setting: every race keeps alpha over all its looks

    def look_level(self, looks_per_rung: int = 1) -> float:
        """The level of one look: alpha split over the looks the race can make (`looks_per_rung` per rung after the
        first: two when it evaluates in stages and looks at the first documents, then at all of them)."""
        return self.alpha / (max(1, self.max_seeds - 1) * looks_per_rung)

    def words(self) -> str:
        return (f"max seeds {self.max_seeds}, rule {self.rule}, delta {self.delta}, test {self.test}, "
                f"futility {self.futility}" + (f", first documents {self.first_docs}" if self.first_docs else "")
                + (f", budget {self.budget_hours} h" if self.budget_hours else ""))



@dataclass
class Plan:
    """What a study computes. `designs` are variant ids; `train` holds sde_train settings."""

    model: str
    task: str  # a built-in task name, or the name declared in task_spec
    designs: list[str]
    seeds: list[int]
    train_size: int | None = 500
    data_seed: int = 0  # seed of the train-set sample, the same for every cell
    task_spec: str | None = None  # path of a user's YAML task spec
    data: str | None = None  # folder with the task's <split>.jsonl (default: bundled data)
    chat_template: bool = False
    eval_limit: int | None = None
    eval_batch_size: int = 8
    max_gen_toks: int | None = None  # generation budget per document (default: the task's, 512)
    train: dict[str, Any] = field(default_factory=dict)
    analysis: bool = True
    icl_shots: int = 3
    ppl_samples: int = 200
    user_tasks: list[str] | None = None  # lm-eval tasks of a user's spec (in DIR/tasks, by sde eval make-task)
    engine: str = "hf"  # what generates the evaluated outputs: vllm or hf (sde_study.engines)
    signal_limit: int | None = None  # PE signals on the first N test documents (None: as the cells, eval_limit)
    race: RaceSettings | None = None  # `sde study race`'s settings; None: a grid
    vllm: VLLMSettings | None = None  # how the vllm engine generates; None: vLLM's defaults (plans before them)

    @property
    def signal_docs(self) -> int | None:
        """How many test documents the PE signals score: the untuned model rambles, so they may use fewer."""
        return self.signal_limit if self.signal_limit is not None else self.eval_limit

    def resolved_task(self) -> Task:
        """The study's task, resolved once per process (and again when a user's spec file changes)."""
        return get_task(self.task_spec or self.task)

    @property
    def data_folder(self) -> Path:
        """Where the task's <split>.jsonl files are: --data, else the built-in task's bundled data."""
        return Path(self.data) if self.data else self.resolved_task().data_folder

    @property
    def lm_eval_tasks(self) -> tuple[str, ...]:
        return tuple(self.user_tasks) if self.user_tasks else self.resolved_task().lm_eval_tasks

    def eval_tasks(self, design: str) -> tuple[str, ...]:
        """The lm-eval tasks `design` is evaluated on: all of them, but only the in-domain one (the first) for a
        No-Inst design, which cannot know the out-of-domain targets (sde_tasks refuses it there)."""
        return self.lm_eval_tasks if Design.from_id(design).goes_out_of_domain else self.lm_eval_tasks[:1]

    def include_path(self, root: Path) -> str | None:
        """The lm-eval task folder of a user's task; None for the built-in task pack."""
        return str(root / TASKS_DIR) if self.task_spec else None

    def test_size(self) -> int | None:
        """How many documents the headline task's test split holds (None where it cannot be read)."""
        path = self.data_folder / f"{self.resolved_task().spec().splits['test']}.jsonl"
        try:
            return sum(1 for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
        except OSError:
            return None

    def evaluated_docs(self) -> int | None:
        """How many test documents a cell is evaluated on (None where the test split cannot be read)."""
        size = self.test_size()
        return min(size, self.eval_limit) if size is not None and self.eval_limit is not None else size

    def design_objects(self) -> list[Design]:
        return [Design.from_id(d) for d in self.designs]

    def cell_command(self, design: str, seed: int, out: str) -> str:
        """The shell line that runs one cell of this plan again, as a study of its own in `out`: how a board
        entry says where its adapter (not published) comes from. Training is deterministic on one machine."""
        args = ["sde", "study", "run", "--model", self.model]
        args += ["--task-spec", self.task_spec, "--data", str(self.data)] if self.task_spec else ["--task", self.task]
        if self.data and not self.task_spec:
            args += ["--data", self.data]
        args += ["--designs", design, "--seeds", str(seed)]
        if self.train_size is not None:
            args += ["--train-size", str(self.train_size)]
        if self.chat_template:
            args.append("--chat-template")
        if self.eval_limit is not None:
            args += ["--eval-limit", str(self.eval_limit)]
        args += ["--eval-batch-size", str(self.eval_batch_size)]
        if self.max_gen_toks is not None:
            args += ["--max-gen-toks", str(self.max_gen_toks)]
        args += ["--engine", self.engine, *self.vllm_flags(), "--no-analysis", "--out", out]
        if not self.train:
            return shlex.join(args)
        config = f"{out}.train.yaml"
        settings = yaml.safe_dump(self.train, sort_keys=True).replace("\n", "\\n")
        return f"printf {shlex.quote(settings)} > {shlex.quote(config)} && " + shlex.join(
            [*args, "--train-config", config])

    def vllm_flags(self) -> list[str]:
        """The flags that give a vllm cell the same generation (a plan without settings never stopped a runaway;
        vLLM's own KV block size changes no output)."""
        if self.engine != "vllm":
            return []
        if self.vllm is None:
            return ["--no-runaway-stop"]
        return ["--kv-block", str(self.vllm.kv_block), "--eval-dtype", self.vllm.dtype,
                "--runaway-stop" if self.vllm.runaway_stop else "--no-runaway-stop"]

    def items(self) -> list["WorkItem"]:
        """Every unit of work, in a fixed order: tuned cells, then the PE signals per design."""
        cells = [WorkItem("cell", d, s) for d in self.designs for s in self.seeds]
        signals = [WorkItem("signals", d) for d in self.designs] if self.analysis else []
        return cells + signals

    def to_yaml(self) -> str:
        return yaml.safe_dump(asdict(self), sort_keys=False, allow_unicode=True)

    @classmethod
    def from_dict(cls, data: Any, source: str) -> "Plan":
        if not isinstance(data, dict):
            raise UserError(f"{source}: not a study plan (expected a mapping)")
        race = data.get("race")
        if isinstance(race, dict):
            planned_before = {"test": WIDENED, "futility": 0.0, "first_docs": None}  # races before these settings
            data = {**data, "race": typed(RaceSettings, {**planned_before, **race}, source, UserError, "race.")}
            for name, allowed in (("rule", RULES), ("test", RACE_TESTS)):
                if getattr(data["race"], name) not in allowed:
                    raise UserError(f"{source}: field 'race.{name}': expected {' or '.join(allowed)}, got "
                                    f"{shown(race[name])}")
            if not 0 <= data["race"].futility < 1:
                raise UserError(f"{source}: field 'race.futility': expected a confidence from 0 (off) to below 1, "
                                f"got {shown(race['futility'])}")
            if data["race"].first_docs is not None and data["race"].first_docs < 1:
                raise UserError(f"{source}: field 'race.first_docs': expected a number of documents of 1 or more, or "
                                f"null (every cell on every document), got {shown(race['first_docs'])}")
        vllm = data.get("vllm")
        if isinstance(vllm, dict):
            data = {**data, "vllm": typed(VLLMSettings, vllm, source, UserError, "vllm.")}
            if problem := data["vllm"].problem():
                name, expected = problem
                raise UserError(f"{source}: field 'vllm.{name}': expected {expected}, got {shown(vllm[name])}")
        plan = typed(cls, data, source, UserError)
        if plan.engine not in ENGINE_NAMES:
            raise UserError(f"{source}: field 'engine': expected {' or '.join(ENGINE_NAMES)}, got {shown(plan.engine)}")
        return plan


@dataclass(frozen=True)
class WorkItem:
    """A tuned cell (design, seed) or the untuned base model's PE signals for one design."""

    kind: str  # "cell" or "signals"
    design: str
    seed: int | None = None

    @property
    def id(self) -> str:
        return f"{self.design}/seed-{self.seed}" if self.kind == "cell" else f"signals/{self.design}"

    def folder(self, root: Path) -> Path:
        return root / ("cells" if self.kind == "cell" else "") / self.id

    def describe(self) -> dict[str, Any]:
        """The columns every results row of this item starts with."""
        row = {"kind": "tuned" if self.kind == "cell" else "signals", "design": self.design,
               **design_axes(Design.from_id(self.design))}
        if self.kind == "cell":
            row["seed"] = self.seed
        return row


def resolve_plan_designs(names: str, family: str) -> list[str]:
    try:
        return [d.id for d in resolve_designs(names, family)]
    except UserError as err:
        raise UserError(f"--designs {names}: {err}") from None


def read_plan(root: Path) -> Plan | None:
    path = root / PLAN_NAME
    if not path.is_file():
        return None
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise UserError(f"{path}: not valid YAML ({err})") from None
    return Plan.from_dict(data, str(path))


def require_plan(root: Path) -> Plan:
    plan = read_plan(root)
    if plan is None:
        raise UserError(f"{root}: no {PLAN_NAME} here; start a study with `sde study run --out {root} …`")
    return plan


def write_plan(root: Path, plan: Plan) -> None:
    root.mkdir(parents=True, exist_ok=True)
    write_atomic(root / PLAN_NAME, plan.to_yaml())


def differences(old: Plan, new: Plan) -> list[str]:
    """Each setting that differs, in words: `key: old -> new`."""
    a, b = asdict(old), asdict(new)
    return [f"{k}: {a[k]!r} -> {b[k]!r}" for k in a if a[k] != b[k]]


def merge(old: Plan, new: Plan, extend: bool) -> Plan:
    """The plan to run on a folder holding `old`: the same plan, or with --extend one that only adds work. A race's
    settings (rule, delta, budget) follow the command: they train nothing, and the race decides again from its cells;
    its test, futility stop and stages stay the ones it was planned with."""
    if old.race is not None and new.race is not None:
        race = replace(new.race, test=old.race.test, futility=old.race.futility, first_docs=old.race.first_docs)
        old, new = replace(old, race=race), replace(new, race=race)
    changed = differences(old, new)
    if not changed:
        return old
    hint = "use another --out, or rerun with the same settings"
    if not extend:
        raise UserError(f"the study in this folder has another plan ({'; '.join(changed)}); {hint}"
                        + (" (or pass --extend to add designs, seeds or the analysis)" if _only_adds(old, new) else ""))
    if not _only_adds(old, new):
        removed = [k for k in EXTENDABLE if k != "analysis" and set(getattr(old, k)) - set(getattr(new, k))]
        fixed = [c for c in changed if c.split(":")[0] not in EXTENDABLE]
        why = fixed + [f"{k}: drops {sorted(set(getattr(old, k)) - set(getattr(new, k)))}" for k in removed]
        if old.analysis and not new.analysis:
            why.append("analysis: drops the PE signals")
        raise UserError(f"--extend only adds designs, seeds or the analysis; this plan changes {'; '.join(why)}; {hint}")
    merged = asdict(old)
    merged["designs"] = old.designs + [d for d in new.designs if d not in old.designs]
    merged["seeds"] = old.seeds + [s for s in new.seeds if s not in old.seeds]
    merged["analysis"] = old.analysis or new.analysis
    return Plan(**merged)


def _only_adds(old: Plan, new: Plan) -> bool:
    a, b = asdict(old), asdict(new)
    same = all(a[k] == b[k] for k in a if k not in EXTENDABLE)
    return (same and set(old.designs) <= set(new.designs) and set(old.seeds) <= set(new.seeds)
            and (new.analysis or not old.analysis))
