"""From a prompt/completion dataset to packed, loss-masked token batches.

Why this shape: the loss mask comes from the data (`loss_on_prompt`), never from template markers,
so it is exact by construction: prompt and completion are tokenized separately (what the model
sees at inference is the tokenized prompt, then its own tokens) and the boundary is a count.
Batches are packed into one row with positions restarting at 0 per sample, so no compute goes to
padding; attention stays within each sample (per-sample SDPA, see attention.py, or flash-attention
varlen / a block-diagonal mask, which transformers derives from the restarting position ids).
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch

from sde_train.errors import TrainError

REQUIRED_COLUMNS = ("prompt", "completion")


@dataclass(frozen=True)
class Sample:
    """Token ids of one sample; tokens at index >= loss_start carry loss (and only those)."""

    ids: tuple[int, ...]
    loss_start: int
    truncated: bool = False  # longer than max_length: the end was cut


@dataclass
class Batch:
    input_ids: torch.Tensor  # (1, T): the samples, back to back
    position_ids: torch.Tensor  # (1, T): restart at 0 for each sample
    hidden_index: torch.Tensor  # (N,): positions whose next token carries loss
    targets: torch.Tensor  # (N,): those next tokens
    seq_bounds: tuple[int, ...]  # where each sample starts, then T

    def to(self, device: torch.device) -> "Batch":
        return Batch(self.input_ids.to(device), self.position_ids.to(device),
                     self.hidden_index.to(device), self.targets.to(device), self.seq_bounds)


def load_rows(dataset: str, config: str | None, split: str) -> list[dict]:
    """Rows of one dataset config (variant) and split, from a local export or a Hub repo.

    A local folder is read from its parquet files directly: `load_dataset(folder)` caches by the
    folder's name, so after a re-export in place it would return the old rows. A Hub repo's cache
    is keyed by its commit, so `load_dataset` is right there.
    """
    import datasets

    folder = Path(dataset)
    if folder.is_dir():
        files = local_data_files(folder, config, split)
        if all(f.suffix == ".parquet" for f in files):
            return _parquet_rows(files, dataset, config, split)
    try:
        mode = "force_redownload" if folder.is_dir() else None  # other local formats: rebuilt from the files
        ds = datasets.load_dataset(dataset, config, split=split, download_mode=mode)
    except Exception as err:  # datasets raises many types; all mean "cannot use this input"
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise TrainError(f"cannot load dataset {dataset!r} config {config!r} split {split!r}: {reason}") from err
    missing = [c for c in REQUIRED_COLUMNS if c not in ds.column_names]
    if missing:
        raise TrainError(f"dataset {dataset!r} config {config!r} lacks column(s) {', '.join(missing)}")
    if len(ds) == 0:
        raise TrainError(f"dataset {dataset!r} config {config!r} split {split!r} is empty")
    keep = [c for c in ("prompt", "completion", "loss_on_prompt", "design") if c in ds.column_names]
    return ds.select_columns(keep).to_list()


def local_data_files(folder: Path, config: str | None, split: str) -> list[Path]:
    """The files of one config and split of a local dataset repository: its card's `configs:` list
    (what `load_dataset` reads), else the export layout `<config>/<split>.parquet`."""
    import yaml

    card, listed = folder / "README.md", None
    try:
        text = card.read_text(encoding="utf-8") if card.is_file() else ""
        header = yaml.safe_load(text[3:].split("\n---", 1)[0]) if text.startswith("---") else None
    except (UnicodeDecodeError, yaml.YAMLError) as err:
        raise TrainError(f"{card}: cannot read the dataset card's YAML header ({err})") from None
    configs = header.get("configs") if isinstance(header, dict) else None
    names = []
    for entry in configs if isinstance(configs, list) else []:
        if not isinstance(entry, dict):
            continue
        names.append(entry.get("config_name", "default"))
        if entry.get("config_name", "default") == (config or "default"):
            listed = [pattern for item in entry.get("data_files") or [] if isinstance(item, dict)
                      and item.get("split") == split
                      for pattern in ([item.get("path")] if isinstance(item.get("path"), str) else item.get("path") or [])]
    if configs and listed is None:
        raise TrainError(f"--config {config}: {folder} has no such config (configs: {', '.join(map(str, names))})")
    files = sorted({p for pattern in (listed or [f"{config}/{split}.parquet" if config else f"{split}.parquet"])
                    for p in folder.glob(pattern) if p.is_file()})
    if not files:
        raise TrainError(f"--split {split}: {folder} holds no data files for config {config!r} split {split!r}")
    return files


def _parquet_rows(files: list[Path], dataset: str, config: str | None, split: str) -> list[dict]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pa.concat_tables([pq.read_table(f) for f in files], promote_options="default")
    except (pa.ArrowInvalid, OSError) as err:
        raise TrainError(f"cannot read dataset {dataset!r} config {config!r} split {split!r}: {err}") from None
    missing = [c for c in REQUIRED_COLUMNS if c not in table.column_names]
    if missing:
        raise TrainError(f"dataset {dataset!r} config {config!r} lacks column(s) {', '.join(missing)}")
    if table.num_rows == 0:
        raise TrainError(f"dataset {dataset!r} config {config!r} split {split!r} is empty")
    keep = [c for c in ("prompt", "completion", "loss_on_prompt", "design") if c in table.column_names]
    return table.select(keep).to_pylist()


def data_fingerprint(rows: list[dict]) -> str:
    """sha256 of what training reads (prompt, completion, loss_on_prompt), in order."""
    h = hashlib.sha256()
    for row in rows:
        h.update(json.dumps([row["prompt"], row["completion"], bool(row.get("loss_on_prompt", False))],
                            ensure_ascii=False).encode())
    return h.hexdigest()


def encode_sample(tokenizer, prompt: str, completion: str, loss_on_prompt: bool,
                  chat_template: bool, max_length: int) -> Sample:
    """Token ids and the exact loss boundary of one sample.

    No-MI: completion tokens and the EOS token carry loss; MI: every token (except the first,
    which nothing predicts). With a chat template the prompt is the user turn: the boundary is the
    length of the templated prompt with the generation prompt, checked to be a prefix of the
    templated conversation; the sequence ends at the assistant turn's EOS.
    """
    eos = tokenizer.eos_token_id
    if eos is None:
        raise TrainError("the tokenizer has no EOS token; set eos_token in its tokenizer_config.json")
    if chat_template:
        if not tokenizer.chat_template:
            raise TrainError("--chat-template: the tokenizer has no chat template")
        user = [{"role": "user", "content": prompt}]
        prompt_ids = _ids(tokenizer.apply_chat_template(user, add_generation_prompt=True, tokenize=True))
        full = _ids(tokenizer.apply_chat_template(
            user + [{"role": "assistant", "content": completion}], tokenize=True))
        if full[: len(prompt_ids)] != prompt_ids:
            raise TrainError(
                "--chat-template: the templated prompt (with add_generation_prompt=True) is not a prefix of "
                "the templated conversation, so the loss boundary is ambiguous; use --no-chat-template or "
                "fix the tokenizer's chat template"
            )
        answer = full[len(prompt_ids):]
        # The assistant turn ends with EOS; what follows it (e.g. ChatML's "\n") is no answer token.
        answer = answer[: len(answer) - answer[::-1].index(eos)] if eos in answer else answer + [eos]
    else:
        prompt_ids = _ids(tokenizer(prompt, add_special_tokens=True))
        answer = _ids(tokenizer(completion, add_special_tokens=False)) + [eos]
    ids = prompt_ids + answer
    return Sample(tuple(ids[:max_length]), 1 if loss_on_prompt else len(prompt_ids), len(ids) > max_length)


def _ids(encoded) -> list[int]:
    """apply_chat_template/tokenizer return a list or a BatchEncoding depending on the version."""
    ids = encoded["input_ids"] if not isinstance(encoded, list) else encoded
    return list(ids)


def encode_rows(rows: list[dict], tokenizer, chat_template: bool, max_length: int) -> list[Sample]:
    return [
        encode_sample(tokenizer, r["prompt"], r["completion"], bool(r.get("loss_on_prompt", False)),
                      chat_template, max_length)
        for r in rows
    ]


def pack(samples: list[Sample]) -> Batch:
    """One row of samples back to back; the loss positions and their targets, gathered."""
    ids, positions, hidden_index, targets, bounds = [], [], [], [], []
    for s in samples:
        offset = len(ids)
        bounds.append(offset)
        ids.extend(s.ids)
        positions.extend(range(len(s.ids)))
        for j in range(max(s.loss_start, 1), len(s.ids)):  # token j is predicted at position j - 1
            hidden_index.append(offset + j - 1)
            targets.append(s.ids[j])
    return Batch(
        input_ids=torch.tensor([ids], dtype=torch.long),
        position_ids=torch.tensor([positions], dtype=torch.long),
        hidden_index=torch.tensor(hidden_index, dtype=torch.long),
        targets=torch.tensor(targets, dtype=torch.long),
        seq_bounds=(*bounds, len(ids)),
    )


@dataclass(frozen=True)
class DataPlan:
    """Which samples each rank reads at each optimizer step: a pure function of (seed, step).

    Why: resuming needs no saved iterator, only the step. Each epoch is a seeded permutation,
    padded by wrapping around to a multiple of the world size (as DistributedSampler does), dealt
    round-robin to ranks, cut in micro-batches; `grad_accum` micro-batches make one step.
    """

    n_samples: int
    batch_size: int
    grad_accum: int
    world_size: int
    seed: int

    @property
    def per_rank(self) -> int:
        return math.ceil(self.n_samples / self.world_size)

    @property
    def micro_per_epoch(self) -> int:
        return math.ceil(self.per_rank / self.batch_size)

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(self.micro_per_epoch / self.grad_accum)

    def total_steps(self, epochs: float, max_steps: int | None) -> int:
        return max_steps if max_steps else max(1, math.ceil(epochs * self.steps_per_epoch))

    def micro_batches(self, step: int, rank: int) -> list[list[int]]:
        """Sample indices of each micro-batch of 0-based optimizer `step` on `rank`."""
        epoch, in_epoch = divmod(step, self.steps_per_epoch)
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        order = torch.randperm(self.n_samples, generator=gen).tolist()
        order += order[: self.per_rank * self.world_size - self.n_samples]
        mine = order[rank:: self.world_size]
        first = in_epoch * self.grad_accum
        last = min(first + self.grad_accum, self.micro_per_epoch)
        return [mine[m * self.batch_size: (m + 1) * self.batch_size] for m in range(first, last)]


def count_loss_tokens(samples: list[Sample]) -> int:
    return sum(max(0, len(s.ids) - max(s.loss_start, 1)) for s in samples)


def read_design_words(dataset: str, variant: str | None) -> str | None:
    """How the dataset card describes the variant's design: the `design` cell of its table row, or
    the text of a bullet naming it. None when there is no card or it says nothing."""
    if not variant:
        return None
    card = Path(dataset) / "README.md"
    try:
        if card.is_file():
            text = card.read_text(encoding="utf-8")
        else:
            from huggingface_hub import DatasetCard

            text = DatasetCard.load(dataset).content
    except Exception:  # no card, offline, private repo: the model card then names the id only
        return None
    if text.startswith("---"):  # the YAML header names configs, not designs
        text = text.split("\n---", 1)[-1]
    header: list[str] = []  # the first row of the current table
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("|"):
            header = []
        if line.startswith("|"):
            cells = [c.strip().strip("`") for c in line.strip("|").split("|")]
            if not header:
                header = [c.lower() for c in cells]
            elif variant in cells and "design" in header and header.index("design") < len(cells):
                return cells[header.index("design")] or None
        elif line.startswith(("- ", "* ")) and variant in line:
            words = line[2:].replace(f"`{variant}`", "").replace(variant, "").strip(" :")
            return words or None
    return None
