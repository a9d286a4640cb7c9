"""Training reads the rows on disk: a re-export in place is seen, and --resume across it is refused."""
from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from sde_datagen.cli import main as sde

VARIANT = "first-nomi-lines-pu-text-none"


def export(out, seed: int, *flags: str) -> None:
    assert sde(["data", "export", "--task", "masa", "--designs", "es-sde", "--train-size", "16", "--seed", str(seed),
                "--splits", "train", "--out", str(out), *flags]) == 0


def test_reexport_in_place_then_train_uses_the_new_rows(tiny_model_dir, tmp_path):
    import datasets
    import torch

    from sde_train.config import TrainConfig
    from sde_train.data import data_fingerprint, load_rows
    from sde_train.errors import TrainError
    from sde_train.trainer import RunKey, Trainable, build_model, save_checkpoint, train

    out = tmp_path / "fpz"
    export(out, 0)
    old = datasets.load_dataset(str(out), VARIANT, split="train")  # fills datasets' cache under the folder name
    old_rows = load_rows(str(out), VARIANT, "train")
    export(out, 7, "--overwrite")
    on_disk = pq.read_table(out / VARIANT / "train.parquet").to_pylist()
    rows = load_rows(str(out), VARIANT, "train")
    assert [r["prompt"] for r in rows] == [r["prompt"] for r in on_disk] != [r["prompt"] for r in old_rows]
    assert old[0]["id"] != on_disk[0]["id"]  # the export really changed

    cfg = TrainConfig(model=str(tiny_model_dir), dataset=str(out), config=VARIANT, output=str(tmp_path / "run"),
                      max_steps=2, batch_size=4)
    summary = train(cfg.check())
    assert summary["data_fingerprint"] == data_fingerprint(on_disk)
    assert f"`{data_fingerprint(on_disk)}`" in (tmp_path / "run" / "README.md").read_text(encoding="utf-8")

    # a checkpoint written on the old rows: --resume on the new ones is refused, naming the step
    resumed = TrainConfig(**{**cfg.__dict__, "output": str(tmp_path / "resume"), "resume": True})
    model = build_model(resumed, torch.device("cpu"))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad])
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    save_checkpoint(tmp_path / "resume" / "checkpoints", 1, Trainable(model, opt, sched),
                    RunKey(resumed.fingerprint(), data_fingerprint(old_rows), 1))
    with pytest.raises(TrainError, match="the dataset changed since step 1"):
        train(resumed)
