"""The FeatureStore interface: chunks, rows and targets of the HDF5 store equal the
participant level's, and another store gives the same chunks (moved from the input
registries' tests, which need the same features file)."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from bids_decode.features.h5file import FeatureFile
from bids_decode.features.store import CATEGORIES, IMAGES, FeatureStore


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
