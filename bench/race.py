"""`sde study race` against the full grid, without a model: replays and simulations of `sde_study.race.decide`.

1. Replay: every committed grid study (docs/studies/**/study.yaml), its cells taken in seed order as if they
   arrived one by one, under both scoring rules: does the race keep the grid's recommended design, and how many
   of the grid's cells does it train? Every committed race is decided again from its own files, as it stands.
2. Simulation: races of 10 designs x up to 5 seeds whose scores are drawn like the committed one-factor study's
   (its design means, its per-sentence gold counts and false-positive rate, its between-seed variance): the share of
   the grid trained and how often the true best design is among the finalists.
3. The null: the same, every design equally good: how often a race wrongly eliminates a design.

Usage: python bench/race.py   (no arguments; about a minute on a 2-core CPU). The last line is JSON.
"""
from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sde_study.plan import Plan, read_plan  # noqa: E402
from sde_study.race import Cell, Folder, RaceSettings, cells_from_rows, cells_used, decide  # noqa: E402
from sde_study.summary import summarise  # noqa: E402
from sde_study.folder import StudyFolder  # noqa: E402
from sde_study.results import with_degeneracy  # noqa: E402
from sde_tasks.rules import RULES  # noqa: E402
from sde_tasks.docstats import EXTRACTION, DocStats  # noqa: E402

SOURCE = REPO / "docs" / "studies" / "ner-one-factor-smollm2"
RACES, RESAMPLES, DESIGNS, SEEDS, SEED = 200, 500, 10, 5, 0


def replay(study: Path, plan: Plan) -> list[dict]:
    """The race on a committed study's cells, under each rule, against the grid's own recommendation."""
    rows = StudyFolder(study).read_rows()
    stats = StudyFolder(study).read_doc_stats()
    task = plan.lm_eval_tasks[0]
    rows = with_degeneracy(study, plan, rows)  # runaway and collapse from the logged samples, where kept
    cells = cells_from_rows(rows, stats, task)
    deepest = max(s for _, s in cells) if cells else 0
    for design in plan.designs:  # a design the grid ran with fewer seeds than others leaves when the race needs one
        for seed in range(deepest + 1):
            cells.setdefault((design, seed), Cell(None, unusable="not in the committed grid"))
    found = []
    for rule in RULES:
        summary = summarise(rows, plan, stats, None, rule)
        recommended = summary.best if summary.best not in summary.collapsed else None  # all collapsed: none
        settings = RaceSettings(max_seeds=deepest + 1, rule=rule)
        state = decide(cells, list(plan.designs), settings, summary.metric, resamples=RESAMPLES)
        finalists = state.survivors
        found.append({"study": study.relative_to(REPO).as_posix(), "rule": rule, "recommended": recommended,
                      "finalists": finalists, "same_winner": recommended in finalists or not (recommended or finalists),
                      "cells_fraction": round(trained(state, cells) / sum(1 for c in cells.values() if c.stats), 3),
                      "stopped": state.decided or "the grid has no more cells"})
    return found


def committed_race(study: Path, plan: Plan) -> dict:
    """A committed race as its files stand: its decision and finalists, and how many cells it trained."""
    state = Folder.of(study, plan, StudyFolder(study).read_rows()).state(plan)
    return {"study": study.relative_to(REPO).as_posix(), "rule": state.settings.rule,
            "decided": state.decided or "not decided", "finalists": state.survivors, "cells": cells_used(state),
            "grid_cells": len(plan.designs) * state.settings.max_seeds}


def trained(state, cells: dict) -> int:
    """Cells of the grid the race consumed (its stand-ins for cells the grid lacks not counted)."""
    return sum(1 for look in state.looks for d in look.survivors if cells[(d, look.rung)].stats is not None)


def source_parameters() -> tuple[np.ndarray, float, list[float], float]:
    """Gold counts per sentence, false positives per sentence, design means and the pooled seed SD of the
    committed one-factor study (paper rule, f1)."""
    stats = StudyFolder(SOURCE).read_doc_stats()
    tables = [s.table for key, s in stats.items() if key[0] == "tuned"]
    gold = (tables[0][:, 0] + tables[0][:, 2]).astype(int)
    fp_rate = float(np.mean([t[:, 1].mean() for t in tables]))
    by_design: dict[str, list[float]] = {}
    for key, s in stats.items():
        if key[0] == "tuned":
            by_design.setdefault(key[1], []).append(s.corpus()["f1"])
    means = [statistics.fmean(v) for v in by_design.values()]
    pooled = [v for v in by_design.values() if len(v) > 1]
    seed_var = sum(sum((x - statistics.fmean(v)) ** 2 for x in v) for v in pooled) / sum(len(v) - 1 for v in pooled)
    return gold, fp_rate, means, float(np.sqrt(seed_var))


