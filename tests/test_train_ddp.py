"""`torchrun --nproc_per_node 2 -m sde_train` on CPU (gloo): two processes train one model."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch
from conftest import NOMI

# The real CLI under torchrun, plus a record per rank: its final adapter weights and the writers
# it called, kept outside the output folder.
WRAPPER = """
import os, sys
from pathlib import Path
from safetensors.torch import save_file
import sde_train.trainer as t
side = Path(os.environ["SIDE"]); rank = os.environ["RANK"]
models = []
real_build = t.build_model
t.build_model = lambda *a, **k: models.append(real_build(*a, **k)) or models[-1]
for name in ("save_adapter", "save_checkpoint", "open_log"):
    def spy(*a, _real=getattr(t, name), _name=name, **k):
        with open(side / f"writes-{rank}.txt", "a") as fh:
            fh.write(_name + "\\n")
        return _real(*a, **k)
    setattr(t, name, spy)
from sde_train.cli import main
code = main(sys.argv[1:])
from peft import get_peft_model_state_dict
save_file({k: v.contiguous() for k, v in get_peft_model_state_dict(models[0]).items()}, side / f"rank{rank}.safetensors")
sys.exit(code)
"""


def test_two_gloo_processes_train_one_model(tiny_model_dir, tiny_dataset_dir, tmp_path):
    from safetensors.torch import load_file

    from sde_train.cli import main

    common = ["--model", str(tiny_model_dir), "--dataset", str(tiny_dataset_dir), "--config", NOMI,
              "--max-steps", "3", "--save-steps", "2", "--lr", "1e-2", "--lora-dropout", "0",
              "--precision", "fp32"]  # the replicas and the single process are compared to 5e-5
    script = tmp_path / "wrapper.py"
    script.write_text(WRAPPER)
    side = tmp_path / "side"
    side.mkdir()
    torchrun = Path(sys.executable).parent / "torchrun"
    run = subprocess.run(
        [str(torchrun), "--standalone", "--nproc_per_node", "2", str(script), *common,
         "--output", str(tmp_path / "ddp"), "--batch-size", "2"],
        capture_output=True, text=True, env={**__import__("os").environ, "SIDE": str(side), "OMP_NUM_THREADS": "1"})
    assert run.returncode == 0, run.stderr[-3000:]

    rank0, rank1 = load_file(side / "rank0.safetensors"), load_file(side / "rank1.safetensors")
    for key in rank0:
        assert torch.equal(rank0[key], rank1[key]), key  # identical replicas
    assert not (side / "writes-1.txt").exists()  # only rank 0 writes
    assert set((side / "writes-0.txt").read_text().split()) == {"open_log", "save_checkpoint", "save_adapter"}
    written = load_file(tmp_path / "ddp" / "adapter_model.safetensors")
    for key in written:
        assert torch.equal(written[key], rank0[key])

    # 2 ranks x batch 2 read the same samples per step as 1 process x batch 4: the same model
    assert main([*common, "--output", str(tmp_path / "single"), "--batch-size", "4"]) == 0
    single = load_file(tmp_path / "single" / "adapter_model.safetensors")
    assert any(v.abs().sum() > 0 for k, v in single.items() if "lora_B" in k)
    for key in single:
        torch.testing.assert_close(written[key], single[key], rtol=1e-3, atol=5e-5)  # Adam: ~lr per step
