"""The lm-eval task pack without a model: documents, design selection, scoring hook, discovery hook."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sde_datagen.data import bundled_dir
from sde_datagen.design import grid, resolve_design
from sde_datagen.errors import UserError
from sde_datagen.records import load_records
from sde_datagen.render import render_sample
from sde_datagen.tasks import load_task
from sde_tasks import lm_eval_hook
from sde_datagen import metrics as m
from sde_tasks.tasks import utils

TASKS_DIR = lm_eval_hook.tasks_dir()
TASK_NAMES = ("sde_masa_id", "sde_masa_ood", "sde_ed", "sde_ner")
PTH = Path(lm_eval_hook.__file__).with_name("sde_kit_lm_eval.pth")


def task_kwargs(name: str) -> dict:
    """The YAML's dataset_kwargs, as lm-eval passes them to the custom dataset."""
    return yaml.load((TASKS_DIR / f"{name}.yaml").read_text(), Loader=_FunctionLoader)["dataset_kwargs"]


class _FunctionLoader(yaml.SafeLoader):
    pass


_FunctionLoader.add_constructor("!function", lambda loader, node: loader.construct_scalar(node))


@pytest.mark.parametrize("name", TASK_NAMES)
def test_docs_are_the_rendered_full_splits_with_es_sde_by_default(name):
    kwargs = task_kwargs(name)
    docs = utils.load_docs(**kwargs, version=1.0, pretrained="ignored")  # metadata + model args pass through
    spec = load_task(kwargs["sde_task"], kwargs.get("sde_domain"))
    design = resolve_design("es-sde", spec.family)
    folder = bundled_dir(kwargs["sde_task"])
    for split, file in (("test", spec.splits["test"]), ("dev", spec.splits["validation"])):
        records = load_records(spec, folder / f"{file}.jsonl")
        assert len(docs[split]) == len(records)
        first = render_sample(spec, design, records[0])
        doc = docs[split][0]
        assert (doc["prompt"], doc["completion"], doc["design"]) == (first.prompt, first.completion, design.id)
        assert json.loads(doc["target"]) == first.target
        assert doc["prompt"].endswith("\n")


def test_design_and_instruction_come_from_metadata():
    docs = utils.load_docs(sde_task="ed", design="ew-sde", instruction=1)
    spec = load_task("ed")
    design = resolve_design("ew-sde", spec.family)
    record = load_records(spec, bundled_dir("ed") / "test.jsonl")[0]
    assert docs["test"][0]["prompt"] == render_sample(spec, design, record, 1).prompt
    assert docs["test"][0]["design"] == design.id == "last-nomi-natural-ou-text-none"
    by_id = utils.load_docs(sde_task="ed", design="first-nomi-json-pu-numeric-cot")
    assert by_id["dev"][0]["design"] == "first-nomi-json-pu-numeric-cot"


def test_no_inst_fails_clearly_out_of_domain_only():
    no_inst = "none-nomi-lines-pu-text-none"
    with pytest.raises(UserError, match="No-Inst.*out-of-domain"):
        utils.load_docs(**task_kwargs("sde_masa_ood"), design=no_inst)
    assert utils.load_docs(**task_kwargs("sde_masa_id"), design=no_inst)["test"][0]["design"] == no_inst
    with pytest.raises(UserError, match="cannot carry placeholders"):
        utils.load_docs(sde_task="masa", sde_domain="D1", design="first-nomi-heuristic-pu-text-none")
    heuristic = utils.load_docs(sde_task="masa", sde_domain="D1", design="heuristic")["test"][0]
    assert heuristic["completion"].startswith('["') or heuristic["completion"] == "[]"


