"""A race on a study folder: `sde study race`'s loop (decide, train what the race needs, again) and REPORT.md's
section on it. The algorithm itself, a pure function of the cells, is sde_study.race."""
from __future__ import annotations

import statistics
from dataclasses import dataclass, replace
from typing import Any

from sde_datagen.design import short_name as short
from sde_study.folder import StudyFolder
from sde_study.plan import ALL_DOCS
from sde_study.race import (BUDGET, INSEPARABLE, Cell, Look, RaceState, Stages, cells_from_rows,
                            cells_to_finish, decide, median_cell_seconds, stages_of)
from sde_study.results import collect, headline, item_state, recorded_items, with_degeneracy
from sde_study.summary import summarise
from sde_study.work import Outcome
from sde_tasks.rules import PAPER, STRICT


@dataclass(frozen=True)
class Folder:
    """A race folder as the race sees it: the rows collect() gave, the per-document statistics and each cell's state."""

    rows: list[dict[str, Any]]  # tuned rows of the headline task, runaway and collapse completed from samples
    cells: dict[tuple[str, int], Cell]
    metric: str

    @classmethod
    def of(cls, root, plan, rows: list[dict[str, Any]]) -> "Folder":
        task = plan.lm_eval_tasks[0]
        rows = [r for r in with_degeneracy(root, plan, rows) if r["kind"] == "tuned" and r["task"] == task]
        recorded = recorded_items(root)  # the results file read once, not once per item
        failures = {(item.design, item.seed): tuple(state["errors"]) for item in plan.items()
                    if item.kind == "cell" and (state := item_state(root, item, recorded))["status"] == "failed"}
        metric = headline(rows[0]) if rows else plan.resolved_task().family.primary
        return cls(rows, cells_from_rows(rows, StudyFolder(root).read_doc_stats(), task, failures), metric)

    def state(self, plan, rule: str | None = None) -> RaceState:
        """The race under the plan's own rule or `rule`: a folder committed without cells/ continues from it."""
        return decide(self.cells, list(plan.designs), replace(plan.race, rule=rule or plan.race.rule), self.metric,
                      stages=stages_of(plan))


def run(root, plan, execute) -> tuple[RaceState, list[dict[str, Any]], Any]:
    """The race, rung after rung, from the cells a study folder has: decide, have `execute` (work item ids -> an
    Outcome) train the cells the race needs next, and again, until it is decided, or a rung had failures (a failure
    is never a verdict: the rerun trains them again) or items another worker holds. Returns the last state, the
    study's rows and what the rungs ended with."""
    outcome, asked = Outcome(), set()
    while True:
        rows = collect(root, plan)  # cells a killed race finished before it could collect them count
        state = Folder.of(root, plan, rows).state(plan)
        todo = ([f"{design}/seed-{seed}" for design, seed in state.next_cells]
                + [f"{design}/seed-{seed}{ALL_DOCS}" for design, seed in state.next_rest])
        if not todo or set(todo) <= asked or outcome.failures or outcome.elsewhere:
            return state, rows, outcome  # (asked before, in this run: what it gave did not change what the race has)
        asked |= set(todo)
        print(f"{root}: race rung {max(s for _, s in state.next_cells)}: {len(todo)} cell(s) to train "
              f"({', '.join(todo)})" if state.next_cells else
              f"{root}: the race's finalists: {len(todo)} cell(s) to evaluate on every test document")
        step = execute(todo)
        outcome = outcome.add(step)
        if step.failures:
            print(f"{root}: the race stops here: {len(step.failures)} failure(s) this rung; rerun the command to "
                  "train the failed cells again (a cell that fails the same way twice takes its design out)")


