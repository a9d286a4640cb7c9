"""Let a plain `lm_eval --tasks sde_masa_id …` find the SDE task folder after `pip install sde-kit`.

lm-eval 0.4.x has no plugin entry point for tasks, only `--include_path`. The file
`sde_kit_lm_eval.pth`, installed into site-packages, calls `install()` at interpreter start-up.
That only puts a tiny finder on `sys.meta_path`: nothing of lm_eval (or torch) is imported. When
something imports `lm_eval.tasks`, the finder lets it load normally and then wraps
`TaskManager.__init__` so that the SDE task folder is added to its `include_path` (first, so a
user's own `--include_path` still overrides it). Guarded by lm_eval's version; turned off by
setting SDE_KIT_NO_LM_EVAL_HOOK=1. Without the hook: `lm_eval --include_path "$(sde eval tasks-dir)"`.
The same moment names the kit's own lm-eval models (`--model sde-vllm`), as lazy entries of lm-eval's registry:
nothing of them is imported until a run asks for one.
"""
from __future__ import annotations

import functools
import importlib.abc
import inspect
import os
import sys
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any

ENV_DISABLE = "SDE_KIT_NO_LM_EVAL_HOOK"
TARGET_MODULE = "lm_eval.tasks"
SUPPORTED = ((0, 4, 4), (0, 5, 0))  # lm_eval >= 0.4.4, < 0.5 (TaskManager(include_path=...))
_MARK = "_sde_kit_tasks_dir"
MODELS = {"sde-vllm": "sde_study.vllm_model:SwappableVLLM"}  # lm_eval --model names the kit adds


def tasks_dir() -> Path:
    """The folder holding the SDE lm-eval task YAMLs."""
    return Path(__file__).resolve().parent / "tasks"


def disabled() -> bool:
    return os.environ.get(ENV_DISABLE, "").strip().lower() not in ("", "0", "false", "no")


def with_tasks_dir(include_path: Any) -> Any:
    """include_path (None, a path, or a list of paths) with the SDE task folder first, once."""
    ours = tasks_dir()
    paths = [] if include_path is None else (
        list(include_path) if isinstance(include_path, (list, tuple)) else [include_path])
    if any(Path(p).expanduser().resolve() == ours for p in paths):
        return include_path
    return [str(ours), *paths]


def _version_supported() -> bool:
    from importlib.metadata import PackageNotFoundError, version

    try:
        parts = tuple(int(p) for p in version("lm_eval").split(".")[:3] if p.isdigit())
    except (PackageNotFoundError, ValueError):
        return False
    return SUPPORTED[0] <= parts < SUPPORTED[1]


def patch(task_manager_cls: type, *, respect_env: bool = True) -> bool:
    """Wrap TaskManager.__init__ to include the SDE task folder; True when it is (now) wrapped.

    `respect_env=False` is for `sde eval`, which asks for the tasks explicitly.
    """
    init = task_manager_cls.__init__
    if getattr(init, _MARK, False):
        return True
    signature = inspect.signature(init)
    if "include_path" not in signature.parameters or not _version_supported():
        warnings.warn(
            "sde-kit: this lm_eval version is not supported by the SDE task hook; "
            'pass --include_path "$(sde eval tasks-dir)" instead', stacklevel=2)
        return False

    @functools.wraps(init)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        if not (respect_env and disabled()):
            bound = signature.bind(self, *args, **kwargs)
            bound.arguments["include_path"] = with_tasks_dir(bound.arguments.get("include_path"))
            args, kwargs = bound.args[1:], bound.kwargs
        init(self, *args, **kwargs)

    setattr(__init__, _MARK, True)
    task_manager_cls.__init__ = __init__
    return True


def register_models() -> None:
    """Add the kit's models to lm-eval's registry as lazy entries (after lm-eval's own: its registry imports
    lm_eval.models only while it is empty)."""
    import lm_eval.models  # noqa: F401  (lm-eval's own entries, lazy too)
    from lm_eval.api.registry import model_registry

    for name, target in MODELS.items():
        if name not in model_registry:
            model_registry.register(name, target=target)


class _PatchAfterExec:
    """The real loader of lm_eval.tasks, plus a patch of TaskManager once the module has run."""

    def __init__(self, loader: Any):
        self._loader = loader

    def __getattr__(self, name: str) -> Any:  # get_resource_reader, is_package, …
        return getattr(self._loader, name)

    def create_module(self, spec: Any) -> ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)
        task_manager = getattr(module, "TaskManager", None)
        if task_manager is not None and not disabled():
            patch(task_manager)
            try:
                register_models()
            except Exception:  # an lm-eval without a lazy registry: `--model sde-vllm` is then not found, nothing else
                pass


class _Finder(importlib.abc.MetaPathFinder):
    """Finds nothing itself: wraps the loader the other finders return for lm_eval.tasks."""

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname != TARGET_MODULE:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _PatchAfterExec(spec.loader)
                return spec
        return None


def install() -> None:
    """Called from the .pth file at start-up: cheap, never imports lm_eval, never raises."""
    try:
        if disabled():
            return
        loaded = sys.modules.get(TARGET_MODULE)
        if loaded is not None and hasattr(loaded, "TaskManager"):
            patch(loaded.TaskManager)
        elif not any(isinstance(f, _Finder) for f in sys.meta_path):
            sys.meta_path.insert(0, _Finder())
    except Exception:  # a broken hook must never break the interpreter
        return
