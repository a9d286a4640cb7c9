"""The study's evaluation engines: `auto` falls back to hf with one line, `vllm` without vLLM is a clear error,
and vLLM (adapters swapped on one engine) generates what transformers + PEFT generate."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sde_datagen.errors import UserError
from sde_study import engines

SDE = [sys.executable, "-m", "sde_datagen.cli"]
HANG_GUARD = 1800  # seconds: only a hung run may reach it


@pytest.fixture
def broken_vllm(tmp_path: Path) -> dict[str, str]:
    """An environment in which `vllm` is found but does not import (as a CUDA torchvision beside CPU torch does)."""
    (tmp_path / "shadow" / "vllm").mkdir(parents=True)
    (tmp_path / "shadow" / "vllm" / "__init__.py").write_text("raise ImportError('operator torchvision::nms does not "
                                                              "exist')\n", encoding="utf-8")
    import os

    return {**os.environ, "PYTHONPATH": str(tmp_path / "shadow")}


def test_resolve_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engines, "vllm_problem", lambda: "vLLM is not installed")
    engine, note = engines.resolve_engine("auto")
    assert engine == "hf" and "vLLM is not installed" in note and "make install-vllm" in note
    assert engines.resolve_engine("hf") == ("hf", None)
    with pytest.raises(UserError, match="--engine vllm: vLLM is not installed"):
        engines.resolve_engine("vllm")
    monkeypatch.setattr(engines, "vllm_problem", lambda: None)
    assert engines.resolve_engine("auto") == ("vllm", None)


def test_lora_rank_holds_the_adapters_rank() -> None:
    assert [engines.vllm_lora_rank(r) for r in (1, 8, 9, 16, 33)] == [8, 8, 16, 16, 64]


def test_study_without_a_working_vllm(tiny_model_dir: Path, tmp_path: Path, broken_vllm: dict[str, str]) -> None:
    base = [*SDE, "study", "run", "--model", str(tiny_model_dir), "--task", "ner", "--designs", "es-sde",
            "--train-size", "8", "--seeds", "0", "--max-steps", "2", "--eval-limit", "2", "--max-gen-toks", "8",
            "--no-analysis"]
    asked = subprocess.run([*base, "--engine", "vllm", "--out", str(tmp_path / "asked")], capture_output=True,
                           text=True, env=broken_vllm, timeout=HANG_GUARD)
    assert asked.returncode == 2 and "Traceback" not in asked.stderr
    assert "--engine vllm: vLLM does not import (ImportError: operator torchvision::nms" in asked.stderr
    assert not (tmp_path / "asked").exists()

    auto = subprocess.run([*base, "--out", str(tmp_path / "auto")], capture_output=True, text=True, env=broken_vllm,
                          timeout=HANG_GUARD)
    assert auto.returncode == 0, auto.stderr[-3000:]
    notes = [line for line in auto.stderr.splitlines() if line.startswith("sde study: evaluating with hf")]
    assert len(notes) == 1 and "vLLM does not import" in notes[0]
    assert "engine: hf" in (tmp_path / "auto" / "study.yaml").read_text(encoding="utf-8")
    row = json.loads((tmp_path / "auto" / "results.jsonl").read_text(encoding="utf-8").splitlines()[0])
    assert row["lm_eval_command"].startswith(f"lm_eval --model hf --model_args pretrained={tiny_model_dir},peft=cells/")

    rerun = subprocess.run([*base, "--out", str(tmp_path / "auto")], capture_output=True, text=True, timeout=HANG_GUARD)
    assert rerun.returncode == 0, rerun.stderr[-3000:]  # auto keeps the engine the study started with
    assert "1 of 1 work item(s) done, 0 to do" in rerun.stdout
    assert "engine: hf" in (tmp_path / "auto" / "study.yaml").read_text(encoding="utf-8")


def test_vllm_generates_what_hf_generates_on_the_tiny_model(tiny_model_dir: Path, tmp_path: Path) -> None:
    """The same study with each engine (in subprocesses: a vLLM engine changes the process that holds it): the
    untuned model's zero-shot outputs and the tuned cell's outputs are the same strings."""
    pytest.importorskip("vllm")
    from sde_study.evaluate import generated

    config = tmp_path / "train.yaml"
    config.write_text("lr: 1.0e-2\nbatch_size: 4\nmax_length: 256\n", encoding="utf-8")
    for engine in ("vllm", "hf"):
        done = subprocess.run([*SDE, "study", "run", "--model", str(tiny_model_dir), "--task", "ner", "--designs",
                               "es-sde", "--train-size", "16", "--seeds", "0", "--max-steps", "30", "--train-config",
                               str(config), "--eval-limit", "8", "--max-gen-toks", "24", "--icl-shots", "0",
                               "--ppl-samples", "4", "--engine", engine, "--out", str(tmp_path / engine)],
                              capture_output=True, text=True, timeout=HANG_GUARD)
        assert done.returncode == 0, done.stderr[-3000:]
    design = "first-nomi-lines-pu-text-none"
    for logs in (f"cells/{design}/seed-0/eval", f"signals/{design}/zero-shot"):
        ours, theirs = generated(tmp_path / "vllm" / logs), generated(tmp_path / "hf" / logs)
        assert len(ours) == 8 and ours == theirs
    tuned = generated(tmp_path / "hf" / f"cells/{design}/seed-0/eval")
    assert tuned != generated(tmp_path / "hf" / f"signals/{design}/zero-shot")  # the adapter changes the outputs


def test_vllm_study_trains_with_torchrun_after_its_engine_started(tiny_model_dir: Path, tmp_path: Path) -> None:
    """The second cell trains (2 processes) after the worker's vLLM engine has evaluated the first: training runs in
    processes of its own, with the environment as it was before the engine started, and the study completes."""
    pytest.importorskip("vllm")
    done = subprocess.run([*SDE, "study", "run", "--model", str(tiny_model_dir), "--task", "ner", "--designs", "es-sde",
                           "--train-size", "8", "--seeds", "0,1", "--max-steps", "2", "--eval-limit", "2",
                           "--max-gen-toks", "8", "--no-analysis", "--engine", "vllm", "--nproc-per-node", "2",
                           "--out", str(tmp_path / "study")], capture_output=True, text=True, timeout=HANG_GUARD)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [json.loads(line) for line in (tmp_path / "study" / "results.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [(r["seed"], r["n_docs"]) for r in rows] == [(0, 2), (1, 2)]


def test_vllm_settings_follow_the_flags_then_the_study_then_the_defaults() -> None:
    """A study planned before the settings keeps vLLM's defaults on a rerun (its plan unchanged); a new study records
    the defaults; a flag overrides either."""
    from sde_study.plan import Plan
    from sde_study.planning import PlanRequest, vllm_settings

    none = PlanRequest(model="m")
    old = Plan(model="m", task="ner", designs=["d"], seeds=[0], engine="vllm")
    assert vllm_settings(none, "vllm", old) is None
    assert vllm_settings(none, "vllm", None) == engines.VLLMSettings(kv_block=32, dtype="auto", runaway_stop=False)
    asked = PlanRequest(model="m", runaway_stop=True)
    assert vllm_settings(asked, "vllm", old) == engines.VLLMSettings(runaway_stop=True)
    planned = Plan(model="m", task="ner", designs=["d"], seeds=[0], engine="vllm",
                   vllm=engines.VLLMSettings(kv_block=64, dtype="bfloat16"))
    assert vllm_settings(none, "vllm", planned) == planned.vllm
    assert vllm_settings(none, "hf", None) is None
    assert Plan.from_dict(yaml.safe_load(planned.to_yaml()), "study.yaml") == planned  # recorded, read back
    assert planned.vllm_flags() == ["--kv-block", "64", "--eval-dtype", "bfloat16", "--no-runaway-stop"]
    assert old.vllm_flags() == ["--no-runaway-stop"]


STOP_SCRIPT = """
import json, sys
from vllm import SamplingParams
from sde_study.vllm_model import SwappableVLLM
lm = SwappableVLLM(pretrained=sys.argv[1], dtype="float32", batch_size="auto")
prompts = [lm.tokenizer.encode(t) for t in ("DNA: NONE", "protein: IL-2, IL-2", "The cell line", "RNA")]
params = SamplingParams(max_tokens=24, temperature=0)
whole = [o.outputs[0].text for o in lm._model_generate(prompts, generate=True, sampling_params=params)]
lm.stop_point = lambda text: text[:3] if len(text) >= 3 else None
stopped = [o.outputs[0].text for o in lm._model_generate(prompts, generate=True, sampling_params=params)]
lm.stop_point = None
again = [o.outputs[0].text for o in lm._model_generate(prompts, generate=True, sampling_params=params)]
print(json.dumps([whole, stopped, again]))
"""


def test_vllm_runaway_stop_keeps_what_the_stop_point_says_and_leaves_other_answers(tiny_model_dir: Path) -> None:
    """The engine's runaway stop aborts an answer where its stop point says (looked at every CHECK_EVERY tokens) and
    returns the text the stop point keeps; answers it never stops are generated as without it."""
    pytest.importorskip("vllm")
    done = subprocess.run([sys.executable, "-c", STOP_SCRIPT, str(tiny_model_dir)], capture_output=True, text=True,
                          timeout=HANG_GUARD, env={**os.environ, "VLLM_ENABLE_V1_MULTIPROCESSING": "0"})
    assert done.returncode == 0, done.stderr[-3000:]
    whole, stopped, again = json.loads(done.stdout.strip().splitlines()[-1])
    assert again == whole
    assert all(s in (w, w[:3]) for w, s in zip(whole, stopped))
    assert any(s != w for w, s in zip(whole, stopped))  # the tiny model's answers run past 8 tokens
