"""Network registry: each entry's paper layers, unit shapes and module mapping. Random weights
only."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bids_decode.errors import UsageError
from bids_decode.features.network_layers import unit_shapes
from bids_decode.features.network_weights import load_network
from bids_decode.features.networks import NETWORKS, get_network

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
    shapes = unit_shapes(spec)
    assert list(shapes) == list(EXPECTED_SHAPES[name])  # names, in forward order
    assert shapes == EXPECTED_SHAPES[name]
    assert sum(int(np.prod(s)) for s in shapes.values()) == EXPECTED_TOTAL[name]


def test_layers_after_relu_and_fc8_before_softmax():
    model, _ = load_network("alexnet", "random", seed=0)
    spec = NETWORKS["alexnet"]
    for layer, node in spec.layers.items():
        module = model.get_submodule(node)
        expected = torch.nn.Linear if layer == "fc8" else torch.nn.ReLU
        assert isinstance(module, expected), (layer, node, module)


def test_unknown_network_message():
    with pytest.raises(UsageError, match=r"network 'resnet'.*alexnet, vgg19, caffe-alexnet"):
        get_network("resnet")
