#!/usr/bin/env bash
# The recipe that did not collapse (1,200 MAVEN training sentences, 300 steps, lr 5e-4): seeds 1 and 2, two at a time.
set -euo pipefail
PY=${PY:-/work/main/.venv/bin/python}
MODEL=${MODEL:-/work/main/out/models/smollm2}
HERE=docs/studies/ed-recipe-smollm2
$PY -m sde_datagen.cli study run --model "$MODEL" --task ed --designs es-sde --seeds 0,1,2 --chat-template \
  --eval-limit 500 --max-gen-toks 280 --eval-batch-size 8 --engine vllm --no-analysis --data ../shared/data/maven \
  --train-size 1200 --train-config $HERE/data-1200.train.yaml --out $HERE/data-1200 --extend \
  --executor submitit-local --workers 2
