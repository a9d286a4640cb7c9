"""`sde study`: a tiny-model study killed mid-way ends with the results of an uninterrupted one; a changed
plan is refused; status lists every item; submitit's local executor runs cells through the Slurm path."""
from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from sde_study.plan import require_plan

SDE = [sys.executable, "-m", "sde_datagen.cli"]
TIMINGS = ("train_seconds", "eval_seconds", "seconds")


def study_args(model: Path, out: Path, *extra: str) -> list[str]:
    return [*SDE, "study", "run", "--model", str(model), "--task", "ner", "--designs", "es-sde,ew-sde",
            "--train-size", "12", "--seeds", "0,1", "--out", str(out), "--eval-limit", "3", "--max-steps", "6",
            "--eval-batch-size", "3", "--ppl-samples", "6", "--icl-shots", "1", *extra]


@pytest.fixture(scope="module")
def train_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cfg") / "train.yaml"
    path.write_text("save_steps: 2\nbatch_size: 2\nmax_length: 256\n", encoding="utf-8")
    return path


def results(folder: Path) -> list[dict]:
    """results.jsonl without the wall-clock fields (the only ones that may differ between runs)."""
    rows = [json.loads(line) for line in (folder / "results.jsonl").read_text(encoding="utf-8").splitlines()]
    return [{k: v for k, v in row.items() if k not in TIMINGS} for row in rows]


def run(args: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=600, **kwargs)


