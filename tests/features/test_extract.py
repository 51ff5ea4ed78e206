"""Feature extraction: images -> features HDF5. CPU, random weights, never downloads."""

from __future__ import annotations

import json
import logging

import h5py
import numpy as np
import pytest
import torch

from bids_decode.errors import DataError, MissingInputError, UsageError
from bids_decode.features.extract import extract_features
from bids_decode.features.image_preprocessing import preprocess_image
from bids_decode.features.network_layers import unit_shapes
from bids_decode.features.network_weights import load_network
from bids_decode.features.networks import NETWORKS
from tests.features.helpers import read_features


def _preprocessed(paths, spec):
    return torch.stack([preprocess_image(p, spec.preprocessing) for p in paths])


@pytest.mark.slow
def test_alexnet_values_equal_a_direct_torchvision_forward(stimuli, tmp_path):
    _, paths, names = stimuli
    out = extract_features(paths, names, tmp_path / "f.h5", network="alexnet",
                                     layers=None, weights="random", seed=11, batch_size=2)
    got_names, layers, chunks, _ = read_features(out)
    assert got_names == names
    model, _ = load_network("alexnet", "random", seed=11)
    x = _preprocessed(paths, NETWORKS["alexnet"])
    with torch.no_grad():
        conv1 = model.features[:2](x)
        conv5 = model.features[:12](x)
        fc6 = model.classifier[:3](torch.flatten(model.avgpool(model.features(x)), 1))
        fc8 = model(x)
    for layer, expected in {"conv1": conv1, "conv5": conv5, "fc6": fc6, "fc8": fc8}.items():
        assert layers[layer].dtype == np.float32
        np.testing.assert_allclose(layers[layer], expected.numpy(), rtol=1e-4, atol=1e-5,
                                   err_msg=layer)
    assert (layers["conv1"] >= 0).all() and (layers["fc8"] < 0).any()  # ReLU; pre-softmax
    assert {c[0] for c in chunks.values()} <= {1, 2}  # chunks along images, batch-aligned


def test_file_format_and_attributes(stimuli, tmp_path):
    _, paths, names = stimuli
    out = extract_features(paths, names, tmp_path / "sub" / "f.h5",
                                     network="caffe-alexnet", layers=["fc8", "conv1"],
                                     weights="random", seed=3)
    got_names, layers, _, attrs = read_features(out)
    assert got_names == names
    assert list(layers) == ["conv1", "fc8"]
    assert layers["conv1"].shape == (3, 96, 55, 55) and layers["fc8"].shape == (3, 1000)
    assert attrs["complete"] and attrs["network"] == "caffe-alexnet"
    assert attrs["weights"] == "random" and attrs["seed"] == 3
    _, info = load_network("caffe-alexnet", "random", seed=3)
    assert attrs["weights_sha256"] == info.sha256
    prep = json.loads(attrs["preprocessing"])
    assert prep["size"] == [227, 227] and prep["channel_order"] == "BGR"
    for key in ("bids_decode_version", "torch_version", "torchvision_version"):
        assert attrs[key]
    with h5py.File(out) as f:
        assert h5py.check_string_dtype(f["stimulus_name"].dtype).encoding == "utf-8"
    assert not list(out.parent.glob(".*.tmp"))


@pytest.mark.slow
def test_rerun_reuses_a_complete_file(stimuli, tmp_path, caplog):
    _, paths, names = stimuli
    kwargs = dict(network="alexnet", layers=["conv1", "fc8"], weights="random", seed=0)
    out = extract_features(paths, names, tmp_path / "f.h5", **kwargs)
    stamp = out.stat().st_mtime_ns
    with caplog.at_level(logging.INFO, logger="bids_decode.features.extract"):
        extract_features(paths, names, out, **kwargs)
    assert out.stat().st_mtime_ns == stamp
    assert "Reusing complete features file" in caplog.text
    # another seed, or an incomplete file, is recomputed
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="bids_decode.features.extract"):
        extract_features(paths, names, out, **{**kwargs, "seed": 1})
    assert "seed differs" in caplog.text and read_features(out)[3]["seed"] == 1
    with h5py.File(out, "a") as f:
        f.attrs["complete"] = False
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="bids_decode.features.extract"):
        extract_features(paths, names, out, **{**kwargs, "seed": 1})
    assert "incomplete" in caplog.text and read_features(out)[3]["complete"]


