"""Build a tiny random-weight Qwen2 causal LM with a locally trained tokenizer.

Why: nothing can be downloaded from the Hub here, yet tests, the demo and the benchmark must run
the real code paths (AutoModel, PEFT, the lm_eval CLI). A Qwen2-architecture model with a
byte-level BPE tokenizer (any text, Chinese included) and a ChatML chat template is the smallest
thing those paths accept unchanged.

    python -m sde_train.tiny_model --out DIR [--corpus FILE.jsonl ...]
"""
from __future__ import annotations

import argparse
import json
from collections.abc import Iterable, Iterator
from pathlib import Path

from sde_files import atomic_folder

PAD_TOKEN = "<|endoftext|>"
IM_START, IM_END = "<|im_start|>", "<|im_end|>"
EOS_TOKEN = IM_END  # as in Qwen2.5-Instruct: the assistant turn ends with the EOS token
# ChatML, the template Qwen2.5-Instruct uses (without its default system prompt).
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
MAX_POSITIONS = 4096


def bundled_data_files() -> list[Path]:
    """The JSONL files shipped in sde_datagen/data, found next to this package (not imported)."""
    root = Path(__file__).resolve().parent.parent / "sde_datagen" / "data"
    return sorted(root.glob("*/*.jsonl"))


def iter_jsonl_texts(paths: Iterable[str | Path]) -> Iterator[str]:
    """The "text" field of every record of the given JSONL files (records without one skipped)."""
    for path in paths:
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    text = json.loads(line).get("text")
                    if isinstance(text, str) and text:
                        yield text


def train_tokenizer(corpus: Iterable[str], vocab_size: int):
    """Byte-level BPE (every byte in the alphabet) trained on `corpus`, with eos/pad and ChatML."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    # The same normalizer and pre-tokenizer as Qwen2Tokenizer: AutoTokenizer rebuilds a qwen2
    # model's tokenizer as that class, so anything else would tokenize differently once reloaded.
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[PAD_TOKEN, IM_START, IM_END],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # every byte: any text encodes
        show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        additional_special_tokens=[IM_START],
        chat_template=CHAT_TEMPLATE,
        model_max_length=MAX_POSITIONS,
        padding_side="left",  # generation-friendly default
        clean_up_tokenization_spaces=False,
    )


def build_tiny_model(
    out_dir: str | Path,
    corpus: Iterable[str],
    *,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 2,  # head size 32, which vLLM's CPU attention runs (16 it does not)
    vocab_size: int = 3000,
    seed: int = 0,
    intermediate_size: int | None = None,
    num_kv_heads: int | None = None,
    tie_word_embeddings: bool = True,
    model_vocab_size: int | None = None,
) -> Path:
    """Write a random-weight Qwen2 model + tokenizer to `out_dir` (atomically) and return it.

    `model_vocab_size` (>= the tokenizer's) pads the embedding as real checkpoints do, e.g. 151936
    for a Qwen2.5-shaped model whose tokenizer here is small.
    """
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    out_dir = Path(out_dir)
    tokenizer = train_tokenizer(corpus, vocab_size)
    config = Qwen2Config(
        vocab_size=max(len(tokenizer), model_vocab_size or 0),
        hidden_size=hidden_size,
        intermediate_size=intermediate_size or 4 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_kv_heads or num_heads,
        max_position_embeddings=MAX_POSITIONS,
        tie_word_embeddings=tie_word_embeddings,
        bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config)
    model.generation_config = GenerationConfig(
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id
    )
    with atomic_folder(out_dir) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
    return out_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sde_train.tiny_model", description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="folder to write the model and tokenizer to")
    parser.add_argument("--corpus", nargs="*", default=None,
                        help="JSONL files whose 'text' field trains the tokenizer (default: bundled data)")
    parser.add_argument("--hidden-size", type=int, default=64)
    parser.add_argument("--num-layers", type=int, default=2)
    parser.add_argument("--num-heads", type=int, default=2)
    parser.add_argument("--vocab-size", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    files = args.corpus or bundled_data_files()
    if not files:
        parser.error("no corpus: pass --corpus FILE.jsonl (bundled sde_datagen/data not found)")
    out = build_tiny_model(
        args.out, iter_jsonl_texts(files), hidden_size=args.hidden_size, num_layers=args.num_layers,
        num_heads=args.num_heads, vocab_size=args.vocab_size, seed=args.seed,
    )
    print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
