"""`sde study submit DIR`: every full-test-set cell becomes a leaderboard submission.

Each cell's lm-eval output (results_*.json and samples_*.jsonl, as the CLI writes them) goes through
`sde board submit`'s own function, so the same validation applies (metrics recomputed from the logged
outputs, full test sets, design, duplicates).
"""
from __future__ import annotations

import datetime
import getpass
import hashlib
import json
import tempfile
from pathlib import Path

from sde_study.plan import ADAPTER, EVAL, TRAINED, Plan
from sde_study.work import is_done


def file_hash(paths: list[Path]) -> str:
    """The sha256 of the files' bytes, in order."""
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def base_revision(model: str) -> str:
    """A local folder: a hash of its weights and config; a Hub id: `main` unless pinned by the user."""
    folder = Path(model)
    if folder.is_dir():
        return file_hash(sorted(folder.glob("*.safetensors")) + [folder / "config.json"])
    return "main"


def submit_study(root: Path, plan: Plan, board: Path, submitter: str | None, base_name: str | None = None) -> list[str]:
    """One line per finished cell: `added PATH`, `refused: reason` or the board's failures. Adapters stay out of
    the board: each entry names its adapter's path, sha256 and the command that trains it again."""
    from sde_tasks.board.submit import submit

    revision = base_revision(plan.model)
    lines = []
    for item in (i for i in plan.items() if i.kind == "cell"):
        if not is_done(root, plan, item):
            lines.append(f"{item.id}: skipped: not finished")
            continue
        if not is_done(root, plan, item, all_docs=True):
            lines.append(f"{item.id}: refused: evaluated on the race's first {plan.race.first_docs} test documents only "
                         "(a design it eliminated); the board accepts full test sets only")
            continue
        if plan.eval_limit is not None:
            lines.append(f"{item.id}: refused: evaluated on the first {plan.eval_limit} test documents "
                         "(--eval-limit); the board accepts full test sets only")
            continue
        adapter = item.folder(root) / ADAPTER
        trained = json.loads((item.folder(root) / TRAINED).read_text(encoding="utf-8"))
        meta = {"schema_version": 1, "base_model": {"id": base_name or plan.model, "revision": revision},
                "adapter": {"id": str(adapter), "revision": file_hash([adapter / "adapter_model.safetensors"]),
                            "command": plan.cell_command(item.design, item.seed, f"{plan.task}-{item.design}-seed-{item.seed}")},
                "design": item.design,
                "training": {"task": plan.task, "domain": plan.resolved_task().domain_pair[0],
                             "size": trained["samples"]},
                "seed": item.seed, "submitter": submitter or getpass.getuser(),
                "date": datetime.date.today().isoformat()}
        with tempfile.TemporaryDirectory() as tmp:
            meta_path = Path(tmp) / "meta.json"
            meta_path.write_text(json.dumps(meta), encoding="utf-8")
            path, failures = submit(item.folder(root) / EVAL, meta_path, board)
        lines.append(f"{item.id}: added {path}" if path else f"{item.id}: rejected: " + "; ".join(failures))
    return lines
