"""Split-half reliability, Spearman-Brown, noise ceiling and disattenuation on planted values."""

from __future__ import annotations

import numpy as np
import pytest

from bids_decode.evaluation.reliability import (
    ceiling,
    disattenuate,
    spearman_brown,
    split_half_reliability,
)
from bids_decode.inputs.samples import half_averages


def test_spearman_brown_ceiling_disattenuation():
    np.testing.assert_allclose(spearman_brown([0.0, 0.5, 1.0]), [0.0, 2 / 3, 1.0])
    assert np.isnan(spearman_brown(-1.0))
    np.testing.assert_allclose(ceiling([0.81, 0.0, -0.2]), [0.9, np.nan, np.nan])
    assert disattenuate(0.4, 0.5, 0.8) == pytest.approx(0.4 / np.sqrt(0.4))
    assert np.isnan(disattenuate(0.4, -0.1, 0.8))


def test_split_half_reliability_recovers_planted_reliability():
    """Two noisy halves of a measure with true-score variance share s: SB(r_halves) = the
    full measure's reliability 2s / (2s + 1) (unit noise variance per half)."""
    rng = np.random.default_rng(1)
    s = 1.5
    truth = rng.standard_normal(20000) * np.sqrt(s)
    a = truth + rng.standard_normal(truth.size)
    b = truth + rng.standard_normal(truth.size)
    full = (a + b) / 2
    expected = s / (s + 0.5)
    assert split_half_reliability(a, b) == pytest.approx(expected, abs=0.01)
    assert np.corrcoef(full, truth)[0, 1] ** 2 == pytest.approx(expected, abs=0.01)


def test_half_averages_split_odd_and_even_presentations():
    X = np.arange(12, dtype=np.float32)[:, None] * [1.0, -1.0]
    image = np.array([0, 1, 0, 2, 1, 0, 2, 1, 0, 2, 1, 2])
    h = half_averages(X, image, 3)
    assert h.shape == (2, 3, 2)
    # image 0 is shown in blocks 0, 2, 5, 8: odd presentations 0, 5; even 2, 8
    np.testing.assert_allclose(h[:, 0, 0], [2.5, 5.0])
    np.testing.assert_allclose(h[:, 1, 1], [-(1 + 7) / 2, -(4 + 10) / 2])
    assert half_averages(X[:3], image[:3], 3) is None  # image 2 shown once
