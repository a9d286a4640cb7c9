"""What the installed task pack says: its tasks (from their YAMLs), their test and few-shot documents, and
the metrics lm-eval's own scoring function gives on them. Submissions are checked against it."""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import yaml


@dataclass(frozen=True)
class InstalledTask:
    """What the installed task pack says about one lm-eval task (read from its YAML)."""

    name: str
    version: Any
    dataset_kwargs: dict[str, Any]
    higher_is_better: dict[str, bool]  # metric -> direction, in the YAML's metric_list order


class _TaskYamlLoader(yaml.SafeLoader):
    """Safe YAML that reads lm-eval's `!function` tags as plain strings (nothing is imported)."""


_TaskYamlLoader.add_constructor("!function", lambda loader, node: loader.construct_scalar(node))


@lru_cache(maxsize=1)
def installed_tasks() -> dict[str, InstalledTask]:
    from sde_tasks.lm_eval_hook import tasks_dir

    tasks = {}
    for path in sorted(tasks_dir().glob("*.yaml")):
        config = yaml.load(path.read_text(encoding="utf-8"), Loader=_TaskYamlLoader)  # noqa: S506 (safe)
        if isinstance(config, dict) and "task" in config:
            tasks[config["task"]] = InstalledTask(
                name=config["task"],
                version=(config.get("metadata") or {}).get("version"),
                dataset_kwargs=dict(config.get("dataset_kwargs") or {}),
                higher_is_better={m["metric"]: bool(m.get("higher_is_better", True))
                                  for m in config.get("metric_list") or []},
            )
    return tasks


@lru_cache(maxsize=32)
def expected_docs(task: str, design: str, instruction: int) -> tuple[dict[str, Any], ...]:
    """The installed task pack's test documents, rendered for a design, exactly as lm-eval builds them."""
    from sde_tasks.tasks.utils import load_docs

    kwargs = installed_tasks()[task].dataset_kwargs
    return tuple(load_docs(**kwargs, design=design, instruction=instruction)["test"].to_list())


def recompute(docs: list[dict[str, Any]], predictions: list[str]) -> dict[str, float]:
    """Corpus metrics of predictions on documents, through the function lm-eval itself calls."""
    from sde_datagen.tasks import load_task
    from sde_tasks.scoring import aggregate
    from sde_tasks.tasks.utils import process_results

    spec = load_task(docs[0]["task"], docs[0]["domain"] or None)
    return aggregate([process_results(doc, [prediction]) for doc, prediction in zip(docs, predictions, strict=True)],
                     spec)


@lru_cache(maxsize=32)
def fewshot_docs(task: str, design: str) -> tuple[dict[str, Any], ...]:
    """The dev documents lm-eval draws few-shot examples from, rendered for a design."""
    from sde_tasks.tasks.utils import FEWSHOT_SPLIT, load_docs

    kwargs = installed_tasks()[task].dataset_kwargs
    return tuple(load_docs(**kwargs, design=design, instruction=0)[FEWSHOT_SPLIT].to_list())
