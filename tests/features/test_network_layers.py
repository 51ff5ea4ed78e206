"""Layer names, order and shapes: meta-device shapes equal a real forward pass."""

from __future__ import annotations

import pytest
import torch

from bids_decode.errors import UsageError
from bids_decode.features.network_layers import resolve_layers, run_layers
from bids_decode.features.network_weights import load_network
from bids_decode.features.networks import NETWORKS
from tests.features.test_networks import EXPECTED_SHAPES


@pytest.mark.parametrize("name", ["alexnet", "caffe-alexnet"])
def test_real_forward_matches_meta_shapes(name):
    spec = NETWORKS[name]
    model, _ = load_network(name, "random", seed=3)
    height, width = spec.preprocessing.size
    got = {}
    run_layers(
        model, torch.zeros(2, 3, height, width), spec.layers,
        lambda layer, out: got.__setitem__(layer, tuple(out.shape)),
    )
    assert got == {k: (2, *v) for k, v in EXPECTED_SHAPES[name].items()}


def test_unknown_layer_message_and_forward_order():
    with pytest.raises(UsageError, match=r"'conv1_1'.*'alexnet'.*conv1, conv2"):
        resolve_layers(NETWORKS["alexnet"], ["conv1", "conv1_1"])
    # requested layers come back in forward order, once
    assert resolve_layers(NETWORKS["alexnet"], ["fc8", "conv2", "fc8"]) == ["conv2", "fc8"]
