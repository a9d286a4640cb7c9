"""Intervals and paired tests (sde_tasks.docstats, sde_tasks.significance): exact on the identity resample,
calibrated by simulation, and `sde score --ci / --baseline` as a user calls them."""
from __future__ import annotations

import json
from statistics import NormalDist

import numpy as np
import pytest

from sde_datagen.cli import main
from sde_datagen.data import bundled_dir
from sde_datagen.design import resolve_design
from sde_datagen.records import load_records
from sde_datagen.render import render_sample
from sde_datagen.tasks import load_task
from sde_tasks import significance as S
from sde_tasks.docstats import CLASSIFICATION, EXTRACTION, DocStats
from sde_tasks.scoring import aggregate, doc_stats, score_items

SIMULATIONS = 400
RESAMPLES = 1_000


def gold_and_noisy(task: str, design: str, n: int, seed: int) -> tuple[list[str], list[str]]:
    """Gold completions of the first n test records, and the same with every third answer blanked or cut."""
    spec = load_task(task)
    chosen = resolve_design(design, spec.family)
    records = load_records(spec, bundled_dir(task) / f"{spec.splits['test']}.jsonl")[:n]
    gold = [render_sample(spec, chosen, r).completion for r in records]
    rng = np.random.default_rng(seed)
    noisy = [g if rng.random() > 0.35 else g[: len(g) // 2] for g in gold]
    return gold, noisy


@pytest.mark.parametrize("task,design", [("ner", "es-sde"), ("ed", "heuristic"), ("masa", "paper-base")])
def test_identity_resample_is_the_corpus_metric_exactly(task, design):
    gold, noisy = gold_and_noisy(task, design, 300, 0)
    scored = score_items(task, design, noisy, gold)
    spec, items = scored.spec, scored.items
    stats = doc_stats(items, spec)
    assert stats.corpus() == aggregate(items, spec)  # exact, every metric
    ones = np.ones((1, stats.n_docs))
    assert {k: float(v[0]) for k, v in stats.resampled(ones).items()} == aggregate(items, spec)


def test_comparison_of_a_run_with_itself_and_with_a_worse_one():
    gold, noisy = gold_and_noisy("ner", "es-sde", 400, 1)
    scored = score_items("ner", "es-sde", gold, gold)
    spec, good = scored.spec, scored.items
    bad = score_items("ner", "es-sde", noisy, gold).items
    good, bad = doc_stats(good, spec), doc_stats(bad, spec)
    same = {c.metric: c for c in S.compare_runs([good], [good], resamples=RESAMPLES)}
    assert same["f1"].delta == 0 and same["f1"].ci == (0.0, 0.0) and same["f1"].verdict == S.TIED
    worse = {c.metric: c for c in S.compare_runs([bad], [good], resamples=RESAMPLES)}
    assert worse["f1"].verdict == S.WORSE and worse["f1"].p < 0.05 and worse["f1"].ci[1] < 0
    assert worse["format_error_rate"].verdict == S.WORSE and worse["format_error_rate"].delta > 0


def test_holm_adjusts_in_step_down_order():
    assert S.holm([0.01, 0.04, 0.03, 0.5]) == pytest.approx([0.04, 0.09, 0.09, 0.5])
    assert S.holm([]) == []


def test_documents_needed_scales_with_the_square_of_the_lead():
    se, n = 0.01, 500
    at_detectable = S.documents_needed(S.detectable(se), se, n)
    assert at_detectable == pytest.approx(n)
    assert S.documents_needed(S.detectable(se) / 2, se, n) == pytest.approx(4 * n)
    assert S.documents_needed(0.001, se, n, seed_variance=1.0, n_seeds=3) == float("inf")


# ---------------------------------------------------------------------------------------- simulations

def extraction_population(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-document behaviour: gold entities, detection probability, expected false positives."""
    gold = 1 + rng.poisson(1.5, n)
    detect = rng.beta(2, 3, n)
    spurious = rng.gamma(1.0, 0.8, n)
    return gold, detect, spurious


def extraction_run(rng, gold, detect, spurious, lift: float = 0.0) -> DocStats:
    tp = rng.binomial(gold, np.clip(detect + lift, 0, 1))
    fp = rng.poisson(spurious)
    zeros = np.zeros_like(tp)
    table = np.stack([tp, fp, gold - tp, tp, fp, gold - tp, zeros, zeros, np.ones_like(tp)], axis=1).astype(float)
    return DocStats(EXTRACTION, (), table)


def test_paired_test_false_positive_rate_is_near_alpha():
    rng = np.random.default_rng(7)
    rejections = 0
    for i in range(SIMULATIONS):
        behaviour = extraction_population(rng, 200)
        a, b = extraction_run(rng, *behaviour), extraction_run(rng, *behaviour)
        f1 = next(c for c in S.compare_runs([a], [b], resamples=RESAMPLES, seed=i) if c.metric == "f1")
        rejections += f1.p < S.ALPHA
    assert 0.02 <= rejections / SIMULATIONS <= 0.08


def test_planted_effect_is_detected_as_often_as_the_power_line_predicts():
    rng = np.random.default_rng(8)
    lift = 0.07
    big = extraction_population(rng, 400_000)  # the true difference in F1 of this lift
    true_delta = extraction_run(rng, *big, lift).corpus()["f1"] - extraction_run(rng, *big).corpus()["f1"]
    detected, ses = 0, []
    for i in range(SIMULATIONS):
        behaviour = extraction_population(rng, 200)
        a, b = extraction_run(rng, *behaviour, lift), extraction_run(rng, *behaviour)
        f1 = next(c for c in S.compare_runs([a], [b], resamples=RESAMPLES, seed=i) if c.metric == "f1")
        detected += f1.verdict == S.BETTER
        ses.append(f1.se)
    se = float(np.mean(ses))
    predicted = NormalDist().cdf(true_delta / se - NormalDist().inv_cdf(1 - S.ALPHA / 2))
    assert 0.3 < predicted < 0.95  # the planted effect is neither trivial nor hopeless
    assert abs(detected / SIMULATIONS - predicted) < 0.1, (detected, predicted)
    # and the power line's detectable difference is the one detected with 80% power
    assert S.detectable(se) == pytest.approx(2.8016 * se, rel=1e-3)


def test_intervals_of_f1_and_kappa_cover_the_true_value():
    rng = np.random.default_rng(9)
    big = extraction_population(rng, 400_000)
    true_f1 = extraction_run(rng, *big).corpus()["f1"]
    labels = ("positive", "neutral", "negative", "unmentioned")
    prior = np.array([0.3, 0.1, 0.1, 0.5])

    def classification_run(n: int) -> DocStats:
        gold = rng.choice(4, size=(n, 6), p=prior)
        right = rng.random((n, 6)) < 0.7
        pred = np.where(right, gold, rng.integers(0, 4, size=(n, 6)))
        table = np.zeros((n, 16 + 3))
        for j in range(6):
            np.add.at(table, (np.arange(n), gold[:, j] * 4 + pred[:, j]), 1)
        table[:, -3] = right.all(axis=1)
        table[:, -1] = 1
        return DocStats(CLASSIFICATION, labels, table)

    true_kappa = classification_run(300_000).corpus()["kappa"]
    covered = {"f1": 0, "kappa": 0}
    for i in range(SIMULATIONS):
        f1 = S.confidence_intervals([extraction_run(rng, *extraction_population(rng, 200))], RESAMPLES, i)["f1"]
        kappa = S.confidence_intervals([classification_run(150)], RESAMPLES, i)["kappa"]
        covered["f1"] += f1[0] <= true_f1 <= f1[1]
        covered["kappa"] += kappa[0] <= true_kappa <= kappa[1]
    for metric, hits in covered.items():
        assert 0.90 <= hits / SIMULATIONS <= 0.98, (metric, hits)


def test_two_level_resample_widens_the_interval_with_seed_noise():
    rng = np.random.default_rng(10)
    behaviour = extraction_population(rng, 300)
    runs = [extraction_run(rng, *behaviour, lift) for lift in (-0.1, 0.0, 0.1)]  # very different seeds
    docs_only = S.replicates({"a": runs}, RESAMPLES, seeds_too=False)["a"]["f1"]
    both = S.replicates({"a": runs}, RESAMPLES)["a"]["f1"]
    assert np.std(both) > 2 * np.std(docs_only)


# ------------------------------------------------------------------------------------------ sde score

def write_outputs(path, predictions, targets):
    path.write_text("".join(json.dumps({"prediction": p, "target": t}, ensure_ascii=False) + "\n"
                            for p, t in zip(predictions, targets)), encoding="utf-8")
    return str(path)


def test_sde_score_ci_and_baseline(tmp_path, capsys):
    gold, noisy = gold_and_noisy("ed", "heuristic", 300, 2)
    good = write_outputs(tmp_path / "good.jsonl", gold, gold)
    bad = write_outputs(tmp_path / "bad.jsonl", noisy, gold)
    assert main(["score", "--task", "ed", "--design", "heuristic", "--ci", bad]) == 0
    result = json.loads(capsys.readouterr().out)
    for metric in ("precision", "recall", "f1", "soft_f1", "format_error_rate"):
        lo, hi = result[f"{metric}_ci"]
        assert lo <= result[metric] <= hi
    assert main(["score", "--task", "ed", "--design", "heuristic", bad, "--baseline", bad]) == 0
    same = {c["metric"]: c for c in json.loads(capsys.readouterr().out)["comparison"]}
    assert same["f1"]["delta"] == 0 and same["f1"]["verdict"] == "not distinguishable"
    assert main(["score", "--task", "ed", "--design", "heuristic", bad, "--baseline", good]) == 0
    compared = {c["metric"]: c for c in json.loads(capsys.readouterr().out)["comparison"]}
    assert set(compared["f1"]) == {"metric", "value", "baseline", "delta", "ci", "p", "verdict"}
    assert compared["f1"]["verdict"] == "worse" and compared["f1"]["p"] < 0.05 and compared["f1"]["ci"][1] < 0


def test_sde_score_baseline_on_other_documents_names_the_row(tmp_path, capsys):
    gold, _ = gold_and_noisy("ed", "heuristic", 20, 3)
    mine = write_outputs(tmp_path / "a.jsonl", gold, gold)
    shifted = write_outputs(tmp_path / "b.jsonl", gold, gold[:4] + gold[5:] + gold[4:5])
    assert main(["score", "--task", "ed", "--design", "heuristic", mine, "--baseline", shifted]) == 2
    err = capsys.readouterr().err
    assert "a.jsonl:5 and" in err and "b.jsonl:5" in err and "targets differ" in err and "Traceback" not in err
    short = write_outputs(tmp_path / "c.jsonl", gold[:10], gold[:10])
    assert main(["score", "--task", "ed", "--design", "heuristic", mine, "--baseline", short]) == 2
    assert "has 20 rows" in capsys.readouterr().err


@pytest.mark.parametrize("few", [1, 2])
def test_a_design_with_fewer_seeds_borrows_the_seed_noise(few: int) -> None:
    """Calibration by simulation: designs of equal quality whose training seeds move the score more than the
    documents do. A design with `few` seeds compared with one of 3 is called different in about 5% of studies
    (it borrows the pooled seed variance); counting only the document noise, it would be in most of them."""
    rng = np.random.default_rng(7)
    n_docs, seed_sd, studies = 150, 0.08, 200
    gold = 1 + rng.poisson(1.5, n_docs)

    def run(shift: float) -> DocStats:
        tp = rng.binomial(gold, np.clip(0.5 + shift, 0, 1))
        fp = rng.poisson(0.5, n_docs)
        zeros = np.zeros(n_docs)
        return DocStats("extraction", (), np.stack([tp, fp, gold - tp, tp, fp, gold - tp, zeros, zeros,
                                                    np.ones(n_docs)], axis=1).astype(float))

    rejected = 0
    for _ in range(studies):
        runs = {d: [run(rng.normal(0, seed_sd)) for _ in range(3)] for d in "abc"}
        runs["few"] = [run(rng.normal(0, seed_sd)) for _ in range(few)]
        reps = S.replicates(runs, resamples=400, seed=int(rng.integers(1 << 30)))
        rejected += S.p_value(reps["few"]["f1"] - reps["a"]["f1"]) < S.ALPHA
    assert rejected / studies <= 0.10