def test_process_results_items_match_the_task_metrics():
    docs = utils.load_docs(sde_task="masa", sde_domain="D1")
    doc = docs["test"][0]
    perfect = utils.process_results(doc, [doc["completion"]])
    assert set(perfect) == {"kappa", "accuracy", "exact_match", "format_error_rate"}
    assert perfect["format_error_rate"] == 0 and all(g == p for g, p in perfect["kappa"])
    garbage = utils.process_results(doc, ["???"])
    assert garbage["format_error_rate"] == 1
    assert {p for _, p in garbage["kappa"]} == {"unmentioned"}  # unparseable -> all 未提及
    ed = utils.load_docs(sde_task="ed")["test"]
    doc = next(d for d in ed if json.loads(d["target"])["Hostile_encounter"])
    items = utils.process_results(doc, [doc["completion"]])
    assert items["precision"] == items["soft_f1"] and items["precision"][1:] == (0, 0)


@pytest.mark.parametrize("task,domain", [("masa", "D1"), ("ed", None), ("ner", None)])
def test_no_completion_contains_the_stop_sequence(task, domain):
    """generation stops at "\\n\\n" (the few-shot delimiter): no design may write it in an answer."""
    template = yaml.load((TASKS_DIR / "_default_template_yaml").read_text(), Loader=_FunctionLoader)
    until = template["generation_kwargs"]["until"]
    assert template["fewshot_delimiter"] in until and template["target_delimiter"] == ""
    spec = load_task(task, domain)
    records = load_records(spec, bundled_dir(task) / f"{spec.splits['validation']}.jsonl")[:20]
    for design in grid(spec.family):
        for record in records:
            completion = render_sample(spec, design, record).completion
            assert not any(stop in completion for stop in until), (design.id, record.id)


def test_task_yamls_declare_tag_version_and_metrics():
    template = yaml.load((TASKS_DIR / "_default_template_yaml").read_text(), Loader=_FunctionLoader)
    assert template["tag"] == "sde" and template["fewshot_split"] == "dev"
    for name in TASK_NAMES:
        cfg = yaml.load((TASKS_DIR / f"{name}.yaml").read_text(), Loader=_FunctionLoader)
        assert cfg["task"] == name and cfg["metadata"]["version"] >= 1.0
        assert cfg["metadata"]["design"] == utils.DEFAULT_DESIGN
        for metric in cfg["metric_list"]:  # utils.<fn> resolves next to the YAML in every lm-eval 0.4.x
            module, _, name = metric["aggregation"].rpartition(".")
            assert module == "utils" and getattr(utils, name) is getattr(m, name)


# ----------------------------------------------------------------------------- discovery hook
def test_with_tasks_dir_adds_the_folder_first_and_once():
    ours = str(TASKS_DIR)
    assert lm_eval_hook.with_tasks_dir(None) == [ours]
    assert lm_eval_hook.with_tasks_dir("/x") == [ours, "/x"]
    assert lm_eval_hook.with_tasks_dir(["/x", "/y"]) == [ours, "/x", "/y"]
    assert lm_eval_hook.with_tasks_dir([ours]) == [ours]


HOOK_PROBE = (
    "import site, sys; site.addsitedir(sys.argv[1]); "
    "assert 'lm_eval' not in sys.modules, 'the hook must not import lm_eval'; "
    "from lm_eval.tasks import TaskManager; "
    "tm = TaskManager(include_defaults=False); print(sorted(tm.all_subtasks), sorted(tm.all_tags))"
)


def run_probe(tmp_path: Path, **env: str) -> str:
    site_dir = tmp_path / "site"
    site_dir.mkdir(exist_ok=True)
    (site_dir / PTH.name).write_text(PTH.read_text())
    proc = subprocess.run([sys.executable, "-c", HOOK_PROBE, str(site_dir)], capture_output=True, text=True,
                          cwd=tmp_path, env={**os.environ, **env}, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def test_pth_hook_adds_tasks_to_lm_eval_task_manager(tmp_path):
    out = run_probe(tmp_path, SDE_KIT_NO_LM_EVAL_HOOK="")
    assert out.strip() == f"{sorted(TASK_NAMES)} ['sde']"


def test_pth_hook_is_turned_off_by_the_environment(tmp_path):
    assert run_probe(tmp_path, SDE_KIT_NO_LM_EVAL_HOOK="1").strip() == "[] []"
