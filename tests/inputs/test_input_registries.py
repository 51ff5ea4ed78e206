"""Pluggable inputs: the FeatureStore interface and the BOLD and ROI source registries."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import ClassVar

import h5py
import nibabel as nib
import numpy as np
import pytest

from bids_decode.errors import MissingInputError, UsageError
from bids_decode.features.h5file import FeatureFile
from bids_decode.features.store import CATEGORIES, IMAGES, FeatureStore
from bids_decode.inputs import rois
from bids_decode.inputs import sources as inputs

# ----------------------------------------------------------------------------- FeatureStore


@pytest.fixture
def feats(tmp_path):
    """Features of 18 images (categories of 3, 5 and 10 images: averages that are not exact in
    binary) with odd unit shapes, plus category features."""
    rng = np.random.default_rng(5)
    names = [f"n0{c}_{i}" for c, n in enumerate((3, 5, 10)) for i in range(n)]
    layers = {"conv": rng.standard_normal((18, 7, 3, 5)),  # float64: sums are not exact
              "fc": rng.standard_normal((18, 13)).astype(np.float32)}
    cats = {k: rng.standard_normal((3, *v.shape[1:])).astype(np.float32)
            for k, v in layers.items()}
    path = tmp_path / "f.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("stimulus_name", data=np.array(names, dtype=object),
                         dtype=h5py.string_dtype())
        f.create_dataset("category_name", data=np.array(["n00", "n01", "n02"], dtype=object),
                         dtype=h5py.string_dtype())
        for k, v in layers.items():
            f.create_dataset(f"layers/{k}", data=v)
            f.create_dataset(f"category_layers/{k}", data=cats[k])
    return path, names, layers, cats


def _chunks_before(ff, layer, train_rows, targets, chunk, unit_range):
    """participant._chunks as it was before the FeatureStore (commit 6cca099), the reference."""
    source, test_groups = targets
    n_train = len(train_rows)
    sizes = np.array([len(g) for g in test_groups])
    if source == IMAGES:
        rows = np.concatenate([train_rows, *test_groups])
        starts = np.r_[0, np.cumsum(sizes)[:-1]]
        for s, e, Y in ff.iter_unit_chunks(layer, rows, chunk, unit_range):
            Yt = np.ascontiguousarray(Y[n_train:].T)
            Yte = np.add.reduceat(Yt, starts, axis=1).T
            yield s, e, Y[:n_train], Yte / sizes[:, None]
        return
    cat_rows = np.concatenate(test_groups)
    for (s, e, Ytr), (_, _, Yte) in zip(
            ff.iter_unit_chunks(layer, train_rows, chunk, unit_range),
            ff.iter_unit_chunks(layer, cat_rows, chunk, unit_range, source)):
        yield s, e, Ytr, Yte


def _assemble(chunks, n_train, n_test, lo, hi):
    Ytr, Yte = np.full((n_train, hi - lo), np.nan), np.full((n_test, hi - lo), np.nan)
    for s, e, a, b in chunks:
        Ytr[:, s - lo:e - lo], Yte[:, s - lo:e - lo] = a, b
    return Ytr, Yte


@pytest.mark.parametrize("labels, source", [
    (["n00_1", "n01", "n02_3", "n02"], IMAGES),  # images, and categories of several images
    (["n02", "n00", "n01"], CATEGORIES),  # every label a category of /category_layers
])
@pytest.mark.parametrize("chunk, unit_range", [(7, (3, 101)), (13, None), (1000, (0, 105))])
def test_store_chunks_equal_the_participant_chunks_bit_for_bit(feats, labels, source, chunk,
                                                               unit_range):
    path, names, layers, cats = feats
    train_rows = np.array([5, 0, 17, 5, 7, 2])
    with FeatureFile(path) as ff:
        assert isinstance(ff, FeatureStore)
        targets = ff.targets(labels)
        assert targets.source == source
        legacy = (targets.source, targets.rows)
        got = list(ff.iter_train_test_chunks("conv", train_rows, targets, chunk, unit_range))
        want = list(_chunks_before(ff, "conv", train_rows, legacy, chunk, unit_range))
        # partition invariance: one chunk over the whole range gives the same bits
        lo, hi = unit_range or (0, 105)
        whole = list(ff.iter_train_test_chunks("conv", train_rows, targets, 10**6, (lo, hi)))
    assert [(s, e) for s, e, *_ in got] == [(s, e) for s, e, *_ in want]
    for (_, _, a, b), (_, _, c, d) in zip(got, want):
        assert a.tobytes() == c.tobytes() and b.tobytes() == d.tobytes()
    Ytr, Yte = _assemble(got, len(train_rows), len(labels), lo, hi)
    Wtr, Wte = _assemble(whole, len(train_rows), len(labels), lo, hi)
    assert Ytr.tobytes() == Wtr.tobytes() and Yte.tobytes() == Wte.tobytes()
    # and the values are the planted ones: training rows, each label's mean (or category row)
    flat = layers["conv"].reshape(18, -1).astype(np.float64)
    np.testing.assert_array_equal(Ytr, flat[train_rows, lo:hi])
    if source == IMAGES:
        expect = [flat[[names.index(lab)]] if "_" in lab else
                  flat[[i for i, n in enumerate(names) if n.startswith(lab + "_")]]
                  for lab in labels]
        expect = np.array([e.mean(axis=0) for e in expect])
    else:
        expect = cats["conv"].reshape(3, -1).astype(np.float64)[[2, 0, 1]]
    np.testing.assert_allclose(Yte, expect[:, lo:hi], rtol=1e-12, atol=0)


def test_store_image_rows_and_target_unit(feats):
    path, names, layers, cats = feats
    with FeatureFile(path) as ff:
        assert ff.image_rows(["n01_2", "n00_0"]).tolist() == [5, 0]
        assert ff.image_rows(["n01_2", "n02"]) is None  # a category of 10 images
        assert ff.image_rows(["n01", "n02"]) is None  # category features
        assert ff.targets(["n01_2", "n02"]).n_rows == 11
        for labels in (["n01_2", "n02"], ["n01", "n02"]):
            t = ff.targets(labels)
            col = np.concatenate([b for *_, b in ff.iter_train_test_chunks(
                "fc", np.array([0]), t, 4)], axis=1)[:, 9]
            assert ff.target_unit("fc", 9, t).tolist() == col.tolist()


class _ListStore(FeatureStore):
    """A store held in memory: the interface is enough for the participant's chunks."""

    def __init__(self, names, layers):
        self.path, self.names, self._layers = "memory", list(names), layers
        self.layers = list(layers)

    def unit_shape(self, layer):
        return self._layers[layer].shape[1:]

    def category_names(self):
        return None

    def iter_unit_chunks(self, layer, rows, max_units, unit_range=None, source=IMAGES):
        flat = self._layers[layer].reshape(len(self.names), -1).astype(np.float64)
        lo, hi = unit_range or (0, flat.shape[1])
        for s in range(lo, hi, max_units):
            yield s, min(hi, s + max_units), flat[rows, s:min(hi, s + max_units)]


