"""Are the runs in the masks' space? Comparing voxel grids and choosing the reference grid.

Answered once per subject, before any run is masked (:func:`align_runs`): every run's grid is
compared with the first run's and, for raw runs, with the masks' (tolerance :data:`TOL_MM` /
:data:`TOL_DEG`). Raw runs at different placements are refused (:class:`DataError`, exit 65)
unless ``--assume-aligned``; runs in one space on different grids are resampled through their
affines onto the reference grid; runs with fMRIPrep's transforms (its minimal outputs,
:mod:`bids_decode.inputs.fmriprep`) are resampled onto the masks' grid.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import nibabel as nib
import numpy as np

from bids_decode.errors import DataError, MissingInputError
from bids_decode.inputs.fmriprep import RunTransforms

LOGGER = logging.getLogger(__name__)

#: two grids are the same placement when their origins and axes agree within these
TOL_MM = 0.1
TOL_DEG = 0.1


# --------------------------------------------------------------------------- grids


def _axes(affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Direction cosines (3, 3) and voxel sizes (3,) of an affine."""
    lin = np.asarray(affine, dtype=np.float64)[:3, :3]
    zooms = np.linalg.norm(lin, axis=0)
    return lin / zooms, zooms


def grid_distance(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """How far apart two voxel grids are placed.

    Parameters
    ----------
    a, b : ndarray of shape (4, 4)
        Voxel-to-world affines.

    Returns
    -------
    mm : float
        Distance between the grids' origins (the world position of voxel (0, 0, 0)).
    deg : float
        Angle of the rotation between their axes.
    """
    ra, _ = _axes(a)
    rb, _ = _axes(b)
    cos = np.clip((np.trace(ra @ rb.T) - 1.0) / 2.0, -1.0, 1.0)
    return float(np.linalg.norm(np.asarray(a)[:3, 3] - np.asarray(b)[:3, 3])), \
        float(np.degrees(np.arccos(cos)))


def same_grid(a_aff, a_shape, b_aff, b_shape) -> bool:
    """Same shape, voxel sizes, axes and origin (within :data:`TOL_MM` / :data:`TOL_DEG`)."""
    if tuple(a_shape[:3]) != tuple(b_shape[:3]):
        return False
    mm, deg = grid_distance(a_aff, b_aff)
    za, zb = _axes(a_aff)[1], _axes(b_aff)[1]
    return mm <= TOL_MM and deg <= TOL_DEG and np.abs(za - zb).max() <= 1e-3 * za.max()


def same_space_grids(run_aff, mask_aff) -> bool:
    """Whether a mask grid other than the runs' can be in the runs' placement.

    True when the axes agree (within :data:`TOL_DEG`) and either the voxel sizes differ (a
    mask drawn at another resolution) or the grids share one lattice (the mask's voxels fall
    on the runs' voxels within :data:`TOL_MM`: a cropped or padded grid).
    """
    ra, za = _axes(run_aff)
    rb, zb = _axes(mask_aff)
    _, deg = grid_distance(run_aff, mask_aff)
    if deg > TOL_DEG:
        return False
    if np.abs(za - zb).max() > 1e-3 * za.max():
        return True
    # mask voxel (0, 0, 0) in run voxel coordinates: integer on a shared lattice
    offset = np.linalg.solve(np.asarray(run_aff, float)[:3, :3],
                             np.asarray(mask_aff, float)[:3, 3] - np.asarray(run_aff, float)[:3, 3])
    return bool(np.all(np.abs(offset - np.round(offset)) * za <= TOL_MM))


# --------------------------------------------------------------------------- alignment


FIXES = (
    "Use runs that are in the masks' space: --bold-source preproc-spm (ds001246 ships "
    "SPM-preprocessed runs in derivatives/preproc-spm), or fMRIPrep derivatives "
    "(--bold-source fmriprep -d fmriprep=PATH; fMRIPrep's --level minimal outputs suffice: "
    "each raw run is then resampled once through its head-motion and coregistration "
    "transforms). For data known to be aligned, pass --assume-aligned."
)


def align_runs(source_kind: str, runs: list, mask_path: Path | None, subject: str, *,
               assume_aligned: bool = False, preprocessed: bool | None = None):
    """Check that the runs are in the masks' space and choose the reference grid.

    Parameters
    ----------
    source_kind : str
        The kind of :data:`inputs.BOLD_SOURCES` (``raw``, ``preproc-spm``, ``fmriprep``...).
    runs : list of layout.Run
        Every run of the subject (training first).
    mask_path : Path or None
        A mask file of the first ROI (its grid is the masks' grid); None or missing = not
        compared (the ROI loader reports missing masks).
    subject : str
    assume_aligned : bool
        ``--assume-aligned``: log a warning instead of refusing runs at other placements.
    preprocessed : bool, optional
        The runs are derivatives in one space (:attr:`inputs.BidsRuns.preprocessed`); runs
        that are not are refused at other placements. Default: all kinds but ``raw``.

    Returns
    -------
    ref : nibabel image
        The reference grid: the masks' grid when runs are resampled through fMRIPrep's
        transforms, else the first run's.
    runs : list of layout.Run
        The runs, those not on the reference grid marked for resampling onto it.

    Raises
    ------
    DataError
        Raw runs at different placements, or masks on another placement, without
        ``--assume-aligned`` (exit 65).
    """
    raw = source_kind == "raw" if preprocessed is None else not preprocessed
    mask_img = nib.load(str(mask_path)) if mask_path is not None and mask_path.is_file() \
        else None
    via_xfm = [r for r in runs if r.transforms is not None and r.transforms.resample]
    ref = _reference_grid(runs, via_xfm, mask_img, mask_path, subject)
    target = tuple(map(tuple, np.asarray(ref.affine, dtype=float)))
    headers = {r.bold: nib.load(str(r.bold)) for r in runs if r not in via_xfm}
    first = runs[0]
    others = [r for r in runs if r not in via_xfm and not same_grid(
        headers[r.bold].affine, headers[r.bold].shape, ref.affine, ref.shape)]
    problems = []
    if others and not via_xfm:
        mm, deg = grid_distance(headers[others[0].bold].affine, ref.affine)
        problems.append(
            f"{len(others)} of {len(runs)} runs lie on another grid than {first.bold.name} "
            f"(e.g. {others[0].bold.name}: origin {mm:.1f} mm away, axes turned {deg:.2f} "
            f"degrees{_shape_note(headers[others[0].bold].shape, ref.shape)})")
    if (raw and mask_img is not None and not via_xfm
            and not same_grid(mask_img.affine, mask_img.shape, ref.affine, ref.shape)
            and not same_space_grids(ref.affine, mask_img.affine)):
        mm, deg = grid_distance(mask_img.affine, ref.affine)
        problems.append(
            f"the ROI masks ({mask_path.name}) lie on a grid {mm:.1f} mm / {deg:.2f} degrees "
            f"away from the runs' ({first.bold.name})")
    if problems and raw and not assume_aligned:
        raise DataError(
            f"The raw BOLD runs of sub-{subject} are not in the masks' space: "
            + "; ".join(problems) + ". Raw runs are neither motion-corrected nor aligned: each "
            "session sits at its own scanner placement, and the masks live in another space "
            "(the subject's anatomy), so one voxel index would be a different place in the "
            "brain in each run and decoding would silently fail. " + FIXES)
    if problems:
        LOGGER.warning("sub-%s: %s; %s. Each such run is resampled (trilinear) onto the grid "
                       "of %s through the images' affines.", subject, "; ".join(problems),
                       "--assume-aligned was given" if assume_aligned else
                       f"the {source_kind} derivatives are taken to be in one space",
                       first.bold.name)
    return ref, _marked(runs, via_xfm, others, target)


def _reference_grid(runs: list, via_xfm: list, mask_img, mask_path, subject: str):
    """The grid every run is brought to: the masks' when runs are resampled through fMRIPrep's
    transforms (``via_xfm``), else the first run's."""
    if not via_xfm:
        return nib.load(str(runs[0].bold))
    if mask_img is None:
        raise MissingInputError(
            f"Runs of sub-{subject} are resampled through fMRIPrep's transforms onto the "
            f"masks' grid, but the mask {mask_path} does not exist. Give the ROI masks "
            "(in the subject's T1w space) with --roi or -d masks=PATH."
        )
    ref = nib.Nifti1Image(np.zeros(mask_img.shape[:3], np.int8), mask_img.affine)
    LOGGER.info("sub-%s: %d run(s) resampled once (trilinear) onto the masks' grid %s "
                "through fMRIPrep's head-motion and coregistration transforms", subject,
                len(via_xfm), ref.shape)
    return ref


def _marked(runs: list, via_xfm: list, others: list, target: tuple) -> list:
    """The runs, those resampled through transforms or affines given the target grid."""
    out = []
    for r in runs:
        if r in via_xfm:
            out.append(replace(r, transforms=replace(r.transforms, target_affine=target)))
        elif r in others:
            out.append(replace(r, transforms=replace(r.transforms or RunTransforms(),
                                                     resample=True, target_affine=target)))
        else:
            out.append(r)
    return out


def _shape_note(a, b) -> str:
    return "" if tuple(a[:3]) == tuple(b[:3]) else f", shape {tuple(a[:3])} vs {tuple(b[:3])}"
