#!/usr/bin/env bash
# The directions on MASA itself: a race of the 10 one-factor designs (CoT and R-CoT included), ES-SDE and heuristic,
# eliminating by in-domain kappa (sde_masa_id, the paper rule), out of domain reported beside it. Plan and cost:
# README.md. Run from a worktree of the kit, in the background; rerun to resume (a killed cell is trained again).
# MODEL must be the path the plan names (on another machine: a symlink to a SmolLM2 folder from `sde models get`).
set -euo pipefail
PY=${PY:-/work/main/.venv/bin/python}
MODEL=${MODEL:-/work/runs/models/smollm2}
HERE=docs/studies/masa-race-smollm2
$PY -m sde_datagen.main study race --model "$MODEL" --task masa \
  --designs one-factor,es-sde,heuristic --max-seeds 5 --budget-hours 40 --train-size 300 \
  --train-config docs/studies/masa-smollm2/train.yaml --chat-template --first-docs 100 --max-gen-toks 640 \
  --engine vllm --out $HERE "$@"
