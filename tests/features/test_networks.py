"""Network registry: layer names, unit shapes, weights handling. Random weights only."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from bids_decode.errors import DataError, MissingInputError, UsageError
from bids_decode.features import networks
from bids_decode.features.networks import NETWORKS

VGG19_CONV = [
    ("conv1_1", 64, 224), ("conv1_2", 64, 224),
    ("conv2_1", 128, 112), ("conv2_2", 128, 112),
    *[(f"conv3_{i}", 256, 56) for i in range(1, 5)],
    *[(f"conv4_{i}", 512, 28) for i in range(1, 5)],
    *[(f"conv5_{i}", 512, 14) for i in range(1, 5)],
]
FC = {"fc6": (4096,), "fc7": (4096,), "fc8": (1000,)}

EXPECTED_SHAPES = {
    "alexnet": {
        "conv1": (64, 55, 55), "conv2": (192, 27, 27), "conv3": (384, 13, 13),
        "conv4": (256, 13, 13), "conv5": (256, 13, 13), **FC,
    },
    "vgg19": {**{name: (c, s, s) for name, c, s in VGG19_CONV}, **FC},
    "caffe-alexnet": {
        "conv1": (96, 55, 55), "conv2": (256, 27, 27), "conv3": (384, 13, 13),
        "conv4": (384, 13, 13), "conv5": (256, 13, 13), **FC,
    },
}
EXPECTED_TOTAL = {"alexnet": 494_184, "vgg19": 14_861_288, "caffe-alexnet": 659_272}


def test_expected_tables_cover_the_registry():
    assert set(EXPECTED_SHAPES) == set(NETWORKS) == set(EXPECTED_TOTAL)


@pytest.mark.parametrize("name", list(NETWORKS))
def test_layer_names_and_unit_shapes(name):
    spec = NETWORKS[name]
    shapes = networks.unit_shapes(spec)
    assert list(shapes) == list(EXPECTED_SHAPES[name])  # names, in forward order
    assert shapes == EXPECTED_SHAPES[name]
    assert sum(int(np.prod(s)) for s in shapes.values()) == EXPECTED_TOTAL[name]


@pytest.mark.parametrize("name", ["alexnet", "caffe-alexnet"])
def test_real_forward_matches_meta_shapes(name):
    spec = NETWORKS[name]
    model, _ = networks.load_network(name, "random", seed=3)
    height, width = spec.preprocessing.size
    got = {}
    networks.run_layers(
        model, torch.zeros(2, 3, height, width), spec.layers,
        lambda layer, out: got.__setitem__(layer, tuple(out.shape)),
    )
    assert got == {k: (2, *v) for k, v in EXPECTED_SHAPES[name].items()}


def test_caffe_alexnet_is_the_papers_architecture():
    shapes = networks.unit_shapes(NETWORKS["caffe-alexnet"])
    assert int(np.prod(shapes["conv1"])) == 290_400
    assert sum(int(np.prod(s)) for s in shapes.values()) == 659_272
    model = NETWORKS["caffe-alexnet"].build()
    convs = ("conv1", "conv2", "conv3", "conv4", "conv5")
    groups = {n: model.get_submodule(n).groups for n in convs}
    assert groups == {"conv1": 1, "conv2": 2, "conv3": 1, "conv4": 2, "conv5": 2}
    assert tuple(model.conv2.weight.shape) == (256, 48, 5, 5)
    assert isinstance(model.norm1, torch.nn.LocalResponseNorm)


def test_layers_after_relu_and_fc8_before_softmax():
    model, _ = networks.load_network("alexnet", "random", seed=0)
    spec = NETWORKS["alexnet"]
    for layer, node in spec.layers.items():
        module = model.get_submodule(node)
        expected = torch.nn.Linear if layer == "fc8" else torch.nn.ReLU
        assert isinstance(module, expected), (layer, node, module)


def test_unknown_network_and_layer_messages():
    with pytest.raises(UsageError, match=r"network 'resnet'.*alexnet, vgg19, caffe-alexnet"):
        networks.get_network("resnet")
    with pytest.raises(UsageError, match=r"'conv1_1'.*'alexnet'.*conv1, conv2"):
        networks.resolve_layers(NETWORKS["alexnet"], ["conv1", "conv1_1"])
    # requested layers come back in forward order, once
    assert networks.resolve_layers(NETWORKS["alexnet"], ["fc8", "conv2", "fc8"]) == ["conv2", "fc8"]


@pytest.mark.slow
def test_random_weights_are_seeded():
    _, a = networks.load_network("alexnet", "random", seed=1)
    _, b = networks.load_network("alexnet", "random", seed=1)
    _, c = networks.load_network("alexnet", "random", seed=2)
    assert a.sha256 == b.sha256 != c.sha256
    assert (a.name, a.seed) == ("random", 1)


def test_random_weights_leave_the_global_rng_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    networks.load_network("caffe-alexnet", "random", seed=5)
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.slow
def test_weights_file_is_loaded_and_hashed(tmp_path):
    model, _ = networks.load_network("caffe-alexnet", "random", seed=7)
    path = tmp_path / "caffe_alexnet.pth"
    torch.save(model.state_dict(), path)
    loaded, info = networks.load_network("caffe-alexnet", path)
    assert info.name == "caffe_alexnet.pth"
    assert info.seed is None
    assert info.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    assert not loaded.training


@pytest.mark.slow
def test_torchvision_cache_is_used(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    model, _ = networks.load_network("alexnet", "random", seed=4)
    cache = tmp_path / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth"
    cache.parent.mkdir(parents=True)
    torch.save(model.state_dict(), cache)
    loaded, info = networks.load_network("alexnet", None)
    assert info.name == "alexnet-owt-7be5be79.pth"
    assert torch.equal(loaded.features[0].weight, model.features[0].weight)


def test_missing_weights_say_how_to_get_them(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(MissingInputError, match=r"vgg19-dcbb9e9d\.pth.*TORCH_HOME.*--weights"):
        networks.load_network("vgg19", None)
    with pytest.raises(MissingInputError, match=r"caffe-alexnet.*Caffe.*--weights FILE"):
        networks.load_network("caffe-alexnet", None)
    with pytest.raises(MissingInputError, match=r"nothere\.pth for network 'alexnet' does not"):
        networks.load_network("alexnet", tmp_path / "nothere.pth")


@pytest.mark.slow
def test_bad_weights_files(tmp_path):
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match=r"Cannot read weights file .*garbage\.pth.*state_dict"):
        networks.load_network("alexnet", garbage)
    model, _ = networks.load_network("caffe-alexnet", "random", seed=0)
    wrong = tmp_path / "caffe.pth"
    torch.save(model.state_dict(), wrong)
    with pytest.raises(DataError, match=r"does not fit network 'alexnet'.*unexpected keys conv1"):
        networks.load_network("alexnet", wrong)
