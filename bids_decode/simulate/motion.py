"""``simulate --motion``: raw runs as a scanner records them (per-session placement, head
pose and per-volume head motion), with fMRIPrep's minimal outputs (boldrefs, ITK transforms).
"""

from __future__ import annotations

import logging
from pathlib import Path

import nibabel as nib
import numpy as np

from bids_decode.inputs.confounds import rigid_matrices
from bids_decode.inputs.fmriprep import COREG_PATTERN, HMC_PATTERN
from bids_decode.simulate.writers import save_bold

LOGGER = logging.getLogger(__name__)


class MotionPlan:
    """Scanner placements, head poses and head motion of ``simulate --motion``.

    Draws from its own random stream (``[seed, 7]``), so the aligned data equal those of the
    same seed without motion. Per session: a placement ``P`` of the field of view (a rigid
    transform of the aligned grid, up to ~3 degrees and ~4 mm) and a head pose ``Q`` (the
    boldref-to-T1w coregistration, up to ~2 degrees and ~3 mm). Per volume: a random walk of
    the six motion parameters (about 1 mm and 1 degree over a run).

    Attributes
    ----------
    params : dict
        Run stem -> simulated motion parameters, ndarray of shape (n_volumes, 6)
        (:data:`bids_decode.inputs.confounds.MOTION6`).
    """

    PAD = 3  # voxels of margin of the raw field of view around the aligned grid

    def __init__(self, seed: int):
        self.rng = np.random.default_rng([seed, 7])
        self.sessions: dict = {}
        self.params: dict[str, np.ndarray] = {}

    def session(self, key):
        """(P, Q) of one session, drawn at its first run."""
        if key not in self.sessions:
            draw = lambda mm, deg: np.r_[self.rng.uniform(-mm, mm, 3),  # noqa: E731
                                         np.radians(self.rng.uniform(-deg, deg, 3))]
            self.sessions[key] = (rigid_matrices(draw(4.0, 3.0)[None], np.zeros(3))[0],
                                  rigid_matrices(draw(3.0, 2.0)[None], np.zeros(3))[0])
        return self.sessions[key]

    def walk(self, n_vols: int) -> np.ndarray:
        """Motion parameters, shape (n_vols, 6): translations (mm), rotations (radians)."""
        steps = self.rng.standard_normal((n_vols, 6)) * np.r_[[0.08] * 3, [0.0013] * 3]
        steps[0] = 0.0
        return np.cumsum(steps, axis=0)


def write_moved_run(plan: MotionPlan, vol: np.ndarray, affine: np.ndarray, tr: float,
                    bold_path: Path, fp_func: Path, stem: str, session) -> None:
    """Write one raw run as the scanner saw it, and fMRIPrep's minimal outputs for it.

    The raw grid is the aligned grid padded by :attr:`MotionPlan.PAD` voxels and placed by
    the session's ``P``; volume ``t`` at raw voxel ``v`` samples the aligned data (cubic
    spline) at ``inv(Q) @ inv(H_t) @ A_raw @ v``, with ``H_t`` the head motion of the volume
    about the centre of the field of view. So fMRIPrep's chain (``inv(A_raw) @ H_t @ Q``)
    brings the aligned grid's points back to the raw voxels they were written to.

    Parameters
    ----------
    plan : MotionPlan
    vol : ndarray of shape (*grid, n_volumes), int16
        The aligned run.
    affine : ndarray of shape (4, 4)
        The aligned grid's affine (the masks').
    tr : float
    bold_path : Path
        The raw run to write.
    fp_func : Path
        fMRIPrep's ``func`` folder of the run.
    stem : str
        The run's BIDS name without ``_bold``.
    session : hashable
        Key of the run's session (placement and head pose).
    """
    import nitransforms as nt
    from scipy.ndimage import map_coordinates

    P, Q = plan.session(session)
    pad = MotionPlan.PAD
    shape = tuple(np.asarray(vol.shape[:3]) + 2 * pad)
    shift = np.eye(4)
    shift[:3, 3] = -pad
    a_raw = P @ affine @ shift
    n_vols = vol.shape[3]
    params = plan.walk(n_vols)
    center = nib.affines.apply_affine(a_raw, (np.asarray(shape) - 1) / 2.0)
    hmc = rigid_matrices(params, center)
    ijk = np.indices(shape).reshape(3, -1)
    ijk = np.vstack([ijk, np.ones((1, ijk.shape[1]))])
    to_aligned = np.linalg.inv(affine) @ np.linalg.inv(Q) @ np.linalg.inv(hmc) @ a_raw
    raw = np.empty((*shape, n_vols), dtype=np.int16)
    for t in range(n_vols):
        coords = (to_aligned[t] @ ijk)[:3]
        raw[..., t] = np.round(map_coordinates(vol[..., t].astype(np.float64), coords, order=3,
                                               mode="nearest")).reshape(shape)
    save_bold(raw, a_raw, tr, bold_path)
    fp_func.mkdir(parents=True, exist_ok=True)
    ref = nib.Nifti1Image(raw.mean(axis=3, dtype=np.float64).astype(np.float32), a_raw)
    for desc in ("hmc", "coreg"):
        nib.save(ref, fp_func / f"{stem}_desc-{desc}_boldref.nii.gz")
    nt.linear.LinearTransformsMapping(hmc).to_filename(
        fp_func / HMC_PATTERN.format(stem=stem), fmt="itk")
    nt.linear.Affine(Q).to_filename(fp_func / COREG_PATTERN.format(stem=stem, space="T1w"),
                                    fmt="itk")
    plan.params[stem] = params
