"""Network weights: seeded random weights, state_dict files, torchvision's cache, and the
messages when they are missing or do not fit."""

from __future__ import annotations

import hashlib

import pytest
import torch

from bids_decode.errors import DataError, MissingInputError
from bids_decode.features.network_weights import load_network


@pytest.mark.slow
def test_random_weights_are_seeded():
    _, a = load_network("alexnet", "random", seed=1)
    _, b = load_network("alexnet", "random", seed=1)
    _, c = load_network("alexnet", "random", seed=2)
    assert a.sha256 == b.sha256 != c.sha256
    assert (a.name, a.seed) == ("random", 1)


def test_random_weights_leave_the_global_rng_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    load_network("caffe-alexnet", "random", seed=5)
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.slow
def test_weights_file_is_loaded_and_hashed(tmp_path):
    model, _ = load_network("caffe-alexnet", "random", seed=7)
    path = tmp_path / "caffe_alexnet.pth"
    torch.save(model.state_dict(), path)
    loaded, info = load_network("caffe-alexnet", path)
    assert info.name == "caffe_alexnet.pth"
    assert info.seed is None
    assert info.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    assert not loaded.training


@pytest.mark.slow
def test_torchvision_cache_is_used(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    model, _ = load_network("alexnet", "random", seed=4)
    cache = tmp_path / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth"
    cache.parent.mkdir(parents=True)
    torch.save(model.state_dict(), cache)
    loaded, info = load_network("alexnet", None)
    assert info.name == "alexnet-owt-7be5be79.pth"
    assert torch.equal(loaded.features[0].weight, model.features[0].weight)


def test_missing_weights_say_how_to_get_them(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(MissingInputError, match=r"vgg19-dcbb9e9d\.pth.*TORCH_HOME.*--weights"):
        load_network("vgg19", None)
    with pytest.raises(MissingInputError, match=r"caffe-alexnet.*Caffe.*--weights FILE"):
        load_network("caffe-alexnet", None)
    with pytest.raises(MissingInputError, match=r"nothere\.pth for network 'alexnet' does not"):
        load_network("alexnet", tmp_path / "nothere.pth")


@pytest.mark.slow
def test_bad_weights_files(tmp_path):
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match=r"Cannot read weights file .*garbage\.pth.*state_dict"):
        load_network("alexnet", garbage)
    model, _ = load_network("caffe-alexnet", "random", seed=0)
    wrong = tmp_path / "caffe.pth"
    torch.save(model.state_dict(), wrong)
    with pytest.raises(DataError, match=r"does not fit network 'alexnet'.*unexpected keys conv1"):
        load_network("alexnet", wrong)
