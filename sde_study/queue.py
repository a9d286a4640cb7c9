"""Which Slurm array task runs which work items: recorded at each submission, read back by `sde study status`."""
from __future__ import annotations

import json
from pathlib import Path

from sde_datagen.errors import UserError
from sde_files import write_atomic

JOBS = Path("submitit") / "slurm_jobs.json"  # {job id: [item id, ...]}, every Slurm submission of the study


def record_jobs(root: Path, jobs: dict[str, list[str]]) -> None:
    """Add a submission's array tasks to the study's record."""
    write_atomic(root / JOBS, json.dumps({**recorded_jobs(root), **jobs}, indent=1) + "\n")


def recorded_jobs(root: Path) -> dict[str, list[str]]:
    path = root / JOBS
    if not path.is_file():
        return {}
    try:
        jobs = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(jobs, dict) or not all(isinstance(v, list) for v in jobs.values()):
            raise ValueError("not a mapping of job ids to item lists")
    except ValueError as err:
        raise UserError(f"{path}: not a record of Slurm jobs ({err}); delete it to start the record again") from None
    return jobs


def queue_notes(root: Path) -> tuple[dict[str, str], str | None]:
    """{item id: "job <id> <STATE> on <node>"} for the study's array tasks the scheduler still lists, and a line
    saying so when the scheduler cannot be asked (None when it answered, or the study never used Slurm)."""
    from sde_study.slurm import queued

    jobs = recorded_jobs(root)
    if not jobs:
        return {}, None
    try:
        listed = queued(list(jobs))
    except UserError as err:
        return {}, f"the scheduler is unreachable ({err}); the states below come from the study folder only"
    notes = {}
    for job_id, entry in listed.items():
        where = f" on {entry['NodeList']}" if entry["NodeList"] else ""
        for item in jobs.get(job_id, []):
            notes[item] = f"job {job_id} {entry['State']}{where}"
    return notes, None
