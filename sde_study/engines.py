"""The engine a study evaluates with: one base model per worker, each cell's adapter swapped in.

- `hf`: transformers + PEFT. The base model is loaded once; each adapter is injected
  (PeftModel.from_pretrained) and taken out again (`unload`, no merge); lm-eval's `HFLM` wraps it.
- `vllm`: lm-eval's own `vllm` model class with LoRA enabled, built once; each adapter is a
  `LoRARequest` on that engine (no reload, no merge). Several times faster than `hf` at its best thread
  count and batch (`bench/eval.py --engines`), with the same greedy strings, and what GPU users run.

Both yield an lm-eval LM, so the tasks, prompts, parsers and logged samples are lm-eval's either way,
and `lm_eval_command()` (with an engine's `model_args()`) is the `lm_eval` command line that reproduces one.
"""
from __future__ import annotations

import contextlib
import logging
import itertools
import json
import os
import shlex
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, ContextManager, Iterator, Protocol

from sde_datagen.errors import UserError

ENGINE_NAMES = ("vllm", "hf")  # what a plan records: the engine that generated its outputs
ENGINES = ("auto", *ENGINE_NAMES)  # what --engine takes: auto is vllm where it imports, else hf
# vLLM's KV cache on a CPU (GiB) unless VLLM_CPU_KVCACHE_SPACE says otherwise: ~80k tokens of SmolLM2 in fp32.
CPU_KV_CACHE_GIB = 4
INSTALL_HINT = "make install-vllm (CPU) or pip install 'sde-kit[vllm]' (GPU)"
# What an engine runs under, in a study and in the `lm_eval` command that reproduces a cell. vLLM's engine in
# the calling process: no spawned engine-core process (a study worker, a test, a script without a __main__ guard
# all work; on a 2-core machine the spawned process dies at the first batch of SmolLM2, EngineDeadError).
VLLM_MODELS = ("vllm", "sde-vllm")  # lm_eval's --model names of a vLLM cell (sde-vllm: runaways stopped)
VLLM_ENVIRONMENT = {"VLLM_ENABLE_V1_MULTIPROCESSING": "0"}


DTYPES = ("auto", "bfloat16", "float32")  # auto: the checkpoint's own dtype


@dataclass(frozen=True)
class VLLMSettings:
    """How the vLLM engine generates: plan settings, recorded in study.yaml (a plan written before them has none,
    and keeps vLLM's defaults). Measured on SmolLM2 NER by bench/profile_eval.py and bench/cell.py."""

    # Tokens per KV-cache block. The prefix cache shares whole blocks, and vLLM's CPU default of 128 is longer than
    # the chat template and instruction every document shares, so nothing was ever shared; its CPU attention takes
    # multiples of 32. 32: the same outputs, 20% less evaluation time on NER.
    kv_block: int = 32
    # The base weights' dtype: bf16 is faster on CPUs with AMX, and changes some outputs (opt in).
    dtype: str = "auto"
    # Stop an answer once it is a runaway whatever follows (sde_datagen.codecs.Codec.runaway_stop). Replayed on the
    # committed NER races (bench/runaway_stop.py): 20-23% fewer generated tokens, every strict score the same, but
    # paper-rule F1 moves by up to 0.11 and both races' paper-rule finalists change. Off unless asked for: a
    # strict-rule study may turn it on.
    runaway_stop: bool = False

    def problem(self) -> tuple[str, str] | None:
        """(the setting, what it must be) where one is wrong; None when all are right."""
        if self.kv_block < 32 or self.kv_block % 32:
            return "kv_block", "a multiple of 32 (vLLM's CPU attention takes no other)"
        if self.dtype not in DTYPES:
            return "dtype", f"one of {', '.join(DTYPES)}"
        return None


def vllm_problem() -> str | None:
    """Why vLLM cannot be used here (None when it imports)."""
    from importlib.util import find_spec

    if find_spec("vllm") is None:
        return "vLLM is not installed"
    logger = logging.getLogger("vllm")
    level = logger.level
    logger.setLevel(logging.ERROR)  # quiet while it imports: what it logs then (Triton, its platform) is not news
    try:
        with own_environment():
            import vllm  # noqa: F401
            from lm_eval.models import vllm_causallms  # noqa: F401
    except Exception as err:  # a broken install: say what broke, evaluate with hf
        return f"vLLM does not import ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})"
    finally:
        logger.setLevel(level)
    return None


@contextlib.contextmanager
def own_environment() -> Iterator[None]:
    """Undo, when the block ends, every change made to os.environ inside it. vLLM sets variables for its own workers
    when it is imported and when an engine starts (LD_PRELOAD of libgomp, KMP_*, VLLM_*, TORCHINDUCTOR_*), and the
    engine's settings below are read while it starts: processes a study starts later (training, torchrun) must
    see the environment as it was before, or a 2-process torchrun training can hang."""
    before = dict(os.environ)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(before)


