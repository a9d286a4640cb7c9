"""`sde study race` against the full grid, without a model: replays and simulations of `sde_study.race.decide`.

Compute is counted in measured hours: a cell's training, plus its evaluation scaled by the share of the test
documents evaluated (a staged race evaluates a new cell on the first FIRST_DOCS documents; a cell evaluated on all of
them later is evaluated again from the first: its first stage counts twice). Each race is run on the same cells five
ways: as the races planned before the welch test and the futility stop ran (the seed variance widened as if it were
the whole SE, no futility stop: the baseline), with the welch test alone, with the futility stop too (unstaged), and
staged in two forms: each rung looking at the first documents and then at all, or every look at the first documents
and the finalists evaluated on all, as `sde study race` runs a new race today ("staged-finalists").

1. Replay: every committed grid study (docs/studies/**/study.yaml), its cells taken in seed order as if they
   arrived one by one, under both scoring rules: does the race keep the grid's recommended design, and how many
   of the grid's cells does it train? (Among the designs the grid ran at every seed: a study still growing has
   designs with fewer.) Every committed race is decided again from its own files, as it stands, and
   raced again from its cells' per-document statistics: its hours against the grid's, and whether its best design
   stays among the finalists (a design whose next cell the committed race never trained has to leave).
2. Simulation: races of 10 designs x up to 5 seeds whose scores are drawn like the committed one-factor study's
   (its design means, its per-sentence gold counts and false-positive rate, its between-seed variance, its measured
   training and evaluation times): the share of the grid's cells and hours used and how often the true best design
   is among the finalists.
3. The null: the same, every design equally good: how often a race wrongly eliminates a design.
4. Where the hours go: the finalists a race cannot separate, at their measured cost, plus the least any other design
   can cost (2 cells: a test needs two seeds), as a share of the grid's hours: the `finalists_floor` under which no
   rule of eliminating sooner could bring the race with the same finalists.

Usage: python bench/race.py   (no arguments; a few minutes on a 2-core CPU). The last line is JSON.
"""
from __future__ import annotations

import json
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sde_study.plan import FIRST_DOCS, FUTILITY, WELCH, WIDENED, Plan, read_plan  # noqa: E402
from sde_study.race import (Cell, RaceSettings, RaceState, Stages, cells_from_rows, cells_used,  # noqa: E402
                            decide, seeds_had, staged)
from sde_study.race_folder import Folder  # noqa: E402
from sde_study.summary import summarise  # noqa: E402
from sde_study.folder import StudyFolder  # noqa: E402
from sde_study.results import with_degeneracy  # noqa: E402
from sde_tasks.rules import RULES  # noqa: E402
from sde_tasks.docstats import EXTRACTION, DocStats  # noqa: E402

SOURCE = REPO / "docs" / "studies" / "ner-one-factor-smollm2"  # the simulation the bars read
STRICT_RACE = REPO / "docs" / "studies" / "ner-race-smollm2-strict"  # 10 designs, 500 sentences, its own cell times
RACES, RESAMPLES, DESIGNS, SEEDS, SEED = 200, 500, 10, 5, 0
HEADLINE = "staged-finalists"  # the JSON line's top-level numbers: the race a new `sde study race` runs


def replay(study: Path, plan: Plan) -> list[dict]:
    """The race on a committed study's cells, under each rule, against the grid's own recommendation, both among the
    designs the grid ran at every seed."""
    rows = StudyFolder(study).read_rows()
    stats = StudyFolder(study).read_doc_stats()
    task = plan.lm_eval_tasks[0]
    rows = with_degeneracy(study, plan, rows)  # runaway and collapse from the logged samples, where kept
    cells = cells_from_rows(rows, stats, task)
    deepest = max(s for _, s in cells) if cells else 0
    # the designs the grid ran at every seed (one still growing would leave the race for a cell the grid lacks)
    full = [d for d in plan.designs if all((d, s) in cells for s in range(deepest + 1))]
    plan = replace(plan, designs=full)
    rows = [r for r in rows if r["kind"] != "tuned" or r["design"] in full]
    cells = {key: cell for key, cell in cells.items() if key[0] in full}
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


