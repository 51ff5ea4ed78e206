"""Decoder benchmark (issue 4): bids_decode vs fastl2lir 0.11, himalaya and sklearn.

One process; prints a table of ratios. The synthetic problem: n_train 1200, n_test 50,
5,000 voxels, 500 selected, alpha 100.

1. fp32 GEMM peak of this machine (all cores), the ceiling quoted for GFLOP/s.
2. Selection: ``decode_units`` (float32 and float64) on ``--units`` units vs fastl2lir 0.11
   (run in .bench-venv through a subprocess, arrays exchanged as .npy files) on the first
   ``--fl-units`` units: units/s, ratio, relative max difference of the predictions.
3. No selection (``n_voxels=0``) on ``--nosel-units`` units vs himalaya's numpy solvers and
   sklearn's Ridge, the bias given to all as a penalised column of ones.
4. Peak RSS of a subprocess streaming ``--rss-units`` units through ``iter_decode``.

Usage (from the repository root; create the reference venv once first)::

    bash benchmarks/setup_bench_venv.sh
    .venv/bin/python benchmarks/bench_decoder.py
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

FASTL2LIR_SCRIPT = """
import sys, time, numpy as np, fastl2lir
d = sys.argv[1]
X, Y, Xt = (np.load(f"{d}/{n}.npy") for n in ("X", "Y", "Xt"))
alpha, k = float(sys.argv[2]), int(sys.argv[3])
for name, dt in (("float64", np.float64), ("float32", np.float32)):
    t0 = time.perf_counter()
    model = fastl2lir.FastL2LiR().fit(X.astype(dt), Y.astype(dt), alpha, k, dtype=dt)
    pred = model.predict(Xt.astype(dt), dtype=dt)
    np.save(f"{d}/fl_{name}.npy", pred)
    print(name, time.perf_counter() - t0, flush=True)
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


