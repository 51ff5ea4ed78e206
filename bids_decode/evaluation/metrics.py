"""Decoding accuracy as metrics: per-unit profile correlation, per-image pattern identification.

:class:`ProfileCorrelation` and :class:`PatternIdentification` are the :class:`Metric`
subclasses of :mod:`bids_decode.evaluation.metric` that score every layer (the permutation
tests and reliabilities are :class:`bids_decode.evaluation.unit_statistics.UnitStatistics`).
Everything is float64.
"""

from __future__ import annotations

import logging

import numpy as np

from bids_decode.evaluation.correlation import (
    nanstat,
    pairwise_identification,
    pattern_correlation,
    profile_correlation,
    rank_units,
)
from bids_decode.evaluation.exact_sums import PatternAccumulator
from bids_decode.evaluation.metric import Metric, Output, Result

LOGGER = logging.getLogger(__name__)


def unit_stats(Y) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, SD (ddof=1) and constancy of each unit over samples, for z-scoring.

    Each unit's statistics come from its own column only (a contiguous reduction), so they are
    the same bits however the units are chunked.

    Parameters
    ----------
    Y : ndarray of shape (n_samples, n_units)

    Returns
    -------
    mean : ndarray of shape (n_units,), float64
    sd : ndarray of shape (n_units,), float64
        1 for constant units.
    const : ndarray of shape (n_units,), bool
        Units whose SD is below ``1e-12`` times max(1, |mean|) (or with one sample only).
    """
    Yt = np.ascontiguousarray(np.asarray(Y).T, dtype=np.float64)
    mean = Yt.mean(axis=1)
    if Yt.shape[1] > 1:
        sd = Yt.std(axis=1, ddof=1)
    else:
        sd = np.zeros(Yt.shape[0])
    const = ~(sd > 1e-12 * np.maximum(1.0, np.abs(mean)))
    sd[const] = 1.0
    return mean, sd, const


# ------------------------------------------------------------------ z-scoring with unit stats

class UnitScale:
    """Each unit's mean, SD and constancy over reference samples (:func:`unit_stats`).

    The one place where units are z-scored and where constant units are set apart: the
    participant level scales with the training samples, the Averaged subject with the
    reference images of the features file.

    Parameters
    ----------
    mean, sd : ndarray of shape (n_units,), float64
    const : ndarray of shape (n_units,), bool
    """

    def __init__(self, mean: np.ndarray, sd: np.ndarray, const: np.ndarray):
        self.mean, self.sd, self.const = mean, sd, const

    @classmethod
    def of(cls, Y) -> UnitScale:
        """The statistics of ``Y`` of shape (n_samples, n_units)."""
        return cls(*unit_stats(Y))

    def slice(self, start: int, stop: int) -> UnitScale:
        return UnitScale(self.mean[start:stop], self.sd[start:stop], self.const[start:stop])

    def apply(self, Y, *, zero_constant: bool = True) -> np.ndarray:
        """``(Y - mean) / sd``; constant units set to 0 unless ``zero_constant`` is False.

        Parameters
        ----------
        Y : ndarray of shape (n_samples, n_units)

        Returns
        -------
        ndarray of shape (n_samples, n_units)
        """
        Z = (Y - self.mean) / self.sd
        if zero_constant and self.const.any():
            Z[:, self.const] = 0.0
        return Z

    def restore(self, Z) -> np.ndarray:
        """``Z * sd + mean``: back to the features' own units."""
        return Z * self.sd + self.mean


