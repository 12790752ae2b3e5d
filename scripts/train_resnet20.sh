#!/usr/bin/env bash
# The ResNet-20 CIFAR-10 recipes of docs/training.md, batch 128, standard augmentation, all cores.
#   scripts/train_resnet20.sh [OUT_DIR] [EPOCHS]      (defaults runs/resnet20; 164 epochs, 200 for cosine)
# RECIPE=he (default): He et al. 2016 -- SGD, momentum 0.9, lr 0.1 divided by 10 at 50% and 75% of
#   the epochs, weight decay 1e-4; 164 epochs = their 64k iterations.
# RECIPE=onecycle: SGD with Nesterov momentum, one-cycle learning rate peaking at 0.2, weight decay
#   5e-4 (the shorter recipe: 87.46% after 40 epochs, 88.69% after 100; docs/training.md).
# RECIPE=cosine: SGD with Nesterov momentum 0.9, learning rate 0.1 on a cosine down to 0 over all
#   epochs, weight decay 5e-4 (default 200 epochs).
# RECIPE=cutout: cosine plus Cutout 16 (DeVries & Taylor 2017) and label smoothing 0.1 (200 epochs;
#   90.08% on the project's copy of CIFAR-10, docs/training.md).
# SWA=K adds K epochs of stochastic weight averaging at the constant rate SWA_LR (default 0.01) after
#   the schedule (swa-weights.safetensors); SWA=K RESUME=1 extends a finished run that had none.
# Resume an interrupted run with the same command plus RESUME=1; THREADS=N picks the thread count.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/resnet20}
case "${RECIPE:-he}" in cosine|cutout) EPOCHS=${2:-200} ;; *) EPOCHS=${2:-164} ;; esac
case "${RECIPE:-he}" in
  he) recipe=(--optimizer sgd --momentum 0.9 --lr 0.1 --schedule step --weight-decay 1e-4) ;;
  onecycle) recipe=(--optimizer sgd --nesterov --momentum 0.9 --lr 0.2 --schedule onecycle --weight-decay 5e-4) ;;
  cosine) recipe=(--optimizer sgd --nesterov --momentum 0.9 --lr 0.1 --schedule cosine --weight-decay 5e-4) ;;
  cutout) recipe=(--optimizer sgd --nesterov --momentum 0.9 --lr 0.1 --schedule cosine --weight-decay 5e-4
                  --cutout 16 --label-smoothing 0.1) ;;
  *) echo "train_resnet20.sh: RECIPE=${RECIPE} is not a recipe. HINT: RECIPE=he, onecycle, cosine or cutout" >&2; exit 2 ;;
esac
extra=()
[ "${RESUME:-0}" = 1 ] && extra+=(--resume "$OUT/checkpoint.safetensors")
[ -n "${THREADS:-}" ] && extra+=(--threads "$THREADS")
[ -n "${SWA:-}" ] && extra+=(--swa-epochs "$SWA" --swa-lr "${SWA_LR:-0.01}")
make --no-print-directory -s deps all   # a fresh clone: install what is missing and build (no-op otherwise)
mkdir -p "$OUT"
build/xbar train --model resnet20 --epochs "$EPOCHS" --batch 128 "${recipe[@]}" --out "$OUT" --json \
  "${extra[@]}" | tee -a "$OUT/log.jsonl"
