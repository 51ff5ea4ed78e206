"""Decoder benchmark (issue 4): bids_decode vs fastl2lir 0.11, himalaya and sklearn.

Prints the machine (CPU model, instruction set, LAPACK), then a table and the ratios. The
synthetic problem: n_train 1200, n_test 50, 5,000 voxels, 500 selected, alpha 100.

1. fp32 GEMM peak of this machine (all cores), the ceiling quoted for GFLOP/s.
2. Selection: ours (``decode_units``) and fastl2lir 0.11 (in .bench-venv) decode the SAME
   ``--units`` units, float32 and float64, each in a fresh process per (side, dtype, threads):
   **cold** = the first call in that process (ours includes compiling its kernel unless
   numba's cache has it; both include first-touch costs), **warm** = the best of ``--repeats``
   further calls. On 1 thread and on all threads (BLAS/OpenMP/numba thread limits set in the
   child's environment, and ``n_jobs`` for ours): the ratio on all threads is per machine,
   the ratio on 1 thread is per core. Relative max difference of the predictions
   (``max|ours - ref| / max|ref|``).
3. No selection (``n_voxels=0``) on ``--nosel-units`` units vs himalaya's numpy solvers and
   sklearn's Ridge, the bias given to all as a penalised column of ones (0 = skip).
4. Peak RSS of a subprocess streaming ``--rss-units`` units through ``iter_decode`` (0 = skip;
   ``--rss-units 300000`` is the figure in benchmarks/README.md).

Usage (from the repository root): ``make bench`` (installs the ``bench`` extras and
.bench-venv first), or::

    bash benchmarks/setup_bench_venv.sh
    .venv/bin/python benchmarks/bench_decoder.py [--units 400 --repeats 2 --nosel-units 2000]
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

import numpy as np
from threadpoolctl import threadpool_limits

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bids_decode.decoding import decode_units  # noqa: E402

N_TRAIN, N_TEST, N_VOX, K, ALPHA = 1200, 50, 5000, 500, 100.0
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
               "NUMBA_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")

# One side, one dtype, in a fresh process: argv = data dir, dtype, threads, repeats, out file.
# Prints "cold <s>" for the first call and "warm <s>" for each further call.
FASTL2LIR_WORKER = """
import sys, time, numpy as np, fastl2lir
d, name, out = sys.argv[1], sys.argv[2], sys.argv[5]
threads, repeats = int(sys.argv[3]), int(sys.argv[4])
alpha, k = float(sys.argv[6]), int(sys.argv[7])
dt = np.dtype(name)
X, Y, Xt = (np.load(f"{d}/{n}.npy").astype(dt) for n in ("X", "Y", "Xt"))
for i in range(1 + repeats):
    t0 = time.perf_counter()
    pred = fastl2lir.FastL2LiR().fit(X, Y, alpha, k, dtype=dt).predict(Xt, dtype=dt)
    print("cold" if i == 0 else "warm", time.perf_counter() - t0, flush=True)
    if i == 0:
        np.save(out, pred)
"""

OURS_WORKER = """
import sys, time, numpy as np
d, name, out = sys.argv[1], sys.argv[2], sys.argv[5]
threads, repeats = int(sys.argv[3]), int(sys.argv[4])
alpha, k = float(sys.argv[6]), int(sys.argv[7])
sys.path.insert(0, sys.argv[8])
from bids_decode.decoding import decode_units
X, Y, Xt = (np.load(f"{d}/{n}.npy") for n in ("X", "Y", "Xt"))
for i in range(1 + repeats):
    t0 = time.perf_counter()
    pred = decode_units(X, Y, Xt, alpha, k, dtype=np.dtype(name), n_jobs=threads)
    print("cold" if i == 0 else "warm", time.perf_counter() - t0, flush=True)
    if i == 0:
        np.save(out, pred)
