#!/usr/bin/env bash
# `make demo`: train a small CIFAR-10 network for a few minutes on the data it finds, then evaluate it.
# Data: $XBAR_DATA, else ../shared/data/cifar10 (xbar prints how to get CIFAR-10 if neither exists).
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${MODEL:-resnet20}
EPOCHS=${EPOCHS:-1}
OUT=${OUT:-runs/demo}
data=()
[ -n "${DATA:-}" ] && data=(--data "$DATA")
echo "== xbar demo: $MODEL, $EPOCHS epochs (one-cycle schedule), then test accuracy =="
build/xbar train --model "$MODEL" "${data[@]}" --epochs "$EPOCHS" --batch 128 --lr 0.2 --schedule onecycle \
  --eval-limit 2000 --out "$OUT"
build/xbar eval --model "$MODEL" --weights "$OUT/weights.safetensors" "${data[@]}"
