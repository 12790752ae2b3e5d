#!/usr/bin/env bash
# tests/fuzz/run.sh -- builds the libFuzzer harnesses of xbar's file parsers with clang
# (-fsanitize=fuzzer,address,undefined), seeds their corpora with small valid files, and runs each one
# after the other for FUZZ_SECONDS seconds.  `make fuzz` runs it.  See docs/fuzzing.md.
#
#   bash tests/fuzz/run.sh                    # all harnesses: npy safetensors cifar ini quant hw
#   FUZZ_SECONDS=300 bash tests/fuzz/run.sh npy safetensors
#   build/fuzz/fuzz_npy fuzz-corpus/crashes/npy/crash-...    # replay one input
#
# Knobs: FUZZ_SECONDS (default 60, per harness), FUZZ_BUILD (build/fuzz), FUZZ_CORPUS (fuzz-corpus),
#        FUZZ_CC (clang), FUZZ_ARGS (extra libFuzzer flags).
# Layout: binaries in $FUZZ_BUILD; the growing corpus of each harness in $FUZZ_CORPUS/NAME (kept between
# runs: fuzzing resumes where it stopped); crashing inputs in $FUZZ_CORPUS/crashes/NAME; the log of the
# last run in $FUZZ_CORPUS/logs/NAME.log.  Exit status 1 when any harness found a crash.
set -euo pipefail
cd "$(dirname "$0")/../.."

