"""The training loop: one readable function, no HF Trainer inside.

Per optimizer step: the step's samples (a pure function of seed and step, see DataPlan) are packed
into rows, the decoder body runs on them, hidden states are gathered at the positions that carry
loss and only there the LM head and cross-entropy run. The loss is the sum over loss tokens divided
by the number of loss tokens of the whole step (all micro-batches, all ranks), so gradient
accumulation and DDP give the same update as one big batch.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from sde_train.attention import VARLEN_SDPA
from sde_train.attention import register as register_varlen
from sde_train.config import TrainConfig
from sde_train.data import (DataPlan, count_loss_tokens, data_fingerprint, encode_rows, load_rows,
                            pack, read_design_words)
from sde_train.environment import training_environment
from sde_train.errors import TrainError
from sde_files import atomic_folder, umask_mode, write_atomic
from sde_train.output import prepare_output
from sde_train.threads import choose_threads

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")
LOG_NAME = "training_log.jsonl"
CKPT_DIR = "checkpoints"


class CausalLMLoss(nn.Module):
    """Per-token cross-entropy computed only where the loss is: body -> gather -> lm_head -> CE.

    Why not model(labels=…): that projects every position onto the vocabulary, although with
    No-MI most positions are prompt tokens whose logits are thrown away.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model  # a PeftModel around a *ForCausalLM
        config = model.get_base_model().config
        for attr in ("final_logit_softcapping", "logit_scale", "logits_scaling"):
            if getattr(config, attr, None) not in (None, 1, 1.0):
                raise TrainError(f"model config sets {attr}; sde_train's LM head path does not apply it")

    def forward(self, input_ids: torch.Tensor, position_ids: torch.Tensor, hidden_index: torch.Tensor,
                targets: torch.Tensor, seq_bounds: tuple[int, ...] | None = None) -> torch.Tensor:
        """`seq_bounds` (sample starts, then T) only for the per-sample SDPA attention; other
        implementations find the samples from the restarting position ids."""
        base = self.model.get_base_model()
        extra = {"seq_bounds": seq_bounds} if seq_bounds is not None else {}
        hidden = base.get_decoder()(input_ids=input_ids, position_ids=position_ids, use_cache=False, **extra)
        picked = hidden.last_hidden_state.flatten(0, 1).index_select(0, hidden_index)
        logits = base.get_output_embeddings()(picked).float()
        return F.cross_entropy(logits, targets, reduction="none")


@dataclass
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed() -> Dist:
    """torchrun sets WORLD_SIZE/RANK/LOCAL_RANK; then join the process group (nccl on GPU, else gloo)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Dist()
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        torch.cuda.set_device(local)
    return Dist(dist.get_rank(), world, local)


def build_model(cfg: TrainConfig, device: torch.device) -> nn.Module:
    """Base model (bf16 where --precision resolves to it, else fp32) with LoRA adapters (fp32) on `target_modules`."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from sde_train.lora import fuse_lora_layers

    attn = cfg.attn_implementation or _default_attention(device.type == "cuda", cfg.compile)
    if attn == VARLEN_SDPA:
        register_varlen()
    try:
        base = AutoModelForCausalLM.from_pretrained(
            cfg.model, dtype=compute_dtype(cfg.precision, device) or torch.float32, attn_implementation=attn)
    except (OSError, ValueError) as err:
        raise TrainError(f"cannot load model {cfg.model!r}: {err}") from err
    base.config.use_cache = False
    if cfg.gradient_checkpointing:
        base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    targets = cfg.target_modules if cfg.target_modules == "all-linear" else [
        m.strip() for m in cfg.target_modules.split(",") if m.strip()]
    torch.manual_seed(cfg.seed)  # LoRA A init
    lora = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules=targets, task_type="CAUSAL_LM")
    try:
        model = get_peft_model(base, lora, autocast_adapter_dtype=True)  # adapter weights in fp32
    except ValueError as err:
        raise TrainError(f"LoRA setup failed (--target-modules {cfg.target_modules!r}): {err}") from err
    fuse_lora_layers(model)
    return model.to(device).train()