"""

RSS_SCRIPT = """
import sys, time, numpy as np
sys.path.insert(0, sys.argv[1])
from bids_decode.decoding import prepare_design, iter_decode
n_units, chunk = int(sys.argv[2]), 10000
rng = np.random.default_rng(1)
X = rng.standard_normal((1200 + 50, 5000)).astype(np.float32)
def chunks():  # as read from an HDF5 features file, one block of units at a time
    for s in range(0, n_units, chunk):
        yield np.random.default_rng(s).standard_normal((1200, min(chunk, n_units - s)),
                                                       dtype=np.float32)
t0 = time.perf_counter()
design = prepare_design(X[:1200], 100.0, dtype=np.float32)
out = np.empty((50, n_units), dtype=np.float32)
s = 0
for pred in iter_decode(design, chunks(), X[1200:], 500):
    out[:, s:s + pred.shape[1]] = pred
    s += pred.shape[1]
assert s == n_units and np.isfinite(out).all()
# VmHWM is this process image's own peak (ru_maxrss would carry the parent's over exec)
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1]
print(int(hwm) * 1024, time.perf_counter() - t0)
"""


def make_data(n_units, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((N_TRAIN + N_TEST, N_VOX)).astype(np.float32)
    Y = rng.standard_normal((N_TRAIN, n_units)).astype(np.float32)
    # half the units carry a signal from a few voxels, as decodable units do
    W = np.zeros((N_VOX, n_units), dtype=np.float32)
    for u in range(0, n_units, 2):
        W[rng.choice(N_VOX, 20, replace=False), u] = rng.standard_normal(20)
    Y += X[:N_TRAIN] @ W * 0.2
    return X[:N_TRAIN], Y, X[N_TRAIN:]


def rel_max_diff(a, b):
    return float(np.abs(np.asarray(a, np.float64) - b).max() / np.abs(b).max())


def gemm_peak():
    rng = np.random.default_rng(0)
    A = rng.standard_normal((N_VOX, N_TRAIN)).astype(np.float32)
    B = rng.standard_normal((N_TRAIN, 4000)).astype(np.float32)
    A @ B
    best = min(_timeit(lambda: A @ B) for _ in range(5))
    return 2 * N_VOX * N_TRAIN * 4000 / best / 1e9


def _timeit(f):
    t0 = time.perf_counter()
    f()
    return time.perf_counter() - t0


def machine_info() -> dict:
    """CPU model, cores, the instruction set the kernels target, and the CPU kernel's LAPACK."""
    from bids_decode.backends.lapack import lapack_provider

    info = {"cpu": "unknown", "cores": len(os.sched_getaffinity(0)), "isa": "unknown"}
    try:
        text = pathlib.Path("/proc/cpuinfo").read_text()
        info["cpu"] = next(ln.split(":", 1)[1].strip() for ln in text.splitlines()
                           if ln.startswith("model name"))
        flags = set(next(ln.split(":", 1)[1].split() for ln in text.splitlines()
                         if ln.startswith("flags")))
        info["isa"] = next((f for f in ("avx512f", "avx2", "avx", "sse4_2") if f in flags),
                           "baseline")
    except (OSError, StopIteration):
        pass
    try:
        import llvmlite.binding as llvm

        info["numba_cpu"] = os.environ.get("NUMBA_CPU_NAME") or llvm.get_host_cpu_name()
    except Exception:  # noqa: BLE001 - informative only
        info["numba_cpu"] = "unknown"
    info["lapack"] = lapack_provider()
    info["mkl_instructions"] = os.environ.get("MKL_ENABLE_INSTRUCTIONS", "(auto)")
    from threadpoolctl import threadpool_info

    info["blas"] = sorted({f"{p['internal_api']} {p.get('version') or ''}".strip()
                           for p in threadpool_info() if p["user_api"] == "blas"})
    return info


