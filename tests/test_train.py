"""sde_train: exact loss masks, packing, config precedence, adapter output, model card, Hub upload."""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml
from safetensors.torch import load_file
from conftest import MI, NOMI, masa_rows, write_dataset

from sde_train.config import TrainConfig, add_train_arguments, config_from_args
from sde_train.errors import TrainError


def make_cfg(model: Path, dataset: Path, output: Path, **kw) -> TrainConfig:
    """fp32 unless asked: these tests compare the loop's math with hand computations to 1e-5."""
    base = dict(model=str(model), dataset=str(dataset), config=NOMI, output=str(output), max_steps=2,
                batch_size=4, save_steps=1000, precision="fp32")
    base.update(kw)
    return TrainConfig(**base).check()


def read_log(output: Path) -> list[dict]:
    return [json.loads(line) for line in (output / "training_log.jsonl").read_text().splitlines()]


def hand_masked_loss(model_dir: Path, rows: list[dict], mi: bool, chat: bool) -> float:
    """Masked cross-entropy written out by hand: full-vocabulary logits, labels -100 where no loss."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    total, count = 0.0, 0
    for row in rows:
        if chat:  # ChatML by hand: user turn, then the assistant turn up to and including <|im_end|>
            prompt = tok(f"<|im_start|>user\n{row['prompt']}<|im_end|>\n<|im_start|>assistant\n",
                         add_special_tokens=False)["input_ids"]
        else:
            prompt = tok(row["prompt"])["input_ids"]
        answer = tok(row["completion"], add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        ids = torch.tensor([prompt + answer])
        labels = ids.clone()
        if not mi:
            labels[0, : len(prompt)] = -100
        with torch.no_grad():
            logits = model(ids).logits
        losses = F.cross_entropy(logits[0, :-1], labels[0, 1:], ignore_index=-100, reduction="sum")
        total += losses.item()
        count += int((labels[0, 1:] != -100).sum())
    return total / count


@pytest.mark.parametrize("mi,chat", [(False, False), (True, False), (False, True), (True, True)])
def test_trainer_loss_equals_hand_masked_cross_entropy(tiny_model_dir, tiny_dataset_dir, tmp_path, mi, chat):
    """Step 1's logged loss (before any update; LoRA B starts at 0) is the hand-computed masked CE."""
    from sde_train.trainer import train

    variant = MI if mi else NOMI
    rows = masa_rows(24, mi, variant)
    cfg = make_cfg(tiny_model_dir, tiny_dataset_dir, tmp_path / "out", config=variant, chat_template=chat,
                   batch_size=24, max_steps=1, lora_dropout=0.0)
    train(cfg)
    logged = read_log(tmp_path / "out")[0]["loss"]
    assert logged == pytest.approx(hand_masked_loss(tiny_model_dir, rows, mi, chat), rel=1e-5)


def test_loss_boundary_is_exact(tiny_model_dir):
    """No-MI: exactly the completion's tokens and EOS carry loss, with or without the chat template."""
    from transformers import AutoTokenizer

    from sde_train.data import encode_sample

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    prompt, completion = "评论：菜很好吃\n", "食品评价：正面\n价格水平：未提及"
    for chat in (False, True):
        s = encode_sample(tok, prompt, completion, False, chat, 2048)
        assert tok.decode(s.ids[s.loss_start:]) == completion + tok.eos_token
        assert s.ids[-1] == tok.eos_token_id
        assert encode_sample(tok, prompt, completion, True, chat, 2048).loss_start == 1
    assert tok.decode(encode_sample(tok, prompt, completion, False, True, 2048).ids[:-1]).endswith(
        "<|im_start|>assistant\n" + completion)


def test_chat_template_without_prefix_property_fails_clearly(tiny_model_dir):
    from transformers import AutoTokenizer

    from sde_train.data import encode_sample

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    tok.chat_template = ("{% for m in messages %}{{ m['role'] + ': ' + m['content'] + '\n' }}{% endfor %}"
                         "{% if add_generation_prompt %}{{ 'ASSISTANT>' }}{% endif %}")
    with pytest.raises(TrainError, match="not a prefix"):
        encode_sample(tok, "q\n", "a", False, True, 2048)


