"""GPU check of the encoding model on one layer (run by benchmarks/gpu_check.sh).

Synthetic problem at the scale of one subject's VC: n_train 1200, n_test 50, ``--voxels``
voxels (4,500), k 500 units per voxel, alpha 100, one layer of ``--units`` units (131,072)
streamed in chunks of 16,384, voxels driven by a few units plus noise:

1. times ``encode_voxels`` on the device in float32 and float64 (each after a warm-up);
2. compares the device with the CPU path on the first ``--compare-voxels`` voxels (a
   VOXEL_BLOCK-grid subset: the same selections as in the full run): the selected sets and
   the predictions, with explicit limits (:data:`THRESHOLDS`; NaN masks must match).

Prints a table last and exits 1 when a comparison is over its limit; writes the numbers as
JSON to ``--json`` when given.
Usage: python benchmarks/gpu_check_encoding.py [--device cuda] [--units 131072] [--smoke]
"""

from __future__ import annotations

import argparse
import importlib
import json
import pathlib
import sys
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from gpu_check import rel_max_diff, sync  # noqa: E402

#: limits: predictions relative to max |pred| (float64 measured 6e-14 on torch-cpu; float32
#: 8e-5 against the CPU's float32, whose own distance to float64 is of that order) and the
#: share of voxels whose selected set equals the CPU's (float32 near-ties may swap units)
THRESHOLDS = {"rel_max_diff_gpu64_vs_cpu64": 1e-9, "rel_max_diff_gpu32_vs_cpu64": 1e-3,
              "same_sets_gpu64_vs_cpu64": 0.999, "same_sets_gpu32_vs_cpu32": 0.95}


def import_encoding():
    """Import bids_decode.encoding without the package __init__ (whose imports the device
    image may lack)."""
    from gpu_check import import_decoding

    import_decoding()
    return importlib.import_module("bids_decode.encoding")


def make_layer(n, n_test, n_units, n_vox, seed=0):
    """Features (float32, as read from a features file) and voxels driven by 20 units."""
    rng = np.random.default_rng(seed)
    F = rng.standard_normal((n + n_test, n_units), dtype=np.float32)
    drive = rng.choice(n_units, 20, replace=False)
    V = F[:n, drive].astype(np.float64) @ rng.standard_normal((20, n_vox))
    V += 3 * rng.standard_normal((n, n_vox))
    return F[:n], F[n:], V


def chunks_of(F, Ft, step):
    def chunks():
        for s in range(0, F.shape[1], step):
            yield s, min(s + step, F.shape[1]), F[:, s:s + step], Ft[:, s:s + step]
    return chunks


def timed(enc, chunks, V, dtype, device, k, mem_bytes):
    sync(device)
    t0 = time.perf_counter()
    fit = enc.encode_voxels(chunks, V, n_units=k, alpha=100.0, dtype=dtype, device=device,
                            mem_bytes=mem_bytes)
    sync(device)
    return fit, time.perf_counter() - t0


def same_sets(a, b):
    return float((np.sort(a.index, axis=1) == np.sort(b.index, axis=1)).all(axis=1).mean())


def main(argv=None):
    # long: one check, read top to bottom
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--units", type=int, default=131072)
    ap.add_argument("--voxels", type=int, default=4500)
    ap.add_argument("--compare-voxels", type=int, default=256)
    ap.add_argument("--mem-gib", type=float, default=8.0, help="host budget of the model")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, to test the script")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    import torch

    enc = import_encoding()
    n, n_test, k, step = 1200, 50, 500, 16384
    if args.smoke:
        n, n_test, k, step = 120, 10, 30, 512
        args.units, args.voxels, args.compare_voxels = 4096, 300, 256
    info = {"device": args.device, "torch": torch.__version__, "units": args.units,
            "voxels": args.voxels, "k": k, "n_train": n}
    if args.device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name(0)
        torch.backends.cuda.matmul.allow_tf32 = False  # float32 means float32
    F, Ft, V = make_layer(n, n_test, args.units, args.voxels)
    chunks = chunks_of(F, Ft, step)
    mem = int(args.mem_gib * 2**30)
    print("setup", info, flush=True)

    fits = {}
    for dt in (np.float32, np.float64):
        name = np.dtype(dt).name
        timed(enc, chunks_of(F[:, :step], Ft[:, :step], step), V[:, :64], dt, args.device,
              k, mem)  # warm-up
        if args.device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        fits[name], sec = timed(enc, chunks, V, dt, args.device, k, mem)
        flop = 2 * n * args.units * args.voxels + args.voxels * (
            2 * (k + 1) ** 2 * n + (k + 1) ** 3 / 3)
        info[f"seconds_{name}"] = sec
        info[f"gflops_{name}"] = flop / sec / 1e9
        if args.device.startswith("cuda"):
            info[f"max_mem_gib_{name}"] = torch.cuda.max_memory_allocated() / 2**30
        print("timed", name, f"{sec:.2f} s", f"{flop / sec / 1e9:.0f} GFLOP/s", flush=True)

    m = args.compare_voxels
    cpu = {}
    for dt in (np.float32, np.float64):
        cpu[np.dtype(dt).name], sec = timed(enc, chunks, V[:, :m], dt, "cpu", k, mem)
        info[f"cpu_seconds_{np.dtype(dt).name}_{m}_voxels"] = sec
    sub = {name: type(f)(pred=f.pred[:, :m], index=f.index[:m], n_layer_units=f.n_layer_units)
           for name, f in fits.items()}
    info["rel_max_diff_gpu64_vs_cpu64"] = rel_max_diff(sub["float64"].pred, cpu["float64"].pred)
    info["rel_max_diff_gpu32_vs_cpu64"] = rel_max_diff(sub["float32"].pred, cpu["float64"].pred)
    info["rel_max_diff_cpu32_vs_cpu64"] = rel_max_diff(cpu["float32"].pred, cpu["float64"].pred)
    info["same_sets_gpu64_vs_cpu64"] = same_sets(sub["float64"], cpu["float64"])
    info["same_sets_gpu32_vs_cpu32"] = same_sets(sub["float32"], cpu["float32"])

    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(info, indent=2))
    print()
    print(f"device: {info.get('gpu', args.device)}   torch {info['torch']}")
    print(f"encoding {args.voxels} voxels from {args.units} units (k={k}, n_train={n}): "
          f"float32 {info['seconds_float32']:.2f} s, float64 {info['seconds_float64']:.2f} s")
    failed = []
    for key, limit in THRESHOLDS.items():
        low_is_good = key.startswith("rel")
        ok = info[key] <= limit if low_is_good else info[key] >= limit
        failed += [] if ok else [key]
        print(f"{key:<32} {info[key]:.2e}  ({m} voxels; {'limit' if low_is_good else 'at least'}"
              f" {limit:.0e}) {'ok' if ok else 'FAIL'}")
    print("GPU ENCODING CHECK:", "FAIL " + ", ".join(failed) if failed else "PASS")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
