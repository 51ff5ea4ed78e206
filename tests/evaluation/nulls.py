"""Decoded and true values with a planted correlation per unit, and brute-force null
correlations: the references of the permutation and p-value tests."""

from __future__ import annotations

import numpy as np


def planted(n_images=50, n_units=300, r=0.0, seed=0):
    """Decoded and true values whose population correlation is ``r`` (per unit)."""
    rng = np.random.default_rng(seed)
    r = np.broadcast_to(np.asarray(r, dtype=float), (n_units,))
    true = rng.standard_normal((n_images, n_units))
    pred = r * true + np.sqrt(1 - r**2) * rng.standard_normal((n_images, n_units))
    return pred * rng.uniform(0.5, 2, n_units) + 3.0, true


def corr(a, b):
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.corrcoef(a, b)[0, 1]


def brute_null(pred, true, perms):
    out = np.empty((pred.shape[1], len(perms)))
    for u in range(pred.shape[1]):
        for k, p in enumerate(perms):
            out[u, k] = corr(pred[p, u], true[:, u])
    return out
