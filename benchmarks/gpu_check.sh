#!/usr/bin/env bash
# GPU check of the decoder at VGG19 scale, then of the encoding model on one layer
# (gpu_check_encoding.py: 4,500 voxels, 131,072 units, CPU vs device); meant for a lent GPU
# machine (its image has torch, numpy, scipy, numba, scikit-learn, threadpoolctl). Run from the
# repository root:
#   bash benchmarks/gpu_check.sh            # writes $OUT/gpu_check{,_encoding}.{log,json}
#   SKIP_ENCODING=1 bash benchmarks/gpu_check.sh   # the decoder only
set -uo pipefail
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp}
PY=${PYTHON:-python3}
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv || true
"$PY" -c 'import torch, numpy, scipy, numba, sklearn; print("torch", torch.__version__, "numpy", numpy.__version__, "scipy", scipy.__version__, "numba", numba.__version__, "cuda", torch.cuda.is_available())'
"$PY" benchmarks/gpu_check.py --device cuda --json "$OUT/gpu_check.json" "$@" 2>&1 | tee "$OUT/gpu_check.log"
status=${PIPESTATUS[0]}  # the check's status (1 when the devices disagree), not tee's
if [ -z "${SKIP_ENCODING:-}" ]; then
  "$PY" benchmarks/gpu_check_encoding.py --device cuda --json "$OUT/gpu_check_encoding.json" 2>&1 | tee "$OUT/gpu_check_encoding.log"
  enc_status=${PIPESTATUS[0]}
  [ "$status" -eq 0 ] && status=$enc_status
fi
exit "$status"
