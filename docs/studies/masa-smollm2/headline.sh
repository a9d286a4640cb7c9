#!/usr/bin/env bash
# The headline on MASA: ES-SDE and the heuristic design to 3 seeds (EW-SDE too), the study's own settings, full test
# sets in and out of domain. Run from a worktree of the kit, in the background; rerun to resume. MODEL must be the
# path study.yaml names (on another machine: a symlink to a SmolLM2 folder from `sde models get`).
set -euo pipefail
PY=${PY:-/work/main/.venv/bin/python}
MODEL=${MODEL:-/work/runs/models/smollm2}
HERE=docs/studies/masa-smollm2
run() {
  $PY -m sde_datagen.main study run --model "$MODEL" --task masa --designs es-sde,ew-sde,heuristic --train-size 300 \
    --train-config $HERE/train.yaml --chat-template --max-gen-toks 128 --no-analysis --engine vllm --out $HERE \
    --extend "$@"
}
run --seeds 0      # the heuristic design's first cell before any second seed
run --seeds 0,1,2
