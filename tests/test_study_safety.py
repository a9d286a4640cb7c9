"""A study never loses a result: a report leaves committed files as they are, a damaged file is named and left
alone, an item another worker holds is left to it (a lock that dies with its holder), a refused command writes
nothing, and the vLLM engine's environment stays inside the engine."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sde_study.plan import require_plan
from sde_study.folder import DOC_STATS as DOC_STATS_NAME, RESULTS as RESULTS_NAME
from sde_study.results import collect, item_state, status_lines, to_do
from sde_study.work import claimed, is_locked

REPO = Path(__file__).resolve().parents[1]
STUDIES = sorted(p.parent for p in (REPO / "docs" / "studies").rglob("study.yaml"))
SDE = [sys.executable, "-m", "sde_datagen.cli"]
ONE_FACTOR = REPO / "docs" / "studies" / "ner-one-factor-smollm2"


def sde(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*SDE, *args], capture_output=True, text=True, timeout=1800)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("study", STUDIES, ids=[s.relative_to(REPO).as_posix() for s in STUDIES])
def test_report_on_a_committed_study_keeps_its_results(study: Path, tmp_path: Path) -> None:
    """A committed study has no cells/: its report is rebuilt from its files, which stay byte for byte."""
    copy = tmp_path / study.name
    shutil.copytree(study, copy)
    before = {name: (copy / name).read_bytes() for name in (RESULTS_NAME, DOC_STATS_NAME)}
    done = sde("study", "report", str(copy))
    assert done.returncode == 0, done.stderr[-2000:]
    assert {name: (copy / name).read_bytes() for name in before} == before
    assert "## Designs" in (copy / "REPORT.md").read_text(encoding="utf-8")


def test_a_committed_study_continues_on_another_machine_with_only_what_it_lacks(tmp_path: Path) -> None:
    """A study committed without its cells/ (as every folder in docs/studies is) has its finished items in
    results.jsonl: a rerun trains none of them again, and an --extend trains only what it adds."""
    from dataclasses import replace

    from sde_study.plan import write_plan

    copy = tmp_path / "headline"
    shutil.copytree(REPO / "docs" / "studies" / "ner-headline-smollm2", copy)
    plan = require_plan(copy)
    assert not (copy / "cells").exists() and to_do(copy, plan) == []
    assert all(line.split()[0] == "done" for line in status_lines(copy, plan)[1:])
    write_plan(copy, replace(plan, seeds=[*plan.seeds, 3]))
    assert to_do(copy, require_plan(copy)) == [f"{design}/seed-3" for design in plan.designs]


def test_a_damaged_results_file_is_named_and_left_as_it_is(tmp_path: Path) -> None:
    copy = tmp_path / "study"
    shutil.copytree(ONE_FACTOR, copy)
    lines = (copy / RESULTS_NAME).read_text(encoding="utf-8").splitlines(keepends=True)
    lines[2] = lines[2][:40] + "\n"
    (copy / RESULTS_NAME).write_text("".join(lines), encoding="utf-8")
    before = snapshot(copy)
    done = sde("study", "report", str(copy))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert f"{copy / RESULTS_NAME}:3: not a JSON line" in done.stderr
    assert snapshot(copy) == before


def test_collect_keeps_rows_of_absent_cells_and_adds_new_ones(tmp_path: Path) -> None:
    """Rows whose cell folder is gone stay; a cell finished since is added; nothing is duplicated."""
    copy = tmp_path / "study"
    shutil.copytree(ONE_FACTOR, copy)
    plan = require_plan(copy)
    before = (copy / RESULTS_NAME).read_text(encoding="utf-8").splitlines()
    first = plan.items()[0]
    rows = [r for r in map(json.loads, before) if r["kind"] == "tuned" and r["design"] == first.design
            and r["seed"] == first.seed]
    changed = [{**r, "f1": 0.5} for r in rows]
    folder = first.folder(copy)
    folder.mkdir(parents=True)
    (folder / "result.json").write_text(json.dumps({"rows": changed, "doc_stats": []}), encoding="utf-8")
    collected = collect(copy, plan)
    assert len(collected) == len(before)
    assert [r["f1"] for r in collected if r["design"] == first.design and r.get("seed") == first.seed] == [0.5]


HOLD = """
import sys, time
from pathlib import Path
from sde_study.work import claimed
with claimed(Path(sys.argv[1])) as mine:
    print("held" if mine else "busy", flush=True)
    time.sleep(600)
