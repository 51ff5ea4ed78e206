"""A small ds001246- or ds001506-shaped dataset with a planted ground truth, for demos and tests.

Real events drive the simulation: ds001246's sub-01..03 (CC0, ``bids_decode/data/ds001246``),
or ds001506's sub-01 (``--layout ds001506``, ``bids_decode/data/ds001506``: numeric event codes,
TR 2 s). Every image has a latent vector ``z`` (``n_latent`` dims). Unit ``u`` of a layer is

    y_u = offset_u + scale_u * (rho_u * (b_u . z) + sqrt(1 - rho_u**2) * noise)

with ``rho_u`` the planted decodability (the correlation of the unit with the part of it the
brain carries, so on the scale of the accuracy, Pearson r, of a perfect decoder),
the same for every subject. Each subject's ROI voxels respond to ``A_s z`` (subject-specific
``A_s``) convolved with a haemodynamic response (peak about 5 s after the stimulus), plus drift
and noise; ``A_s`` is sparse (half of the ROI voxels carry signal) and hemisphere-specific
(each hemisphere carries two thirds of the latent dimensions), and the masks of the two
hemispheres are not mirror images; voxels outside the ROIs carry noise only. Some units of the
first layer are constant (dead ReLUs).
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
from importlib import resources
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pandas as pd

from bids_decode.errors import OutputError, UsageError

LOGGER = logging.getLogger(__name__)

DEFAULT_LAYERS = {"conv1": (5, 4, 6), "conv2": (7, 3, 3), "fc6": (64,), "fc8": (41,)}
GRID = (14, 13, 11)
N_DEAD = 3


#: Real datasets whose events drive the simulation: TR, template subjects, session prefixes
#: of the training, test and imagery runs (several test prefixes: n_test_runs of each).
LAYOUTS = {
    "ds001246": {"tr": 3.0, "subjects": ("01", "02", "03"), "train": "perceptionTraining",
                 "test": ("perceptionTest",), "imagery": "imageryTest"},
    "ds001506": {"tr": 2.0, "subjects": ("01",), "train": "perceptionNaturalImageTraining",
                 "test": ("perceptionNaturalImageTest", "perceptionArtificialImage",
                          "perceptionLetterImage"), "imagery": "imagery"},
}


def _data_root(layout: str = "ds001246"):
    return resources.files("bids_decode") / "data" / layout


def template_runs(template_subject: str, session_prefix: str,
                  layout: str = "ds001246") -> list[tuple[str, str]]:
    """(session, events file name) of a real subject's runs, in session and run order."""
    root = _data_root(layout) / f"sub-{template_subject}"
    out = []
    for ses in sorted(p.name for p in root.iterdir() if p.name.startswith(f"ses-{session_prefix}")):
        func = root / ses / "func"
        for f in sorted(p.name for p in func.iterdir() if p.name.endswith("_events.tsv")):
            out.append((ses, f))
    return out


def _layout_plan(layout: str, tmpl: str, n_train: int, n_test: int, n_imagery: int):
    """(session, events file) of the template subject's runs used by the simulation."""
    lay = LAYOUTS[layout]
    runs = template_runs(tmpl, lay["train"], layout)[:n_train]
    for prefix in lay["test"]:
        runs += template_runs(tmpl, prefix, layout)[:n_test]
    return runs + template_runs(tmpl, lay["imagery"], layout)[:n_imagery]


def read_template_events(path, layout: str = "ds001246") -> pd.DataFrame:
    """A template events table with ds001246's event names (the simulation's vocabulary).

    ds001506's numeric codes become ``stimulus`` (perception 1 and 2: a repetition block shows
    its image again), ``imagery`` (imagery 2) and ``rest``.
    """
    ev = pd.read_csv(path, sep="\t", dtype=str)
    if layout == "ds001246":
        return ev
    code = ev["event_type"].astype(str).str.strip()
    if "task-imagery" in str(path):
        ev["event_type"] = np.where(code == "2", "imagery", "rest")
    else:
        ev["event_type"] = np.where(code.isin(["1", "2"]), "stimulus", "rest")
    return ev