def cpu_has_bf16() -> bool:
    """bf16 matmuls in hardware: AVX512_BF16 or AMX (elsewhere bf16 on CPU is emulated and slow)."""
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def compute_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """bf16 for the frozen weights and autocast, or None for fp32: `auto` takes bf16 on CUDA and on CPUs with
    bf16 instructions. LoRA weights, gradients and the optimizer state stay fp32 either way."""
    supported = device.type == "cuda" or cpu_has_bf16()
    if precision == "bf16" and not supported:
        raise TrainError("--precision bf16: this CPU has no bf16 instructions (AVX512_BF16 or AMX); use fp32")
    return torch.bfloat16 if precision != "fp32" and supported else None


def _default_attention(cuda: bool, compile: bool) -> str:
    """flash-attention varlen on GPU when installed; else SDPA per packed sample. Under torch.compile,
    plain sdpa (block-diagonal mask from the position ids): per-sample bounds would recompile."""
    import importlib.util

    if cuda and importlib.util.find_spec("flash_attn"):
        return "flash_attention_2"
    return "sdpa" if compile else VARLEN_SDPA


def lr_lambda(total: int, warmup: int):
    """Linear warm-up, then linear decay to 0 at `total` (TRL/transformers' default schedule)."""
    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total - step) / max(1, total - warmup))
    return f


def step_seed(seed: int, step: int, rank: int) -> int:
    """Dropout RNG is re-seeded per step and rank: a resumed run draws the same masks, on every rank."""
    return (seed * 1_000_003 + step * 4099 + rank) % (2**63 - 1)


def peak_memory(device: torch.device) -> int:
    """Peak bytes: CUDA allocator peak on GPU, process peak RSS on CPU."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    try:
        import resource
    except ImportError:  # Windows
        return 0
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


@dataclass
class Data:
    """The training samples, tokenized, and the order the steps draw them in."""

    rows: list[dict]
    samples: list
    plan: DataPlan
    total: int  # optimizer steps
    fingerprint: str


@dataclass
class Trainable:
    """What a step updates and a checkpoint saves: the adapted model, its optimizer and schedule."""

    peft_model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR


@dataclass(frozen=True)
class RunKey:
    """What a checkpoint must share with the run that resumes it (saved and compared whole)."""

    config_fingerprint: str
    data_fingerprint: str
    world_size: int


@dataclass
class Window:
    """Loss and token counts since the last log line, and totals for the summary."""

    sums: torch.Tensor  # loss sum, loss tokens, real tokens
    start: float
    final_loss: float = float("nan")
    tokens_per_s: float = 0.0
    tokens: int = 0
    loss_tokens: int = 0


def train(cfg: TrainConfig) -> dict:
    """Train one adapter; returns a summary (output, steps, final_loss, tokens_per_s)."""
    dist = setup_distributed()
    device = torch.device(f"cuda:{dist.local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    if device.type == "cpu":
        choose_threads(cfg.threads)
    out = Path(cfg.output)
    last_ckpt = prepare_run(cfg, out, dist)
    data = setup_data(cfg, dist)
    peft_model = build_model(cfg, device)
    parts = Trainable(peft_model, *setup_optimizer(cfg, peft_model, device, data.total))
    loss_model, ddp = wrap_loss(cfg, parts.peft_model, dist, device)
    key = RunKey(cfg.fingerprint(), data.fingerprint, dist.world_size)
    start = load_checkpoint(last_ckpt, parts, key) if cfg.resume and last_ckpt is not None else 0
    window = run_steps(cfg, data, parts, loss_model, ddp, key, dist, device, start)
    # DDP's reducer goes while the process group lives. Freed after destroy_process_group (when train returns), it
    # would free the gloo group itself, joining its threads while holding the GIL that one of them waits for: a
    # process hung at exit, seen under load with 2 processes on 2 cores (py-spy: ~ProcessGroupGloo in thread::join).
    del loss_model, ddp
    return finish(cfg, data, parts, window, dist, device)


def prepare_run(cfg: TrainConfig, out: Path, dist: Dist) -> Path | None:
    """Refuse an unusable --output before any work; the checkpoint to resume from, if any."""
    last_ckpt = latest_checkpoint(out / CKPT_DIR)
    prepare_output(out, out / CKPT_DIR, last_ckpt is not None, cfg.resume, cfg.overwrite, dist.main)
    return None if cfg.overwrite and not cfg.resume else last_ckpt


def setup_data(cfg: TrainConfig, dist: Dist) -> Data:
    """Load and tokenize the variant's rows; refuse samples that --max-length cuts before any loss token."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(cfg.model)
    except (OSError, ValueError) as err:
        if not Path(cfg.model).exists():
            raise TrainError(f"--model {cfg.model}: no such model folder or Hub id") from None
        raise TrainError(f"cannot load the tokenizer of {cfg.model!r}: {str(err).splitlines()[0]}") from err
    rows = load_rows(cfg.dataset, cfg.config, cfg.split)
    samples = encode_rows(rows, tokenizer, cfg.chat_template, cfg.max_length)
    lossless = [i for i, s in enumerate(samples) if len(s.ids) <= max(s.loss_start, 1)]
    if lossless:
        raise TrainError(f"--max-length {cfg.max_length} cuts {len(lossless)} of {len(samples)} samples (rows "
                         f"{', '.join(map(str, lossless[:5]))}{', …' if len(lossless) > 5 else ''}) before their first "
                         "loss token; raise --max-length")
    cut = sum(s.truncated for s in samples)
    if cut and dist.main:
        print(f"sde train: warning: {cut} of {len(samples)} samples were longer than --max-length "
              f"{cfg.max_length} and were cut at the end", file=sys.stderr)
    plan = DataPlan(len(samples), cfg.batch_size, cfg.grad_accum, dist.world_size, cfg.seed)
    return Data(rows, samples, plan, plan.total_steps(cfg.epochs, cfg.max_steps), data_fingerprint(rows))


