"""Runs not in the masks' space: refused raw runs, --bold-source auto, fMRIPrep's minimal outputs.

Unit tests check the grid comparison, the transform chain and the motion parameters against
independent computations; the end-to-end tests decode ``simulate --motion`` data (real
ds001246 events, per-session placements, head motion) against the aligned data of the same
seed.
"""

from __future__ import annotations

import json

import h5py
import nibabel as nib
import numpy as np
import pytest
from scipy.stats import spearmanr

from bids_decode.cli import main
from bids_decode.errors import DataError
from bids_decode.inputs import alignment as bs
from bids_decode.inputs.layout import Run

AFF = np.array([[3.0, 0, 0, -20.0], [0, 3.0, 0, -18.0], [0, 0, 3.0, -15.0], [0, 0, 0, 1]])


def _moved(aff, mm=(0.0, 0.0, 0.0), deg=(0.0, 0.0, 0.0)):
    p = bs.rigid_matrices(np.r_[mm, np.radians(deg)][None], np.zeros(3))[0]
    return p @ aff


# ------------------------------------------------------------------ grids


def test_same_grid_tolerances():
    shape = (10, 11, 12)
    assert bs.same_grid(AFF, shape, _moved(AFF, (0.05, 0, 0)), shape)
    assert not bs.same_grid(AFF, shape, _moved(AFF, (0.2, 0, 0)), shape)
    # rotations about the world origin also move voxel (0, 0, 0): rotate about it instead
    turn = np.linalg.inv(AFF) @ _moved(AFF, deg=(0, 0, 0.05))
    turn[:3, 3] = 0
    assert bs.same_grid(AFF, shape, AFF @ turn, shape)
    turn = np.linalg.inv(AFF) @ _moved(AFF, deg=(0, 0.2, 0))
    turn[:3, 3] = 0
    assert not bs.same_grid(AFF, shape, AFF @ turn, shape)
    assert not bs.same_grid(AFF, shape, AFF, (10, 11, 13))


def test_mask_grids_in_the_runs_space():
    two_mm = AFF.copy()
    two_mm[:3, :3] *= 2 / 3
    padded = AFF.copy()
    padded[:3, 3] -= 3.0  # one voxel of padding: the same lattice
    assert bs.same_space_grids(AFF, two_mm)
    assert bs.same_space_grids(AFF, padded)
    assert not bs.same_space_grids(AFF, _moved(AFF, (1.5, 0, 0)))  # half a voxel off
    assert not bs.same_space_grids(AFF, _moved(AFF, deg=(3, 0, 0)))


def _run(path, data, aff, tr=2.0):
    nib.save(nib.Nifti1Image(data, aff), path)
    return Run(path, path.with_name("x_events.tsv"), None, None, tr)


def test_align_runs_refuses_raw_runs_at_other_placements(tmp_path):
    rng = np.random.default_rng(0)
    data = rng.standard_normal((6, 7, 5, 4)).astype(np.float32)
    mask = tmp_path / "mask.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((6, 7, 5), np.uint8), AFF), mask)
    a = _run(tmp_path / "a_bold.nii.gz", data, AFF)
    b = _run(tmp_path / "b_bold.nii.gz", data, AFF)
    ref, runs = bs.align_runs("raw", [a, b], mask, "01")
    assert runs == [a, b] and np.allclose(ref.affine, AFF)  # identical grids: accepted
    c = _run(tmp_path / "c_bold.nii.gz", data, _moved(AFF, (2.0, -1.0, 0.5), (1, 0, 2)))
    with pytest.raises(DataError) as err:
        bs.align_runs("raw", [a, c], mask, "01")
    msg = str(err.value)
    for words in ("c_bold.nii.gz", "placement", "--bold-source preproc-spm", "fMRIPrep",
                  "--assume-aligned"):
        assert words in msg
    # masks at another placement, runs all alike: refused too
    moved_mask = tmp_path / "moved.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((6, 7, 5), np.uint8), _moved(AFF, (4.0, 0, 0), (2, 0, 0))),
             moved_mask)
    with pytest.raises(DataError, match="ROI masks"):
        bs.align_runs("raw", [a, b], moved_mask, "01")
    # --assume-aligned: the run on another grid is sampled through its affine
    _, runs = bs.align_runs("raw", [a, c], mask, "01", assume_aligned=True)
    assert runs[0].transforms is None and runs[1].transforms.resample


