"""Full-size ingestion: load a full-size subject run by run, against plain decompression.

Builds a subject on the real grid with the real events, then times in separate processes (one
process per measurement, so peak RSS is per measurement):

1. plain decompression of every run (``gzip`` read into memory, nothing else);
2. ``bids_decode.inputs.samples.build_samples`` (mask, cast, detrend/z-score, block averaging);
3. the same through fMRIPrep's minimal outputs: every run resampled once onto the mask's
   grid through its per-volume head-motion transforms and a coregistration (written with
   nitransforms beside the runs, as ``--bold-source fmriprep`` reads them).

Step 3 runs for the ds001246 layout only.

Layouts: ``ds001246`` (64 x 64 x 50 voxels of 3 mm, 178 int16 volumes per run, a VC-sized ROI)
and ``ds001506`` (96 x 96 x 76 voxels of 2 mm, 239 volumes per training run, 245 per test run,
TR 2 s, numeric event codes, an ROI of ~30,000 voxels).

Prints wall and CPU time, the ratios (goals: ingestion <= 1.5x decompression, resampling <= 2x
ingestion) and peak RSS (goal < 4 GB, and the same for 4 and 8 runs: memory must not grow with
the number of runs).

    python benchmarks/bench_ingestion.py [--layout ds001506] [--runs 59] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

#: grid, voxel size (mm), TR (s), share of training runs, training and test session globs,
#: ROI ellipsoid radii (voxels)
LAYOUTS = {
    "ds001246": {"grid": (64, 64, 50), "voxel": 3.0, "tr": 3.0, "train_share": 24 / 59,
                 "train": "perceptionTraining", "test": "perceptionTest", "radii": (20, 10, 11)},
    "ds001506": {"grid": (96, 96, 76), "voxel": 2.0, "tr": 2.0, "train_share": 120 / 144,
                 "train": "perceptionNaturalImageTraining", "test": "perceptionNaturalImageTest",
                 "radii": (30, 16, 15)},
}


def make_subject(root: Path, n_runs: int, layout: str = "ds001246", seed: int = 0) -> None:
    import nibabel as nib
    import pandas as pd

    from bids_decode.simulate.templates import data_root, template_runs

    lay = LAYOUTS[layout]
    grid, vox, tr = lay["grid"], lay["voxel"], lay["tr"]
    rng = np.random.default_rng(seed)
    n_train = max(1, round(n_runs * lay["train_share"]))
    runs = (template_runs("01", lay["train"], layout)[:n_train]
            + template_runs("01", lay["test"], layout)[:max(1, n_runs - n_train)])
    src = data_root(layout)
    (root / "dataset_description.json").write_text(json.dumps(
        {"Name": "bench", "BIDSVersion": "1.9.0"}))
    (root / "task-perception_bold.json").write_text(json.dumps(
        {"RepetitionTime": tr, "TaskName": "perception"}))
    affine = np.diag([vox, vox, vox, 1.0])
    x, y, z = np.ogrid[:grid[0], :grid[1], :grid[2]]
    (a, b, c), (cx, cy, cz) = lay["radii"], (grid[0] // 2, grid[1] // 5, grid[2] // 2.5)
    vc = ((x - cx) ** 2 / a**2 + (y - cy) ** 2 / b**2 + (z - cz) ** 2 / c**2) < 1
    anat = root / "sourcedata" / "sub-01" / "anat"
    anat.mkdir(parents=True)
    nib.save(nib.Nifti1Image(vc.astype(np.uint8), affine), anat / "vc.nii.gz")
    base = (rng.random(grid) * 800 + 200).astype(np.float32)
    for ses, fname in runs:
        func = root / "sub-01" / ses / "func"
        func.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src / "sub-01" / ses / "func" / fname, func / fname)
        ev = pd.read_csv(func / fname, sep="\t")
        n_vols = int(round((ev["onset"] + ev["duration"]).max() / tr))
        data = np.empty((*grid, n_vols), dtype=np.int16)
        for t in range(n_vols):  # volume by volume: the build's memory stays ~ one run
            noise = rng.standard_normal(grid, dtype=np.float32) * 20
            data[..., t] = np.round(base + noise)
        img = nib.Nifti1Image(data, affine)
        img.header.set_zooms((vox, vox, vox, tr))
        nib.save(img, func / fname.replace("_events.tsv", "_bold.nii.gz"))
        del data
    print(f"made {len(runs)} runs ({vc.sum()} ROI voxels) in {root}", flush=True)


def make_transforms(root: Path, seed: int = 1) -> None:
    """fMRIPrep-minimal transforms of every run (head motion of ~1 mm / 1 degree and a
    coregistration of a few mm and degrees), unless already there."""
    import nibabel as nib
    import nitransforms as nt

    from bids_decode.inputs.confounds import fov_center, rigid_matrices
    from bids_decode.inputs.fmriprep import COREG_PATTERN, HMC_PATTERN

    rng = np.random.default_rng(seed)
    fp = root / "derivatives" / "fmriprep"
    fp.mkdir(parents=True, exist_ok=True)
    (fp / "dataset_description.json").write_text(json.dumps(
        {"Name": "bench", "BIDSVersion": "1.9.0", "DatasetType": "derivative"}))
    for bold in sorted(root.glob("sub-01/*/func/*_bold.nii.gz")):
        stem = bold.name[: -len("_bold.nii.gz")]
        func = fp / bold.parent.relative_to(root)
        if (func / HMC_PATTERN.format(stem=stem)).is_file():
            continue
        func.mkdir(parents=True, exist_ok=True)
        img = nib.load(bold)
        walk = np.cumsum(rng.standard_normal((img.shape[3], 6))
                         * np.r_[[0.08] * 3, [0.0013] * 3], axis=0)
        nt.linear.LinearTransformsMapping(rigid_matrices(walk, fov_center(img))).to_filename(
            func / HMC_PATTERN.format(stem=stem), fmt="itk")
        coreg = rigid_matrices(np.r_[rng.uniform(-3, 3, 3), rng.uniform(-0.03, 0.03, 3)][None],
                               fov_center(img))[0]
        nt.linear.Affine(coreg).to_filename(func / COREG_PATTERN.format(stem=stem, space="T1w"),
                                            fmt="itk")


CHILD = r"""
import gzip, json, sys, time
from pathlib import Path
root, mode, lay = Path(sys.argv[1]), sys.argv[2], json.loads(sys.argv[3])
if mode != "decompress":
    import nibabel as nib
    import numpy as np
    from bids_decode.inputs.alignment import align_runs
    from bids_decode.inputs.sources import BoldSource
    from bids_decode.inputs.layout import make_layout
    from bids_decode.inputs.samples import build_samples
