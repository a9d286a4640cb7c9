"""`sde study race`: the rules of the race on planted designs, resumption from a partial grid, the budget and tie
stops, and its calibration (bench/race.py replays the committed studies and simulates races and the null)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from sde_study.race import (BUDGET, INSEPARABLE, SEEDS_EXHAUSTED, SEPARATED, TIE_SET, Cell, RaceSettings, Stages,
                            cells_to_finish, cells_used, decide, staged)
from sde_tasks.docstats import EXTRACTION, DocStats

REPO = Path(__file__).resolve().parents[1]
N_DOCS = 300


def run(rng: np.random.Generator, gold: np.ndarray, rate: float) -> DocStats:
    tp = rng.binomial(gold, np.clip(rate, 0, 1))
    fp = rng.poisson(0.5, len(gold))
    zeros = np.zeros(len(gold))
    return DocStats(EXTRACTION, (), np.stack([tp, fp, gold - tp, tp, fp, gold - tp, zeros, zeros,
                                              np.ones(len(gold))], axis=1).astype(float))


def grid(rates: dict[str, float], seeds: int, seed_sd: float = 0.01, seconds: float = 60.0,
         collapsed: tuple[str, ...] = ()) -> dict[tuple[str, int], Cell]:
    rng = np.random.default_rng(3)
    gold = 1 + rng.poisson(1.5, N_DOCS)
    return {(d, s): Cell(run(rng, gold, r + rng.normal(0, seed_sd)), d in collapsed, seconds)
            for d, r in rates.items() for s in range(seeds)}


def test_one_seed_drops_only_collapsed_designs_and_the_best_stays() -> None:
    cells = grid({"good": 0.7, "bad": 0.2, "flat": 0.6}, seeds=4, collapsed=("flat",))
    state = decide(cells, ["good", "bad", "flat"], RaceSettings(max_seeds=4), "f1", resamples=1000)
    first = state.looks[0]
    assert first.rung == 0 and first.left == {"flat": "collapsed"}  # "bad" is far behind, but has one seed
    second = state.looks[1]
    assert "bad" in second.left and "good" not in second.left
    assert state.decided == SEPARATED and state.survivors == ["good"]
    assert cells_used(state) == 3 + 2  # 3 designs at rung 0, 2 at rung 1: the grid's other 7 cells never trained


def test_equal_designs_stay_and_the_futility_stop_spares_the_seeds_that_could_not_separate_them() -> None:
    """Without the futility stop equal designs run to the last seed; with it the race stops at the first look, every
    design still in, while a design well behind but not yet separated keeps the race going until it leaves."""
    cells = grid({"a": 0.5, "b": 0.5, "c": 0.5}, seeds=5)
    state = decide(cells, ["a", "b", "c"], RaceSettings(max_seeds=5, futility=0.0), "f1", resamples=1000)
    assert state.decided == SEEDS_EXHAUSTED and sorted(state.survivors) == ["a", "b", "c"]
    stopped = decide(cells, ["a", "b", "c"], RaceSettings(max_seeds=5), "f1", resamples=1000)
    assert stopped.decided == INSEPARABLE and sorted(stopped.survivors) == ["a", "b", "c"] and len(stopped.looks) < 5
    behind = grid({"good": 0.6, "mid": 0.55, "bad": 0.5}, seeds=4)
    raced = decide(behind, ["good", "mid", "bad"], RaceSettings(max_seeds=4), "f1", resamples=1000)
    off = decide(behind, ["good", "mid", "bad"], RaceSettings(max_seeds=4, futility=0.0), "f1", resamples=1000)
    assert raced.looks == off.looks and raced.decided == off.decided  # never hopeless: it raced as without the stop
    assert "bad" in raced.looks[2].left and len(raced.looks) == 4


def test_a_hopeless_rival_is_paused_while_the_race_separates_the_others() -> None:
    """Two equal designs and two behind: the twin the last seed could not separate gets no more seeds, the race goes
    on until the designs behind leave, and stops with the same finalists as racing to the last seed, in fewer cells."""
    cells = grid({"good": 0.6, "twin": 0.6, "mid": 0.53, "bad": 0.45}, seeds=5)
    designs = ["good", "twin", "mid", "bad"]
    paused = decide(cells, designs, RaceSettings(max_seeds=5), "f1", resamples=1000)
    raced_out = decide(cells, designs, RaceSettings(max_seeds=5, futility=0.0), "f1", resamples=1000)
    assert paused.decided == INSEPARABLE and raced_out.decided == SEEDS_EXHAUSTED
    assert sorted(paused.survivors) == sorted(raced_out.survivors) == ["good", "twin"]
    assert any(look.paused for look in paused.looks) and cells_used(paused) < cells_used(raced_out) == 15
    assert {d for look in paused.looks for d in look.left} == {"mid", "bad"}
    assert cells_to_finish(paused) == 10 - sum(paused.looks[-1].seeds[d] for d in ("good", "twin"))


def test_a_race_resumes_from_the_cells_it_has() -> None:
    cells = grid({"a": 0.7, "b": 0.65, "c": 0.2}, seeds=3)
    partial = {k: v for k, v in cells.items() if k[1] == 0 or k == ("a", 1)}
    state = decide(partial, ["a", "b", "c"], RaceSettings(max_seeds=3), "f1", resamples=1000)
    assert state.decided is None and state.next_cells == [("b", 1), ("c", 1)]
    whole = decide(cells, ["a", "b", "c"], RaceSettings(max_seeds=3), "f1", resamples=1000)
    again = decide(cells, ["a", "b", "c"], RaceSettings(max_seeds=3), "f1", resamples=1000)
    assert whole.looks == again.looks  # a replay decides exactly the same
    first = decide(partial, ["a", "b", "c"], RaceSettings(max_seeds=3), "f1", resamples=1000).looks[0]
    assert (first.cells, first.hours) == (3, 3 * 60 / 3600)  # rung 0's cells only, not ("a", 1) trained after it


def staged_race(cells: dict[tuple[str, int], Cell], designs: list[str], stages: Stages) -> tuple:
    """The race as a study would run it in stages: new cells on the first documents, the rest when it asks."""
    have, asked_rest = {}, []
    while True:
        state = decide(have, designs, RaceSettings(max_seeds=4), "f1", resamples=1000, stages=stages)
        if state.next_cells:
            have.update({k: replace(cells[k], stats=cells[k].stats.subset(range(stages.first_docs)))
                         for k in state.next_cells})
        elif state.next_rest:
            asked_rest += state.next_rest
            have.update({k: cells[k] for k in state.next_rest})
        else:
            return state, have, asked_rest


def test_a_race_stages_its_evaluation_only_where_it_can_pay() -> None:
    """A finalist's cell is evaluated again from its first document: a first stage of more than a quarter of the
    test set would cost the finalists what it spares the designs that leave."""
    assert staged(100, 500) == Stages(100, 500, every_rung=False)
    assert staged(100, 400) is not None and staged(100, 399) is None and staged(100, 200) is None
    assert staged(None, 500) is None and staged(100, None) is None


def test_designs_a_staged_race_evaluated_on_fewer_documents_are_compared_on_the_shared_first_ones() -> None:
    """A design that left has its first documents, a finalist all of them: the study's tables pair them on the
    first documents (lm-eval's limit takes the first), not on nothing and not unpaired."""
    from sde_study.folder import tuned_key
    from sde_study.summary import design_runs

    cells = grid({"left": 0.3, "finalist": 0.6}, seeds=2)
    stats = {tuned_key(d, s, "sde_ner"): cell.stats.subset(range(60)) if d == "left" else cell.stats
             for (d, s), cell in cells.items()}
    rows = [{"design": d, "seed": s, "task": "sde_ner"} for d, s in cells]
    runs = design_runs(rows, stats)
    assert {s.n_docs for group in runs.values() for s in group} == {60}
    assert np.array_equal(runs["finalist"][1].table, cells[("finalist", 1)].stats.table[:60])


@pytest.mark.parametrize("every_rung", [True, False])
def test_a_staged_race_evaluates_the_rest_only_for_designs_still_in(every_rung: bool) -> None:
    cells = grid({"good": 0.7, "close": 0.68, "bad": 0.1}, seeds=4)
    state, have, rest = staged_race(cells, ["good", "close", "bad"], Stages(60, N_DOCS, every_rung))
    assert "bad" in state.looks[1].left and state.looks[1].docs == 60  # far behind on the first 60 documents
    assert not any(d == "bad" for d, _ in rest) and have[("bad", 0)].stats.n_docs == 60
    assert "good" in state.survivors and all(cell.stats.n_docs == N_DOCS  # finalists: every document
                                             for (d, _), cell in have.items() if d in state.survivors)
    full_looks = [look for look in state.looks if look.docs is None]
    assert bool(full_looks) == every_rung  # each rung looks at every document too, or only the finalists get them
    unstaged = decide(cells, ["good", "close", "bad"], RaceSettings(max_seeds=4), "f1", resamples=1000)
    assert decide(cells, ["good", "close", "bad"], RaceSettings(max_seeds=4), "f1", resamples=1000,
                  stages=Stages(N_DOCS, N_DOCS)).looks == unstaged.looks  # a first stage of every document: unstaged


def test_a_failure_is_never_a_verdict_but_the_same_failure_twice_is() -> None:
    """A failed cell (preempted, a lost node, a missing path) is trained again, however far behind its design is;
    its design leaves only when the cell failed the same way on two attempts, and the trace says so."""
    cells = grid({"a": 0.7, "b": 0.2, "c": 0.65}, seeds=2)
    once = {**cells, ("b", 0): Cell(None, failures=("OSError: node lost",))}
    state = decide({k: v for k, v in once.items() if k[1] == 0}, ["a", "b", "c"], RaceSettings(max_seeds=2), "f1",
                   resamples=1000)
    assert state.decided is None and not state.looks and state.next_cells == [("b", 0)]
    differently = {**once, ("b", 0): Cell(None, failures=("OSError: node lost", "RuntimeError: preempted"))}
    assert decide(differently, ["a", "b", "c"], RaceSettings(max_seeds=2), "f1", resamples=1000).next_cells == [("b", 0)]
    twice = {**cells, ("b", 0): Cell(None, failures=("OSError: no model", "OSError: no model"))}
    state = decide(twice, ["a", "b", "c"], RaceSettings(max_seeds=2), "f1", resamples=1000)
    assert state.looks[0].left == {"b": "failed twice the same way (OSError: no model)"}
    assert "b" not in state.survivors and state.decided


def test_budget_and_tie_stops() -> None:
    cells = grid({"a": 0.5, "b": 0.5}, seeds=4, seconds=1800.0)
    partial = {k: v for k, v in cells.items() if k[1] < 2}
    state = decide(partial, ["a", "b"], RaceSettings(max_seeds=4, budget_hours=2.5, futility=0.0), "f1",
                   resamples=1000)
    assert state.decided == BUDGET and not state.next_cells  # 2 h spent, the next rung's 1 h would pass 2.5 h
    assert cells_to_finish(state) == 4  # seeds 2 and 3 of both
    tie = decide(cells, ["a", "b"], RaceSettings(max_seeds=4, delta=0.2, futility=0.0), "f1", resamples=1000)
    assert tie.decided == TIE_SET and sorted(tie.survivors) == ["a", "b"] and len(tie.looks) == 2


def test_the_welch_test_separates_sooner_and_a_race_keeps_the_test_it_was_planned_with() -> None:
    """Welch-Satterthwaite weighs the few seeds by the seed part's share of the SE: with document noise beside it,
    a design well behind leaves a rung sooner than under the seed variance widened as if it were the whole SE."""
    from sde_datagen.errors import UserError
    from sde_study.plan import Plan, merge

    cells = grid({"good": 0.6, "mid": 0.55, "bad": 0.5}, seeds=4)
    left = {test: next(look.rung for look in decide(cells, ["good", "mid", "bad"], RaceSettings(max_seeds=4, test=test),
                                                   "f1", resamples=1000).looks if "bad" in look.left)
            for test in ("welch", "widened")}
    assert left == {"welch": 2, "widened": 3}
    plan = {"model": "m", "task": "ner", "designs": ["es-sde", "ew-sde"], "seeds": [0], "race": {"max_seeds": 3}}
    planned_before = Plan.from_dict(plan, "study.yaml")
    assert planned_before.race.test == "widened"  # a committed race keeps its looks' test
    assert planned_before.race.futility == 0.0  # and no futility stop
    assert planned_before.race.first_docs is None  # and every cell on every document
    kept = merge(planned_before, replace(planned_before, race=RaceSettings(max_seeds=3)), False).race
    assert (kept.test, kept.futility, kept.first_docs) == ("widened", 0.0, None)
    with pytest.raises(UserError, match="study.yaml: field 'race.test': expected welch or widened, got 't'"):
        Plan.from_dict({**plan, "race": {"test": "t"}}, "study.yaml")
    with pytest.raises(UserError, match="study.yaml: field 'race.futility': expected a confidence from 0"):
        Plan.from_dict({**plan, "race": {"futility": 1.5}}, "study.yaml")
    for bad in (0, -3, "100"):
        with pytest.raises(UserError, match="study.yaml: field 'race.first_docs': expected "):
            Plan.from_dict({**plan, "race": {"first_docs": bad}}, "study.yaml")


def test_bench_race_keeps_its_error_rates_and_counts_hours() -> None:
    """Calibration: the committed grids' recommended designs are kept; in simulated races of 10 designs x 5 seeds
    (drawn like the one-factor study and like the strict race) every variant keeps the true best in >= 93% and,
    under the null, wrongly eliminates a design in <= 8% (a best picked by the data is tested as one of every pair);
    staging saves measured hours on the strict race's own cells and in races drawn like it."""
    done = subprocess.run([sys.executable, str(REPO / "bench" / "race.py")], capture_output=True, text=True,
                          timeout=3600)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["replay"] and all(r["same_winner"] for r in result["replay"])
    for race in result["races"]:  # a committed race's REPORT.md states the decision its files give
        report = (REPO / race["study"] / "REPORT.md").read_text(encoding="utf-8")
        decided = "not decided yet" if race["decided"] == "not decided" else race["decided"]
        assert f"**Decision** ({race['rule']} rule): {decided}" in report, race
    for source, variants in result["variants"].items():
        for name, found in variants.items():
            assert found["best_kept"] >= 0.93 and found["null_false_elimination"] <= 0.08, (source, name, found)
    strict = result["variants"]["ner-race-smollm2-strict"]
    assert strict["staged-finalists"]["hours_fraction"] < strict["unstaged"]["hours_fraction"]
    for variants in result["variants"].values():  # the welch test trains fewer cells than the widened one
        assert variants["unstaged"]["hours_fraction"] < variants["unstaged-widened"]["hours_fraction"]
    replayed = next(r for r in result["races"] if r["study"].endswith("ner-race-smollm2-strict"))
    assert replayed["best_kept"] and replayed["hours_fraction"] < replayed["cells"] / 50


@pytest.mark.parametrize("flag,value", [("--max-seeds", "0"), ("--max-seeds", "1"), ("--delta", "-1"),
                                        ("--budget-hours", "0"), ("--budget-hours", "nan"), ("--delta", "nan"),
                                        ("--futility", "1"), ("--futility", "nan"), ("--designs", "es-sde"),
                                        ("--first-docs", "-1"),
                                        ("--workers", "0"), ("--slurm-time", "0"), ("--slurm-gpus-per-node", "-1"),
                                        ("--nproc-per-node", "0"), ("--designs", "no-such-design")])
def test_race_flags_are_checked_before_anything_is_written(tiny_model_dir: Path, tmp_path: Path, flag: str,
                                                            value: str) -> None:
    done = subprocess.run([sys.executable, "-m", "sde_datagen.cli", "study", "race", "--model", str(tiny_model_dir),
                           "--task", "ner", "--designs", "es-sde,ew-sde", "--out", str(tmp_path / "race"), flag, value],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 2 and "Traceback" not in done.stderr and flag in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "race").exists()


def test_a_race_whose_cells_fail_says_so_exits_non_zero_and_retries_them(tmp_path: Path) -> None:
    """A model that is nowhere: both cells fail; the race names them and exits 1 (not "decided"); the rerun trains
    them again, and only then, failed twice the same way, the designs leave, still with exit 1 and no report."""
    args = [sys.executable, "-m", "sde_datagen.cli", "study", "race", "--model", "nowhere/nothing-here", "--task", "ner",
            "--designs", "es-sde,ew-sde", "--train-size", "4", "--eval-limit", "2", "--max-steps", "1", "--engine", "hf",
            "--out", str(tmp_path / "race")]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    first = subprocess.run(args, capture_output=True, text=True, timeout=600, env=env)
    assert first.returncode == 1 and "Traceback" not in first.stderr, first.stderr[-2000:]
    assert "the race is not decided yet" in first.stdout and "2 failure(s)" in first.stderr
    assert first.stderr.count("sde study: failed: ") == 2 and "first-nomi-lines-pu-text-none/seed-0" in first.stderr
    second = subprocess.run(args, capture_output=True, text=True, timeout=600, env=env)
    assert "race rung 0: 2 cell(s) to train" in second.stdout  # tried again, not taken as a verdict
    assert second.returncode == 1 and "the race is decided: no design left" in second.stdout
    assert not (tmp_path / "race" / "REPORT.md").exists() and "fatal:" not in second.stderr


def test_a_race_on_the_tiny_model_runs_rung_by_rung_through_the_job_array_path(tiny_model_dir: Path,
                                                                             tmp_path: Path) -> None:
    """Each rung's cells go to the executor as one job array (submitit's local executor runs the Slurm path); the
    folder is an ordinary study (status, report); a rerun of the decided race trains nothing."""
    config = tmp_path / "train.yaml"
    config.write_text("lr: 1.0e-2\nbatch_size: 4\nmax_length: 256\n", encoding="utf-8")
    args = [sys.executable, "-m", "sde_datagen.cli", "study", "race", "--model", str(tiny_model_dir), "--task", "ner",
            "--designs", "es-sde,ew-sde", "--max-seeds", "2", "--train-size", "16", "--max-steps", "30",
            "--train-config", str(config), "--eval-limit", "8", "--max-gen-toks", "24", "--engine", "hf",
            "--executor", "submitit-local", "--out", str(tmp_path / "race")]
    done = subprocess.run(args, capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "race rung 0: 2 cell(s) to train" in done.stdout and "submitted 2 job(s) (submitit-local)" in done.stdout
    assert "the race is decided" in done.stdout
    report = (tmp_path / "race" / "REPORT.md").read_text(encoding="utf-8")
    assert "## The race" in report and "| 0 | 2 |" in report and "Compute: " in report
    again = subprocess.run(args, capture_output=True, text=True, timeout=1800)
    assert again.returncode == 0 and "to train" not in again.stdout and "the race is decided" in again.stdout
    # killed after its cells finished but before their rows were collected: it resumes without retraining them
    rows = (tmp_path / "race" / "results.jsonl").read_text(encoding="utf-8")
    (tmp_path / "race" / "results.jsonl").unlink()
    (tmp_path / "race" / "docstats.jsonl").unlink()
    resumed = subprocess.run(args, capture_output=True, text=True, timeout=1800)
    assert resumed.returncode == 0 and "to train" not in resumed.stdout and "the race is decided" in resumed.stdout
    assert (tmp_path / "race" / "results.jsonl").read_text(encoding="utf-8") == rows
    # its rule changed on a rerun: the same cells raced again by the other rule, the report says so
    strict = subprocess.run([*args, "--rule", "strict", "--futility", "0.2"], capture_output=True, text=True,
                            timeout=1800)
    assert strict.returncode == 0, strict.stderr[-2000:]
    assert "--futility 0.2 not taken: this race was planned with futility 0.5" in strict.stderr
    assert ("the race's settings changed (max seeds 2, rule paper, delta 0.0, test welch, futility 0.5, first documents "
            "100 -> max seeds 2, rule strict, delta 0.0, test welch, futility 0.5, first documents 100)") in strict.stdout
    assert "rule: strict" in (tmp_path / "race" / "study.yaml").read_text(encoding="utf-8")
    assert "test: welch" in (tmp_path / "race" / "study.yaml").read_text(encoding="utf-8")
    assert "eliminating by the **strict** rule" in (tmp_path / "race" / "REPORT.md").read_text(encoding="utf-8")
    # committed without its adapters (no cells/), the race continues elsewhere from its results alone
    import shutil

    moved = tmp_path / "elsewhere"
    shutil.copytree(tmp_path / "race", moved, ignore=shutil.ignore_patterns("cells", "submitit"))
    there = subprocess.run([*args[:-1], str(moved)], capture_output=True, text=True, timeout=1800)
    assert there.returncode == 0, there.stderr[-2000:]
    assert "to train" not in there.stdout and "the race is decided" in there.stdout
    status = subprocess.run([sys.executable, "-m", "sde_datagen.cli", "study", "status", str(tmp_path / "race")],
                            capture_output=True, text=True, timeout=600)
    assert status.returncode == 0 and "done" in status.stdout


def test_a_staged_race_evaluates_new_cells_on_the_first_documents_and_its_finalists_on_all(tiny_model_dir: Path,
                                                                                          tmp_path: Path) -> None:
    """`--first-docs 8` of 32: every cell is evaluated on 8 documents, the looks read those, and once the race is
    decided its finalists' cells are evaluated again on all 32 (the printed lm_eval command is the last
    evaluation's); the report says so; a rerun does nothing, and keeps the stages it was planned with."""
    config = tmp_path / "train.yaml"
    config.write_text("lr: 1.0e-2\nbatch_size: 4\nmax_length: 256\n", encoding="utf-8")
    out = tmp_path / "race"
    args = [sys.executable, "-m", "sde_datagen.cli", "study", "race", "--model", str(tiny_model_dir), "--task", "ner",
            "--designs", "es-sde,ew-sde", "--max-seeds", "2", "--train-size", "16", "--max-steps", "30",
            "--train-config", str(config), "--eval-limit", "32", "--first-docs", "8", "--max-gen-toks", "24",
            "--engine", "hf", "--out", str(out)]
    done = subprocess.run(args, capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "race rung 0: 2 cell(s) to train" in done.stdout and "the race is decided" in done.stdout
    assert "first_docs: 8" in (out / "study.yaml").read_text(encoding="utf-8")
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text(encoding="utf-8").splitlines()]
    finalists = done.stdout.rsplit("finalists: ", 1)[1].splitlines()[0].split(", ")
    cells = sum(row["design"] in finalists for row in rows)
    assert cells and f"the race's finalists: {cells} cell(s) to evaluate on every test document" in done.stdout
    for row in rows:
        full = row["design"] in finalists
        assert (row["n_docs"], row["eval_limit"]) == ((32, 32) if full else (8, 8)), row
        assert f"--limit {32 if full else 8}" in row["lm_eval_command"]
    report = (out / "REPORT.md").read_text(encoding="utf-8")
    assert "Staged evaluation: a new cell is evaluated on the first 8 of the 32 test documents" in report
    assert "evaluation on the first 8 test documents, the race's finalists on the first 32 test documents" in report
    assert "| 0 | 2 | 1 | 8 |" in report  # the trace's documents: the first 8
    assert ("The finalists on all 32 documents" in report) == (len(finalists) == 2)
    again = subprocess.run(args + ["--first-docs", "0"], capture_output=True, text=True, timeout=1800)
    assert again.returncode == 0 and "to train" not in again.stdout and "to evaluate" not in again.stdout
    assert "--first-docs 0 not taken: this race was planned with first docs 8" in again.stderr  # it keeps its stages
    assert [json.loads(line) for line in (out / "results.jsonl").read_text(encoding="utf-8").splitlines()] == rows
    from sde_study.plan import require_plan
    from sde_study.work import is_done, item_by_id

    plan = require_plan(out)
    item, all_docs = item_by_id(plan, f"{rows[0]['design']}/seed-0:all")
    assert all_docs and is_done(out, plan, item, all_docs) == (rows[0]["design"] in finalists)


def test_local_workers_share_the_cores_unbound_and_keep_what_the_user_set() -> None:
    """Several workers on one machine: each gets its share of the cores (each would count every core free at its
    start) and vLLM's binding off (it would bind them to the same cores); what the user set wins; one worker gets
    nothing (Slurm's tasks are not given a share: each has its own allocation)."""
    from sde_study.executors import local_shares

    unbound = {"OMP_NUM_THREADS": "1", "VLLM_CPU_OMP_THREADS_BIND": "nobind"}
    assert local_shares(2, 2, {}, []) == [unbound, unbound]
    assert local_shares(3, 16, {}, []) == [{"OMP_NUM_THREADS": "5", "VLLM_CPU_OMP_THREADS_BIND": "nobind"}] * 3
    assert local_shares(4, 2, {"OMP_NUM_THREADS": "2"}, []) == [{"VLLM_CPU_OMP_THREADS_BIND": "nobind"}] * 4
    assert local_shares(1, 2, {}, ["0", "1"]) == [{}]


def test_local_workers_each_get_their_own_gpus() -> None:
    """On a machine with several GPUs each worker sees its own (an equal block each; round-robin when there are
    more workers than GPUs), and its share of the cores; the device list is CUDA_VISIBLE_DEVICES where set."""
    from sde_study.executors import local_shares, visible_gpus

    devices = visible_gpus({"CUDA_VISIBLE_DEVICES": "0,1,2,3"})
    assert devices == ["0", "1", "2", "3"]
    four = local_shares(4, 16, {}, devices)
    assert [w["CUDA_VISIBLE_DEVICES"] for w in four] == ["0", "1", "2", "3"]
    assert all(w["OMP_NUM_THREADS"] == "4" for w in four)
    assert [w["CUDA_VISIBLE_DEVICES"] for w in local_shares(2, 16, {}, devices)] == ["0,1", "2,3"]
    assert [w["CUDA_VISIBLE_DEVICES"] for w in local_shares(3, 6, {}, ["4", "7"])] == ["4", "7", "4"]
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": ""}) == []


def test_a_slurm_task_not_confined_to_its_cpus_uses_only_its_share() -> None:
    """A Slurm job given 1 CPU that can run on 2 (no affinity on the cluster) uses 1 thread, unbound; a job confined to
    its CPUs, a job outside Slurm, and what the user set are left alone."""
    from sde_study.executors import allocation_share

    assert allocation_share({"SLURM_CPUS_ON_NODE": "1"}, 2) == {"OMP_NUM_THREADS": "1",
                                                                "VLLM_CPU_OMP_THREADS_BIND": "nobind"}
    assert allocation_share({"SLURM_CPUS_ON_NODE": "4"}, 4) == {}
    assert allocation_share({}, 2) == {}
    assert allocation_share({"SLURM_CPUS_ON_NODE": "1", "OMP_NUM_THREADS": "2"}, 2) == {
        "VLLM_CPU_OMP_THREADS_BIND": "nobind"}


@pytest.mark.parametrize("study", ["masa-race-smollm2", "ner-race-smollm2-strict"])
def test_status_of_a_race_says_where_it_stands_and_which_cells_it_will_not_train(study: str, tmp_path: Path) -> None:
    """A race trains only the cells it needs: `sde study status` gives its rung and what is left of it, and marks a
    design that left, and a later rung's seeds, instead of calling the grid's every missing cell "to do"."""
    import shutil

    from sde_study.folder import StudyFolder
    from sde_study.plan import read_plan
    from sde_study.race_folder import Folder

    folder = tmp_path / study
    shutil.copytree(REPO / "docs" / "studies" / study, folder, ignore=shutil.ignore_patterns("samples", "plots"))
    plan = read_plan(folder)
    state = Folder.of(folder, plan, StudyFolder(folder).read_rows()).state(plan)
    done = subprocess.run([sys.executable, "-m", "sde_datagen.main", "study", "status", str(folder)],
                          capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    left = {d for look in state.looks for d in look.left}
    assert left and lines[1].startswith(f"race: {plan.race.rule} rule")
    for design in left:
        assert any(line.split()[:2] == ["left", f"{design}/seed-{len(plan.seeds) - 1}"] for line in lines), design
    to_do = {line.split()[2] for line in lines if line.startswith("  to do")}
    assert to_do == {f"{d}/seed-{s}" for d, s in state.next_cells}
    if state.decided:
        assert f"decided ({state.decided})" in lines[1] and not to_do
    else:
        assert f"race: {len(state.next_cells)} cell(s) of rung" in done.stdout and to_do

