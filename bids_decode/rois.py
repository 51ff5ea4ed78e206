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
    """A requested ROI: a built-in name, a user mask file (``NAME=PATH``) or an atlas label.

    Attributes
    ----------
    name : str
    path : str or None
        User mask (``{subject}`` is replaced by the label).
    atlas_value : int or None
        Label value in the atlas image.
    """

    name: str
    path: str | None = None
    atlas_value: int | None = None

    @classmethod
    def parse(cls, text: str, atlas_labels: dict[str, int] | None = None) -> RoiSpec:
        if "=" in text:
            name, _, path = text.partition("=")
            if not name.isalnum() or not path:
                raise UsageError(
                    f"--roi {text!r}: a user mask is NAME=PATH with an alphanumeric NAME "
                    "(it becomes the BIDS 'desc' label), e.g. --roi myV1=/masks/v1.nii.gz."
                )
            return cls(name, path)
        if atlas_labels and text in atlas_labels:
            if not text.isalnum():
                raise UsageError(f"Atlas label {text!r} is not alphanumeric and cannot be a BIDS "
                                 "'desc' label; rename it in the labels table.")
            return cls(text, None, int(atlas_labels[text]))
        if text not in ROI_PARTS:
            extra = f"; atlas labels: {sorted(atlas_labels)[:20]}" if atlas_labels else ""
            raise UsageError(
                f"Unknown ROI {text!r}. Built-in ROIs: {sorted(ROI_PARTS)}{extra}; or give a "
                "mask file as NAME=PATH ('{subject}' in PATH is replaced by the subject label)."
            )
        return cls(text)


def read_atlas_labels(path) -> dict[str, int]:
    """Atlas labels table (TSV with columns ``index`` and ``name``) -> {name: index}."""
    import pandas as pd

    try:
        df = pd.read_csv(path, sep="\t")
    except (OSError, pd.errors.ParserError) as err:
        raise MissingInputError(f"Cannot read the atlas labels table {path} ({err}).") from err
    if not {"index", "name"} <= set(df.columns):
        raise DataError(f"The atlas labels table {path} needs columns 'index' and 'name'; it "
                        f"has {list(df.columns)}.")
    return {str(n): int(i) for i, n in zip(df["index"], df["name"])}


def _sourcedata_files(bids_dir: Path, subject: str, name: str) -> list[Path]:
    anat = bids_dir / "sourcedata" / f"sub-{subject}" / "anat"
    return [anat / f"sub-{subject}_mask_{hemi}_{part}.nii.gz"
            for part in ROI_PARTS[name] for hemi in HEMISPHERES]


def mask_files(bids_dir: Path, subject: str, spec: RoiSpec, search_roots=(),
               atlas: str | None = None) -> list[Path]:
    """The mask files making up one ROI of one subject.

    Built-in names come from ds001246's ``sourcedata`` masks; when those are absent, from a
    derivatives folder in ``search_roots`` holding ``sub-<L>*_desc-<ROI>_mask.nii[.gz]``.
    """
    if spec.path is not None:
        return [Path(spec.path.replace("{subject}", subject))]
    if spec.atlas_value is not None:
        return [Path(str(atlas).replace("{subject}", subject))]
    files = _sourcedata_files(bids_dir, subject, spec.name)
    if all(f.is_file() for f in files):
        return files
    for root in search_roots:
        sub = Path(root) / f"sub-{subject}"
        found = sorted(sub.rglob(f"sub-{subject}*_desc-{spec.name}_mask.nii*")) \
            if sub.is_dir() else []
        if found:
            return found
    return files


def _load_mask(path: Path, ref: nib.Nifti1Image, value: int | None = None
               ) -> tuple[np.ndarray, bool]:
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
    if data.ndim != 3:
        raise DataError(
            f"The ROI mask {path} is {data.ndim}-D (shape {tuple(data.shape)}); a 3-D mask is "
            "expected. Save the one volume you mean as its own 3-D file (for a 4-D atlas, "
            "e.g. nilearn.image.index_img) and name that file instead."
        )
    same_grid = data.shape == ref.shape[:3] and np.allclose(img.affine, ref.affine, atol=1e-3)
    if not same_grid:
        from nilearn.image import resample_to_img

        LOGGER.debug("resampling %s (shape %s) to the BOLD grid %s", path, data.shape,
                     ref.shape[:3])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref3 = nib.Nifti1Image(np.zeros(ref.shape[:3], np.int8), ref.affine)
            res = resample_to_img(
                nib.Nifti1Image(_select(data, value).astype(np.float32), img.affine), ref3,
                interpolation="nearest", force_resample=True, copy_header=True,
            )
        data = np.asanyarray(res.dataobj)
        return np.asarray(data) > 0, True
    return _select(np.asarray(data), value), False


def _select(data: np.ndarray, value: int | None) -> np.ndarray:
    return data > 0 if value is None else np.rint(data) == value


def load_roi(bids_dir: Path, subject: str, spec: RoiSpec, ref: nib.Nifti1Image,
             search_roots=(), atlas: str | None = None) -> np.ndarray:
    """Boolean mask of one ROI on the grid of ``ref`` (the first BOLD run).

    Returns
    -------
    ndarray of shape ref.shape[:3], bool
    """
    mask = np.zeros(ref.shape[:3], dtype=bool)
    resampled = []
    files = mask_files(bids_dir, subject, spec, search_roots, atlas)
    for path in files:
        m, was_resampled = _load_mask(path, ref, spec.atlas_value)
        mask |= m
        if was_resampled:
            resampled.append(path.name)
    if resampled:
        LOGGER.warning(
            "ROI %s of sub-%s: %d mask file(s) (e.g. %s) are on another grid than the BOLD "
            "runs (shape %s); resampled to the BOLD grid (nearest neighbour).", spec.name,
            subject, len(resampled), resampled[0], ref.shape[:3])
    if not mask.any():
        raise DataError(
            f"ROI {spec.name} of sub-{subject} is empty (files: "
            f"{[str(p) for p in files][:2]}...). Check the masks "
            "or choose other ROIs with --roi."
        )
    return mask
