"""GPU check of the voxel-selection decoder at VGG19 scale (run by benchmarks/gpu_check.sh).

Synthetic problem as in bench_decoder.py (n_train 1200, n_test 50, 5,000 voxels, 500 selected,
alpha 100), float32 selection on a torch device:

1. tunes the torch path (factorisation, gather sub-batch) on a few thousand units;
2. times ``iter_decode`` on ``--units`` units and projects the time for 14,861,288 units
   (every VGG19 unit);
3. compares the device's predictions with the CPU kernel (float32) and a float64 CPU
   reference on a subset of units, with explicit limits (:data:`THRESHOLDS`; NaN masks must
   match).

Prints a table last and exits 1 when a comparison is over its limit; writes the numbers as
JSON to ``--json`` when given.
Usage: python benchmarks/gpu_check.py [--device cuda] [--units 131072] [--smoke]
"""

from __future__ import annotations

import argparse
import importlib
import json
import pathlib
import sys
import time
import types

import numpy as np

VGG19_UNITS = 14_861_288
ROOT = pathlib.Path(__file__).resolve().parents[1]


def import_decoding():
    """Import bids_decode.decoding without the package __init__ (whose imports the device
    image may lack)."""
    pkg = types.ModuleType("bids_decode")
    pkg.__path__ = [str(ROOT / "bids_decode")]
    sys.modules.setdefault("bids_decode", pkg)
    return importlib.import_module("bids_decode.decoding")


def sync(device):
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed_decode(dec, design, Y, Xt, k, batch_size, device):
    sync(device)
    t0 = time.perf_counter()
    out = np.concatenate(list(dec.iter_decode(design, [Y], Xt, k, batch_size=batch_size)), axis=1)
    sync(device)
    return out, time.perf_counter() - t0


#: the largest relative difference each comparison may show (measured: about 2e-6 in float32,
#: 6e-15 in float64); a larger one, or NaN where the other side has a number, fails the check
THRESHOLDS = {"rel_max_diff_gpu32_vs_cpu32": 1e-5, "rel_max_diff_gpu32_vs_cpu64": 1e-5,
              "rel_max_diff_cpu32_vs_cpu64": 1e-5, "rel_max_diff_gpu64_vs_cpu64": 1e-9}