@pytest.mark.parametrize("attn", ["sde_varlen_sdpa", "sdpa"])
def test_packed_batch_gives_the_same_per_sample_loss(tiny_model_dir, tiny_dataset_dir, tmp_path, attn):
    """Attention stays within each sample: one packed row == each sample alone (per-sample SDPA, or
    transformers' block-diagonal mask from restarting position ids) == the plain HF forward."""
    from transformers import AutoTokenizer

    from sde_train.data import encode_rows, load_rows, pack
    from sde_train.trainer import CausalLMLoss, build_model

    cfg = make_cfg(tiny_model_dir, tiny_dataset_dir, tmp_path / "o", config=MI, attn_implementation=attn)
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    samples = encode_rows(load_rows(str(tiny_dataset_dir), MI, "train")[:5], tok, False, 2048)
    model = CausalLMLoss(build_model(cfg, torch.device("cpu"))).eval()

    def run(group):
        b = pack(group)
        with torch.no_grad():
            return model(b.input_ids, b.position_ids, b.hidden_index, b.targets,
                         b.seq_bounds if attn == "sde_varlen_sdpa" else None)

    packed = run(samples)
    alone = torch.cat([run([s]) for s in samples])
    with torch.no_grad():
        logits = model.model(input_ids=torch.tensor([samples[0].ids])).logits[0, :-1]
    torch.testing.assert_close(alone[: len(samples[0].ids) - 1],
                               F.cross_entropy(logits, torch.tensor(samples[0].ids[1:]), reduction="none"),
                               rtol=1e-5, atol=1e-5)
    assert packed.shape == alone.shape and packed.numel() == sum(len(s.ids) - 1 for s in samples)
    torch.testing.assert_close(packed, alone, rtol=1e-5, atol=1e-5)
    assert pack(samples).input_ids.numel() == sum(len(s.ids) for s in samples)  # no padding at all


def test_data_plan_covers_each_epoch_once_and_deals_ranks():
    from sde_train.data import DataPlan

    plan = DataPlan(n_samples=10, batch_size=2, grad_accum=2, world_size=1, seed=3)
    assert plan.steps_per_epoch == 3
    seen = [i for step in range(3) for mb in plan.micro_batches(step, 0) for i in mb]
    assert sorted(seen) == list(range(10))
    assert plan.micro_batches(3, 0) != plan.micro_batches(0, 0)  # next epoch: a new order
    ddp = DataPlan(n_samples=10, batch_size=2, grad_accum=1, world_size=2, seed=3)
    single = DataPlan(n_samples=10, batch_size=4, grad_accum=1, world_size=1, seed=3)
    for step in range(ddp.steps_per_epoch - 1):  # the same samples per step as one process with 2x batch
        both = ddp.micro_batches(step, 0)[0] + ddp.micro_batches(step, 1)[0]
        assert sorted(both) == sorted(single.micro_batches(step, 0)[0])


def test_flags_win_over_yaml_and_yaml_over_defaults(tmp_path):
    cfg_file = tmp_path / "train.yaml"
    cfg_file.write_text(yaml.safe_dump({"model": "m", "dataset": "d", "output": "o", "lr": "3e-4",
                                        "lora-r": 16, "batch_size": 2, "chat_template": True}))
    parser = argparse.ArgumentParser()
    add_train_arguments(parser)
    cfg = config_from_args(parser.parse_args(["--config-file", str(cfg_file), "--batch-size", "8",
                                              "--no-chat-template"]))
    assert (cfg.lr, cfg.lora_r, cfg.batch_size, cfg.chat_template, cfg.epochs) == (3e-4, 16, 8, False, 1)
    cfg_file.write_text(yaml.safe_dump({"model": "m", "dataset": "d", "output": "o", "lora_rank": 4}))
    with pytest.raises(TrainError, match="lora_rank"):
        config_from_args(parser.parse_args(["--config-file", str(cfg_file)]))
    with pytest.raises(TrainError, match="--output"):
        config_from_args(parser.parse_args(["--model", "m", "--dataset", "d"]))


def test_sde_train_cli_reports_user_errors(tmp_path):
    missing = subprocess.run([sys.executable, "-m", "sde_train", "--model", "m", "--dataset", str(tmp_path / "none"),
                              "--config", "x", "--output", str(tmp_path / "o")], capture_output=True, text=True)
    assert missing.returncode == 2 and "sde train: error: --model m: no such model folder or Hub id" in missing.stderr
    helped = subprocess.run([str(Path(sys.executable).parent / "sde"), "train", "--help"], capture_output=True,
                            text=True)
    assert helped.returncode == 0 and "--chat-template" in helped.stdout and "--push-to-hub" in helped.stdout


@pytest.fixture(scope="module")
def trained(tiny_model_dir, tiny_dataset_dir, tmp_path_factory) -> Path:
    """A short `sde train` run through the CLI (the way users run it)."""
    out = tmp_path_factory.mktemp("trained") / "adapter"
    subprocess.run([sys.executable, "-m", "sde_train", "--model", str(tiny_model_dir), "--dataset",
                    str(tiny_dataset_dir), "--config", NOMI, "--output", str(out), "--max-steps", "6",
                    "--lr", "1e-2", "--save-steps", "2"], check=True, capture_output=True)
    return out


