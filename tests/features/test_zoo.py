"""Any network: torchvision models by node name, one's own models, any unit shape.

The reference is torchvision's own ``create_feature_extractor`` on images preprocessed here
with PIL and numpy (not with the package's helpers). Random weights, saved as a state_dict.
"""

from __future__ import annotations

import json
import textwrap

import h5py
import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from torchvision.models.feature_extraction import create_feature_extractor

from bids_decode.cli import main
from bids_decode.errors import EXIT_DATAERR, EXIT_NOINPUT, EXIT_OK, EXIT_USAGE
from bids_decode.features import networks, zoo
from bids_decode.features.extract import extract_features
from bids_decode.features.network_layers import default_layer_names, resolve_layers, unit_shapes
from bids_decode.features.network_weights import load_network

ACCEPTANCE = {
    "resnet18": ["layer1", "layer3.1.relu_1", "avgpool", "fc"],
    "vit_b_16": ["encoder.layers.encoder_layer_2", "encoder.ln", "heads.head"],
}
MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Three small images of odd sizes and modes."""
    folder = tmp_path_factory.mktemp("zoo") / "stimuli"
    folder.mkdir()
    rng = np.random.default_rng(5)
    for name, shape, mode in [("a", (37, 53, 3), "RGB"), ("b", (61, 29, 4), "RGBA"),
                              ("c", (40, 41), "L")]:
        smooth = np.cumsum(rng.integers(-9, 10, size=shape), axis=0) % 256
        Image.fromarray(smooth.astype(np.uint8), mode).save(folder / f"{name}.png")
    return folder


def _reference_input(folder, size=224) -> torch.Tensor:
    """Whole image resized to size x size (PIL bilinear), 0-1, ImageNet mean/std."""
    out = []
    for path in sorted(folder.glob("*.png")):
        with Image.open(path) as im:
            rgb = np.asarray(im.convert("RGB").resize((size, size), Image.BILINEAR),
                             dtype=np.float32) / 255.0
        out.append(((rgb - MEAN) / STD).transpose(2, 0, 1))
    return torch.from_numpy(np.stack(out))


def _random_state_dict(name, path, seed=0):
    torch.manual_seed(seed)
    model = torchvision.models.get_model(name, weights=None).eval()
    for module in model.modules():  # torchvision starts ViT heads at zero: make them vary
        if isinstance(module, torch.nn.Linear) and not module.weight.any():
            torch.nn.init.normal_(module.weight, std=0.02)
            torch.nn.init.normal_(module.bias, std=0.02)
    torch.save(model.state_dict(), path)
    return model


def _read_layers(path):
    with h5py.File(path, "r") as f:
        return ({k: v[()] for k, v in f["layers"].items()}, dict(f.attrs),
                [s.decode() for s in f["stimulus_name"][()]])


def _agree(got, expected, what):
    got = np.asarray(got, dtype=np.float64).ravel()
    expected = np.asarray(expected, dtype=np.float64).ravel()
    r = np.corrcoef(got, expected)[0, 1]
    rel = np.abs(got - expected).max() / np.abs(expected).max()  # relative to the layer's scale
    assert r > 0.9999 and rel < 1e-3, f"{what}: r = {r:.6f}, max relative error {rel:.2e}"


def _list_layers(capsys, name, *more):
    assert main(["features", "--network", name, "--list-layers", *more]) == EXIT_OK
    lines = [ln for ln in capsys.readouterr().out.splitlines() if not ln.startswith("#")]
    return {ln.split()[0]: ln.split()[1:] for ln in lines}


# --------------------------------------------------------------------------- acceptance
@pytest.mark.slow
@pytest.mark.parametrize("name", list(ACCEPTANCE))
def test_features_equal_torchvision_feature_extractor(name, images, tmp_path, capsys):
    layers = ACCEPTANCE[name]
    weights = tmp_path / f"{name}.pth"
    model = _random_state_dict(name, weights, seed=3)
    out = tmp_path / f"{name}.h5"
    code = main(["features", str(images), str(out), "--network", name, "--weights",
                 str(weights), "--layers", *layers, "--batch-size", "2"])
    assert code == EXIT_OK
    got, attrs, names = _read_layers(out)
    assert names == ["a", "b", "c"]
    assert list(got) == sorted(layers)  # dataset names are the node names as given
    assert json.loads(attrs["layers"]) == layers  # forward order
    assert attrs["network"] == name and attrs["preprocessing_choice"] == "default"

    with torch.no_grad():
        expected = create_feature_extractor(model, return_nodes=layers)(
            _reference_input(images))
    listed = _list_layers(capsys, name)
    for layer in layers:
        assert got[layer].shape == tuple(expected[layer].shape), layer
        _agree(got[layer], expected[layer].numpy(), f"{name} {layer}")
        assert layer in listed, f"--list-layers does not print {layer}"
        assert int(listed[layer][0]) == int(np.prod(expected[layer].shape[1:])), layer


def test_list_layers_prints_nodes_modules_and_unit_counts(capsys):
    listed = _list_layers(capsys, "resnet18")
    model = torchvision.models.resnet18().eval()
    nodes = torchvision.models.feature_extraction.get_graph_node_names(model)[1]
    assert set(nodes) <= set(listed)  # every eval-mode node name
    assert listed["layer3.1.relu_1"][:2] == [str(256 * 14 * 14), "256x14x14"]
    assert listed["layer1"][:2] == [str(64 * 56 * 56), "64x56x56"]
    assert listed["layer1"][-2:] == ["=", "layer1.1.relu_1"]  # a module stands for its output
    assert listed["fc"][:3] == ["1000", "1000", "*"]  # logits: a default layer
    defaults = [n for n, rest in listed.items() if "*" in rest]
    assert defaults == ["layer1", "layer2", "layer3", "layer4", "flatten", "fc"]
    # paper names of the registry networks are listed with the node they stand for
    paper = _list_layers(capsys, "alexnet")
    assert paper["conv1"] == [str(64 * 55 * 55), "64x55x55", "*", "=", "features.1"]
    assert "features.3" in paper and "*" not in paper["features.3"]


def test_list_layers_of_a_vit_at_its_torchvision_crop(capsys):
    listed = _list_layers(capsys, "vit_b_16", "--preprocessing", "torchvision")
    assert listed["encoder.ln"][:2] == [str(197 * 768), "197x768"]  # tokens x features


# --------------------------------------------------------------------------- the zoo
def test_every_torchvision_model_is_a_network_with_default_layers():
    names = torchvision.models.list_models(module=torchvision.models)
    assert set(names) == set(zoo.model_names()) and len(names) >= 80
    for name in names:
        spec = networks.get_network(name)
        assert spec.cache_file == zoo.default_weights(name).url.rsplit("/", 1)[-1]
        if name in networks.NETWORKS:
            continue
        family = zoo.family(name)
        assert family is not None, f"{name} has no family (default layers)"


@pytest.mark.slow
def test_default_layers_resolve_for_every_model():
    """Every model's default layers are graph nodes or modules of it (traced on the meta
    device; the large RegNets, which cannot be built there, are left out: their family's
    names are checked on regnet_y_400mf)."""
    for name in zoo.model_names():
        if name.startswith("regnet_") and name not in ("regnet_x_400mf", "regnet_y_400mf"):
            continue
        spec = networks.get_network(name)
        defaults = default_layer_names(spec)
        assert resolve_layers(spec, defaults) == defaults, name
        assert len(defaults) >= 4, name


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted({f.example for f in zoo.FAMILIES}))
def test_family_defaults_resolve_to_distinct_tensors(name):
    spec = networks.get_network(name)
    shapes = unit_shapes(spec)
    layers = list(shapes)
    assert layers == default_layer_names(spec)
    assert len(layers) >= 4 and all(len(s) >= 1 for s in shapes.values())
    assert shapes[layers[-1]] == (1000,)  # logits
    assert len(shapes[layers[-2]]) in (1, 2, 3)  # penultimate


def test_unknown_node_names_suggest_near_ones_and_list_layers(tmp_path):
    with pytest.raises(Exception, match=r"'layer3\.1\.relu2'.*did you mean layer3\.1\.relu, "
                                        r"layer3\.1\.relu_1.*--list-layers"):
        resolve_layers(networks.get_network("resnet18"), ["layer3.1.relu2"])
    code = main(["features", str(tmp_path), str(tmp_path / "o.h5"), "--network", "resnet999"])
    assert code == EXIT_USAGE


def test_missing_pretrained_weights_name_the_file(tmp_path, monkeypatch, capsys, images):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    code = main(["features", str(images), str(tmp_path / "o.h5"), "--network", "resnet50"])
    assert code == EXIT_NOINPUT
    err = capsys.readouterr().err
    assert "resnet50-11ad3fa6.pth" in err and "TORCH_HOME" in err and "--weights" in err
    monkeypatch.setenv("BIDS_DECODE_CONTAINER", "docker")
    assert main(["features", str(images), str(tmp_path / "o.h5"), "--network",
                 "vit_b_16"]) == EXIT_NOINPUT
    err = capsys.readouterr().err
    assert "hub/checkpoints/vit_b_16-c867db91.pth" in err and "-v DIR:" in err


@pytest.mark.slow
def test_torchvision_cache_and_old_densenet_keys(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    model, _ = load_network("densenet121", "random", seed=1)
    state = model.state_dict()
    old = {k.replace("norm1", "norm.1").replace("conv2", "conv.2"): v  # as published (2017)
           for k, v in state.items() if not k.endswith("num_batches_tracked")}
    assert old.keys() != state.keys()
    cache = tmp_path / "hub" / "checkpoints" / "densenet121-a639ec97.pth"
    cache.parent.mkdir(parents=True)
    torch.save(old, cache)
    loaded, info = load_network("densenet121", None)
    assert info.name == cache.name
    for key, value in state.items():
        assert torch.equal(loaded.state_dict()[key], value), key


@pytest.mark.slow
def test_torchvision_preprocessing_is_the_weights_transforms(images, tmp_path):
    out = extract_features(
        sorted(images.glob("*.png")), ["a", "b", "c"], tmp_path / "t.h5", network="resnet18",
        layers=["conv1"], weights="random", preprocessing="torchvision")
    got, attrs, _ = _read_layers(out)
    prep = json.loads(attrs["preprocessing"])
    assert attrs["preprocessing_choice"] == "torchvision"
    assert prep["kind"] == "torchvision" and prep["weights"] == "ResNet18_Weights.IMAGENET1K_V1"
    assert prep["resize_size"] == [256] and prep["crop_size"] == [224]
    model, _ = load_network("resnet18", "random", seed=0)
    transform = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.transforms()
    with Image.open(images / "b.png") as im:
        x = transform(im.convert("RGB"))[None]
    with torch.no_grad():
        expected = model.conv1(x)
    np.testing.assert_allclose(got["conv1"][1], expected[0].numpy(), rtol=1e-4, atol=1e-5)
    with pytest.raises(Exception, match=r"--preprocessing torchvision needs a torchvision"):
        extract_features(sorted(images.glob("*.png")), ["a", "b", "c"],
                         tmp_path / "c.h5", network="caffe-alexnet", layers=None,
                         weights="random", preprocessing="torchvision")


@pytest.mark.slow
def test_node_names_of_the_registry_networks_equal_their_paper_layers(images, tmp_path):
    out = extract_features(
        sorted(images.glob("*.png")), ["a", "b", "c"], tmp_path / "a.h5", network="alexnet",
        layers=["conv2", "features.4", "classifier.6", "features.3"], weights="random")
    got, attrs, _ = _read_layers(out)
    assert json.loads(attrs["layers"]) == ["features.3", "conv2", "features.4", "classifier.6"]
    np.testing.assert_array_equal(got["conv2"], got["features.4"])
    assert (got["features.3"] < 0).any() and (got["conv2"] >= 0).all()  # conv, then its ReLU


# --------------------------------------------------------------------------- own networks
OWN = textwrap.dedent('''
    import torch
    from torch import nn


    class Tiny(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(3, 4, 5, stride=4), nn.ReLU())
            self.pool = nn.AdaptiveAvgPool2d(3)
            self.head = nn.Linear(36, 7)

        def forward(self, x):
            x = self.pool(self.stem(x))
            return self.head(torch.flatten(x, 1))


    def build():
        return Tiny()


    def not_a_module():
        return 3
''')


@pytest.fixture()
def own_module(tmp_path, monkeypatch):
    (tmp_path / "own_nets_for_test.py").write_text(OWN)
    monkeypatch.syspath_prepend(str(tmp_path))
    import importlib

    return importlib.import_module("own_nets_for_test")


def test_own_callable_with_a_weights_file(own_module, images, tmp_path, capsys):
    torch.manual_seed(9)
    model = own_module.build().eval()
    weights = tmp_path / "tiny.pth"
    torch.save(model.state_dict(), weights)
    listed = _list_layers(capsys, "own_nets_for_test:build")
    assert listed["stem.1"][:2] == [str(4 * 55 * 55), "4x55x55"]
    assert [n for n, rest in listed.items() if "*" in rest] == ["stem", "pool", "head"]
    out = tmp_path / "own.h5"
    assert main(["features", str(images), str(out), "--network", "own_nets_for_test:build",
                 "--weights", str(weights)]) == EXIT_OK
    got, attrs, _ = _read_layers(out)
    assert json.loads(attrs["layers"]) == ["stem", "pool", "head"]
    with torch.no_grad():
        x = _reference_input(images)
        expected = {"stem": model.stem(x), "pool": model.pool(model.stem(x)), "head": model(x)}
    for layer, value in expected.items():
        _agree(got[layer], value.numpy(), layer)
    # as built (no --weights): recorded as such, with the state_dict's hash
    assert main(["features", str(images), str(tmp_path / "b.h5"), "--network",
                 "own_nets_for_test:build", "--layers", "head"]) == EXIT_OK
    assert _read_layers(tmp_path / "b.h5")[1]["weights"] == "as-built"
    capsys.readouterr()
    assert main(["features", "--network", "own_nets_for_test:not_a_module",
                 "--list-layers"]) == EXIT_USAGE
    assert "returned a int, expected a torch.nn.Module" in capsys.readouterr().err
    assert main(["features", "--network", "no_such_module_xyz:build",
                 "--list-layers"]) == EXIT_USAGE
    assert "Cannot import the network 'no_such_module_xyz:build'" in capsys.readouterr().err


def test_own_torchscript_feature_extractor(own_module, images, tmp_path, capsys):
    torch.manual_seed(4)
    model = own_module.build().eval()
    scripted = torch.jit.script(create_feature_extractor(model, {"stem.1": "relu",
                                                                 "head": "logits"}))
    path = tmp_path / "tiny_features.pt"
    torch.jit.save(scripted, str(path))
    listed = _list_layers(capsys, str(path))
    assert listed == {"relu": [str(4 * 55 * 55), "4x55x55", "*"], "logits": ["7", "7", "*"]}
    out = tmp_path / "ts.h5"
    assert main(["features", str(images), str(out), "--network", str(path)]) == EXIT_OK
    got, attrs, _ = _read_layers(out)
    assert attrs["weights"] == path.name
    with torch.no_grad():
        x = _reference_input(images)
        _agree(got["relu"], model.stem(x).numpy(), "relu")
        _agree(got["logits"], model(x).numpy(), "logits")
    assert main(["features", str(images), str(out), "--network",
                 str(tmp_path / "absent.pt")]) == EXIT_NOINPUT
    assert "absent.pt does not exist" in capsys.readouterr().err
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not torchscript")
    assert main(["features", "--network", str(junk), "--list-layers"]) == EXIT_DATAERR


def test_the_image_bakes_the_networks_the_docs_use():
    import importlib.util
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    spec = importlib.util.spec_from_file_location("fetch_weights", root / "docker" /
                                                  "fetch-weights.py")
    fetch = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fetch)
    baked = set(fetch.NETWORKS)
    assert baked <= set(zoo.model_names())
    docs = "\n".join(p.read_text() for p in [root / "README.md", *root.glob("docs/*.md")])
    used = set(re.findall(r"--network ([A-Za-z0-9_]+)", docs)) & set(zoo.model_names())
    assert used and used <= baked, used - baked
    for text in (root / "docs" / "features.md", root / "docs" / "containers.md"):
        sentence = re.search(r"(?:bakes the weights of|downloads those of) (.+?) (?:when|\()",
                             " ".join(text.read_text().split()))
        assert set(re.findall(r"`([a-z0-9_]+)`", sentence.group(1))) == baked, text.name


def test_participant_preprocessing_option_is_declared_once():
    from bids_decode.cli import parse_args
    from bids_decode.config import DECODING_KEYS

    base = ["/data", "/out", "participant", "--network", "resnet18"]
    assert parse_args(base).preprocessing == "default"
    assert parse_args([*base, "--preprocessing", "torchvision"]).preprocessing == "torchvision"
    assert "preprocessing" in DECODING_KEYS
    assert main([*base, "--preprocessing", "crop"]) == EXIT_USAGE