def variants(total_docs: int) -> dict[str, tuple[Stages | None, dict]]:
    """The races compared on the same cells, (stages, race settings): as races planned before the welch test and the
    futility stop ran (the baseline), with the welch test alone, with the futility stop too (unstaged), and staged in
    its two forms (the second, "staged-finalists", as `sde study race` runs a new race)."""
    today, stages = {"test": WELCH, "futility": FUTILITY}, staged(FIRST_DOCS, total_docs)
    return {"unstaged-widened": (None, {"test": WIDENED, "futility": 0.0}),
            "unstaged-no-futility": (None, {"test": WELCH, "futility": 0.0}), "unstaged": (None, today),
            "staged-each-rung": (replace(stages, every_rung=True) if stages else None, today),
            "staged-finalists": (stages, today)}


def committed_race(study: Path, plan: Plan) -> dict:
    """A committed race as its files stand (its decision, finalists and cells), and raced again from its cells'
    per-document statistics in each variant: the measured hours against the grid's, and whether the committed race's
    best design stays among the finalists. A cell the committed race never trained takes its design out of the
    replay (it has no statistics); its cost is counted all the same, at the mean cell's."""
    rows = StudyFolder(study).read_rows()
    folder = Folder.of(study, plan, rows)
    state = folder.state(plan)
    times = {key: (float(r["train_seconds"]), float(r["eval_seconds"]))
             for r in folder.rows if (key := (r["design"], r["seed"])) in folder.cells}
    mean = tuple(statistics.fmean(t[i] for t in times.values()) for i in (0, 1))
    total = max(c.stats.n_docs for c in folder.cells.values() if c.stats is not None)
    grid_hours = len(plan.designs) * plan.race.max_seeds * sum(mean) / 3600
    found = {}
    for name, (stages, race) in variants(total).items():
        again, had, twice = raced(folder.cells, list(plan.designs), replace(plan.race, **race), folder.metric, stages)
        lacking = sorted(key for key, c in had.items() if c.unusable and key not in folder.cells)
        spent = hours(had, times, total, twice, stages) + len(lacking) * (mean[0] + mean[1] * (stages.first_docs / total if stages
                                                                                 else 1)) / 3600
        found[name] = {"decided": again.decided or "not decided", "finalists": again.survivors,
                       "cells": sum(c.stats is not None for c in had.values()) + len(lacking),
                       "lacking": [f"{d} seed {s}" for d, s in lacking], "hours_fraction": round(spent / grid_hours, 3),
                       "best_kept": state.best in again.survivors}
    return {"study": study.relative_to(REPO).as_posix(), "rule": state.settings.rule,
            "decided": state.decided or "not decided", "finalists": state.survivors, "cells": cells_used(state),
            "grid_cells": len(plan.designs) * state.settings.max_seeds, "best": state.best,
            "grid_hours": round(grid_hours, 2), "variants": found,
            "hours_fraction": found[HEADLINE]["hours_fraction"], "best_kept": found[HEADLINE]["best_kept"]}


def raced(grid: dict[tuple[str, int], Cell], designs: list[str], settings: RaceSettings, metric: str,
          stages: Stages | None) -> tuple[RaceState, dict[tuple[str, int], Cell], set[tuple[str, int]]]:
    """The race as a study folder runs it, on cells taken from `grid`: a cell it asks for arrives evaluated on the
    first documents (all of them, unstaged), and on all of them when it asks again. Returns its state, the cells it
    had, as evaluated, and those it evaluated twice (first documents, then all)."""
    have: dict[tuple[str, int], Cell] = {}
    twice: set[tuple[str, int]] = set()
    while True:
        state = decide(have, designs, settings, metric, RESAMPLES, stages)
        if state.next_cells:
            for key in state.next_cells:
                cell = grid.get(key, Cell(None, unusable="not trained by the committed study"))
                first = stages is not None and cell.stats is not None
                have[key] = replace(cell, stats=cell.stats.subset(range(stages.first_docs))) if first else cell
        elif state.next_rest:
            have.update({key: grid[key] for key in state.next_rest})
            twice.update(state.next_rest)
        else:
            return state, have, twice


