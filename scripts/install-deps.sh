#!/usr/bin/env bash
# Installs what xbar needs to build and test, from Debian's packages, and nothing else.
# Safe to run again: it installs only what is missing. Run as root (or with sudo available).
#
#   build-essential  gcc, make
#   libopenblas-openmp-dev  CBLAS (OpenMP build: BLAS and our kernels share one thread pool) sgemm/dgemm: every convolution and linear layer is a GEMM
#   libcjson-dev     JSON: safetensors headers and every --json result
#   libsuitesparse-dev  CHOLMOD sparse Cholesky: the exact crossbar circuit solver
#   libcmocka-dev    the C unit-test framework
#   ngspice          the circuit reference the solver tests compare with
#   python3-numpy python3-scipy python3-torch   PyTorch reference tests and benchmarks (/usr/bin/python3)
#   time             /usr/bin/time for peak-memory figures in bench/
#   clang libclang-rt-14-dev   libFuzzer harnesses and sanitizer builds
set -euo pipefail
pkgs=(build-essential pkg-config libopenblas-openmp-dev libcjson-dev libsuitesparse-dev libcmocka-dev ngspice
      python3-numpy python3-scipy python3-torch time)
[ "${XB_FUZZ_DEPS:-0}" = 1 ] && pkgs+=(clang libclang-rt-14-dev)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then exit 0; fi
echo "install-deps: installing ${missing[*]}" >&2
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
