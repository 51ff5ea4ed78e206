#!/usr/bin/env bash
# GPU check of the decoder at VGG19 scale; meant for a lent GPU machine (its image has torch,
# numpy, scipy, numba, scikit-learn, threadpoolctl). Run from the repository root:
#   bash benchmarks/gpu_check.sh            # writes $OUT/gpu_check.{log,json} when OUT is set
set -uo pipefail
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp}
PY=${PYTHON:-python3}
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv || true
"$PY" -c 'import torch, numpy, scipy, numba, sklearn; print("torch", torch.__version__, "numpy", numpy.__version__, "scipy", scipy.__version__, "numba", numba.__version__, "cuda", torch.cuda.is_available())'
"$PY" benchmarks/gpu_check.py --device cuda --json "$OUT/gpu_check.json" "$@" 2>&1 | tee "$OUT/gpu_check.log"
exit "${PIPESTATUS[0]}"  # the check's status (1 when the devices disagree), not tee's