def rel_max_diff(a, b):
    """``max|a - b| / max|b|`` over entries finite in both; inf if the NaN masks differ."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or not np.array_equal(np.isfinite(a), np.isfinite(b)):
        return float("inf")
    ok = np.isfinite(b)
    if not ok.any():
        return float("inf")
    return float(np.abs(a[ok] - b[ok]).max() / np.abs(b[ok]).max())


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--units", type=int, default=131072)
    ap.add_argument("--batch-size", type=int, default=16384)
    ap.add_argument("--compare-units", type=int, default=512)
    ap.add_argument("--budget-s", type=float, default=300.0, help="stop tuning/timing past this")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, to test the script")
    ap.add_argument("--json", default=None)
    ap.add_argument("--profile", type=int, default=0, metavar="UNITS",
                    help="also profile one iter_decode call on UNITS units (torch.profiler)")
    ap.add_argument("--grid", default="torch:256:64,torch:1024:64,blocked:256:64,blocked:1024:64",
                    help="tuning grid: comma-separated cholesky:sub_batch:block")
    args = ap.parse_args(argv)
    t_start = time.perf_counter()

    import torch

    dec = import_decoding()
    backends = sys.modules["bids_decode.backends.torch_kernels"]
    n, n_test, p, k, alpha = 1200, 50, 5000, 500, 100.0
    tune_units = 8192
    if args.smoke:
        n, n_test, p, k = 120, 10, 300, 30
        args.units, args.batch_size, args.compare_units, tune_units = 2000, 512, 64, 256
    info = {"device": args.device, "torch": torch.__version__}
    if args.device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name(0)
        torch.backends.cuda.matmul.allow_tf32 = False  # float32 means float32
    print("setup", info, flush=True)

    rng = np.random.default_rng(0)
    X = rng.standard_normal((n + n_test, p)).astype(np.float32)
    Xtr, Xt = X[:n], X[n:]
    # units: a random mix of a few voxels plus noise, float32 as read from a features file
    gen = torch.Generator().manual_seed(0)
    Y = torch.randn((n, args.units), generator=gen).numpy()
    Y[:, ::2] += Xtr[:, :40] @ rng.standard_normal((40, 1)).astype(np.float32)

    t0 = time.perf_counter()
    design = dec.prepare_design(Xtr, alpha, dtype=np.float32, device=args.device)
    design.backend.arrays(design)  # the design's tensors on the device
    sync(args.device)
    info["prepare_s"] = time.perf_counter() - t0

    # 1. tune on tune_units units (after a warm-up)
    timed_decode(dec, design, Y[:, :256], Xt, k, 256, args.device)
    tuning = []
    for item in args.grid.split(","):
        chol, sub, block = item.split(":")
        if time.perf_counter() - t_start > args.budget_s / 3:
            break
        backends.TORCH_DEFAULTS.update(cholesky=chol, sub_batch=int(sub), block=int(block))
        try:
            _, dt = timed_decode(dec, design, Y[:, :tune_units], Xt, k, tune_units, args.device)
        except torch.OutOfMemoryError as err:  # pragma: no cover - device dependent
            print("OOM", item, err, flush=True)
            torch.cuda.empty_cache()
            continue
        tuning.append({"cholesky": chol, "sub_batch": int(sub), "block": int(block),
                       "units_per_s": tune_units / dt})
        print("tune", tuning[-1], flush=True)
    best = max(tuning, key=lambda r: r["units_per_s"])
    backends.TORCH_DEFAULTS.update(cholesky=best["cholesky"], sub_batch=best["sub_batch"],
                                   block=best["block"])
    info["tuning"] = tuning
    info["best"] = best

    # 2. throughput on --units units (fewer if the tuned rate says they would not fit the budget)
    left = args.budget_s - (time.perf_counter() - t_start) - 60
    units = int(min(args.units, max(tune_units, best["units_per_s"] * left / 2)))
    pred, dt = timed_decode(dec, design, Y[:, :units], Xt, k, args.batch_size, args.device)
    ups = units / dt
    info.update(units=units, seconds=dt, units_per_s=ups,
                vgg19_projected_s=VGG19_UNITS / ups)
    flop = units * ((k + 1) ** 3 / 3 + 2 * n * p + 2 * (k + 1) ** 2)
    info["gflops"] = flop / dt / 1e9
    if args.device.startswith("cuda"):
        info["max_mem_gib"] = torch.cuda.max_memory_allocated() / 2**30
    print("throughput", {k_: info[k_] for k_ in ("units", "seconds", "units_per_s",
                                                 "vgg19_projected_s", "gflops")}, flush=True)

    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA]
                                         if args.device.startswith("cuda") else [])
        with profile(activities=acts) as prof:
            timed_decode(dec, design, Y[:, :args.profile], Xt, k, args.profile, args.device)
        key = "cuda_time_total" if args.device.startswith("cuda") else "cpu_time_total"
        print(prof.key_averages().table(sort_by=key, row_limit=18, max_name_column_width=40),
              flush=True)

    # 3. agreement with the CPU kernel (float32) and a float64 CPU reference
    m = args.compare_units
    cpu32 = dec.predict_chunk(dec.prepare_design(Xtr, alpha, dtype=np.float32), Y[:, :m], Xt, k)
    cpu64 = dec.predict_chunk(dec.prepare_design(Xtr, alpha, dtype=np.float64), Y[:, :m], Xt, k)
    info["rel_max_diff_gpu32_vs_cpu32"] = rel_max_diff(pred[:, :m], cpu32)
    info["rel_max_diff_gpu32_vs_cpu64"] = rel_max_diff(pred[:, :m], cpu64)
    info["rel_max_diff_cpu32_vs_cpu64"] = rel_max_diff(cpu32, cpu64)
    design64 = dec.prepare_design(Xtr, alpha, dtype=np.float64, device=args.device)
    g64, dt64 = timed_decode(dec, design64, Y[:, :m], Xt, k, m, args.device)
    info["rel_max_diff_gpu64_vs_cpu64"] = rel_max_diff(g64, cpu64)
    info["total_s"] = time.perf_counter() - t_start

    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(info, indent=2))
    print()
    print(f"device: {info.get('gpu', args.device)}   torch {info['torch']}")
    print(f"best torch path: cholesky={best['cholesky']} sub_batch={best['sub_batch']} "
          f"block={best['block']}")
    print(f"{'units':>10} {'seconds':>9} {'units/s':>10} {'GFLOP/s':>9} "
          f"{'VGG19 (14.86M) projected':>26}")
    print(f"{units:>10} {dt:>9.2f} {ups:>10.0f} {info['gflops']:>9.0f} "
          f"{info['vgg19_projected_s'] / 60:>22.1f} min")
    failed = []
    for key, limit in THRESHOLDS.items():
        ok = info[key] <= limit
        failed += [] if ok else [key]
        print(f"{key:<32} {info[key]:.2e}  ({m} units; limit {limit:.0e}) "
              f"{'ok' if ok else 'FAIL'}")
    print("GPU CHECK:", "FAIL " + ", ".join(failed) if failed else "PASS")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
