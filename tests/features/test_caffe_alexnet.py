"""The Caffe bvlc_alexnet: the paper's architecture and unit counts."""

from __future__ import annotations

import numpy as np
import torch

from bids_decode.features.network_layers import unit_shapes
from bids_decode.features.networks import NETWORKS


def test_caffe_alexnet_is_the_papers_architecture():
    shapes = unit_shapes(NETWORKS["caffe-alexnet"])
    assert int(np.prod(shapes["conv1"])) == 290_400
    assert sum(int(np.prod(s)) for s in shapes.values()) == 659_272
    model = NETWORKS["caffe-alexnet"].build()
    convs = ("conv1", "conv2", "conv3", "conv4", "conv5")
    groups = {n: model.get_submodule(n).groups for n in convs}
    assert groups == {"conv1": 1, "conv2": 2, "conv3": 1, "conv4": 2, "conv5": 2}
    assert tuple(model.conv2.weight.shape) == (256, 48, 5, 5)
    assert isinstance(model.norm1, torch.nn.LocalResponseNorm)
