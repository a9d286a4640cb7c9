#!/usr/bin/env bash
# The paper's headline on GENIA NER, on SmolLM2-135M-Instruct: ES-SDE, heuristic, EW-SDE and paper-base, 3 seeds,
# with the strict NER race's settings (300 training sentences, 75 steps, lr 5e-4, first 500 test sentences,
# 280 new tokens, vLLM). Run from a worktree of the kit, in the background; rerun to resume.
set -euo pipefail
PY=${PY:-/work/main/.venv/bin/python}
MODEL=${MODEL:-/work/main/out/models/smollm2}
HERE=docs/studies/ner-headline-smollm2
printf 'lr: 5.0e-4\nmax_length: 512\n' > $HERE/train.yaml
run() {
  $PY -m sde_datagen.main study run --model "$MODEL" --task ner --chat-template --train-size 300 --eval-limit 500 \
    --max-gen-toks 280 --eval-batch-size 8 --engine vllm --no-analysis --train-config $HERE/train.yaml \
    --out $HERE "$@"
}
run --designs es-sde,heuristic --seeds 0,1,2
run --designs es-sde,heuristic,ew-sde,paper-base --seeds 0,1,2 --extend
