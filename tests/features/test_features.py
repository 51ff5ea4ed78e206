"""Feature extraction: images -> features HDF5. CPU, random weights, never downloads."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from PIL import Image

from bids_decode.errors import DataError, MissingInputError, UsageError
from bids_decode.features import extract as features
from bids_decode.features import networks
from bids_decode.features.networks import NETWORKS

RNG = np.random.default_rng(0)
REAL_EVENTS = Path(__file__).resolve().parents[2] / "bids_decode" / "data" / "ds001246"


def _save(path, shape, mode="RGB"):
    """A random image of odd ``shape`` (height, width) saved at ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    channels = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
    array = RNG.integers(0, 256, size=(*shape, channels), dtype=np.uint8)
    Image.fromarray(array.squeeze(-1) if channels == 1 else array, mode).save(path)
    return path


@pytest.fixture()
def stimuli(tmp_path):
    """Three small images of odd sizes and modes; names are stems."""
    folder = tmp_path / "stimuli"
    paths = [
        _save(folder / "n01443537_22563.JPEG", (37, 53)),
        _save(folder / "img_b.png", (61, 29), "RGBA"),
        _save(folder / "img_c.bmp", (40, 41), "L"),
    ]
    return folder, paths, ["n01443537_22563", "img_b", "img_c"]


def _read(path):
    with h5py.File(path, "r") as f:
        names = [s.decode() for s in f["stimulus_name"][()]]
        layers = {k: v[()] for k, v in f["layers"].items()}
        chunks = {k: v.chunks for k, v in f["layers"].items()}
        attrs = dict(f.attrs)
    return names, layers, chunks, attrs


def _preprocessed(paths, spec):
    return torch.stack([features.preprocess_image(p, spec.preprocessing) for p in paths])


# --------------------------------------------------------------------------- preprocessing
def test_preprocess_image_shape_and_normalisation(tmp_path):
    path = tmp_path / "grey.png"
    Image.new("L", (33, 17), color=128).save(path)
    x = features.preprocess_image(path, networks.IMAGENET_PREPROCESSING)
    assert x.shape == (3, 224, 224) and x.dtype == torch.float32
    mean = np.array([0.485, 0.456, 0.406])
    std = np.array([0.229, 0.224, 0.225])
    expected = (128 / 255 - mean) / std
    np.testing.assert_allclose(x.mean(dim=(1, 2)).numpy(), expected, rtol=1e-5)


def test_caffe_preprocessing_is_bgr_0_255_mean_subtracted(tmp_path):
    path = tmp_path / "red.png"
    Image.new("RGB", (50, 70), color=(200, 10, 0)).save(path)
    x = features.preprocess_image(path, networks.CAFFE_PREPROCESSING)
    assert x.shape == (3, 227, 227)
    np.testing.assert_allclose(x[:, 100, 100].numpy(), [0 - 104, 10 - 117, 200 - 123])


def test_unreadable_image_is_a_data_error(tmp_path):
    path = tmp_path / "broken.jpg"
    path.write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(DataError, match=r"Cannot read image .*broken\.jpg.*Replace it"):
        features.preprocess_image(path, networks.IMAGENET_PREPROCESSING)


# --------------------------------------------------------------------------- discovery
def test_find_images_by_name_extension_and_relative_path(tmp_path):
    folder = tmp_path / "stimuli"
    a = _save(folder / "n01443537_22563.JPEG", (5, 6))
    b = _save(folder / "sub" / "cat01.png", (5, 6))
    c = _save(folder / "dog.tif", (5, 6))
    names = ["n01443537_22563", "sub/cat01.png", "stimuli/cat01.jpg", "dog.tif", "sub/cat01"]
    assert features.find_images(folder, names) == [a, b, b, c, b]


def test_find_images_lists_missing_names_and_folder(stimuli):
    folder, _, names = stimuli
    with pytest.raises(MissingInputError) as err:
        features.find_images(folder, [*names, "n99_1", "n99_2"])
    message = str(err.value)
    assert "2 of 5 stimulus images are missing" in message
    assert "'n99_1', 'n99_2'" in message and str(folder) in message


def test_find_images_ambiguous_name(tmp_path):
    folder = tmp_path / "stimuli"
    _save(folder / "a" / "x.png", (5, 6))
    _save(folder / "b" / "x.jpg", (5, 6))
    with pytest.raises(DataError, match=r"'x' matches 2 images"):
        features.find_images(folder, ["x"])
    assert features.find_images(folder, ["a/x"]) == [folder / "a" / "x.png"]