@pytest.fixture(scope="module")
def uninterrupted(tiny_model_dir: Path, train_config: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("study") / "whole"
    done = run(study_args(tiny_model_dir, out, "--train-config", str(train_config)))
    assert done.returncode == 0, done.stderr[-3000:]
    return out


def test_uninterrupted_study_writes_every_row(uninterrupted: Path) -> None:
    rows = results(uninterrupted)
    tuned = [r for r in rows if r["kind"] == "tuned"]
    assert [(r["design"], r["seed"]) for r in tuned] == [
        ("first-nomi-lines-pu-text-none", 0), ("first-nomi-lines-pu-text-none", 1),
        ("last-nomi-natural-ou-text-none", 0), ("last-nomi-natural-ou-text-none", 1)]
    for row in tuned:
        assert row["task"] == "sde_ner" and row["n_docs"] == 3 and row["steps"] == 6
        assert {"f1", "soft_f1", "format_error_rate", "final_loss", "placement", "format"} <= set(row)
        assert row["train_environment"]["torch"] == torch.__version__ and row["train_environment"]["threads"] >= 1
    signals = {(r["design"], r["signal"]) for r in rows if r["kind"] == "signals"}
    assert signals == {(d, s) for d in ("first-nomi-lines-pu-text-none", "last-nomi-natural-ou-text-none")
                       for s in ("zero-shot", "in-context", "perplexity")}
    ppl = [r for r in rows if r.get("signal") == "perplexity"]
    assert all(r["rows"] == 6 and r["prompt_nll"] > 0 and r["output_nll"] > 0 for r in ppl)
    # logged samples, as lm_eval --log_samples writes them, for every tuned cell
    assert len(list(uninterrupted.glob("cells/*/seed-*/eval/**/samples_sde_ner_*.jsonl"))) == 4


def test_killed_study_resumes_to_the_same_results(uninterrupted: Path, tiny_model_dir: Path, train_config: Path,
                                                  tmp_path: Path) -> None:
    out = tmp_path / "killed"
    args = study_args(tiny_model_dir, out, "--train-config", str(train_config))
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline, mid_train = time.time() + 300, False
    try:  # kill it once the second cell has a checkpoint (mid-train), or failing that, mid-way
        while time.time() < deadline and proc.poll() is None:
            done = list(out.glob("cells/*/seed-*/result.json"))
            if done and list(out.glob("cells/*/seed-*/adapter/checkpoints/step-*")):
                mid_train = True
                break
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert mid_train, "the study finished before a second cell had a checkpoint"
    assert not (out / "results.jsonl").exists() or len(results(out)) < len(results(uninterrupted))

    status = run([*SDE, "study", "status", str(out)])
    assert status.returncode == 0 and "to do" in status.stdout and "done" in status.stdout

    resumed = run(args)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert results(out) == results(uninterrupted)
    status = run([*SDE, "study", "status", str(out)])
    assert "6 done, 0 running, 0 failed, 0 to do" in status.stdout


def test_changed_plan_is_refused_and_extend_only_adds(uninterrupted: Path, tiny_model_dir: Path,
                                                      train_config: Path) -> None:
    changed = run(study_args(tiny_model_dir, uninterrupted, "--train-config", str(train_config), "--icl-shots", "2"))
    assert changed.returncode == 2
    assert "another plan (icl_shots: 1 -> 2)" in changed.stderr and "Traceback" not in changed.stderr
    dropped = run([*study_args(tiny_model_dir, uninterrupted, "--train-config", str(train_config)), "--seeds", "0",
                   "--extend"])
    assert dropped.returncode == 2 and "seeds: drops [1]" in dropped.stderr
    again = run(study_args(tiny_model_dir, uninterrupted, "--train-config", str(train_config)))
    assert again.returncode == 0 and "6 of 6 work item(s) done, 0 to do" in again.stdout


def test_submitit_local_executor_runs_two_cells(tiny_model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "submitit"
    done = run([*SDE, "study", "run", "--model", str(tiny_model_dir), "--task", "ed", "--designs", "es-sde",
                "--train-size", "8", "--seeds", "0,1", "--out", str(out), "--eval-limit", "2", "--max-steps", "2",
                "--no-analysis", "--executor", "submitit-local"])
    assert done.returncode == 0, done.stderr[-3000:]
    assert "submitted 2 job(s) (submitit-local)" in done.stdout
    rows = results(out)
    assert [(r["seed"], r["task"], r["n_docs"]) for r in rows] == [(0, "sde_ed", 2), (1, "sde_ed", 2)]
    assert len(list((out / "submitit").glob("*_result.pkl"))) == 2


def test_report_and_submit(uninterrupted: Path, tmp_path: Path) -> None:
    done = run([*SDE, "study", "report", str(uninterrupted)])
    assert done.returncode == 0, done.stderr[-3000:]
    report = (uninterrupted / "REPORT.md").read_text(encoding="utf-8")
    # the design row, 2 seeds (a random model's 3 answers are one answer: collapsed)
    assert "| `first-nomi-lines-pu-text-none` (es-sde) **collapsed** |" in report and "| 2 |" in report
    for name in ("zero-shot", "in-context", "prompt perplexity", "output perplexity"):
        assert f"| {name} | " in report  # its Kendall τ / Spearman ρ row
        assert (uninterrupted / "plots" / f"signal-{name.replace(' ', '-')}.png").stat().st_size > 0
    # one training environment, naming its 4 cells
    environment = report.split("## Training environment")[1].split("\n## ")[0]
    assert environment.count(f"torch {torch.__version__}") == 1 and environment.count("` seed ") == 4
    refused = run([*SDE, "study", "submit", str(uninterrupted), "--board", str(tmp_path / "board")])
    assert refused.returncode == 1
    assert refused.stdout.count("refused: evaluated on the first 3 test documents (--eval-limit)") == 4
    assert not (tmp_path / "board" / "submissions").exists() or not any((tmp_path / "board" / "submissions").iterdir())


def test_each_cell_reproduces_with_its_lm_eval_command(uninterrupted: Path, tmp_path: Path) -> None:
    """The study's evaluation (one engine, adapters swapped) writes what the `lm_eval` command line recorded for
    the cell (and printed in REPORT.md) writes, byte for byte; the line runs as printed, in a shell whose `lm_eval`
    is this install's (vLLM's line starts with the environment its engine needs)."""
    row = next(r for r in results(uninterrupted) if r["design"] == "last-nomi-natural-ou-text-none" and r["seed"] == 1)
    command = row["lm_eval_command"]
    engine = require_plan(uninterrupted).engine
    assert command.startswith({"vllm": "VLLM_ENABLE_V1_MULTIPROCESSING=0 lm_eval --model vllm ",
                               "hf": "lm_eval --model hf "}[engine])
    assert command in (uninterrupted / "REPORT.md").read_text(encoding="utf-8")
    out = row["lm_eval_command"].split("--output_path ")[1].split()[0]
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("VLLM_ENABLE_V1_MULTIPROCESSING", None)  # the line itself must set what it needs
    cli = run(["bash", "-c", command.replace(f"--output_path {out}", f"--output_path {tmp_path / 'cli'}")],
              cwd=uninterrupted, env=env)
    assert cli.returncode == 0, cli.stderr[-3000:]
    cell = uninterrupted / "cells" / row["design"] / "seed-1"
    ours = next(cell.glob("eval/**/samples_sde_ner_*.jsonl"))
    theirs = next((tmp_path / "cli").glob("**/samples_sde_ner_*.jsonl"))
    assert ours.read_bytes() == theirs.read_bytes()
    ours_results = json.loads(next(cell.glob("eval/**/results_*.json")).read_text(encoding="utf-8"))
    theirs_results = json.loads(next((tmp_path / "cli").glob("**/results_*.json")).read_text(encoding="utf-8"))
    assert ours_results["results"] == theirs_results["results"]


def test_study_of_a_user_task(user_tasks: dict, tiny_model_dir: Path, tmp_path: Path) -> None:
    """A No-Inst design is evaluated in domain only: without an instruction it cannot know the other domain's targets."""
    spec, data = user_tasks["classification"]
    done = run([*SDE, "study", "run", "--model", str(tiny_model_dir), "--task-spec", str(spec), "--data", str(data),
                "--designs", "es-sde,none-nomi-lines-pu-text-none", "--seeds", "0", "--train-size", "4",
                "--max-steps", "2", "--eval-limit", "2", "--no-analysis", "--out", str(tmp_path / "hotel")])
    assert done.returncode == 0, done.stderr[-3000:]
    rows = results(tmp_path / "hotel")
    assert [(r["design"][:4], r["task"], r["n_docs"]) for r in rows] == [
        ("firs", "sde_hotel", 2), ("firs", "sde_hotel_ood", 2), ("none", "sde_hotel", 2)]
    assert all({"kappa", "accuracy", "format_error_rate"} <= set(r) for r in rows)


def test_a_cells_command_trains_the_same_adapter_again(uninterrupted: Path, tmp_path: Path) -> None:
    """What a board entry records instead of its adapter: the shell line that trains it again, bit for bit."""
    design, seed = "first-nomi-lines-pu-text-none", 1
    command = require_plan(uninterrupted).cell_command(design, seed, "again")
    assert command.startswith("printf ") and " --train-config again.train.yaml" in command
    shell = command.replace(" sde study run ", " " + shlex.join([*SDE, "study", "run"]) + " ", 1)
    done = run(["bash", "-c", shell], cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    adapter = Path("cells") / design / f"seed-{seed}" / "adapter" / "adapter_model.safetensors"
    assert (tmp_path / "again" / adapter).read_bytes() == (uninterrupted / adapter).read_bytes()


def test_signals_score_their_own_number_of_documents(tiny_model_dir: Path, tmp_path: Path) -> None:
    """--signal-limit: the untuned model's signals on fewer documents than the cells (it writes to the budget)."""
    out = tmp_path / "fewer"
    done = run([*SDE, "study", "run", "--model", str(tiny_model_dir), "--task", "ner", "--designs", "es-sde",
                "--train-size", "8", "--seeds", "0", "--out", str(out), "--eval-limit", "3", "--signal-limit", "2",
                "--max-steps", "2", "--ppl-samples", "4", "--icl-shots", "1"])
    assert done.returncode == 0, done.stderr[-3000:]
    docs = {r.get("signal", r["kind"]): r.get("n_docs") for r in results(out)}
    assert docs == {"tuned": 3, "zero-shot": 2, "in-context": 2, "perplexity": None}
    assert "sde_ner, first 2 test documents; in-context" in (out / "REPORT.md").read_text(encoding="utf-8")
