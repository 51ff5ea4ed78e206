"""Decoding accuracy: profile (per-unit) and pattern (per-image) correlation, identification.

Everything is float64. Pattern statistics accumulate additively over unit chunks (and shards),
so a layer never has to sit in memory whole.
"""

from __future__ import annotations

import numpy as np


def profile_correlation(pred, true) -> np.ndarray:
    """Pearson r between predicted and true values of each unit over the test images.

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
    pc = pred - pred.mean(axis=0)
    tc = true - true.mean(axis=0)
    num = (pc * tc).sum(axis=0)
    den = np.sqrt((pc**2).sum(axis=0) * (tc**2).sum(axis=0))
    tiny = np.finfo(np.float64).tiny
    scale = np.sqrt((pred**2).sum(axis=0) * (true**2).sum(axis=0)) * 1e-12
    ok = den > np.maximum(scale, tiny)
    r = np.full(pred.shape[1], np.nan)
    r[ok] = num[ok] / den[ok]
    return np.clip(r, -1.0, 1.0, out=r, where=ok)


class PatternAccumulator:
    """Sums over units that give image-by-image correlations of decoded and true patterns.

    ``C[i, j]`` = Pearson r over units between decoded image ``i`` and true image ``j``.

    Parameters
    ----------
    n_images : int
    """

    FIELDS = ("n", "sp", "st", "spp", "stt", "cross")

    def __init__(self, n_images: int):
        self.n = 0
        self.sp = np.zeros(n_images)
        self.st = np.zeros(n_images)
        self.spp = np.zeros(n_images)
        self.stt = np.zeros(n_images)
        self.cross = np.zeros((n_images, n_images))

    def update(self, pred, true) -> None:
        """Add a chunk of units.

        Parameters
        ----------
        pred, true : ndarray of shape (n_images, n_units_chunk)
        """
        pred = np.asarray(pred, dtype=np.float64)
        true = np.asarray(true, dtype=np.float64)
        self.n += pred.shape[1]
        self.sp += pred.sum(axis=1)
        self.st += true.sum(axis=1)
        self.spp += (pred**2).sum(axis=1)
        self.stt += (true**2).sum(axis=1)
        self.cross += pred @ true.T

    def merge(self, other: PatternAccumulator) -> None:
        for f in self.FIELDS:
            setattr(self, f, getattr(self, f) + getattr(other, f))

    def state(self) -> dict:
        return {f: np.asarray(getattr(self, f)) for f in self.FIELDS}

    @classmethod
    def from_state(cls, state: dict) -> PatternAccumulator:
        acc = cls(len(state["sp"]))
        for f in cls.FIELDS:
            setattr(acc, f, np.array(state[f], dtype=np.float64) if f != "n" else int(state[f]))
        return acc

    def correlation_matrix(self) -> np.ndarray:
        """``(n_images, n_images)`` Pearson r of decoded image i and true image j."""
        n = self.n
        cov = self.cross - np.outer(self.sp, self.st) / n
        vp = self.spp - self.sp**2 / n
        vt = self.stt - self.st**2 / n
        den = np.sqrt(np.outer(np.maximum(vp, 0), np.maximum(vt, 0)))
        with np.errstate(invalid="ignore", divide="ignore"):
            c = np.where(den > 0, cov / den, np.nan)
        return np.clip(c, -1, 1)


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

    Returns
    -------
    ndarray of shape (n_units,), int64
    """
    from scipy.stats import rankdata

    acc = np.asarray(accuracy, dtype=np.float64)
    ranks = np.empty(acc.shape, dtype=np.int64)
    ok = np.isfinite(acc)
    ranks[ok] = rankdata(-acc[ok], method="min").astype(np.int64)
    ranks[~ok] = int(ok.sum()) + 1
    return ranks
