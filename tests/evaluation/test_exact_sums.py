"""Exact sums over units: limbs, and pattern sums that equal the direct computation bit for bit
however the units are chunked, sharded or merged."""

from __future__ import annotations

import numpy as np
from scipy.stats import pearsonr

from bids_decode.evaluation.correlation import pattern_correlation
from bids_decode.evaluation.exact_sums import PatternAccumulator, from_limbs, to_limbs
from bids_decode.utils.grid import UNIT_BLOCK


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
    limbs = to_limbs(x)
    assert limbs.dtype == np.int64
    back = from_limbs(limbs)
    np.testing.assert_allclose(back, x, rtol=1e-15, atol=2.0**-40)
    # integer sums of limbs do not depend on the order of the addends
    parts = to_limbs(x[:, None] * np.ones((1, 3)))
    np.testing.assert_array_equal(parts.sum(axis=1), parts[:, ::-1].sum(axis=1))
    np.testing.assert_allclose(from_limbs(limbs.sum(axis=1)), np.sum(x), rtol=1e-14)
