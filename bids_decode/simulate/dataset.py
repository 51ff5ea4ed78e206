"""The simulation, step by step: templates, planted features, masks, then each subject's runs
(:func:`simulate_dataset`; the model is described in :mod:`bids_decode.simulate`)."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import h5py
import numpy as np

from bids_decode.errors import OutputError, UsageError
from bids_decode.simulate import hierarchy as planted_hierarchy
from bids_decode.simulate.motion import MotionPlan, write_moved_run
from bids_decode.simulate.signal import (
    DEFAULT_LAYERS,
    GRID,
    SIGNAL_SHARE,
    hrf_kernel,
    plant_features,
    roi_layout,
    simulate_bold,
    sparse_loadings,
)
from bids_decode.simulate.templates import (
    LAYOUTS,
    data_root,
    image_indices,
    images_named,
    read_template_events,
    subject_plans,
)
from bids_decode.simulate.writers import (
    save_bold,
    write_dataset_files,
    write_features,
    write_fmriprep_description,
    write_fmriprep_run,
    write_images,
    write_masks,
    write_preproc_spm_run,
    write_truth,
)

LOGGER = logging.getLogger(__name__)


def simulate_dataset(out_dir, *, n_subjects: int = 2, n_train_runs: int = 20,
                     n_test_runs: int = 4, n_imagery_runs: int = 0,
                     preproc_spm: bool = False, fmriprep: bool = False,
                     stimulus_images: bool = False, photos: list | None = None,
                     layers: dict | None = None, n_latent: int = 12, hierarchy: bool = False,
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
    hierarchy : bool
        A planted brain hierarchy (:mod:`bids_decode.simulate.hierarchy`): one latent block
        per layer of two more features files, ``stimuli/features_hierarchical.h5`` and
        ``stimuli/features_mixed.h5`` (networks ``hierarchical`` and ``mixed``); each signal
        voxel of V1, V2, V3, V4 and HVC carries one block of its ROI's layers (its planted best
        layer), and the units are planted on those blocks, in layer order in
        ``hierarchical`` and out of order in ``mixed``. ``n_latent`` is then 24 (4 per layer).

    Returns
    -------
    dict with ``bids_dir``, ``features`` (path), ``truth`` (layer -> rho of shape unit_shape);
    with ``hierarchy``, ``networks`` (network -> features path), ``planted`` (network ->
    layer -> planted preferred-ROI index of shape unit_shape) and ``voxels`` (subject ->
    ``voxel_index``, ``roi``, ``block``, ``best_layer`` (network -> planted best layer), each
    of shape (n_roi_voxels,); written to ``stimuli/truth_<network>.h5``).
    """
    # long: the simulation in its order (events, latents, masks, runs per subject, features,
    # truth, the planted networks); each step is a helper of signal, writers or hierarchy
    out = _new_folder(out_dir, n_subjects, n_train_runs, n_test_runs, null_fraction)
    layers = dict(layers or DEFAULT_LAYERS)
    rng = np.random.default_rng(seed)
    null_rng = np.random.default_rng([seed, 1])
    if layout not in LAYOUTS:
        raise UsageError(f"--layout must be one of {sorted(LAYOUTS)}; got {layout!r}.")
    src = data_root(layout)
    tr = LAYOUTS[layout]["tr"]
    subjects = [f"{i + 1:02d}" for i in range(n_subjects)]
    plan = subject_plans(layout, subjects, n_train_runs, n_test_runs, n_imagery_runs)
    images = images_named(plan, src, layout)
    n_img = len(images)
    Z = rng.standard_normal((n_img, planted_hierarchy.N_LATENT if hierarchy else n_latent))
    truth, feats = plant_features(layers, Z, rng, null_rng, null_fraction)
    write_dataset_files(out, src, layout, subjects, n_imagery_runs)
    affine = np.diag([3.0, 3.0, 3.0, 1.0])
    affine[:3, 3] = -np.array(grid) * 1.5
    masks = roi_layout(grid, rng)
    roi_any = np.logical_or.reduce(list(masks.values()))
    hrf = hrf_kernel(tr)
    img_index, cat_index = image_indices(images)
    preproc_spm = preproc_spm or motion
    moved = MotionPlan(seed) if motion else None
    if fmriprep or motion:
        write_fmriprep_description(out / "derivatives" / "fmriprep")
    voxels = {}
    for sub, (tmpl, runs) in plan.items():
        write_masks(out / "sourcedata" / f"sub-{sub}" / "anat", sub, masks, affine)
        A, voxels[sub] = _loadings(Z.shape[1], masks, roi_any, hierarchy, rng)
        for ses, fname in runs:
            ev = read_template_events(src / f"sub-{tmpl}" / ses / "func" / fname, layout)
            func = out / f"sub-{sub}" / ses / "func"
            func.mkdir(parents=True, exist_ok=True)
            new_name = fname.replace(f"sub-{tmpl}_", f"sub-{sub}_")
            shutil.copyfile(src / f"sub-{tmpl}" / ses / "func" / fname, func / new_name)
            data, head_motion = simulate_bold(ev, tr, grid, roi_any, A, Z, img_index,
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
    write_features(features, images, feats, cat_index if n_imagery_runs else None)
    write_truth(stim / "truth_simulated.h5", truth,
                {"seed": seed, "snr": snr, "n_latent": Z.shape[1]},
                None if moved is None else moved.params)
    LOGGER.info("simulated %d subjects, %d images, layers %s in %s", n_subjects, n_img,
                list(layers), out)
    return {"bids_dir": out, "features": features, "truth": truth, "images": images,
            **(_write_hierarchy_networks(stim, images, Z, seed, voxels, grid)
               if hierarchy else {})}


def _loadings(n_latent: int, masks: dict, roi_any: np.ndarray, hierarchy: bool,
              rng) -> tuple[np.ndarray, dict | None]:
    """One subject's voxel loadings, shape (n_latent, n_roi_voxels): sparse and
    hemisphere-specific, or with ``hierarchy`` one latent block (one layer's) per voxel; and
    with ``hierarchy`` the voxels' truth: ``voxel_index`` (flat C-order index into the grid),
    ``roi`` (index into BH_ROIS) and ``block`` (-1: noise only), each of shape
    (n_roi_voxels,)."""
    if not hierarchy:
        return sparse_loadings(n_latent, roi_any, rng), None
    rois = planted_hierarchy.voxel_rois(masks, roi_any)
    blocks = planted_hierarchy.voxel_blocks(rois, SIGNAL_SHARE, rng)
    truth = {"voxel_index": np.flatnonzero(roi_any.ravel()), "roi": rois, "block": blocks}
    return planted_hierarchy.block_loadings(blocks, rng), truth


def _write_hierarchy_networks(stim: Path, images: list[str], Z: np.ndarray, seed: int,
                              voxels: dict, grid) -> dict:
    """``--hierarchy``: the two planted networks' features and truth files (their own random
    stream ``[seed, 11]``; the layout of the truth files is in
    :mod:`bids_decode.simulate.hierarchy`).

    Returns
    -------
    dict
        ``{"networks": {net: path}, "planted": {net: {layer: roi}}, "voxels": {sub: {
        "voxel_index", "roi", "block", "best_layer": {net: (n_roi_voxels,)}}}}``
        (``voxels`` as made by :func:`_loadings`, completed in place).
    """
    out: dict = {"networks": {}, "planted": {}, "voxels": voxels}
    nets = planted_hierarchy.plant_networks(Z, np.random.default_rng([seed, 11]))
    for net, (feats, rho, planted, blocks) in nets.items():
        out["networks"][net] = stim / f"features_{net}.h5"
        write_features(out["networks"][net], images, feats, None, network=net)
        write_truth(stim / f"truth_{net}.h5", rho,
                    {"seed": seed, "network": net, "rois": list(planted_hierarchy.BH_ROIS),
                     "layers": list(planted_hierarchy.LAYERS),
                     "layer_blocks": list(planted_hierarchy.LAYER_BLOCKS[net]),
                     "grid_shape": list(grid)})
        with h5py.File(stim / f"truth_{net}.h5", "a") as f:
            for layer in planted:
                f.create_dataset(f"planted_roi/{layer}", data=planted[layer])
                f.create_dataset(f"planted_block/{layer}", data=blocks[layer])
            for sub, vox in voxels.items():
                vox.setdefault("best_layer", {})[net] = planted_hierarchy.best_layers(
                    vox["block"], net)
                for key in ("voxel_index", "roi", "block"):
                    f.create_dataset(f"voxels/sub-{sub}/{key}", data=vox[key])
                f.create_dataset(f"voxels/sub-{sub}/best_layer", data=vox["best_layer"][net])
        out["planted"][net] = planted
    return out


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
        save_bold(vol, affine, tr, func / f"{stem}_bold.nii.gz")
    else:
        write_moved_run(moved, vol, affine, tr, func / f"{stem}_bold.nii.gz", fp_func, stem,
                        (sub, ses))
    if preproc_spm:
        d = out / "derivatives" / "preproc-spm" / "output" / f"sub-{sub}" / ses / "func"
        write_preproc_spm_run(vol, affine, tr, d, stem)
    if fmriprep:
        write_fmriprep_run(vol, affine, tr, fp_func, stem, head_motion)
