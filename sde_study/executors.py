"""Where work items run: in this process (`local`), or as a job array through submitit.

`slurm` submits one array task per worker with `map_array`; `submitit-local` runs the very same
path with submitit's LocalExecutor (one subprocess per worker), which is how it is tested. A worker
is a `submitit.helpers.Checkpointable`: a preempted or timed-out Slurm task is requeued with the
same arguments and continues where its items stand (every item is resumable).
"""
from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import submitit

from sde_datagen.errors import UserError
from sde_study.work import Outcome, run_items

if TYPE_CHECKING:
    from sde_study.slurm import Request

EXECUTORS = ("local", "slurm", "submitit-local")
DEFAULT_MINUTES = 24 * 60


@dataclass
class ExecutorOptions:
    kind: str = "local"
    workers: int | None = None  # array tasks; default: --slurm-array-parallelism, else one per item
    nproc_per_node: int = 1
    slurm_partition: str | None = None  # None: the cluster's default partition
    slurm_gpus_per_node: int | None = None  # None: --nproc-per-node where the partition has GPUs, else 0
    slurm_time: int | None = None  # minutes; None: 24 h, or the partition's limit when it is shorter
    slurm_array_parallelism: int | None = None

    def check(self) -> "Request | None":
        """Check the options, and for Slurm the request with the scheduler itself, before the study folder is
        touched; returns the Slurm request (said in one line), None for the other executors."""
        for flag in ("workers", "nproc_per_node", "slurm_time", "slurm_array_parallelism"):
            value = getattr(self, flag)
            if value is not None and value < 1:
                raise UserError(f"--{flag.replace('_', '-')} must be at least 1")
        if self.slurm_gpus_per_node is not None and self.slurm_gpus_per_node < 0:
            raise UserError("--slurm-gpus-per-node must be 0 or more")
        if self.kind != "slurm":
            return None
        from sde_study.slurm import check_request, request

        asked = request(self.slurm_partition, self.slurm_gpus_per_node, self.slurm_time, self.nproc_per_node,
                        self.slurm_array_parallelism)
        check_request(asked)
        print(asked.words)
        return asked


class Worker(submitit.helpers.Checkpointable):
    """A submitit job: run a list of items of a study folder; requeued as is on preemption or timeout."""

    def __call__(self, root: str, item_ids: list[str], nproc_per_node: int, environment: dict[str, str]) -> Outcome:
        os.environ.update(environment)
        os.environ.update(allocation_share(os.environ, len(os.sched_getaffinity(0))))
        return run_items(Path(root), item_ids, nproc_per_node)


def allocation_share(environment: Mapping[str, str], visible_cores: int) -> dict[str, str]:
    """In a Slurm job that can run on more cores than it was given (a cluster without CPU affinity or cgroups, such
    as scripts/slurm-cluster.sh), its own cores' worth of threads (SLURM_CPUS_ON_NODE), unbound, as local workers
    get: two array tasks of one CPU each, each counting both cores free at its start, ran 2 threads each on 2 cores
    and trained at a third of their speed. What the user set stays."""
    allocated = environment.get("SLURM_CPUS_ON_NODE", "")
    if not allocated.isdigit() or not 0 < int(allocated) < visible_cores:
        return {}
    share = {"OMP_NUM_THREADS": allocated, "VLLM_CPU_OMP_THREADS_BIND": "nobind"}
    return {k: v for k, v in share.items() if k not in environment}


