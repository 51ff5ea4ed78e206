"""Three simulated subjects run through the participant and group levels once per session.

The group and report tests read these outputs (planted, subject-shared decodability).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np
from filelock import FileLock

from bids_decode import cli
from bids_decode.outputs.paths import func_path
from bids_decode.simulate import simulate_dataset

LAYERS = {"conv1": (5, 4, 6), "fc6": (64,), "fc8": (41,)}
ROIS = ["VC", "LVC"]
TASK = "perception"


def build_group_outputs(tmp_path_factory) -> dict:
    """Simulate 3 subjects, run the participant and group levels once per test session.

    Shared by the group and report tests: the outputs live under the session's base temp
    folder, built by whichever test module asks first.
    """
    root = tmp_path_factory.getbasetemp() / "group_sim"
    root.mkdir(exist_ok=True)
    bids, out = root / "bids", root / "out"
    with FileLock(str(root / ".lock")):
        if not (root / "done").exists():
            sim = simulate_dataset(bids, n_subjects=3, n_train_runs=16, n_test_runs=3,
                                   layers=LAYERS, seed=3)
            base = [str(bids), str(out)]
            opts = ["--features", str(sim["features"]), "--roi", *ROIS, "--n-voxels", "100",
                    "--skip-bids-validation", "-q"]
            assert cli.main([*base, "participant", *opts]) == 0
            assert cli.main([*base, "group", "-q"]) == 0
            (root / "done").touch()
    return {"bids": bids, "out": out, "features": bids / "stimuli" / "features_simulated.h5",
            "truth": bids / "stimuli" / "truth_simulated.h5"}


def gpath(out: Path, desc: str, suffix: str) -> Path:
    return out / "group" / f"task-{TASK}_net-simulated_desc-{desc}_{suffix}.tsv"


def accuracy(out: Path, sub: str, roi: str, layer: str) -> np.ndarray:
    path = func_path(out, sub, TASK, net="simulated", desc=roi, suffix="decoding", ext=".h5")
    with h5py.File(path, "r") as f:
        return f[layer]["accuracy"][()].astype(np.float64).ravel()


def copy_outputs(src: Path, dst: Path, subjects) -> Path:
    dst.mkdir()
    shutil.copy(src / "dataset_description.json", dst)
    for s in subjects:
        shutil.copytree(src / f"sub-{s}", dst / f"sub-{s}")
    return dst