def test_output_is_a_peft_adapter_with_a_log(trained, tiny_model_dir):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    assert {p.name for p in trained.iterdir()} == {"adapter_config.json", "adapter_model.safetensors",
                                                   "README.md", "training_log.jsonl"}  # checkpoints removed
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), trained)
    assert any("lora_B" in name for name, _ in model.named_parameters())
    weights = load_file(trained / "adapter_model.safetensors")
    assert any("lora_B" in k and v.abs().sum() > 0 for k, v in weights.items())  # it trained
    log = read_log(trained)
    assert [r["step"] for r in log] == list(range(1, 7))
    assert set(log[0]) == {"step", "loss", "lr", "tokens_per_s", "peak_memory"}
    assert all(r["tokens_per_s"] > 0 and r["peak_memory"] > 0 for r in log)


def test_model_card(trained, tiny_model_dir, tiny_dataset_dir):
    text = (trained / "README.md").read_text(encoding="utf-8")
    meta = yaml.safe_load(text.split("---")[1])
    assert meta["base_model"] == str(tiny_model_dir) and meta["library_name"] == "peft"
    assert "sde" in meta["tags"] and NOMI in meta["tags"]
    log = read_log(trained)
    for expected in ["design in words (from the dataset card): loss on the completion only",
                     "| lora_r | 8 |", "| lr | 0.01 |", "| batch_size | 4 |", "| max_length | 2048 |",
                     "chat template: not used", "No-MI", f"final training loss: {log[-1]['loss']:.4f}",
                     str(tiny_dataset_dir)]:
        assert expected in text, expected
    from sde_train.data import data_fingerprint, load_rows

    assert data_fingerprint(load_rows(str(tiny_dataset_dir), NOMI, "train")) in text
    # what the adapter was trained with, so that a run that does not reproduce elsewhere can be traced
    import peft
    import transformers

    from sde_train.environment import processor

    for expected in [f"- torch: {torch.__version__}", f"- transformers: {transformers.__version__}",
                     f"- peft: {peft.__version__}", "- device: cpu", f"- processor: {processor(torch.device('cpu'))}",
                     f"- threads: {os.environ['OMP_NUM_THREADS']}"]:
        assert expected in text.split("## Environment")[1], expected


def test_lm_eval_loads_the_adapter_with_peft(trained, tiny_model_dir, tmp_path):
    """`lm_eval --model hf --model_args pretrained=BASE,peft=ADAPTER` on a two-line local task."""
    (tmp_path / "data.jsonl").write_text('{"q": "评论：好吃\\n", "a": "食品评价：正面"}\n{"q": "x\\n", "a": "y"}\n',
                                         encoding="utf-8")
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump({
        "task": "sde_train_smoke", "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(tmp_path / "data.jsonl")}}, "test_split": "test",
        "output_type": "generate_until", "doc_to_text": "{{q}}", "doc_to_target": "{{a}}",
        "generation_kwargs": {"until": ["\n"], "max_gen_toks": 4, "do_sample": False},
        "metric_list": [{"metric": "exact_match"}], "metadata": {"version": 1}}, allow_unicode=True))
    result = subprocess.run(
        [str(Path(sys.executable).parent / "lm_eval"), "--model", "hf", "--model_args",
         f"pretrained={tiny_model_dir},peft={trained}", "--tasks", "sde_train_smoke", "--include_path",
         str(tmp_path), "--device", "cpu", "--batch_size", "2", "--output_path", str(tmp_path / "res")],
        capture_output=True, text=True, env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert "sde_train_smoke" in result.stdout


def test_push_to_hub_up_to_the_upload_call(tiny_model_dir, tiny_dataset_dir, tmp_path, monkeypatch):
    import huggingface_hub

    from sde_train.trainer import train

    calls = {}
    monkeypatch.setattr(huggingface_hub, "create_repo",
                        lambda repo_id, **kw: calls.setdefault("create", (repo_id, kw)) and f"https://hf.co/{repo_id}")
    monkeypatch.setattr(huggingface_hub, "upload_folder",
                        lambda **kw: calls.setdefault("upload", (kw, sorted(p.name for p in Path(kw["folder_path"]).iterdir()))))
    out = tmp_path / "out"
    summary = train(make_cfg(tiny_model_dir, tiny_dataset_dir, out, max_steps=1, push_to_hub="org/sde-adapter",
                             private=True))
    assert calls["create"] == ("org/sde-adapter", {"repo_type": "model", "private": True, "exist_ok": True})
    kwargs, files = calls["upload"]
    assert kwargs["repo_id"] == "org/sde-adapter" and Path(kwargs["folder_path"]) == out
    assert {"adapter_config.json", "adapter_model.safetensors", "README.md"} <= set(files)
    assert "checkpoints/**" in kwargs["ignore_patterns"]
    assert summary["hub_url"] == "https://hf.co/org/sde-adapter"


def test_gradient_checkpointing_gives_the_same_adapter(tiny_model_dir, tiny_dataset_dir, tmp_path):
    from safetensors.torch import load_file

    from sde_train.trainer import train

    for name, gc in (("plain", False), ("gc", True)):
        train(make_cfg(tiny_model_dir, tiny_dataset_dir, tmp_path / name, max_steps=2, lr=1e-2,
                       gradient_checkpointing=gc))
    a, b = (load_file(tmp_path / n / "adapter_model.safetensors") for n in ("plain", "gc"))
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6)


