"""The real `lm_eval` CLI, in a subprocess, on the tiny local model: the SDE tasks end to end.

`lm_eval` finds the tasks through the sde_kit_lm_eval.pth hook: the installed one when packaging
put it into site-packages, else the same file in a temporary site dir (site.addsitedir runs it).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from sde_datagen.data import bundled_dir
from sde_datagen.design import resolve_design
from sde_datagen.records import load_records
from sde_datagen.render import render_sample
from sde_datagen.tasks import load_task
from sde_tasks import lm_eval_hook
from sde_datagen.families import FAMILIES

BIN = Path(sys.executable).parent
PTH = Path(lm_eval_hook.__file__).with_name("sde_kit_lm_eval.pth")
WRAPPER = ("import site, sys; site.addsitedir(sys.argv.pop(1)); sys.argv[0] = 'lm_eval'; "
           "from lm_eval.__main__ import cli_evaluate; cli_evaluate()")
FAST = ["--device", "cpu", "--limit", "2", "--gen_kwargs", "max_gen_toks=4"]
METRICS = {"sde_masa_id": FAMILIES["classification"].metrics, "sde_masa_ood": FAMILIES["classification"].metrics,
           "sde_ed": FAMILIES["extraction"].metrics, "sde_ner": FAMILIES["extraction"].metrics}


@pytest.fixture(scope="module")
def lm_eval_cmd(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    if (Path(sysconfig.get_paths()["purelib"]) / PTH.name).exists():
        return [str(BIN / "lm_eval")]
    site_dir = tmp_path_factory.mktemp("site")
    (site_dir / PTH.name).write_text(PTH.read_text())
    return [sys.executable, "-c", WRAPPER, str(site_dir)]


@pytest.fixture(scope="module")
def adapter_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained LoRA adapter of the tiny model (enough for lm_eval's `peft=`)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    peft_model = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"))
    out = tmp_path_factory.mktemp("adapter")
    peft_model.save_pretrained(out)
    return out


def run(cmd: list[str], cwd: Path, expect_ok: bool = True) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != lm_eval_hook.ENV_DISABLE}
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    if expect_ok:
        assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


def results_and_samples(out: Path) -> tuple[dict, dict[str, list[dict]]]:
    (results_file,) = out.glob("**/results_*.json")
    samples = {}
    for path in out.glob("**/samples_*.jsonl"):
        task = path.name[len("samples_"):].rsplit("_", 1)[0]
        samples[task] = [json.loads(line) for line in path.read_text().splitlines()]
    return json.loads(results_file.read_text()), samples


def context(sample: dict) -> str:
    return sample["arguments"]["gen_args_0"]["arg_0"]


def check_metrics(results: dict, tasks: list[str]) -> None:
    for task in tasks:
        values = results["results"][task]
        for metric in METRICS[task]:
            assert isinstance(values[f"{metric},none"], float), (task, metric)
        assert results["configs"][task]["metadata"]["version"] == 1.0
        assert results["n-samples"][task]["effective"] == 2


def test_literal_lm_eval_runs_all_four_tasks_and_writes_every_metric(lm_eval_cmd, tiny_model_dir, tmp_path):
    tasks = list(METRICS)
    run([*lm_eval_cmd, "--tasks", ",".join(tasks), "--model", "hf", "--model_args", f"pretrained={tiny_model_dir}",
         *FAST, "--output_path", str(tmp_path / "out"), "--log_samples"], cwd=tmp_path)
    results, samples = results_and_samples(tmp_path / "out")
    check_metrics(results, tasks)
    for task in tasks:  # the prompt lm_eval sends is the training prompt, verbatim
        assert len(samples[task]) == 2
        for sample in samples[task]:
            assert context(sample) == sample["doc"]["prompt"]
            assert sample["doc"]["design"] == resolve_design("es-sde").id
    spec = load_task("ner")
    record = load_records(spec, bundled_dir("ner") / "test.jsonl")[0]
    first = next(s for s in samples["sde_ner"] if s["doc_id"] == 0)
    assert context(first) == render_sample(spec, resolve_design("es-sde", spec.family), record).prompt


def test_lm_eval_with_a_lora_adapter_through_peft(lm_eval_cmd, tiny_model_dir, adapter_dir, tmp_path):
    run([*lm_eval_cmd, "--tasks", "sde_ner", "--model", "hf",
         "--model_args", f"pretrained={tiny_model_dir},peft={adapter_dir}", *FAST,
         "--output_path", str(tmp_path / "out")], cwd=tmp_path)
    results, _ = results_and_samples(tmp_path / "out")
    check_metrics(results, ["sde_ner"])
    assert str(adapter_dir) in json.dumps(results["config"]["model_args"])


def test_chat_template_prompt_is_the_training_prompt(lm_eval_cmd, tiny_model_dir, tmp_path):
    from transformers import AutoTokenizer

    run([*lm_eval_cmd, "--tasks", "sde_masa_id", "--model", "hf", "--model_args", f"pretrained={tiny_model_dir}",
         "--apply_chat_template", *FAST, "--output_path", str(tmp_path / "out"), "--log_samples"], cwd=tmp_path)
    results, samples = results_and_samples(tmp_path / "out")
    check_metrics(results, ["sde_masa_id"])
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    for sample in samples["sde_masa_id"]:
        doc = sample["doc"]
        user = [{"role": "user", "content": doc["prompt"]}]
        expected = tokenizer.apply_chat_template(user, tokenize=False, add_generation_prompt=True)
        assert context(sample) == expected
        trained = tokenizer.apply_chat_template(
            [*user, {"role": "assistant", "content": doc["completion"]}], tokenize=False)
        assert trained.startswith(expected)  # the tuned text continues exactly where the eval prompt ends


def test_sde_eval_passthrough_with_a_design_from_metadata_and_fewshot(tiny_model_dir, tmp_path):
    run([str(BIN / "sde"), "eval", "--tasks", "sde_ed", "--model", "hf", "--model_args", f"pretrained={tiny_model_dir}",
         "--metadata", '{"design": "ew-sde"}', "--num_fewshot", "1", *FAST,
         "--output_path", str(tmp_path / "out"), "--log_samples"], cwd=tmp_path)
    results, samples = results_and_samples(tmp_path / "out")
    check_metrics(results, ["sde_ed"])
    assert results["configs"]["sde_ed"]["metadata"]["design"] == "ew-sde"
    spec = load_task("ed")
    design = resolve_design("ew-sde", spec.family)
    dev = {s.prompt: s.completion for s in (render_sample(spec, design, r)
                                             for r in load_records(spec, bundled_dir("ed") / "valid.jsonl"))}
    for sample in samples["sde_ed"]:
        doc = sample["doc"]
        assert doc["design"] == design.id
        shot, _, rest = context(sample).partition("\n\n")
        assert rest == doc["prompt"]  # one dev example, the delimiter, then the test prompt
        assert any(shot == prompt + completion for prompt, completion in dev.items())


def test_no_inst_design_on_ood_fails_clearly(lm_eval_cmd, tiny_model_dir, tmp_path):
    proc = run([*lm_eval_cmd, "--tasks", "sde_masa_ood", "--model", "hf",
                "--model_args", f"pretrained={tiny_model_dir}", *FAST,
                "--metadata", '{"design": "none-nomi-lines-pu-text-none"}'], cwd=tmp_path, expect_ok=False)
    assert proc.returncode != 0
    assert "has no instruction (No-Inst)" in proc.stderr.splitlines()[-1]


def test_lm_eval_ls_tasks_lists_the_four_and_the_tag(lm_eval_cmd, tmp_path):
    out = run([*lm_eval_cmd, "ls", "tasks"], cwd=tmp_path).stdout
    listed = {cell.strip() for line in out.splitlines() for cell in line.split("|")[1:2]}
    assert {*METRICS, "sde"} <= listed
