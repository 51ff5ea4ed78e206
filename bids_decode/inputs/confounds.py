"""Confound regressors of a run (``--confounds``): fMRIPrep's confounds table, or the six
motion parameters derived from its head-motion transforms.

A confound set is a name of :data:`CONFOUND_SETS` or a comma-separated list of the table's
columns. Runs with a confounds table (fMRIPrep's full outputs) give its columns
(:func:`load_confounds`); runs with fMRIPrep's head-motion transforms only (its minimal outputs)
give the six rigid-body parameters of each volume (:func:`motion_confounds`, columns
:data:`MOTION6`), read from the same transforms that resample the run
(:mod:`bids_decode.inputs.fmriprep`).
"""

from __future__ import annotations

import logging

import nibabel as nib
import numpy as np
import pandas as pd

from bids_decode.errors import DataError
from bids_decode.inputs.layout import Run

LOGGER = logging.getLogger(__name__)

#: the six motion parameters, named as fMRIPrep's confounds columns
MOTION6 = ("trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z")
#: Named confound sets (fMRIPrep column names).
CONFOUND_SETS = {
    "motion6": MOTION6,
    "motion6+wm+csf": (*MOTION6, "white_matter", "csf"),
}


def load_confounds(run: Run, which: str | None, n_volumes: int) -> np.ndarray | None:
    """The chosen confound columns of a run (NaNs, e.g. first derivatives, set to 0)."""
    if not which:
        return None
    if run.confounds is None and run.transforms is not None and run.transforms.hmc:
        return motion_confounds(run, which, n_volumes)  # from fMRIPrep's head-motion transforms
    if run.confounds is None:
        raise DataError(
            f"--confounds {which} was asked for but {run.bold.name} has no confounds table "
            "(fMRIPrep's *_desc-confounds_timeseries.tsv). Use --bold-source fmriprep or drop "
            "--confounds."
        )
    cols = CONFOUND_SETS.get(which, tuple(c for c in which.split(",") if c))
    df = pd.read_csv(run.confounds, sep="\t", na_values=["n/a"])
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise DataError(f"The confounds table {run.confounds} lacks columns {missing}. Choose "
                        f"--confounds from {sorted(CONFOUND_SETS)} or existing column names.")
    if len(df) != n_volumes:
        raise DataError(f"The confounds table {run.confounds} has {len(df)} rows; its run has "
                        f"{n_volumes} volumes. Use the table of the same run.")
    return df[list(cols)].fillna(0.0).to_numpy(np.float64)


def rigid_matrices(params: np.ndarray, center) -> np.ndarray:
    """Rigid transforms from motion parameters (the inverse of :func:`motion_parameters`).

    Parameters
    ----------
    params : ndarray of shape (n, 6)
        ``trans_x, trans_y, trans_z`` (mm) and ``rot_x, rot_y, rot_z`` (radians; rotation
        about z first, then y, then x: nibabel's ``euler2mat``), about ``center``.
    center : array-like of shape (3,)
        World point the rotations turn about (the run's field-of-view centre).

    Returns
    -------
    ndarray of shape (n, 4, 4)
    """
    from nibabel.eulerangles import euler2mat

    c = np.asarray(center, dtype=np.float64)
    out = np.tile(np.eye(4), (len(params), 1, 1))
    for i, (tx, ty, tz, rx, ry, rz) in enumerate(np.asarray(params, dtype=np.float64)):
        r = euler2mat(rz, ry, rx)
        out[i, :3, :3] = r
        out[i, :3, 3] = c + np.array([tx, ty, tz]) - r @ c
    return out


def motion_parameters(mats: np.ndarray, center) -> np.ndarray:
    """The six rigid-body parameters of each head-motion transform.

    Translations are the displacement of ``center`` (mm); rotations are the Euler angles
    (radians, z then y then x) of the linear part, so the rotation turns about ``center``, as
    FSL's and SPM's motion parameters do about the volume's centre.

    Parameters
    ----------
    mats : ndarray of shape (n, 4, 4)
    center : array-like of shape (3,)

    Returns
    -------
    ndarray of shape (n, 6)
        Columns :data:`MOTION6`.
    """
    from nibabel.eulerangles import mat2euler

    c = np.asarray(center, dtype=np.float64)
    out = np.empty((len(mats), 6))
    for i, m in enumerate(np.asarray(mats, dtype=np.float64)):
        u, _, vt = np.linalg.svd(m[:3, :3])  # nearest rotation (drops any scaling/shear)
        rz, ry, rx = mat2euler(u @ vt)
        out[i] = (*(m[:3, :3] @ c + m[:3, 3] - c), rx, ry, rz)
    return out


def fov_center(img) -> np.ndarray:
    """World coordinates (3,) of the centre of an image's field of view."""
    return nib.affines.apply_affine(img.affine, (np.asarray(img.shape[:3]) - 1) / 2.0)


def motion_confounds(run, which: str, n_volumes: int) -> np.ndarray:
    """Motion regressors of a run without a confounds table, from its head-motion transforms.

    Parameters
    ----------
    run : layout.Run
        With ``run.transforms.hmc``.
    which : str
        ``motion6`` or a comma-separated subset of :data:`MOTION6`.
    n_volumes : int

    Returns
    -------
    ndarray of shape (n_volumes, n_columns), float64
    """
    cols = CONFOUND_SETS.get(which, tuple(c for c in which.split(",") if c))
    other = [c for c in cols if c not in MOTION6]
    if other:
        raise DataError(
            f"--confounds {which}: {run.bold.name} has no confounds table, only fMRIPrep's "
            f"head-motion transforms ({run.transforms.hmc.name}), which give the six motion "
            f"parameters {list(MOTION6)} but not {other}. Use --confounds motion6, or "
            "fMRIPrep outputs with a confounds table."
        )
    img = nib.load(str(run.bold))
    mats = run.transforms.hmc_matrices(img.shape[3], run.bold)
    params = motion_parameters(mats, fov_center(img))[run.volume_offset:]
    if len(params) != n_volumes:
        raise DataError(f"The head-motion transforms {run.transforms.hmc} give {len(params)} "
                        f"volumes after the offset; the run has {n_volumes}.")
    return params[:, [MOTION6.index(c) for c in cols]]
