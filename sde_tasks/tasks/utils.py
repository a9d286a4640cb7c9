"""lm-eval hooks of the SDE tasks: build the documents, score one output, aggregate.

Documents are rendered by sde_datagen.render_sample, the function that writes training samples,
so the evaluation prompt is the training prompt. The design comes from lm-eval's metadata:
`--metadata '{"design": "ew-sde"}'` (a preset or a variant id; default es-sde), optionally with
`"instruction": N` for a paraphrased instruction. The built-in tasks use the module functions; a
user's task folder (`sde eval make-task`) binds the same functions to its own spec with `UserTask`.
"""
from __future__ import annotations

import difflib
import hashlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import datasets

from sde_datagen.codecs import get_codec
from sde_datagen.data import bundled_dir
from sde_datagen.design import Design, resolve_design
from sde_datagen.errors import UserError
from sde_datagen.families import family_of
from sde_datagen.records import GoldRecord, load_records
from sde_datagen.render import render_sample
from sde_datagen.spec import TaskSpec
from sde_datagen.tasks import get_task, load_task
from sde_datagen.metrics import (  # noqa: F401  the aggregations the YAMLs name as utils.<name>
    accuracy, exact_match, f1, format_error_rate, kappa, precision, recall,
)
from sde_tasks.scoring import PARSE_MODE, doc_items, gold_json

DEFAULT_DESIGN = "es-sde"
FEWSHOT_SPLIT = "dev"
METADATA_KEYS = ("design", "instruction")  # what the SDE tasks read from lm-eval's metadata
# A user's task folder: its spec and its gold splits, beside the YAMLs and utils.py.
SPEC_FILE = "task_spec.yaml"
DATA_DIR = "data"


def check_metadata(metadata: Mapping[str, Any], instruction: Any) -> int:
    """The instruction index, after refusing a misspelled SDE key (`desgin`) or a non-integer index.

    lm-eval's metadata also holds the model args and the YAML's own keys, so only keys close to
    ours (and not ours) are refused.
    """
    for key in metadata:
        close = difflib.get_close_matches(str(key), METADATA_KEYS, n=1, cutoff=0.75)
        if close:
            raise UserError(f"lm-eval metadata key '{key}' is not read by the SDE tasks; did you mean "
                            f"'{close[0]}'? (keys: {', '.join(METADATA_KEYS)})")
    if isinstance(instruction, bool) or not isinstance(instruction, int):
        raise UserError(f"lm-eval metadata 'instruction': must be an integer (0 = the canonical instruction, "
                        f"1.. = paraphrases), not {instruction!r}")
    return instruction


def build_docs(spec: TaskSpec, task: str, domain: str | None, splits: Mapping[str, Path], design: Any,
               instruction: Any, out_of_domain: bool, metadata: Mapping[str, Any]) -> datasets.DatasetDict:
    """Every split (name -> gold JSONL) rendered for the design chosen in lm-eval's metadata.

    `task` and `domain` are stored in each document, for `process_results` to find the spec again.
    """
    index = check_metadata(metadata, instruction)
    chosen = resolve_design(str(design), spec.family)
    if out_of_domain and not chosen.goes_out_of_domain:
        raise UserError(
            f"design {chosen.id} has no instruction (No-Inst): without one a model cannot know the "
            "out-of-domain targets, so an out-of-domain task needs an Inst-first or Inst-last design")
    return datasets.DatasetDict({
        name: datasets.Dataset.from_list(render_docs(spec, task, domain, load_records(spec, path), chosen, index))
        for name, path in splits.items()})


def render_docs(spec: TaskSpec, task: str, domain: str | None, records: Iterable[GoldRecord], design: Design,
                instruction: int = 0) -> list[dict[str, Any]]:
    """The lm-eval documents of gold records: prompt and completion as in training, structured gold."""
    docs = []
    for record in records:
        sample = render_sample(spec, design, record, instruction)
        docs.append({
            "id": sample.id, "prompt": sample.prompt, "completion": sample.completion,
            "target": gold_json(sample.target), "task": task, "domain": domain or "", "design": sample.design,
        })
    return docs


