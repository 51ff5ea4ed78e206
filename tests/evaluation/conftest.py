"""Decoded and true values of small odd shapes, shared by the evaluation tests."""

from __future__ import annotations

import numpy as np
import pytest

from bids_decode.utils.grid import UNIT_BLOCK


@pytest.fixture
def pair():
    rng = np.random.default_rng(7)
    true = rng.standard_normal((13, 29))
    pred = 0.6 * true + rng.standard_normal((13, 29))
    return pred, true


@pytest.fixture(scope="module")
def wide_pair():
    """Four and a bit grid blocks of units, values spanning several orders of magnitude."""
    rng = np.random.default_rng(5)
    n_units = 4 * UNIT_BLOCK + 9
    true = rng.standard_normal((11, n_units)) * np.exp(rng.uniform(-6, 6, n_units))
    pred = 0.5 * true + rng.standard_normal((11, n_units))
    return pred, true