def test_resampling_composes_hmc_and_coreg_in_fmriprep_order(tmp_path):
    """A field linear in world space is interpolated exactly by trilinear sampling, so each
    sample must equal the field at ``H_t @ C @ x`` (computed here without the resampler)."""
    import nitransforms as nt

    rng = np.random.default_rng(1)
    n_vols, shape = 5, (24, 25, 23)
    a_raw = _moved(AFF, (3.0, -2.0, 1.0), (4, -3, 2))
    a_raw[:3, 3] -= 9.0
    grad = rng.standard_normal((n_vols, 3))
    world = nib.affines.apply_affine(a_raw, np.indices(shape).reshape(3, -1).T)  # (n, 3)
    data = (world @ grad.T + np.arange(n_vols) * 10.0).reshape(*shape, n_vols)
    bold = tmp_path / "raw_bold.nii.gz"
    nib.save(nib.Nifti1Image(data.astype(np.float32), a_raw), bold)
    params = np.c_[rng.uniform(-1, 1, (n_vols, 3)), rng.uniform(-0.02, 0.02, (n_vols, 3))]
    hmc = bs.rigid_matrices(params, bs.fov_center(nib.load(bold)))
    coreg = _moved(np.eye(4), (2.0, 1.0, -1.5), (2, 1, -2))
    nt.linear.LinearTransformsMapping(hmc).to_filename(tmp_path / "hmc.txt", fmt="itk")
    nt.linear.Affine(coreg).to_filename(tmp_path / "coreg.txt", fmt="itk")
    mask = np.zeros((8, 9, 7), bool)
    mask[2:6, 3:7, 2:5] = True
    xf = bs.RunTransforms(tmp_path / "hmc.txt", tmp_path / "coreg.txt", True,
                          tuple(map(tuple, AFF)))
    run = Run(bold, bold, None, None, 2.0, 0, None, xf)
    got = bs.resampled_timeseries(run, mask)
    x = nib.affines.apply_affine(AFF, np.argwhere(mask))  # C order, as the mask's voxels
    for t in range(n_vols):
        moved = nib.affines.apply_affine(hmc[t] @ coreg, x)
        np.testing.assert_allclose(got[t], moved @ grad[t] + 10.0 * t, atol=2e-3)


def test_motion_parameters_round_trip_through_itk_files(tmp_path):
    import nitransforms as nt

    rng = np.random.default_rng(2)
    params = np.c_[rng.uniform(-2, 2, (7, 3)), rng.uniform(-0.05, 0.05, (7, 3))]
    center = np.array([4.0, -20.0, 11.0])
    mats = bs.rigid_matrices(params, center)
    # independent: the centre moves by the translations, rotations keep lengths
    moved = np.einsum("nij,j->ni", mats[:, :3, :3], center) + mats[:, :3, 3]
    np.testing.assert_allclose(moved - center, params[:, :3], atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(mats[:, :3, :3]), 1.0)
    nt.linear.LinearTransformsMapping(mats).to_filename(tmp_path / "h.txt", fmt="itk")
    back = bs.load_matrices(tmp_path / "h.txt")
    np.testing.assert_allclose(bs.motion_parameters(back, center), params, atol=2e-5)


# ------------------------------------------------------------------ end to end


@pytest.fixture(scope="module")
def moving(tmp_path_factory):
    """A held-out subject with motion, and the aligned data of the same seed."""
    from bids_decode.simulate import simulate_dataset

    root = tmp_path_factory.mktemp("motion")
    kw = dict(n_subjects=1, n_train_runs=10, n_test_runs=2, seed=23)
    return (simulate_dataset(root / "moved", motion=True, **kw),
            simulate_dataset(root / "aligned", **kw))


