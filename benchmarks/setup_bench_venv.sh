#!/usr/bin/env bash
# Create .bench-venv with the reference implementation fastl2lir 0.11, which needs numpy<2.4.
# Usage: bash benchmarks/setup_bench_venv.sh [PYTHON]   (run from the repository root)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:-python3}
if [ ! -x .bench-venv/bin/python ]; then
    "$PY" -m venv .bench-venv
fi
.bench-venv/bin/python -m pip install -q --upgrade pip
.bench-venv/bin/python -m pip install -q -r benchmarks/requirements-fastl2lir.txt
.bench-venv/bin/python -c 'import fastl2lir, numpy; print("fastl2lir ready; numpy", numpy.__version__)'
