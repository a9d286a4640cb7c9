"""Export design variants as a Hub-ready dataset repository: one config per variant.

Layout: OUT/README.md (dataset card with YAML `configs:`) and OUT/<variant>/<split>.parquet, so
`datasets.load_dataset(OUT, "<variant>")` works the same from the folder and from the Hub. The
repository is built in a temporary folder beside OUT and renamed into place only when complete.
"""
from __future__ import annotations

import json
import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import yaml
from tqdm.auto import tqdm

from sde_datagen.design import Design
from sde_datagen.errors import UserError
from sde_datagen.rationale import Overrides, rationales_for
from sde_datagen.records import GoldRecord, load_records
from sde_datagen.render import render_sample
from sde_datagen.spec import TaskSpec
from sde_files import atomic_folder

SPLIT_FILES = {"train": ("train",), "validation": ("valid", "dev", "validation"), "test": ("test",)}
SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("prompt", pa.string()),
        ("completion", pa.string()),
        ("messages", pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))),
        ("target", pa.string()),
        ("design", pa.string()),
        ("loss_on_prompt", pa.bool_()),
    ]
)


@dataclass
class Split:
    name: str  # train, validation or test
    path: Path
    records: list[GoldRecord]


def read_splits(spec: TaskSpec, data_dir: str | Path, train_size: int | None = None, seed: int = 0,
                wanted: tuple[str, ...] = tuple(SPLIT_FILES)) -> list[Split]:
    """DIR/<split>.jsonl for each `wanted` split (train, validation: valid or dev, test), each present and
    not empty: a missing split would silently drop out of every exported config."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise UserError(f"--data {data_dir}: {'is a file, not a folder' if data_dir.exists() else 'no such folder'}")
    splits = []
    for name in wanted:
        stems = tuple(dict.fromkeys((spec.splits.get(name, SPLIT_FILES[name][0]), *SPLIT_FILES[name])))
        path = next((data_dir / f"{s}.jsonl" for s in stems if (data_dir / f"{s}.jsonl").exists()), None)
        if path is None:
            others = [n for n in SPLIT_FILES if n != name]
            raise UserError(f"--data {data_dir}: no {' or '.join(f'{s}.jsonl' for s in stems)} for the {name} split "
                            f"(export fewer splits with --splits {','.join(n for n in wanted if n != name) or others[0]})")
        records = load_records(spec, path)
        if not records:
            raise UserError(f"{path}: the {name} split holds no records")
        splits.append(Split(name, path, records))
    if train_size is not None:
        train = next((s for s in splits if s.name == "train"), None)
        if train is None:
            raise UserError(f"{data_dir}: --train-size needs a train.jsonl")
        if train_size < 1:
            raise UserError(f"--train-size {train_size}: must be at least 1")
        if train_size > len(train.records):
            raise UserError(f"--train-size {train_size}: {train.path} has only {len(train.records)} records")
        keep = sorted(random.Random(seed).sample(range(len(train.records)), train_size))
        train.records = [train.records[i] for i in keep]
    return splits


def export_dataset(
    spec: TaskSpec,
    designs: list[Design],
    splits: list[Split],
    out: str | Path,
    *,
    instruction: int = 0,
    overrides: Overrides | None = None,
    overwrite: bool = False,
    note: str = "",
) -> dict[str, dict[str, int]]:
    """Write every (design, split) as parquet plus the dataset card; returns row counts per config."""
    out = check_out(Path(out), overwrite)
    with atomic_folder(out) as tmp:
        targets = {s.name: [json.dumps(r.targets, ensure_ascii=False) for r in s.records] for s in splits}
        reasons = {}
        if any(d.reasoning != "none" for d in designs):
            reasons = {s.name: [rationales_for(spec, r, overrides) for r in s.records] for s in splits}
        counts: dict[str, dict[str, int]] = {}
        work = [(d, s) for d in designs for s in splits]
        for design, split in tqdm(work, desc=f"export {spec.name}", unit="config-split"):
            samples = [
                render_sample(spec, design, r, instruction, reasons[split.name][i] if reasons else None)
                for i, r in enumerate(split.records)
            ]
            folder = tmp / design.id
            folder.mkdir(exist_ok=True)
            pq.write_table(_table(samples, targets[split.name]), folder / f"{split.name}.parquet")
            counts.setdefault(design.id, {})[split.name] = len(samples)
        (tmp / "README.md").write_text(dataset_card(spec, designs, counts, note), encoding="utf-8")
    return counts


def check_out(out: Path, overwrite: bool) -> Path:
    """A folder the export may create or replace; leftovers of killed exports to it are removed."""
    resolved = out.resolve()
    if resolved == Path.cwd().resolve() or resolved in Path.cwd().resolve().parents or resolved.parent == resolved:
        raise UserError(f"--out {out}: give a new folder for the export, not the current folder or one above it")
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: is a file; give a folder")
    if out.exists() and not overwrite:
        raise UserError(f"--out {out} exists; pass --overwrite to replace it")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise UserError(f"--out {out}: a part of the path is a file, not a folder") from None
    except OSError as err:
        raise UserError(f"--out {out}: cannot create {out.parent} ({err.strerror})") from None
    if not os.access(out.parent, os.W_OK | os.X_OK):
        raise UserError(f"--out {out}: cannot write in {out.parent} (permission denied)")
    for leftover in [*out.parent.glob(f".{out.name}.tmp-*"), *out.parent.glob(f".{out.name}.old-*")]:
        shutil.rmtree(leftover, ignore_errors=True)  # from an export killed before its cleanup ran
    return out


def _table(samples: list, targets: list[str]) -> pa.Table:
    """Build columns directly; the messages column is assembled from offsets (fast for 100k rows)."""
    n = len(samples)
    prompts = [s.prompt for s in samples]
    completions = [s.completion for s in samples]
    contents = [text for pair in zip(prompts, completions) for text in pair]
    roles = pa.array(["user", "assistant"] * n, pa.string())
    turns = pa.StructArray.from_arrays([roles, pa.array(contents, pa.string())], names=["role", "content"])
    messages = pa.ListArray.from_arrays(pa.array(range(0, 2 * n + 1, 2), pa.int32()), turns)
    design = samples[0].design if samples else ""
    loss = samples[0].loss_on_prompt if samples else False
    columns = [
        pa.array([s.id for s in samples], pa.string()),
        pa.array(prompts, pa.string()),
        pa.array(completions, pa.string()),
        messages,
        pa.array(targets, pa.string()),
        pa.array([design] * n, pa.string()),
        pa.array([loss] * n, pa.bool_()),
    ]
    return pa.Table.from_arrays(columns, schema=SCHEMA)


def dataset_card(spec: TaskSpec, designs: list[Design], counts: dict[str, dict[str, int]], note: str = "") -> str:
    card = spec.card
    configs = [
        {
            "config_name": d.id,
            "data_files": [{"split": split, "path": f"{d.id}/{split}.parquet"} for split in counts[d.id]],
        }
        for d in designs
    ]
    header = {
        "pretty_name": card.get("pretty_name", spec.name),
        "language": [card.get("language", spec.language)],
        "license": card.get("license", "unknown"),
        "tags": ["sde", "sample-design-engineering", spec.name],
        "task_categories": ["text-generation"],
        "configs": configs,
    }
    splits = sorted({s for c in counts.values() for s in c}, key=list(SPLIT_FILES).index)
    rows = "\n".join(
        f"| `{d.id}` | {d.in_words()} | " + " | ".join(str(counts[d.id].get(s, 0)) for s in splits) + " |"
        for d in designs
    )
    domain = f", domain {spec.domain}" if spec.domain else ""
    return f"""---
{yaml.safe_dump(header, allow_unicode=True, sort_keys=False).strip()}
---
# {header['pretty_name']}: sample-design variants