def local_shares(workers: int, cores: int, environment: Mapping[str, str], gpus: list[str]) -> list[dict[str, str]]:
    """What each of several workers on this machine is given: its own GPU(s) (CUDA_VISIBLE_DEVICES) and its share of
    the cores, unbound (each would otherwise count every core free when it starts, and vLLM's binding would put them
    on the same ones). Thread settings the user made stay. On 2 cores, two such workers ran the committed strict
    race's last 18 cells in 77 min of wall time; one at a time, the same designs took 7.6 min a cell, 137 min for 18
    (docs/studies/ner-race-smollm2-strict)."""
    if workers < 2:
        return [{}]
    threads = {"OMP_NUM_THREADS": str(max(1, cores // workers)), "VLLM_CPU_OMP_THREADS_BIND": "nobind"}
    threads = {k: v for k, v in threads.items() if k not in environment}
    return [{**threads, **({"CUDA_VISIBLE_DEVICES": ",".join(gpus_of(i, workers, gpus))} if gpus else {})}
            for i in range(workers)]


def gpus_of(worker: int, workers: int, gpus: list[str]) -> list[str]:
    """Worker `worker`'s GPUs: an equal block of them, or one shared round-robin when there are more workers."""
    per = len(gpus) // workers
    return gpus[worker * per:(worker + 1) * per] if per else [gpus[worker % len(gpus)]]


def visible_gpus(environment: Mapping[str, str]) -> list[str]:
    """The GPUs this machine gives the study: CUDA_VISIBLE_DEVICES where set, else what nvidia-smi lists."""
    if "CUDA_VISIBLE_DEVICES" in environment:
        return [g.strip() for g in environment["CUDA_VISIBLE_DEVICES"].split(",") if g.strip()]
    try:
        listed = subprocess.run(["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"], capture_output=True,
                                text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line.strip() for line in listed.stdout.splitlines() if line.strip()] if listed.returncode == 0 else []


def chunks(items: list[str], n: int) -> list[list[str]]:
    """Round-robin split, so each worker gets a mix of designs and the base model is loaded once per worker."""
    n = max(1, min(n, len(items)))
    return [items[i::n] for i in range(n)]


def execute(root: Path, item_ids: list[str], options: ExecutorOptions, slurm: "Request | None" = None) -> Outcome:
    """Run the items (`slurm`: the request ExecutorOptions.check returned); returns their failures and the items
    left to another worker."""
    if not item_ids:
        return Outcome()
    if options.kind == "local":
        return run_items(root, item_ids, options.nproc_per_node)
    folder = root / "submitit"
    groups = chunks(item_ids, options.workers or options.slurm_array_parallelism or len(item_ids))
    n = len(groups)
    if options.kind == "slurm":
        from sde_study.slurm import watch_the_queue

        executor = submitit.SlurmExecutor(folder=folder)
        executor.update_parameters(**(slurm or options.check()).parameters)
        watch_the_queue()
        environments = [{}] * n
    else:
        executor = submitit.LocalExecutor(folder=folder)
        executor.update_parameters(timeout_min=options.slurm_time or DEFAULT_MINUTES)
        environments = local_shares(n, len(os.sched_getaffinity(0)), os.environ, visible_gpus(os.environ))
    jobs = submit(executor, root, groups, options.nproc_per_node, environments)
    print(f"submitted {len(jobs)} job(s) ({options.kind}): {', '.join(j.job_id for j in jobs)}; logs in {folder}")
    outcome = Outcome()
    for job, group in zip(jobs, groups):
        try:
            outcome = outcome.add(job.result())
        except submitit.core.utils.FailedJobError as err:  # the job itself died (not one item): its items stay to do
            outcome.failures.append(f"job {job.job_id} ({', '.join(group)}): {last_error_line(str(err))}")
        except submitit.core.utils.UncompletedJobError:
            state = job.watcher.get_state(job.job_id, mode="cache") if options.kind == "slurm" else "ended"
            outcome.failures.append(f"job {job.job_id} ({', '.join(group)}): ended without a result (state "
                                    f"{state}: cancelled, killed or its node lost); its items stay to do")
    return outcome


def last_error_line(text: str) -> str:
    """The last line of the trace in a submitit FailedJobError (the exception, in words)."""
    trace = text.split("-" * 22)[1] if text.count("-" * 22) >= 2 else text
    lines = [line.strip() for line in trace.splitlines() if line.strip()]
    return lines[-1] if lines else "failed"


def submit(executor, root: Path, groups: list[list[str]], nproc_per_node: int,
           environments: list[dict[str, str]]) -> list:
    """One job array, one task per group of items; which job runs which items is recorded for `sde study status`."""
    from sde_study.queue import record_jobs

    n = len(groups)
    try:
        jobs = executor.map_array(Worker(), [str(root)] * n, groups, [nproc_per_node] * n, environments)
    except submitit.core.utils.FailedJobError as err:  # sbatch refused what --test-only accepted
        from sde_study.slurm import refusal

        raise UserError(refusal(str(err))) from None
    if isinstance(executor, submitit.SlurmExecutor):
        record_jobs(root, {job.job_id: group for job, group in zip(jobs, groups)})
    return jobs
