"""The adapter's model card (README.md) and its upload to the Hub."""
from __future__ import annotations

from pathlib import Path

import yaml

from sde_train.config import TrainConfig
from sde_train.errors import TrainError
from sde_files import write_atomic

HYPERPARAMETERS = ("lora_r", "lora_alpha", "lora_dropout", "target_modules", "epochs", "max_steps", "lr",
                   "warmup_ratio", "weight_decay", "max_grad_norm", "batch_size", "grad_accum", "max_length",
                   "seed", "chat_template", "gradient_checkpointing", "split")


LOSS_WORDS = {
    False: "completion tokens and EOS only (No-MI)",
    True: "every token, prompt included (MI)",
    None: "per sample: No-MI and MI rows mixed",
}


def model_card(cfg: TrainConfig, summary: dict, designs: list[str], design_words: str | None) -> str:
    """Hub metadata (base_model, library_name: peft, datasets, tags) + what was trained, in words."""
    variant = cfg.config or (designs[0] if len(designs) == 1 else None)
    meta = {
        "base_model": cfg.model,
        "library_name": "peft",
        "pipeline_tag": "text-generation",
        "tags": ["sde", "sde-kit", "lora", "peft", *([variant] if variant else [])],
    }
    if not Path(cfg.dataset).exists():  # a Hub repo id; a local folder is no valid `datasets` entry
        meta["datasets"] = [cfg.dataset]
    lines = [
        "---", yaml.safe_dump(meta, sort_keys=False, allow_unicode=True).strip(), "---", "",
        f"# LoRA adapter for `{cfg.model}` trained on sample design `{variant or 'unknown'}`", "",
        "Trained with sde-kit's `sde train` (Sample Design Engineering, "
        "Guo et al. 2024, arXiv:2404.13033): one sample design of a task, LoRA fine-tuning.", "",
        "## Data", "",
        f"- dataset: `{cfg.dataset}`, config `{cfg.config}`, split `{cfg.split}` ({summary['samples']} samples)",
        f"- design (variant id): `{variant or 'not given'}`",
    ]
    if design_words:
        lines.append(f"- design in words (from the dataset card): {design_words}")
    lines += [
        f"- data fingerprint (sha256 of prompt, completion, loss_on_prompt): `{summary['data_fingerprint']}`",
        f"- chat template: {'used (prompt = user turn, completion = assistant turn)' if cfg.chat_template else 'not used (prompt + completion + EOS as plain text)'}",
        f"- loss (from the `loss_on_prompt` column): {LOSS_WORDS[summary['loss_on_prompt']]}",
        "", "## Hyper-parameters", "", "| setting | value |", "|---|---|",
    ]
    lines += [f"| {name} | {getattr(cfg, name)} |" for name in HYPERPARAMETERS]
    lines += [
        "", "## Result", "",
        f"- optimizer steps: {summary['steps']}",
        f"- final training loss: {summary['final_loss']:.4f}",
        "", "## Environment", "",
        "The same seed and data give this adapter again where these agree:", "",
        *[f"- {name}: {value}" for name, value in summary.get("environment", {}).items()],
        "", "## Use", "", "```python",
        "from peft import PeftModel",
        "from transformers import AutoModelForCausalLM, AutoTokenizer",
        f"base = AutoModelForCausalLM.from_pretrained({cfg.model!r})",
        "model = PeftModel.from_pretrained(base, ADAPTER)  # this folder or its Hub repo",
        "```", "",
        f"lm-eval: `lm_eval --model hf --model_args pretrained={cfg.model},peft=ADAPTER --tasks …`", "",
    ]
    return "\n".join(lines)


def write_model_card(out: Path, cfg: TrainConfig, summary: dict, designs: list[str],
                     design_words: str | None) -> Path:
    write_atomic(out / "README.md", model_card(cfg, summary, designs, design_words))
    return out / "README.md"


def push_to_hub(folder: Path, repo_id: str, private: bool) -> str:
    """Create the model repo (if needed) and upload the adapter folder, without checkpoints."""
    from huggingface_hub import create_repo, upload_folder

    try:
        url = create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
        upload_folder(repo_id=repo_id, repo_type="model", folder_path=str(folder),
                      commit_message="sde train: LoRA adapter", ignore_patterns=["checkpoints/**", ".*"])
    except Exception as err:  # network, auth, permissions: all for the user to fix
        raise TrainError(f"--push-to-hub {repo_id}: {err}") from err
    return str(url)