def hours(cells: dict[tuple[str, int], Cell], times: dict[tuple[str, int], tuple[float, float]],
          total_docs: int, twice: set[tuple[str, int]] = frozenset(), stages: Stages | None = None) -> float:
    """Measured compute: each cell's training, plus its evaluation scaled by the share of documents evaluated (the
    cells in `twice` evaluated on the first documents of `stages` before all of them)."""
    first = stages.first_docs if stages else 0
    return sum(times[key][0] + times[key][1] * (cell.stats.n_docs + (first if key in twice else 0)) / total_docs
               for key, cell in cells.items() if cell.stats is not None) / 3600


def trained(state, cells: dict) -> int:
    """Cells of the grid the race consumed (its stand-ins for cells the grid lacks not counted)."""
    return sum(1 for d, n in seeds_had(state).items() for s in range(n) if cells[(d, s)].stats is not None)


def source_parameters(source: Path) -> tuple[np.ndarray, float, list[float], float, tuple[float, float]]:
    """Gold counts per sentence, false positives per sentence, design means, the pooled seed SD (paper rule, f1) and
    the mean measured training and evaluation seconds of a cell, of a committed study."""
    rows = [r for r in StudyFolder(source).read_rows() if r["kind"] == "tuned"]
    times = (statistics.fmean(float(r["train_seconds"]) for r in rows),
             statistics.fmean(float(r["eval_seconds"]) for r in rows))
    stats = StudyFolder(source).read_doc_stats()
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
    return gold, fp_rate, means, float(np.sqrt(seed_var)), times


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


def simulate(rng: np.random.Generator, means: list[float], gold: np.ndarray, fp_rate: float, seed_sd: float,
             times: tuple[float, float], settings: RaceSettings,
             variants: dict[str, tuple[Stages | None, dict]]) -> dict[str, dict]:
    """One race of len(means) designs in each variant (staged or not), on the same cells: the share of the grid's
    cells and measured hours each used, whether the true best is among its finalists, how many designs it
    eliminated."""
    rates = [detection(m, gold, fp_rate) for m in means]
    slope = (detection(max(means) + 0.01, gold, fp_rate) - detection(max(means), gold, fp_rate)) / 0.01
    designs = [f"d{i}" for i in range(len(means))]
    grid = {(d, s): Cell(simulated_run(rng, gold, fp_rate, r + rng.normal(0, seed_sd * slope)), seconds=sum(times))
            for d, r in zip(designs, rates) for s in range(SEEDS)}
    cost = dict.fromkeys(grid, times)
    found = {}
    for name, (stages, race) in variants.items():
        state, had, twice = raced(grid, designs, replace(settings, **race), "f1", stages)
        finalists = {key: c for key, c in had.items() if key[0] in state.survivors}
        share = stages.first_docs / len(gold) if stages else 1.0
        floor = hours(finalists, cost, len(gold), twice, stages) + (len(designs) - len(state.survivors)) * 2 * (
            times[0] + times[1] * share) / 3600
        found[name] = {"cells": sum(c.stats is not None for c in had.values()) / len(grid),
                       "hours": hours(had, cost, len(gold), twice, stages) / hours(grid, cost, len(gold)),
                       "floor": floor / hours(grid, cost, len(gold)),
                       "best_kept": designs[int(np.argmax(means))] in state.survivors,
                       "eliminated": len(designs) - len(state.survivors)}
    return found


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
        for name, v in r["variants"].items():
            print(f"    raced again, {name}: {v['decided']}; finalists {v['finalists']}; {v['cells']} cells, "
                  f"{v['hours_fraction']:.1%} of the grid's {r['grid_hours']:.2f} measured hours; its best "
                  f"{r['best']} kept: {v['best_kept']}"
                  + (f"; cells it lacks (their designs leave, their cost counted): {v['lacking']}" if v["lacking"]
                     else ""))
    simulated = {}
    for source in (SOURCE, STRICT_RACE):
        simulated[source.name] = simulation(source)
    headline = simulated[SOURCE.name][HEADLINE]
    print(f"({time.perf_counter() - start:.0f} s)")
    print(json.dumps({"replay": [{k: r[k] for k in ("study", "rule", "same_winner", "cells_fraction")}
                                 for r in replays],
                      "races": [{k: r[k] for k in ("study", "rule", "decided", "cells", "hours_fraction", "best_kept")}
                                for r in races],
                      "simulated": {k: v for k, v in headline.items() if k != "null_false_elimination"},
                      "null_false_elimination": headline["null_false_elimination"], "variants": simulated}))
    return 0


