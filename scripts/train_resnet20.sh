#!/usr/bin/env bash
# The ResNet-20 CIFAR-10 recipe of docs/training.md: SGD with Nesterov momentum, one-cycle learning
# rate peaking at 0.2, weight decay 5e-4, batch 128, standard augmentation, all cores.
#   scripts/train_resnet20.sh [OUT_DIR] [EPOCHS]      (defaults runs/resnet20, 30)
# Resume an interrupted run with the same command plus RESUME=1.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/resnet20}
EPOCHS=${2:-30}
extra=()
[ "${RESUME:-0}" = 1 ] && extra=(--resume "$OUT/checkpoint.safetensors")
mkdir -p "$OUT"
build/xbar train --model resnet20 --epochs "$EPOCHS" --batch 128 --optimizer sgd --nesterov --momentum 0.9 \
  --lr 0.2 --schedule onecycle --weight-decay 5e-4 --out "$OUT" --json "${extra[@]}" | tee -a "$OUT/log.jsonl"
