"""Z-scoring the targets with the training statistics (a decoding step).

:class:`UnitScale` holds each unit's mean, SD and constancy over reference samples
(:func:`unit_stats`): the participant level scales the features with the training samples'
statistics before decoding and restores the decoded ones after; the group level's Averaged
subject scales with the features file's reference images. Constant units (SD below
``1e-12`` times max(1, |mean|)) are set apart here, once.
"""

from __future__ import annotations

import logging

import numpy as np

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
