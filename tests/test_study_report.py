"""REPORT.md says what is known: intervals, paired effects with Holm p and verdicts, ties with the best
design and a power line, from results.jsonl and docstats.jsonl (a planted effect is found, a null is not)."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from sde_datagen.design import PRESETS
from sde_study.plan import Plan, write_plan
from sde_study.report import write_report
from sde_study.folder import DOC_STATS as DOC_STATS_NAME, RESULTS as RESULTS_NAME, stats_entry
from sde_tasks.docstats import EXTRACTION, DocStats

BASE = PRESETS["paper-base"].id
BETTER = "first-nomi-natural-pu-text-none"  # placement=first: planted +0.15 detection rate
SAME = "last-nomi-natural-ou-text-none"  # ew-sde: the same behaviour as paper-base
NUMERIC = "last-nomi-natural-pu-numeric-none"  # labels=numeric: planted +0.15, against the paper's direction
N_DOCS, SEEDS = 400, (0, 1, 2)


def run(rng: np.random.Generator, gold: np.ndarray, detect: np.ndarray, lift: float) -> DocStats:
    tp = rng.binomial(gold, np.clip(detect + lift, 0, 1))
    fp = rng.poisson(0.8, len(gold))
    zeros = np.zeros_like(tp)
    errors = (rng.random(len(gold)) < 0.05).astype(int)
    table = np.stack([tp, fp, gold - tp, tp, fp, gold - tp, zeros, errors, np.ones_like(tp)], axis=1)
    return DocStats(EXTRACTION, (), table.astype(float))


def write_study(root: Path, lifts: tuple[tuple[str, float], ...] = ((BASE, 0.0), (BETTER, 0.15), (SAME, 0.0)),
                task: str = "ner", second_lifts: dict[str, float] | None = None) -> Plan:
    """A study of planted effects; `second_lifts` (design -> lift) for the task's second lm-eval task (MASA's out of
    domain), the same documents' difficulty."""
    rng = np.random.default_rng(0)
    gold, detect = 1 + rng.poisson(1.5, N_DOCS), rng.beta(2, 3, N_DOCS)
    plan = Plan(model="m", task=task, designs=[d for d, _ in lifts], seeds=list(SEEDS), eval_limit=N_DOCS,
                analysis=False)
    rows, stats = [], []
    for lm_task, task_lifts in zip(plan.lm_eval_tasks, (dict(lifts), second_lifts or {})):
        for design, lift in task_lifts.items():
            for seed in SEEDS:
                found = run(rng, gold, detect, lift)
                row = {"kind": "tuned", "design": design, "seed": seed, "task": lm_task, **found.corpus(),
                       "n_docs": N_DOCS, "final_loss": 0.5}
                rows.append(row)
                stats.append(stats_entry(row, found))
    root.mkdir(parents=True, exist_ok=True)
    write_plan(root, plan)
    (root / RESULTS_NAME).write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    (root / DOC_STATS_NAME).write_text("".join(json.dumps(s) + "\n" for s in stats), encoding="utf-8")
    return plan


