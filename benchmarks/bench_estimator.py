"""The speed acceptance of issue 17: the public estimator against fastl2lir 0.11, fresh processes.

Problem (as the issue states it): 4,000 units, a 1,200 x 5,000 float32 training matrix, 500
voxels per unit, alpha 100, predictions for 50 test samples. Each side runs in its own fresh
process (so ours pays any kernel loading or compiling, as a user's first call does):

- ``VoxelSelectionRidge(alpha=100, n_voxels=500, dtype="float32").fit(X, Y).predict(Xt)``;
- ``fastl2lir.FastL2LiR().fit(X, Y, 100, 500, dtype=float32).predict(Xt, dtype=float32)``
  in ``.bench-venv`` (numpy < 2.4).

``--paths default avx2`` runs ours twice: on this machine's own path, and on the path an AMD
EPYC (AVX2, no AVX-512) takes (``NUMBA_CPU_NAME=haswell MKL_ENABLE_INSTRUCTIONS=AVX2
MKL_CBWR=AVX2 BIDS_DECODE_LAPACK=scipy OPENBLAS_CORETYPE=Haswell``); fastl2lir runs once per
path with the same numpy environment. Prints the CPU model, instruction set and LAPACK,
then per path: both times, the ratio, and the share of units whose predictions agree with
fastl2lir's within ``--tol`` (max |ours - ref| over the test samples / max |ref| of that unit).
Ours is also timed on a second call in the same process (warm), for reference.

Usage: ``.venv/bin/python benchmarks/bench_estimator.py [--units 4000] [--paths default avx2]``
"""

from __future__ import annotations

import argparse
import os
import pathlib
import subprocess
import sys
import tempfile

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_decoder import machine_info, make_data  # noqa: E402

AVX2_ENV = {"NUMBA_CPU_NAME": "haswell", "MKL_ENABLE_INSTRUCTIONS": "AVX2", "MKL_CBWR": "AVX2",
            "BIDS_DECODE_LAPACK": "scipy", "OPENBLAS_CORETYPE": "Haswell"}

OURS = """
import sys, time
t0 = time.perf_counter()
import numpy as np
sys.path.insert(0, sys.argv[2])
from bids_decode.decoding import VoxelSelectionRidge
from bids_decode.backends.lapack import lapack_provider
d = sys.argv[1]
X, Y, Xt = (np.load(f"{d}/{n}.npy") for n in ("X", "Y", "Xt"))
t1 = time.perf_counter()
pred = VoxelSelectionRidge(alpha=100.0, n_voxels=500, dtype="float32").fit(X, Y).predict(Xt)
t2 = time.perf_counter()
np.save(f"{d}/ours.npy", pred)
t3 = time.perf_counter()
VoxelSelectionRidge(alpha=100.0, n_voxels=500, dtype="float32").fit(X, Y).predict(Xt)
print("warm", time.perf_counter() - t3)
print("lapack", lapack_provider())
import llvmlite.binding as ll, os
print("numba_cpu", os.environ.get("NUMBA_CPU_NAME") or ll.get_host_cpu_name())
print("import", t1 - t0)
print("fit_predict", t2 - t1)
"""

FASTL2LIR = """
import sys, time
import numpy as np, fastl2lir
d = sys.argv[1]
X, Y, Xt = (np.load(f"{d}/{n}.npy") for n in ("X", "Y", "Xt"))
t1 = time.perf_counter()
model = fastl2lir.FastL2LiR().fit(X, Y, 100.0, 500, dtype=np.float32)
pred = model.predict(Xt, dtype=np.float32)
t2 = time.perf_counter()
np.save(f"{d}/ref.npy", pred)
print("fit_predict", t2 - t1)
"""


def run(python, script, d, env):
    res = subprocess.run([python, "-c", script, d, str(ROOT)], env=env, capture_output=True,
                         text=True)
    if res.returncode:
        raise SystemExit(f"{python} failed:\n{res.stderr[-3000:]}")
    return dict(ln.split(None, 1) for ln in res.stdout.splitlines() if " " in ln)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--units", type=int, default=4000)
    ap.add_argument("--paths", nargs="+", default=["default", "avx2"],
                    choices=["default", "avx2"])
    ap.add_argument("--tol", type=float, default=1e-3)
    ap.add_argument("--fl-python", default=str(ROOT / ".bench-venv/bin/python"))
    args = ap.parse_args(argv)
    if not pathlib.Path(args.fl_python).exists():
        raise SystemExit(f"No fastl2lir venv at {args.fl_python}: run "
                         "'bash benchmarks/setup_bench_venv.sh' (or 'make bench') first.")
    X, Y, Xt = make_data(args.units)
    results = []
    with tempfile.TemporaryDirectory() as d:
        for name, arr in (("X", X), ("Y", Y), ("Xt", Xt)):
            np.save(f"{d}/{name}.npy", arr)
        for path in args.paths:
            env = dict(os.environ, **(AVX2_ENV if path == "avx2" else {}))
            info = machine_info()
            ref = run(args.fl_python, FASTL2LIR, d, env)
            ours = run(sys.executable, OURS, d, env)
            print(f"[{path}] CPU: {info['cpu']}; {info['cores']} cores; instruction set "
                  f"{info['isa']}; kernels compiled for {ours['numba_cpu']}; LAPACK "
                  f"{ours['lapack']}; MKL_ENABLE_INSTRUCTIONS "
                  f"{env.get('MKL_ENABLE_INSTRUCTIONS', '(auto)')}; numpy BLAS "
                  f"{', '.join(info['blas'])}; load {os.getloadavg()[0]:.1f}", flush=True)
            t_ref, t_ours = float(ref["fit_predict"]), float(ours["fit_predict"])
            p, r = np.load(f"{d}/ours.npy").astype(np.float64), np.load(f"{d}/ref.npy")
            per_unit = np.abs(p - r).max(axis=0) / np.maximum(np.abs(r).max(axis=0), 1e-30)
            agree = float(np.mean(per_unit <= args.tol))
            results.append((path, t_ref, t_ours, float(ours["warm"]), agree,
                            float(np.median(per_unit)), ours["lapack"]))
            print(f"[{path}] fastl2lir {t_ref:.1f} s; ours {t_ours:.2f} s (fresh process; "
                  f"import {float(ours['import']):.1f} s not counted; a second call "
                  f"{float(ours['warm']):.2f} s); {t_ref / t_ours:.1f}x; "
                  f"{agree:.1%} of units within {args.tol:g} (median {np.median(per_unit):.1e})",
                  flush=True)
    print(f"\n{args.units} units, 1200 x 5000, k 500, alpha 100, float32, fresh processes")
    print(f"{'path':<8} {'LAPACK':<7} {'fastl2lir s':>11} {'ours s':>7} {'ratio':>6} "
          f"{'2nd call s':>10} {'ratio':>6} {'agree':>7}")
    for path, t_ref, t_ours, t_warm, agree, _, lapack in results:
        print(f"{path:<8} {lapack:<7} {t_ref:>11.1f} {t_ours:>7.2f} {t_ref / t_ours:>5.1f}x "
              f"{t_warm:>10.2f} {t_ref / t_warm:>5.1f}x {agree:>7.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