class ProfileCorrelation(Metric):
    """Per-unit accuracy: :func:`profile_correlation` over the test images, and its ranks.

    Parameters
    ----------
    lo, hi : int
    dtype : numpy dtype
        Precision the accuracies are kept in before the summary (float32 in work files).
    """

    DATASETS = {
        "accuracy": Output("Pearson r between decoded and true values over the test images "
                           "(NaN for constant units)"),
        "rank": Output("Rank of the unit by accuracy (1 = best; NaN units last)"),
    }
    COLUMNS = {
        "n_constant_units": "Units constant over the training images (NaN accuracy)",
        "profile_r_mean": "Mean over units of the Pearson r between decoded and true values "
                          "over test images (NaN units ignored)",
        "profile_r_median": "Median of the same",
    }
    ATTRS = ("n_constant_units", "profile_r_mean")

    def __init__(self, lo: int, hi: int, dtype=np.float32):
        super().__init__(lo, hi)
        self.dtype = np.dtype(dtype)
        self.values = np.full(hi - lo, np.nan, dtype=self.dtype)
        self.n_constant = 0

    @classmethod
    def build(cls, lo, hi, *, n_images, config, halves, **settings) -> ProfileCorrelation:
        return cls(lo, hi, np.float32)

    def update(self, start, stop, pred, true, *, constant=None, halves=None) -> None:
        self.values[self._local(start, stop)] = profile_correlation(pred, true)
        if constant is not None:
            self.n_constant += int(np.count_nonzero(constant))

    def spawn(self, lo, hi) -> ProfileCorrelation:
        return ProfileCorrelation(lo, hi, self.dtype)

    def merge(self, other: ProfileCorrelation) -> None:
        self.values[self._local(other.lo, other.hi)] = other.values
        self.n_constant += other.n_constant

    def save(self, work) -> None:
        work.create_dataset("accuracy", data=self.values)
        work.attrs["n_constant_units"] = self.n_constant

    def _read(self, work) -> None:
        self.values[:] = work["accuracy"][()]
        self.n_constant = int(work.attrs["n_constant_units"])

    def finalize(self, done: dict) -> Result:
        acc = self.values
        cols = {"n_constant_units": self.n_constant,
                "profile_r_mean": nanstat(np.nanmean, acc),
                "profile_r_median": nanstat(np.nanmedian, acc)}
        return Result({"accuracy": acc.astype(np.float32), "rank": rank_units(acc)}, cols,
                      {k: cols[k] for k in self.ATTRS})


class PatternIdentification(Metric):
    """Per-image pattern correlation and pairwise identification (:class:`PatternAccumulator`).

    Parameters
    ----------
    lo, hi : int
    n_images : int
    """

    DATASETS = {
        "pattern_r": Output("Pearson r over units between decoded and true pattern of each "
                            "test image", per="image"),
        "identification": Output("Pairwise identification accuracy of each test image",
                                 per="image"),
    }
    COLUMNS = {
        "pattern_r_mean": "Mean over test images of the Pearson r between decoded and true "
                          "patterns (z-scored with training statistics)",
        "identification_accuracy": "Mean pairwise identification accuracy (chance 0.5)",
    }
    ATTRS = ("pattern_r_mean", "identification_accuracy")

    def __init__(self, lo: int, hi: int, n_images: int):
        super().__init__(lo, hi)
        self.n_images = int(n_images)
        self.sums = PatternAccumulator(n_images)

    @classmethod
    def build(cls, lo, hi, *, n_images, config, halves, **settings) -> PatternIdentification:
        return cls(lo, hi, n_images)

    def update(self, start, stop, pred, true, *, constant=None, halves=None) -> None:
        self._local(start, stop)
        self.sums.update(pred, true)

    def spawn(self, lo, hi) -> PatternIdentification:
        return PatternIdentification(lo, hi, self.n_images)

    def merge(self, other: PatternIdentification) -> None:
        self._local(other.lo, other.hi)
        self.sums.merge(other.sums)

    def save(self, work) -> None:
        g = work.create_group("pattern")
        for k, v in self.sums.state().items():
            g.create_dataset(k, data=v)

    def _read(self, work) -> None:
        self.sums = PatternAccumulator.from_state(
            {k: work["pattern"][k][()] for k in PatternAccumulator.FIELDS})

    def finalize(self, done: dict) -> Result:
        corr = self.sums.correlation_matrix()
        pattern_r = pattern_correlation(corr)
        ident = pairwise_identification(corr)
        cols = {"pattern_r_mean": nanstat(np.nanmean, pattern_r),
                "identification_accuracy": nanstat(np.nanmean, ident)}
        return Result({"pattern_r": pattern_r, "identification": ident}, cols, dict(cols))