def test_report_has_intervals_tests_verdicts_and_power(tmp_path: Path) -> None:
    root = tmp_path / "study"
    plan = write_study(root)
    rows = [json.loads(line) for line in (root / RESULTS_NAME).read_text(encoding="utf-8").splitlines()]
    report = write_report(root, plan, rows).read_text(encoding="utf-8")
    ci = r"\d\.\d{4} \[\d\.\d{4}, \d\.\d{4}\]"
    # paper rule, strict rule, format errors, runaway (— : the synthetic study has no runaway column)
    assert re.search(rf"\| `{BASE}` \(paper-base\) \| {ci} \| {ci} \| {ci} \| — \| 0\.5000 ± 0\.0000 \| 3 \|", report)
    verdict = "better|worse|not distinguishable"
    effect = rf"(\S+) \[(\S+), (\S+)\] \| (\S+) \| ({verdict})"
    planted = re.search(rf"\| placement=first \| sde_ner \| {effect} \| {effect} \| better under both \| 3/3 \|", report)
    assert planted, report
    assert float(planted[2]) > 0 and float(planted[4]) < 0.05 and planted[5] == "better"
    assert float(planted[7]) > 0 and planted[10] == "better"  # strict
    null = re.search(rf"\| ew-sde \| sde_ner \| {effect} \|", report)
    assert null and float(null[2]) < 0 < float(null[3]) and null[5] == "not distinguishable"
    assert f"paper rule: **`{BETTER}`** (placement=first)" in report
    assert "**Robust**: both scoring rules recommend `placement=first`." in report
    assert "It is better than every other design of the study" in report
    assert re.search(r"- paper rule: Power: with 400 test documents and 3 seed\(s\), this study detects a true difference of "
                     r"0\.\d{4} f1", report)
    assert "To resolve the observed lead of `placement=first` over" in report
    assert re.search(r"- strict rule: Power: with 400 test documents and 3 seed\(s\), this study detects", report)
    for plot in ("designs.png", "effects.png"):
        assert (root / "plots" / plot).stat().st_size > 0


def test_power_line_states_the_seeds_measured_not_the_seeds_planned(tmp_path: Path) -> None:
    """A race or an unfinished study has fewer cells than its plan: the power line speaks of the seeds it has."""
    root = tmp_path / "study"
    plan = write_study(root)
    rows = [json.loads(line) for line in (root / RESULTS_NAME).read_text(encoding="utf-8").splitlines()]
    stats = (root / DOC_STATS_NAME).read_text(encoding="utf-8").splitlines()
    keep = [i for i, r in enumerate(rows) if r["seed"] < 2 or r["design"] == BETTER]  # 3 seeds of one, 2 of others
    (root / DOC_STATS_NAME).write_text("".join(stats[i] + "\n" for i in keep), encoding="utf-8")
    report = write_report(root, plan, [rows[i] for i in keep]).read_text(encoding="utf-8")
    assert "Power: with 400 test documents and 2 to 3 seeds per design, this study detects" in report
    assert re.search(r"To resolve the observed lead of `placement=first` over `\S+` \([+-]\S+\) with 80% power: "
                     r"(about [\d,]+ test documents|no number of test documents would,) at 2 seed\(s\)", report)


def test_a_one_seed_study_says_its_intervals_leave_out_the_seed_noise(tmp_path: Path) -> None:
    """With one seed per design there is no seed variance to pool: the report must not let a verdict read as one
    about the designs."""
    root = tmp_path / "study"
    plan = write_study(root)
    rows = [json.loads(line) for line in (root / RESULTS_NAME).read_text(encoding="utf-8").splitlines()]
    stats = (root / DOC_STATS_NAME).read_text(encoding="utf-8").splitlines()
    keep = [i for i, r in enumerate(rows) if r["seed"] == 0]
    (root / DOC_STATS_NAME).write_text("".join(stats[i] + "\n" for i in keep), encoding="utf-8")
    one_seed = write_report(root, plan, [rows[i] for i in keep]).read_text(encoding="utf-8")
    assert "**One seed per design**: the seed noise is not measured" in one_seed
    write_study(root)
    assert "One seed per design" not in write_report(root, plan, rows).read_text(encoding="utf-8")


