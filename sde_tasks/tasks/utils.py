"""lm-eval hooks of the SDE tasks: build the documents, score one output, aggregate.

Documents are rendered by sde_datagen.render_sample, the function that writes training samples,
so the evaluation prompt is the training prompt. The design comes from lm-eval's metadata:
`--metadata '{"design": "ew-sde"}'` (a preset or a variant id; default es-sde), optionally with
`"instruction": N` for a paraphrased instruction.
"""
from __future__ import annotations

import json
from typing import Any

import datasets

from sde_datagen.codecs import get_codec
from sde_datagen.data import bundled_dir
from sde_datagen.design import resolve_design
from sde_datagen.errors import UserError
from sde_datagen.records import load_records
from sde_datagen.render import render_sample
from sde_datagen.tasks import load_task
from sde_tasks.metrics import (  # noqa: F401  the aggregations the YAMLs name as utils.<name>
    accuracy, exact_match, f1, format_error_rate, kappa, precision, recall,
)
from sde_tasks.scoring import PARSE_MODE, doc_items, gold_json

DEFAULT_DESIGN = "es-sde"
FEWSHOT_SPLIT = "dev"


def load_docs(sde_task: str, sde_domain: str | None = None, sde_out_of_domain: bool = False,
              design: str = DEFAULT_DESIGN, instruction: int = 0, **_metadata: Any) -> datasets.DatasetDict:
    """lm-eval `custom_dataset`: the bundled test split and the valid/dev split (few-shot), rendered.

    Gets lm-eval's metadata (ours, the YAML's and the model args) as keyword arguments; only
    `design` and `instruction` are read.
    """
    spec = load_task(sde_task, sde_domain)
    chosen = resolve_design(str(design), spec.family)
    if sde_out_of_domain and chosen.placement == "none":
        raise UserError(
            f"design {chosen.id} has no instruction (No-Inst): without one a model cannot know the "
            "out-of-domain targets, so an out-of-domain task needs an Inst-first or Inst-last design")
    folder = bundled_dir(sde_task)

    def split(name: str) -> datasets.Dataset:
        rows = []
        for record in load_records(spec, folder / f"{name}.jsonl"):
            sample = render_sample(spec, chosen, record, int(instruction))
            rows.append({
                "id": sample.id, "prompt": sample.prompt, "completion": sample.completion,
                "target": gold_json(sample.target), "task": sde_task, "domain": sde_domain or "",
                "design": sample.design,
            })
        return datasets.Dataset.from_list(rows)

    return datasets.DatasetDict({"test": split(spec.splits["test"]),
                                 FEWSHOT_SPLIT: split(spec.splits["validation"])})


def process_results(doc: dict[str, Any], results: list[str]) -> dict[str, Any]:
    """Parse one generation with the design's codec; per-doc items for the corpus aggregations."""
    spec = load_task(doc["task"], doc["domain"] or None)
    codec = get_codec(spec, resolve_design(doc["design"], spec.family))
    return doc_items(spec, json.loads(doc["target"]), codec.parse(results[0], PARSE_MODE))
