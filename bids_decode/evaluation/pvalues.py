"""p-values of the permutation tests: per unit, Benjamini-Hochberg q-values, max-statistic FWER.

The per-unit p-value counts the permutations whose r reaches the observed one; q-values are
Benjamini-Hochberg over the finite p-values of a layer; family-wise adjusted p-values are
Westfall-Young single-step (max-statistic) over the per-permutation maxima of
:class:`bids_decode.evaluation.permutation.PermutationTest`.
"""

from __future__ import annotations

import logging

import numpy as np

from bids_decode.evaluation.correlation import on_finite

LOGGER = logging.getLogger(__name__)

#: q-value threshold that defines a decodable unit.
FDR_LEVEL = 0.05


def permutation_pvalues(n_exceed, n_permutations: int) -> np.ndarray:
    """``(1 + n_exceed) / (1 + n_permutations)``; NaN where ``n_exceed`` < 0 (NaN units).

    Parameters
    ----------
    n_exceed : ndarray of shape (n_units,), int
    n_permutations : int

    Returns
    -------
    ndarray of shape (n_units,), float64
    """
    c = np.asarray(n_exceed)
    p = (1.0 + c) / (1.0 + n_permutations)
    return np.where(c >= 0, p, np.nan)


def maxstat_pvalues(statistic, max_null) -> np.ndarray:
    """Westfall-Young single-step (max-statistic) adjusted p-values.

    ``p_fwer[u] = (1 + #{k : max_null[k] >= statistic[u]}) / (1 + n_permutations)``, where
    ``max_null[k]`` is the largest null r over all units of the family under permutation ``k``.

    Parameters
    ----------
    statistic : ndarray of shape (n_units,)
        Observed r (NaN for NaN units).
    max_null : ndarray of shape (n_permutations,)
        Per-permutation maxima over the family (merged over chunks and shards).

    Returns
    -------
    ndarray of shape (n_units,), float64 (NaN for NaN units)
    """
    stat = np.asarray(statistic, dtype=np.float64)
    srt = np.sort(np.asarray(max_null, dtype=np.float64))
    n = srt.size
    out = np.full(stat.shape, np.nan)
    ok = np.isfinite(stat)
    out[ok] = (1.0 + n - np.searchsorted(srt, stat[ok], side="left")) / (1.0 + n)
    return out


def fdr_bh(p) -> np.ndarray:
    """Benjamini-Hochberg q-values over the finite entries of ``p`` (NaN stays NaN).

    ``q_(i) = min_{j >= i} min(1, p_(j) * m / j)`` for the sorted p-values ``p_(1..m)``.

    Parameters
    ----------
    p : ndarray of shape (n,)

    Returns
    -------
    ndarray of shape (n,), float64
    """
    return on_finite(_bh_finite, p, np.nan)


def _bh_finite(p: np.ndarray) -> np.ndarray:
    m = p.size
    order = np.argsort(p, kind="stable")
    scaled = p[order] * m / np.arange(1, m + 1)
    scaled = np.minimum.accumulate(scaled[::-1])[::-1]
    q = np.empty(m)
    q[order] = np.minimum(scaled, 1.0)
    return q
