"""Benchmark sde_datagen: rendering rate, and wall time of the one-factor export of all three tasks.

Baseline named in the same run: a naive renderer that rebuilds the instruction and the codec for
every sample (what a straightforward implementation does), against the cached path sde-kit uses.

    python bench/datagen.py [--data ../shared/data]

Ends with one JSON line: {"render_samples_per_s": ..., "one_factor_export_s": ...}.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from sde_datagen.codecs import Codec
from sde_datagen.design import PRESETS, one_factor
from sde_datagen.export import export_dataset, read_splits
from sde_datagen.render import build_prompt, instruction_text, render_sample
from sde_datagen.tasks import load_task

SHARED_DIRS = {"masa": "masa", "ed": "maven", "ner": "genia"}


def _rate(fn, records, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for record in records:
            fn(record)
        best = min(best, time.perf_counter() - start)
    return len(records) / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    here = Path(__file__).resolve().parent
    parser.add_argument("--data", default=str(here.parent.parent / "shared" / "data"), help="the shared data folder")
    args = parser.parse_args()
    data = Path(args.data)

    print(f"{'task':<6}{'design':<34}{'naive samples/s':>16}{'sde-kit samples/s':>19}")
    rates = []
    for task, folder in SHARED_DIRS.items():
        spec = load_task(task)
        records = [r for s in read_splits(spec, data / folder) for r in s.records]
        for name in ("es-sde", "ew-sde", "paper-base"):
            design = PRESETS[name]

            def naive(record, spec=spec, design=design):
                instruction_text.cache_clear()
                codec = Codec(spec, design)
                build_prompt(spec, design, record.text)
                codec.render(record.targets)

            fast = _rate(lambda r, spec=spec, design=design: render_sample(spec, design, r), records)
            slow = _rate(naive, records[:2000], repeat=1)
            rates.append(fast)
            print(f"{task:<6}{design.id:<34}{slow:>16,.0f}{fast:>19,.0f}")

    start = time.perf_counter()
    rows = 0
    with tempfile.TemporaryDirectory() as tmp:
        for task, folder in SHARED_DIRS.items():
            spec = load_task(task)
            splits = read_splits(spec, data / folder)
            counts = export_dataset(spec, one_factor(spec.family), splits, Path(tmp) / task)
            rows += sum(sum(c.values()) for c in counts.values())
    export_s = time.perf_counter() - start
    print(f"\none-factor export of masa, ed, ner from {data}: {rows:,} rows in {export_s:.1f} s (bar: < 60 s)")
    print(f"slowest render rate: {min(rates):,.0f} samples/s (bar: >= 50,000)")
    print(json.dumps({"render_samples_per_s": round(min(rates)), "one_factor_export_s": round(export_s, 2)}))


if __name__ == "__main__":
    main()
