"""Where work items run: in this process (`local`), or as a job array through submitit.

`slurm` submits one array task per worker with `map_array`; `submitit-local` runs the very same
path with submitit's LocalExecutor (one subprocess per worker), which is how it is tested. A worker
is a `submitit.helpers.Checkpointable`: a preempted or timed-out Slurm task is requeued with the
same arguments and continues where its items stand (every item is resumable).
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import submitit

from sde_study.work import Outcome, run_items

EXECUTORS = ("local", "slurm", "submitit-local")


@dataclass
class ExecutorOptions:
    kind: str = "local"
    workers: int | None = None  # array tasks; default: --slurm-array-parallelism, else one per item
    nproc_per_node: int = 1
    slurm_partition: str | None = None
    slurm_gpus_per_node: int | None = None
    slurm_time: int = 24 * 60  # minutes
    slurm_array_parallelism: int | None = None


class Worker(submitit.helpers.Checkpointable):
    """A submitit job: run a list of items of a study folder; requeued as is on preemption or timeout."""

    def __call__(self, root: str, item_ids: list[str], nproc_per_node: int, environment: dict[str, str]) -> Outcome:
        os.environ.update(environment)
        return run_items(Path(root), item_ids, nproc_per_node)


def local_share(workers: int, cores: int, environment: Mapping[str, str]) -> dict[str, str]:
    """What each of several workers on this machine is given: its share of the cores, unbound (each would otherwise
    count every core free when it starts, and vLLM's binding would put them on the same ones). What the user set
    stays. On 2 cores, two such workers ran the committed strict race's last 18 cells in 77 min of wall time; one at a
    time, the same designs took 7.6 min a cell, 137 min for 18 (docs/studies/ner-race-smollm2-strict)."""
    if workers < 2:
        return {}
    share = {"OMP_NUM_THREADS": str(max(1, cores // workers)), "VLLM_CPU_OMP_THREADS_BIND": "nobind"}
    return {k: v for k, v in share.items() if k not in environment}


def chunks(items: list[str], n: int) -> list[list[str]]:
    """Round-robin split, so each worker gets a mix of designs and the base model is loaded once per worker."""
    n = max(1, min(n, len(items)))
    return [items[i::n] for i in range(n)]


def execute(root: Path, item_ids: list[str], options: ExecutorOptions) -> Outcome:
    """Run the items; returns their failures and the items left to another worker."""
    if not item_ids:
        return Outcome()
    if options.kind == "local":
        return run_items(root, item_ids, options.nproc_per_node)
    folder = root / "submitit"
    if options.kind == "slurm":
        executor = submitit.AutoExecutor(folder=folder, cluster="slurm")
        gpus = options.slurm_gpus_per_node if options.slurm_gpus_per_node is not None else options.nproc_per_node
        params = {"timeout_min": options.slurm_time, "gpus_per_node": gpus, "tasks_per_node": 1,
                  "slurm_partition": options.slurm_partition, "slurm_array_parallelism": options.slurm_array_parallelism}
        executor.update_parameters(**{k: v for k, v in params.items() if v is not None})
    else:
        executor = submitit.LocalExecutor(folder=folder)
        executor.update_parameters(timeout_min=options.slurm_time)
    groups = chunks(item_ids, options.workers or options.slurm_array_parallelism or len(item_ids))
    environment = local_share(len(groups), len(os.sched_getaffinity(0)), os.environ) if options.kind != "slurm" else {}
    n = len(groups)
    jobs = executor.map_array(Worker(), [str(root)] * n, groups, [options.nproc_per_node] * n, [environment] * n)
    print(f"submitted {len(jobs)} job(s) ({options.kind}): {', '.join(j.job_id for j in jobs)}; logs in {folder}")
    outcome = Outcome()
    for job, group in zip(jobs, groups):
        try:
            outcome = outcome.add(job.result())
        except Exception as err:  # the job itself died (not one item): its items stay to do
            outcome.failures.append(f"job {job.job_id} ({len(group)} item(s)): {str(err).strip().splitlines()[-1]}")
    return outcome
