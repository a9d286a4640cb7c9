"""The files a study leaves behind, and the one place that names, writes and reads them (as lm-eval's
EvaluationTracker saves and loads what a run leaves): `results.jsonl` (one row per cell and task, or per signal),
`docstats.jsonl` (each evaluated row's per-document statistics, the report's intervals) and `samples/` (each tuned
cell's logged outputs, gzip). They are what a study is committed with; `cells/` (adapters) is not.
"""
from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sde_datagen.errors import UserError
from sde_files import write_atomic

RESULTS = "results.jsonl"
DOC_STATS = "docstats.jsonl"
SAMPLES = "samples"
ROW_KEY = ("kind", "design", "seed", "signal", "task")  # what a row and its per-document statistics share


def row_key(row: dict[str, Any]) -> tuple:
    """A row's key among the per-document statistics: (kind, design, seed, signal, task)."""
    return tuple(row.get(k) for k in ROW_KEY)


def tuned_key(design: str, seed: int, task: str) -> tuple:
    """The key of a tuned cell's row of one task."""
    return row_key({"kind": "tuned", "design": design, "seed": seed, "task": task})


def stats_entry(row: dict[str, Any], stats) -> dict[str, Any]:
    """A results row's per-document statistics as a docstats.jsonl line, keyed like the row."""
    key = {k: row[k] for k in ROW_KEY if k in row}
    absent = {"absent": stats.absent} if stats.absent else {}
    return {**key, "family": stats.family, "labels": list(stats.labels), **absent, "table": stats.table.astype(int).tolist()}


def read_jsonl_rows(path: Path) -> list[dict[str, Any]]:
    """The rows of a study's JSONL file as they are ([] when there is none); a damaged line is a UserError naming it."""
    if not path.is_file():
        return []
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as err:
            raise UserError(f"{path}:{number}: not a JSON line ({err.msg}); the file was left as it is") from None
        if not isinstance(row, dict) or not isinstance(row.get("kind"), str) or not isinstance(row.get("design"), str):
            raise UserError(f"{path}:{number}: not a study row (a mapping with 'kind' and 'design'); "
                            "the file was left as it is")
        rows.append(row)
    return rows


@dataclass(frozen=True)
class StudyFolder:
    """A study folder's committed files."""

    root: Path

    @property
    def results(self) -> Path:
        return self.root / RESULTS

    @property
    def doc_stats(self) -> Path:
        return self.root / DOC_STATS

    def read_rows(self) -> list[dict[str, Any]]:
        return read_jsonl_rows(self.results)

    def read_stats_rows(self) -> list[dict[str, Any]]:
        """docstats.jsonl's lines as they are (collect keeps the lines of items whose folders are gone)."""
        return read_jsonl_rows(self.doc_stats)

    def write_rows(self, rows: list[dict], stats: list[dict], kept_rows: list[dict], kept_stats: list[dict]) -> None:
        """results.jsonl and docstats.jsonl, each rewritten (atomically) only when its rows differ from the kept ones
        (as read): a study nothing was added to keeps its files byte for byte."""
        _rewrite_if_changed(self.results, kept_rows, rows, lambda r: json.dumps(r, ensure_ascii=False))
        _rewrite_if_changed(self.doc_stats, kept_stats, stats, lambda s: json.dumps(s, separators=(",", ":")))

    def read_doc_stats(self) -> dict[tuple, Any]:
        """docstats.jsonl as {(kind, design, seed, signal, task): DocStats}; empty for a study without it."""
        import numpy as np

        from sde_tasks.docstats import DocStats

        path = self.doc_stats
        if not path.is_file():
            return {}
        found = {}
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            try:
                entry = json.loads(line)
                table = np.asarray(entry["table"], dtype=float)
                if table.ndim != 2:
                    raise ValueError("table is not a list of rows")
                found[row_key(entry)] = DocStats(str(entry["family"]), tuple(entry["labels"]), table, entry.get("absent"))
            except (ValueError, KeyError, TypeError, AttributeError) as err:
                raise UserError(f"{path}:{number}: not a per-document statistics row ({err}); the file was left as it "
                                "is (its cells, where the study still has them, rebuild that line)") from None
        return found

    def samples_path(self, design: str, seed: int | None, task: str) -> Path:
        """Where a tuned cell's logged samples of one task are kept: samples/<design>/seed-<s>/samples_<task>.jsonl.gz."""
        from sde_tasks.logged import kept_name

        from sde_study.plan import WorkItem

        return self.root / SAMPLES / WorkItem("cell", design, seed).id / kept_name(task, ".jsonl.gz")

    def keep_samples(self, design: str, seed: int, logs: Path) -> None:
        """A cell's logged samples (lm-eval's samples_*.jsonl in `logs`), gzip-compressed: with them anyone can rescore
        a study committed without its cells under another rule."""
        from sde_tasks.logged import run_file_task, run_files

        for path in run_files(logs):
            write_atomic(self.samples_path(design, seed, run_file_task(path)), gzip.compress(path.read_bytes(), mtime=0))

    def read_samples(self, design: str, seed: int | None, task: str) -> list[dict[str, Any]] | None:
        """A cell's kept samples of one task, in file order; None when the study does not keep them."""
        path = self.samples_path(design, seed, task)
        if not path.is_file():
            return None
        return [json.loads(line) for line in gzip.decompress(path.read_bytes()).decode("utf-8").splitlines()]


def _rewrite_if_changed(path: Path, before: list[dict], after: list[dict], line) -> None:
    """Write `after` unless it holds the same rows as `before` (in any order): a study nothing was added to keeps
    its files byte for byte."""
    lines = [line(r) for r in after]
    if sorted(lines) != sorted(line(r) for r in before):
        write_atomic(path, "".join(text + "\n" for text in lines))
