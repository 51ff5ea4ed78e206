"""Per-step cost of the CPU decoder, per unit and per core (issue 17, item 6).

One thread, the pipeline's float32 path, on ``--units`` units of the reference problem
(1,200 training samples x 5,000 voxels, 500 selected, alpha 100, 50 test samples):

- scores: the correlation GEMM on the unit grid (``backends.blockwise``), GFLOP/s;
- selection: float32 top-k refined to the float64 ranking (``cpu_kernels.select_refined``);
- right-hand sides (``selection._rhs_selected``);
- inside the compiled kernel, from its cycle counters: the gather of the selected Gram blocks,
  the Cholesky factorisation (GFLOP/s at m^3/3 per unit) and the solve + predictions.

GFLOP/s are set against the measured single-thread peak of a float32 GEMM (2,000^3). Prints
the CPU model, instruction set and LAPACK first. Run it once per code path, e.g. the AVX2 one::

    .venv/bin/python benchmarks/bench_steps.py
    NUMBA_CPU_NAME=haswell BIDS_DECODE_LAPACK=scipy MKL_ENABLE_INSTRUCTIONS=AVX2 \\
        .venv/bin/python benchmarks/bench_steps.py
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

N_TRAIN, N_TEST, N_VOX, K, ALPHA = 1200, 50, 5000, 500, 100.0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--units", type=int, default=1024)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)

    import numpy as np
    from threadpoolctl import threadpool_limits

    from bids_decode import backends, decoding
    from bids_decode.backends import cpu_kernels
    from bids_decode.decoding import selection

    info = backends.cpu_info()
    print(f"CPU: {info['model']}; instruction set {info['host_isa']} (kernels "
          f"{info['kernel_isa']}); LAPACK {info.get('lapack')}; OpenBLAS {info.get('openblas')}")
    rng = np.random.default_rng(0)
    u = args.units
    X = rng.standard_normal((N_TRAIN, N_VOX)).astype(np.float32)
    Y = (X[:, :50] @ rng.standard_normal((50, u)).astype(np.float32) * 0.1
         + rng.standard_normal((N_TRAIN, u))).astype(np.float32)
    Xt = rng.standard_normal((N_TEST, N_VOX)).astype(np.float32)
    design = decoding.prepare_design(X, ALPHA, dtype=np.float32)
    xz32 = design.xz.astype(np.float32)
    xzt64 = np.ascontiguousarray(design.xz.T)
    xt = np.ascontiguousarray(Xt.T)
    gram = design.gram
    m = K + 1
    rate = cpu_kernels.cycles_per_second()
    best: dict[str, float] = {}

    def keep(name, seconds):
        best[name] = min(best.get(name, np.inf), seconds)

    with threadpool_limits(1):
        a = rng.random((2000, 2000), dtype=np.float32)
        a @ a
        t0 = time.perf_counter()
        for _ in range(3):
            a @ a
        peak = 3 * 2 * 2000**3 / (time.perf_counter() - t0) / 1e9
        decoding.predict_chunk(design, Y[:, :64], Xt, K, n_jobs=1)  # load the kernels
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            ct = backends.blockwise(lambda yt: yt @ xz32, Y, N_VOX, np.float32)
            keep("scores (GEMM)", time.perf_counter() - t0)
            yt = np.ascontiguousarray(Y.T, dtype=np.float64)
            half = (N_TRAIN + 2) * np.finfo(np.float32).eps * np.sqrt((yt**2).sum(axis=1))
            t0 = time.perf_counter()
            index, _ = cpu_kernels.select_refined(np.abs(ct), K, half, yt, xzt64)
            keep("selection", time.perf_counter() - t0)
            t0 = time.perf_counter()
            rhs = selection._rhs_selected(design, ct, yt.sum(axis=1), index).astype(np.float32)
            keep("right-hand sides", time.perf_counter() - t0)
            clocks = np.zeros(4, dtype=np.int64)
            t0 = time.perf_counter()
            cpu_kernels.solve_selected_numba(gram, index, rhs, 1e4, xt, clocks=clocks)
            kernel = time.perf_counter() - t0
            for name, c in zip(("gather", "potrf", "solve", "predict"), clocks):
                keep(name, c / rate)
            keep("kernel, other", kernel - clocks.sum() / rate)
    total = sum(best.values())
    flops = {"scores (GEMM)": 2 * N_TRAIN * N_VOX * u, "potrf": u * m**3 / 3}
    print(f"single-thread float32 GEMM peak: {peak:.0f} GFLOP/s; {u} units, best of "
          f"{args.repeats}; total {1e3 * total / u:.3f} ms per unit per core "
          f"({u / total:.0f} units/s per core)")
    print(f"{'step':<18} {'us/unit':>9} {'share':>6} {'GFLOP/s':>8} {'of peak':>8}")
    for name, sec in best.items():
        gf = f"{flops[name] / sec / 1e9:8.1f} {flops[name] / sec / 1e9 / peak:8.0%}" \
            if name in flops else ""
        print(f"{name:<18} {1e6 * sec / u:9.1f} {sec / total:6.0%} {gf}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
