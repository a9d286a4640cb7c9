"""What a run was trained with beyond its settings and data: library versions, the processor and its threads.

The same seed and data give the same adapter only where these agree: two MASA adapters of 2026-12-05 did not
reproduce on a later machine with byte-identical data (docs/studies/masa-smollm2), and nothing said what differed.
The model card and a study's rows record it, so the next such difference can be traced.
"""
from __future__ import annotations

import platform
from pathlib import Path

import torch


def processor(device: torch.device) -> str:
    """The GPU's name, or the CPU's model name (its kernels, AMX or AVX2, change the float sums)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        lines = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        lines = []
    names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name") and ":" in line]
    return names[0] if names else platform.processor() or platform.machine()


def training_environment(device: torch.device) -> dict[str, str | int]:
    """Versions of the libraries whose numerics shape the adapter, the processor, and torch's thread count."""
    import peft
    import transformers

    return {"python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "peft": peft.__version__,
            "device": device.type, "processor": processor(device), "threads": torch.get_num_threads()}
