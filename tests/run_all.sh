#!/usr/bin/env bash
# Runs every test binary in BUILD/tests (cmocka) and the Python reference tests (tests/ref_*.py, run
# with Debian's /usr/bin/python3 that has torch, numpy and scipy), then prints one summary line.
set -u
BUILD=${1:-build}
PY=${PY:-/usr/bin/python3}
export XBAR_BIN="$PWD/$BUILD/xbar"
pass=0; fail=0; failed=()
t0=$(date +%s)
for t in "$BUILD"/tests/test_*; do
  [ -x "$t" ] || continue
  name=$(basename "$t")
  start=$(date +%s.%N)
  out=$("$t" 2>&1); rc=$?
  p=$(grep -aoE '^\[  PASSED  \] [0-9]+' <<<"$out" | awk '{s+=$NF} END {print s+0}')
  f=$(grep -aoE '^\[  FAILED  \] [0-9]+' <<<"$out" | awk '{s+=$NF} END {print s+0}')
  p=${p:-0}; f=${f:-0}
  if [ $rc -ne 0 ] && [ "$f" = 0 ]; then f=1; fi
  pass=$((pass + p)); fail=$((fail + f))
  printf '%-28s %4d passed %3d failed  (%.1fs)\n' "$name" "$p" "$f" "$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN{print b-a}')"
  if [ "$f" != 0 ]; then failed+=("$name"); echo "$out" | tail -40; fi
done
if [ "${XB_SANITIZE:-0}" != 1 ]; then
  for t in tests/ref_*.py; do
    [ -f "$t" ] || continue
    name=$(basename "$t")
    start=$(date +%s.%N)
    out=$("$PY" "$t" 2>&1); rc=$?
    line=$(grep -aE '^[a-z_]*:? ?[0-9]+ passed, [0-9]+ failed' <<<"$out" | tail -1)
    p=$(grep -oE '[0-9]+ passed' <<<"$line" | grep -oE '[0-9]+'); f=$(grep -oE '[0-9]+ failed' <<<"$line" | grep -oE '[0-9]+')
    p=${p:-0}; f=${f:-0}
    if [ $rc -ne 0 ] && [ "$f" = 0 ]; then f=1; fi
    pass=$((pass + p)); fail=$((fail + f))
    printf '%-28s %4d passed %3d failed  (%.1fs)\n' "$name" "$p" "$f" "$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN{print b-a}')"
    if [ "$f" != 0 ]; then failed+=("$name"); echo "$out" | tail -40; fi
  done
fi
echo "total time $(( $(date +%s) - t0 )) s"
[ ${#failed[@]} -gt 0 ] && echo "failing: ${failed[*]}"
echo "$pass passed, $fail failed"
[ "$fail" = 0 ] && [ "$pass" -gt 0 ]
