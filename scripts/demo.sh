#!/usr/bin/env bash
# The main job on a small scale: export designs of all three tasks from the bundled data and show samples.
# Run through `make demo`, which installs everything into .venv first.
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
echo "== Done. Dataset repositories (load with datasets.load_dataset(DIR, VARIANT)): =="
ls -d "$OUT"/data/*