def detection(f1: float, gold: np.ndarray, fp_rate: float) -> float:
    """The per-item detection rate that gives a corpus F1 of `f1` with `fp_rate` false positives per sentence."""
    g, f = gold.sum(), fp_rate * len(gold)
    return float(np.clip(f1 * (g + f) / (g * (2 - f1)), 0.0, 1.0))


def simulated_run(rng: np.random.Generator, gold: np.ndarray, fp_rate: float, rate: float) -> DocStats:
    tp = rng.binomial(gold, np.clip(rate, 0, 1))
    fp = rng.poisson(fp_rate, len(gold))
    zeros = np.zeros(len(gold))
    return DocStats(EXTRACTION, (), np.stack([tp, fp, gold - tp, tp, fp, gold - tp, zeros, zeros,
                                              np.ones(len(gold))], axis=1).astype(float))


def simulate(rng: np.random.Generator, means: list[float], gold: np.ndarray, fp_rate: float,
             seed_sd: float) -> tuple[float, bool, int]:
    """One race of len(means) designs: (share of the grid trained, true best kept, designs eliminated)."""
    rates = [detection(m, gold, fp_rate) for m in means]
    slope = (detection(max(means) + 0.01, gold, fp_rate) - detection(max(means), gold, fp_rate)) / 0.01
    designs = [f"d{i}" for i in range(len(means))]
    cells = {(d, s): Cell(simulated_run(rng, gold, fp_rate, r + rng.normal(0, seed_sd * slope)), seconds=1.0)
             for d, r in zip(designs, rates) for s in range(SEEDS)}
    state = decide(cells, designs, RaceSettings(max_seeds=SEEDS), "f1", resamples=RESAMPLES)
    used = cells_used(state)
    best = designs[int(np.argmax(means))]
    return used / (len(designs) * SEEDS), best in state.survivors, len(designs) - len(state.survivors)


def main() -> int:
    start = time.perf_counter()
    plans = {study.parent: read_plan(study.parent) for study in sorted(REPO.glob("docs/studies/**/study.yaml"))}
    replays = [r for study, plan in plans.items() if plan.race is None for r in replay(study, plan)]
    print("Replay of the committed grid studies (cells in seed order):")
    for r in replays:
        print(f"  {r['study']} [{r['rule']}]: grid recommends {r['recommended']}; race finalists "
              f"{r['finalists']}; same winner kept: {r['same_winner']}; cells {r['cells_fraction']:.2f} of the "
              f"grid's; stopped: {r['stopped']}")
    races = [committed_race(study, plan) for study, plan in plans.items() if plan.race is not None]
    print("The committed races, decided again from their files:")
    for r in races:
        print(f"  {r['study']} [{r['rule']}]: {r['decided']}; finalists {r['finalists']}; {r['cells']} of the "
              f"grid's {r['grid_cells']} cells")
    gold, fp_rate, source_means, seed_sd = source_parameters()
    rng = np.random.default_rng(SEED)
    print(f"Simulation source: {len(gold)} sentences, {gold.sum()} gold entities, {fp_rate:.2f} false positives "
          f"per sentence, design means {[round(m, 3) for m in source_means]}, seed SD {seed_sd:.4f}")
    fractions, kept = [], 0
    for _ in range(RACES):
        extra = list(rng.uniform(min(source_means), max(source_means), DESIGNS - len(source_means)))
        fraction, best_kept, _ = simulate(rng, source_means + extra, gold, fp_rate, seed_sd)
        fractions.append(fraction)
        kept += best_kept
    null_wrong = 0
    grand = statistics.fmean(source_means)
    for _ in range(RACES):
        _, _, eliminated = simulate(rng, [grand] * DESIGNS, gold, fp_rate, seed_sd)
        null_wrong += eliminated > 0
    simulated = {"cells_fraction": round(statistics.fmean(fractions), 3), "best_kept": round(kept / RACES, 3)}
    print(f"Simulated races ({RACES}, {DESIGNS} designs x up to {SEEDS} seeds): {simulated['cells_fraction']:.1%} of "
          f"the grid's cells trained on average; true best among the finalists in {simulated['best_kept']:.1%}")
    print(f"Null ({RACES} races, all designs equal): a design wrongly eliminated in {null_wrong / RACES:.1%} "
          f"(alpha 0.05 split over the looks, Holm over the rivals)")
    print(f"({time.perf_counter() - start:.0f} s)")
    print(json.dumps({"replay": [{k: r[k] for k in ("study", "rule", "same_winner", "cells_fraction")}
                                 for r in replays],
                      "races": [{k: r[k] for k in ("study", "rule", "decided", "cells")} for r in races],
                      "simulated": simulated, "null_false_elimination": round(null_wrong / RACES, 3)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