def _roi_layout(grid, rng):
    """Masks (name -> bool array) laid out ds001246-style on a small grid."""
    nx, ny, nz = grid
    x = np.arange(nx)[:, None, None]
    y = np.arange(ny)[None, :, None]
    z = np.arange(nz)[None, None, :]
    # the right hemisphere is one column narrower than the left: masks are not mirror images,
    # so a left-right flip of the masks selects other voxels
    cortex = (y <= 6) & (z >= 2) & (z <= 9) & (x >= 1) & (x <= nx - 3)
    hemi = {"LH": x < nx // 2, "RH": x >= nx // 2}
    parts = {
        "V1d": (y <= 1) & (z >= 6), "V1v": (y <= 1) & (z < 6),
        "V2d": (y == 2) & (z >= 6), "V2v": (y == 2) & (z < 6),
        "V3d": (y == 3) & (z >= 6), "V3v": (y == 3) & (z < 6),
        "hV4": (y == 4), "HVC": (y >= 5),
        "LOC": (y >= 5) & (z >= 6), "FFA": (y >= 5) & (z < 4), "PPA": (y == 6) & (z >= 4),
    }
    masks = {}
    for part, m in parts.items():
        for h, hm in hemi.items():
            masks[f"{h}_{part}"] = np.broadcast_to(cortex & m & hm, grid).copy()
    return masks


#: share of the ROI voxels that carry signal (the rest are noise only)
SIGNAL_SHARE = 0.5


def _sparse_loadings(n_latent: int, roi_any: np.ndarray, rng) -> np.ndarray:
    """Voxel loadings ``A`` of shape (n_latent, n_roi_voxels): sparse and hemisphere-specific.

    About :data:`SIGNAL_SHARE` of the ROI voxels carry signal. Left-hemisphere voxels load on
    the first two thirds of the latent dimensions, right-hemisphere voxels on the last two
    thirds, so both hemispheres are needed to decode every unit and a decoder that uses all
    voxels (no selection) fits mostly noise.
    """
    nx = roi_any.shape[0]
    left = (np.nonzero(roi_any)[0] < nx // 2)
    n_roi = left.size
    A = rng.standard_normal((n_latent, n_roi)) / np.sqrt(n_latent)
    A *= rng.random(n_roi) < SIGNAL_SHARE
    third = max(1, n_latent // 3)
    A[n_latent - third:, left] = 0.0
    A[:third, ~left] = 0.0
    return A


def _hrf(tr: float) -> np.ndarray:
    from nilearn.glm.first_level import glover_hrf

    h = glover_hrf(tr, oversampling=1, time_length=30.0)
    return h / h.sum()


def _save_bold(vol, affine, tr, path):
    img = nib.Nifti1Image(vol, affine)
    img.header.set_xyzt_units("mm", "sec")
    img.header.set_zooms((*np.abs(np.diag(affine)[:3]), tr))
    nib.save(img, path)


def _simulate_bold(ev, tr, grid, roi_any, A, Z, img_index, cat_index, hrf, snr, rng, *,
                   motion_artifact=False):
    """One run: (n_volumes, n_voxels) signal in noise units, and its motion regressors."""
    onset = ev["onset"].astype(float).to_numpy()
    dur = ev["duration"].astype(float).to_numpy()
    n_vols = int(round((onset[-1] + dur[-1]) / tr))
    n_roi = A.shape[1]
    neural = np.zeros((n_vols, n_roi))
    etype = ev["event_type"].to_numpy()
    for k in np.flatnonzero((etype == "stimulus") | (etype == "imagery")):
        if etype[k] == "stimulus":
            z = Z[img_index[ev["stimulus_name"].iloc[k]]]
        else:  # imagery: a weaker version of the category's perception response
            z = 0.6 * Z[cat_index[ev["category_name"].iloc[k]]]
        v0, v1 = int(onset[k] // tr), int(np.ceil((onset[k] + dur[k]) / tr))
        neural[v0:v1] += z @ A
    bold_roi = np.stack([np.convolve(c, hrf)[:n_vols] for c in neural.T], axis=1)
    bold_roi *= snr / max(bold_roi.std(), 1e-12)
    n_vox = int(np.prod(grid))
    t = np.linspace(-1, 1, n_vols)[:, None]
    data = rng.standard_normal((n_vols, n_vox)).astype(np.float32)
    data += rng.standard_normal(n_vox) * 2.0 * t
    data[:, np.flatnonzero(roi_any.ravel())] += bold_roi
    motion = np.cumsum(rng.standard_normal((n_vols, 6)) * 0.05, axis=0)
    if motion_artifact:  # signal changes explained by motion, removed by confound regression
        data += (motion - motion.mean(axis=0)) @ (rng.standard_normal((6, n_vox)) * 8.0)
    return data, motion


def simulate_dataset(out_dir, *, n_subjects: int = 2, n_train_runs: int = 20,
                     n_test_runs: int = 4, n_imagery_runs: int = 0,
                     preproc_spm: bool = False, fmriprep: bool = False,
                     stimulus_images: bool = False, photos: list | None = None,
                     layers: dict | None = None, n_latent: int = 12,
                     snr: float = 1.0, seed: int = 0, grid=GRID, motion: bool = False,
                     null_fraction: float = 0.0, layout: str = "ds001246") -> dict:
    """Write the dataset and its features; return the paths and the planted truth.

    Parameters
    ----------
    out_dir : path-like
        New folder (must not exist or be empty).
    n_subjects : int
        Subjects sub-01.. (events of real sub-01..03, reused cyclically).
    n_train_runs, n_test_runs, n_imagery_runs : int
        Runs per subject from the training, test and imagery sessions.
    preproc_spm : bool
        Also write ``derivatives/preproc-spm/output`` runs as ds001246 ships them (float,
        first 3 volumes dropped).
    stimulus_images : bool
        Also write a JPEG per image in ``stimuli/`` whose content is a smooth colour pattern
        driven by the image's latent vector (so a network's features of the images relate to
        what the simulated brain sees).
    photos : list of ndarray, optional
        Real photographs (RGB) used as the images' backgrounds (see :func:`write_images`).
    fmriprep : bool
        Also write fMRIPrep-like derivatives (``space-T1w`` on a padded grid, confounds with
        motion regressors); every run then carries a motion artefact.
    layers : dict, optional
        Layer name -> unit shape (default :data:`DEFAULT_LAYERS`).
    snr : float
        Standard deviation of the ROI signal relative to the noise.
    seed : int
    motion : bool
        Raw runs as a scanner records them (:func:`write_moved_run`): each session at its own
        placement, per-volume head motion; the masks stay in the aligned space, the aligned
        runs go to ``derivatives/preproc-spm`` and fMRIPrep's minimal outputs (boldrefs and
        ITK transforms) to ``derivatives/fmriprep``. The aligned data are those of the same
        ``seed`` without motion.
    null_fraction : float
        Share of each layer's units planted with decodability exactly 0 (pure feature noise;
        chosen with a generator of their own, so 0 leaves the dataset unchanged).
    layout : {"ds001246", "ds001506"}
        Real dataset whose events, sessions and TR are used (ds001506: sub-01's events, TR 2 s;
        ``n_test_runs`` runs of each of the natural-image, artificial-shape and letter tests).

    Returns
    -------
    dict with ``bids_dir``, ``features`` (path), ``truth`` (layer -> rho of shape unit_shape).
    """
    out = _new_folder(out_dir, n_subjects, n_train_runs, n_test_runs, null_fraction)
    layers = dict(layers or DEFAULT_LAYERS)
    rng = np.random.default_rng(seed)
    null_rng = np.random.default_rng([seed, 1])
    if layout not in LAYOUTS:
        raise UsageError(f"--layout must be one of {sorted(LAYOUTS)}; got {layout!r}.")
    src = _data_root(layout)
    tr = LAYOUTS[layout]["tr"]
    subjects = [f"{i + 1:02d}" for i in range(n_subjects)]
    plan = _subject_plans(layout, subjects, n_train_runs, n_test_runs, n_imagery_runs)
    images = _images_named(plan, src, layout)
    n_img = len(images)
    Z = rng.standard_normal((n_img, n_latent))
    truth, feats = _plant_features(layers, Z, rng, null_rng, null_fraction)
    _write_dataset_files(out, src, layout, subjects, n_imagery_runs)
    affine = np.diag([3.0, 3.0, 3.0, 1.0])
    affine[:3, 3] = -np.array(grid) * 1.5
    masks = _roi_layout(grid, rng)
    roi_any = np.logical_or.reduce(list(masks.values()))
    hrf = _hrf(tr)
    img_index, cat_index = _image_indices(images)
    preproc_spm = preproc_spm or motion
    moved = MotionPlan(seed) if motion else None
    if fmriprep or motion:
        _write_fmriprep_description(out / "derivatives" / "fmriprep")
    for sub, (tmpl, runs) in plan.items():
        _write_masks(out / "sourcedata" / f"sub-{sub}" / "anat", sub, masks, affine)
        A = _sparse_loadings(n_latent, roi_any, rng)
        for ses, fname in runs:
            ev = read_template_events(src / f"sub-{tmpl}" / ses / "func" / fname, layout)
            func = out / f"sub-{sub}" / ses / "func"
            func.mkdir(parents=True, exist_ok=True)
            new_name = fname.replace(f"sub-{tmpl}_", f"sub-{sub}_")
            shutil.copyfile(src / f"sub-{tmpl}" / ses / "func" / fname, func / new_name)
            data, head_motion = _simulate_bold(ev, tr, grid, roi_any, A, Z, img_index,
                                               cat_index, hrf, snr, rng,
                                               motion_artifact=fmriprep)
            vol = (1000.0 + 8.0 * data).reshape(len(data), *grid).transpose(1, 2, 3, 0)
            _write_run_files(out, sub, ses, new_name[: -len("_events.tsv")],
                             np.round(vol).astype(np.int16), affine, tr, head_motion,
                             moved=moved, preproc_spm=preproc_spm, fmriprep=fmriprep)
    stim = out / "stimuli"
    stim.mkdir(exist_ok=True)
    if stimulus_images:
        write_images(stim, images, Z, rng, photos=photos)
    features = stim / "features_simulated.h5"
    _write_features(features, images, feats, cat_index if n_imagery_runs else None)
    _write_truth(stim / "truth_simulated.h5", truth, moved,
                 {"seed": seed, "snr": snr, "n_latent": n_latent})
    LOGGER.info("simulated %d subjects, %d images, layers %s in %s", n_subjects, n_img,
                list(layers), out)
    return {"bids_dir": out, "features": features, "truth": truth, "images": images}


def _new_folder(out_dir, n_subjects: int, n_train_runs: int, n_test_runs: int,
                null_fraction: float) -> Path:
    """Check the counts and create ``out_dir`` (which must be new or empty)."""
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise UsageError(f"{out} exists and is not empty; simulate writes a new dataset. "
                         "Choose an empty or new folder.")
    if n_subjects < 1 or n_train_runs < 1 or n_test_runs < 1:
        raise UsageError("simulate needs at least one subject, one training and one test run.")
    if not 0.0 <= null_fraction <= 1.0:
        raise UsageError(f"--null-fraction must be between 0 and 1; got {null_fraction}.")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError(f"Cannot create {out} ({err.strerror}).") from err
    return out


def _subject_plans(layout: str, subjects: list[str], n_train_runs: int, n_test_runs: int,
                   n_imagery_runs: int) -> dict[str, tuple[str, list[tuple[str, str]]]]:
    """Subject -> (template subject, its (session, events file) runs used)."""
    plan = {}
    for i, sub in enumerate(subjects):
        tmpls = LAYOUTS[layout]["subjects"]
        tmpl = tmpls[i % len(tmpls)]
        plan[sub] = (tmpl, _layout_plan(layout, tmpl, n_train_runs, n_test_runs,
                                        n_imagery_runs))
    return plan


def _images_named(plan: dict, src, layout: str) -> list[str]:
    """Sorted names of the images shown in the events of the planned runs."""
    images = set()
    for tmpl, runs in plan.values():
        for ses, fname in runs:
            ev = read_template_events(src / f"sub-{tmpl}" / ses / "func" / fname, layout)
            if "stimulus_name" in ev.columns:
                images.update(ev.loc[ev["event_type"] == "stimulus", "stimulus_name"])
    return sorted(images)


def _plant_features(layers: dict, Z: np.ndarray, rng, null_rng,
                    null_fraction: float) -> tuple[dict, dict]:
    """Features with a planted decodability, drawn from ``rng`` layer by layer.

    Parameters
    ----------
    layers : dict
        Layer name -> unit shape.
    Z : ndarray of shape (n_images, n_latent)
        The images' latent vectors.

    Returns
    -------
    truth : dict
        Layer -> rho of shape unit_shape (NaN for the dead units of the first layer).
    feats : dict
        Layer -> float32 features of shape (n_images, *unit_shape).
    """
    n_img, n_latent = Z.shape
    truth = {}
    feats = {}
    for li, (name, shape) in enumerate(layers.items()):
        n_units = int(np.prod(shape))
        rho = rng.uniform(0.0, 0.95, n_units)
        if null_fraction > 0:
            rho[null_rng.choice(n_units, int(round(null_fraction * n_units)), replace=False)] = 0
        B = rng.standard_normal((n_latent, n_units))
        B /= np.linalg.norm(B, axis=0)
        signal = Z @ B
        signal /= signal.std(axis=0)
        # rho is the correlation of the unit with what the brain carries of it, so a perfect
        # decoder's accuracy is rho (on the scale of Pearson r, as accuracies are)
        Y = rho * signal + np.sqrt(1 - rho**2) * rng.standard_normal((n_img, n_units))
        Y = Y * rng.uniform(0.5, 3.0, n_units) + rng.uniform(-1.0, 2.0, n_units)
        if li == 0:
            dead = rng.choice(n_units, size=min(N_DEAD, n_units), replace=False)
            Y[:, dead] = 0.0
            rho[dead] = np.nan
        truth[name] = rho.reshape(shape)
        feats[name] = Y.reshape((n_img, *shape)).astype(np.float32)
    return truth, feats


def _write_dataset_files(out: Path, src, layout: str, subjects: list[str],
                         n_imagery_runs: int) -> None:
    """dataset_description.json, README, CHANGES, task sidecars, participants.tsv."""
    desc = json.loads((src / "dataset_description.json").read_text())
    desc = {k: v for k, v in desc.items() if v != ""}  # ds001506's "Funding": "" is invalid
    desc.update({"Name": f"bids_decode simulated {layout}-shaped dataset", "BIDSVersion": "1.9.0",
                 "DatasetType": "raw", "License": "CC0"})
    (out / "dataset_description.json").write_text(json.dumps(desc, indent=2))
    (out / "README").write_text(
        f"Simulated by 'bids_decode simulate' from the events of OpenNeuro {layout} (CC0).\n"
        "BOLD data are synthetic, with a planted per-unit decodability (see stimuli/).\n")
    (out / "CHANGES").write_text("1.0.0 2026-01-01\n  - Simulated.\n")
    sidecar = json.loads((src / "task-perception_bold.json").read_text())
    sidecar.pop("SliceTiming", None)  # 50 slices in ds001246, fewer here
    (out / "task-perception_bold.json").write_text(json.dumps(sidecar, indent=2))
    if n_imagery_runs:
        side = json.loads((src / "task-imagery_bold.json").read_text())
        side.pop("SliceTiming", None)
        (out / "task-imagery_bold.json").write_text(json.dumps(side, indent=2))
    pd.DataFrame({"participant_id": [f"sub-{s}" for s in subjects]}).to_csv(
        out / "participants.tsv", sep="\t", index=False)
    (out / ".bidsignore").write_text("stimuli/\n")


def _image_indices(images: list[str]) -> tuple[dict[str, int], dict[str, int]]:
    """Image name -> row; category (name before ``_``) -> row of its first image."""
    img_index = {name: i for i, name in enumerate(images)}
    cat_index = {}
    for name in images:
        cat_index.setdefault(name.split("_")[0], img_index[name])
    return img_index, cat_index


def _write_masks(anat: Path, sub: str, masks: dict, affine: np.ndarray) -> None:
    anat.mkdir(parents=True, exist_ok=True)
    for mname, m in masks.items():
        nib.save(nib.Nifti1Image(m.astype(np.uint8), affine),
                 anat / f"sub-{sub}_mask_{mname}.nii.gz")


def _write_run_files(out: Path, sub: str, ses: str, stem: str, vol: np.ndarray,
                     affine: np.ndarray, tr: float, head_motion: np.ndarray, *,
                     moved: MotionPlan | None, preproc_spm: bool, fmriprep: bool) -> None:
    """One run's BOLD (aligned, or moved with fMRIPrep's minimal outputs), and its
    preproc-spm and fMRIPrep versions where asked for.

    Parameters
    ----------
    vol : ndarray of shape (*grid, n_volumes), int16
    head_motion : ndarray of shape (n_volumes, 6)
    """
    func = out / f"sub-{sub}" / ses / "func"
    fp_func = out / "derivatives" / "fmriprep" / f"sub-{sub}" / ses / "func"
    if moved is None:
        _save_bold(vol, affine, tr, func / f"{stem}_bold.nii.gz")
    else:
        write_moved_run(moved, vol, affine, tr, func / f"{stem}_bold.nii.gz", fp_func, stem,
                        (sub, ses))
    if preproc_spm:
        d = out / "derivatives" / "preproc-spm" / "output" / f"sub-{sub}" / ses / "func"
        _write_preproc_spm_run(vol, affine, tr, d, stem)
    if fmriprep:
        _write_fmriprep_run(vol, affine, tr, fp_func, stem, head_motion)


def _write_fmriprep_description(fp_root: Path) -> None:
    fp_root.mkdir(parents=True, exist_ok=True)
    (fp_root / "dataset_description.json").write_text(json.dumps({
        "Name": "simulated fMRIPrep outputs", "BIDSVersion": "1.9.0",
        "DatasetType": "derivative", "GeneratedBy": [{"Name": "fMRIPrep (simulated)"}]}))


def _write_preproc_spm_run(vol: np.ndarray, affine: np.ndarray, tr: float, folder: Path,
                           stem: str) -> None:
    """The run as ds001246's SPM outputs ship it: float, without the first 3 volumes (9 s)."""
    folder.mkdir(parents=True, exist_ok=True)
    _save_bold(vol[..., 3:].astype(np.float32), affine, tr,
               folder / f"{stem}_bold_preproc.nii.gz")


def _write_fmriprep_run(vol: np.ndarray, affine: np.ndarray, tr: float, folder: Path,
                        stem: str, head_motion: np.ndarray) -> None:
    """The run as fMRIPrep writes it, and its confounds.

    Parameters
    ----------
    vol : ndarray of shape (*grid, n_volumes)
    head_motion : ndarray of shape (n_volumes, 6)
        Translations and rotations (the confounds' motion regressors).
    """
    folder.mkdir(parents=True, exist_ok=True)
    # fMRIPrep resamples to another grid: one voxel of padding on each side
    padded = np.pad(vol.astype(np.float32), ((1, 1), (1, 1), (1, 1), (0, 0)),
                    constant_values=0.0)
    aff = affine.copy()
    aff[:3, 3] -= 3.0
    _save_bold(padded, aff, tr, folder / f"{stem}_space-T1w_desc-preproc_bold.nii.gz")
    cols = ["trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z"]
    conf = pd.DataFrame(head_motion, columns=cols)
    conf["framewise_displacement"] = np.r_[np.nan, np.abs(np.diff(head_motion[:, 0]))]
    conf.to_csv(folder / f"{stem}_desc-confounds_timeseries.tsv", sep="\t", index=False,
                na_rep="n/a")


def _write_features(path: Path, images: list[str], feats: dict,
                    cat_index: dict | None) -> None:
    """The features HDF5 file; with ``cat_index`` (imagery), the category features too."""
    with h5py.File(path, "w") as f:
        f.create_dataset("stimulus_name", data=np.array(images, dtype=object),
                         dtype=h5py.string_dtype("utf-8"))
        for name, Y in feats.items():
            f.create_dataset(f"layers/{name}", data=Y)
        if cat_index is not None:
            cats = sorted(c for c in cat_index if any(
                n.startswith(c + "_") for n in images))
            f.create_dataset("category_name", data=np.array(cats, dtype=object),
                             dtype=h5py.string_dtype("utf-8"))
            for name, Y in feats.items():
                f.create_dataset(f"category_layers/{name}",
                                 data=Y[[cat_index[c] for c in cats]])
        f.attrs.update({"network": "simulated", "weights": "planted", "complete": True})


def _write_truth(path: Path, truth: dict, moved: MotionPlan | None, attrs: dict) -> None:
    """The planted decodability (and head motion) as an HDF5 file."""
    with h5py.File(path, "w") as f:
        for name, rho in truth.items():
            f.create_dataset(f"decodability/{name}", data=rho)
        f.attrs.update(attrs)
        if moved is not None:
            moved.write_truth(f)


def write_images(folder: Path, names: list[str], Z: np.ndarray, rng, size: int = 64,
                 photos: list[np.ndarray] | None = None) -> None:
    """One JPEG per image: a smooth RGB pattern, a linear function of its latent vector.

    With ``photos`` (RGB uint8 arrays), each image is a photo (cycled through the list,
    resized to ``size``) with the latent pattern blended in, so the stimuli are real
    photographs whose differences the simulated brain encodes.
    """
    from PIL import Image

    backgrounds = [np.asarray(Image.fromarray(np.asarray(p)[..., :3]).convert("RGB")
                              .resize((size, size)), dtype=np.float64)
                   for p in (photos or [])]

    n_latent = Z.shape[1]
    yy, xx = np.mgrid[0:size, 0:size] / size
    basis = np.empty((n_latent, size, size, 3))
    for k in range(n_latent):
        for c in range(3):
            fx, fy = rng.uniform(0.5, 4.0, 2)
            phase = rng.uniform(0, 2 * np.pi)
            basis[k, :, :, c] = np.sin(2 * np.pi * (fx * xx + fy * yy) + phase)
    for i, (name, z) in enumerate(zip(names, Z)):
        pattern = 40 * np.tensordot(z, basis, axes=1) / np.sqrt(n_latent)
        if backgrounds:
            pix = 0.5 * backgrounds[i % len(backgrounds)] + 64 + pattern
        else:
            pix = 128 + pattern
        img = Image.fromarray(np.clip(pix, 0, 255).astype(np.uint8), "RGB")
        img.save(folder / f"{name}.JPEG", quality=95)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out_dir", type=Path, help="new folder for the simulated dataset")
    parser.add_argument("--n-subjects", "--n_subjects", type=int, default=2)
    parser.add_argument("--n-train-runs", "--n_train_runs", type=int, default=20)
    parser.add_argument("--n-test-runs", "--n_test_runs", type=int, default=4)
    parser.add_argument("--n-imagery-runs", "--n_imagery_runs", type=int, default=0)
    parser.add_argument("--preproc-spm", "--preproc_spm", action="store_true",
                        help="also write derivatives/preproc-spm/output runs")
    parser.add_argument("--fmriprep", action="store_true",
                        help="also write fMRIPrep-like derivatives with confounds")
    parser.add_argument("--stimulus-images", "--stimulus_images", action="store_true",
                        help="also write stimulus images (JPEG) into OUT_DIR/stimuli")
    parser.add_argument("--layout", choices=sorted(LAYOUTS), default="ds001246",
                        help="real dataset whose events, sessions and TR are used "
                             "(default ds001246; ds001506: Deep Image Reconstruction, sub-01)")
    parser.add_argument("--motion", action="store_true",
                        help="raw runs at per-session scanner placements with head motion; "
                             "aligned runs in derivatives/preproc-spm, fMRIPrep's minimal "
                             "outputs (boldrefs, ITK transforms) in derivatives/fmriprep")
    parser.add_argument("--snr", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--null-fraction", "--null_fraction", type=float, default=0.0,
                        help="share of each layer's units planted with decodability 0")


def run_from_args(args: argparse.Namespace) -> int:
    res = simulate_dataset(args.out_dir, n_subjects=args.n_subjects,
                           n_train_runs=args.n_train_runs, n_test_runs=args.n_test_runs,
                           n_imagery_runs=args.n_imagery_runs, preproc_spm=args.preproc_spm,
                           fmriprep=args.fmriprep, stimulus_images=args.stimulus_images,
                           snr=args.snr, seed=args.seed, motion=args.motion,
                           null_fraction=args.null_fraction, layout=args.layout)
    print(f"Simulated dataset: {res['bids_dir']}\nFeatures: {res['features']}\n"
          f"Planted truth: {res['bids_dir'] / 'stimuli' / 'truth_simulated.h5'}")
    return 0


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
        from bids_decode.inputs.confounds import rigid_matrices

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

    def write_truth(self, h5) -> None:
        for stem, p in self.params.items():
            h5.create_dataset(f"motion/{stem}", data=p)


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

    from bids_decode.inputs.confounds import rigid_matrices
    from bids_decode.inputs.fmriprep import COREG_PATTERN, HMC_PATTERN

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
    _save_bold(raw, a_raw, tr, bold_path)
    fp_func.mkdir(parents=True, exist_ok=True)
    ref = nib.Nifti1Image(raw.mean(axis=3, dtype=np.float64).astype(np.float32), a_raw)
    for desc in ("hmc", "coreg"):
        nib.save(ref, fp_func / f"{stem}_desc-{desc}_boldref.nii.gz")
    nt.linear.LinearTransformsMapping(hmc).to_filename(
        fp_func / HMC_PATTERN.format(stem=stem), fmt="itk")
    nt.linear.Affine(Q).to_filename(fp_func / COREG_PATTERN.format(stem=stem, space="T1w"),
                                    fmt="itk")
    plan.params[stem] = params