def test_discover_images_and_names(stimuli, tmp_path):
    folder, paths, _ = stimuli
    (folder / "notes.txt").write_text("not an image")
    found, names = features.discover_images(folder)
    assert names == sorted(["img_b", "img_c", "n01443537_22563"])
    assert set(found) == set(paths)
    empty = tmp_path / "empty_dir"
    empty.mkdir()
    with pytest.raises(MissingInputError, match="No images in .*empty_dir"):
        features.discover_images(empty)


def test_read_names_from_events(tmp_path):
    events = tmp_path / "sub-01_task-x_events.tsv"
    events.write_text(
        "onset\tduration\tstim_file\n0\t9\tn/a\n9\t9\tb.jpg\n18\t9\ta.png\n27\t9\tb.jpg\n"
    )
    assert features.read_names(events) == ["b.jpg", "a.png"]
    single = tmp_path / "names.tsv"
    single.write_text("image\nx\ny\n")
    assert features.read_names(single) == ["x", "y"]
    real = next(REAL_EVENTS.glob("sub-02/ses-perceptionTraining02/func/*run-05_events.tsv"))
    ds001246 = features.read_names(real)  # stimulus_name column, rest rows are n/a
    assert ds001246[0] == "n04587559_13336" and len(ds001246) == len(set(ds001246)) > 10
    other = tmp_path / "other.tsv"
    other.write_text("onset\tfoo\n0\tx\n")
    with pytest.raises(DataError, match=r"columns \['onset', 'foo'\], expected one of stim_file"):
        features.read_names(other)


# --------------------------------------------------------------------------- extraction
@pytest.mark.slow
def test_alexnet_values_equal_a_direct_torchvision_forward(stimuli, tmp_path):
    _, paths, names = stimuli
    out = features.extract_features(paths, names, tmp_path / "f.h5", network="alexnet",
                                     layers=None, weights="random", seed=11, batch_size=2)
    got_names, layers, chunks, _ = _read(out)
    assert got_names == names
    model, _ = networks.load_network("alexnet", "random", seed=11)
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
    out = features.extract_features(paths, names, tmp_path / "sub" / "f.h5",
                                     network="caffe-alexnet", layers=["fc8", "conv1"],
                                     weights="random", seed=3)
    got_names, layers, _, attrs = _read(out)
    assert got_names == names
    assert list(layers) == ["conv1", "fc8"]
    assert layers["conv1"].shape == (3, 96, 55, 55) and layers["fc8"].shape == (3, 1000)
    assert attrs["complete"] and attrs["network"] == "caffe-alexnet"
    assert attrs["weights"] == "random" and attrs["seed"] == 3
    _, info = networks.load_network("caffe-alexnet", "random", seed=3)
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
    out = features.extract_features(paths, names, tmp_path / "f.h5", **kwargs)
    stamp = out.stat().st_mtime_ns
    with caplog.at_level(logging.INFO, logger="bids_decode.features.extract"):
        features.extract_features(paths, names, out, **kwargs)
    assert out.stat().st_mtime_ns == stamp
    assert "Reusing complete features file" in caplog.text
    # another seed, or an incomplete file, is recomputed
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="bids_decode.features.extract"):
        features.extract_features(paths, names, out, **{**kwargs, "seed": 1})
    assert "seed differs" in caplog.text and _read(out)[3]["seed"] == 1
    with h5py.File(out, "a") as f:
        f.attrs["complete"] = False
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="bids_decode.features.extract"):
        features.extract_features(paths, names, out, **{**kwargs, "seed": 1})
    assert "incomplete" in caplog.text and _read(out)[3]["complete"]