def test_report_checks_the_papers_directions(tmp_path: Path) -> None:
    """Each of the paper's findings the designs allow: the planted effects replicate one and reverse another."""
    root = tmp_path / "study"
    plan = write_study(root, ((BASE, 0.0), (BETTER, 0.15), (SAME, 0.0), (NUMERIC, 0.15)))
    rows = [json.loads(line) for line in (root / RESULTS_NAME).read_text(encoding="utf-8").splitlines()]
    report = write_report(root, plan, rows).read_text(encoding="utf-8")
    section = report.split("## The paper's directions")[1].split("\n## ")[0]
    found = {m[0]: (float(m[1]), float(m[2]), float(m[3]), m[4])
             for m in re.findall(r"\| ([^|]+?) \| [^|]+ \| [^|]+ \| \d+ vs \d+ \| ([+-]\S+) \[([+-]\S+), ([+-]\S+)\] \| "
                                 r"\S+ \| ([^|]+?) \|", section)}
    assert set(found) == {"Inst-first beats Inst-last", "PU beats OU", "Text labels beat numeric labels"}, section
    delta, low, _, verdict = found["Inst-first beats Inst-last"]
    assert delta > 0 and low > 0 and verdict == "replicated"
    delta, _, high, verdict = found["Text labels beat numeric labels"]
    assert delta < 0 and high < 0 and verdict == "reversed"
    _, low, high, verdict = found["PU beats OU"]
    assert low < 0 < high and verdict == "not distinguishable"


def test_report_checks_the_papers_directions_on_each_task(tmp_path: Path) -> None:
    """MASA: the directions in domain and out of domain, each in its own table, Holm within the task; a design
    evaluated in domain only (No-Inst) leaves out of domain the findings it is in."""
    root = tmp_path / "study"
    none = "none-nomi-natural-pu-text-none"
    plan = write_study(root, ((BASE, 0.0), (BETTER, 0.15), (none, 0.0)), task="masa",
                       second_lifts={BASE: 0.0, BETTER: -0.15})
    rows = [json.loads(line) for line in (root / RESULTS_NAME).read_text(encoding="utf-8").splitlines()]
    section = write_report(root, plan, rows).read_text(encoding="utf-8").split("## The paper's directions")[1]
    section = section.split("\n## ")[0]
    in_domain, out_of_domain = section.split("### sde_masa_id")[1].split("### sde_masa_ood")
    row = r"\| Inst-first beats Inst-last \| placement=first \| paper-base \| 3 vs 3 \| [^|]+ \| \S+ \| (\w+) \|"
    assert re.search(row, in_domain)[1] == "replicated" and re.search(row, out_of_domain)[1] == "reversed"
    assert "Inst-first beats No-Inst" in in_domain and "No-Inst" not in out_of_domain


def test_report_ties_designs_it_cannot_separate(tmp_path: Path) -> None:
    root = tmp_path / "study"
    plan = write_study(root)
    plan.designs = [BASE, SAME]
    rows = [r for r in (json.loads(line) for line in (root / RESULTS_NAME).read_text(encoding="utf-8").splitlines())
            if r["design"] != BETTER]
    report = write_report(root, plan, rows).read_text(encoding="utf-8")
    assert "Statistically tied with it (paired, α 0.05" in report
    assert re.search(r"test documents at 3 seed\(s\) \(the test set has 1425\)|no number of test documents", report)


def test_a_damaged_docstats_file_is_named_not_a_traceback(tmp_path: Path) -> None:
    from sde_datagen.errors import UserError

    root = tmp_path / "study"
    plan = write_study(root)
    rows = [json.loads(line) for line in (root / RESULTS_NAME).read_text(encoding="utf-8").splitlines()]
    lines = (root / DOC_STATS_NAME).read_text(encoding="utf-8").splitlines()
    (root / DOC_STATS_NAME).write_text("\n".join([lines[0], lines[1][:40], *lines[2:]]) + "\n", encoding="utf-8")
    with pytest.raises(UserError, match=f"{DOC_STATS_NAME}:2: not a per-document statistics row"):
        write_report(root, plan, rows)



COMMITTED = sorted(p.parent for p in (Path(__file__).resolve().parents[1] / "docs" / "studies").rglob("study.yaml")
                   if "\ntask: masa\n" not in p.read_text(encoding="utf-8"))  # the extraction studies


