"""Reading a run at the mask voxels: the one 4-D opener, and resampling through fMRIPrep's
transforms checked against an independent computation."""

from __future__ import annotations

import re
from dataclasses import replace

import nibabel as nib
import numpy as np
import pytest

from bids_decode.errors import DataError
from bids_decode.inputs import confounds, fmriprep
from bids_decode.inputs.bold import load_run_timeseries, resampled_timeseries
from bids_decode.inputs.layout import Run
from tests.inputs.motion_data import AFF, moved_affine


def test_resampling_composes_hmc_and_coreg_in_fmriprep_order(tmp_path):
    """A field linear in world space is interpolated exactly by trilinear sampling, so each
    sample must equal the field at ``H_t @ C @ x`` (computed here without the resampler)."""
    import nitransforms as nt

    rng = np.random.default_rng(1)
    n_vols, shape = 5, (24, 25, 23)
    a_raw = moved_affine(AFF, (3.0, -2.0, 1.0), (4, -3, 2))
    a_raw[:3, 3] -= 9.0
    grad = rng.standard_normal((n_vols, 3))
    world = nib.affines.apply_affine(a_raw, np.indices(shape).reshape(3, -1).T)  # (n, 3)
    data = (world @ grad.T + np.arange(n_vols) * 10.0).reshape(*shape, n_vols)
    bold = tmp_path / "raw_bold.nii.gz"
    nib.save(nib.Nifti1Image(data.astype(np.float32), a_raw), bold)
    params = np.c_[rng.uniform(-1, 1, (n_vols, 3)), rng.uniform(-0.02, 0.02, (n_vols, 3))]
    hmc = confounds.rigid_matrices(params, confounds.fov_center(nib.load(bold)))
    coreg = moved_affine(np.eye(4), (2.0, 1.0, -1.5), (2, 1, -2))
    nt.linear.LinearTransformsMapping(hmc).to_filename(tmp_path / "hmc.txt", fmt="itk")
    nt.linear.Affine(coreg).to_filename(tmp_path / "coreg.txt", fmt="itk")
    mask = np.zeros((8, 9, 7), bool)
    mask[2:6, 3:7, 2:5] = True
    xf = fmriprep.RunTransforms(tmp_path / "hmc.txt", tmp_path / "coreg.txt", True,
                          tuple(map(tuple, AFF)))
    run = Run(bold, bold, None, None, 2.0, 0, None, xf)
    got = resampled_timeseries(run, mask)
    x = nib.affines.apply_affine(AFF, np.argwhere(mask))  # C order, as the mask's voxels
    for t in range(n_vols):
        moved = nib.affines.apply_affine(hmc[t] @ coreg, x)
        np.testing.assert_allclose(got[t], moved @ grad[t] + 10.0 * t, atol=2e-3)


def test_both_readers_open_runs_alike_and_refuse_3d_or_truncated_files(tmp_path):
    """The one 4-D opener serves the run on its own grid and the resampled run: each gives the
    data of a 4-D run, and a 3-D image or a truncated file is a DataError naming it."""
    rng = np.random.default_rng(3)
    data = rng.standard_normal((4, 5, 6, 7)).astype(np.float32)
    full = tmp_path / "full_bold.nii.gz"
    nib.save(nib.Nifti1Image(data, AFF), full)
    flat = tmp_path / "flat_bold.nii.gz"
    nib.save(nib.Nifti1Image(data[..., 0], AFF), flat)
    cut = tmp_path / "cut_bold.nii.gz"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    mask = np.zeros(data.shape[:3], bool)
    mask[1:3, 2:4, 1:5] = True
    on_grid = fmriprep.RunTransforms(resample=True, target_affine=tuple(map(tuple, AFF)))
    run = Run(full, full, None, None, 2.0)
    np.testing.assert_array_equal(load_run_timeseries(run, mask, mask.shape), data[mask].T)
    # the same grid through the affines: trilinear sampling at the voxels gives the voxels
    np.testing.assert_allclose(resampled_timeseries(replace(run, transforms=on_grid), mask),
                               data[mask].T, atol=1e-5)
    for path, words in ((flat, "is 3-D (shape (4, 5, 6))"), (cut, "truncated or corrupt")):
        run = Run(path, path, None, None, 2.0)
        for read in (lambda r: load_run_timeseries(r, mask, mask.shape),
                     lambda r: resampled_timeseries(replace(r, transforms=on_grid), mask)):
            with pytest.raises(DataError, match=re.escape(str(path))) as err:
                read(run)
            assert words in str(err.value)

