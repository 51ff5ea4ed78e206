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
