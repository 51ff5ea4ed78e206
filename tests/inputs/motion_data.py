"""Shared by the input tests: grids moved by known rigid transforms, and the ``simulate
--motion`` data (per-session placements, head motion) decoded end to end against the aligned
data of the same seed (fixtures in ``conftest.py``)."""

from __future__ import annotations

import h5py
import numpy as np
from scipy.stats import spearmanr

from bids_decode.cli import main
from bids_decode.inputs.confounds import rigid_matrices

AFF = np.array([[3.0, 0, 0, -20.0], [0, 3.0, 0, -18.0], [0, 0, 3.0, -15.0], [0, 0, 0, 1]])


def moved_affine(aff, mm=(0.0, 0.0, 0.0), deg=(0.0, 0.0, 0.0)):
    """``aff`` moved by a rigid transform (``mm`` translations, ``deg`` rotations)."""
    p = rigid_matrices(np.r_[mm, np.radians(deg)][None], np.zeros(3))[0]
    return p @ aff


def decode(ds, out, *extra):
    """The participant level on a simulated dataset (VC, 100 voxels); the exit code."""
    return main([str(ds["bids_dir"]), str(out), "participant", "--features",
                 str(ds["features"]), "--n-voxels", "100", "--roi", "VC", *extra])


def accuracy(ds, out) -> dict:
    """Layer -> (mean unit accuracy, Spearman rho of the accuracies with the planted truth)."""
    res = {}
    path = out / "sub-01" / "func" / "sub-01_task-perception_net-simulated_desc-VC_decoding.h5"
    with h5py.File(path) as h5:
        for layer in ds["truth"]:
            acc = h5[layer]["accuracy"][()].ravel()
            rho = ds["truth"][layer].ravel()
            ok = np.isfinite(rho)
            res[layer] = (float(np.nanmean(acc)), spearmanr(acc[ok], rho[ok])[0])
    return res