t0, c0 = time.perf_counter(), time.process_time()
if mode == "decompress":
    for f in sorted(root.glob("sub-01/*/func/*_bold.nii.gz")):
        with gzip.open(f, "rb") as fh:
            data = fh.read()
        del data
else:
    bids = make_layout(root, ["01"])
    src = BoldSource.parse("fmriprep" if mode == "resample" else "raw", root, {}, "T1w")
    train = src.find_runs(bids, "01", "perception", lay["train"] + "*", what="training")
    test = src.find_runs(bids, "01", "perception", lay["test"] + "*", what="test")
    vc = root / "sourcedata/sub-01/anat/vc.nii.gz"
    mask = np.asanyarray(nib.load(vc).dataobj) > 0
    if mode == "resample":
        ref, runs = align_runs(src.kind, train + test, vc, "01")
        assert all(r.transforms.resample for r in runs)
        train, test = runs[:len(train)], runs[len(train):]
    s = build_samples(train, test, mask, tuple(lay["grid"]), shift=3.0)
    assert s.X_train.shape[1] == mask.sum()
wall, cpu = time.perf_counter() - t0, time.process_time() - c0
# VmHWM belongs to this process image (ru_maxrss would carry the parent's over exec)
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1]
print(json.dumps({"wall": wall, "cpu": cpu, "rss_mb": int(hwm) / 1024}))
"""


def measure(root: Path, mode: str, layout: str = "ds001246") -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, str(root), mode,
                          json.dumps(LAYOUTS[layout])],
                         capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"{mode} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=59, help="runs (ds001246: 24 train + 35 test)")
    p.add_argument("--layout", choices=sorted(LAYOUTS), default="ds001246")
    p.add_argument("--keep", type=Path, default=None, help="build/reuse the subject here")
    args = p.parse_args(argv)
    tmp = None
    root = args.keep
    if root is None:
        tmp = tempfile.mkdtemp(prefix="bench_ingest_")
        root = Path(tmp)
    try:
        if not (root / "dataset_description.json").exists():
            root.mkdir(parents=True, exist_ok=True)
            t0 = time.perf_counter()
            make_subject(root, args.runs, args.layout)
            print(f"build: {time.perf_counter() - t0:.0f} s", flush=True)
        if args.layout == "ds001246":
            make_transforms(root)
        n = len(list(root.glob("sub-01/*/func/*_bold.nii.gz")))
        size = sum(f.stat().st_size for f in root.glob("sub-01/*/func/*_bold.nii.gz")) / 2**20
        dec = measure(root, "decompress", args.layout)
        ing = measure(root, "ingest", args.layout)
        grid = "x".join(map(str, LAYOUTS[args.layout]["grid"]))
        print(f"\nfull-size ingestion ({args.layout}), {n} runs of {grid} int16 "
              f"({size:.0f} MiB gzip)")
        print(f"{'step':<28}{'wall s':>9}{'CPU s':>9}{'peak RSS MiB':>15}")
        for name, m in (("gzip decompression only", dec), ("bids_decode build_samples", ing)):
            print(f"{name:<28}{m['wall']:>9.1f}{m['cpu']:>9.1f}{m['rss_mb']:>15.0f}")
        res = measure(root, "resample", args.layout) if args.layout == "ds001246" else None
        if res is not None:
            print(f"{'  resampled via fMRIPrep xfm':<28}{res['wall']:>9.1f}{res['cpu']:>9.1f}"
                  f"{res['rss_mb']:>15.0f}")
        ratio = ing["wall"] / dec["wall"]
        print(f"ratio ingestion/decompression: {ratio:.2f} wall, {ing['cpu'] / dec['cpu']:.2f} "
              f"CPU (goal <= 1.5; CPU time is the robust one on a shared machine); "
              f"peak RSS {ing['rss_mb'] / 1024:.2f} GiB (goal < 4)")
        if res is not None:
            print(f"ratio resampled/ingestion: {res['wall'] / ing['wall']:.2f} (goal <= 2); "
                  f"peak RSS {res['rss_mb'] / 1024:.2f} GiB")
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
