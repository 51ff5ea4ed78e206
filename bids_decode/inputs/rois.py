"""ROI masks: ds001246 names and unions, user masks, atlas labels, checks and resampling.

:data:`ROI_SOURCES` maps each kind of ``--roi`` value to its class (:class:`MaskFileRoi`,
:class:`AtlasRoi`, :class:`Ds001246Roi`); :meth:`RoiSpec.parse` returns the instance of the
first kind that claims a value, which knows its mask files and which of their voxels are the
ROI's. Adding a kind is one subclass of :class:`RoiSpec` and one entry of :data:`ROI_SOURCES`.
"""

from __future__ import annotations

import logging
import warnings
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import nibabel as nib
import numpy as np

from bids_decode.errors import DataError, MissingInputError, UsageError
from bids_decode.inputs.annex import listed

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
class RoiSpec(ABC):
    """A requested ROI (``--roi``): :meth:`parse` returns the instance of its kind.

    Attributes
    ----------
    name : str
        The ROI's name (the outputs' BIDS ``desc`` label).
    kind : str
        The kind's name in :data:`ROI_SOURCES` (class attribute).
    """

    name: str
    kind: ClassVar[str] = ""

    @classmethod
    def parse(cls, text: str, atlas_labels: dict[str, int] | None = None) -> RoiSpec:
        """The ROI named by one ``--roi`` value: the first kind of :data:`ROI_SOURCES` that
        claims it (mask file ``NAME=PATH``, atlas label, ds001246 name)."""
        for source in ROI_SOURCES.values():
            spec = source.from_text(text, atlas_labels)
            if spec is not None:
                return spec
        extra = f"; atlas labels: {sorted(atlas_labels)[:20]}" if atlas_labels else ""
        raise UsageError(
            f"Unknown ROI {text!r}. Built-in ROIs: {sorted(ROI_PARTS)}{extra}; or give a "
            "mask file as NAME=PATH ('{subject}' in PATH is replaced by the subject label)."
        )

    @classmethod
    @abstractmethod
    def from_text(cls, text: str, atlas_labels: dict[str, int] | None) -> RoiSpec | None:
        """This kind's ROI for a ``--roi`` value, or None when the value is not of this kind.

        Raises
        ------
        UsageError
            A value of this kind that is malformed.
        """

    @abstractmethod
    def files(self, bids_dir: Path, subject: str, search_roots=(),
              atlas: str | None = None) -> list[Path]:
        """The mask files making up the ROI of one subject (``--atlas`` for atlas labels)."""

    def select(self, data: np.ndarray) -> np.ndarray:
        """The ROI's voxels of one mask file's values (any shape): those above 0.

        Returns
        -------
        ndarray of bool, shape of ``data``
        """
        return data > 0


@dataclass(frozen=True)
class MaskFileRoi(RoiSpec):
    """``NAME=PATH``: a user mask file (``{subject}`` in PATH is replaced by the label)."""

    path: str
    kind: ClassVar[str] = "mask"

    @classmethod
    def from_text(cls, text, atlas_labels):
        if "=" not in text:
            return None
        name, _, path = text.partition("=")
        if not name.isalnum() or not path:
            raise UsageError(
                f"--roi {text!r}: a user mask is NAME=PATH with an alphanumeric NAME "
                "(it becomes the BIDS 'desc' label), e.g. --roi myV1=/masks/v1.nii.gz."
            )
        return cls(name, path)

    def files(self, bids_dir, subject, search_roots=(), atlas=None):
        return [_for_subject(self.path, subject)]


@dataclass(frozen=True)
class AtlasRoi(RoiSpec):
    """A label of the ``--atlas-labels`` table: the voxels of ``--atlas`` with its value."""

    kind: ClassVar[str] = "atlas"
    value: int

    @classmethod
    def from_text(cls, text, atlas_labels):
        if not atlas_labels or text not in atlas_labels:
            return None
        if not text.isalnum():
            raise UsageError(f"Atlas label {text!r} is not alphanumeric and cannot be a BIDS "
                             "'desc' label; rename it in the labels table.")
        return cls(text, int(atlas_labels[text]))

    def files(self, bids_dir, subject, search_roots=(), atlas=None):
        return [_for_subject(str(atlas), subject)]

    def select(self, data):
        return np.rint(data) == self.value


@dataclass(frozen=True)
class Ds001246Roi(RoiSpec):
    """A ds001246 ROI name of :data:`ROI_PARTS` (unions such as VC, LVC, HVC included).

    Its masks are ds001246's ``sourcedata`` masks of both hemispheres; when those are absent,
    the ``sub-<L>*_desc-<ROI>_mask.nii[.gz]`` files of a derivatives folder in
    ``search_roots``.
    """

    kind: ClassVar[str] = "ds001246"

    @classmethod
    def from_text(cls, text, atlas_labels):
        return cls(text) if text in ROI_PARTS else None

    def files(self, bids_dir, subject, search_roots=(), atlas=None):
        files = _sourcedata_files(bids_dir, subject, self.name)
        if all(listed(f) for f in files):  # annex links without content count
            return files
        for root in search_roots:
            sub = Path(root) / f"sub-{subject}"
            found = sorted(sub.rglob(f"sub-{subject}*_desc-{self.name}_mask.nii*")) \
                if sub.is_dir() else []
            if found:
                return found
        return files


def _for_subject(template: str, subject: str) -> Path:
    """A path with ``{subject}`` replaced by the subject's label."""
    return Path(template.replace("{subject}", subject))


#: ROI kind -> class, in the order :meth:`RoiSpec.parse` tries them.
ROI_SOURCES: dict[str, type[RoiSpec]] = {
    cls.kind: cls for cls in (MaskFileRoi, AtlasRoi, Ds001246Roi)
}


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
    """The mask files making up one ROI of one subject (:meth:`RoiSpec.files`)."""
    return spec.files(bids_dir, subject, search_roots, atlas)


def _load_mask(path: Path, ref: nib.Nifti1Image, spec: RoiSpec) -> tuple[np.ndarray, bool]:
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
                nib.Nifti1Image(spec.select(data).astype(np.float32), img.affine), ref3,
                interpolation="nearest", force_resample=True, copy_header=True,
            )
        data = np.asanyarray(res.dataobj)
        return np.asarray(data) > 0, True
    return spec.select(np.asarray(data)), False


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
        m, was_resampled = _load_mask(path, ref, spec)
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