def resolve_engine(name: str) -> tuple[str, str | None]:
    """(`vllm` or `hf`, a one-line note when `auto` falls back to hf); `vllm` asked for but missing is an error."""
    if name not in ENGINES:
        raise UserError(f"--engine {name}: expected one of {', '.join(ENGINES)}")
    if name == "hf":
        return "hf", None
    problem = vllm_problem()
    if problem is None:
        return "vllm", None
    if name == "vllm":
        raise UserError(f"--engine vllm: {problem}; install it with {INSTALL_HINT}, or use --engine hf")
    return "hf", f"sde study: evaluating with hf, several times slower than vllm: {problem} ({INSTALL_HINT})"


def model_dtype(path: str) -> str:
    """The dtype the checkpoint declares (what `hf` evaluates in with dtype=auto), for vLLM to use the same."""
    from transformers import AutoConfig

    dtype = getattr(AutoConfig.from_pretrained(path), "dtype", None)
    return str(dtype).removeprefix("torch.") if dtype is not None else "float32"


class Engine(Protocol):
    """What a study evaluates with: one base model per worker, each cell's adapter swapped in."""

    name: str  # lm-eval's --model

    @property
    def model(self) -> Any:
        """The untuned base model in transformers, for the perplexity signals (they need every prompt token's logits)."""

    @property
    def tokenizer(self) -> Any: ...

    def lm(self, adapter: Path | None, runaways: tuple[str, str] | None = None) -> ContextManager[Any]:
        """An lm-eval LM of the base model with the adapter at `adapter` (None: untuned); `runaways`: the (task,
        design) whose runaway answers the engine may stop early."""

    def model_name(self, runaways: tuple[str, str] | None = None) -> str:
        """lm-eval's --model that generates the same way."""

    def model_args(self, adapter: Path | None, runaways: tuple[str, str] | None = None) -> str:
        """lm-eval's --model_args that load the same model and adapter, and generate the same way."""


def vllm_lora_rank(adapters_r: int) -> int:
    """The smallest LoRA rank vLLM provisions that holds rank `adapters_r`."""
    return next(r for r in (8, 16, 32, 64, 128, 256, 320, 512) if r >= adapters_r)


class HFEngine:
    """transformers + PEFT: the base model stays loaded; adapters are injected and removed per cell."""

    name = "hf"

    def __init__(self, path: str, batch_size: int = 8):
        self.path = path
        self.batch_size = batch_size
        self._model = None

    @property
    def model(self):
        """The untuned base model (dtype as lm-eval's default, auto); also what perplexities run on."""
        if self._model is None:
            import torch
            from transformers import AutoModelForCausalLM

            model = AutoModelForCausalLM.from_pretrained(self.path, dtype="auto")
            self._model = model.to("cuda" if torch.cuda.is_available() else "cpu").eval()
        return self._model

    @cached_property
    def tokenizer(self):
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(self.path)

    @contextlib.contextmanager
    def adapter(self, path: Path | None) -> Iterator[Any]:
        """The base model with the adapter at `path` injected (or the base itself for None).

        PEFT injects LoRA layers into the base model's own modules, so on exit `unload()` takes them
        out again and the stripped model it returns becomes this object's base model.
        """
        if path is None:
            yield self.model
            return
        from peft import PeftModel

        tuned = PeftModel.from_pretrained(self.model, str(path)).eval()
        try:
            yield tuned
        finally:
            self._model = tuned.unload()

    @contextlib.contextmanager
    def lm(self, adapter: Path | None, runaways: tuple[str, str] | None = None) -> Iterator[Any]:
        """An lm-eval LM of the base model with `adapter` (None: untuned); it never stops an answer early."""
        from lm_eval.models.huggingface import HFLM

        with self.adapter(adapter) as model:
            yield HFLM(pretrained=model, tokenizer=self.path, batch_size=self.batch_size)

    def model_name(self, runaways: tuple[str, str] | None = None) -> str:
        return self.name

    def model_args(self, adapter: Path | None, runaways: tuple[str, str] | None = None) -> str:
        return f"pretrained={self.path}" + (f",peft={adapter}" if adapter else "")


