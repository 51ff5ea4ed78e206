"""The simulated group outputs with a qc file for sub-01, and both subject reports written once."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from bids_decode.outputs.paths import func_path
from bids_decode.reports import write_subject_report
from tests.group.simulated import ROIS, TASK, build_group_outputs


@pytest.fixture(scope="session")
def outputs(tmp_path_factory):
    return build_group_outputs(tmp_path_factory)


def write_qc(out, subject: str) -> None:
    """A small ``*_qc.h5`` as the participant level will write it (format: docs/outputs.md)."""
    path = func_path(out, subject, TASK, net="simulated", suffix="qc", ext=".h5")
    rng = np.random.default_rng(1)
    n_vols, tr = 60, 3.0
    onsets = np.arange(8) * 21.0 + 24.0
    with h5py.File(path, "w") as f:
        f.attrs.update({"tr": tr, "run": f"sub-{subject}_ses-perceptionTraining01_run-01"})
        for k, roi in enumerate(ROIS):
            t = np.arange(n_vols) * tr
            box = sum(((t >= o + 3) & (t < o + 12)).astype(float) for o in onsets)
            f.create_dataset(f"timecourse/{roi}", data=box + 0.3 * rng.standard_normal(n_vols)
                             + k)
        f.create_dataset("blocks/onset", data=onsets)
        f.create_dataset("blocks/duration", data=np.full(8, 9.0))
        f.create_dataset("blocks/label", data=np.array([f"img{i}" for i in range(8)],
                                                       dtype=object),
                         dtype=h5py.string_dtype())
        for split, n_img, reps in (("train", 40, 5), ("test", 10, 35)):
            f.create_dataset(f"{split}_counts/name", data=np.array(
                [f"{split}{i}" for i in range(n_img)], dtype=object), dtype=h5py.string_dtype())
            f.create_dataset(f"{split}_counts/count", data=np.full(n_img, reps))
        f.create_dataset("warnings", data=np.array(
            ["3 voxel(s) have non-finite values in some run; they are excluded."], dtype=object),
            dtype=h5py.string_dtype())


@pytest.fixture(scope="session")
def reports(outputs):
    """sub-01 with a qc file, sub-02 without; both reports written once."""
    out = outputs["out"]
    write_qc(out, "01")
    return {s: write_subject_report(out, s, TASK, network="simulated") for s in ("01", "02")}
