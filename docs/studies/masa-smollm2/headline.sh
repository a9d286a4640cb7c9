#!/usr/bin/env bash
# The headline on MASA: ES-SDE, heuristic, EW-SDE and paper-base to 3 seeds, the study's own settings, full test sets
# in and out of domain. The heuristic's MASA form is one ["aspect", "label"] array per mentioned aspect.
# Run from a worktree of the kit, in the background; rerun to resume. MODEL must be the path study.yaml names (on
# another machine: a symlink to a SmolLM2 folder from `sde models get`).
set -euo pipefail
PY=${PY:-/work/main/.venv/bin/python}
MODEL=${MODEL:-/work/runs/models/smollm2}
HERE=docs/studies/masa-smollm2
$PY -m sde_datagen.main study run --model "$MODEL" --task masa --designs es-sde,heuristic,ew-sde,paper-base --seeds 0,1,2 --train-size 300 \
  --train-config $HERE/train.yaml --chat-template --max-gen-toks 128 --no-analysis --engine vllm --out $HERE --extend