def test_another_store_gives_the_same_chunks(feats):
    path, names, layers, _ = feats
    other = _ListStore(names, layers)
    labels, train_rows = ["n00_1", "n01", "n02_3"], np.array([4, 4, 9, 1])
    with FeatureFile(path) as ff:
        want = list(ff.iter_train_test_chunks("fc", train_rows, ff.targets(labels), 5))
    got = list(other.iter_train_test_chunks("fc", train_rows, other.targets(labels), 5))
    for (s, e, a, b), (s2, e2, c, d) in zip(got, want, strict=True):
        assert (s, e) == (s2, e2) and a.tobytes() == c.tobytes() and b.tobytes() == d.tobytes()
    assert other.rows_for(["x/n02_1.JPEG"]).tolist() == [9]
    assert other.check_layers([]) == ["conv", "fc"]


# ----------------------------------------------------------------------------- BOLD sources


@pytest.fixture
def bids(tmp_path):
    ds = tmp_path / "ds"
    (ds / "sub-01").mkdir(parents=True)
    (ds / "dataset_description.json").write_text(json.dumps({"Name": "x",
                                                             "BIDSVersion": "1.9.0"}))
    return ds


#: a --bold-source value of each registered kind (a new kind needs its example here)
BOLD_EXAMPLES = {"raw": "raw", "preproc-spm": "preproc-spm", "fmriprep": "fmriprep",
                 "bdata": "bdata=/data/Subject{subject}.h5"}