def test_extraction_errors(stimuli, tmp_path):
    folder, paths, names = stimuli
    common = dict(network="alexnet", layers=["conv1"], weights="random")
    with pytest.raises(MissingInputError, match=r"1 image files do not exist: .*gone\.png"):
        extract_features([*paths, folder / "gone.png"], [*names, "gone"],
                                  tmp_path / "f.h5", **common)
    with pytest.raises(UsageError, match=r"'img_b' occur more than once"):
        extract_features(paths, ["img_b", "img_b", "x"], tmp_path / "f.h5", **common)
    with pytest.raises(UsageError, match=r"3 image paths but 2 names"):
        extract_features(paths, names[:2], tmp_path / "f.h5", **common)
    with pytest.raises(UsageError, match=r"--device must be cpu, cuda or cuda:N; got 'tpu'"):
        extract_features(paths, names, tmp_path / "f.h5", **common, device="tpu")
    broken = folder / "broken.jpg"
    broken.write_bytes(b"junk")
    with pytest.raises(DataError, match=r"broken\.jpg"):
        extract_features([*paths, broken], [*names, "broken"], tmp_path / "f.h5",
                                  **common, batch_size=2)
    assert not (tmp_path / "f.h5").exists() and not list(tmp_path.glob(".*.tmp"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")
def test_cuda_without_gpu_is_a_usage_error(stimuli, tmp_path):
    _, paths, names = stimuli
    with pytest.raises(UsageError, match=r"--device cuda .*no CUDA GPU.*--device cpu"):
        extract_features(paths, names, tmp_path / "f.h5", network="alexnet",
                                  layers=None, weights="random", device="cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_equals_cpu(stimuli, tmp_path):
    _, paths, names = stimuli
    kwargs = dict(network="vgg19", layers=["conv1_1", "conv5_4", "fc8"], weights="random")
    cpu = read_features(extract_features(paths, names, tmp_path / "c.h5", **kwargs))[1]
    gpu = read_features(extract_features(paths, names, tmp_path / "g.h5", **kwargs,
                                          device="cuda"))[1]
    for layer in cpu:
        scale = np.abs(cpu[layer]).max()
        np.testing.assert_allclose(gpu[layer], cpu[layer], atol=2e-3 * scale, err_msg=layer)


@pytest.mark.slow
def test_vgg19_two_images_all_layers(stimuli, tmp_path):
    _, paths, names = stimuli
    out = extract_features(paths[:2], names[:2], tmp_path / "v.h5", network="vgg19",
                                    layers=None, weights="random", seed=2, batch_size=2)
    got_names, layers, chunks, _ = read_features(out)
    shapes = unit_shapes(NETWORKS["vgg19"])
    assert list(layers) == sorted(shapes)  # HDF5 lists groups alphabetically
    assert {k: v.shape for k, v in layers.items()} == {k: (2, *s) for k, s in shapes.items()}
    assert chunks["conv1_1"][0] == 1  # 12.8 MB per image: one image per chunk
    model, _ = load_network("vgg19", "random", seed=2)
    x = _preprocessed(paths[:2], NETWORKS["vgg19"])
    with torch.no_grad():
        conv1_1 = model.features[:2](x)
        fc8 = model(x)
    np.testing.assert_allclose(layers["conv1_1"], conv1_1.numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(layers["fc8"], fc8.numpy(), rtol=1e-3, atol=1e-5)
