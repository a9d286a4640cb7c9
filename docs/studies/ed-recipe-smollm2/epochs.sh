#!/usr/bin/env bash
# The same 300 steps on the board's 300 sentences (4 epochs): does the recipe work by its steps or by its data?
set -euo pipefail
PY=${PY:-/work/main/.venv/bin/python}
MODEL=${MODEL:-/work/main/out/models/smollm2}
HERE=docs/studies/ed-recipe-smollm2
printf 'lr: 5.0e-4\nmax_length: 512\nepochs: 4\n' > $HERE/epochs-4.train.yaml
$PY -m sde_datagen.cli study run --model "$MODEL" --task ed --designs es-sde --seeds 0 --chat-template \
  --eval-limit 500 --max-gen-toks 280 --eval-batch-size 8 --engine vllm --no-analysis \
  --train-size 300 --train-config $HERE/epochs-4.train.yaml --out $HERE/epochs-4
