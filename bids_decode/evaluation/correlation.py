"""Correlations of decoded with true features, and the NaN policy of their summaries.

Profile correlation (per unit, over the test images), pattern correlation and pairwise
identification (per image, from the image-by-image correlation matrix of
:class:`bids_decode.evaluation.exact_sums.PatternAccumulator`), unit ranks. Everything is
float64; a unit's values come from its own columns only, so they are the same bits however the
units are chunked.
"""

from __future__ import annotations

import logging

import numpy as np

LOGGER = logging.getLogger(__name__)


def profile_correlation(pred, true) -> np.ndarray:
    """Pearson r between predicted and true values of each unit over the test images.

    Each unit's r is computed from its own two columns only (contiguous reductions over the
    images), so it is the same bits however the units are chunked.

    Parameters
    ----------
    pred, true : ndarray of shape (n_images, n_units)

    Returns
    -------
    ndarray of shape (n_units,), float64
        NaN where either column is constant (r is undefined).
    """
    pred = np.asarray(pred, dtype=np.float64)
    true = np.asarray(true, dtype=np.float64)
    if pred.shape != true.shape:
        raise ValueError(f"pred and true must have the same shape; got {pred.shape} and "
                         f"{true.shape}.")
    p = np.ascontiguousarray(pred.T)  # (n_units, n_images)
    t = np.ascontiguousarray(true.T)
    pc = p - p.mean(axis=1)[:, None]
    tc = t - t.mean(axis=1)[:, None]
    num = (pc * tc).sum(axis=1)
    den = np.sqrt((pc**2).sum(axis=1) * (tc**2).sum(axis=1))
    tiny = np.finfo(np.float64).tiny
    scale = np.sqrt((p**2).sum(axis=1) * (t**2).sum(axis=1)) * 1e-12
    ok = den > np.maximum(scale, tiny)
    r = np.full(p.shape[0], np.nan)
    r[ok] = num[ok] / den[ok]
    return np.clip(r, -1.0, 1.0, out=r, where=ok)


def pattern_correlation(corr: np.ndarray) -> np.ndarray:
    """Per-image correlation of decoded and true pattern (diagonal of ``corr``)."""
    return np.diag(corr).copy()


def pairwise_identification(corr: np.ndarray) -> np.ndarray:
    """Per-image pairwise identification accuracy.

    For decoded image ``i``, the fraction of other images ``j`` whose true pattern is less
    correlated with it than its own true pattern (ties count one half).

    Parameters
    ----------
    corr : ndarray of shape (n_images, n_images)

    Returns
    -------
    ndarray of shape (n_images,)
    """
    n = corr.shape[0]
    if n < 2:
        return np.full(n, np.nan)
    diag = np.diag(corr)[:, None]
    off = ~np.eye(n, dtype=bool)
    wins = (diag > corr) & off
    ties = (diag == corr) & off
    acc = (wins.sum(axis=1) + 0.5 * ties.sum(axis=1)) / (n - 1)
    acc[~np.isfinite(np.diag(corr))] = np.nan
    return acc


def rank_units(accuracy) -> np.ndarray:
    """Rank of each unit by accuracy, 1 = best; ties share the best rank; NaN units rank last.

    Parameters
    ----------
    accuracy : ndarray of shape (n_units,)
        Profile correlation of each unit (NaN where undefined).

    Returns
    -------
    ndarray of shape (n_units,), int64
    """
    from scipy.stats import rankdata

    acc = np.asarray(accuracy, dtype=np.float64)
    last = int(np.isfinite(acc).sum()) + 1
    return on_finite(lambda a: rankdata(-a, method="min"), acc, last, np.int64)


def on_finite(fn, x, fill, dtype=np.float64) -> np.ndarray:
    """``fn`` applied to the finite entries of ``x`` together; ``fill`` elsewhere.

    Parameters
    ----------
    fn : callable, ndarray of shape (n_finite,) -> ndarray of shape (n_finite,)
    x : ndarray of shape (n,)
    fill : scalar
    dtype : numpy dtype of the result

    Returns
    -------
    ndarray of shape (n,)
    """
    x = np.asarray(x, dtype=np.float64)
    ok = np.isfinite(x)
    out = np.full(x.shape, fill, dtype=dtype)
    out[ok] = fn(x[ok])
    return out


def nanstat(fn, a) -> float:
    """``fn`` over a float64 copy of ``a``; NaN when no entry is finite (no warning)."""
    a = np.asarray(a, dtype=np.float64)
    return float(fn(a)) if np.isfinite(a).any() else float("nan")
