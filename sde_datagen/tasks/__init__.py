"""Tasks: a built-in task (masa, ed, ner) or a user's YAML spec, resolved once into a `Task`.

A command resolves its task once (`get_task`) and passes the `Task` on: its spec for any domain, its family's
rules, its lm-eval task names and its data folder all come from it, so no module re-reads or re-checks a spec.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import import_module
from pathlib import Path
from typing import Any

import yaml

from sde_datagen.data import bundled_dir
from sde_datagen.errors import UserError, read_user_text
from sde_datagen.families import FAMILIES, Family, family_of
from sde_datagen.spec import TaskSpec, spec_from_dict

BUILTIN = ("masa", "ed", "ner")
# The built-in task pack's lm-eval tasks: (in domain, out of domain); a user task's are sde_<name>[_ood].
BUILTIN_LM_EVAL = {"masa": ("sde_masa_id", "sde_masa_ood"), "ed": ("sde_ed",), "ner": ("sde_ner",)}
TASK_NAME = re.compile(r"[a-z0-9_]+")  # a user task's name makes the lm-eval task sde_<name>


@dataclass(frozen=True, eq=False)
class Task:
    """One task, resolved: the spec as declared, its spec per domain, and what commands need besides."""

    source: str  # a built-in name, or the resolved path of a user's YAML spec
    declared: dict[str, Any]  # the spec's fields as written
    builtin: bool
    _specs: dict[str | None, TaskSpec] = field(default_factory=dict, repr=False)

    def spec(self, domain: str | None = None) -> TaskSpec:
        """The spec with `domain`'s targets (None: the spec's default domain); built once per domain."""
        if domain not in self._specs:
            where = f"sde_datagen/tasks/{self.source}.py" if self.builtin else self.source
            self._specs[domain] = spec_from_dict(self.declared, FAMILIES, domain, source=where)
        return self._specs[domain]

    @property
    def name(self) -> str:
        return self.spec().name

    @property
    def family(self) -> Family:
        return family_of(self.spec().family)

    @property
    def domains(self) -> tuple[str | None, ...]:
        """The named domains (MASA: D1, D2, D1-paper), tried in order to find a gold answer's targets."""
        return tuple(self.declared.get("domains") or {}) or (None,)

    @property
    def domain_pair(self) -> tuple[str | None, str | None]:
        """(in-domain, out-of-domain) target subsets: the default domain and the first other one.

        Alternative domains named `*-paper` are skipped; (None, None) without domains, and no out-of-domain
        subset when the default domain is `all`.
        """
        declared = [d for d in self.domains if d is not None]
        if not declared:
            return None, None
        default = self.spec().domain
        if default == "all":
            return default, None
        others = [d for d in declared if d != default and not d.endswith("-paper")]
        return default, (others[0] if others else None)

    @property
    def lm_eval_tasks(self) -> tuple[str, ...]:
        """The lm-eval tasks: a user task's name must make a valid one (exporting data needs no such name)."""
        if self.builtin:
            return BUILTIN_LM_EVAL[self.source]
        if self.name in BUILTIN:
            raise UserError(f"{self.source}: field 'name': '{self.name}' is a built-in task; give your task another name")
        if not TASK_NAME.fullmatch(self.name):
            raise UserError(f"{self.source}: field 'name': '{self.name}' must be lower-case letters, digits and "
                            f"underscores (it names the lm-eval task sde_<name>)")
        return (f"sde_{self.name}", *([f"sde_{self.name}_ood"] if self.domain_pair[1] is not None else []))

    @property
    def data_folder(self) -> Path | None:
        """The bundled data of a built-in task; None for a user's task (its data comes with --data)."""
        return bundled_dir(self.source) if self.builtin else None


def get_task(name: str) -> Task:
    """A built-in task by name, or a user's YAML spec by path (re-read when the file changes)."""
    if name in BUILTIN:
        return _builtin(name)
    if name.endswith((".yaml", ".yml")):
        path = Path(name)
        try:
            stat = path.stat()
        except OSError:
            raise UserError(f"{path}: task spec not found") from None
        return _user(str(path.resolve()), stat.st_mtime_ns, stat.st_size)
    raise UserError(f"unknown task '{name}' (built-in: {', '.join(BUILTIN)}; or a path to a YAML task spec)")


def load_task(name: str, domain: str | None = None) -> TaskSpec:
    """The spec of a task (see `get_task`) with `domain`'s targets."""
    return get_task(name).spec(domain)


@lru_cache(maxsize=None)
def _builtin(name: str) -> Task:
    """Built-in specs are loaded once, so codecs cached per spec are reused."""
    task = Task(name, import_module(f"sde_datagen.tasks.{name}").SPEC, builtin=True)
    task.spec()
    return task


@lru_cache(maxsize=64)
def _user(path: str, mtime_ns: int, size: int) -> Task:
    """A user's spec, checked whole; keyed by the file's state."""
    text = read_user_text(Path(path), "task spec", "--task-spec takes a YAML file")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else path
        raise UserError(f"{where}: not valid YAML ({getattr(err, 'problem', None) or err})") from None
    task = Task(path, data, builtin=False)
    task.spec()  # validates the whole spec
    return task