def test_extraction_errors(stimuli, tmp_path):
    folder, paths, names = stimuli
    common = dict(network="alexnet", layers=["conv1"], weights="random")
    with pytest.raises(MissingInputError, match=r"1 image files do not exist: .*gone\.png"):
        features.extract_features([*paths, folder / "gone.png"], [*names, "gone"],
                                  tmp_path / "f.h5", **common)
    with pytest.raises(UsageError, match=r"'img_b' occur more than once"):
        features.extract_features(paths, ["img_b", "img_b", "x"], tmp_path / "f.h5", **common)
    with pytest.raises(UsageError, match=r"3 image paths but 2 names"):
        features.extract_features(paths, names[:2], tmp_path / "f.h5", **common)
    with pytest.raises(UsageError, match=r"--device must be cpu, cuda or cuda:N; got 'tpu'"):
        features.extract_features(paths, names, tmp_path / "f.h5", **common, device="tpu")
    broken = folder / "broken.jpg"
    broken.write_bytes(b"junk")
    with pytest.raises(DataError, match=r"broken\.jpg"):
        features.extract_features([*paths, broken], [*names, "broken"], tmp_path / "f.h5",
                                  **common, batch_size=2)
    assert not (tmp_path / "f.h5").exists() and not list(tmp_path.glob(".*.tmp"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")
def test_cuda_without_gpu_is_a_usage_error(stimuli, tmp_path):
    _, paths, names = stimuli
    with pytest.raises(UsageError, match=r"--device cuda .*no CUDA GPU.*--device cpu"):
        features.extract_features(paths, names, tmp_path / "f.h5", network="alexnet",
                                  layers=None, weights="random", device="cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_equals_cpu(stimuli, tmp_path):
    _, paths, names = stimuli
    kwargs = dict(network="vgg19", layers=["conv1_1", "conv5_4", "fc8"], weights="random")
    cpu = _read(features.extract_features(paths, names, tmp_path / "c.h5", **kwargs))[1]
    gpu = _read(features.extract_features(paths, names, tmp_path / "g.h5", **kwargs,
                                          device="cuda"))[1]
    for layer in cpu:
        scale = np.abs(cpu[layer]).max()
        np.testing.assert_allclose(gpu[layer], cpu[layer], atol=2e-3 * scale, err_msg=layer)


@pytest.mark.slow
def test_vgg19_two_images_all_layers(stimuli, tmp_path):
    _, paths, names = stimuli
    out = features.extract_features(paths[:2], names[:2], tmp_path / "v.h5", network="vgg19",
                                    layers=None, weights="random", seed=2, batch_size=2)
    got_names, layers, chunks, _ = _read(out)
    shapes = networks.unit_shapes(NETWORKS["vgg19"])
    assert list(layers) == sorted(shapes)  # HDF5 lists groups alphabetically
    assert {k: v.shape for k, v in layers.items()} == {k: (2, *s) for k, s in shapes.items()}
    assert chunks["conv1_1"][0] == 1  # 12.8 MB per image: one image per chunk
    model, _ = networks.load_network("vgg19", "random", seed=2)
    x = _preprocessed(paths[:2], NETWORKS["vgg19"])
    with torch.no_grad():
        conv1_1 = model.features[:2](x)
        fc8 = model(x)
    np.testing.assert_allclose(layers["conv1_1"], conv1_1.numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(layers["fc8"], fc8.numpy(), rtol=1e-3, atol=1e-5)


def test_chunk_rows():
    assert features.chunk_rows(16, 1000, 4 * 1000) == 16
    assert features.chunk_rows(16, 3, 4 * 1000) == 2  # divisor of the batch, <= n_images
    assert features.chunk_rows(16, 1000, 64 * 224 * 224 * 4) == 1
    assert features.chunk_rows(12, 1000, 3 << 20) == 2


# --------------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """scikit-image's sample photos saved as JPEG/PNG, as a stimulus folder."""
    data = pytest.importorskip("skimage.data")
    folder = tmp_path_factory.mktemp("photos") / "stimuli"
    folder.mkdir()
    for name, suffix in [("astronaut", ".jpg"), ("coffee", ".JPEG"), ("chelsea", ".png"),
                         ("rocket", ".jpg"), ("camera", ".png")]:
        Image.fromarray(getattr(data, name)()).save(folder / f"{name}{suffix}")
    return folder


def _parse(argv):
    parser = argparse.ArgumentParser(prog="bids_decode features")
    features.add_arguments(parser)
    return parser.parse_args(argv)


def test_cli_defaults():
    args = _parse(["stim", "out.h5"])
    assert (args.network, args.layers, args.weights, args.device, args.batch_size, args.seed,
            args.names_from) == ("alexnet", None, None, "cpu", 16, 0, None)


def test_photos_end_to_end_through_the_cli_hook(photos, tmp_path):
    out = tmp_path / "photos.h5"
    code = features.run_from_args(
        _parse([str(photos), str(out), "--weights", "random", "--batch-size", "2"])
    )
    assert code == 0
    names, layers, _, attrs = _read(out)
    assert names == ["astronaut", "camera", "chelsea", "coffee", "rocket"]
    assert list(layers) == list(NETWORKS["alexnet"].layers)
    for layer, values in layers.items():
        assert np.isfinite(values).all(), layer
        assert values.reshape(5, -1).std(axis=0).max() > 0, layer  # images differ
    assert attrs["weights"] == "random"


def test_photos_named_by_an_events_file(photos, tmp_path):
    events = tmp_path / "events.tsv"
    events.write_text("onset\tduration\tstim_file\n0\t9\tcoffee.JPEG\n9\t9\tn/a\n"
                      "18\t9\tstimuli/rocket.jpg\n")
    out = tmp_path / "two.h5"
    features.run_from_args(_parse([str(photos), str(out), "--weights", "random",
                                   "--names-from", str(events), "--layers", "fc7", "conv2"]))
    names, layers, _, _ = _read(out)
    assert names == ["coffee.JPEG", "stimuli/rocket.jpg"]
    assert list(layers) == ["conv2", "fc7"] and layers["fc7"].shape == (2, 4096)
