"""The simulated dataset's files: BIDS metadata, masks, BOLD runs as the raw data,
preproc-spm and fMRIPrep ship them, the features file, the planted truth and stimulus images.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pandas as pd

LOGGER = logging.getLogger(__name__)


def save_bold(vol, affine, tr, path):
    img = nib.Nifti1Image(vol, affine)
    img.header.set_xyzt_units("mm", "sec")
    img.header.set_zooms((*np.abs(np.diag(affine)[:3]), tr))
    nib.save(img, path)


def write_dataset_files(out: Path, src, layout: str, subjects: list[str],
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


def write_masks(anat: Path, sub: str, masks: dict, affine: np.ndarray) -> None:
    anat.mkdir(parents=True, exist_ok=True)
    for mname, m in masks.items():
        nib.save(nib.Nifti1Image(m.astype(np.uint8), affine),
                 anat / f"sub-{sub}_mask_{mname}.nii.gz")


def write_fmriprep_description(fp_root: Path) -> None:
    fp_root.mkdir(parents=True, exist_ok=True)
    (fp_root / "dataset_description.json").write_text(json.dumps({
        "Name": "simulated fMRIPrep outputs", "BIDSVersion": "1.9.0",
        "DatasetType": "derivative", "GeneratedBy": [{"Name": "fMRIPrep (simulated)"}]}))


def write_preproc_spm_run(vol: np.ndarray, affine: np.ndarray, tr: float, folder: Path,
                          stem: str) -> None:
    """The run as ds001246's SPM outputs ship it: float, without the first 3 volumes (9 s)."""
    folder.mkdir(parents=True, exist_ok=True)
    save_bold(vol[..., 3:].astype(np.float32), affine, tr,
              folder / f"{stem}_bold_preproc.nii.gz")


def write_fmriprep_run(vol: np.ndarray, affine: np.ndarray, tr: float, folder: Path,
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
    save_bold(padded, aff, tr, folder / f"{stem}_space-T1w_desc-preproc_bold.nii.gz")
    cols = ["trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z"]
    conf = pd.DataFrame(head_motion, columns=cols)
    conf["framewise_displacement"] = np.r_[np.nan, np.abs(np.diff(head_motion[:, 0]))]
    conf.to_csv(folder / f"{stem}_desc-confounds_timeseries.tsv", sep="\t", index=False,
                na_rep="n/a")


def write_features(path: Path, images: list[str], feats: dict,
                   cat_index: dict | None, network: str = "simulated") -> None:
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
        f.attrs.update({"network": network, "weights": "planted", "complete": True})


def write_truth(path: Path, truth: dict, attrs: dict,
                motion: dict[str, np.ndarray] | None = None) -> None:
    """The planted decodability (and head motion) as an HDF5 file.

    Parameters
    ----------
    truth : dict
        Layer -> rho of shape unit_shape.
    attrs : dict
        The simulation's settings (root attributes).
    motion : dict, optional
        Run stem -> simulated motion parameters of shape (n_volumes, 6)
        (:attr:`MotionPlan.params <bids_decode.simulate.motion.MotionPlan.params>`).
    """
    with h5py.File(path, "w") as f:
        for name, rho in truth.items():
            f.create_dataset(f"decodability/{name}", data=rho)
        f.attrs.update(attrs)
        for stem, p in (motion or {}).items():
            f.create_dataset(f"motion/{stem}", data=p)


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
