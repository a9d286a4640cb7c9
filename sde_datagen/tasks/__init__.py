"""Built-in task specs (masa, ed, ner) and user YAML specs, loaded through one path."""
from __future__ import annotations

from functools import lru_cache
from importlib import import_module

from sde_datagen.errors import UserError
from sde_datagen.spec import TaskSpec, load_spec_yaml, spec_from_dict

BUILTIN = ("masa", "ed", "ner")


def load_task(name: str, domain: str | None = None) -> TaskSpec:
    """A built-in task by name, or a user's YAML spec by path; `domain` picks a target subset."""
    if name in BUILTIN:
        return _builtin(name, domain)
    if name.endswith((".yaml", ".yml")):
        return load_spec_yaml(name, domain)
    raise UserError(f"unknown task '{name}' (built-in: {', '.join(BUILTIN)}; or a path to a YAML task spec)")


@lru_cache(maxsize=None)
def _builtin(name: str, domain: str | None) -> TaskSpec:
    """Built-in specs are loaded once, so codecs cached per spec are reused."""
    module = import_module(f"sde_datagen.tasks.{name}")
    return spec_from_dict(module.SPEC, domain, source=f"sde_datagen/tasks/{name}.py")