SECONDS_EACH=${FUZZ_SECONDS:-60}
B=${FUZZ_BUILD:-build/fuzz}
C=${FUZZ_CORPUS:-fuzz-corpus}
FCC=${FUZZ_CC:-clang}
TARGETS=("$@")
[ ${#TARGETS[@]} -eq 0 ] && TARGETS=(npy safetensors cifar ini quant hw)

# --- toolchain ------------------------------------------------------------------------------------
probe() { echo 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n) { return 0; }' |
          "$FCC" -x c - -fsanitize=fuzzer,address,undefined -o "$B/.probe" >/dev/null 2>&1; }
mkdir -p "$B"
if ! command -v "$FCC" >/dev/null 2>&1 || ! probe; then
  echo "fuzz: $FCC with libFuzzer not available; installing clang and libclang-rt-14-dev" >&2
  XB_FUZZ_DEPS=1 bash scripts/install-deps.sh
  probe || { echo "fuzz: $FCC -fsanitize=fuzzer still fails. HINT: apt-get install clang libclang-rt-14-dev" >&2; exit 2; }
fi
rm -f "$B/.probe"
bash scripts/embed-configs.sh configs/models/*.cfg > "$B/zoo_data.c"   # the model library's zoo (quant harness)

# --- build ----------------------------------------------------------------------------------------
# No -fopenmp: the batcher's pragma is ignored, so runs are single-threaded and reproducible.
FLAGS=(-std=c11 -D_GNU_SOURCE -g -O1 -fno-omit-frame-pointer -fsanitize=fuzzer,address,undefined
       -fno-sanitize-recover=undefined -Wall -Wextra -Wno-unused-parameter -Iinclude -Isrc -I/usr/include/cjson)
CORE=(src/core/status.c src/core/tensor.c src/core/rng.c src/core/io_util.c)
declare -A SRCS=(
  [npy]="src/core/npy.c"
  [safetensors]="src/core/safetensors.c"
  [cifar]="src/data/cifar.c"
  [ini]="src/cfg/ini.c"
  [quant]="src/quant/*.c src/nn/*.c src/cfg/ini.c src/core/*.c src/data/*.c $B/zoo_data.c"
  [hw]="src/xbar/*.c src/energy/*.c src/quant/*.c src/prune/*.c src/nn/*.c src/cfg/ini.c src/core/*.c src/data/*.c $B/zoo_data.c"
)
declare -A MAXLEN=([npy]=4096 [safetensors]=8192 [cifar]=16384 [ini]=4096 [quant]=4096 [hw]=4096)
# the quant harness links the model (kernels, BLAS); the others need only their parser and src/core
BLAS_INC=$(ls -d /usr/include/*/openblas-openmp 2>/dev/null | head -1)
BLAS_LIB=$(ls -d /usr/lib/*/openblas-openmp 2>/dev/null | head -1)
declare -A EXTRA=([quant]="-I$BLAS_INC -L$BLAS_LIB -Wl,-rpath,$BLAS_LIB -lopenblas -lcholmod -lklu -I/usr/include/suitesparse")
EXTRA[hw]=${EXTRA[quant]}

build() {
  local t=$1 src=${SRCS[$1]}
  for f in $(ls $src 2>/dev/null || echo "$src"); do
    if [ ! -f "$f" ]; then echo "fuzz: skipping $t: $f does not exist yet" >&2; return 1; fi
  done
  echo "fuzz: building $B/fuzz_$t" >&2
  # shellcheck disable=SC2086
  if [ "$t" = quant ] || [ "$t" = hw ]; then
    src=$(ls $src)
    # shellcheck disable=SC2086
    "$FCC" "${FLAGS[@]}" -Wno-missing-prototypes "tests/fuzz/fuzz_$t.c" $src ${EXTRA[$t]} -lcjson -lm -o "$B/fuzz_$t"
    return
  fi
  "$FCC" "${FLAGS[@]}" "tests/fuzz/fuzz_$t.c" $src "${CORE[@]}" -lcjson -lm -o "$B/fuzz_$t"
}

# --- seeds ----------------------------------------------------------------------------------------
S="$B/seeds"
rm -rf "$S"
mkdir -p "$S"/{npy,safetensors,cifar,ini,quant,hw}
cp configs/hw/*.cfg "$S/hw/"   # the presets seed the hardware config harness
cc -std=c11 -D_GNU_SOURCE -O1 -Iinclude -Isrc -I/usr/include/cjson tests/fuzz/gen_seeds.c src/core/npy.c \
   src/core/safetensors.c "${CORE[@]}" -lcjson -lm -o "$B/gen_seeds"
"$B/gen_seeds" "$S"
i=0
for f in configs/models/*.cfg tests/*.cfg docs/model-cfg.md; do
  [ -f "$f" ] || continue
  if [ "${f##*.}" = md ]; then   # the ```ini blocks of the docs
    awk '/^```ini/{on=1; next} /^```/{on=0} on' "$f" > "$S/ini/doc-$i.cfg"
  else
    cp "$f" "$S/ini/seed-$i.cfg"
  fi
  i=$((i + 1))
done

# quantization configs: the ```ini blocks of docs/quantization.md and a few written here
awk '/^```ini/{on=1; next} /^```/{on=0} on' docs/quantization.md > "$S/quant/doc.cfg"
printf '[quantize]\nweight = ternary-asym\nact = pact\nact_bits = 3\nact_clip = 2\n' > "$S/quant/a.cfg"
printf '[quantize]\nweight_bits = 4\nfirst_bits = 8\nlast_bits = 0\n[quantize c2.weight]\nweight = dorefa\n' > "$S/quant/b.cfg"
printf '[quantize r2.output]\nact = ternary\n[quantize fc.weight]\nweight = binary\nweight_scale = tensor\n' > "$S/quant/c.cfg"

# --- run ------------------------------------------------------------------------------------------
status=0
summary=()
for t in "${TARGETS[@]}"; do
  if [ -z "${SRCS[$t]+x}" ]; then echo "fuzz: unknown harness '$t' (have: ${!SRCS[*]})" >&2; exit 2; fi
  build "$t" || { summary+=("$t: skipped (sources missing)"); continue; }
  mkdir -p "$C/$t" "$C/crashes/$t" "$C/logs"
  dict=()
  [ -f "tests/fuzz/$t.dict" ] && dict=(-dict="tests/fuzz/$t.dict")
  echo "fuzz: running fuzz_$t for ${SECONDS_EACH}s (log: $C/logs/$t.log)" >&2
  set +e
  # shellcheck disable=SC2086
  "$B/fuzz_$t" "$C/$t" "$S/$t" "${dict[@]}" -max_total_time="$SECONDS_EACH" -max_len="${MAXLEN[$t]}" \
      -timeout=20 -rss_limit_mb=4096 -print_final_stats=1 -artifact_prefix="$C/crashes/$t/" ${FUZZ_ARGS:-} \
      > "$C/logs/$t.log" 2>&1
  rc=$?
  set -e
  runs=$(grep -aoE 'stat::number_of_executed_units: *[0-9]+' "$C/logs/$t.log" | grep -oE '[0-9]+$' || true)
  eps=$(grep -aoE 'stat::average_exec_per_sec: *[0-9]+' "$C/logs/$t.log" | grep -oE '[0-9]+$' || true)
  cov=$(grep -aoE 'cov: [0-9]+ ft: [0-9]+' "$C/logs/$t.log" | tail -1 || true)
  ncrash=$(find "$C/crashes/$t" -type f | wc -l)
  line="$t: ${runs:-?} executions (${eps:-?}/s), $cov, corpus $(find "$C/$t" -type f | wc -l) files, crash files $ncrash"
  if [ $rc -ne 0 ]; then
    status=1
    line="$line -- FAILED (rc $rc): see $C/logs/$t.log"
    grep -aE 'ERROR|invariant|SUMMARY' "$C/logs/$t.log" | head -5 >&2 || true
  fi
  summary+=("$line")
done
echo "fuzz summary (${SECONDS_EACH}s each):"
printf '  %s\n' "${summary[@]}"
exit $status
