"""`sde board submit` / `validate` on a REAL lm_eval run of the tiny model (full MASA test set).

The run is honest: all 500 test documents of sde_masa_id, with --log_samples; only the generation
length is cut (max_gen_toks=4) to keep it around a minute on 2 CPU cores. Every tampered copy is
made in a tmp dir.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sde_datagen.cli import main as sde
from sde_tasks.board.build import build
from sde_tasks.board.submit import submit
from sde_tasks.board.validate import validate_board
from sde_tasks.lm_eval_hook import tasks_dir

DESIGN = "last-nomi-natural-ou-text-none"  # ew-sde, asked for by its preset name below
TASK = "sde_masa_id"


@pytest.fixture(scope="module")
def real_run(tiny_model_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("lm_eval_run")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    command = [
        sys.executable, "-m", "lm_eval", "--include_path", str(tasks_dir()), "--model", "hf",
        "--model_args", f"pretrained={tiny_model_dir}", "--tasks", TASK, "--batch_size", "32",
        "--gen_kwargs", "max_gen_toks=4", "--metadata", json.dumps({"design": "ew-sde"}),
        "--log_samples", "--output_path", str(out),
    ]
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    print(f"\nlm_eval on the full {TASK} test set (tiny model): {time.perf_counter() - start:.1f} s")
    return out


def meta(**changes) -> dict:
    base = {
        "schema_version": 1,
        "base_model": {"id": "tiny/qwen2-random", "revision": "local-build"},
        "adapter": None,
        "design": DESIGN,
        "training": None,
        "seed": 0,
        "submitter": "board tests",
        "date": "2026-11-21",
    }
    return {**base, **changes}


def write_meta(folder: Path, value: dict) -> Path:
    path = folder / "meta.json"
    path.write_text(json.dumps(value), encoding="utf-8")
    return path


@pytest.fixture
def accepted(real_run, tmp_path) -> Path:
    """The real run, submitted to a fresh board in tmp_path."""
    folder, failures = submit(real_run, write_meta(tmp_path, meta(design="ew-sde")), tmp_path / "board")
    assert failures == []
    return folder


def failures_of(folder: Path) -> list[str]:
    return validate_board(folder.parent.parent, [folder])[folder]


def edit_json(path: Path, change) -> None:
    value = json.loads(path.read_text(encoding="utf-8"))
    change(value)
    path.write_text(json.dumps(value, ensure_ascii=False), encoding="utf-8")


def test_real_run_submits_validates_and_builds(accepted, capsys):
    assert sorted(p.name for p in accepted.iterdir()) == ["results.json", f"samples_{TASK}.jsonl", "submission.json"]
    assert json.loads((accepted / "submission.json").read_text())["design"] == DESIGN  # the preset, resolved
    board = accepted.parent.parent
    assert not [p for p in (board / "submissions").iterdir() if p.name.startswith(".")]  # no staging left
    assert sde(["board", "validate", "--board", str(board)]) == 0
    assert "1 valid, 0 invalid" in capsys.readouterr().out
    readme, page, n = build(board)
    text = readme.read_text(encoding="utf-8")  # a random model gives one answer to everything: marked collapsed
    assert n == 1 and f"| tiny/qwen2-random | `{DESIGN}` **collapsed** | untuned | 1 |" in text
    assert "<td>0-shot, max_gen_toks=4</td>" in page.read_text(encoding="utf-8")  # how it was run, shown
    # the interval is recomputed from the logged outputs, never read from the submission
    row = next(line for line in readme.read_text(encoding="utf-8").splitlines() if line.startswith("| tiny/"))
    kappa, ci, strict, tied = [cell.strip().strip("*") for cell in row.split("|")][5:9]
    low, high = json.loads(ci)
    assert low <= float(kappa) <= high and float(strict) <= 1
    assert tied == ""  # the only run of its model, but collapsed: never marked tied with the best
    edit_json(accepted / "results.json", lambda r: r["results"][TASK].update({"kappa,none": 0.99}))
    readme, page, _ = build(board)
    assert f"[{low:.4f}, {high:.4f}]" in readme.read_text(encoding="utf-8") and "0.9900" in readme.read_text()
    assert f"<td>[{low:.4f}, {high:.4f}]</td>" in page.read_text(encoding="utf-8")


@pytest.mark.parametrize("metric", ["kappa", "accuracy", "exact_match", "format_error_rate"])
def test_metric_changed_by_001_is_rejected(accepted, metric):
    edit_json(accepted / "results.json", lambda r: r["results"][TASK].__setitem__(
        f"{metric},none", r["results"][TASK][f"{metric},none"] + 0.01))
    problems = failures_of(accepted)
    assert len(problems) == 1 and problems[0].startswith(f"task {TASK}: reported {metric} = "), problems


def test_removed_sample_is_rejected(accepted):
    samples = accepted / f"samples_{TASK}.jsonl"
    lines = samples.read_text(encoding="utf-8").splitlines(keepends=True)
    samples.write_text("".join(lines[:17] + lines[18:]), encoding="utf-8")
    problems = failures_of(accepted)
    assert any("1 of 500 test documents have no logged sample: 17" in p for p in problems), problems


def test_other_design_is_rejected(accepted, real_run, tmp_path):
    edit_json(accepted / "submission.json", lambda m: m.__setitem__("design", "first-nomi-lines-pu-text-none"))
    problems = failures_of(accepted)
    assert problems == [f"task {TASK}: evaluated with design {DESIGN}, but the submission says "
                        "first-nomi-lines-pu-text-none; pass --metadata '{\"design\": \"first-nomi-lines-pu-text-none\"}' "
                        "to lm_eval"]
    # relabelling the run's metadata too does not help: the logged prompts are those of the real design
    edit_json(accepted / "results.json", lambda r: r["configs"][TASK]["metadata"].__setitem__("design", "es-sde"))
    problems = failures_of(accepted)
    assert any("logged documents differ from the installed task pack" in p for p in problems), problems
    # and `sde board submit` refuses a mismatched META.json, adding nothing
    board = tmp_path / "other-board"
    code = sde(["board", "submit", str(real_run), "--meta",
                str(write_meta(tmp_path, meta(design="first-nomi-lines-pu-text-none"))), "--board", str(board)])
    assert code == 1 and not [p for p in (board / "submissions").iterdir()]


def test_limit_version_schema_and_duplicates_are_rejected(accepted, real_run, tmp_path):
    results = accepted / "results.json"
    original = results.read_text(encoding="utf-8")
    edit_json(results, lambda r: (r["config"].__setitem__("limit", 500), r["n-samples"][TASK].__setitem__("effective", 499)))
    problems = failures_of(accepted)
    assert "the run used --limit 500: only full test sets are accepted" in problems
    assert any("not the full test set: lm-eval evaluated 499 of 500" in p for p in problems), problems
    results.write_text(original, encoding="utf-8")

    edit_json(results, lambda r: r["versions"].__setitem__(TASK, 0.5))
    assert any("task version 0.5" in p for p in failures_of(accepted))
    results.write_text(original, encoding="utf-8")

    edit_json(results, lambda r: (r["results"][TASK].__setitem__("made_up,none", 1.0),
                                  r["higher_is_better"][TASK].__setitem__("format_error_rate", True)))
    problems = failures_of(accepted)
    assert any("does not compute: made_up" in p for p in problems), problems
    assert any("higher_is_better is" in p for p in problems), problems
    results.write_text(original, encoding="utf-8")

    edit_json(accepted / "submission.json", lambda m: m.pop("submitter"))
    assert failures_of(accepted) == ["submission.json: top level: 'submitter' is a required property"]
    edit_json(accepted / "submission.json", lambda m: m.__setitem__("submitter", "board tests"))
    assert failures_of(accepted) == []

    # the same outputs under another model name, and a plain copy, are duplicates
    copy, problems = submit(real_run, write_meta(tmp_path, meta(base_model={"id": "x/y", "revision": "1"})),
                            accepted.parent.parent)
    assert copy is None and problems == [f"duplicate of {accepted.name}: identical logged outputs on {TASK}"]
    twin = accepted.parent / "twin"
    shutil.copytree(accepted, twin)
    assert failures_of(twin) == [f"duplicate of {accepted.name}: same base model, adapter and design on {TASK}"]


def test_validate_with_no_submissions_passes(tmp_path, capsys):
    assert sde(["board", "validate", "--board", str(tmp_path / "empty")]) == 0
    assert "no submissions" in capsys.readouterr().out


@pytest.mark.parametrize("task", ["sde_masa_id", "sde_masa_ood", "sde_ed", "sde_ner"])
def test_gold_outputs_recompute_to_perfect_scores(task):
    """For every installed task: the validator's documents and metrics agree with the task's YAML."""
    import yaml

    from sde_datagen.design import PRESETS
    from sde_tasks.board.installed import expected_docs, installed_tasks, recompute

    design = PRESETS["es-sde"].id
    docs = list(expected_docs(task, design, 0))
    assert docs and all(doc["design"] == design for doc in docs)
    scores = recompute(docs, [doc["completion"] for doc in docs])
    text = (tasks_dir() / f"{task}.yaml").read_text(encoding="utf-8")
    names = [m["metric"] for m in yaml.load(text, Loader=yaml.BaseLoader)["metric_list"]]
    assert list(scores) == names
    assert scores["format_error_rate"] == 0.0
    # gold scores (nearly) perfectly: ED's rule counts a repeated (type, trigger) of one sentence once as a
    # TP and again as an FP, and gold has a few repeats
    assert scores.get("kappa", 1.0) == pytest.approx(1.0) and scores.get("f1", 1.0) > 0.95
    assert installed_tasks()[task].version is not None


def test_submit_needs_one_run_with_its_samples(real_run, tmp_path):
    from sde_datagen.errors import UserError

    results = next(real_run.rglob("results_*.json"))
    alone = tmp_path / "no-samples"
    alone.mkdir()
    shutil.copy(results, alone)
    folder, problems = submit(alone, write_meta(tmp_path, meta()), tmp_path / "board")
    assert folder is None and problems == [
        f"task {TASK}: no logged samples beside {results.name}; run lm_eval with --log_samples"]
    shutil.copy(results, alone / "results_2026-01-01T00-00-00.000000.json")
    with pytest.raises(UserError, match="holds 2 runs"):
        submit(alone, write_meta(tmp_path, meta()), tmp_path / "board")


def test_rescore_brings_an_entry_scored_by_another_scorer_back_to_valid(accepted, capsys):
    """An entry whose results.json an older scorer wrote fails validation; rescoring recomputes its numbers from its
    own logged outputs (nothing else changes) and it is valid again."""
    board = accepted.parent.parent
    results = json.loads((accepted / "results.json").read_text(encoding="utf-8"))
    key = next(k for k in results["results"][TASK] if k.startswith("accuracy,"))
    true_value = results["results"][TASK][key]
    edit_json(accepted / "results.json", lambda r: r["results"][TASK].update({key: true_value + 0.01}))
    assert sde(["board", "validate", "--board", str(board)]) == 1
    capsys.readouterr()
    assert sde(["board", "rescore", "--board", str(board)]) == 0
    assert f"{TASK} accuracy" in capsys.readouterr().out
    assert json.loads((accepted / "results.json").read_text(encoding="utf-8"))["results"][TASK][key] == pytest.approx(
        true_value, abs=1e-9)
    assert sde(["board", "validate", "--board", str(board)]) == 0