def setup_optimizer(cfg: TrainConfig, peft_model: nn.Module, device: torch.device,
                    total: int) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW on the trainable (LoRA) parameters; linear warm-up, then linear decay."""
    params = [p for p in peft_model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=device.type == "cuda")
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(total, math.ceil(cfg.warmup_ratio * total)))
    return optimizer, scheduler


def wrap_loss(cfg: TrainConfig, peft_model: nn.Module, dist: Dist, device: torch.device):
    """The loss module the steps call: DDP around it on several processes, torch.compile on request."""
    loss_model: nn.Module = CausalLMLoss(peft_model)
    ddp = None
    if dist.world_size > 1:
        from torch.nn.parallel import DistributedDataParallel

        loss_model = ddp = DistributedDataParallel(
            loss_model, device_ids=[dist.local_rank] if device.type == "cuda" else None)
    if cfg.compile:
        loss_model = torch.compile(loss_model, dynamic=True)
    return loss_model, ddp


def run_steps(cfg: TrainConfig, data: Data, parts: Trainable, loss_model: nn.Module, ddp, key: RunKey, dist: Dist,
              device: torch.device, start: int) -> Window:
    """The loop: one optimizer step per iteration, a log line every --logging-steps, a checkpoint every --save-steps."""
    from tqdm.auto import tqdm

    out = Path(cfg.output)
    if dist.main:
        out.mkdir(parents=True, exist_ok=True)
        log = open_log(out / LOG_NAME, keep_until=start)
    dtype = compute_dtype(cfg.precision, device)
    autocast = torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()
    varlen = parts.peft_model.get_base_model().config._attn_implementation == VARLEN_SDPA
    bar = tqdm(total=data.total, initial=start, desc="sde train", disable=not dist.main, dynamic_ncols=True)
    window = Window(torch.zeros(3, dtype=torch.float64, device=device), time.perf_counter())
    loop_start = window.start
    for step in range(start, data.total):
        lr = train_step(cfg, data, parts, loss_model, ddp, dist, device, step, autocast, varlen, window)
        done = step + 1
        if done % cfg.logging_steps == 0 or done == data.total:
            record = close_window(window, done, lr, device)
            if dist.main:
                log.write(json.dumps(record) + "\n")
                log.flush()
                bar.set_postfix(loss=f"{window.final_loss:.4f}", lr=f"{lr:.2e}", tok_s=f"{window.tokens_per_s:,.0f}")
        bar.update(1)
        if done % cfg.save_steps == 0 and done < data.total:
            if dist.main:
                save_checkpoint(out / CKPT_DIR, done, parts, key)
            _barrier(dist)
    bar.close()
    if dist.main:
        log.close()
    window.start = loop_start  # finish() reports the loop's wall time
    return window


def train_step(cfg: TrainConfig, data: Data, parts: Trainable, loss_model: nn.Module, ddp, dist: Dist,
               device: torch.device, step: int, autocast, varlen: bool, window: Window) -> float:
    """One optimizer step over this step's micro-batches; adds its loss and tokens to `window`; returns its lr."""
    torch.manual_seed(step_seed(cfg.seed, step, dist.rank))
    micro = [[data.samples[i] for i in idx] for idx in data.plan.micro_batches(step, dist.rank)]
    counts = torch.tensor([sum(count_loss_tokens(m) for m in micro), sum(len(s.ids) for m in micro for s in m)],
                          dtype=torch.float64, device=device)
    if ddp is not None:
        torch.distributed.all_reduce(counts)
    scale = (dist.world_size / counts[0].clamp(min=1.0)).float()  # DDP averages gradients over ranks
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    for k, group in enumerate(micro):
        batch = pack(group).to(device)
        sync = ddp is None or k == len(micro) - 1
        with contextlib.nullcontext() if sync else ddp.no_sync():
            with autocast:
                token_loss = loss_model(batch.input_ids, batch.position_ids, batch.hidden_index,
                                        batch.targets, batch.seq_bounds if varlen else None)
            (token_loss.sum() * scale).backward()
        loss_sum += token_loss.detach().sum().double()
    if cfg.max_grad_norm > 0:
        torch.nn.utils.clip_grad_norm_([p for g in parts.optimizer.param_groups for p in g["params"]],
                                       cfg.max_grad_norm)
    parts.optimizer.step()
    lr = parts.scheduler.get_last_lr()[0]
    parts.scheduler.step()
    parts.optimizer.zero_grad(set_to_none=True)
    if ddp is not None:
        torch.distributed.all_reduce(loss_sum)
    window.sums += torch.stack([loss_sum, counts[0], counts[1]])
    return lr


