"""What a study asks of a Slurm cluster, checked with the cluster before anything is written, and what it reads
back from the queue.

- Defaults follow the partition (`sinfo`): GPUs only where the partition has them (or where the user asks), a time
  limit no longer than the partition allows; the run says in one line what it asked for.
- The request is tried with `sbatch --test-only` first: a request the scheduler refuses is one line quoting sbatch
  and naming the flag to change, before the study folder is touched.
- Job states come from the queue (`squeue`), which every cluster has; `sacct` needs an accounting database, which
  many small clusters lack (submitit would then warn at every poll). A job that left the queue without a result
  failed, was cancelled or lost its node: its items stay to do.
"""
from __future__ import annotations

import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from submitit.slurm.slurm import SlurmInfoWatcher, SlurmJob, _make_sbatch_string

from sde_datagen.errors import UserError

DEFAULT_MINUTES = 24 * 60
LEFT_QUEUE = "LEFT_QUEUE"  # a job squeue no longer lists
QUEUE_TIMEOUT_S = 30


@dataclass(frozen=True)
class Partition:
    name: str
    default: bool
    gpus: bool  # its nodes have GPUs as generic resources (gres gpu)
    max_minutes: int | None  # its time limit; None: none


@dataclass(frozen=True)
class Request:
    """What each array task asks for, as submitit's SlurmExecutor parameters, and the same in words."""

    parameters: dict
    words: str


def scheduler(command: list[str], what: str) -> str:
    """stdout of a Slurm command; a UserError in one line when Slurm is absent or refuses."""
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=QUEUE_TIMEOUT_S)
    except FileNotFoundError:
        raise UserError(f"{what}: no Slurm on this machine ({command[0]} not found); use --executor local or "
                        "submitit-local, or run from a cluster's login node") from None
    except subprocess.TimeoutExpired:
        raise UserError(f"{what}: the scheduler did not answer {command[0]} in {QUEUE_TIMEOUT_S} s") from None
    if done.returncode != 0:
        message = " ".join(done.stderr.split()) or f"exit status {done.returncode}"
        raise UserError(f"{what}: {command[0]} failed: {message}")
    return done.stdout


def minutes(text: str) -> int | None:
    """A Slurm time limit (`infinite`, `MM`, `MM:SS`, `HH:MM:SS`, `D-HH`, `D-HH:MM`, `D-HH:MM:SS`) in whole minutes."""
    text = text.strip()
    if text.lower() in ("infinite", "unlimited", "n/a", ""):
        return None
    days, _, rest = text.rpartition("-")
    parts = [int(p) for p in rest.split(":")]
    if days:
        hours, mins, secs = (parts + [0, 0])[:3]
    else:
        hours, mins, secs = {1: (0, parts[0], 0), 2: (0, *parts), 3: tuple(parts)}[len(parts)]
    return (int(days or 0) * 24 + hours) * 60 + mins + (1 if secs else 0)


def partitions() -> list[Partition]:
    """The cluster's partitions, as sinfo reports them (one line per partition and node kind)."""
    found: dict[str, Partition] = {}
    for line in scheduler(["sinfo", "-h", "-o", "%P|%G|%l"], "--executor slurm").splitlines():
        name, gres, limit = (line.split("|") + ["", ""])[:3]
        default, name = name.endswith("*"), name.rstrip("*")
        old = found.get(name)
        found[name] = Partition(name, default, "gpu" in gres or bool(old and old.gpus), minutes(limit))
    return list(found.values())


def request(partition: str | None, gpus: int | None, time_minutes: int | None, nproc_per_node: int,
            array_parallelism: int | None) -> Request:
    """The request for each array task, defaults taken from the partition (see the module's docstring)."""
    known = {p.name: p for p in partitions()}
    chosen = known.get(partition) if partition else next((p for p in known.values() if p.default), None)
    if gpus is None:
        gpus = nproc_per_node if chosen is not None and chosen.gpus else 0
        gpu_words = f"{gpus} GPU(s)" + (" (the partition has GPUs)" if gpus else " (the partition has none)")
    else:
        gpu_words = f"{gpus} GPU(s)"
    if time_minutes is None:
        limit = chosen.max_minutes if chosen is not None else None
        time_minutes = min(DEFAULT_MINUTES, limit) if limit else DEFAULT_MINUTES
        time_words = f"{time_minutes} min" + (" (the partition's limit)" if time_minutes == limit else "")
    else:
        time_words = f"{time_minutes} min"
    where = (f"partition {partition}" if partition else
             f"partition {chosen.name} (the default)" if chosen else "the default partition")
    parameters = {"partition": partition, "time": time_minutes, "gpus_per_node": gpus or None, "ntasks_per_node": 1,
                  "array_parallelism": array_parallelism}
    parameters = {k: v for k, v in parameters.items() if v is not None}
    return Request(parameters, f"slurm: each array task asks for {where}, {gpu_words}, {time_words}"
                   + (f", at most {array_parallelism} at once" if array_parallelism else ""))


