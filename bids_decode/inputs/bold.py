"""Reading a run's BOLD time series at the mask voxels: one opener of 4-D runs
(:func:`bold_image`), the masked series on the run's own grid, or resampled onto the reference
grid through fMRIPrep's transforms or the images' affines (:func:`resampled_timeseries`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import nibabel as nib
import numpy as np

from bids_decode.errors import DataError, reading_bold
from bids_decode.inputs.layout import Run

LOGGER = logging.getLogger(__name__)


@contextmanager
def bold_image(path: Path) -> Iterator[nib.spatialimages.SpatialImage]:
    """The 4-D BOLD run at ``path``, opened so that reading it inside the ``with`` block turns
    a damaged file into a :class:`DataError` naming it (:func:`errors.reading_bold`).

    Raises
    ------
    DataError
        The image is not 4-D, or nibabel cannot read it.
    """
    with reading_bold(path):
        img = nib.load(str(path))
        if img.ndim != 4:
            raise DataError(f"The BOLD run {path} is {img.ndim}-D (shape {img.shape}); "
                            "a 4-D time series is expected.")
        yield img


def load_run_timeseries(run: Run, mask: np.ndarray, ref_shape: tuple[int, ...]) -> np.ndarray:
    """The masked time series of a run, on its own grid or resampled onto the reference grid
    (:func:`resampled_timeseries`).

    Parameters
    ----------
    run : layout.Run
    mask : ndarray of shape ref_shape[:3], bool
    ref_shape : tuple
        Shape of the reference grid (the first run's, or the masks' for resampled runs).

    Returns
    -------
    ndarray of shape (n_volumes, n_voxels_in_mask), float32
    """
    if run.transforms is not None and run.transforms.resample:  # another grid, or fMRIPrep
        return resampled_timeseries(run, mask)
    with bold_image(run.bold) as img:
        if img.shape[:3] != tuple(ref_shape[:3]):
            raise DataError(
                f"The BOLD run {run.bold} has grid {img.shape[:3]}, the first run has "
                f"{tuple(ref_shape[:3])}. All runs of a subject must share one grid (use "
                "preprocessed, coregistered runs)."
            )
        raw = img.dataobj.get_unscaled() if hasattr(img.dataobj, "get_unscaled") \
            else np.asanyarray(img.dataobj)
        ts = raw[mask].T  # mask first, then cast: memory ~ one raw run + the ROI voxels
        del raw
        slope, inter = getattr(img.dataobj, "slope", 1.0), getattr(img.dataobj, "inter", 0.0)
    ts = ts.astype(np.float32)
    if slope is not None and np.isfinite(slope) and slope not in (0.0, 1.0):
        ts *= np.float32(slope)
    if inter is not None and np.isfinite(inter) and inter != 0.0:
        ts += np.float32(inter)
    return ts


def resampled_timeseries(run, mask: np.ndarray) -> np.ndarray:
    """The run's time series at the reference grid's ``mask`` voxels, in one interpolation.

    Each volume ``t`` is sampled (trilinear) at ``inv(A_run) @ H_t @ C @ A_ref @ ijk`` for the
    mask voxels ``ijk``; samples outside the run's field of view are NaN (the voxel is then
    dropped, with a warning, by :func:`samples.build_samples`).

    Parameters
    ----------
    run : layout.Run
        With ``run.transforms.resample`` and ``target_affine`` set.
    mask : ndarray of shape ref_shape[:3], bool

    Returns
    -------
    ndarray of shape (n_volumes, n_voxels_in_mask), float32
    """
    from scipy.ndimage import map_coordinates

    xf = run.transforms
    with bold_image(run.bold) as img:
        data = np.asanyarray(img.dataobj)
    n_vols = data.shape[3]
    ijk = np.vstack([np.array(np.nonzero(mask), dtype=np.float64),
                     np.ones((1, int(mask.sum())))])  # (4, n_vox) in C order
    target = np.asarray(xf.target_affine, dtype=np.float64)
    world = xf.coreg_matrix() @ target @ ijk  # boldref world coordinates (4, n_vox)
    # head motion is corrected only with the coregistration (fMRIPrep's minimal outputs);
    # runs that are merely on another grid (no coreg) are sampled through their affine
    hmc = xf.hmc_matrices(n_vols, run.bold) if xf.coreg is not None \
        else np.broadcast_to(np.eye(4), (n_vols, 4, 4))
    to_vox = np.linalg.inv(img.affine) @ hmc  # (n, 4, 4)
    out = np.empty((n_vols, ijk.shape[1]), dtype=np.float32)
    for t in range(n_vols):
        coords = (to_vox[t] @ world)[:3]
        map_coordinates(data[..., t], coords, output=out[t], order=1, mode="constant",
                        cval=np.nan, prefilter=False)
    return out
