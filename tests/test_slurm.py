"""`--executor slurm` against a real single-node Slurm cluster (scripts/slurm-cluster.sh; .ci/run starts it): the
same rows as a local run, a race rung by rung, an array task requeued mid-training or cancelled, refused
submissions, and `sde study status` beside the queue. A cell is held mid-training by a hook the job's Python loads
(sitecustomize), so the test acts on a condition (a checkpoint on disk), never after a number of seconds."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

SDE = [sys.executable, "-m", "sde_datagen.cli"]
TIMINGS = ("train_seconds", "eval_seconds", "seconds")
HANG_GUARD = 900  # seconds: only a hung cluster reaches it
pytestmark = pytest.mark.xdist_group("slurm")  # one at a time: the cluster has the machine's cores

HOLD = '''
import os
if os.environ.get("SLURM_JOB_ID") and os.environ.get("SDE_TEST_HOLD"):
    import pathlib, time
    import sde_train.trainer as t
    marks = pathlib.Path(os.environ["SDE_TEST_HOLD"])
    task = os.environ.get("SLURM_ARRAY_JOB_ID", os.environ["SLURM_JOB_ID"])
    task += "_" + os.environ["SLURM_ARRAY_TASK_ID"] if "SLURM_ARRAY_TASK_ID" in os.environ else ""
    real_save, real_load = t.save_checkpoint, t.load_checkpoint
    def save(root, step, *args, **kwargs):
        path = real_save(root, step, *args, **kwargs)
        try:  # the first checkpoint of the study holds its task here, until the test requeues or cancels it
            os.close(os.open(marks / "claimed", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return path
        (marks / "held.tmp").write_text(task)
        os.rename(marks / "held.tmp", marks / "held")
        while True:
            time.sleep(0.1)
    def load(*args, **kwargs):
        step = real_load(*args, **kwargs)
        (marks / f"resumed-{task}").write_text(str(step))
        return step
    t.save_checkpoint, t.load_checkpoint = save, load
'''


@pytest.fixture(scope="module")
def cluster() -> None:
    """The local cluster, running (CI sets SDE_REQUIRE_SLURM=1: a missing cluster then fails, never skips)."""
    try:
        up = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=30)
        running = up.returncode == 0 and any(s in up.stdout for s in ("idle", "mix", "alloc"))
    except (OSError, subprocess.TimeoutExpired):
        running = False
    if not running:
        if os.environ.get("SDE_REQUIRE_SLURM") == "1":
            pytest.fail("no Slurm cluster answers sinfo; `bash scripts/slurm-cluster.sh start` starts one")
        pytest.skip("no Slurm cluster here: `bash scripts/slurm-cluster.sh start` starts one (as root)")


def study(model: Path, out: Path, *extra: str, command: str = "run") -> list[str]:
    seeds = ["--seeds", "0,1"] if command == "run" else ["--max-seeds", "2"]
    return [*SDE, "study", command, "--model", str(model), "--task", "ner", "--designs", "es-sde,ew-sde", *seeds,
            "--train-size", "12", "--eval-limit", "3", "--max-steps", "6", "--eval-batch-size", "3", "--no-analysis",
            "--engine", "hf", "--out", str(out), *extra]


def rows(folder: Path) -> list[dict]:
    found = [json.loads(line) for line in (folder / "results.jsonl").read_text(encoding="utf-8").splitlines()]
    return [{k: v for k, v in row.items() if k not in TIMINGS} for row in found]


def run(args: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=HANG_GUARD, **kwargs)


@pytest.fixture(scope="module")
def train_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cfg") / "train.yaml"
    path.write_text("save_steps: 2\nbatch_size: 2\nmax_length: 256\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def local_rows(tiny_model_dir: Path, train_config: Path, tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    out = tmp_path_factory.mktemp("local") / "study"
    done = run(study(tiny_model_dir, out, "--train-config", str(train_config)), cwd=out.parent)  # not in a git repo
    assert done.returncode == 0, done.stderr[-3000:]
    assert "fatal:" not in done.stderr  # lm-eval asks git for the commit; git's complaint stays out of the terminal
    return rows(out)


def test_a_study_on_slurm_with_default_flags_ends_with_the_rows_of_a_local_run(cluster, tiny_model_dir, train_config,
                                                                              local_rows, tmp_path) -> None:
    out = tmp_path / "slurm"
    done = run(study(tiny_model_dir, out, "--train-config", str(train_config), "--executor", "slurm"))
    assert done.returncode == 0, done.stderr[-3000:]
    # no GPU asked of a CPU partition, the partition's time limit: said in one line
    assert "slurm: each array task asks for partition cpu (the default), 0 GPU(s) (the partition has none), 720 min " \
           "(the partition's limit)" in done.stdout
    assert "submitted 4 job(s) (slurm)" in done.stdout
    assert "Traceback" not in done.stderr and "sacct" not in done.stderr and "fatal:" not in done.stderr
    assert rows(out) == local_rows
    assert (out / "REPORT.md").is_file()


def test_a_race_on_slurm_decides_each_rung_one_job_array(cluster, tiny_model_dir, train_config, tmp_path) -> None:
    done = run(study(tiny_model_dir, tmp_path / "race", "--train-config", str(train_config), "--executor", "slurm",
                     command="race"))
    assert done.returncode == 0, done.stderr[-3000:]
    rungs = [line for line in done.stdout.splitlines() if ": race rung " in line]
    arrays = [line for line in done.stdout.splitlines() if line.startswith("submitted ")]
    assert len(rungs) == len(arrays) >= 1 and all("(slurm)" in line for line in arrays)
    assert "the race is decided" in done.stdout and "Traceback" not in done.stderr


def held(marks: Path, proc: subprocess.Popen) -> str:
    """The array task the hook holds at its first checkpoint (waits for it to be held)."""
    started = time.monotonic()
    while not (marks / "held").is_file():
        assert proc.poll() is None, f"the study ended before a cell was held: {proc.communicate()[1][-3000:]}"
        assert time.monotonic() - started < HANG_GUARD, "no cell reached its first checkpoint"
        time.sleep(0.1)
    return (marks / "held").read_text()


def hold_env(tmp_path: Path) -> tuple[dict[str, str], Path]:
    hook, marks = tmp_path / "hook", tmp_path / "marks"
    hook.mkdir()
    marks.mkdir()
    (hook / "sitecustomize.py").write_text(HOLD, encoding="utf-8")
    return {**os.environ, "PYTHONPATH": f"{hook}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
            "SDE_TEST_HOLD": str(marks)}, marks


def test_an_array_task_requeued_mid_training_resumes_and_the_study_ends_whole(cluster, tiny_model_dir, train_config,
                                                                              local_rows, tmp_path) -> None:
    env, marks = hold_env(tmp_path)
    out = tmp_path / "requeued"
    proc = subprocess.Popen(study(tiny_model_dir, out, "--train-config", str(train_config), "--executor", "slurm",
                                  "--slurm-time", "20"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)
    try:
        task = held(marks, proc)
        jobs = json.loads((out / "submitit" / "slurm_jobs.json").read_text(encoding="utf-8"))
        item = jobs[task][0]
        assert list((out / "cells" / item / "adapter" / "checkpoints").glob("step-*")), "held before a checkpoint"
        status = run([*SDE, "study", "status", str(out)])
        assert status.returncode == 0 and f"[job {task} RUNNING on " in status.stdout, status.stdout
        subprocess.run(["scontrol", "requeue", task], check=True, timeout=60)
        stdout, stderr = proc.communicate(timeout=HANG_GUARD)
    finally:
        if proc.poll() is None:
            proc.kill()
            subprocess.run(["scancel", *json.loads((out / "submitit" / "slurm_jobs.json").read_text())], timeout=60)
    assert proc.returncode == 0, stderr[-3000:]
    assert (marks / f"resumed-{task}").read_text() == "2"  # from its step-2 checkpoint, not from the start
    assert rows(out) == local_rows and (out / "REPORT.md").is_file()


def test_a_cancelled_array_task_leaves_its_items_to_do_and_the_rerun_completes(cluster, tiny_model_dir, train_config,
                                                                              local_rows, tmp_path) -> None:
    env, marks = hold_env(tmp_path)
    out = tmp_path / "cancelled"
    args = study(tiny_model_dir, out, "--train-config", str(train_config), "--executor", "slurm", "--slurm-time", "20")
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        task = held(marks, proc)
        item = json.loads((out / "submitit" / "slurm_jobs.json").read_text(encoding="utf-8"))[task][0]
        subprocess.run(["scancel", task], check=True, timeout=60)
        stdout, stderr = proc.communicate(timeout=HANG_GUARD)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1 and "Traceback" not in stderr, stderr[-3000:]
    assert f"sde study: failed: job {task} ({item}): ended without a result" in stderr
    assert f"to do    {item}" in stderr and "no report written" in stderr
    assert not (out / "REPORT.md").exists()
    again = run(args)  # the hook holds no second time
    assert again.returncode == 0, again.stderr[-3000:]
    assert "3 of 4 work item(s) done, 1 to do" in again.stdout
    assert rows(out) == local_rows and (out / "REPORT.md").is_file()


@pytest.mark.parametrize("flags,flag,quoted", [
    (["--slurm-partition", "nowhere"], "--slurm-partition", "invalid partition specified: nowhere"),
    (["--slurm-gpus-per-node", "1"], "--slurm-gpus-per-node", "Invalid generic resource (gres) specification"),
    (["--slurm-time", "100000"], "--slurm-time", "Requested time limit is invalid"),
])
def test_a_request_the_scheduler_refuses_is_one_line_naming_the_flag(cluster, tiny_model_dir, tmp_path, flags, flag,
                                                                      quoted) -> None:
    done = run(study(tiny_model_dir, tmp_path / "refused", "--executor", "slurm", *flags))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    line = done.stderr.strip()
    assert len(line.splitlines()) == 1 and quoted in line and f"change {flag}" in line, line
    assert not (tmp_path / "refused").exists()  # refused before the study folder was touched


def test_status_says_when_the_scheduler_is_unreachable(cluster, tmp_path) -> None:
    from sde_study.plan import Plan, write_plan
    from sde_study.queue import record_jobs

    out = tmp_path / "study"
    write_plan(out, Plan(model="m", task="ner", designs=["first-nomi-lines-pu-text-none"], seeds=[0], analysis=False))
    record_jobs(out, {"77_0": ["first-nomi-lines-pu-text-none/seed-0"]})
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "squeue").write_text("#!/bin/sh\necho 'slurm_load_jobs error: Unable to contact slurm controller' >&2\n"
                                 "exit 1\n")
    (fake / "squeue").chmod(0o755)
    done = run([*SDE, "study", "status", str(out)], env={**os.environ, "PATH": f"{fake}{os.pathsep}{os.environ['PATH']}"})
    assert done.returncode == 0 and "to do    first-nomi-lines-pu-text-none/seed-0" in done.stdout
    assert "the scheduler is unreachable (squeue failed: slurm_load_jobs error: Unable to contact slurm controller)" \
           in done.stderr


def test_slurm_time_limits_read_as_minutes() -> None:
    from sde_study.slurm import minutes

    assert [minutes(t) for t in ("12:00:00", "1-00:00:00", "30", "30:00", "1-12", "2-03:04", "00:10:30")] == [
        720, 1440, 30, 30, 2160, 3064, 11]
    assert minutes("infinite") is None and minutes("UNLIMITED") is None
