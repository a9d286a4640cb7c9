"""`sde eval make-task`: an lm-eval task folder for a task declared in YAML.

The folder holds a copy of the spec and of its test and validation (few-shot) gold, one YAML per
task (`sde_<name>`, and `sde_<name>_ood` when the spec declares domains), the shared template and
a short utils.py that binds sde-kit's own hooks (sde_tasks.tasks.utils.UserTask) to the spec
beside it: prompts, parsing and metrics are the built-in tasks' code, not a copy of it.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from sde_datagen.errors import UserError
from sde_datagen.export import SPLIT_FILES, read_splits
from sde_datagen.families import family_of
from sde_datagen.tasks import get_task
from sde_files import atomic_folder
from sde_tasks.lm_eval_hook import tasks_dir
from sde_tasks.tasks.utils import DATA_DIR, DEFAULT_DESIGN, FEWSHOT_SPLIT, SPEC_FILE, UserTask, spec_sha256

TEMPLATE = "_default_template_yaml"
EVAL_SPLITS = ("test", "validation")  # scored documents, and few-shot examples
TASK_VERSION = 1.0  # metadata.version of a user task: bumped with the built-in tasks' prompts and metrics
UTILS = '''"""lm-eval hooks of this folder: sde-kit's own, bound to task_spec.yaml and data/ beside this file."""
from sde_tasks.tasks.utils import UserTask

_task = UserTask.beside(__file__)
load_docs, process_results = _task.load_docs, _task.process_results


def __getattr__(metric):  # utils.<metric>: the aggregation of that metric, as the task's family defines it
    return _task.aggregation(metric)
'''


class _Function(str):
    """An lm-eval `!function module.name` reference, kept as such through YAML load and dump."""


class _Loader(yaml.SafeLoader):
    pass


class _Dumper(yaml.SafeDumper):
    """Writes `!function utils.x` plain and texts with line breaks double-quoted, as people write them."""

    def choose_scalar_style(self) -> str:
        if self.event.tag == "!function":
            return ""
        return super().choose_scalar_style()


_Loader.add_constructor("!function", lambda loader, node: _Function(loader.construct_scalar(node)))
_Dumper.add_representer(_Function, lambda dumper, value: dumper.represent_scalar("!function", str(value)))
_Dumper.add_representer(str, lambda dumper, value: dumper.represent_scalar(
    "tag:yaml.org,2002:str", value, style='"' if "\n" in value else None))


def task_yaml(task: str, family: str, domain: str | None, out_of_domain: bool, digest: str) -> str:
    """One task's YAML: the shared template, the folder's hooks and the family's metrics."""
    rules = family_of(family)
    config = {
        "include": TEMPLATE,
        "task": task,
        "custom_dataset": _Function("utils.load_docs"),
        "dataset_kwargs": {"sde_domain": domain, "sde_out_of_domain": out_of_domain, "sde_spec_sha256": digest},
        "metric_list": [{"metric": name, "aggregation": _Function(f"utils.{name}"),
                         "higher_is_better": rules.higher_is_better(name)} for name in rules.metrics],
        "metadata": {"version": TASK_VERSION, "design": DEFAULT_DESIGN},
    }
    return yaml.dump(config, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=120)


def template_yaml() -> str:
    """The built-in tasks' template without their `sde` tag (that tag runs the built-in tasks only)."""
    source = tasks_dir() / TEMPLATE
    template = yaml.load(source.read_text(encoding="utf-8"), Loader=_Loader)  # noqa: S506 (a SafeLoader)
    template.pop("tag", None)
    header = "# Shared by the tasks of this folder; copied from sde-kit's built-in template.\n"
    return header + yaml.dump(template, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=120)


def readme(spec_name: str, tasks: list[str], family: str, domains: tuple[str | None, str | None],
           digest: str) -> str:
    metrics = family_of(family).metrics
    lines = [f"# sde-kit lm-eval tasks for `{spec_name}`", "",
             "Written by `sde eval make-task`; do not edit by hand (re-run it after changing the spec or data).", "",
             "| task | documents | metrics |", "|---|---|---|"]
    for task in tasks:
        ood = task.endswith("_ood")
        where = f"domain {domains[1] if ood else domains[0]}" if domains[0] else "all targets"
        lines.append(f"| `{task}` | `data/test.jsonl`, {where} | {', '.join(f'`{x}`' for x in metrics)} |")
    lines += ["", f"Spec: `{SPEC_FILE}` (sha256 `{digest}`); few-shot examples: `data/{FEWSHOT_SPLIT}.jsonl`.",
              "", "```bash",
              f"lm_eval --include_path THIS_FOLDER --tasks {tasks[0]} --model hf --model_args pretrained=BASE,peft=ADAPTER \\",
              f"        --metadata '{{\"design\": \"{DEFAULT_DESIGN}\"}}'",
              "```", ""]
    return "\n".join(lines)


def write_task_folder(spec_path: str | Path, data_dir: str | Path, out_dir: str | Path,
                      overwrite: bool = False) -> list[str]:
    """Write the task folder of a user's spec and gold data; returns its lm-eval task names.

    `data_dir` needs test.jsonl and valid.jsonl (or dev.jsonl). Every split is validated (for each domain) before anything is written; the folder appears
    whole or not at all.
    """
    spec_path, data_dir, out_dir = Path(spec_path), Path(data_dir), Path(out_dir)
    task = get_task(str(spec_path))
    spec = task.spec()
    in_domain, out_domain = task.domain_pair
    if not data_dir.is_dir():
        raise UserError(f"--data {data_dir}: no such folder")
    for name in EVAL_SPLITS:
        stems = (spec.splits[name], *SPLIT_FILES[name])
        if not any((data_dir / f"{stem}.jsonl").is_file() for stem in stems):
            raise UserError(f"--data {data_dir}: no {' or '.join(dict.fromkeys(f'{s}.jsonl' for s in stems))}: "
                            f"the lm-eval task needs the {name} split")
    splits = {s.name: s for s in read_splits(spec, data_dir, wanted=EVAL_SPLITS)}
    if out_domain is not None:  # the labels must hold for the out-of-domain targets too
        read_splits(task.spec(out_domain), data_dir, wanted=EVAL_SPLITS)
    if out_dir.exists() and not overwrite:
        raise UserError(f"{out_dir}: already exists (pass --overwrite to replace it)")
    names = list(task.lm_eval_tasks)
    digest = spec_sha256(spec_path)
    with atomic_folder(out_dir) as tmp:
        (tmp / DATA_DIR).mkdir()
        shutil.copyfile(spec_path, tmp / SPEC_FILE)
        shutil.copyfile(splits["test"].path, tmp / DATA_DIR / "test.jsonl")
        shutil.copyfile(splits["validation"].path, tmp / DATA_DIR / f"{FEWSHOT_SPLIT}.jsonl")
        (tmp / TEMPLATE).write_text(template_yaml(), encoding="utf-8")
        (tmp / "utils.py").write_text(UTILS, encoding="utf-8")
        for name, domain, ood in zip(names, (in_domain, out_domain), (False, True)):
            (tmp / f"{name}.yaml").write_text(task_yaml(name, spec.family, domain, ood, digest), encoding="utf-8")
        (tmp / "README.md").write_text(readme(spec.name, names, spec.family, (in_domain, out_domain), digest),
                                       encoding="utf-8")
        UserTask(tmp / SPEC_FILE, tmp / DATA_DIR).load_docs(sde_domain=in_domain, sde_spec_sha256=digest)
    return names