def close_window(window: Window, done: int, lr: float, device: torch.device) -> dict:
    """The log record of the steps since the last one; resets the window."""
    loss_s, loss_n, n_tok = window.sums.tolist()  # syncs the device: timings below are real
    window.tokens, window.loss_tokens = window.tokens + int(n_tok), window.loss_tokens + int(loss_n)
    now = time.perf_counter()
    window.final_loss = loss_s / max(loss_n, 1.0)
    window.tokens_per_s = n_tok / max(now - window.start, 1e-9)
    window.sums.zero_()
    window.start = now
    return {"step": done, "loss": round(window.final_loss, 6), "lr": lr,
            "tokens_per_s": round(window.tokens_per_s, 1), "peak_memory": peak_memory(device)}


def finish(cfg: TrainConfig, data: Data, parts: Trainable, window: Window, dist: Dist,
           device: torch.device) -> dict:
    """The adapter, its model card and (on request) the upload; checkpoints removed; the run's summary."""
    out = Path(cfg.output)
    summary = {"output": str(out), "steps": data.total, "final_loss": window.final_loss,
               "tokens_per_s": window.tokens_per_s, "tokens": window.tokens, "loss_tokens": window.loss_tokens,
               "train_seconds": time.perf_counter() - window.start, "samples": len(data.samples),
               "data_fingerprint": data.fingerprint,
               "loss_on_prompt": _only({bool(r.get("loss_on_prompt", False)) for r in data.rows}),
               "environment": training_environment(device)}
    if dist.main:
        from sde_train.card import push_to_hub, write_model_card

        save_adapter(parts.peft_model, out)
        write_model_card(out, cfg, summary, sorted({r.get("design") for r in data.rows if r.get("design")}),
                         read_design_words(cfg.dataset, cfg.config))
        shutil.rmtree(out / CKPT_DIR, ignore_errors=True)
        if cfg.push_to_hub:
            summary["hub_url"] = push_to_hub(out, cfg.push_to_hub, cfg.private)
    _barrier(dist)
    if dist.world_size > 1:
        torch.distributed.destroy_process_group()
    return summary


