"""TrainConfig: every `sde train` setting, from defaults < YAML config file < command-line flags."""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, fields
from pathlib import Path

from sde_files.typed import shown, typed_values
from sde_train.errors import TrainError


PRECISIONS = ("auto", "fp32", "bf16")


@dataclass
class TrainConfig:
    """Defaults follow the SDE paper (LoRA r 8, 1 epoch, batch 4, lr 1e-4)."""

    model: str = ""
    dataset: str = ""
    config: str | None = None  # the dataset config = the design variant id
    output: str = ""
    split: str = "train"
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.1
    target_modules: str = "all-linear"  # or a comma-separated list of module names
    epochs: float = 1
    max_steps: int | None = None  # overrides epochs (data is cycled)
    lr: float = 1e-4
    warmup_ratio: float = 0.0
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    batch_size: int = 4
    grad_accum: int = 1
    max_length: int = 2048
    seed: int = 0
    chat_template: bool = False
    gradient_checkpointing: bool = False
    precision: str = "auto"  # auto: bf16 on CUDA and on CPUs with bf16 instructions, else fp32
    threads: str = "auto"  # torch threads on CPU: a number, or auto ($OMP_NUM_THREADS, else the free cores)
    compile: bool = False
    attn_implementation: str | None = None  # None: flash_attention_2 on CUDA when installed, else sde_varlen_sdpa
    save_steps: int = 100
    logging_steps: int = 1
    push_to_hub: str | None = None
    private: bool = False
    resume: bool = False
    overwrite: bool = False

    def check(self) -> "TrainConfig":
        for name in ("model", "dataset", "output"):
            if not getattr(self, name):
                raise TrainError(f"--{name.replace('_', '-')} is required (flag or config file)")
        return self.check_values()

    def check_values(self) -> "TrainConfig":
        """Every setting in its range (what a study's --train-config is held to: the study sets model and data)."""
        for name in ("lora_r", "batch_size", "grad_accum", "max_length", "save_steps", "logging_steps"):
            if getattr(self, name) < 1:
                raise TrainError(f"--{name.replace('_', '-')} must be at least 1")
        if self.max_steps is not None and self.max_steps < 1:
            raise TrainError("--max-steps must be at least 1")
        for name in ("epochs", "lr", "lora_alpha"):
            if not math.isfinite(getattr(self, name)) or getattr(self, name) <= 0:
                raise TrainError(f"--{name.replace('_', '-')} must be a positive number, not {getattr(self, name)}")
        for name, low, high in (("warmup_ratio", 0, 1), ("weight_decay", 0, math.inf), ("max_grad_norm", 0, math.inf)):
            value = getattr(self, name)
            if not math.isfinite(value) or not low <= value <= high:
                raise TrainError(f"--{name.replace('_', '-')} must be between {low} and {high}, not {value}")
        if not 0 <= self.lora_dropout < 1:  # also false for nan
            raise TrainError(f"--lora-dropout must be in [0, 1), not {self.lora_dropout}")
        if self.threads != "auto" and not (str(self.threads).isdigit() and int(self.threads) > 0):
            raise TrainError(f"--threads must be auto or a positive whole number, not {self.threads!r}")
        if self.precision not in PRECISIONS:
            raise TrainError(f"--precision must be one of {', '.join(PRECISIONS)}, not {self.precision!r}")
        if not [m for m in self.target_modules.split(",") if m.strip()]:
            raise TrainError("--target-modules: give all-linear or comma-separated module names")
        return self

    def fingerprint(self) -> str:
        """What must not change between a run and its --resume (everything that shapes the result)."""
        # The dataset is compared by its content (the data fingerprint), not by its path.
        ignore = {"resume", "overwrite", "push_to_hub", "private", "save_steps", "logging_steps", "output", "compile",
                  "dataset", "threads"}
        kept = {k: v for k, v in dataclasses.asdict(self).items() if k not in ignore}
        return hashlib.sha256(json.dumps(kept, sort_keys=True).encode()).hexdigest()[:16]


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags default to SUPPRESS so that only the ones given override the YAML file."""
    S = argparse.SUPPRESS
    p = parser.add_argument
    p("--train-config", "--config-file", dest="config_file", default=None, metavar="FILE.yaml",
      help="YAML file with any of these settings, flags winning (--train-config, as `sde study run` names it; "
      "--config-file still works)")
    p("--model", default=S, help="base model: a local folder or a Hub id")
    p("--dataset", default=S, help="exported dataset: a local folder or a Hub repo")
    p("--config", default=S, help="dataset config = design variant id, e.g. first-nomi-lines-pu-text-none")
    p("--out", "--output", dest="output", default=S, help="folder for the adapter, model card, log and checkpoints "
      "(--out, as every sde command names its output; --output still works)")
    p("--split", default=S, help="dataset split to train on (default train)")
    p("--lora-r", type=int, default=S, help="LoRA rank (default 8)")
    p("--lora-alpha", type=int, default=S, help="LoRA alpha (default 16)")
    p("--lora-dropout", type=float, default=S, help="LoRA dropout (default 0.1)")
    p("--target-modules", default=S, help="all-linear (default) or comma-separated module names")
    p("--epochs", type=float, default=S, help="passes over the data (default 1)")
    p("--max-steps", type=int, default=S, help="optimizer steps (default: the epochs' steps; overrides --epochs)")
    p("--lr", type=float, default=S, help="peak learning rate (default 1e-4), linear decay")
    p("--warmup-ratio", type=float, default=S, help="fraction of steps for linear warm-up (default 0)")
    p("--weight-decay", type=float, default=S, help="AdamW weight decay (default 0)")
    p("--max-grad-norm", type=float, default=S, help="gradient clipping norm (default 1.0; 0 = off)")
    p("--batch-size", type=int, default=S, help="samples per device per micro-step (default 4)")
    p("--grad-accum", type=int, default=S, help="micro-steps per optimizer step (default 1)")
    p("--max-length", type=int, default=S, help="tokens per sample; longer ones are cut (default 2048)")
    p("--seed", type=int, default=S, help="seed for LoRA init, data order and dropout (default 0)")
    p("--chat-template", dest="chat_template", action="store_true", default=S,
      help="train on the tokenizer's chat template: prompt = user turn, completion = assistant turn (default: plain "
           "prompt + completion)")
    p("--no-chat-template", dest="chat_template", action="store_false", default=S,
      help="train on prompt + completion + EOS as plain text (default)")
    p("--gradient-checkpointing", action="store_true", default=S, help="recompute activations (less memory)")
    p("--precision", choices=PRECISIONS, default=S,
      help="auto (default): bf16 weights and autocast on CUDA and on CPUs with bf16 instructions (AVX512_BF16, AMX), "
           "else fp32; LoRA weights and optimizer state stay fp32")
    p("--threads", default=S, help="torch threads on CPU: a number, or auto (default): $OMP_NUM_THREADS when set, "
      "else the cores other processes leave free, measured at the start")
    p("--compile", action="store_true", default=S, help="torch.compile the model")
    p("--attn-implementation", default=S, help="sde_varlen_sdpa (per-sample SDPA; default without flash-attn), "
      "flash_attention_2 (default on GPU when installed), sdpa, eager")
    p("--save-steps", type=int, default=S, help="checkpoint every N optimizer steps (default 100)")
    p("--logging-steps", type=int, default=S, help="log every N optimizer steps (default 1)")
    p("--push-to-hub", default=S, metavar="ORG/NAME", help="upload to this Hugging Face Hub repository")
    p("--private", action="store_true", default=S, help="create the Hub repository as private")
    p("--resume", action="store_true", default=S, help="continue from the last checkpoint in --output")
    p("--overwrite", action="store_true", default=S,
      help="write into an --output that holds another run's adapter or other files (default: refuse)")


def load_yaml(path: str | Path) -> dict:
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except OSError as err:
        raise TrainError(f"cannot read config file {path}: {err.strerror}") from None
    except UnicodeDecodeError:
        raise TrainError(f"config file {path}: not UTF-8 text") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise TrainError(f"config file {where}: not valid YAML ({getattr(err, 'problem', None) or err})") from None
    if not isinstance(data, dict):
        raise TrainError(f"config file {path}: expected a mapping of settings, got {type(data).__name__}")
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def settings_from_mapping(values: dict, source: str = "") -> dict:
    """Settings given as a mapping (a YAML file's, or flags'), typed as TrainConfig's fields; an unknown setting or a
    value of the wrong type is a TrainError naming `source` (the file) and the field."""
    modules = values.get("target_modules")
    if isinstance(modules, list):  # YAML list form
        if not all(isinstance(m, str) for m in modules):
            where = f"{source}: " if source else ""
            raise TrainError(f"{where}field 'target_modules': expected module names (text), got {shown(modules)}")
        values = {**values, "target_modules": ",".join(modules)}
    return typed_values(TrainConfig, values, source, TrainError, coerce=True)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """defaults < YAML file < flags given on the command line."""
    known = {f.name for f in fields(TrainConfig)}
    config_file = getattr(args, "config_file", None)
    from_file = settings_from_mapping(load_yaml(config_file), config_file) if config_file else {}
    flags = settings_from_mapping({k: v for k, v in vars(args).items() if k in known})
    return TrainConfig(**{**from_file, **flags}).check()
