#!/usr/bin/env bash
# Regenerate the README's small-scale results: Spirograph (ResNet-18, penalty off and at 1e-2) and
# CIFAR-10 from real images (ResNet-18, penalty off and at 0.1), each over SEEDS, beside a
# random-initialisation encoder and raw pixels; then the curves and preview PNGs under docs/ and
# the table (benchmarks/results_table.py writes it into README.md between its markers).
#
#   bash benchmarks/results.sh            # needs "cifar10" in dataset-paths.json
#
# Checkpoints and evaluation outputs go to $OUT (default results/, ignored by git). Environment
# variables scale it: SEEDS, SPIRO_PROPORTION, SPIRO_EPOCHS, CIFAR_PROPORTION, CIFAR_EPOCHS, DRAWS,
# CIFAR_INVARIANCE_IMAGES;
# DATASETS="spirograph" (or "cifar10") runs one half; the table then shows what $OUT holds.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
OUT=${OUT:-results}
SEEDS=${SEEDS:-"0 1 2"}
SPIRO_PROPORTION=${SPIRO_PROPORTION:-0.01}
SPIRO_EPOCHS=${SPIRO_EPOCHS:-2}
CIFAR_PROPORTION=${CIFAR_PROPORTION:-0.02}
CIFAR_EPOCHS=${CIFAR_EPOCHS:-2}
DRAWS=${DRAWS:-10}
DOCS=${DOCS:-docs}
DATASETS=${DATASETS:-"spirograph cifar10"}
# Encoding dominates a CIFAR-10 evaluation on the CPU (the 10,000 test images, ~60 images/s
# here): the invariance measure takes 200 of them.
CIFAR_INVARIANCE="--invariance-images ${CIFAR_INVARIANCE_IMAGES:-200}"
mkdir -p "$OUT" "$DOCS"

train() {  # name, flags...
  local name=$1; shift
  echo "== $name" >&2
  "$PY" invariance_by_gradient.py --arch resnet18 --batch-size 64 --test-freq 0 --device cpu \
    --checkpoint-dir "$OUT" --filename "$name" --overwrite "$@" > "$OUT/$name.train.log" 2>&1
}
evaluate() {  # script, checkpoint name, output name, flags...
  local script=$1 name=$2 out=$3; shift 3
  "$PY" "$script" --load-from "$OUT/$name.pth" --invariance "$DRAWS" --device cpu "$@" \
    > "$OUT/$out.eval.log" 2>&1
  tail -n 1 "$OUT/$out.eval.log" > "$OUT/$out.eval.json"
}

first=$(echo $SEEDS | cut -d' ' -f1)
if [[ " $DATASETS " == *" spirograph "* ]]; then
for seed in $SEEDS; do
  for gp in 0 0.01; do
    name=spirograph-gp$gp-seed$seed
    train "$name" --dataset spirograph --proportion "$SPIRO_PROPORTION" --num-epochs "$SPIRO_EPOCHS" \
      --base-lr 6 --gp-upper-limit 1000 --lambda-gp "$gp" --seed "$seed"
    evaluate lbfgs_linear_clf_spirograph.py "$name" "$name" --seed "$seed"
  done
  base=spirograph-gp0-seed$seed
  evaluate lbfgs_linear_clf_spirograph.py "$base" "spirograph-random-seed$seed" --seed "$seed" --random-init
  evaluate lbfgs_linear_clf_spirograph.py "$base" "spirograph-pixels-seed$seed" --seed "$seed" --raw-pixels
done
"$PY" -m utils.plot "$OUT/spirograph-gp0-seed$first.metrics.jsonl" \
  "$OUT/spirograph-gp0.01-seed$first.metrics.jsonl" --labels "λ = 0" "λ = 1e-2" \
  -o "$DOCS/curves-spirograph.png"
"$PY" invariance_by_gradient.py --dataset spirograph --proportion "$SPIRO_PROPORTION" --batch-size 64 \
  --preview 4 --checkpoint-dir "$DOCS" --filename spirograph
fi

if [[ " $DATASETS " == *" cifar10 "* ]]; then

for seed in $SEEDS; do
  for gp in 0 0.1; do
    name=cifar10-gp$gp-seed$seed
    train "$name" --dataset cifar10 --proportion "$CIFAR_PROPORTION" --num-epochs "$CIFAR_EPOCHS" \
      --lambda-gp "$gp" --seed "$seed"
    evaluate lbfgs_linear_clf.py "$name" "$name" --seed "$seed" $CIFAR_INVARIANCE
  done
  base=cifar10-gp0-seed$seed
  evaluate lbfgs_linear_clf.py "$base" "cifar10-random-seed$seed" --seed "$seed" --random-init \
    $CIFAR_INVARIANCE
  evaluate lbfgs_linear_clf.py "$base" "cifar10-pixels-seed$seed" --seed "$seed" --raw-pixels \
    $CIFAR_INVARIANCE
done

"$PY" -m utils.plot "$OUT/cifar10-gp0-seed$first.metrics.jsonl" \
  "$OUT/cifar10-gp0.1-seed$first.metrics.jsonl" --labels "λ = 0" "λ = 0.1" \
  -o "$DOCS/curves-cifar10.png"
"$PY" invariance_by_gradient.py --dataset cifar10 --proportion "$CIFAR_PROPORTION" --batch-size 64 \
  --preview 4 --checkpoint-dir "$DOCS" --filename cifar10
fi
"$PY" -m benchmarks.results_table "$OUT" --readme "${README:-README.md}"
