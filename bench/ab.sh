#!/bin/bash
# ab.sh -- interleaved A/B of two xbar builds on this (noisy) machine: runs OLD and NEW alternately
# N times and prints each run and the medians.  Read the medians; one absolute time means little.
#
#   bench/ab.sh OLD_XBAR NEW_XBAR [MODEL=resnet20] [MODE=train|infer] [N=5] [THREADS=1]
#   e.g. git worktree add /tmp/xb-old HEAD~1 && make -C /tmp/xb-old && bench/ab.sh /tmp/xb-old/build/xbar build/xbar
# train: `xbar train --steps ${STEPS:-10}` images/s; infer: `xbar eval --limit ${LIMIT:-2560}` images/s.
set -euo pipefail
[ $# -ge 2 ] || { sed -n '2,8p' "$0"; exit 2; }
OLD=$1 NEW=$2 MODEL=${3:-resnet20} MODE=${4:-train} N=${5:-5} TH=${6:-1}
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
run() {
    if [ "$MODE" = train ]; then
        OMP_NUM_THREADS=$TH "$1" train --model "$MODEL" --steps "${STEPS:-10}" --batch 128 --threads "$TH" \
            --out "$OUT/w" --quiet --json | tail -1 | python3 -c 'import json,sys; print(json.load(sys.stdin)["train_images_per_s"])'
    else
        [ -f "$OUT/w/weights.safetensors" ] || "$1" train --model "$MODEL" --steps 1 --batch 16 --out "$OUT/w" --quiet --json >/dev/null
        OMP_NUM_THREADS=$TH "$1" eval --model "$MODEL" --weights "$OUT/w/weights.safetensors" --limit "${LIMIT:-2560}" \
            --batch 128 --threads "$TH" --quiet --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["images_per_s"])'
    fi
}
for i in $(seq 1 "$N"); do
    a=$(run "$OLD"); b=$(run "$NEW")
    echo "pair $i: old $a new $b img/s"
    echo "$a $b" >> "$OUT/pairs"
done
python3 - "$OUT/pairs" <<'PY'
import statistics, sys
rows = [tuple(map(float, l.split())) for l in open(sys.argv[1])]
a, b = statistics.median(r[0] for r in rows), statistics.median(r[1] for r in rows)
print(f"median old {a:.1f} new {b:.1f} img/s: new/old {b / a:.3f} ({sum(r[1] > r[0] for r in rows)}/{len(rows)} pairs faster)")
PY
