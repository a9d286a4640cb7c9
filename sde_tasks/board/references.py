"""What a submitted task's run is checked against: the installed task pack, or the spec the submission carries.

The board's one checklist (sde_tasks.board.validate) asks the same questions of both; a reference answers those
that differ: the task's version, its metrics and their directions, the test documents the run must have logged,
the prompts lm-eval builds for them, and the metrics recomputed from the outputs.

A user-declared task (`sde eval make-task`) carries its spec as `task_spec_<task>.yaml`; its sha256 must be the one
lm-eval recorded for the task (`dataset_kwargs.sde_spec_sha256`) and the task one its spec names. The test data is
the submitter's, so its documents cannot be compared with a copy of it: each logged document must instead be
consistent with the spec and design (its completion is its gold in the design's format), and such runs get a
table of their own, never a built-in task's.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sde_datagen.errors import UserError
from sde_datagen.spec import TaskSpec
from sde_tasks.board.installed import InstalledTask, expected_docs, recompute
from sde_tasks.board.prompts import prompt_failures
from sde_tasks.board.samples import doc_ids
from sde_tasks.board.store import spec_name


@dataclass
class BuiltinReference:
    """A task of the installed task pack: its documents are rebuilt here and must be the logged ones exactly."""

    task: str
    installed: InstalledTask
    name: str = "the installed task pack"

    @property
    def version(self) -> Any:
        return self.installed.version

    @property
    def higher_is_better(self) -> dict[str, bool]:
        return self.installed.higher_is_better

    def documents(self, design: str, by_id: dict[int, dict[str, Any]], failures: list[str]) -> list[dict] | None:
        try:
            return list(expected_docs(self.task, design, 0))
        except UserError as err:  # e.g. a No-Inst design on the out-of-domain task: lm-eval cannot have run it
            failures.append(f"task {self.task}: {err}")
            return None

    def prompt_failures(self, design: str, docs: list[dict], by_id: dict[int, dict[str, Any]], n_shot: int,
                        chat: dict[str, Any] | None) -> list[str]:
        return prompt_failures(self.task, design, tuple(docs), by_id, n_shot, chat)

    def recompute(self, docs: list[dict], predictions: list[str]) -> dict[str, float]:
        return recompute(docs, predictions)


@dataclass
class UserReference:
    """A user-declared task: the spec the submission carries, checked to be the one the run was evaluated with."""

    task: str
    spec_path: Path
    spec: TaskSpec
    domain: str  # the target subset the run was evaluated on ("" for all)
    name: str = "the carried spec"

    @classmethod
    def load(cls, folder: Path, results: dict[str, Any], task: str, failures: list[str]) -> "UserReference | None":
        from sde_datagen.tasks import get_task
        from sde_tasks.tasks.utils import spec_sha256

        spec_path = folder / spec_name(task)
        kwargs = (((results.get("configs") or {}).get(task) or {}).get("dataset_kwargs")) or {}
        if kwargs.get("sde_spec_sha256") != spec_sha256(spec_path):
            failures.append(f"task {task}: {spec_path.name} is not the spec the run was evaluated with (sha256 "
                            f"{spec_sha256(spec_path)[:12]}…, the run recorded {str(kwargs.get('sde_spec_sha256'))[:12]}…)")
            return None
        try:
            user_task = get_task(str(spec_path))
            spec = user_task.spec(kwargs.get("sde_domain") or None)
        except UserError as err:
            failures.append(f"task {task}: {err}")
            return None
        names = (f"sde_{spec.name}", f"sde_{spec.name}_ood")
        if task not in names:
            failures.append(f"task {task}: its spec names the task {spec.name} (tasks {', '.join(names)})")
            return None
        return cls(task, spec_path, spec, kwargs.get("sde_domain") or "")

    @property
    def version(self) -> float:
        from sde_tasks.make_task import TASK_VERSION

        return TASK_VERSION

    @property
    def higher_is_better(self) -> dict[str, bool]:
        from sde_datagen.families import family_of

        rules = family_of(self.spec.family)
        return {name: rules.higher_is_better(name) for name in rules.metrics}

    def documents(self, design: str, by_id: dict[int, dict[str, Any]], failures: list[str]) -> list[dict] | None:
        """The logged documents, each consistent with the spec and the design (the data is the submitter's)."""
        from sde_datagen.codecs import get_codec
        from sde_datagen.design import resolve_design

        codec = get_codec(self.spec, resolve_design(design, self.spec.family))
        docs = [by_id[i].get("doc") or {} for i in sorted(by_id)]
        inconsistent = []
        for i, doc in enumerate(docs):
            try:
                parsed = codec.parse(str(doc["completion"]), "strict")
                same = parsed.ok and parsed.targets == json.loads(doc["target"])
            except (KeyError, TypeError, ValueError):
                same = False
            if not same or doc.get("design") != design or doc.get("task") != self.spec.name \
                    or doc.get("domain") != self.domain:
                inconsistent.append(i)
        if inconsistent:
            failures.append(f"task {self.task}: logged documents are not this spec's documents for design {design}: "
                            f"{doc_ids(inconsistent)}")
            return None
        return docs

    def prompt_failures(self, design: str, docs: list[dict], by_id: dict[int, dict[str, Any]], n_shot: int,
                        chat: dict[str, Any] | None) -> list[str]:
        """The few-shot pool is the submitter's too, so the prompts are not rebuilt."""
        return []

    def recompute(self, docs: list[dict], predictions: list[str]) -> dict[str, float]:
        from sde_tasks.scoring import aggregate
        from sde_tasks.tasks.utils import UserTask

        user = UserTask(self.spec_path)
        return aggregate([user.process_results(doc, [p]) for doc, p in zip(docs, predictions)], self.spec)


def carry_specs(specs: list[Path], results: dict[str, Any], stage: Path) -> list[str]:
    """Copy each given spec beside the run's tasks it was evaluated with; failures for specs that fit none."""
    from sde_tasks.tasks.utils import spec_sha256

    failures = []
    for spec in specs:
        if not spec.is_file():
            raise UserError(f"--task-spec {spec}: not found")
        digest = spec_sha256(spec)
        tasks = [t for t, c in (results.get("configs") or {}).items()
                 if ((c or {}).get("dataset_kwargs") or {}).get("sde_spec_sha256") == digest]
        if not tasks:
            failures.append(f"--task-spec {spec}: no task of the run was evaluated with this spec")
        for task in tasks:
            shutil.copyfile(spec, stage / spec_name(task))
    return failures
