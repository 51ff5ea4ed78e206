"""fMRIPrep derivatives as a BOLD source: each run's files and transforms.

With fMRIPrep's full outputs a run is its ``desc-preproc_bold`` image; with its *minimal*
outputs (no ``desc-preproc_bold``) the raw run is resampled once onto the masks' grid through
the composition of its per-volume head-motion transforms (``desc-hmc_xfm``) and the
boldref-to-T1w coregistration (``desc-coreg_xfm``), read with nitransforms
(:class:`RunTransforms`; the resampling itself is :func:`bold.resampled_timeseries`, the
motion parameters :func:`confounds.motion_confounds`).

Transform conventions follow nitransforms (and ITK's "image mode" files): a transform maps
*reference* points to *moving* points in RAS+ millimetres, so the value of target point ``x``
in volume ``t`` of the raw run is read at ``inv(A_raw) @ H_t @ C @ x``, with ``C`` the
coregistration (T1w -> boldref) and ``H_t`` the head motion of volume ``t`` (boldref -> volume).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bids_decode.errors import DataError, MissingInputError
from bids_decode.inputs.annex import listed

LOGGER = logging.getLogger(__name__)

HMC_PATTERN = "{stem}_from-orig_to-boldref_mode-image_desc-hmc_xfm.txt"
COREG_PATTERN = "{stem}_from-boldref_to-{space}_mode-image_desc-coreg_xfm.txt"


@dataclass(frozen=True)
class RunTransforms:
    """How one run reaches the reference grid, and its head-motion transforms.

    Attributes
    ----------
    hmc : Path or None
        fMRIPrep's ``from-orig_to-boldref`` transforms (ITK, one affine per volume).
    coreg : Path or None
        fMRIPrep's ``from-boldref_to-T1w`` transform (ITK).
    resample : bool
        Sample the run at the reference grid's voxels: through ``coreg`` and ``hmc`` when
        ``coreg`` is given (fMRIPrep's minimal outputs), else through the images' affines only
        (a run on another grid of the same space). False = the run is on the reference grid
        and ``hmc`` serves only for motion parameters.
    target_affine : tuple or None
        The reference grid's affine (4 x 4 nested tuple), set by :func:`alignment.align_runs`.
    """

    hmc: Path | None = None
    coreg: Path | None = None
    resample: bool = False
    target_affine: tuple | None = None

    def hmc_matrices(self, n_volumes: int, what: Path) -> np.ndarray:
        """Head-motion transforms, shape (n_volumes, 4, 4) (identities when there are none)."""
        if self.hmc is None:
            return np.broadcast_to(np.eye(4), (n_volumes, 4, 4))
        mats = load_matrices(self.hmc)
        if len(mats) != n_volumes:
            raise DataError(
                f"The head-motion transforms {self.hmc} hold {len(mats)} affine(s) but the run "
                f"{what} has {n_volumes} volumes; fMRIPrep writes one per volume. Use the "
                "transforms of this run (or rerun fMRIPrep)."
            )
        return mats

    def coreg_matrix(self) -> np.ndarray:
        """The coregistration (4, 4) (identity when there is none)."""
        if self.coreg is None:
            return np.eye(4)
        mats = load_matrices(self.coreg)
        if len(mats) != 1:
            raise DataError(f"The coregistration {self.coreg} holds {len(mats)} affines; one "
                            "is expected (fMRIPrep's from-boldref_to-T1w transform).")
        return mats[0]


def load_matrices(path: Path) -> np.ndarray:
    """Affines of an ITK transform file (nitransforms), shape (n, 4, 4) in RAS+ mm."""
    import nitransforms as nt

    try:
        xfm = nt.linear.load(str(path), fmt="itk")
    except Exception as err:  # nitransforms raises several types for unreadable files
        raise DataError(
            f"The transform file {path} cannot be read as an ITK linear transform "
            f"({type(err).__name__}: {err}). Check that it is fMRIPrep's *_xfm.txt of this run."
        ) from err
    mats = np.asarray(xfm.matrix, dtype=np.float64)
    return mats[None] if mats.ndim == 2 else mats


def find_fmriprep_transforms(folder: Path, stem: str, space: str) -> tuple[Path | None,
                                                                           Path | None]:
    """The ``desc-hmc`` and ``desc-coreg`` transforms of one run in an fMRIPrep folder."""
    hmc = folder / HMC_PATTERN.format(stem=stem)
    coreg = folder / COREG_PATTERN.format(stem=stem, space=space)
    return (hmc if listed(hmc) else None), (coreg if listed(coreg) else None)


def fmriprep_run(folder: Path, stem: str, space: str, preproc: Path | None,
                 raw_bold: Path | None, expected: Path):
    """(bold, transforms) of one run of an fMRIPrep folder, full or minimal outputs.

    With ``desc-preproc_bold`` (full outputs) the run is used as it is; its head-motion
    transforms, where present, give motion parameters. Without it (``--level minimal``), the
    raw run is resampled through the head-motion and coregistration transforms.
    """
    hmc, coreg = find_fmriprep_transforms(folder, stem, space)
    if preproc is not None:
        return preproc, (RunTransforms(hmc=hmc) if hmc is not None else None)
    if hmc is None:
        return None, None
    if coreg is None:
        raise MissingInputError(
            f"{folder} holds fMRIPrep's head-motion transforms of {stem} but neither its "
            f"preprocessed run ({expected.name}) nor the coregistration "
            f"{COREG_PATTERN.format(stem=stem, space=space)}. fMRIPrep's minimal outputs map "
            "runs to T1w only: use --space T1w with masks in the subject's T1w space."
        )
    if raw_bold is None:
        raise MissingInputError(
            f"fMRIPrep's minimal outputs of {stem} are transforms of the raw run, which is "
            "missing from the BIDS dataset. Download the raw run."
        )
    return raw_bold, RunTransforms(hmc=hmc, coreg=coreg, resample=True)