def test_every_bold_source_kind_is_found_by_its_name(bids):
    assert set(BOLD_EXAMPLES) == set(inputs.BOLD_SOURCES)
    (bids / "derivatives" / "preproc-spm" / "output").mkdir(parents=True)
    (bids / "derivatives" / "fmriprep").mkdir(parents=True)
    for kind, cls in inputs.BOLD_SOURCES.items():
        src = inputs.BoldSource.parse(BOLD_EXAMPLES[kind], bids, {}, "MNI")
        assert type(src) is cls and src.kind == kind and src.space == "MNI"
        assert callable(src.subject_inputs)
    assert inputs.BoldSource.parse("bdata=/d/S{subject}.h5", bids, {}, "T1w").root.name \
        == "S{subject}.h5"
    assert type(inputs.BoldSource.parse("auto", bids, {}, "T1w")) is inputs.PreprocSpmRuns
    fp = inputs.BoldSource.parse("fmriprep", bids, {"fmriprep": str(bids)}, "T1w")
    assert fp.root == bids


def test_bold_source_paths_are_detected_and_bad_ones_named(bids, tmp_path):
    spm = tmp_path / "spm" / "sub-01" / "func"
    spm.mkdir(parents=True)
    (spm / "sub-01_task-x_run-1_bold_preproc.nii.gz").write_bytes(b"")
    assert type(inputs.BoldSource.parse(str(tmp_path / "spm"), bids, {}, "T1w")) \
        is inputs.PreprocSpmRuns
    assert type(inputs.BoldSource.parse(str(bids), bids, {}, "T1w")) is inputs.FmriprepRuns
    for text, what in (("raw=x", "--bold-source"), ("bdata", "--bold-source"),
                       ("preproc-spm", "preproc-spm"), ("fmriprep", "fmriprep")):
        with pytest.raises(MissingInputError, match=f"folder for '{what}'"):
            inputs.BoldSource.parse(text, bids, {}, "T1w")


@dataclass(frozen=True)
class _PlantedSource(inputs.BoldSource):
    """A new kind: samples planted from the features (``planted=SEED``)."""

    kind: ClassVar[str] = "planted"
    takes_path: ClassVar[bool] = True
    features: ClassVar[str] = ""

    def subject_inputs(self, config, subject):
        from bids_decode.inputs.samples import Samples

        rng = np.random.default_rng(int(str(self.root)))
        with FeatureFile(self.features) as ff:
            Y = next(ff.iter_unit_chunks("fc", np.arange(len(ff.names)), 10**6))[2]
            names = ff.names
        W = rng.standard_normal((Y.shape[1], 40))
        train = np.tile(np.arange(12), 4)
        X_train = Y[train] @ W + 0.3 * rng.standard_normal((train.size, 40))
        X_test = Y[12:] @ W + 0.3 * rng.standard_normal((6, 40))
        info = {"n_test_blocks": 6, "n_repeats_dropped": 0}
        samples = Samples(X_train.astype(np.float32), [names[i] for i in train],
                          np.zeros(train.size), X_test.astype(np.float32), names[12:],
                          np.ones(6), np.arange(40), info)
        mask = np.zeros(40, bool)
        mask[:30] = True
        return inputs.SubjectInputs(samples, {"planted": mask}, {"planted": ["none"]}, None)

    def input_files(self, config, subject):
        return []  # planted from the features: no file of its own


def test_a_new_bold_kind_needs_no_participant_change(bids, tmp_path, monkeypatch, feats):
    from bids_decode.config import RunConfig
    from bids_decode.participant import run_participant

    path = feats[0]
    monkeypatch.setitem(inputs.BOLD_SOURCES, "planted", _PlantedSource)
    monkeypatch.setattr(_PlantedSource, "features", str(path))
    cfg = RunConfig(str(bids), str(tmp_path / "out"), "participant", roi=("VC",),
                    features=str(path), layers=("fc",), bold_source="planted=3",
                    n_voxels=20, work_dir=str(tmp_path / "work"))
    res = run_participant(cfg, "01")
    assert res["complete"] and [r["roi"] for r in res["rows"]] == ["planted"]
    # a linear planted code: decoded features follow the true ones
    assert res["rows"][0]["profile_r_mean"] > 0.5
    assert res["rows"][0]["n_test_images"] == 6


# ----------------------------------------------------------------------------- ROI sources


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
