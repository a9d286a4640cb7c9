#!/usr/bin/env bash
# ED recipes for SmolLM2-135M-Instruct, ES-SDE: why the board's ED adapters collapse, and what stops it.
# Run from a worktree of the kit, in the background (as it ran: seed 0 here, seeds 1-2 by seeds.sh, the 4-epoch
# control by epochs.sh): bash docs/studies/ed-recipe-smollm2/run.sh
set -euo pipefail
PY=${PY:-/work/main/.venv/bin/python}
MODEL=${MODEL:-/work/main/out/models/smollm2}
HERE=docs/studies/ed-recipe-smollm2
printf 'lr: 5.0e-4\nmax_length: 512\n' > $HERE/data-1200.train.yaml
$PY -m sde_datagen.cli study run --model "$MODEL" --task ed --designs es-sde --seeds 0 --chat-template --eval-limit 500 \
  --max-gen-toks 280 --eval-batch-size 8 --engine vllm --no-analysis --data ../shared/data/maven --train-size 1200 \
  --train-config $HERE/data-1200.train.yaml --out $HERE/data-1200
