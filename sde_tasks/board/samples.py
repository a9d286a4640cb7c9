"""A submission's logged samples recomputed into per-document statistics, and the small helpers the board's
checks share; the samples themselves are read by sde_tasks.logged."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from sde_tasks.board.store import samples_name, spec_name
from sde_tasks.docstats import DocStats
from sde_tasks.scoring import Degeneracy
from sde_tasks.logged import answer, read_samples

TOLERANCE = 1e-6
FILTER = "none"  # the sde tasks define no filter: metrics are computed on the raw generation


def same_number(a: Any, b: Any) -> bool:
    try:
        return math.isclose(float(a), float(b), rel_tol=0, abs_tol=1e-9)
    except (TypeError, ValueError):
        return False


def doc_ids(ids: list[int], shown: int = 8) -> str:
    """Document ids for a failure message: the first few, and how many in all."""
    head = ", ".join(str(i) for i in ids[:shown])
    return head + (f", … ({len(ids)} in all)" if len(ids) > shown else "")


def recomputed(folder: Path, task: str) -> tuple[DocStats, Degeneracy] | None:
    """Per-document statistics recomputed from a submission's logged documents and outputs (never from the
    items it logged), by the functions lm-eval calls, and how degenerate its outputs are; None where the samples
    cannot be read."""
    from sde_datagen.tasks import load_task
    from sde_tasks.scoring import doc_stats, logged_degeneracy
    from sde_tasks.tasks.utils import UserTask, process_results

    samples, failures = read_samples(folder / samples_name(task), task)
    if failures or not samples:
        return None
    ordered = sorted(samples, key=lambda s: s["doc_id"])
    docs = [s.get("doc") or {} for s in ordered]
    spec_file = folder / spec_name(task)
    user = UserTask(spec_file) if spec_file.is_file() else None
    try:
        items = [(user.process_results if user else process_results)(doc, [answer(s)])
                 for doc, s in zip(docs, ordered)]
        domain = docs[0].get("domain") or None
        spec = user.spec(domain) if user else load_task(docs[0]["task"], domain)
        degenerate = logged_degeneracy(ordered, spec)
    except (KeyError, TypeError, ValueError):
        return None
    return doc_stats(items, spec), degenerate
