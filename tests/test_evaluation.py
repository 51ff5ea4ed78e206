"""Metrics against scipy on small odd shapes; streaming sums equal the direct computation."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import pearsonr

from bids_decode.evaluation import (
    PatternAccumulator,
    pairwise_identification,
    pattern_correlation,
    profile_correlation,
    rank_units,
)


@pytest.fixture
def pair():
    rng = np.random.default_rng(7)
    true = rng.standard_normal((13, 29))
    pred = 0.6 * true + rng.standard_normal((13, 29))
    return pred, true


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


def test_pattern_accumulator_in_chunks_equals_direct(pair):
    pred, true = pair
    acc = PatternAccumulator(13)
    for s in range(0, 29, 8):
        acc.update(pred[:, s:s + 8], true[:, s:s + 8])
    other = PatternAccumulator(13)
    other.update(pred[:, :4], true[:, :4])
    half = PatternAccumulator(13)
    half.update(pred[:, 4:], true[:, 4:])
    other.merge(half)
    direct = np.array([[pearsonr(pred[i], true[j])[0] for j in range(13)] for i in range(13)])
    np.testing.assert_allclose(acc.correlation_matrix(), direct, atol=1e-10)
    np.testing.assert_allclose(other.correlation_matrix(), direct, atol=1e-10)
    np.testing.assert_allclose(pattern_correlation(direct), np.diag(direct))
    restored = PatternAccumulator.from_state(acc.state())
    np.testing.assert_allclose(restored.correlation_matrix(), direct, atol=1e-10)


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


def test_identification_ties_count_one_half():
    """Planted ties between an image's own correlation and others': each counts 1/2."""
    c = np.array([[0.5, 0.5, 0.2, 0.9],   # tie, win, loss     -> 1.5 / 3
                  [0.1, 0.4, 0.4, 0.4],   # win, tie, tie      -> 2 / 3
                  [0.3, 0.3, 0.3, 0.3],   # tie, tie, tie      -> 1.5 / 3
                  [0.0, 0.0, 0.0, 1.0]])  # win, win, win      -> 3 / 3
    np.testing.assert_allclose(pairwise_identification(c), [0.5, 2 / 3, 0.5, 1.0])
    c[2, 2] = np.nan  # an undefined own correlation is NaN, not a count
    assert np.isnan(pairwise_identification(c)[2])