def score_doc(spec: TaskSpec, doc: Mapping[str, Any], output: str) -> dict[str, Any]:
    """Parse one generation with the document's design codec; per-doc items for the corpus aggregations."""
    codec = get_codec(spec, resolve_design(doc["design"], spec.family))
    return doc_items(spec, json.loads(doc["target"]), codec.parse(output, PARSE_MODE))


def load_docs(sde_task: str, sde_domain: str | None = None, sde_out_of_domain: bool = False,
              design: str = DEFAULT_DESIGN, instruction: Any = 0, **metadata: Any) -> datasets.DatasetDict:
    """lm-eval `custom_dataset`: the bundled test split and the valid/dev split (few-shot), rendered.

    Gets lm-eval's metadata (ours, the YAML's and the model args) as keyword arguments; only
    `design` and `instruction` are read.
    """
    spec = load_task(sde_task, sde_domain)
    folder = bundled_dir(sde_task)
    splits = {"test": folder / f"{spec.splits['test']}.jsonl",
              FEWSHOT_SPLIT: folder / f"{spec.splits['validation']}.jsonl"}
    return build_docs(spec, sde_task, sde_domain, splits, design, instruction, sde_out_of_domain, metadata)


def process_results(doc: dict[str, Any], results: list[str]) -> dict[str, Any]:
    """lm-eval `process_results` of the built-in tasks."""
    return score_doc(load_task(doc["task"], doc["domain"] or None), doc, results[0])


def spec_sha256(path: Path) -> str:
    """The content hash that ties a run's results to the exact spec file it was evaluated with."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


class UserTask:
    """The lm-eval hooks bound to one user task spec: what a task folder's utils.py exposes."""

    def __init__(self, spec_path: Path, data_dir: Path | None = None):
        self.spec_path, self.data_dir = Path(spec_path), data_dir

    @classmethod
    def beside(cls, module_file: str) -> "UserTask":
        """The task of the folder holding `module_file` (a task folder's utils.py)."""
        folder = Path(module_file).resolve().parent
        return cls(folder / SPEC_FILE, folder / DATA_DIR)

    def spec(self, domain: str | None = None) -> TaskSpec:
        return get_task(str(self.spec_path)).spec(domain or None)

    def load_docs(self, sde_domain: str | None = None, sde_out_of_domain: bool = False,
                  sde_spec_sha256: str | None = None, design: str = DEFAULT_DESIGN, instruction: Any = 0,
                  **metadata: Any) -> datasets.DatasetDict:
        """lm-eval `custom_dataset` of a task folder: data/test.jsonl and, for few-shot, data/dev.jsonl."""
        if self.data_dir is None:
            raise UserError(f"{self.spec_path}: no data folder to build documents from")
        if sde_spec_sha256 is not None and spec_sha256(self.spec_path) != sde_spec_sha256:
            raise UserError(f"{self.spec_path}: changed since its task folder was written; "
                            "run `sde eval make-task` again")
        spec = self.spec(sde_domain)
        splits = {"test": self.data_dir / "test.jsonl", FEWSHOT_SPLIT: self.data_dir / f"{FEWSHOT_SPLIT}.jsonl"}
        return build_docs(spec, spec.name, sde_domain, splits, design, instruction, sde_out_of_domain, metadata)

    def process_results(self, doc: dict[str, Any], results: list[str]) -> dict[str, Any]:
        """lm-eval `process_results` of a task folder."""
        return score_doc(self.spec(doc["domain"]), doc, results[0])

    def kappa(self, items: Sequence) -> float:
        """utils.kappa of task folders written before `aggregation` (see sde_tasks/metrics.py)."""
        return self.aggregation("kappa")(items)

    def aggregation(self, metric: str) -> Callable[[Sequence], float]:
        """A metric's aggregation, as the spec's family defines it over the spec's own label order."""
        spec = self.spec()
        functions = family_of(spec.family).aggregations(spec.label_ids)
        if metric not in functions:
            raise AttributeError(f"task {spec.name} has no metric '{metric}'")
        return functions[metric]
