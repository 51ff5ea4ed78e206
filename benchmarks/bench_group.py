"""Benchmark: the group level over 5 subjects x 8 AlexNet-sized layers x 10 ROIs.

Participant outputs are written directly in the documented format (docs/formats.md) with
synthetic values (a subject-shared per-unit accuracy plus subject noise), so the benchmark
measures the group level alone: reading every subject's accuracies and decoded features,
the between-subject statistics, the Averaged subject (streamed against a features file), the
figures and both HTML reports. Target: under 60 s.

    .venv/bin/python benchmarks/bench_group.py [--n-subjects 5] [--n-rois 10] [--n-test 50]
        [--keep DIR]

Disk: about n_subjects * n_rois * n_test * 0.72 M units * 4 bytes (7.2 GB with the defaults)
plus the features file; the folder is deleted at the end unless --keep is given.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bids_decode import cli, evaluation  # noqa: E402
from bids_decode.outputs import schema as outputs  # noqa: E402
from bids_decode.utils.files import write_json  # noqa: E402

#: Caffe AlexNet as used by Horikawa & Kamitani (conv1 96 x 55 x 55 = 290,400 units).
ALEXNET = {
    "conv1": (96, 55, 55), "conv2": (256, 27, 27), "conv3": (384, 13, 13),
    "conv4": (384, 13, 13), "conv5": (256, 13, 13), "fc6": (4096,), "fc7": (4096,),
    "fc8": (1000,),
}
ROIS = ["V1", "V2", "V3", "V4", "LOC", "FFA", "PPA", "LVC", "HVC", "VC"]
TASK = "perception"
NETWORK = "caffe-alexnet"


def write_features(path: Path, test_names, n_train: int, rng) -> None:
    names = list(test_names) + [f"train{i:04d}" for i in range(n_train)]
    with h5py.File(path, "w") as f:
        f.create_dataset("stimulus_name", data=np.array(names, dtype=object),
                         dtype=h5py.string_dtype("utf-8"))
        for layer, shape in ALEXNET.items():
            f.create_dataset(f"layers/{layer}",
                             data=rng.standard_normal((len(names), *shape), dtype=np.float32))
        f.attrs.update({"network": NETWORK, "weights": "synthetic", "complete": True})


def write_participant(out: Path, features: Path, n_subjects: int, rois, n_test: int,
                      rng) -> None:
    """Synthetic participant outputs in the documented layout."""
    test_names = [f"test{i:02d}" for i in range(n_test)]
    subjects = [f"{i + 1:02d}" for i in range(n_subjects)]
    with h5py.File(features, "r") as f:
        true = {la: f["layers"][la][:n_test] for la in ALEXNET}
    shared = {la: rng.uniform(-0.1, 0.8, int(np.prod(s))) for la, s in ALEXNET.items()}
    noise_bank = {la: rng.standard_normal((n_test, int(np.prod(s))), dtype=np.float32)
                  for la, s in ALEXNET.items()}
    samples = {"n_train_runs": 24, "n_test_runs": 35, "n_train_samples": 6000,
               "n_test_blocks": 1750, "n_test_images": n_test, "n_repeats_dropped": 0,
               "n_nonfinite_voxels": 0, "runs_per_session": {"perceptionTraining01": 24}}
    for sub in subjects:
        func = out / f"sub-{sub}" / "func"
        func.mkdir(parents=True)
        rows = []
        for roi in rois:
            h5 = outputs.decoding_h5(out, sub, TASK, roi, network=NETWORK)
            with h5py.File(h5, "w") as f:
                f.create_dataset("stimulus_name", data=np.array(test_names, dtype=object),
                                 dtype=h5py.string_dtype("utf-8"))
                f.attrs.update({"roi": roi, "subject": sub, "task": TASK, "n_voxels_roi": 2000,
                                "n_voxels_selected": 500, "alpha": 100.0,
                                "features_file": str(features), "network": NETWORK})
                for la, shape in ALEXNET.items():
                    n = int(np.prod(shape))
                    acc = np.clip(shared[la] + 0.1 * rng.standard_normal(n), -1, 1)
                    g = f.create_group(la)
                    g.create_dataset("accuracy", data=acc.astype(np.float32).reshape(shape))
                    g.create_dataset("rank", data=evaluation.rank_units(acc).reshape(shape))
                    shift = int(rng.integers(n))
                    dec = true[la].reshape(n_test, n) + 2.0 * np.roll(noise_bank[la], shift, 1)
                    g.create_dataset("decoded", data=dec.reshape(n_test, *shape), chunks=True)
                    g.create_dataset("pattern_r", data=rng.uniform(0.1, 0.5, n_test))
                    g.create_dataset("identification", data=rng.uniform(0.6, 1.0, n_test))
                    g.attrs.update({"n_units": n, "n_constant_units": 0,
                                    "profile_r_mean": float(acc.mean()), "pattern_r_mean": 0.3,
                                    "identification_accuracy": 0.8})
                    rows.append(f"{roi}\t{la}\t{n}\t2000\t500\t0\t{acc.mean():.4f}\t"
                                f"{np.median(acc):.4f}\t0.3\t0.8\t6000\t{n_test}")
            write_json(outputs.roi_sidecar(out, sub, TASK, roi, network=NETWORK), {
                "ROI": roi, "NumberOfVoxels": 2000, "VoxelsSelectedPerUnit": 500,
                "Alpha": 100.0, "HaemodynamicShift": 3.0, "RepetitionTime": 3.0,
                "TrainSession": "perceptionTraining*", "TestSession": "perceptionTest*",
                "FeaturesFile": str(features),
                "Network": NETWORK,
                "FeaturesAttributes": {"network": NETWORK, "weights": "synthetic",
                                       "complete": "True"},
                "Layers": list(ALEXNET), "Samples": samples, "Precision": "float32"})
        header = ("roi\tlayer\tn_units\tn_voxels\tn_voxels_selected\tn_constant_units\t"
                  "profile_r_mean\tprofile_r_median\tpattern_r_mean\tidentification_accuracy\t"
                  "n_train_samples\tn_test_images")
        outputs.summary_tsv(out, sub, TASK, network=NETWORK).write_text(
            "\n".join([header, *rows]) + "\n")
        cfg = {"roi": list(rois), "network": NETWORK, "n_voxels": 500, "alpha": 100.0, "task": TASK,
               "features": str(features), "layers": [], "dtype": "float32",
               "provenance": {"versions": {"bids_decode": "bench"}}}
        outputs.config_json(out, sub, TASK, network=NETWORK).write_text(json.dumps(cfg))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n-subjects", type=int, default=5)
    p.add_argument("--n-rois", type=int, default=10)
    p.add_argument("--n-test", type=int, default=50)
    p.add_argument("--n-train-images", type=int, default=150,
                   help="non-test images of the features file (z-scoring reference)")
    p.add_argument("--keep", type=Path, default=None, help="write here and keep the data")
    args = p.parse_args(argv)
    root = args.keep or Path(tempfile.mkdtemp(prefix="bench_group_"))
    root.mkdir(parents=True, exist_ok=True)
    bids, out = root / "bids", root / "out"
    rng = np.random.default_rng(0)
    try:
        if not (root / "ready").exists():
            t0 = time.time()
            bids.mkdir(exist_ok=True)
            (bids / "dataset_description.json").write_text(
                json.dumps({"Name": "bench", "BIDSVersion": "1.9.0"}))
            features = bids / "features.h5"
            write_features(features, [f"test{i:02d}" for i in range(args.n_test)],
                           args.n_train_images, rng)
            write_participant(out, features, args.n_subjects, ROIS[:args.n_rois], args.n_test,
                              rng)
            (root / "ready").touch()
            print(f"synthetic participant outputs written in {time.time() - t0:.1f} s "
                  f"({sum(f.stat().st_size for f in out.rglob('*') if f.is_file()) / 2**30:.2f}"
                  f" GiB) under {root}")
        t0, c0 = time.time(), time.process_time()
        code = cli.main([str(bids), str(out), "group", "-q"])
        wall, cpu = time.time() - t0, time.process_time() - c0
        n_units = sum(int(np.prod(s)) for s in ALEXNET.values())
        print(f"group level: {args.n_subjects} subjects x {len(ALEXNET)} layers ({n_units} "
              f"units) x {args.n_rois} ROIs, {args.n_test} test images: {wall:.1f} s wall, "
              f"{cpu:.1f} s CPU (exit {code}; target < 60 s; load average "
              f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
        return code
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
