#!/usr/bin/env bash
# The main job on a small scale, on CPU: export designs of all three tasks from the bundled data, show samples,
# LoRA-tune a tiny random-weight model on MASA ES-SDE and evaluate it with the lm-eval task pack.
# Run through `make demo`, which installs everything into .venv first. Scores of a random tiny model are noise:
# the point is the pipeline; the README shows the same pipeline on a real model.
set -euo pipefail
PY=${PY:-.venv/bin/python}
OUT=${OUT:-out/demo}
SDE="$PY -m sde_datagen.cli"
mkdir -p "$OUT"

echo "== 1. Export the ES-SDE and EW-SDE variants of masa, ed and ner (bundled data) =="
for task in masa ed ner; do
  $SDE data export --task "$task" --designs es-sde,ew-sde --out "$OUT/data/$task" --overwrite
done

echo
echo "== 2. What a design looks like: MASA in ES-SDE and EW-SDE, ED in the heuristic design =="
$SDE data show --task masa --design es-sde -n 1
$SDE data show --task masa --design ew-sde -n 1
$SDE data show --task ed --design heuristic -n 1

echo
echo "== 3. Train a LoRA adapter on MASA ES-SDE (tiny random-weight model, CPU, 40 steps) =="
$PY -m sde_train.tiny_model --out "$OUT/tiny-model"
$SDE train --model "$OUT/tiny-model" --dataset "$OUT/data/masa" --config first-nomi-lines-pu-text-none \
  --output "$OUT/adapters/masa-es-sde" --max-steps 40 --lr 2e-3 --max-length 1024

echo
echo "== 4. Evaluate it with the lm-eval task pack (20 test reviews) =="
$SDE eval --model hf --model_args "pretrained=$OUT/tiny-model,peft=$OUT/adapters/masa-es-sde" \
  --tasks sde_masa_id --limit 20 --batch_size 8 --gen_kwargs max_gen_toks=64 --output_path "$OUT/eval"

echo
echo "== Done. Where everything went: =="
echo "  datasets (datasets.load_dataset(DIR, VARIANT)): $(ls -d "$OUT"/data/* | tr '\n' ' ')"
echo "  tiny base model:  $OUT/tiny-model"
echo "  adapter + card:   $OUT/adapters/masa-es-sde (README.md, training_log.jsonl)"
echo "  lm-eval results:  $(find "$OUT/eval" -name 'results_*.json' | head -n 1)"
