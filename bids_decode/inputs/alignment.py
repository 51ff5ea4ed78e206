"""BOLD source kinds: choosing the source, checking that runs are in the masks' space, and
resampling raw runs through fMRIPrep's transforms.

Three questions are answered here, once per subject, before any run is masked:

1. **Which source** (:func:`resolve_bold_source`): ``--bold-source auto`` (the default) is
   ``preproc-spm`` where the dataset ships ``derivatives/preproc-spm`` (ds001246 does), else
   ``raw``.
2. **Are the runs in the masks' space** (:func:`align_runs`): every run's grid is compared with
   the first run's and, for raw runs, with the masks' (tolerance :data:`TOL_MM` /
   :data:`TOL_DEG`). Raw runs at different placements are refused (:class:`DataError`, exit 65)
   unless ``--assume-aligned``; runs in one space on different grids are resampled through their
   affines onto the reference grid.
3. **fMRIPrep transforms** (:class:`RunTransforms`): with fMRIPrep's *minimal* outputs (no
   ``desc-preproc_bold``), each raw run is resampled once onto the masks' grid through the
   composition of its per-volume head-motion transforms (``desc-hmc_xfm``) and the
   boldref-to-T1w coregistration (``desc-coreg_xfm``), read with nitransforms; the six motion
   parameters of each volume are derived from the same head-motion transforms when the run has
   no confounds table (:func:`motion_confounds`).

Transform conventions follow nitransforms (and ITK's "image mode" files): a transform maps
*reference* points to *moving* points in RAS+ millimetres, so the value of target point ``x``
in volume ``t`` of the raw run is read at ``inv(A_raw) @ H_t @ C @ x``, with ``C`` the
coregistration (T1w -> boldref) and ``H_t`` the head motion of volume ``t`` (boldref -> volume).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path

import nibabel as nib
import numpy as np

from bids_decode.errors import DataError, MissingInputError, reading_bold
from bids_decode.inputs.annex import listed

LOGGER = logging.getLogger(__name__)

#: default of --bold-source: preproc-spm where the dataset ships it, else raw
AUTO = "auto"
#: two grids are the same placement when their origins and axes agree within these
TOL_MM = 0.1
TOL_DEG = 0.1
#: the six motion parameters, named as fMRIPrep's confounds columns
MOTION6 = ("trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z")
HMC_PATTERN = "{stem}_from-orig_to-boldref_mode-image_desc-hmc_xfm.txt"
COREG_PATTERN = "{stem}_from-boldref_to-{space}_mode-image_desc-coreg_xfm.txt"


def preproc_spm_root(bids_dir: Path, derivatives: dict[str, str]) -> Path:
    """Where ds001246 keeps its SPM-preprocessed runs (``-d preproc-spm=PATH`` overrides)."""
    return Path(derivatives.get("preproc-spm",
                                Path(bids_dir) / "derivatives" / "preproc-spm" / "output"))


def resolve_bold_source(text: str, bids_dir: Path, derivatives: dict[str, str]) -> str:
    """The concrete ``--bold-source``: ``auto`` becomes ``preproc-spm`` or ``raw``.

    Parameters
    ----------
    text : str
        The option's value (``auto``, ``raw``, ``preproc-spm``, ``fmriprep`` or a path).
    bids_dir : Path
    derivatives : dict
        ``-d NAME=PATH`` folders.

    Returns
    -------
    str
        ``text`` itself unless it is ``auto``.
    """
    if text != AUTO:
        return text
    return "preproc-spm" if preproc_spm_root(bids_dir, derivatives).is_dir() else "raw"


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


# --------------------------------------------------------------------------- transforms


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
        The reference grid's affine (4 x 4 nested tuple), set by :func:`align_runs`.
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
    from bids_decode.inputs.samples import CONFOUND_SETS

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
    with reading_bold(run.bold):
        img = nib.load(str(run.bold))
        if img.ndim != 4:
            raise DataError(f"The BOLD run {run.bold} is {img.ndim}-D (shape {img.shape}); "
                            "a 4-D time series is expected.")
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
