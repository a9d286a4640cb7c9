#!/usr/bin/env bash
# The headline on ED, on the recipe that did not collapse: ES-SDE, heuristic, EW-SDE and paper-base, seeds 0-2.
# Run from a worktree of the kit, in the background; rerun to resume.
set -euo pipefail
PY=${PY:-/work/main/.venv/bin/python}
MODEL=${MODEL:-/work/main/out/models/smollm2}
HERE=docs/studies/ed-recipe-smollm2
$PY -m sde_datagen.main study run --model "$MODEL" --task ed --designs es-sde,heuristic,ew-sde,paper-base --seeds 0,1,2 \
  --chat-template --eval-limit 500 --max-gen-toks 280 --eval-batch-size 8 --engine vllm --no-analysis \
  --data ../shared/data/maven --train-size 1200 --train-config $HERE/data-1200.train.yaml --out $HERE/data-1200 --extend
