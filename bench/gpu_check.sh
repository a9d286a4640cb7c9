#!/usr/bin/env bash
# The GPU path end to end on one CUDA device, in under 8 minutes (an H100: about 4). Run it whenever a GPU is at hand:
#   1. bf16 LoRA training with packed samples through the CUDA varlen attention kernel, against TRL, with MFU
#      (bench/train.py --gpu on a random Qwen2.5-0.5B-shaped model);
#   2. one study cell on that model: bf16 training, then vLLM evaluating the adapter through a LoRARequest
#      (sde study run --engine vllm), its result printed.
# Needs the GPU install: pip install -e '.[test,vllm]'. Usage: bash bench/gpu_check.sh [WORK] (default: a temp dir).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
WORK=${1:-$(mktemp -d -t sde-gpu-check-XXXXXX)}
"$PY" - <<'PYTHON'
import sys

import torch

if not torch.cuda.is_available():
    sys.exit("bench/gpu_check.sh: no CUDA device here; it checks the GPU path and needs one")
from sde_train.attention import uses_varlen_kernel

probe = torch.zeros(1, 1, 8, 64, device="cuda", dtype=torch.bfloat16)
print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}, CUDA varlen attention kernel: "
      f"{'yes' if uses_varlen_kernel(probe, 0.0) else 'NO (sde train falls back to SDPA per sample)'}")
PYTHON
echo "== 1/2 bf16 training: sde train against TRL, tokens/s, memory, MFU"
timeout 300 "$PY" bench/train.py --gpu --model qwen2.5-0.5b-shape --work "$WORK/train"
echo "== 2/2 one study cell: bf16 training, then vLLM with the adapter as a LoRARequest"
timeout 240 "$PY" -m sde_datagen.cli study run --model "$WORK/train/qwen2.5-0.5b-shape" --task ner --designs es-sde \
  --seeds 0 --train-size 64 --max-steps 20 --eval-limit 64 --max-gen-toks 64 --engine vllm --no-analysis \
  --out "$WORK/study"
"$PY" - "$WORK/study" <<'PYTHON'
import json
import sys
from pathlib import Path

row = json.loads(Path(sys.argv[1], "results.jsonl").read_text().splitlines()[0])
print(f"cell {row['design']} seed {row['seed']}: trained {row['steps']} steps in {row['train_seconds']:.1f} s, "
      f"evaluated {row['n_docs']} documents with vLLM in {row['eval_seconds']:.1f} s (f1 {row['f1']:.4f}: random weights)")
PYTHON
