"""Thread scaling of the CPU decoder against what the machine itself allows (issue 17).

Two numbers from one run, each the best of ``--repeats``:

1. **The machine's ceiling**: a single-threaded float32 GEMM timed alone, then in two processes
   at once. On two real cores both finish in the time of one; on two hyperthreads of one core
   (a common 2-vCPU VM) each takes about twice as long, and no program can scale past that.
2. **The decoder**: ``predict_chunk`` (float32, the pipeline's path) on the same units with
   ``n_jobs=1`` and ``n_jobs=2``.

The decoder's efficiency is its speed-up divided by the machine's. Prints the CPU model,
instruction set and LAPACK first.

Usage (repository root)::

    .venv/bin/python benchmarks/bench_threads.py [--units 1024] [--repeats 3]
"""

from __future__ import annotations

import argparse
import pathlib
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

GEMM = """
import sys, time, numpy as np
from threadpoolctl import threadpool_limits
a = np.random.default_rng(0).random((2000, 2000), dtype=np.float32)
a @ a
time.sleep(max(0.0, float(sys.argv[1]) - time.time()))
with threadpool_limits(1):
    t = time.perf_counter()
    for _ in range(8):
        a @ a
    print(time.perf_counter() - t)
"""


def gemm_seconds(n_procs: int) -> float:
    """Wall time of the single-threaded GEMM loop when ``n_procs`` processes run it at once."""
    start = time.time() + 4.0  # every process has imported numpy by then
    procs = [subprocess.Popen([sys.executable, "-c", GEMM, str(start)], stdout=subprocess.PIPE,
                              text=True) for _ in range(n_procs)]
    return max(float(p.communicate()[0]) for p in procs)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--units", type=int, default=1024)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)

    import numpy as np

    from bids_decode.backends import cpu_info
    from bids_decode.decoding import predict_chunk, prepare_design

    info = cpu_info()
    print(f"CPU: {info['model']}; instruction set {info['host_isa']} (kernels "
          f"{info['kernel_isa']}); LAPACK {info.get('lapack')}; OpenBLAS {info.get('openblas')}")
    one = min(gemm_seconds(1) for _ in range(args.repeats))
    two = min(gemm_seconds(2) for _ in range(args.repeats))
    machine = 2 * one / two
    print(f"machine: 1-thread GEMM loop alone {one:.2f} s, two at once {two:.2f} s each -> "
          f"two threads give at most {machine:.2f}x one")

    rng = np.random.default_rng(0)
    n, p, u = 1200, 5000, args.units
    X = rng.standard_normal((n, p)).astype(np.float32)
    Y = (X[:, :50] @ rng.standard_normal((50, u)).astype(np.float32) * 0.1
         + rng.standard_normal((n, u))).astype(np.float32)
    Xt = rng.standard_normal((50, p)).astype(np.float32)
    design = prepare_design(X, 100.0, dtype=np.float32)
    predict_chunk(design, Y[:, :64], Xt, 500)  # load the kernels
    times = {1: np.inf, 2: np.inf}
    for _ in range(args.repeats):  # interleaved, so drifts in machine load hit both
        for j in (1, 2):
            t0 = time.perf_counter()
            predict_chunk(design, Y, Xt, 500, n_jobs=j)
            times[j] = min(times[j], time.perf_counter() - t0)
    dec = times[1] / times[2]
    print(f"decoder: {u} units (1,200 x 5,000, k = 500, float32): 1 thread {times[1]:.2f} s "
          f"({u / times[1]:.0f} units/s), 2 threads {times[2]:.2f} s ({u / times[2]:.0f} "
          f"units/s) -> {dec:.2f}x")
    print(f"decoder speed-up / machine ceiling: {dec / machine:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
