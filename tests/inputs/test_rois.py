"""The ROI registry (``--roi``): every kind found by its name, its masks loaded, and a new
kind that is one class and one entry."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import nibabel as nib
import numpy as np
import pytest

from bids_decode.errors import UsageError
from bids_decode.inputs import rois

#: a --roi value of each registered kind (a new kind needs its example here)
ROI_EXAMPLES = {"mask": "myV1=/m/sub-{subject}_v1.nii.gz", "atlas": "Vis", "ds001246": "LVC"}


def _nifti(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(path))
    return path


def test_every_roi_kind_is_found_by_its_name(tmp_path):
    assert set(ROI_EXAMPLES) == set(rois.ROI_SOURCES)
    labels = {"Vis": 3}
    for kind, cls in rois.ROI_SOURCES.items():
        spec = rois.RoiSpec.parse(ROI_EXAMPLES[kind], labels)
        assert type(spec) is cls and spec.kind == kind
    with pytest.raises(UsageError, match="Unknown ROI 'V7'"):
        rois.RoiSpec.parse("V7", labels)
    with pytest.raises(UsageError, match="alphanumeric NAME"):
        rois.RoiSpec.parse("my_V1=/x.nii.gz")


def test_roi_kinds_load_their_masks(tmp_path):
    shape, ref = (6, 5, 4), nib.Nifti1Image(np.zeros((6, 5, 4, 2), np.float32), np.eye(4))
    atlas = np.zeros(shape, np.int16)
    atlas[1, 1, 1], atlas[2, 2, 2] = 3, 4
    _nifti(tmp_path / "atlas_sub-01.nii.gz", atlas)
    user = np.zeros(shape, np.uint8)
    user[0, :2, 0] = 1
    _nifti(tmp_path / "sub-01_v1.nii.gz", user)
    anat = tmp_path / "ds" / "sourcedata" / "sub-01" / "anat"
    want_lvc = np.zeros(shape, bool)
    for i, part in enumerate(rois.ROI_PARTS["LVC"]):
        for j, hemi in enumerate(rois.HEMISPHERES):
            m = np.zeros(shape, np.uint8)
            m[i, j, 3] = 1
            want_lvc |= m > 0
            _nifti(anat / f"sub-01_mask_{hemi}_{part}.nii.gz", m)
    specs = [rois.RoiSpec.parse(t, {"Vis": 3}) for t in
             (f"myV1={tmp_path}/sub-{{subject}}_v1.nii.gz", "Vis", "LVC")]
    got = [rois.load_roi(tmp_path / "ds", "01", s, ref, (), str(tmp_path / "atlas_sub-{subject}"
                                                                ".nii.gz")) for s in specs]
    assert np.array_equal(got[0], user > 0)
    assert np.argwhere(got[1]).tolist() == [[1, 1, 1]]
    assert np.array_equal(got[2], want_lvc) and want_lvc.sum() == 12
    assert len(rois.mask_files(tmp_path / "ds", "01", specs[2])) == 12


@dataclass(frozen=True)
class _BoxRoi(rois.RoiSpec):
    """A new kind: ``box:I`` is the voxels of slab ``I`` of a shared mask file."""

    kind: ClassVar[str] = "box"
    index: int = 0

    @classmethod
    def from_text(cls, text, atlas_labels):
        return cls(f"box{text[4:]}", int(text[4:])) if text.startswith("box:") else None

    def files(self, bids_dir, subject, search_roots=(), atlas=None):
        return [bids_dir / f"box_sub-{subject}.nii.gz"]

    def select(self, data):
        out = np.zeros(data.shape, bool)
        out[self.index] = data[self.index] > 0
        return out


def test_a_new_roi_kind_is_one_class_and_one_entry(tmp_path, monkeypatch):
    monkeypatch.setitem(rois.ROI_SOURCES, "box", _BoxRoi)
    _nifti(tmp_path / "box_sub-01.nii.gz", np.ones((4, 3, 2), np.uint8))
    spec = rois.RoiSpec.parse("box:2")
    assert spec == _BoxRoi("box2", 2)
    mask = rois.load_roi(tmp_path, "01", spec, nib.Nifti1Image(np.zeros((4, 3, 2)), np.eye(4)))
    assert np.argwhere(mask)[:, 0].tolist() == [2] * 6
