"""The samples of one ROI, z-scored with training statistics: what decoding and encoding
share (:func:`prepare_roi`)."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bids_decode.errors import DataError

LOGGER = logging.getLogger(__name__)


@dataclass
class RoiData:
    """z-scored samples of one ROI (training statistics only)."""

    name: str
    X_train: np.ndarray  # (n_train, n_vox)
    X_test: np.ndarray  # (n_test, n_vox)
    n_voxels: int
    files: list[str]
    digest: str
    X_test_halves: np.ndarray | None = None  # (2 * n_test, n_vox): odd, then even presentations
    #: (n_vox,) int64: each voxel's flat index on the masks' grid (``samples.voxels``)
    voxel_index: np.ndarray | None = None


def zscore_train(X_train, X_test):
    """z-score columns with the training mean and std (constant columns -> 0)."""
    mu = X_train.mean(axis=0, dtype=np.float64)
    sd = X_train.std(axis=0, ddof=1, dtype=np.float64)
    sd[sd < 1e-8] = np.inf
    return ((X_train - mu) / sd).astype(np.float32), ((X_test - mu) / sd).astype(np.float32)


def prepare_roi(name: str, mask: np.ndarray, samples, files: list[Path]) -> RoiData:
    """The ROI's voxels of ``samples`` (those of ``mask``), z-scored with training statistics."""
    flat = np.flatnonzero(mask.ravel())
    cols = np.flatnonzero(np.isin(samples.voxels, flat))
    if cols.size == 0:
        raise DataError(
            f"ROI {name} has no usable voxels after intersecting its mask with the BOLD data "
            f"(mask files: {[str(f) for f in files][:2]}...). Check the masks' grid or choose "
            "other ROIs with --roi."
        )
    X_train, X_test = zscore_train(samples.X_train[:, cols], samples.X_test[:, cols])
    halves = None
    if samples.test_halves is not None:
        H = samples.test_halves[:, :, cols].reshape(-1, cols.size)
        halves = zscore_train(samples.X_train[:, cols], H)[1]
    voxel_index = np.asarray(samples.voxels[cols], dtype=np.int64)
    digest = hashlib.sha1(samples.voxels[cols].tobytes()).hexdigest()[:12]
    return RoiData(name, X_train, X_test, int(cols.size), [str(f) for f in files], digest,
                   halves, voxel_index)