FLAG_OF = (("partition", "--slurm-partition"), ("gres", "--slurm-gpus-per-node"), ("gpu", "--slurm-gpus-per-node"),
           ("time limit", "--slurm-time"), ("node configuration", "--slurm-gpus-per-node or --slurm-partition"))


def check_request(req: Request) -> None:
    """Ask the scheduler whether it would take the request (`sbatch --test-only`, nothing is queued)."""
    with tempfile.TemporaryDirectory(prefix="sde-sbatch-") as tmp:
        script = Path(tmp) / "check.sh"
        script.write_text(_make_sbatch_string(command="true", folder=tmp, **_script_parameters(req.parameters)),
                          encoding="utf-8")
        try:
            done = subprocess.run(["sbatch", "--test-only", str(script)], capture_output=True, text=True,
                                  timeout=QUEUE_TIMEOUT_S)
        except FileNotFoundError:
            raise UserError("--executor slurm: no Slurm on this machine (sbatch not found)") from None
    if done.returncode != 0:
        raise UserError(refusal(done.stderr))


def refusal(stderr: str) -> str:
    """sbatch's refusal in one line, with the flag that changes what was asked."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    message = next((line for line in lines if line.startswith("sbatch: error:")), lines[0] if lines else "refused")
    text = " ".join(lines).lower()
    flag = next((flag for key, flag in FLAG_OF if key in text), "the --slurm-* flags")
    return f"the scheduler refuses the job array: {message!r}; change {flag}"


def _script_parameters(parameters: dict) -> dict:
    """submitit's SlurmExecutor parameters as _make_sbatch_string takes them."""
    return {k: v for k, v in parameters.items() if k != "array_parallelism"}


# ----------------------------------------------------------------------------------------------- the queue

class QueueWatcher(SlurmInfoWatcher):
    """submitit's job watcher, reading states from squeue instead of sacct (see the module's docstring)."""

    def _make_command(self) -> list[str] | None:
        to_check = self._registered - self._finished
        return squeue_command(to_check) if to_check else None

    def read_info(self, string: bytes | str) -> dict[str, dict[str, str]]:
        text = string.decode() if isinstance(string, bytes) else string
        found = {line.split("|")[0]: queue_entry(line) for line in text.splitlines() if line.count("|") == 2}
        for job_id in self._registered - self._finished:  # asked for and not listed: it left the queue
            found.setdefault(job_id, {"JobID": job_id, "State": LEFT_QUEUE, "NodeList": ""})
        return found

    def update(self) -> None:
        command = self._make_command()
        if command is None:
            return
        self._num_calls += 1
        try:
            listing = squeue(command)
        except (OSError, subprocess.TimeoutExpired, UserError):
            listing = None  # the states stay as they were; asked again at the next poll
        if listing is not None:
            self._info_dict.update(self.read_info(listing))
        self._last_status_check = time.time()
        for job_id in self._registered - self._finished:
            if self.is_done(job_id, mode="cache"):
                self._finished.add(job_id)


def squeue_command(job_ids) -> list[str]:
    """squeue listing the jobs (array tasks one per line, finished ones too while Slurm keeps them) as id|state|nodes."""
    return ["squeue", "-h", "-r", "-t", "all", "-o", "%i|%T|%N", "-j", ",".join(sorted({j.split("_")[0] for j in job_ids}))]


def squeue(command: list[str]) -> str:
    """squeue's listing; empty when none of the jobs asked for is known any more (squeue then fails)."""
    done = subprocess.run(command, capture_output=True, text=True, timeout=QUEUE_TIMEOUT_S)
    if done.returncode != 0 and "invalid job id" not in done.stderr.lower():
        raise UserError(f"squeue failed: {' '.join(done.stderr.split()) or f'exit status {done.returncode}'}")
    return done.stdout if done.returncode == 0 else ""


def queue_entry(line: str) -> dict[str, str]:
    job_id, state, nodes = line.split("|")
    return {"JobID": job_id, "State": state, "NodeList": nodes}


def watch_the_queue() -> None:
    """Make submitit's Slurm jobs read their states from squeue (the watcher is a class attribute of SlurmJob)."""
    if not isinstance(SlurmJob.watcher, QueueWatcher):
        SlurmJob.watcher = QueueWatcher(delay_s=60)


def queued(job_ids: list[str]) -> dict[str, dict[str, str]]:
    """squeue's view of these jobs ({job id: JobID, State, NodeList}); jobs it no longer lists are absent."""
    try:
        text = squeue(squeue_command(job_ids))
    except FileNotFoundError:
        raise UserError("squeue: no Slurm on this machine (squeue not found)") from None
    except subprocess.TimeoutExpired:
        raise UserError(f"squeue: the scheduler did not answer in {QUEUE_TIMEOUT_S} s") from None
    entries = [queue_entry(line) for line in text.splitlines() if line.count("|") == 2]
    return {e["JobID"]: e for e in entries if e["JobID"] in job_ids}
