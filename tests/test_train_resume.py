"""A run SIGKILLed mid-way and resumed ends with the same adapter as an uninterrupted run."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import NOMI

# The real CLI in a child that gets SIGKILLed at a chosen point of an 8-step run (checkpoints every 2):
# - "checkpoint-write": it kills itself while writing the step-6 checkpoint (a half-written temp
#   dir is left; the log already has steps 5-6), so the last complete checkpoint is step-4;
# - "mid-step": the parent kills it from outside in the middle of step 5's forward pass.
CHILD = """
import os, signal, sys, tempfile, time
import sde_train.trainer as t
mode, marker = sys.argv[1], sys.argv[2]
if mode == "checkpoint-write":
    real = t.save_checkpoint
    def save_then_die(root, step, *args, **kw):
        if step == 6:
            half = tempfile.mkdtemp(prefix=".step-00000006.", dir=root)
            open(os.path.join(half, "adapter_model.safetensors"), "wb").write(b"partial")
            os.kill(os.getpid(), signal.SIGKILL)
        return real(root, step, *args, **kw)
    t.save_checkpoint = save_then_die
else:
    real_pack, calls = t.pack, []
    def slow_pack(group):
        calls.append(1)
        if len(calls) == 9:  # step 5, first micro-batch (2 per step): wait here to be killed
            open(marker, "w").close()
            time.sleep(120)
        return real_pack(group)
    t.pack = slow_pack
from sde_train.cli import main
sys.exit(main(sys.argv[3:]))
"""


def args(model: Path, dataset: Path, out: Path, *extra: str) -> list[str]:
    return ["--model", str(model), "--dataset", str(dataset), "--config", NOMI, "--output", str(out),
            "--max-steps", "8", "--save-steps", "2", "--lr", "5e-3", "--batch-size", "3", "--grad-accum", "2",
            "--lora-dropout", "0.1", *extra]


@pytest.fixture(scope="module")
def reference(tiny_model_dir, tiny_dataset_dir, tmp_path_factory) -> Path:
    """The uninterrupted run."""
    from sde_train.cli import main

    out = tmp_path_factory.mktemp("reference") / "out"
    assert main(args(tiny_model_dir, tiny_dataset_dir, out)) == 0
    return out


@pytest.mark.parametrize("mode", ["checkpoint-write", "mid-step"])
def test_kill_and_resume_matches_uninterrupted_run(tiny_model_dir, tiny_dataset_dir, reference, tmp_path, mode):
    import time

    from safetensors.torch import load_file

    from sde_train.cli import main

    out, marker = tmp_path / "killed", tmp_path / "marker"
    child = subprocess.Popen([sys.executable, "-c", CHILD, mode, str(marker),
                              *args(tiny_model_dir, tiny_dataset_dir, out)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if mode == "mid-step":
        deadline = time.monotonic() + 120
        while not marker.exists() and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert marker.exists(), "the child never reached step 5"
        child.send_signal(signal.SIGKILL)
    stderr = child.communicate(timeout=120)[1]
    assert child.returncode == -signal.SIGKILL, stderr[-2000:]
    assert [p.name for p in (out / "checkpoints").glob("step-*")] == ["step-00000004"]
    assert not (out / "adapter_model.safetensors").exists()

    assert main(args(tiny_model_dir, tiny_dataset_dir, out)) == 2  # refuses to overwrite without --resume
    assert main(args(tiny_model_dir, tiny_dataset_dir, out, "--resume")) == 0

    ref, resumed = (load_file(d / "adapter_model.safetensors") for d in (reference, out))
    assert ref.keys() == resumed.keys()
    for key in ref:
        torch.testing.assert_close(resumed[key], ref[key], rtol=1e-5, atol=1e-7)
    assert any(v.abs().sum() > 0 for k, v in ref.items() if "lora_B" in k)
    steps = [json.loads(line) for line in (out / "training_log.jsonl").read_text().splitlines()]
    ref_steps = [json.loads(line) for line in (reference / "training_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in steps] == list(range(1, 9))  # steps the killed run logged after step 4 replaced
    assert [r["loss"] for r in steps] == pytest.approx([r["loss"] for r in ref_steps], rel=1e-5)
    assert not (out / "checkpoints").exists()


def test_resume_with_other_settings_is_refused(tiny_model_dir, tiny_dataset_dir, tmp_path):
    from sde_train.config import TrainConfig
    from sde_train.errors import TrainError
    from sde_train.trainer import RunKey, Trainable, build_model, load_checkpoint, save_checkpoint

    cfg = TrainConfig(model=str(tiny_model_dir), dataset=str(tiny_dataset_dir), config=NOMI,
                      output=str(tmp_path), max_steps=4)
    model = build_model(cfg, torch.device("cpu"))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad])
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    parts = Trainable(model, opt, sched)
    ckpt = save_checkpoint(tmp_path / "checkpoints", 2, parts, RunKey(cfg.fingerprint(), "data", 1))
    assert load_checkpoint(ckpt, parts, RunKey(cfg.fingerprint(), "data", 1)) == 2
    other = TrainConfig(**{**cfg.__dict__, "lr": 1e-3})
    with pytest.raises(TrainError, match="other training settings"):
        load_checkpoint(ckpt, parts, RunKey(other.fingerprint(), "data", 1))
    with pytest.raises(TrainError, match="dataset changed"):
        load_checkpoint(ckpt, parts, RunKey(cfg.fingerprint(), "other data", 1))