Fine-tuning samples for task `{spec.name}`{domain} rendered by [sde-kit](https://pypi.org/project/sde-kit/), one
config per sample design (Guo et al. 2024, *Sample Design Engineering*, arXiv:2404.13033). Every config holds
the same gold records; only the design differs. {note}

```python
from datasets import load_dataset
ds = load_dataset("<this repo or folder>", "{designs[0].id}")
```

Columns: `id`, `prompt`, `completion`, `messages` (the sample as a user/assistant conversation), `target`
(structured gold as JSON), `design` (variant id), `loss_on_prompt` (true when the design puts loss on the prompt).
A variant id names one option per axis: instruction placement, input modeling, output format, unmentioned
targets, labels, reasoning.

| config | design | {' | '.join(splits)} |
|---|---|{'---|' * len(splits)}
{rows}

## Source data, license and citation
{card.get('license_note', 'See the source data for its license.')}

Cite the source data as: {card.get('citation', 'see the source data.')}
"""


def push_to_hub(folder: str | Path, repo_id: str, private: bool = False) -> str:
    """Create (or reuse) the dataset repo and upload the folder; returns the repo URL."""
    from huggingface_hub import HfApi

    api = HfApi()
    try:
        url = api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
        api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type="dataset", commit_message="sde-kit export")
    except Exception as err:  # offline, auth, permissions, a bad repo id: all the user's to fix  # noqa: BLE001
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise UserError(f"--push-to-hub {repo_id}: upload failed ({reason}); the export is complete in {folder}, "
                        f"upload it later with `hf upload {repo_id} {folder} --repo-type dataset`") from None
    return str(url)
