"""Metrics against scipy on small odd shapes; streaming sums equal the direct computation."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import pearsonr

from bids_decode.decoding.scaling import unit_stats
from bids_decode.evaluation.metrics import (
    UNIT_BLOCK,
    PatternAccumulator,
    _from_limbs,
    _to_limbs,
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


@pytest.fixture(scope="module")
def wide_pair():
    """Four and a bit grid blocks of units, values spanning several orders of magnitude."""
    rng = np.random.default_rng(5)
    n_units = 4 * UNIT_BLOCK + 9
    true = rng.standard_normal((11, n_units)) * np.exp(rng.uniform(-6, 6, n_units))
    pred = 0.5 * true + rng.standard_normal((11, n_units))
    return pred, true


def _accumulate(pred, true, cuts):
    acc = PatternAccumulator(pred.shape[0])
    for p, t in zip(np.split(pred, cuts, axis=1), np.split(true, cuts, axis=1)):
        acc.update(p, t)
    return acc


def test_pattern_sums_are_the_same_bits_however_split(wide_pair):
    """Chunks of any width, shards on the grid merged in any order: identical bits."""
    pred, true = wide_pair
    ref = _accumulate(pred, true, [])
    direct = np.array([[pearsonr(pred[i], true[j])[0] for j in range(11)] for i in range(11)])
    np.testing.assert_allclose(ref.correlation_matrix(), direct, rtol=0, atol=1e-12)
    for cuts in ([1], [63, 64, 65], [5, 100, 200, 250], list(range(1, pred.shape[1]))):
        np.testing.assert_array_equal(_accumulate(pred, true, cuts).correlation_matrix(),
                                      ref.correlation_matrix(), err_msg=str(cuts[:4]))
    # three shards on the grid, each streamed in its own chunks, merged in two orders
    bounds = [0, UNIT_BLOCK, 3 * UNIT_BLOCK, pred.shape[1]]
    shards = [_accumulate(pred[:, a:b], true[:, a:b], [7, 30]) for a, b in
              zip(bounds, bounds[1:])]
    states = [PatternAccumulator.from_state(s.state()) for s in shards]
    for order in ([0, 1, 2], [2, 0, 1]):
        merged = PatternAccumulator(11)
        for i in order:
            merged.merge(PatternAccumulator.from_state(states[i].state()))
        np.testing.assert_array_equal(merged.correlation_matrix(), ref.correlation_matrix())
        assert merged.n == pred.shape[1]


def test_limbs_are_exact():
    rng = np.random.default_rng(1)
    x = rng.standard_normal(1000) * np.exp(rng.uniform(-20, 40, 1000))
    limbs = _to_limbs(x)
    assert limbs.dtype == np.int64
    back = _from_limbs(limbs)
    np.testing.assert_allclose(back, x, rtol=1e-15, atol=2.0**-40)
    # integer sums of limbs do not depend on the order of the addends
    parts = _to_limbs(x[:, None] * np.ones((1, 3)))
    np.testing.assert_array_equal(parts.sum(axis=1), parts[:, ::-1].sum(axis=1))
    np.testing.assert_allclose(_from_limbs(limbs.sum(axis=1)), np.sum(x), rtol=1e-14)


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
