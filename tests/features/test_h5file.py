"""The HDF5 features file: reading it in unit chunks, name matching, corrupt files, and
writing it (chunk layout, a round trip through the reader, the reuse check)."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from bids_decode.errors import DataError, MissingInputError, UsageError
from bids_decode.features.h5file import (
    MAX_CHUNK_BYTES,
    FeatureFile,
    FeatureFileWriter,
    chunk_rows,
    chunk_shape,
    reuse_mismatch,
)
from bids_decode.features.store import stimulus_key


@pytest.fixture
def feats(tmp_path):
    rng = np.random.default_rng(2)
    names = [f"n0{i}_{i * 7}" for i in range(9)]
    layers = {"conv": rng.standard_normal((9, 5, 3, 2)).astype(np.float32),
              "fc": rng.standard_normal((9, 11)).astype(np.float32)}
    path = tmp_path / "f.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("stimulus_name", data=np.array(names, dtype=object),
                         dtype=h5py.string_dtype())
        for k, v in layers.items():
            f.create_dataset(f"layers/{k}", data=v)
    return path, names, layers


@pytest.mark.parametrize("max_units", [1, 4, 6, 7, 30, 1000])
@pytest.mark.parametrize("unit_range", [None, (5, 23)])
def test_chunks_reassemble_the_layer(feats, max_units, unit_range):
    path, names, layers = feats
    rows = np.array([4, 0, 8, 4])
    with FeatureFile(path) as ff:
        assert ff.unit_shape("conv") == (5, 3, 2) and ff.n_units("conv") == 30
        lo, hi = unit_range or (0, 30)
        got = np.zeros((4, 30))
        seen = []
        for s, e, v in ff.iter_unit_chunks("conv", rows, max_units, unit_range):
            assert v.shape == (4, e - s) and e - s <= max_units
            assert s == lo + len(seen) * max_units  # every chunk but the last is full
            got[:, s:e] = v
            seen.append((s, e))
    assert seen[0][0] == lo and seen[-1][1] == hi
    assert all(a[1] == b[0] for a, b in zip(seen, seen[1:]))
    want = layers["conv"].reshape(9, -1)[rows].astype(np.float64)
    np.testing.assert_array_equal(got[:, lo:hi], want[:, lo:hi])


def test_name_matching(feats):
    path, names, _ = feats
    assert stimulus_key("stimuli/n01443537_22563.JPEG") == "n01443537_22563"
    assert stimulus_key("n01443537_22563") == "n01443537_22563"
    with FeatureFile(path) as ff:
        rows = ff.rows_for([names[3], f"images/{names[5]}.jpg"])
        assert rows.tolist() == [3, 5]
        with pytest.raises(DataError, match="no features"):
            ff.rows_for(["nothing_here"])
        assert ff.check_layers([]) == ["conv", "fc"]
        with pytest.raises(UsageError, match="fc9"):
            ff.check_layers(["fc9"])


def test_missing_incomplete_and_bad_shapes(tmp_path, feats):
    with pytest.raises(MissingInputError):
        FeatureFile(tmp_path / "absent.h5")
    path, names, layers = feats
    with h5py.File(path, "a") as f:
        f.attrs["complete"] = False
    with pytest.raises(DataError, match="incomplete"):
        FeatureFile(path)
    bad = tmp_path / "bad.h5"
    with h5py.File(bad, "w") as f:
        f.create_dataset("stimulus_name", data=np.array(names, dtype=object),
                         dtype=h5py.string_dtype())
        f.create_dataset("layers/fc", data=np.zeros((4, 3)))
    with pytest.raises(DataError, match="expected"):
        FeatureFile(bad)


def test_chunk_rows():
    assert chunk_rows(16, 1000, 4 * 1000) == 16
    assert chunk_rows(16, 3, 4 * 1000) == 2  # divisor of the batch, <= n_images
    assert chunk_rows(16, 1000, 64 * 224 * 224 * 4) == 1
    assert chunk_rows(12, 1000, 3 << 20) == 2


def test_big_layers_are_chunked_by_units():
    assert chunk_shape(16, 1250, (64, 224, 224)) == (1, 41, 224, 224)
    assert 41 * 224 * 224 * 4 <= MAX_CHUNK_BYTES < 42 * 224 * 224 * 4
    assert chunk_shape(16, 1250, (197, 768)) == (8, 197, 768)
    assert chunk_shape(16, 3, (1000,)) == (2, 1000)


# --------------------------------------------------------------------------- writing
WRITER_ATTRS = {"network": "planted", "weights": "none", "weights_sha256": "0" * 64,
                "preprocessing": "{}", "layers": json.dumps(["fc", "conv"]),
                "stimuli_sha256": "1" * 64, "seed": 4}


def _write_planted(path, names, layers, batch_size, finish=True):
    """Write ``layers`` ({name: array of shape (n_images, *unit_shape)}) batch by batch."""
    modules = {name: f"module.{name}" for name in layers}
    with FeatureFileWriter(path, names, WRITER_ATTRS, batch_size, modules,
                           lambda v: np.asarray(v, dtype=np.float32)) as out:
        for start in range(0, len(names), batch_size):
            for name, values in layers.items():
                out.write(name, start, values[start:start + batch_size])
        if finish:
            out.finish()


def test_written_file_reads_back_exactly(tmp_path):
    rng = np.random.default_rng(8)
    names = [f"img_{i}" for i in range(3)]
    layers = {
        "fc": rng.standard_normal((3, 13)),
        # 8.8 MB per image, over MAX_CHUNK_BYTES: one image and one slab of axis 1 per chunk
        "conv": rng.standard_normal((3, 2, 1100, 1000)).astype(np.float32),
    }
    path = tmp_path / "planted.h5"
    _write_planted(path, names, layers, batch_size=2)
    with h5py.File(path, "r") as f:
        assert f["layers/conv"].chunks == chunk_shape(2, 3, (2, 1100, 1000)) == (1, 1, 1100, 1000)
        assert f["layers/fc"].chunks == (2, 13) and f["layers/fc"].dtype == np.float32
        assert f["layers/conv"].attrs["module"] == "module.conv"
        assert f.attrs["complete"] and f.attrs["seed"] == 4
    with FeatureFile(path) as ff:
        assert ff.names == names
        assert ff.layers == ["fc", "conv"]  # the ``layers`` attribute's order, not HDF5's
        assert ff.unit_shape("conv") == (2, 1100, 1000) and ff.unit_shape("fc") == (13,)
        rows = np.array([2, 0, 2])
        for name, values in layers.items():
            flat = values.reshape(3, -1).astype(np.float32).astype(np.float64)[rows]
            got = np.concatenate([v for _, _, v in ff.iter_unit_chunks(name, rows, 700_000)],
                                 axis=1)
            np.testing.assert_array_equal(got, flat, err_msg=name)


def test_unfinished_file_is_refused_and_not_reused(tmp_path):
    names = ["a", "b", "c"]
    layers = {"fc": np.arange(6.0).reshape(3, 2)}
    path = tmp_path / "unfinished.h5"
    _write_planted(path, names, layers, batch_size=2, finish=False)
    with pytest.raises(DataError, match="incomplete"):
        FeatureFile(path)
    assert reuse_mismatch(path, WRITER_ATTRS, names) == "it is incomplete (complete is not True)"
    _write_planted(path, names, layers, batch_size=2)
    assert reuse_mismatch(path, WRITER_ATTRS, names) is None
    assert reuse_mismatch(path, {**WRITER_ATTRS, "seed": 5}, names) == (
        "seed differs (file: 4, now: 5)")
    assert reuse_mismatch(path, WRITER_ATTRS, ["a", "c", "b"]) == "its stimulus names differ"
    other = tmp_path / "not_hdf5.h5"
    other.write_text("text")
    assert reuse_mismatch(other, WRITER_ATTRS, names).startswith(
        "it cannot be read as a features file")
