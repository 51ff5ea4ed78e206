#!/usr/bin/env bash
# GPU check of the whole pipeline (run on a CUDA machine from the repository root):
# simulate -> participant with --device cuda and with --device cpu -> group; the per-unit
# accuracies of both devices must agree; then the CUDA tests of the test suite.
set -euo pipefail
W=$(mktemp -d)
python3 -m bids_decode simulate "$W/ds" --n-subjects 2 -q
F="$W/ds/stimuli/features_simulated.h5"
common=(--features "$F" --n-voxels 100 --roi VC LVC --skip-bids-validation -q)
for dev in cuda cpu; do
  t0=$SECONDS
  python3 -m bids_decode "$W/ds" "$W/$dev" participant --device "$dev" "${common[@]}" >/dev/null
  echo "participant --device $dev: $((SECONDS - t0)) s (2 subjects, 2 ROIs, 4 layers)"
done
python3 -m bids_decode "$W/ds" "$W/cuda" group -q | tail -3
python3 - "$W" <<'PY'
import sys, glob, h5py, numpy as np
w = sys.argv[1]
worst = 0.0
files = sorted(glob.glob(f"{w}/cuda/sub-*/func/*_decoding.h5"))
for f in files:
    with h5py.File(f) as a, h5py.File(f.replace("/cuda/", "/cpu/")) as b:
        for layer in a:
            if layer != "stimulus_name":
                d = np.nanmax(np.abs(a[layer]["accuracy"][()] - b[layer]["accuracy"][()]))
                worst = max(worst, float(d))
print(f"{len(files)} files: max |accuracy(cuda) - accuracy(cpu)| = {worst:.2e}")
print("GPU PIPELINE CHECK:", "PASS" if files and worst < 1e-4 else "FAIL")
PY
python3 -m pytest -q -p no:cacheprovider tests/test_decoding.py tests/test_features.py -k "cuda or gpu or device" 2>&1 | tail -3