class VLLMEngine:
    """lm-eval's vllm model, started once with LoRA on; each evaluation picks its adapter by LoRARequest."""

    name = "vllm"

    def __init__(self, path: str, max_lora_rank: int = 8, settings: VLLMSettings | None = None):
        self.path = path
        self.settings = settings  # None: vLLM's defaults, the checkpoint's dtype, no runaway stop
        self.dtype = settings.dtype if settings and settings.dtype != "auto" else model_dtype(path)
        self.max_lora_rank = vllm_lora_rank(max_lora_rank)
        self.hf = HFEngine(path)  # the perplexity signals need logits of every prompt token: plain transformers
        self._ids = itertools.count(1)

    @cached_property
    def engine(self):
        """The lm-eval VLLM model (started on first use: 10-130 s, compiled once per process)."""
        from sde_train.threads import choose_threads

        with own_environment():
            from sde_study.vllm_model import SwappableVLLM

            # vLLM binds its threads once, at start (and ignores torch.set_num_threads after): the free cores now.
            os.environ.setdefault("OMP_NUM_THREADS", str(choose_threads()))
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(CPU_KV_CACHE_GIB))
            for name, value in VLLM_ENVIRONMENT.items():
                os.environ.setdefault(name, value)
            return SwappableVLLM(pretrained=self.path, dtype=self.dtype, max_lora_rank=self.max_lora_rank,
                                 batch_size="auto", **self.engine_args())

    def engine_args(self) -> dict[str, Any]:
        """What the plan's settings pass to vLLM's LLM (as lm_eval's --model_args pass them)."""
        return {"block_size": self.settings.kv_block} if self.settings else {}

    @contextlib.contextmanager
    def lm(self, adapter: Path | None, runaways: tuple[str, str] | None = None) -> Iterator[Any]:
        """`runaways`: (task, design) whose runaway answers stop early, where the settings ask for it."""
        engine = self.engine
        # A fresh id per evaluation: vLLM caches adapters by id, and a retrained cell reuses its path.
        engine.use_adapter(adapter, next(self._ids))
        engine.stop_runaways(*(self.runaways(runaways) or (None, None)))
        try:
            yield engine
        finally:
            engine.use_adapter(None, 0)
            engine.stop_runaways(None, None)

    def runaways(self, runaways: tuple[str, str] | None) -> tuple[str, str] | None:
        return runaways if self.settings and self.settings.runaway_stop else None

    @property
    def model(self):
        return self.hf.model

    @property
    def tokenizer(self):
        return self.hf.tokenizer

    def model_args(self, adapter: Path | None, runaways: tuple[str, str] | None = None) -> str:
        args = f"pretrained={self.path},dtype={self.dtype}"
        args += "".join(f",{k}={v}" for k, v in self.engine_args().items())
        args += f",lora_local_path={adapter},max_lora_rank={self.max_lora_rank}" if adapter else ""
        if stop := self.runaways(runaways):
            args += f",runaway_task={stop[0]},runaway_design={stop[1]}"
        return args

    def model_name(self, runaways: tuple[str, str] | None = None) -> str:
        """lm_eval's --model: the kit's subclass where it stops runaways (registered by the task pack's hook)."""
        return "sde-vllm" if self.runaways(runaways) else "vllm"


def make_engine(name: str, path: str, batch_size: int, max_lora_rank: int,
                vllm_settings: VLLMSettings | None = None) -> Engine:
    """The engine `name` for the base model at `path` (a local folder is named by its absolute path)."""
    if Path(path).expanduser().is_dir():
        path = str(Path(path).expanduser().resolve())
    return VLLMEngine(path, max_lora_rank, vllm_settings) if name == "vllm" else HFEngine(path, batch_size)


def same_generation(a: str, b: str) -> bool:
    """Equal strings, or equal but for a last character cut by the token budget: transformers decodes the bytes
    of a half-generated multi-byte character as U+FFFD, vLLM holds them back (sde_tasks/tasks/README.md)."""
    return a == b or a.rstrip("\ufffd") == b.rstrip("\ufffd")


def lm_eval_command(engine: str, model_args: str, tasks: tuple[str, ...], design: str, out: Path, *,
                    chat_template: bool, limit: int | None, batch_size: int, num_fewshot: int | None = None,
                    include_path: str | None = None, max_gen_toks: int | None = None) -> str:
    """The `lm_eval` command line that runs the same evaluation (the task pack found by the install's hook), after
    the environment variables the engine runs under."""
    vllm = engine in VLLM_MODELS
    parts = [f"{name}={value}" for name, value in VLLM_ENVIRONMENT.items()] if vllm else []
    parts += ["lm_eval", "--model", engine, "--model_args", model_args, "--tasks", ",".join(tasks),
              "--metadata", json.dumps({"design": design}), "--batch_size", "auto" if vllm else str(batch_size),
              "--log_samples", "--output_path", str(out)]
    if include_path:
        parts += ["--include_path", include_path]
    if chat_template:
        parts += ["--apply_chat_template", "--fewshot_as_multiturn"]
    if num_fewshot is not None:
        parts += ["--num_fewshot", str(num_fewshot)]
    if limit is not None:
        parts += ["--limit", str(limit)]
    if max_gen_toks:
        parts += ["--gen_kwargs", f"max_gen_toks={max_gen_toks}"]
    return shlex.join(parts)
