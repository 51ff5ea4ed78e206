"""Reading features in unit chunks, name matching and corrupt files."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from bids_decode.errors import DataError, MissingInputError, UsageError
from bids_decode.features.h5file import FeatureFile, stimulus_key


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
