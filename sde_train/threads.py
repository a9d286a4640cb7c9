"""How many torch threads a CPU run uses: the cores no other process is busy with, measured at the start.

Measured by `bench/threads.py` on the 2-core development machine (SmolLM2-135M-Instruct, NER): idle, two
threads beat one (generation 1.44x, training 1.66x); beside one CPU-bound process, one thread beats two
(2.3x and 2.35x), because two threads wait at every parallel region for the one that was preempted.
So `auto` counts the cores other processes leave free, instead of torch's default of every core.
"""
from __future__ import annotations

import os
import time

import torch

AUTO = "auto"


def free_cores(sample_s: float = 0.3) -> int:
    """Cores not used by other processes: system-wide CPU use over a short sample, minus this process's own."""
    import psutil

    cores = os.cpu_count() or 1
    me = psutil.Process()
    me.cpu_percent(None)
    psutil.cpu_percent(None)
    time.sleep(sample_s)
    others = max(0.0, psutil.cpu_percent(None) / 100 * cores - me.cpu_percent(None) / 100)
    return max(1, min(cores, round(cores - others)))


def choose_threads(setting: str | int | None = AUTO) -> int:
    """Set torch's thread count: a number, or `auto`: $OMP_NUM_THREADS when set (someone decided), else the
    free cores measured now. Returns the count."""
    if setting not in (None, AUTO):
        threads = int(setting)
    elif os.environ.get("OMP_NUM_THREADS", "").isdigit() and int(os.environ["OMP_NUM_THREADS"]) > 0:
        threads = int(os.environ["OMP_NUM_THREADS"])
    else:
        threads = free_cores()
    torch.set_num_threads(threads)
    return threads
