"""Encoding benchmark (issue 28): one subject's VC from a layer of N units, in bounded memory.

Prints the machine (CPU model, instruction set, LAPACK), the measured GEMM peak of this machine
(all cores, float32 and float64: the ceiling the GFLOP/s are quoted against), then encodes
``--voxels`` voxels (default 4,500) from ``--n-units`` units (default 1,000,000) with
``bids_decode.encoding.encode_voxels`` (k 500, alpha 100; 1,200 training and 50 test rows), in
a fresh process per dtype. The layer is generated chunk by chunk from a seeded RNG (nothing
held in memory: each pass over the layer makes its chunks again), as a features file is read.

Reported per dtype: wall time, and split into the selection pass, the gather passes and the
solves (the time spent generating chunks is measured and left out of each); GFLOP/s of the
selection GEMMs (``2 n_train n_units n_voxels``) and of the solves (per voxel its Gram
``(k+1)^2 n_train``, Cholesky ``(k+1)^3 / 3``, right-hand side and prediction), each against the
GEMM peak of the same dtype; and the worker's peak RSS (``VmHWM``) and its RSS before encoding.

Usage (from the repository root)::

    .venv/bin/python benchmarks/bench_encoding.py [--n-units 1000000 --voxels 4500 --mem 1024
                                                   --dtype float32 float64 --jobs 0]
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

N_TRAIN, N_TEST, K, ALPHA = 1200, 50, 500, 100.0

# One dtype in a fresh process: argv = repo, n_units, voxels, mem MiB, dtype, jobs, chunk.
WORKER = r"""
import json, sys, time
import numpy as np
sys.path.insert(0, sys.argv[1])
import bids_decode.encoding.streaming as st
n_units, n_vox, mem = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]) << 20
dtype, jobs, chunk = np.dtype(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7])
N_TRAIN, N_TEST = 1200, 50
gen = [0.0]

def chunks():  # as read from a features file, one block of units at a time
    for s in range(0, n_units, chunk):
        t0 = time.perf_counter()
        rng = np.random.default_rng([7, s])
        w = min(chunk, n_units - s)
        F = rng.standard_normal((N_TRAIN + N_TEST, w), dtype=np.float32)
        gen[0] += time.perf_counter() - t0
        yield s, s + w, F[:N_TRAIN], F[N_TRAIN:]

# voxels driven by 40 units of the first chunk, as VC voxels by a layer's units
rng = np.random.default_rng(3)
F0 = next(chunks())[2]
V = F0[:, rng.choice(F0.shape[1], 40, replace=False)] @ rng.standard_normal((40, n_vox))
V = (V * rng.uniform(0.05, 0.3, n_vox) + rng.standard_normal((N_TRAIN, n_vox))).astype(np.float64)
del F0
gen[0] = 0.0
phase = {}

def timed(name, fn):
    def run(*a, **kw):
        t0, g0 = time.perf_counter(), gen[0]
        out = fn(*a, **kw)
        phase[name] = phase.get(name, 0.0) + time.perf_counter() - t0 - (gen[0] - g0)
        phase[name + "_gen"] = phase.get(name + "_gen", 0.0) + gen[0] - g0
        return out
    return run

st.select_units = timed("selection", st.select_units)
st.gather_group = timed("gather", st.gather_group)
rss0 = int([l for l in open("/proc/self/status") if l.startswith("VmRSS")][0].split()[1]) * 1024
t0 = time.perf_counter()
fit = st.encode_voxels(chunks, V, n_units=500, alpha=100.0, dtype=dtype, n_jobs=jobs or None,
                       mem_bytes=mem)
total = time.perf_counter() - t0
assert fit.pred.shape == (N_TEST, n_vox) and np.isfinite(fit.pred).all()
hwm = int([l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1]) * 1024
groups = sum(1 for _ in range(0, n_vox, st.group_size(n_vox, 500, N_TRAIN, N_TEST,
             dtype.itemsize, mem, st.resolve_backend("cpu").n_threads(jobs or None))))
print(json.dumps({"total_s": total, "generate_s": gen[0], "phase": phase, "groups": groups,
                  "peak_rss": hwm, "rss_before": rss0}))
"""


def gemm_peak(dtype) -> float:
    """GFLOP/s of a large GEMM on all cores (numpy's BLAS), best of 5."""
    rng = np.random.default_rng(0)
    A = rng.standard_normal((4096, N_TRAIN)).astype(dtype)
    B = rng.standard_normal((N_TRAIN, 4096)).astype(dtype)
    A @ B
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        A @ B
        best = min(best, time.perf_counter() - t0)
    return 2 * 4096 * N_TRAIN * 4096 / best / 1e9


def machine() -> dict:
    from bids_decode.backends.cpuinfo import cpu_model, isa_info
    from bids_decode.backends.lapack import lapack_info

    return {"cpu": cpu_model(), "cores": len(os.sched_getaffinity(0)), **isa_info(),
            **lapack_info(), "load_average": os.getloadavg()}


def solve_flops(n_vox: int, k: int = K) -> float:
    m = k + 1
    return n_vox * (m * m * N_TRAIN + m**3 / 3 + 2 * m * m + 2 * m * N_TRAIN + 2 * k * N_TEST)


def run(args, dtype: str) -> dict:
    cmd = [sys.executable, "-c", WORKER, str(ROOT), str(args.n_units), str(args.voxels),
           str(args.mem), dtype, str(args.jobs), str(args.chunk)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n-units", type=int, default=1_000_000)
    p.add_argument("--voxels", type=int, default=4500)
    p.add_argument("--mem", type=int, default=1024, help="memory budget, MiB (mem_bytes)")
    p.add_argument("--dtype", nargs="+", default=["float32", "float64"])
    p.add_argument("--jobs", type=int, default=0, help="threads (0: all CPUs)")
    p.add_argument("--chunk", type=int, default=8192, help="units per chunk")
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args(argv)
    info = machine()
    print("machine:", json.dumps(info), flush=True)
    summary = {"machine": info, "args": vars(args), "runs": {}}
    for dtype in args.dtype:
        peak = gemm_peak(np.dtype(dtype))
        r = run(args, dtype)
        ph = r["phase"]
        solve_s = r["total_s"] - r["generate_s"] - ph["selection"] - ph.get("gather", 0.0)
        sel_gf = 2 * N_TRAIN * args.n_units * args.voxels / ph["selection"] / 1e9
        solve_gf = solve_flops(args.voxels) / solve_s / 1e9
        r.update(gemm_peak_gflops=peak, solve_s=solve_s, selection_gflops=sel_gf,
                 solve_gflops=solve_gf)
        summary["runs"][dtype] = r
        print(f"{dtype}: {args.voxels} voxels from {args.n_units} units, k {K}, "
              f"mem {args.mem} MiB, {r['groups']} voxel group(s)\n"
              f"  total {r['total_s']:.1f} s, of which generating chunks {r['generate_s']:.1f} s\n"
              f"  selection {ph['selection']:.1f} s: {sel_gf:.0f} GFLOP/s = "
              f"{sel_gf / peak:.0%} of the {dtype} GEMM peak ({peak:.0f} GFLOP/s, all cores)\n"
              f"  gather passes {ph.get('gather', 0.0):.1f} s; solves {solve_s:.1f} s: "
              f"{solve_gf:.0f} GFLOP/s = {solve_gf / peak:.0%} of the peak\n"
              f"  peak RSS {r['peak_rss'] / 2**30:.2f} GiB (before encoding "
              f"{r['rss_before'] / 2**30:.2f} GiB)", flush=True)
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
