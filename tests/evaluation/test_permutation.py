"""Per-unit permutation tests against brute force: fixed permutations, the null kernels on
every device, the same bits however the units are chunked, calibrated on planted nulls."""

from __future__ import annotations

import numpy as np
import pytest

from bids_decode.evaluation.permutation import (
    N_PERMUTATIONS,
    PermutationTest,
    null_correlations,
    permutations,
)
from bids_decode.evaluation.pvalues import permutation_pvalues
from tests.evaluation.nulls import brute_null, planted


def test_permutations_are_fixed_permutations():
    a = permutations(13, 40, seed=3)
    assert a.shape == (40, 13)
    assert (np.sort(a, axis=1) == np.arange(13)).all()
    np.testing.assert_array_equal(a, permutations(13, 40, seed=3))
    assert not np.array_equal(a, permutations(13, 40, seed=4))


@pytest.mark.slow
@pytest.mark.parametrize("device", ["cpu", "torch-cpu"])
def test_null_correlations_match_brute_force(device):
    pred, true = planted(n_images=17, n_units=9, r=0.5)
    pred[:, 4] = 2.0  # constant decoded values: r undefined
    perms = permutations(17, 25, seed=1)
    got = null_correlations(pred, true, perms, device=device)
    ref = brute_null(pred, true, perms)
    assert np.isnan(got[4]).all()
    ok = np.arange(9) != 4
    np.testing.assert_allclose(got[ok], ref[ok], atol=1e-12)


@pytest.mark.parametrize("device", ["cpu", "torch-cpu"])
def test_results_do_not_depend_on_chunking(device):
    """Counts and statistics are bit-identical, and the maxima merge exactly, whatever the
    chunks (sizes 1, 7, all) or their order of merging."""
    pred, true = planted(n_units=61, r=np.linspace(-0.2, 0.8, 61), seed=2)
    whole = PermutationTest(50, 200, seed=5, device=device)
    s_all, c_all = whole.update(pred, true)
    for size in (1, 7):
        parts, maxima = [], []
        for a in range(0, 61, size):
            t = PermutationTest(50, 200, seed=5, device=device)  # one test per "shard"
            parts.append(t.update(pred[:, a:a + size], true[:, a:a + size]))
            maxima.append(t.max_null)
        merged = PermutationTest(50, 200, seed=5)
        for m in maxima[::-1]:
            merged.merge(m)
        np.testing.assert_array_equal(np.concatenate([p[0] for p in parts]), s_all)
        np.testing.assert_array_equal(np.concatenate([p[1] for p in parts]), c_all)
        np.testing.assert_array_equal(merged.max_null, whole.max_null)


def test_planted_nulls_are_calibrated():
    """Null units: p < .05 in about 5% (binomial 99.9% band), p roughly uniform."""
    pred, true = planted(n_units=4000, r=0.0, seed=4)
    stat, count = PermutationTest(50).update(pred, true)
    p = permutation_pvalues(count, N_PERMUTATIONS)
    rate = np.mean(p < 0.05)
    sd = np.sqrt(0.05 * 0.95 / p.size)
    print(f"\nnull units: {rate:.4f} with p < .05 (n = {p.size})")
    assert abs(rate - 0.05) < 3.3 * sd
    assert abs(np.mean(p) - 0.5) < 0.02