def _decode(ds, out, *extra):
    return main([str(ds["bids_dir"]), str(out), "participant", "--features",
                 str(ds["features"]), "--n-voxels", "100", "--roi", "VC", *extra])


def _accuracy(ds, out) -> dict:
    res = {}
    with h5py.File(out / "sub-01" / "func" / "sub-01_task-perception"
        "_net-simulated_desc-VC_decoding.h5") as h5:
        for layer in ds["truth"]:
            acc = h5[layer]["accuracy"][()].ravel()
            rho = ds["truth"][layer].ravel()
            ok = np.isfinite(rho)
            res[layer] = (float(np.nanmean(acc)), spearmanr(acc[ok], rho[ok])[0])
    return res


@pytest.fixture(scope="module")
def reference(moving, tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "out"
    assert _decode(moving[1], out) == 0
    return _accuracy(moving[1], out)


@pytest.mark.slow
def test_raw_runs_at_session_placements_are_refused(moving, tmp_path, capsys):
    out = tmp_path / "raw"
    assert _decode(moving[0], out, "--bold-source", "raw") == 65
    err = capsys.readouterr().err
    assert "not in the masks' space" in err and "--bold-source preproc-spm" in err
    assert "--assume-aligned" in err and "Traceback" not in err
    assert not list(out.glob("sub-01/func/*_decoding.*"))


@pytest.mark.slow
def test_default_source_is_the_shipped_preproc_spm(moving, reference, tmp_path, capsys):
    """Acceptance: no --bold-source on ds001246-like data uses derivatives/preproc-spm."""
    out = tmp_path / "auto"
    assert _decode(moving[0], out) == 0
    assert "BOLD source: preproc-spm (--bold-source auto" in capsys.readouterr().err
    cfg = json.loads((out / "sub-01" / "sub-01_task-perception"
        "_net-simulated_config.json").read_text())
    assert cfg["bold_source"] == "preproc-spm"
    for layer, (r, rho) in _accuracy(moving[0], out).items():
        assert r >= 0.85 * reference[layer][0], (layer, r, reference[layer])
        assert rho >= 0.6, (layer, rho)


@pytest.mark.slow
def test_fmriprep_minimal_outputs_recover_the_planted_truth(moving, reference, tmp_path):
    fp = moving[0]["bids_dir"] / "derivatives" / "fmriprep"
    assert not list(fp.rglob("*desc-preproc_bold*")) and not list(fp.rglob("*confounds*"))
    out = tmp_path / "fp"
    assert _decode(moving[0], out, "--bold-source", "fmriprep", "-d", f"fmriprep={fp}") == 0
    for layer, (r, rho) in _accuracy(moving[0], out).items():
        assert r >= 0.9 * reference[layer][0], (layer, r, reference[layer])
        assert rho >= 0.6, (layer, rho)
    cfg = json.loads((out / "sub-01" / "sub-01_task-perception"
        "_net-simulated_config.json").read_text())
    assert cfg["bold_source"] == "fmriprep"


@pytest.mark.slow
def test_motion_parameters_from_transforms_equal_the_simulated(moving):
    from bids_decode.inputs.layout import find_runs, make_layout
    from bids_decode.inputs.sources import BoldSource

    ds = moving[0]["bids_dir"]
    src = BoldSource.parse("fmriprep", ds, {}, "T1w")
    runs = find_runs(make_layout(ds, ["01"]), "01", "perception", "perceptionTraining*",
                     what="training", source=src)
    assert all(r.transforms.resample and r.confounds is None for r in runs)
    from bids_decode.inputs.samples import load_confounds

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
        full = find_runs(make_layout(ds, ["01"]), "01", "perception", "perceptionTraining*",
                         what="training", source=src)[0]
        assert full.bold == preproc and not full.transforms.resample
        with h5py.File(ds / "stimuli" / "truth_simulated.h5") as h5:
            truth = h5["motion"][first.label][()]
        np.testing.assert_allclose(load_confounds(full, "motion6", len(truth)), truth,
                                   atol=1e-4)
    finally:
        preproc.unlink()