"""


def test_an_item_another_worker_holds_is_left_to_it_until_that_worker_dies(tmp_path: Path) -> None:
    folder = tmp_path / "cells" / "d" / "seed-0"
    other = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True)
    try:
        assert other.stdout.readline().strip() == "held"
        assert is_locked(folder)
        with claimed(folder) as mine:
            assert not mine
    finally:
        other.kill()  # SIGKILL: no cleanup runs; the operating system releases the lock
        other.wait()
    assert not is_locked(folder)
    with claimed(folder) as mine:
        assert mine


def test_status_says_running_only_while_the_lock_is_held(tmp_path: Path) -> None:
    from sde_study.plan import Plan, write_plan
    from sde_study.work import set_state

    plan = Plan(model="m", task="ner", designs=["first-nomi-lines-pu-text-none"], seeds=[0], analysis=False)
    write_plan(tmp_path, plan)
    item = plan.items()[0]
    set_state(item.folder(tmp_path), "running")  # this process's pid, alive, but it holds no lock
    assert item_state(tmp_path, item)["status"] == "to do"
    other = subprocess.Popen([sys.executable, "-c", HOLD, str(item.folder(tmp_path))], stdout=subprocess.PIPE, text=True)
    try:
        assert other.stdout.readline().strip() == "held"
        assert item_state(tmp_path, item)["status"] == "running"
    finally:
        other.kill()
        other.wait()


def test_refused_commands_write_nothing_and_the_defaults_work(tiny_model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "study"
    base = ["study", "run", "--model", str(tiny_model_dir), "--task", "ner", "--designs", "es-sde", "--out", str(out)]
    for wrong, said in ((["--train-size", "100000"], "has only 300 records"),
                        (["--designs", "es-sde,nonsense"], "nonsense"),
                        (["--seeds", "0,x"], "--seeds"),
                        (["--eval-limit", "0"], "--eval-limit must be at least 1")):
        done = sde(*base, *wrong)
        assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-2000:]
        assert said in done.stderr
        assert not out.exists()
    empty = tmp_path / "empty-model"
    empty.mkdir()
    done = sde(*[a if a != str(tiny_model_dir) else str(empty) for a in base])
    assert done.returncode == 2 and "holds no model" in done.stderr and not out.exists()

    from sde_study.cli import plan_request, register  # the default --train-size on the packaged data (300 records)
    from sde_study.planning import build_plan
    import argparse

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    assert build_plan(plan_request(parser.parse_args(base)), "hf").train_size == 300
    assert not out.exists()


def test_the_engine_leaves_the_environment_as_it_found_it(monkeypatch: pytest.MonkeyPatch, tiny_model_dir: Path) -> None:
    """vLLM reads its settings while it starts and sets variables for its workers: none of it outlives the start."""
    import sde_study.vllm_model as vllm_model
    from sde_study.engines import VLLMEngine

    seen = {}

    class FakeVLLM:
        def __init__(self, **kwargs):
            seen.update({k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "VLLM_ENABLE_V1_MULTIPROCESSING")})
            os.environ["LD_PRELOAD"] = "libgomp.so"
            os.environ["VLLM_WORKER_THING"] = "1"

    monkeypatch.setattr(vllm_model, "SwappableVLLM", FakeVLLM)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    before = dict(os.environ)
    VLLMEngine(str(tiny_model_dir)).engine
    assert seen["OMP_NUM_THREADS"] and seen["VLLM_ENABLE_V1_MULTIPROCESSING"] == "0"
    assert dict(os.environ) == before