def test_mixed_design_dataset_masks_each_row_by_its_column(tiny_model_dir, tmp_path):
    """loss_on_prompt is read per row: a dataset may mix MI and No-MI samples."""
    from transformers import AutoTokenizer

    from sde_train.data import encode_rows, load_rows

    rows = masa_rows(4, False, NOMI)
    rows[1]["loss_on_prompt"] = True
    write_dataset(tmp_path / "ds", {"mixed": rows})
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    samples = encode_rows(load_rows(str(tmp_path / "ds"), "mixed", "train"), tok, False, 2048)
    assert samples[1].loss_start == 1 and samples[0].loss_start > 1


def test_design_words_come_from_the_dataset_card(tmp_path):
    """The export's card has a `| config | design | …` table; hand-written cards may use bullets."""
    from sde_train.data import read_design_words

    (tmp_path / "README.md").write_text(
        f"---\nconfigs:\n- config_name: {NOMI}\n---\n# data\n\n```python\nload_dataset('x', '{NOMI}')\n```\n\n"
        f"| config | design | train |\n|---|---|---|\n| `{MI}` | loss on prompt and completion | 3 |\n"
        f"| `{NOMI}` | instruction before the input; loss on the completion only | 3 |\n", encoding="utf-8")
    assert read_design_words(str(tmp_path), NOMI) == "instruction before the input; loss on the completion only"
    assert read_design_words(str(tmp_path), "other") is None
    assert read_design_words(str(tmp_path / "missing"), NOMI) is None


@pytest.mark.skipif(not __import__("sde_train.trainer", fromlist=["x"]).cpu_has_bf16(),
                    reason="this CPU has no bf16 instructions: --precision auto is fp32 here")
def test_bf16_on_cpu_keeps_lora_and_optimizer_in_fp32_and_tracks_fp32(tiny_model_dir, tiny_dataset_dir, tmp_path):
    """--precision auto is bf16 on a CPU with bf16 instructions: frozen weights bf16, LoRA weights, their
    gradients and Adam's state fp32, and the loss of the same steps close to the fp32 run's."""
    from sde_train.trainer import Trainable, build_model, compute_dtype, setup_optimizer, train

    cfg = make_cfg(tiny_model_dir, tiny_dataset_dir, tmp_path / "bf16", precision="auto", max_steps=4, lr=1e-3)
    assert compute_dtype(cfg.precision, torch.device("cpu")) == torch.bfloat16
    model = build_model(cfg, torch.device("cpu"))
    trainable = [p for p in model.parameters() if p.requires_grad]
    frozen = [p for p in model.parameters() if not p.requires_grad]
    assert trainable and all(p.dtype == torch.float32 for p in trainable)
    assert any(p.dtype == torch.bfloat16 for p in frozen)
    parts = Trainable(model, *setup_optimizer(cfg, model, torch.device("cpu"), 4))
    assert parts.optimizer.param_groups[0]["params"][0].dtype == torch.float32
    train(cfg)
    train(make_cfg(tiny_model_dir, tiny_dataset_dir, tmp_path / "fp32", max_steps=4, lr=1e-3))
    bf16, fp32 = read_log(tmp_path / "bf16"), read_log(tmp_path / "fp32")
    for a, b in zip(bf16, fp32):
        assert a["loss"] == pytest.approx(b["loss"], rel=0.02)
    assert "bfloat16" not in str({k: v.dtype for k, v in load_file(tmp_path / "bf16" / "adapter_model.safetensors").items()})


def test_threads_auto_counts_the_cores_other_processes_leave_free(monkeypatch):
    import os

    from sde_train.threads import choose_threads, free_cores

    assert choose_threads(1) == 1 and torch.get_num_threads() == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert choose_threads("auto") == 2  # someone decided
    cores = os.cpu_count() or 1
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        import psutil

        while psutil.Process(hog.pid).cpu_times().user < 0.2:  # spinning, not starting up
            pass
        assert free_cores() <= max(1, cores - 1)
    finally:
        hog.kill()
        hog.wait()
    with pytest.raises(Exception, match="--threads must be auto or a positive whole number"):
        make_cfg(Path("m"), Path("d"), Path("o"), threads="0")

