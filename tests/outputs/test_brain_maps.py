"""Brain maps of the encoding models: values at the ROI's voxels, the grid's affine, the
significance rule at its threshold, the BData case, and the BIDS validator."""

from __future__ import annotations

import logging

import nibabel as nib
import numpy as np
import pytest
from scipy import stats

from bids_decode.inputs.validation import find_validator, validator_issues
from bids_decode.outputs.brain_maps import brain_map_path, sidecar_path, write_brain_maps
from bids_decode.outputs.encoding import read_encoding
from bids_decode.outputs.paths import init_output_dir
from bids_decode.outputs.schema import read_json
from tests.outputs.encoding_files import (
    GRID_AFFINE,
    GRID_SHAPE,
    LAYERS,
    N_TEST,
    NETWORK,
    TASK,
    planted_encoding,
)

# Bonferroni over the 4 layers: p * 4 < 0.05 <=> p < 0.0125
P_IN, P_OUT = 0.0124, 0.0126


def _paper_threshold(n: int) -> float:
    """The r where KamitaniLab/BHscore's test (t = r sqrt((n-2)(1-r^2)), two-sided) gives
    p = 0.05, solved independently: r^2 (1 - r^2) = t*^2 / (n - 2)."""
    c = stats.t.ppf(0.975, n - 2) ** 2 / (n - 2)
    return float(np.sqrt((1 - np.sqrt(1 - 4 * c)) / 2))


def _maps(path):
    r_path, d_path = write_brain_maps(path)
    return nib.load(r_path), nib.load(d_path), read_json(sidecar_path(d_path))


def test_maps_hold_the_voxel_values_in_the_grid(tmp_path):
    planted = {3: (1, 0.6, P_IN), 4: (2, 0.6, P_OUT), 5: (3, 0.6, 0.001), 6: (0, -0.5, 0.001)}
    path = planted_encoding(tmp_path, "01", "VC", seed=3, best=planted)
    enc = read_encoding(path)
    r_img, d_img, side = _maps(path)
    assert r_img.shape == (*GRID_SHAPE, len(LAYERS)) and d_img.shape == GRID_SHAPE
    np.testing.assert_array_equal(r_img.affine, GRID_AFFINE)
    np.testing.assert_array_equal(d_img.affine, GRID_AFFINE)
    r, depth = np.asarray(r_img.dataobj), np.asarray(d_img.dataobj)
    ijk = np.unravel_index(enc.voxel_index, GRID_SHAPE)
    for li in range(len(LAYERS)):
        np.testing.assert_array_equal(r[(*ijk, li)], enc.accuracy[li].astype(np.float32))
    outside = np.ones(GRID_SHAPE, bool)
    outside[ijk] = False
    assert np.isnan(r[outside]).all() and np.isnan(depth[outside]).all()
    # the planted voxels: Bonferroni over the 4 layers of the best layer's p, and r > 0
    vox = {j: tuple(int(a[j]) for a in ijk) for j in planted}
    assert depth[vox[3]] == pytest.approx(1 / 3)  # p = 0.0124: kept, conv3
    assert np.isnan(depth[vox[4]])  # p = 0.0126: 4 p > 0.05, dropped
    assert depth[vox[5]] == 1.0  # fc8
    assert np.isnan(depth[vox[6]])  # best r < 0
    keep = (np.minimum(1, 4 * enc.best_p_value) < 0.05) & (enc.best_accuracy > 0)
    np.testing.assert_array_equal(np.isfinite(depth[ijk]), keep)
    np.testing.assert_array_equal(depth[ijk][keep], enc.best_depth[keep])
    assert side["NumberOfSignificantVoxels"] == int(keep.sum()) > 5
    assert side["Layers"] == LAYERS and side["ROI"] == "VC" and "Bonferroni" in \
        side["SignificanceRule"]
    assert side["LayerDepth"] == {"conv1": 0.0, "conv3": 1 / 3, "fc6": 2 / 3, "fc8": 1.0}
    assert r_img.header.get_intent()[0] == "correlation"
    # the same inputs give the same bytes
    first = brain_map_path(tmp_path, "01", TASK, "VC", "r", network=NETWORK).read_bytes()
    write_brain_maps(path)
    assert brain_map_path(tmp_path, "01", TASK, "VC", "r", network=NETWORK).read_bytes() == first


def test_without_permutations_the_paper_rule_decides(tmp_path):
    thr = _paper_threshold(N_TEST)
    assert 0.30 < thr < 0.31  # n = 50 (the textbook t would give 0.279)
    planted = {0: (2, thr + 1e-4, np.nan), 1: (2, thr - 1e-4, np.nan)}
    path = planted_encoding(tmp_path, "01", "V1", seed=4, permutations=False, best=planted)
    enc = read_encoding(path)
    _, d_img, side = _maps(path)
    depth = np.asarray(d_img.dataobj)
    ijk = np.unravel_index(enc.voxel_index, GRID_SHAPE)
    assert depth[tuple(int(a[0]) for a in ijk)] == pytest.approx(2 / 3)
    assert np.isnan(depth[tuple(int(a[1]) for a in ijk)])
    keep = enc.best_accuracy > thr
    np.testing.assert_array_equal(np.isfinite(depth[ijk]), keep)
    assert "no permutation p-values" in side["SignificanceRule"]
    # --bh-test paper applies it even with permutation p-values
    path2 = planted_encoding(tmp_path, "01", "V2", seed=4, best=planted)
    write_brain_maps(path2, bh_test="paper")
    d2 = np.asarray(nib.load(brain_map_path(tmp_path, "01", TASK, "V2", "bestdepth",
                                            network=NETWORK)).dataobj)
    np.testing.assert_array_equal(np.isfinite(d2), np.isfinite(depth))


def test_bdata_grid_writes_no_maps_and_logs_once(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="bids_decode.outputs.brain_maps")
    paths = [planted_encoding(tmp_path, "07", roi, seed=5, grid_shape=(500,),
                              grid_affine=np.eye(4)) for roi in ("V1", "V2")]
    assert [write_brain_maps(p) for p in paths] == [[], []]
    assert not list(tmp_path.rglob("*.nii.gz"))
    assert sum("not on an image grid" in r.message for r in caplog.records) == 1


@pytest.mark.skipif(find_validator() is None, reason="bids-validator-deno not installed")
def test_maps_pass_the_bids_validator(tmp_path):
    out = tmp_path / "out"
    init_output_dir(out, tmp_path)
    for k, roi in enumerate(("V1", "VC")):
        for sub in ("01", "02"):
            write_brain_maps(planted_encoding(out, sub, roi, seed=k))
    assert len(list(out.rglob("*_statmap.nii.gz"))) == 8
    issues = validator_issues(out, find_validator())
    errors = [(i.get("code"), i.get("location")) for i in issues if i.get("severity") == "error"]
    assert errors == []