def race_lines(root, plan, rows: list[dict[str, Any]]) -> list[str]:
    """REPORT.md's section on a race: the algorithm, its trace, the compute against the grid's, both rules."""
    folder = Folder.of(root, plan, rows)
    state, stages = folder.state(plan), stages_of(plan)
    settings = state.settings
    lines = ["## The race", "",
             f"`sde study race` with at most {settings.max_seeds} seeds per design, eliminating by the **{settings.rule}** "
             f"rule, α {settings.alpha} split over its {max(1, settings.max_seeds - 1)} looks (at each look Holm over "
             f"every pair of the designs still in, one-sided against the best, the `{settings.test}` test), "
             f"δ {settings.delta}"
             + (f", budget {settings.budget_hours} h" if settings.budget_hours else "") + ". Rung 0 trains every "
             "design with one seed; each later rung adds a seed to the designs still in; with one seed only collapsed "
             "designs, and designs whose cell failed twice the same way, leave (a failed cell is trained again); "
             "from two seeds on a design leaves when the best design is better than it in a "
             "paired comparison (documents and seeds); the best never leaves. The race stops when the best is "
             "separated from every rival, when the survivors lie within ±δ of it, when the seeds run out, or when "
             "the budget would be passed." + (
                 f" The futility stop ({settings.futility}) pauses a rival the last seed could not separate from the "
                 f"best even at the upper {settings.futility:.0%} bound of its gap: it stays in and gets no seed until "
                 "a look finds it separable again; when every rival is paused the race stops (inseparable)."
                 if settings.futility else "") + (
                 f" Staged evaluation: a new cell is evaluated on the first {stages.first_docs} of the "
                 f"{stages.total_docs} test documents and every look reads those; the finalists' cells are then "
                 "evaluated on all of them." if stages else ""), "",
             "| rung | designs in | seeds per design | documents | best (mean) | left, and why | cells so far "
             "| hours so far |", "|---|---|---|---|---|---|---|---|"]
    every = max((c.stats.n_docs for c in folder.cells.values() if c.stats is not None), default=0)
    for look in state.looks:
        left = "; ".join(f"`{short(d)}`: {why}" for d, why in look.left.items()) or "—"
        best = f"`{short(look.best)}` ({look.means[look.best]:.4f})" if look.best else "—"
        lines.append(f"| {look.rung} | {len(look.survivors)} | {seeds_in_words(look, short)} | {look.docs or every} "
                     f"| {best} | {left} | {look.cells} | {look.hours:.2f} |")
    lines += [""] + compute_lines(state, folder.rows, plan) + finalist_lines(root, plan, state, folder, stages)
    lines += [f"**Decision** ({settings.rule} rule): "
              + (f"{state.decided}; finalists: {', '.join(f'`{short(d)}`' for d in state.survivors)}."
                 if state.decided else f"not decided yet; still in: {', '.join(f'`{short(d)}`' for d in state.survivors)}"
                 f"; next: {', '.join(f'{short(d)} seed {s}' for d, s in state.next_cells)} (rerun the command).")]
    other = STRICT if settings.rule == PAPER else PAPER
    replayed = folder.state(plan, other)
    lines += ["", f"The same cells raced under the **{other}** rule (a replay: the cells trained are the ones above): "
              f"{replayed.decided or 'not decided'}; finalists {', '.join(f'`{short(d)}`' for d in replayed.survivors)}"
              + (" — the same." if set(replayed.survivors) == set(state.survivors) else
                 " — **the finalists depend on the scoring rule**."),
              "", "Designs that left early were measured on fewer seeds than the finalists: their rows in the tables "
              "above carry the pooled between-seed variance, not their own, and their means are the means of the "
              "seeds they had.", ""]
    return lines


def finalist_lines(root, plan, state: RaceState, folder: Folder, stages: Stages | None) -> list[str]:
    """A staged race's finalists compared on every document (the looks, and the tables above, read the first ones)."""
    finalists = [r for r in folder.rows if r["design"] in state.survivors]
    if stages is None or len(state.survivors) < 2 or any(
            folder.cells[(r["design"], r["seed"])].stats.n_docs < stages.total_docs for r in finalists):
        return []
    found = summarise(finalists, replace(plan, designs=list(state.survivors)), StudyFolder(root).read_doc_stats(),
                      None, state.settings.rule)
    task = plan.lm_eval_tasks[0]
    scores = [(d, found.scores[(d, task, found.metric)]) for d in state.survivors]
    return [f"The finalists on all {stages.total_docs} documents ({state.settings.rule} rule, {found.metric}, 95% "
            "intervals over documents and seeds): " + ", ".join(
                f"`{short(d)}` {score.value:.4f} [{score.ci[0]:.4f}, {score.ci[1]:.4f}]" for d, score in scores)
            + f"; the best there: `{short(found.best)}`"
            + (f", the data do not tell it from {', '.join(f'`{short(d)}`' for d in found.tied)}" if found.tied else "")
            + ".", ""]