def run_worker(side, dtype, threads, data_dir, repeats, python):
    """Decode the units of ``data_dir`` in a fresh process; return (cold s, warm s, pred)."""
    script = OURS_WORKER if side == "ours" else FASTL2LIR_WORKER
    env = dict(os.environ, **{v: str(threads) for v in THREAD_VARS})
    out = f"{data_dir}/pred_{side}_{dtype}_{threads}.npy"
    res = subprocess.run([python, "-c", script, data_dir, dtype, str(threads), str(repeats),
                          out, str(ALPHA), str(K), str(ROOT)], env=env, capture_output=True,
                         text=True)
    if res.returncode:
        raise SystemExit(f"the {side} worker ({python}) failed:\n{res.stderr[-2000:]}")
    times = [ln.split() for ln in res.stdout.splitlines() if ln.startswith(("cold", "warm"))]
    cold = float(times[0][1])
    warm = min((float(t) for k, t in times[1:]), default=float("nan"))
    return cold, warm, np.load(out)


def bench_nosel(n_units, rows):
    import sklearn.linear_model
    from himalaya.backend import set_backend
    from himalaya.kernel_ridge import KernelRidge
    from himalaya.ridge import Ridge as HRidge

    set_backend("numpy")
    X, Y, Xt = make_data(n_units, seed=2)
    X, Y, Xt = (a.astype(np.float64) for a in (X, Y, Xt))
    Xb = np.hstack([X, np.ones((N_TRAIN, 1))])
    Xtb = np.hstack([Xt, np.ones((N_TEST, 1))])
    t0 = time.perf_counter()
    ours = decode_units(X, Y, Xt, ALPHA, 0, dtype=np.float64)
    t_ours = time.perf_counter() - t0
    rows.append(("no selection, ours float64", n_units, n_units / t_ours, 1.0, 0.0))
    others = {
        "himalaya Ridge(svd)": lambda: HRidge(alpha=ALPHA, fit_intercept=False,
                                              solver="svd").fit(Xb, Y).predict(Xtb),
        "himalaya KernelRidge(eigenvalues)": lambda: KernelRidge(
            alpha=ALPHA, kernel="linear", solver="eigenvalues").fit(Xb, Y).predict(Xtb),
        "sklearn Ridge(auto)": lambda: sklearn.linear_model.Ridge(
            alpha=ALPHA, fit_intercept=False).fit(Xb, Y).predict(Xtb),
    }
    for name, f in others.items():
        t0 = time.perf_counter()
        pred = f()
        dt = time.perf_counter() - t0
        rows.append((name, n_units, n_units / dt, t_ours and dt / t_ours,
                     rel_max_diff(ours, np.asarray(pred))))
        print(rows[-1], flush=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--units", type=int, default=400, help="units decoded by both sides")
    ap.add_argument("--repeats", type=int, default=2, help="warm calls after the cold one")
    ap.add_argument("--threads", type=int, nargs="+", default=None,
                    help="thread counts to run (default: 1 and all cores)")
    ap.add_argument("--nosel-units", type=int, default=2000)
    ap.add_argument("--rss-units", type=int, default=0)
    ap.add_argument("--fl-python", default=str(ROOT / ".bench-venv/bin/python"))
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    if not pathlib.Path(args.fl_python).exists():
        raise SystemExit(f"No fastl2lir venv at {args.fl_python}: run "
                         "'bash benchmarks/setup_bench_venv.sh' (or 'make bench') first.")
    info = machine_info()
    n_cores = info["cores"]
    threads = args.threads or sorted({1, n_cores})
    print(f"CPU: {info['cpu']}; {n_cores} cores available; instruction set {info['isa']} "
          f"(numba targets {info['numba_cpu']}, MKL_ENABLE_INSTRUCTIONS "
          f"{info['mkl_instructions']}); LAPACK of the CPU kernel: {info['lapack']} "
          f"(BIDS_DECODE_LAPACK=scipy|mkl); numpy BLAS: {', '.join(info['blas'])}; "
          f"load average {os.getloadavg()[0]:.1f}", flush=True)
    peak = gemm_peak()
    print(f"fp32 GEMM peak (all cores): {peak:.0f} GFLOP/s", flush=True)
    flop_per_unit = (K + 1) ** 3 / 3 + 2 * N_TRAIN * N_VOX + 4 * (K + 1) ** 2
    X, Y, Xt = make_data(args.units)
    runs = {}  # (side, dtype, threads) -> (cold, warm, pred)
    with tempfile.TemporaryDirectory() as d:
        for name, arr in (("X", X), ("Y", Y), ("Xt", Xt)):
            np.save(f"{d}/{name}.npy", arr)
        for t in threads:
            for dtype in ("float32", "float64"):
                for side, python in (("fastl2lir", args.fl_python), ("ours", sys.executable)):
                    runs[side, dtype, t] = run_worker(side, dtype, t, d, args.repeats, python)
                    cold, warm, _ = runs[side, dtype, t]
                    print(f"{side:<9} {dtype} {t} thread(s): cold {cold:.2f} s, warm {warm:.2f} s"
                          f" ({args.units} units)", flush=True)

    rows = []
    print()
    print(f"{args.units} units, the same for both sides; units/s = units / time of the call")
    print(f"{'dtype':<8} {'threads':>7} {'fastl2lir cold/warm u/s':>24} "
          f"{'ours cold/warm u/s':>20} {'ratio cold':>10} {'ratio warm':>10} {'rel diff':>9}")
    summary = {"machine": info, "gemm_peak_gflops": peak, "units": args.units, "runs": {}}
    for t in threads:
        for dtype in ("float32", "float64"):
            fc, fw, fp = runs["fastl2lir", dtype, t]
            oc, ow, op = runs["ours", dtype, t]
            diff = rel_max_diff(op, fp)
            u = args.units
            print(f"{dtype:<8} {t:>7} {u / fc:>11.0f} / {u / fw:>10.0f} {u / oc:>9.0f} / "
                  f"{u / ow:>8.0f} {fc / oc:>9.1f}x {fw / ow:>9.1f}x {diff:>9.1e}")
            summary["runs"][f"{dtype}_{t}threads"] = {
                "fastl2lir_cold_s": fc, "fastl2lir_warm_s": fw, "ours_cold_s": oc,
                "ours_warm_s": ow, "ratio_cold": fc / oc, "ratio_warm": fw / ow,
                "rel_max_diff": diff, "ours_warm_gflops": u * flop_per_unit / ow / 1e9}
    print()
    for dtype in ("float32", "float64"):
        for label, t in (("per core (1 thread each)", 1), ("per machine (all threads each)",
                                                            n_cores)):
            r = summary["runs"].get(f"{dtype}_{t}threads")
            if r:
                print(f"{dtype} {label}: ours is {r['ratio_warm']:.1f}x faster warm, "
                      f"{r['ratio_cold']:.1f}x cold; ours {r['ours_warm_gflops']:.0f} GFLOP/s "
                      f"= {r['ours_warm_gflops'] / peak:.0%} of the fp32 GEMM peak")

    if args.nosel_units:
        bench_nosel(args.nosel_units, rows)
        print(f"\n{'no selection':<48} {'units':>8} {'units/s':>9} {'ratio':>8} "
              f"{'rel max diff':>13}")
        for what, units, ups, ratio, diff in rows:
            print(f"{what:<48} {units:>8} {ups:>9.0f} {ratio:>7.1f}x {diff:>13.1e}")
    if args.rss_units:
        res = subprocess.run([sys.executable, "-c", RSS_SCRIPT, str(ROOT), str(args.rss_units)],
                             capture_output=True, text=True, check=True)
        rss, secs = (float(v) for v in res.stdout.split())
        summary["rss"] = {"units": args.rss_units, "peak_rss_gib": rss / 2**30, "seconds": secs}
        print(f"{args.rss_units} units streamed: peak RSS {rss / 2**30:.2f} GiB in {secs:.0f} s")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    with threadpool_limits(None):
        sys.exit(main())