@pytest.mark.parametrize("study", COMMITTED, ids=[s.name for s in COMMITTED])
def test_committed_reports_give_each_designs_strict_f1_as_its_docstats_do(study: Path) -> None:
    """Every design's strict-rule F1 in a committed REPORT.md, recomputed here with nothing but numpy from
    docstats.jsonl: a sentence with a format error predicts nothing (no TP or FP; its gold items are missed)."""
    by_design: dict[str, list[float]] = {}
    for line in (study / DOC_STATS_NAME).read_text(encoding="utf-8").splitlines():
        entry = json.loads(line)
        if entry["kind"] != "tuned" or entry["family"] != EXTRACTION:
            continue
        table = np.array(entry["table"], dtype=float)
        kept = table[:, 7] == 0  # format_error column
        tp, fp = (table[:, 0] * kept).sum(), (table[:, 1] * kept).sum()
        fn = table[:, 2].sum() + (table[:, 0] * ~kept).sum()
        by_design.setdefault(entry["design"], []).append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    report = (study / "REPORT.md").read_text(encoding="utf-8")
    assert by_design
    for design, values in by_design.items():
        row = re.search(rf"^\| `{design}`[^|]*\| [^|]+ \| (\d\.\d{{4}}) ", report, re.M)
        assert row, design
        assert row[1] == f"{np.mean(values):.4f}", design


def test_a_collapsed_cell_is_reported_with_what_its_training_data_says(tmp_path: Path) -> None:
    """A collapsed cell's one answer is looked up among its design's training answers: the report says how many of
    them it is, and after how many optimizer steps (the next user's first clue to a collapse)."""
    from sde_study.exports import ensure_exports
    from sde_study.plan import Plan, WorkItem
    from sde_study.report import collapsed_lines
    from sde_study.work import collapse_evidence

    design = "first-nomi-lines-pu-text-none"
    plan = Plan(model="m", task="ed", designs=[design], seeds=[0], train_size=40, analysis=False)
    ensure_exports(plan, tmp_path)
    nothing = " ".join(f"{t}: NONE" for t in plan.resolved_task().spec().target_names)
    evidence = collapse_evidence(tmp_path, WorkItem("cell", design, 0), nothing)
    from sde_train.data import load_rows

    answers = [" ".join(r["completion"].split()) for r in load_rows(str(tmp_path / "data" / design), design, "train")]
    assert 0 < answers.count(nothing) < 40 and evidence == {"top_answer": nothing,
                                                          "top_answer_train_share": answers.count(nothing) / 40}
    row = {"kind": "tuned", "design": design, "seed": 0, "task": "sde_ed", "collapsed": True, "top_answer_share": 0.99,
           "steps": 10, **evidence}
    line = "\n".join(collapsed_lines([row]))
    assert f"99% one answer; {evidence['top_answer_train_share']:.0%} of the training answers are that answer, 10 " \
           "optimizer steps" in line and "train for more steps (epochs)" in line


def test_every_study_command_takes_its_folder_as_out_and_the_old_positional_still_works(tmp_path: Path) -> None:
    import subprocess
    import sys

    write_study(tmp_path / "study")
    sde = [sys.executable, "-m", "sde_datagen.cli", "study"]
    for args in (["report", "--out", str(tmp_path / "study")], ["report", str(tmp_path / "study")],
                 ["status", "--out", str(tmp_path / "study")], ["status", str(tmp_path / "study")]):
        done = subprocess.run([*sde, *args], capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, (args, done.stderr)
    shown = subprocess.run([*sde, "status", "--help"], capture_output=True, text=True, timeout=600).stdout
    assert "--out DIR" in shown and "usage: sde study status [-h] [--out DIR]" in shown
    missing = subprocess.run([*sde, "report"], capture_output=True, text=True, timeout=600)
    assert missing.returncode == 2 and missing.stderr.strip() == "sde: error: give the study folder: --out DIR"


def test_the_trainer_takes_out_as_the_other_commands_do() -> None:
    import argparse

    from sde_train.config import add_train_arguments, config_from_args

    parser = argparse.ArgumentParser()
    add_train_arguments(parser)
    for flag in ("--out", "--output"):
        assert config_from_args(parser.parse_args(["--model", "m", "--dataset", "d", flag, "o"])).output == "o"
