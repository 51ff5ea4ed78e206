"""Profile and pattern correlation, identification and ranks against scipy and brute force."""

from __future__ import annotations

import numpy as np
from scipy.stats import pearsonr

from bids_decode.decoding.scaling import unit_stats
from bids_decode.evaluation.correlation import (
    pairwise_identification,
    profile_correlation,
    rank_units,
)


def test_profile_correlation_matches_scipy(pair):
    pred, true = pair
    r = profile_correlation(pred, true)
    ref = [pearsonr(pred[:, j], true[:, j])[0] for j in range(true.shape[1])]
    np.testing.assert_allclose(r, ref, atol=1e-12)


def test_profile_correlation_constant_is_nan(pair):
    pred, true = pair
    pred = pred.copy()
    pred[:, 3] = 2.5
    true = true.copy()
    true[:, 5] = -1.0
    r = profile_correlation(pred, true)
    assert np.isnan(r[3]) and np.isnan(r[5])
    assert np.isfinite(np.delete(r, [3, 5])).all()


def test_pairwise_identification_brute_force(pair):
    pred, true = pair
    c = np.corrcoef(pred, true)[:13, 13:]
    got = pairwise_identification(c)
    want = [np.mean([c[i, i] > c[i, j] for j in range(13) if j != i]) for i in range(13)]
    np.testing.assert_allclose(got, want)
    assert pairwise_identification(np.eye(4)).tolist() == [1.0] * 4
    assert pairwise_identification(np.ones((3, 3))).tolist() == [0.5] * 3


def test_rank_units():
    acc = np.array([0.1, np.nan, 0.5, 0.5, -0.2])
    assert rank_units(acc).tolist() == [3, 5, 1, 1, 4]


def test_per_unit_metrics_do_not_depend_on_the_chunk(wide_pair):
    """A unit's r and z-scoring statistics are the same bits alone or among others (a
    one-column chunk is a contiguous reduction in numpy, a wide one is not)."""
    pred, true = wide_pair
    r = profile_correlation(pred, true)
    m, sd, c = unit_stats(true)
    for u in (0, 1, 100, pred.shape[1] - 1):
        assert profile_correlation(pred[:, u:u + 1], true[:, u:u + 1])[0] == r[u]
        mu1, sd1, c1 = unit_stats(true[:, u:u + 1])
        assert (mu1[0], sd1[0], c1[0]) == (m[u], sd[u], c[u])
    np.testing.assert_allclose(sd, true.std(axis=0, ddof=1), rtol=1e-12)


def test_identification_ties_count_one_half():
    """Planted ties between an image's own correlation and others': each counts 1/2."""
    c = np.array([[0.5, 0.5, 0.2, 0.9],   # tie, win, loss     -> 1.5 / 3
                  [0.1, 0.4, 0.4, 0.4],   # win, tie, tie      -> 2 / 3
                  [0.3, 0.3, 0.3, 0.3],   # tie, tie, tie      -> 1.5 / 3
                  [0.0, 0.0, 0.0, 1.0]])  # win, win, win      -> 3 / 3
    np.testing.assert_allclose(pairwise_identification(c), [0.5, 2 / 3, 0.5, 1.0])
    c[2, 2] = np.nan  # an undefined own correlation is NaN, not a count
    assert np.isnan(pairwise_identification(c)[2])
