"""Permutation tests and split-half reliability of each unit's accuracy, as a layer's metric.

:class:`UnitStatistics` runs :class:`bids_decode.evaluation.permutation.PermutationTest` and
the split-half reliability (:mod:`bids_decode.evaluation.reliability`) chunk by chunk, keeps
them in the work files of the unit shards and finalizes p-values, q-values, family-wise
p-values (:mod:`bids_decode.evaluation.pvalues`), reliabilities and noise ceilings.
"""

from __future__ import annotations

import logging

import numpy as np

from bids_decode.evaluation.correlation import nanstat, profile_correlation
from bids_decode.evaluation.metric import Metric, Output, Result
from bids_decode.evaluation.permutation import PermutationTest
from bids_decode.evaluation.pvalues import FDR_LEVEL, fdr_bh, maxstat_pvalues, permutation_pvalues
from bids_decode.evaluation.reliability import ceiling, spearman_brown

LOGGER = logging.getLogger(__name__)


class UnitStatistics(Metric):
    """Permutation tests and split-half reliability of each unit's accuracy, as a metric.

    A shard fills it chunk by chunk (:meth:`update`) and saves it into its work file
    (``stats`` group); the layer's metric merges the shards and :meth:`finalize` gives
    p-values, q-values, family-wise p-values, reliabilities and noise ceilings.

    Parameters
    ----------
    lo, hi : int
        Units of the layer covered.
    n_permutations, seed : int
        Permutation test (0 permutations: none).
    halves : bool
        Whether decoded values of the two split halves are given to :meth:`update`.
    device : str
    n_jobs : int or None
    mem_bytes : int
        Memory for the permutation kernel's output (see :class:`PermutationTest`).
    """

    DATASETS = {
        "p_value": Output("One-sided permutation p-value of the accuracy (H0: r <= 0)"),
        "q_value": Output("Benjamini-Hochberg q-value over the layer's units"),
        "p_fwer": Output("Max-statistic (Westfall-Young) family-wise adjusted p-value"),
        "reliability": Output("Split-half reliability of the decoded values (odd vs even "
                              "presentations, Spearman-Brown corrected)"),
        "accuracy_ceiling": Output("sqrt(reliability): the highest accuracy the noise allows"),
        "accuracy_normalised": Output("accuracy / accuracy_ceiling"),
        "accuracy_halves": Output("Accuracy from the odd and from the even presentations "
                                  "(first axis of length 2)"),
    }
    COLUMNS = {
        "n_decodable": "Units whose Benjamini-Hochberg q-value (over the layer's units, from "
                       "one-sided permutation p-values) is below 0.05",
        "fraction_decodable": "n_decodable / n_units (NaN units count as not decodable)",
        "reliability_mean": "Mean over units of the split-half reliability of the decoded "
                            "values (odd vs even presentations, Spearman-Brown corrected)",
        "accuracy_ceiling_mean": "Mean over units of sqrt(reliability), the highest accuracy "
                                 "the measurement noise allows",
    }

    def __init__(self, lo: int, hi: int, *, n_permutations: int, seed: int, halves: bool,
                 device: str = "cpu", n_jobs: int | None = None, mem_bytes: int = 256 * 2**20):
        super().__init__(lo, hi)
        n = hi - lo
        self.n_permutations, self.seed = int(n_permutations), int(seed)
        self._settings = {"device": device, "n_jobs": n_jobs, "mem_bytes": mem_bytes}
        self._test: PermutationTest | None = None
        self.statistic = np.full(n, np.nan)
        self.n_exceed = np.full(n, -1, dtype=np.int32)
        self.max_null = np.full(self.n_permutations, -np.inf)
        self.half_accuracy = np.full((2, n), np.nan, dtype=np.float32) if halves else None
        self.reliability = np.full(n, np.nan, dtype=np.float32) if halves else None

    @classmethod
    def build(cls, lo, hi, *, n_images, config, halves, **settings) -> UnitStatistics:
        return cls(lo, hi, n_permutations=config.n_permutations, seed=config.permutation_seed,
                   halves=halves, **settings)

    def update(self, start, stop, pred, true, *, constant=None, halves=None) -> None:
        sl = self._local(start, stop)
        if self.n_permutations > 0:
            if self._test is None:
                self._test = PermutationTest(len(pred), self.n_permutations, self.seed,
                                             **self._settings)
            self.statistic[sl], self.n_exceed[sl] = self._test.update(pred, true)
            np.maximum(self.max_null, self._test.max_null, out=self.max_null)
        if self.reliability is not None and halves is not None:
            for h in (0, 1):
                self.half_accuracy[h, sl] = profile_correlation(halves[h], true)
            self.reliability[sl] = spearman_brown(profile_correlation(halves[0], halves[1]))

    def spawn(self, lo, hi) -> UnitStatistics:
        return UnitStatistics(lo, hi, n_permutations=self.n_permutations, seed=self.seed,
                              halves=True, **self._settings)

    def merge(self, other: UnitStatistics) -> None:
        sl = self._local(other.lo, other.hi)
        if other.reliability is None:
            self.half_accuracy = self.reliability = None  # reliability needs every shard
        elif self.reliability is not None:
            self.half_accuracy[:, sl] = other.half_accuracy
            self.reliability[sl] = other.reliability
        if self.n_permutations and other.n_permutations:
            self.statistic[sl], self.n_exceed[sl] = other.statistic, other.n_exceed
            np.maximum(self.max_null, other.max_null, out=self.max_null)

    def save(self, work) -> None:
        g = work.create_group("stats")
        g.attrs.update({"n_permutations": self.n_permutations, "permutation_seed": self.seed})
        if self.n_permutations > 0:
            g.create_dataset("statistic", data=self.statistic)
            g.create_dataset("n_exceed", data=self.n_exceed)
            g.create_dataset("max_null", data=self.max_null)
        if self.reliability is not None:
            g.create_dataset("half_accuracy", data=self.half_accuracy)
            g.create_dataset("reliability", data=self.reliability)

    def _read(self, work) -> None:
        g = work.get("stats")
        if g is None or "reliability" not in g:
            self.half_accuracy = self.reliability = None
        else:
            self.half_accuracy[...] = g["half_accuracy"][()]
            self.reliability[...] = g["reliability"][()]
        if self.n_permutations and g is not None and "n_exceed" in g:
            self.statistic[...] = g["statistic"][()]
            self.n_exceed[...] = g["n_exceed"][()]
            np.maximum(self.max_null, g["max_null"][()], out=self.max_null)
        else:
            self.n_permutations = 0

    def finalize(self, done: dict) -> Result:
        """Needs ``done["accuracy"]``
        (:class:`~bids_decode.evaluation.metrics.ProfileCorrelation`)."""
        arrays: dict[str, np.ndarray] = {}
        n_units = self.hi - self.lo
        cols = dict.fromkeys(self.COLUMNS, float("nan"))
        if self.n_permutations:
            p = permutation_pvalues(self.n_exceed, self.n_permutations)
            q = fdr_bh(p)
            arrays["p_value"] = p.astype(np.float32)
            arrays["q_value"] = q.astype(np.float32)
            arrays["p_fwer"] = maxstat_pvalues(self.statistic, self.max_null).astype(np.float32)
            n_dec = int(np.sum(q < FDR_LEVEL))
            cols["n_decodable"] = n_dec
            cols["fraction_decodable"] = n_dec / n_units if n_units else float("nan")
        if self.reliability is not None:
            rel = self.reliability.astype(np.float64)
            ceil = ceiling(rel)
            with np.errstate(invalid="ignore", divide="ignore"):
                norm = np.asarray(done["accuracy"], dtype=np.float64) / ceil
            arrays.update({"reliability": self.reliability,
                           "accuracy_ceiling": ceil.astype(np.float32),
                           "accuracy_normalised": norm.astype(np.float32),
                           "accuracy_halves": self.half_accuracy})
            cols["reliability_mean"] = nanstat(np.nanmean, rel)
            cols["accuracy_ceiling_mean"] = nanstat(np.nanmean, ceil)
        attrs = {"n_permutations": self.n_permutations, "permutation_seed": self.seed,
                 "fdr_level": FDR_LEVEL}
        return Result(arrays, cols, attrs)