def _only(values: set):
    """The single value of a set, or None when the rows disagree."""
    return next(iter(values)) if len(values) == 1 else None


def _barrier(dist: Dist) -> None:
    if dist.world_size > 1:
        torch.distributed.barrier()


def open_log(path: Path, keep_until: int):
    """Append to the training log, first dropping records past the step a resumed run restarts at."""
    kept = []
    if path.exists() and keep_until > 0:
        kept = [line for line in path.read_text(encoding="utf-8").splitlines()
                if line.strip() and json.loads(line)["step"] <= keep_until]
    write_atomic(path, "".join(line + "\n" for line in kept))
    return path.open("a", encoding="utf-8")


def save_adapter(peft_model: nn.Module, out: Path) -> None:
    """PEFT folder files, each moved into place only once fully written, with the umask's modes (safetensors writes
    owner-only files). The folder itself is not swapped: it also holds the checkpoints and the training log."""
    tmp = Path(tempfile.mkdtemp(prefix=".adapter.", dir=out))
    try:
        peft_model.save_pretrained(tmp)
        for name in ADAPTER_FILES:
            os.chmod(tmp / name, umask_mode(directory=False))
            os.replace(tmp / name, out / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def latest_checkpoint(root: Path) -> Path | None:
    """The newest complete checkpoint (half-written ones are hidden temp dirs, never `step-*`)."""
    found = sorted(root.glob("step-*")) if root.is_dir() else []
    return found[-1] if found else None


def save_checkpoint(root: Path, step: int, parts: Trainable, key: RunKey) -> Path:
    """Adapter + optimizer + scheduler + position, in a temp dir renamed to step-N when complete.

    The data position is the step (the plan is a function of seed and step) and the RNG is
    re-seeded from (seed, step, rank) each step, so nothing else is needed to continue exactly.
    """
    from peft import get_peft_model_state_dict
    from safetensors.torch import save_file

    final = root / f"step-{step:08d}"
    with atomic_folder(final) as tmp:
        state = {k: v.detach().cpu().contiguous() for k, v in get_peft_model_state_dict(parts.peft_model).items()}
        save_file(state, tmp / "adapter_model.safetensors")
        torch.save(parts.optimizer.state_dict(), tmp / "optimizer.pt")
        torch.save(parts.scheduler.state_dict(), tmp / "scheduler.pt")
        (tmp / "state.json").write_text(json.dumps({"step": step, **asdict(key)}), encoding="utf-8")
    for old in root.glob("step-*"):
        if old != final:
            shutil.rmtree(old, ignore_errors=True)
    return final


def load_checkpoint(path: Path, parts: Trainable, key: RunKey) -> int:
    """Restore a checkpoint written by a run with the same key; returns the step to continue from."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    state = json.loads((path / "state.json").read_text(encoding="utf-8"))
    saved = RunKey(**{f: state[f] for f in RunKey.__dataclass_fields__})
    if saved.config_fingerprint != key.config_fingerprint:
        raise TrainError(f"--resume: {path} was written with other training settings; "
                         "resume with the same settings or choose another --output")
    if saved.data_fingerprint != key.data_fingerprint:
        raise TrainError(f"--resume: the dataset changed since step {state['step']} (checkpoint {path}); "
                         "train into a new --output, or --overwrite to start over")
    if saved.world_size != key.world_size:
        raise TrainError(f"--resume: {path} was written by {saved.world_size} process(es), not {key.world_size}")
    device = next(parts.peft_model.parameters()).device
    set_peft_model_state_dict(parts.peft_model, load_file(path / "adapter_model.safetensors", device=str(device)))
    parts.optimizer.load_state_dict(torch.load(path / "optimizer.pt", map_location=device, weights_only=True))
    parts.scheduler.load_state_dict(torch.load(path / "scheduler.pt", weights_only=True))
    return int(state["step"])
