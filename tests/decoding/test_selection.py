"""Voxel selection: the all-voxels rule, and the float32 selection refined to the float64
ranking."""

from __future__ import annotations

import numpy as np

from bids_decode.decoding import batch_size_for, n_selected, prepare_design, selection


def test_all_voxels_rule_is_one_function():
    """0 and any count at or above the ROI's voxels mean every voxel, for the selection, the
    all-voxel solves and the memory model alike."""
    assert [n_selected(n, 23) for n in (0, 1, 7, 22, 23, 24, 500)] == [23, 1, 7, 22, 23, 23, 23]
    assert [selection.uses_all(n, 23) for n in (0, 7, 22, 23, 500)] == [
        True, False, False, True, True]
    design = prepare_design(np.random.default_rng(0).standard_normal((30, 23)), 1.0)
    sizes = {n: batch_size_for(design, n, 1 << 24, 1) for n in (0, 7, 23, 500)}
    assert sizes[0] == sizes[23] == sizes[500] != sizes[7]


def test_float32_selection_equals_float64_ranking():
    """Near-duplicate voxels put float32 near-ties at the threshold: the refined float32
    selection must still equal the float64 ranking (a plain float32 top-k does not)."""
    rng = np.random.default_rng(3)
    n, p, k = 41, 29, 9
    X = rng.standard_normal((n, p))
    X[:, 1::2] = X[:, 0:-1:2] + 1e-7 * rng.standard_normal((n, p // 2))
    Y = rng.standard_normal((n, 400)).astype(np.float32)
    design = prepare_design(X, 1.0, dtype=np.float32)
    index, rhs = selection._select_rhs_float32(design, Y, k)
    ref = selection._top_k(selection._scores_rhs(design, Y)[0], k)
    naive = selection._top_k(np.abs(Y.T @ design.xz.astype(np.float32)), k)
    assert (naive != ref).any(axis=1).sum() > 10  # the case is hard for float32
    np.testing.assert_array_equal(index, ref)
    _, ct, ysum = selection._scores_rhs(design, Y)
    rhs64 = selection._rhs_selected(design, ct, ysum, ref)
    np.testing.assert_allclose(rhs, rhs64, rtol=0, atol=1e-5 * np.abs(rhs64).max())
