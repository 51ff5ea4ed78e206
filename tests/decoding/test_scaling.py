"""Z-scoring with the training statistics: constant units set apart, restore inverts apply."""

from __future__ import annotations

import numpy as np

from bids_decode.decoding import UnitScale


def test_unit_scale_uses_reference_statistics_and_sets_constant_units_apart():
    rng = np.random.default_rng(5)
    train = rng.standard_normal((17, 6)) * [1.0, 2.0, 0.5, 3.0, 1.0, 7.0] + [0, 1, -2, 5, 4, 9]
    train[:, 4] = 4.0  # a constant unit
    test = rng.standard_normal((5, 6)) * 2.0 + 1.0
    scale = UnitScale.of(train)
    np.testing.assert_array_equal(scale.const, [False, False, False, False, True, False])
    z = scale.apply(train)
    np.testing.assert_allclose(z[:, ~scale.const].mean(axis=0), 0.0, atol=1e-14)
    np.testing.assert_allclose(z[:, ~scale.const].std(axis=0, ddof=1), 1.0, rtol=1e-13)
    assert (z[:, 4] == 0.0).all()
    # test samples take the training statistics, not their own
    zt = scale.apply(test, zero_constant=False)
    want = (test - train.mean(axis=0)) / np.where(scale.const, 1.0, train.std(axis=0, ddof=1))
    np.testing.assert_allclose(zt, want, rtol=1e-13)
    np.testing.assert_allclose(scale.restore(zt), test, rtol=1e-13, atol=1e-13)
    part = scale.slice(2, 5)
    np.testing.assert_array_equal(part.apply(test[:, 2:5]), scale.apply(test)[:, 2:5])
