"""Runs not in the masks' space: the grid comparison, refused raw runs, --bold-source auto.

Unit tests check the grid comparison against independent computations; the end-to-end tests
decode ``simulate --motion`` data (real ds001246 events, per-session placements, head motion)
against the aligned data of the same seed (``conftest.py``).
"""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from bids_decode.errors import DataError
from bids_decode.inputs import alignment
from bids_decode.inputs.layout import Run
from tests.inputs.motion_data import AFF, accuracy, decode, moved_affine

# ------------------------------------------------------------------ grids


def test_same_grid_tolerances():
    shape = (10, 11, 12)
    assert alignment.same_grid(AFF, shape, moved_affine(AFF, (0.05, 0, 0)), shape)
    assert not alignment.same_grid(AFF, shape, moved_affine(AFF, (0.2, 0, 0)), shape)
    # rotations about the world origin also move voxel (0, 0, 0): rotate about it instead
    turn = np.linalg.inv(AFF) @ moved_affine(AFF, deg=(0, 0, 0.05))
    turn[:3, 3] = 0
    assert alignment.same_grid(AFF, shape, AFF @ turn, shape)
    turn = np.linalg.inv(AFF) @ moved_affine(AFF, deg=(0, 0.2, 0))
    turn[:3, 3] = 0
    assert not alignment.same_grid(AFF, shape, AFF @ turn, shape)
    assert not alignment.same_grid(AFF, shape, AFF, (10, 11, 13))


def test_mask_grids_in_the_runs_space():
    two_mm = AFF.copy()
    two_mm[:3, :3] *= 2 / 3
    padded = AFF.copy()
    padded[:3, 3] -= 3.0  # one voxel of padding: the same lattice
    assert alignment.same_space_grids(AFF, two_mm)
    assert alignment.same_space_grids(AFF, padded)
    assert not alignment.same_space_grids(AFF, moved_affine(AFF, (1.5, 0, 0)))  # half a voxel off
    assert not alignment.same_space_grids(AFF, moved_affine(AFF, deg=(3, 0, 0)))


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
    ref, runs = alignment.align_runs("raw", [a, b], mask, "01")
    assert runs == [a, b] and np.allclose(ref.affine, AFF)  # identical grids: accepted
    c = _run(tmp_path / "c_bold.nii.gz", data, moved_affine(AFF, (2.0, -1.0, 0.5), (1, 0, 2)))
    with pytest.raises(DataError) as err:
        alignment.align_runs("raw", [a, c], mask, "01")
    msg = str(err.value)
    for words in ("c_bold.nii.gz", "placement", "--bold-source preproc-spm", "fMRIPrep",
                  "--assume-aligned"):
        assert words in msg
    # masks at another placement, runs all alike: refused too
    moved_mask = tmp_path / "moved.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((6, 7, 5), np.uint8),
                             moved_affine(AFF, (4.0, 0, 0), (2, 0, 0))), moved_mask)
    with pytest.raises(DataError, match="ROI masks"):
        alignment.align_runs("raw", [a, b], moved_mask, "01")
    # --assume-aligned: the run on another grid is sampled through its affine
    _, runs = alignment.align_runs("raw", [a, c], mask, "01", assume_aligned=True)
    assert runs[0].transforms is None and runs[1].transforms.resample


# ------------------------------------------------------------------ end to end


@pytest.mark.slow
def test_raw_runs_at_session_placements_are_refused(moving, tmp_path, capsys):
    out = tmp_path / "raw"
    assert decode(moving[0], out, "--bold-source", "raw") == 65
    err = capsys.readouterr().err
    assert "not in the masks' space" in err and "--bold-source preproc-spm" in err
    assert "--assume-aligned" in err and "Traceback" not in err
    assert not list(out.glob("sub-01/func/*_decoding.*"))


@pytest.mark.slow
def test_default_source_is_the_shipped_preproc_spm(moving, reference, tmp_path, capsys):
    """Acceptance: no --bold-source on ds001246-like data uses derivatives/preproc-spm."""
    out = tmp_path / "auto"
    assert decode(moving[0], out) == 0
    assert "BOLD source: preproc-spm (--bold-source auto" in capsys.readouterr().err
    cfg = json.loads((out / "sub-01" / "sub-01_task-perception"
        "_net-simulated_config.json").read_text())
    assert cfg["bold_source"] == "preproc-spm"
    for layer, (r, rho) in accuracy(moving[0], out).items():
        assert r >= 0.85 * reference[layer][0], (layer, r, reference[layer])
        assert rho >= 0.6, (layer, rho)