def simulation(source: Path) -> dict[str, dict]:
    """RACES races of DESIGNS designs drawn like the committed study `source`, and RACES under the null, in every
    variant on the same cells."""
    gold, fp_rate, source_means, seed_sd, times = source_parameters(source)
    rng = np.random.default_rng(SEED)
    settings = RaceSettings(max_seeds=SEEDS)
    print(f"Simulation drawn like {source.relative_to(REPO)}: {len(gold)} sentences, {gold.sum()} gold entities, "
          f"{fp_rate:.2f} false positives per sentence, design means {[round(m, 3) for m in source_means]}, seed SD "
          f"{seed_sd:.4f}, a cell {times[0]:.0f} s training + {times[1]:.0f} s evaluation")
    runs = []
    for _ in range(RACES):
        extra = list(rng.uniform(min(source_means), max(source_means), max(0, DESIGNS - len(source_means))))
        runs.append(simulate(rng, source_means + extra, gold, fp_rate, seed_sd, times, settings, variants(len(gold))))
    grand = statistics.fmean(source_means)
    null = [simulate(rng, [grand] * DESIGNS, gold, fp_rate, seed_sd, times, settings, variants(len(gold)))
            for _ in range(RACES)]
    summary = {name: {"cells_fraction": round(statistics.fmean(r[name]["cells"] for r in runs), 3),
                      "hours_fraction": round(statistics.fmean(r[name]["hours"] for r in runs), 3),
                      "finalists": round(DESIGNS - statistics.fmean(r[name]["eliminated"] for r in runs), 2),
                      "finalists_floor": round(statistics.fmean(r[name]["floor"] for r in runs), 3),
                      "best_kept": round(statistics.fmean(r[name]["best_kept"] for r in runs), 3),
                      "null_false_elimination": round(statistics.fmean(r[name]["eliminated"] > 0 for r in null), 3)}
               for name in variants(len(gold))}
    print(f"  {RACES} races of {DESIGNS} designs x up to {SEEDS} seeds, and {RACES} under the null (all designs equal); "
          "alpha 0.05 split over the looks, Holm over every pair of the designs still in:")
    for name, found in summary.items():
        print(f"  {name}: {found['cells_fraction']:.1%} of the grid's cells and {found['hours_fraction']:.1%} of its "
              f"measured hours on average; true best among the finalists in {found['best_kept']:.1%}; under the null "
              f"a design wrongly eliminated in {found['null_false_elimination']:.1%}; {found['finalists']:.2f} "
              f"finalists, whose cells with 2 for each other design (the first look that can drop one) would be "
              f"{found['finalists_floor']:.1%} of the hours")
    return summary


if __name__ == "__main__":
    sys.exit(main())
