"""Time and memory of the per-unit permutation test (bids_decode.evaluation.permutation).

Streams ``--units`` units in chunks of ``--chunk`` (as the participant level does), each chunk
with random decoded and true values of ``--images`` test images, through one
:class:`~bids_decode.evaluation.permutation.PermutationTest` with ``--permutations``
permutations; then the
p-values, BH q-values and max-statistic p-values of the whole layer. Prints wall time (the data
generation excluded), units per second and the peak resident memory of the process.

    python benchmarks/bench_permutation.py --units 1000000 --permutations 1000 --threads 2
"""

from __future__ import annotations

import argparse
import resource
import sys
import time

import numpy as np


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--units", type=int, default=1_000_000)
    ap.add_argument("--permutations", type=int, default=1000)
    ap.add_argument("--images", type=int, default=50)
    ap.add_argument("--chunk", type=int, default=65536, help="units per participant chunk")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)

    from bids_decode.evaluation.permutation import PermutationTest
    from bids_decode.evaluation.pvalues import fdr_bh, maxstat_pvalues, permutation_pvalues

    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    test = PermutationTest(args.images, args.permutations, seed=0, device=args.device,
                           n_jobs=args.threads)
    test.update(*np.random.default_rng(0).standard_normal((2, args.images, 8)))  # compile
    rng = np.random.default_rng(1)
    stat = np.empty(args.units)
    count = np.empty(args.units, dtype=np.int32)
    t_test = 0.0
    for a in range(0, args.units, args.chunk):
        b = min(args.units, a + args.chunk)
        true = rng.standard_normal((args.images, b - a))
        pred = 0.3 * true + rng.standard_normal((args.images, b - a))
        t0 = time.perf_counter()
        stat[a:b], count[a:b] = test.update(pred, true)
        t_test += time.perf_counter() - t0
    t0 = time.perf_counter()
    p = permutation_pvalues(count, args.permutations)
    q = fdr_bh(p)
    fwer = maxstat_pvalues(stat, test.max_null)
    t_final = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    n = args.units
    print(f"units {n}, permutations {args.permutations}, images {args.images}, "
          f"chunk {args.chunk}, threads {args.threads}, device {args.device}")
    print(f"permutation test: {t_test:.1f} s ({n / t_test:,.0f} units/s); "
          f"p, BH q and max-statistic p: {t_final:.2f} s")
    print(f"peak RSS {rss:.0f} MiB (at start {rss0:.0f} MiB); "
          f"decodable (q < .05): {np.mean(q < 0.05):.3f}, FWER p < .05: {np.mean(fwer < 0.05):.3f}")
    if n < 1_000_000:
        scale = 1_000_000 / n
        print(f"EXTRAPOLATED to 1,000,000 units (linear in units): "
              f"{(t_test + t_final) * scale:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
