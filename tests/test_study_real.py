"""A real model learns through `sde study run`: SmolLM2-135M-Instruct, LoRA-tuned for a few dozen steps on NER in
ES-SDE, makes fewer format errors on the first test documents than the untuned model given the same prompts.

Several minutes of CPU: the study trains one cell and evaluates it, then the untuned model is evaluated by the
study's own evaluation function on the same documents. Run with `-s` to see the measured rates.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SDE = [sys.executable, "-m", "sde_datagen.cli"]
STEPS, EVAL_LIMIT = 32, 24
HANG_GUARD = 4 * 3600  # seconds: only a hung run may reach it; a slow machine never does


@pytest.mark.xdist_group("smollm2")  # one SmolLM2 conversion per test run
def test_tuned_smollm2_makes_fewer_format_errors_than_the_untuned_model(smollm2_dir: Path, tmp_path: Path) -> None:
    from sde_study.engines import HFEngine, same_generation
    from sde_study.evaluate import generated
    from sde_study.plan import require_plan
    from sde_study.work import evaluate_cell

    config = tmp_path / "train.yaml"
    config.write_text("lr: 5.0e-4\nmax_length: 512\n", encoding="utf-8")
    out = tmp_path / "study"
    done = subprocess.run([*SDE, "study", "run", "--model", str(smollm2_dir), "--task", "ner", "--designs", "es-sde",
                           "--train-size", "160", "--seeds", "0", "--max-steps", str(STEPS), "--train-config",
                           str(config), "--chat-template", "--eval-limit", str(EVAL_LIMIT), "--eval-batch-size", str(EVAL_LIMIT),
                           "--max-gen-toks", "128", "--no-analysis", "--out", str(out)],
                          capture_output=True, text=True, timeout=HANG_GUARD)
    assert done.returncode == 0, done.stderr[-3000:]
    [tuned] = [json.loads(line) for line in (out / "results.jsonl").read_text(encoding="utf-8").splitlines()]
    assert (tuned["design"], tuned["task"], tuned["steps"]) == ("first-nomi-lines-pu-text-none", "sde_ner", STEPS)

    plan = require_plan(out)
    # transformers in this process: a vLLM engine changes the process that holds it (the study ran in its own)
    hf = HFEngine(plan.model, plan.eval_batch_size)
    untuned = evaluate_cell(out, plan, tuned["design"], hf, None, tmp_path / "untuned", plan.eval_limit)[0].scores["sde_ner"]
    print(f"\nSmolLM2-135M-Instruct ({plan.engine}), NER ES-SDE, chat template, first {EVAL_LIMIT} test documents: format-error rate "
          f"untuned {untuned['format_error_rate']:.3f} (F1 {untuned['f1']:.3f}), tuned {STEPS} steps "
          f"{tuned['format_error_rate']:.3f} (F1 {tuned['f1']:.3f}, final loss {tuned['final_loss']:.3f}; "
          f"train {tuned['train_seconds']:.0f}s, eval {tuned['eval_seconds']:.0f}s)")
    assert tuned["n_docs"] == untuned["n_docs"] == EVAL_LIMIT
    assert tuned["format_error_rate"] < untuned["format_error_rate"]

    if plan.engine == "vllm":  # the tuned cell's documents through transformers + PEFT: the same strings
        cell = out / "cells" / tuned["design"] / "seed-0"
        found, _ = evaluate_cell(out, plan, tuned["design"], hf, cell / "adapter", tmp_path / "hf-tuned",
                                 plan.eval_limit)
        theirs, ours = generated(found.logs), generated(cell / "eval")
        same = sum(same_generation(a, b) for a, b in zip(ours, theirs))
        print(f"tuned: vLLM and HF generate the same string for {same} of {len(ours)} documents")
        assert len(ours) == len(theirs) == EVAL_LIMIT and same >= 0.98 * EVAL_LIMIT