def seeds_in_words(look: Look, short) -> str:
    """The trace's seeds per design: one number when every design has as many, and the designs it pauses."""
    counts = sorted(set(look.seeds.values()))
    words = str(counts[0]) if len(counts) == 1 else ", ".join(f"`{short(d)}` {n}" for d, n in look.seeds.items())
    return words + (f"; paused: {', '.join(f'`{short(d)}`' for d in look.paused)}" if look.paused else "")


def compute_lines(state: RaceState, rows: list[dict[str, Any]], plan) -> list[str]:
    """Cells and measured hours against the full grid's (its cells at the mean measured cell time)."""
    seconds = [float(r.get("train_seconds", 0) or 0) + float(r.get("eval_seconds", 0) or 0) for r in rows]
    grid = len(plan.designs) * state.settings.max_seeds
    if not seconds:
        return []
    used, mean = sum(seconds) / 3600, statistics.fmean(seconds) / 3600
    more = cells_to_finish(state) if state.decided in (BUDGET, INSEPARABLE) else 0
    return [f"Compute: {len(rows)} cells of the grid's {grid} ({len(rows) / grid:.0%}), {used:.2f} h of measured "
            f"training and evaluation, against {grid * mean:.2f} h for the whole grid at the mean cell time "
            f"({mean * 60:.1f} min)." + (f" Racing the designs still in to {state.settings.max_seeds} seeds each "
                                         f"would take {more} more cells, about {more * mean:.1f} h." if more else ""),
            ""]


def status(root, plan) -> tuple[list[str], dict[str, dict[str, str]]]:
    """`sde study status` on a race: where it stands and what the rest of its rung costs at the measured median cell
    time; and the state of each cell it will not train now (a later rung's, or a design's that left)."""
    rows = collect(root, plan)  # cells finished since the race last collected them count
    folder = Folder.of(root, plan, rows)
    state = folder.state(plan)
    settings, looks = state.settings, state.looks
    left = {d: why for look in looks for d, why in look.left.items()}
    median = median_cell_seconds(folder.cells)
    rung = max((s for _, s in state.next_cells), default=looks[-1].rung if looks else 0)
    lines = [f"race: {settings.rule} rule, {folder.metric} on {plan.lm_eval_tasks[0]}; "
             + (f"decided ({state.decided}); finalists: {', '.join(short(d) for d in state.survivors)}" if state.decided
                else f"rung {rung} (each design's seed {rung}, of seeds 0-{settings.max_seeds - 1}); "
                     f"{len(state.survivors)} design(s) in")
             + (f"; out: {', '.join(f'{short(d)} ({why})' for d, why in left.items())}" if left else "")]
    if state.next_cells:
        lines.append(f"race: {len(state.next_cells)} cell(s) of rung {rung} still to train"
                     + (f", about {len(state.next_cells) * median / 3600:.1f} h at the median cell time so far "
                        f"({median / 60:.1f} min)" if median else "") + "; the race decides what follows from them")
    if state.next_rest:
        lines.append(f"race: {len(state.next_rest)} finalist cell(s) to evaluate on every test document")
    now = {f"{d}/seed-{s}" for d, s in state.next_cells}
    waiting = {item.id: ({"status": "left", "note": f"its design left the race: {left[item.design]}"}
                         if item.design in left else {"status": "later", "note": "a later rung's, if the race needs it"})
               for item in plan.items() if item.kind == "cell" and item.id not in now}
    return lines, waiting