def run_fastl2lir(X, Y, Xt, python):
    with tempfile.TemporaryDirectory() as d:
        for name, arr in (("X", X), ("Y", Y), ("Xt", Xt)):
            np.save(f"{d}/{name}.npy", arr)
        res = subprocess.run([python, "-c", FASTL2LIR_SCRIPT, d, str(ALPHA), str(K)],
                             capture_output=True, text=True, check=True)
        times = dict(line.split() for line in res.stdout.splitlines())
        return {name: (np.load(f"{d}/fl_{name}.npy"), float(t)) for name, t in times.items()}


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
    ap.add_argument("--units", type=int, default=10000)
    ap.add_argument("--fl-units", type=int, default=1000)
    ap.add_argument("--nosel-units", type=int, default=50000)
    ap.add_argument("--rss-units", type=int, default=300000)
    ap.add_argument("--repeats", type=int, default=3,
                    help="interleaved repeats of fastl2lir and ours (best time of each)")
    ap.add_argument("--fl-python", default=str(ROOT / ".bench-venv/bin/python"))
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    print(f"cpus: {len(os.sched_getaffinity(0))}, load average: {os.getloadavg()}", flush=True)

    from bids_decode._backends import lapack_provider

    summary_lapack = lapack_provider()
    print(f"LAPACK of the CPU kernel: {summary_lapack} (BIDS_DECODE_LAPACK=scipy|mkl picks one)",
          flush=True)
    peak = gemm_peak()
    print(f"fp32 GEMM peak: {peak:.0f} GFLOP/s", flush=True)
    X, Y, Xt = make_data(args.units)
    m = args.fl_units
    flop_per_unit = (K + 1) ** 3 / 3 + 2 * N_TRAIN * N_VOX + 4 * (K + 1) ** 2
    for dt in (np.float32, np.float64):
        decode_units(X, Y[:, :64], Xt, ALPHA, K, dtype=dt)  # compile the kernels
    # Repeats interleave fastl2lir and ours, so that a slow phase of a shared machine hits
    # both; each side's best time (as timeit does) gives the ratio, the per-repeat ratios
    # show the spread.
    fl_times = {"float64": [], "float32": []}
    our_times = {"float32": [], "float64": []}
    preds = {}
    for rep in range(args.repeats):
        fl = run_fastl2lir(X, Y[:, :m], Xt, args.fl_python)
        for name, (_, t) in fl.items():
            fl_times[name].append(t / m)
        for name, dt in (("float32", np.float32), ("float64", np.float64)):
            t0 = time.perf_counter()
            preds[name] = decode_units(X, Y, Xt, ALPHA, K, dtype=dt)
            our_times[name].append((time.perf_counter() - t0) / args.units)
        print(f"repeat {rep + 1}: fastl2lir " + ", ".join(
            f"{n_} {1 / fl_times[n_][-1]:.0f}" for n_ in fl_times) + " units/s; ours " + ", ".join(
            f"{n_} {1 / our_times[n_][-1]:.0f}" for n_ in our_times) + " units/s; ratio float32 "
            f"{fl_times['float32'][-1] / our_times['float32'][-1]:.1f}x", flush=True)
    fl_ups = {name: 1 / min(t) for name, t in fl_times.items()}
    print("fastl2lir units/s (best of repeats)", fl_ups, flush=True)

    rows = []  # (what, units, units/s, speed-up, rel max diff)
    summary = {"gemm_peak_gflops": peak, "fastl2lir_units_per_s": fl_ups,
               "lapack": summary_lapack, "repeats": args.repeats,
               "per_repeat_s_per_unit": {"fastl2lir": fl_times, "ours": our_times}}
    for name in ("float32", "float64"):
        ups = 1 / min(our_times[name])
        diff_same = rel_max_diff(preds[name][:, :m], fl[name][0])
        diff_64 = rel_max_diff(preds[name][:, :m], fl["float64"][0])
        gflops = ups * flop_per_unit / 1e9
        ratios = [f / o for f, o in zip(fl_times[name], our_times[name], strict=True)]
        rows.append((f"selection, ours {name} vs fastl2lir {name}", args.units, ups,
                     ups / fl_ups[name], diff_same))
        if name != "float64":
            rows.append((f"selection, ours {name} vs fastl2lir float64", args.units, ups,
                         ups / fl_ups["float64"], diff_64))
        summary[f"ours_{name}"] = {"units_per_s": ups, "gflops": gflops,
                                   "fraction_of_fp32_gemm_peak": gflops / peak,
                                   "rel_max_diff_same_dtype": diff_same,
                                   "rel_max_diff_vs_fl64": diff_64,
                                   "per_repeat_ratio_same_dtype": ratios}
        print(name, f"{ups:.0f} units/s, {gflops:.0f} GFLOP/s; per-repeat ratios "
              + ", ".join(f"{r:.1f}x" for r in ratios), flush=True)

    if args.nosel_units:
        bench_nosel(args.nosel_units, rows)
    if args.rss_units:
        res = subprocess.run([sys.executable, "-c", RSS_SCRIPT, str(ROOT), str(args.rss_units)],
                             capture_output=True, text=True, check=True)
        rss, secs = (float(v) for v in res.stdout.split())
        summary["rss"] = {"units": args.rss_units, "peak_rss_gib": rss / 2**30, "seconds": secs}

    print()
    print(f"{'what':<48} {'units':>8} {'units/s':>9} {'ratio':>8} {'rel max diff':>13}")
    for what, units, ups, ratio, diff in rows:
        print(f"{what:<48} {units:>8} {ups:>9.0f} {ratio:>7.1f}x {diff:>13.1e}")
    print(f"{'fastl2lir 0.11 float64 / float32':<48} {m:>8} "
          f"{fl_ups['float64']:>9.0f} / {fl_ups['float32']:.0f} units/s")
    for name in ("float32", "float64"):
        r = summary[f"ours_{name}"]["per_repeat_ratio_same_dtype"]
        best = summary[f"ours_{name}"]["units_per_s"] / fl_ups[name]
        print(f"ours {name} / fastl2lir {name}, each repeat: "
              + ", ".join(f"{x:.1f}x" for x in r) + f" (best times: {best:.1f}x)")
    for name in ("float32", "float64"):
        s = summary[f"ours_{name}"]
        print(f"ours {name}: {s['gflops']:.0f} GFLOP/s = {s['fraction_of_fp32_gemm_peak']:.0%} "
              f"of the fp32 GEMM peak ({peak:.0f} GFLOP/s)")
    if "rss" in summary:
        r = summary["rss"]
        print(f"{r['units']} units streamed: peak RSS {r['peak_rss_gib']:.2f} GiB "
              f"in {r['seconds']:.0f} s")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    with threadpool_limits(None):
        sys.exit(main())
