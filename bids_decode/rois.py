"""ROI masks: ds001246 names and unions, user masks, checks and resampling to the BOLD grid."""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from .errors import DataError, MissingInputError, UsageError

LOGGER = logging.getLogger(__name__)

#: ds001246 ROI name -> mask parts (files sub-XX_mask_{LH,RH}_<part>.nii.gz).
ROI_PARTS: dict[str, tuple[str, ...]] = {
    "V1": ("V1d", "V1v"),
    "V2": ("V2d", "V2v"),
    "V3": ("V3d", "V3v"),
    "V4": ("hV4",),
    "LOC": ("LOC",),
    "FFA": ("FFA",),
    "PPA": ("PPA",),
    "HVC": ("HVC",),
}
ROI_PARTS["LVC"] = ROI_PARTS["V1"] + ROI_PARTS["V2"] + ROI_PARTS["V3"]
ROI_PARTS["VC"] = ROI_PARTS["LVC"] + ROI_PARTS["V4"] + ROI_PARTS["HVC"]
HEMISPHERES = ("LH", "RH")


@dataclass(frozen=True)
class RoiSpec:
    """A requested ROI: a built-in name, or a user mask file (``NAME=PATH``)."""

    name: str
    path: str | None = None

    @classmethod
    def parse(cls, text: str) -> RoiSpec:
        if "=" in text:
            name, _, path = text.partition("=")
            if not name.isalnum() or not path:
                raise UsageError(
                    f"--roi {text!r}: a user mask is NAME=PATH with an alphanumeric NAME "
                    "(it becomes the BIDS 'desc' label), e.g. --roi myV1=/masks/v1.nii.gz."
                )
            return cls(name, path)
        if text not in ROI_PARTS:
            raise UsageError(
                f"Unknown ROI {text!r}. Built-in ROIs: {sorted(ROI_PARTS)}; or give a mask file "
                "as NAME=PATH ('{subject}' in PATH is replaced by the subject label)."
            )
        return cls(text)


def mask_files(bids_dir: Path, subject: str, spec: RoiSpec) -> list[Path]:
    """The mask files making up one ROI of one subject."""
    if spec.path is not None:
        return [Path(spec.path.replace("{subject}", subject))]
    anat = bids_dir / "sourcedata" / f"sub-{subject}" / "anat"
    return [
        anat / f"sub-{subject}_mask_{hemi}_{part}.nii.gz"
        for part in ROI_PARTS[spec.name]
        for hemi in HEMISPHERES
    ]


def _load_mask(path: Path, ref: nib.Nifti1Image) -> np.ndarray:
    if not path.is_file():
        raise MissingInputError(
            f"The ROI mask {path} does not exist. ds001246-style masks live in "
            "sourcedata/sub-XX/anat/sub-XX_mask_{LH,RH}_<ROI>.nii.gz; give another mask with "
            "--roi NAME=PATH."
        )
    try:
        img = nib.load(str(path))
        data = np.asanyarray(img.dataobj)
    except Exception as err:  # nibabel raises many types for corrupt files
        raise DataError(
            f"The ROI mask {path} cannot be read ({type(err).__name__}: {err}). Replace it with "
            "a valid NIfTI mask."
        ) from err
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    same_grid = data.shape == ref.shape[:3] and np.allclose(img.affine, ref.affine, atol=1e-3)
    if not same_grid:
        from nilearn.image import resample_to_img

        LOGGER.warning(
            "ROI mask %s is on another grid (shape %s) than the BOLD runs (shape %s): resampled "
            "to the BOLD grid with nearest-neighbour interpolation.",
            path, data.shape, ref.shape[:3],
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref3 = nib.Nifti1Image(np.zeros(ref.shape[:3], np.int8), ref.affine)
            res = resample_to_img(
                nib.Nifti1Image((data > 0).astype(np.float32), img.affine), ref3,
                interpolation="nearest", force_resample=True, copy_header=True,
            )
        data = np.asanyarray(res.dataobj)
    return np.asarray(data) > 0


def load_roi(bids_dir: Path, subject: str, spec: RoiSpec, ref: nib.Nifti1Image) -> np.ndarray:
    """Boolean mask of one ROI on the grid of ``ref`` (the first BOLD run).

    Returns
    -------
    ndarray of shape ref.shape[:3], bool
    """
    mask = np.zeros(ref.shape[:3], dtype=bool)
    for path in mask_files(bids_dir, subject, spec):
        mask |= _load_mask(path, ref)
    if not mask.any():
        raise DataError(
            f"ROI {spec.name} of sub-{subject} is empty (files: "
            f"{[str(p) for p in mask_files(bids_dir, subject, spec)][:2]}...). Check the masks "
            "or choose other ROIs with --roi."
        )
    return mask
