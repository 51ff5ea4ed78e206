"""Confound regressors: motion parameters from head-motion transforms (round trip through ITK
files, and against the motion that ``simulate --motion`` planted)."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from bids_decode.errors import DataError
from bids_decode.inputs import confounds, fmriprep
from bids_decode.inputs.confounds import load_confounds
from bids_decode.inputs.layout import make_layout
from bids_decode.inputs.sources import BoldSource


def test_motion_parameters_round_trip_through_itk_files(tmp_path):
    import nitransforms as nt

    rng = np.random.default_rng(2)
    params = np.c_[rng.uniform(-2, 2, (7, 3)), rng.uniform(-0.05, 0.05, (7, 3))]
    center = np.array([4.0, -20.0, 11.0])
    mats = confounds.rigid_matrices(params, center)
    # independent: the centre moves by the translations, rotations keep lengths
    moved = np.einsum("nij,j->ni", mats[:, :3, :3], center) + mats[:, :3, 3]
    np.testing.assert_allclose(moved - center, params[:, :3], atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(mats[:, :3, :3]), 1.0)
    nt.linear.LinearTransformsMapping(mats).to_filename(tmp_path / "h.txt", fmt="itk")
    back = fmriprep.load_matrices(tmp_path / "h.txt")
    np.testing.assert_allclose(confounds.motion_parameters(back, center), params, atol=2e-5)


@pytest.mark.slow
def test_motion_parameters_from_transforms_equal_the_simulated(moving):
    ds = moving[0]["bids_dir"]
    src = BoldSource.parse("fmriprep", ds, {}, "T1w")
    runs = src.find_runs(make_layout(ds, ["01"]), "01", "perception", "perceptionTraining*",
                         what="training")
    assert all(r.transforms.resample and r.confounds is None for r in runs)
    with h5py.File(ds / "stimuli" / "truth_simulated.h5") as h5:
        for r in runs:
            truth = h5["motion"][r.label][()]
            assert np.abs(truth[:, :3]).max() > 0.3  # the runs do move
            got = load_confounds(r, "motion6", len(truth))
            np.testing.assert_allclose(got, truth, atol=1e-4)
    with pytest.raises(DataError, match="white_matter"):
        load_confounds(runs[0], "motion6+wm+csf", len(truth))
    # full fMRIPrep outputs without a confounds table: the run is used as it is (not
    # resampled) and motion6 still comes from its head-motion transforms
    first = runs[0]
    fp_func = ds / "derivatives" / "fmriprep" / first.bold.parent.relative_to(ds)
    preproc = fp_func / f"{first.label}_space-T1w_desc-preproc_bold.nii.gz"
    preproc.symlink_to(first.bold)
    try:
        full = src.find_runs(make_layout(ds, ["01"]), "01", "perception",
                             "perceptionTraining*", what="training")[0]
        assert full.bold == preproc and not full.transforms.resample
        with h5py.File(ds / "stimuli" / "truth_simulated.h5") as h5:
            truth = h5["motion"][first.label][()]
        np.testing.assert_allclose(load_confounds(full, "motion6", len(truth)), truth,
                                   atol=1e-4)
    finally:
        preproc.unlink()
