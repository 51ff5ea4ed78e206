"""Benchmark: feature extraction speed and peak memory (``bids_decode.features.extract``).

Runs :func:`bids_decode.features.extract.extract_features` on generated images (random weights, no
download), once per image count, each in a fresh process so that its peak resident memory
(``ru_maxrss``) is its own. Peak memory should not grow with the number of images: layers
are streamed to HDF5 batch by batch.

Usage (from the repository root)::

    .venv/bin/python benchmarks/bench_features.py                  # VGG19, all layers, CPU
    .venv/bin/python benchmarks/bench_features.py --n-images 4 16 64 --batch-size 4
    .venv/bin/python benchmarks/bench_features.py --network alexnet --device cuda
    .venv/bin/python benchmarks/bench_features.py --network resnet50 --n-images 4 16   # default
    .venv/bin/python benchmarks/bench_features.py --network vit_b_16 --n-images 4 16   # layers

``--network`` takes any network of ``bids_decode features`` (torchvision names included);
without ``--layers`` its default layers are extracted.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _rss_mib() -> float:
    """Current resident memory of this process in MiB (Linux /proc)."""
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def worker(args: argparse.Namespace) -> dict:
    """One measurement in this process; returns a result row."""
    sys.path.insert(0, str(ROOT))
    import numpy as np
    import torch
    from PIL import Image

    from bids_decode.features.extract import extract_features

    if args.threads:
        torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(prefix="bench_features_") as tmp:
        tmp = Path(tmp)
        paths = []
        for i in range(args.n_images):  # ImageNet-like photos: 500 x 375 JPEG
            path = tmp / f"img_{i:04d}.jpg"
            Image.fromarray(rng.integers(0, 256, (375, 500, 3), dtype=np.uint8)).save(path)
            paths.append(path)
        names = [p.stem for p in paths]
        rss_before = _rss_mib()
        start = time.perf_counter()
        out = extract_features(
            paths, names, tmp / "features.h5", network=args.network, layers=args.layers,
            weights="random", device=args.device, batch_size=args.batch_size,
        )
        seconds = time.perf_counter() - start
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
        size_mib = out.stat().st_size / 2**20
    return {
        "network": args.network,
        "device": args.device,
        "n_images": args.n_images,
        "batch_size": args.batch_size,
        "threads": torch.get_num_threads(),
        "seconds": seconds,
        "images_per_s": args.n_images / seconds,
        "rss_before_mib": rss_before,
        "peak_rss_mib": peak,
        "file_mib": size_mib,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--network", default="vgg19")
    parser.add_argument("--layers", nargs="+", default=None,
                        help="default: the network's default layers")
    parser.add_argument("--n-images", type=int, nargs="+", default=[4, 16])
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        (args.n_images,) = args.n_images
        print(json.dumps(worker(args)))
        return 0

    rows = []
    for n in args.n_images:
        cmd = [sys.executable, __file__, "--worker", "--network", args.network,
               "--n-images", str(n), "--batch-size", str(args.batch_size),
               "--device", args.device, "--threads", str(args.threads)]
        if args.layers:
            cmd += ["--layers", *args.layers]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            sys.stderr.write(done.stderr)
            return done.returncode
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))

    header = (f"{'network':<10} {'device':<6} {'images':>6} {'batch':>5} {'threads':>7} "
              f"{'total s':>8} {'img/s':>6} {'RSS after imports':>17} {'peak RSS':>9} "
              f"{'file':>9}")
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['network']:<10} {r['device']:<6} {r['n_images']:>6} {r['batch_size']:>5} "
              f"{r['threads']:>7} {r['seconds']:>8.1f} {r['images_per_s']:>6.2f} "
              f"{r['rss_before_mib']:>13.0f} MiB {r['peak_rss_mib']:>5.0f} MiB "
              f"{r['file_mib']:>5.0f} MiB")
    if len(rows) > 1:
        first, last = rows[0], rows[-1]
        rate = (last["n_images"] - first["n_images"]) / (last["seconds"] - first["seconds"])
        growth = last["peak_rss_mib"] - first["peak_rss_mib"]
        print(f"streaming rate (from {first['n_images']} to {last['n_images']} images, network "
              f"setup excluded): {rate:.2f} img/s; peak RSS grew {growth:+.0f} MiB while the "
              f"file grew {last['file_mib'] - first['file_mib']:.0f} MiB")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
