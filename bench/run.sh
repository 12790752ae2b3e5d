#!/usr/bin/env bash
# `make bench`: the engine against PyTorch (bench/run.py), then the solver against SciPy when present.
set -euo pipefail
cd "$(dirname "$0")/.."
/usr/bin/python3 bench/run.py "$@"
if [ -f bench/bench_solver.py ]; then /usr/bin/python3 bench/bench_solver.py; fi
