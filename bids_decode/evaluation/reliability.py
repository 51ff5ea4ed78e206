"""How reliable each accuracy is: split-half reliability, noise ceiling, disattenuation.

The split-half reliability of a measure is the Spearman-Brown-corrected correlation of its two
halves; its square root is the accuracy's noise ceiling; a correlation between two measures is
disattenuated by the square root of the product of their reliabilities.
"""

from __future__ import annotations

import logging

import numpy as np

LOGGER = logging.getLogger(__name__)


def spearman_brown(r, factor: float = 2.0) -> np.ndarray:
    """Reliability of a measure ``factor`` times as long as one whose reliability is ``r``.

    ``factor * r / (1 + (factor - 1) * r)``; with two halves (factor 2), ``2r / (1 + r)``.
    NaN where the denominator is not positive.

    Parameters
    ----------
    r : float or ndarray

    Returns
    -------
    ndarray (same shape as r), float64
    """
    r = np.asarray(r, dtype=np.float64)
    den = 1.0 + (factor - 1.0) * r
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, factor * r / den, np.nan)


def ceiling(reliability) -> np.ndarray:
    """Noise ceiling of an accuracy: ``sqrt(reliability)`` where reliability > 0, else NaN."""
    rel = np.asarray(reliability, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return np.where(rel > 0, np.sqrt(np.where(rel > 0, rel, 0.0)), np.nan)


def pearson(a, b) -> float:
    """Pearson r over the entries finite in both (NaN with fewer than 3 or no variance)."""
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3:
        return float("nan")
    a = a[ok] - a[ok].mean()
    b = b[ok] - b[ok].mean()
    den = np.sqrt((a @ a) * (b @ b))
    return float(np.clip(a @ b / den, -1, 1)) if den > 0 else float("nan")


def split_half_reliability(half_a, half_b) -> float:
    """Spearman-Brown-corrected correlation across units of two half-data accuracies.

    Parameters
    ----------
    half_a, half_b : ndarray of shape (n_units,)
        Each unit's accuracy from each half of the test blocks (NaN units ignored).
    """
    return float(spearman_brown(pearson(half_a, half_b)))


def disattenuate(r, reliability_a, reliability_b) -> float:
    """``r / sqrt(reliability_a * reliability_b)``; NaN unless both reliabilities are > 0."""
    if not (reliability_a > 0 and reliability_b > 0):
        return float("nan")
    return float(r / np.sqrt(reliability_a * reliability_b))
