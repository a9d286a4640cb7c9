"""The board checks the prompt the model saw: a real 2-shot lm_eval run (--limit 4, so only the prompt
and shape checks are asserted here; test_board_validate covers a full honest run)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sde_tasks.board.validate import check_submission
from sde_tasks.lm_eval_hook import tasks_dir

TASK = "sde_masa_id"
META = {"schema_version": 1, "base_model": {"id": "tiny", "revision": "local"}, "adapter": None,
        "design": "first-nomi-lines-pu-text-none", "training": None, "seed": 0, "submitter": "t", "date": "2026-11-21"}


@pytest.fixture(scope="module")
def run_files(tiny_model_dir, tmp_path_factory) -> dict[str, str]:
    out = tmp_path_factory.mktemp("run")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run([sys.executable, "-m", "lm_eval", "--include_path", str(tasks_dir()), "--model", "hf",
                           "--model_args", f"pretrained={tiny_model_dir}", "--tasks", TASK, "--limit", "4",
                           "--num_fewshot", "2", "--gen_kwargs", "max_gen_toks=2", "--log_samples",
                           "--output_path", str(out)], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return {"results": next(out.rglob("results_*.json")).read_text(encoding="utf-8"),
            "samples": next(out.rglob("samples_*.jsonl")).read_text(encoding="utf-8")}


def submission(tmp_path: Path, files: dict[str, str], results=None, samples=None) -> list[str]:
    folder = tmp_path / "sub"
    folder.mkdir(exist_ok=True)
    (folder / "submission.json").write_text(json.dumps(META))
    (folder / "results.json").write_text(json.dumps(results) if results is not None else files["results"])
    lines = samples if samples is not None else [json.loads(x) for x in files["samples"].splitlines()]
    (folder / f"samples_{TASK}.jsonl").write_text("".join(json.dumps(s) + "\n" for s in lines))
    return check_submission(folder).failures


def prompt_problems(failures: list[str]) -> list[str]:
    return [f for f in failures if "logged prompt" in f or "-shot" in f]


def test_honest_few_shot_prompts_pass_and_edited_ones_are_rejected(run_files, tmp_path):
    assert prompt_problems(submission(tmp_path, run_files)) == []
    samples = [json.loads(x) for x in run_files["samples"].splitlines()]
    first = samples[0]["arguments"]["gen_args_0"]
    first["arg_0"] = samples[0]["doc"]["completion"] + "\n" + first["arg_0"]  # the gold answer, before everything
    problems = prompt_problems(submission(tmp_path, run_files, samples=samples))
    assert problems == [f"task {TASK}: the logged prompt (arguments) is not the prompt the task pack builds for "
                        f"documents {samples[0]['doc_id']}"]
    results = json.loads(run_files["results"])
    results["n-shot"][TASK] = 5  # claims 5-shot; the samples are 2-shot
    assert any("the results say 5-shot" in p for p in prompt_problems(submission(tmp_path, run_files, results=results)))


@pytest.mark.parametrize("field, value, message", [
    ("configs", [], "results.json: field 'configs': must be an object, not list"),
    ("higher_is_better", "yes", "results.json: field 'higher_is_better': must be an object, not str"),
    ("results", {TASK: [1]}, f"results.json: field 'results.{TASK}': must be an object, not list"),
])
def test_malformed_results_are_named(run_files, tmp_path, field, value, message):
    results = {**json.loads(run_files["results"]), field: value}
    assert message in submission(tmp_path, run_files, results=results)
