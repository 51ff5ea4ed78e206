"""Deep networks whose units are decoded: a registry from network name to builder.

Each entry of :data:`NETWORKS` says how to build the network (untrained), which module
output is each of the paper's layers, how images must be preprocessed for its weights and
where torchvision caches its pretrained weights. Adding a network is one entry.

Layers follow Horikawa & Kamitani (2017): conv layers and fc6/fc7 are taken after their
ReLU (as the Caffe blobs the authors used, where ReLU runs in place); fc8 is the
pre-softmax output.

Besides these three entries, :func:`get_network` accepts every torchvision classification
model (``torchvision.models.list_models(module=torchvision.models)``; families and default
layers in :mod:`bids_decode.features.zoo`), a Python callable ``package.module:function``
returning an ``nn.Module``, and a TorchScript file. Their layers are graph node names (see
:mod:`bids_decode.features.graphs`); ``alexnet`` and ``vgg19`` take node names too, besides the
paper's names.

==================  =======================================  ============  ===========
network             layers                                   input         units/image
==================  =======================================  ============  ===========
``alexnet``         conv1 ... conv5, fc6, fc7, fc8           224 x 224     494,184
``vgg19``           conv1_1 ... conv5_4, fc6, fc7, fc8       224 x 224     14,861,288
``caffe-alexnet``   conv1 ... conv5, fc6, fc7, fc8           227 x 227     659,272
==================  =======================================  ============  ===========

``caffe-alexnet`` is the original Caffe ``bvlc_alexnet`` architecture (96/256/384/384/256
filters, two groups in conv2/4/5, local response normalisation): the paper's unit counts
(290,400 in conv1; 659,272 in all) come from it. Its 55 x 55 conv1 maps need Caffe's
227 x 227 input, and weights converted from Caffe expect Caffe's preprocessing (BGR,
0-255, mean pixel subtracted); see
:data:`bids_decode.features.image_preprocessing.CAFFE_PREPROCESSING`.

This module says what a network is (:class:`NetworkSpec`) and finds it by name
(:func:`get_network`); its weights are loaded by :mod:`bids_decode.features.network_weights`, its
layers named and shaped by :mod:`bids_decode.features.network_layers`.
"""

from __future__ import annotations

import functools
import importlib
import logging
import os
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torchvision
from torch import nn

from bids_decode.errors import DataError, MissingInputError, UsageError
from bids_decode.features import graphs, zoo
from bids_decode.features.caffe_alexnet import CaffeAlexNet
from bids_decode.features.image_preprocessing import (
    CAFFE_PREPROCESSING,
    IMAGENET_PREPROCESSING,
    PREPROCESSING_CHOICES,
    Preprocessing,
    TorchvisionPreprocessing,
)

LOGGER = logging.getLogger(__name__)

TORCHSCRIPT_SUFFIXES = (".pt", ".pth", ".ts", ".torchscript", ".jit", ".zip")
"""File endings taken as a TorchScript network (so is any existing file or path with a folder)."""


@dataclass(frozen=True)
class NetworkSpec:
    """One entry of :data:`NETWORKS`.

    Attributes
    ----------
    name : str
    build : callable () -> torch.nn.Module
        Builds the untrained network (torch's default initialisation).
    layers : dict of str to str
        Paper layer name -> name of the module whose output is that layer
        (``model.get_submodule(node)``), in forward order.
    preprocessing : Preprocessing
    cache_file : str or None
        File name of the pretrained weights in torchvision's cache
        (``$TORCH_HOME/hub/checkpoints``); None where torchvision has none.
    description : str
    weights_hint : str
        Python that downloads the pretrained weights (for error messages).
    source : {"registry", "torchvision", "callable", "torchscript"}
        Registry entries and torchvision models are traced (layers are graph nodes, and paper
        names of ``layers``); a callable's model too; a TorchScript module's layers are its
        named outputs.
    default_layers : callable (model) -> list of str, or None
        Layers extracted when ``--layers`` is not given; None: every name of ``layers``.
    weights_enum : str or None
        torchvision weights entry whose transforms ``--preprocessing torchvision`` uses.
    fix_state_dict : callable (dict) -> dict, or None
        Renames keys of a weights file before it is loaded (old torchvision checkpoints).
    """

    name: str
    build: Callable[[], nn.Module]
    layers: dict[str, str]
    preprocessing: Preprocessing
    cache_file: str | None
    description: str = ""
    weights_hint: str = field(default="", repr=False)
    source: str = "registry"
    default_layers: Callable[[nn.Module], list[str]] | None = field(default=None, repr=False)
    weights_enum: str | None = None
    fix_state_dict: Callable[[dict], dict] | None = field(default=None, repr=False)


ALEXNET_LAYERS = ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8")
"""Paper layer names of both AlexNets, in forward order."""


def _vgg19_layers() -> dict[str, str]:
    """Paper name -> post-ReLU module of torchvision's VGG19 (``features.<i>``)."""
    layers: dict[str, str] = {}
    index = 0
    for block, n_convs in enumerate((2, 2, 4, 4, 4), start=1):
        for conv in range(1, n_convs + 1):
            layers[f"conv{block}_{conv}"] = f"features.{index + 1}"  # conv, then its ReLU
            index += 2
        index += 1  # max pooling closes the block
    layers.update({"fc6": "classifier.1", "fc7": "classifier.4", "fc8": "classifier.6"})
    return layers


def _cache_name(weights_enum) -> str:
    return os.path.basename(weights_enum.url)


def _torchvision_entry(name: str, layers: dict[str, str], description: str) -> NetworkSpec:
    """A registry entry on torchvision model ``name``: paper layer names, its default weights."""
    weights = zoo.default_weights(name)
    return NetworkSpec(
        name=name,
        build=lambda: getattr(torchvision.models, name)(weights=None),
        layers=layers,
        preprocessing=IMAGENET_PREPROCESSING,
        cache_file=_cache_name(weights),
        description=description,
        weights_hint=f"torchvision.models.{name}(weights='{weights.name}')",
        weights_enum=f"{type(weights).__name__}.{weights.name}",
    )


NETWORKS: dict[str, NetworkSpec] = {
    "alexnet": _torchvision_entry(
        "alexnet", dict(zip(ALEXNET_LAYERS, (
            "features.1", "features.4", "features.7", "features.9", "features.11",
            "classifier.2", "classifier.5", "classifier.6"))),
        "torchvision AlexNet (64/192/384/256/256 filters, no groups, no LRN)"),
    "vgg19": _torchvision_entry("vgg19", _vgg19_layers(),
                                "torchvision VGG19 (no batch normalisation)"),
    "caffe-alexnet": NetworkSpec(
        name="caffe-alexnet",
        build=CaffeAlexNet,
        layers=dict(zip(ALEXNET_LAYERS, (*(f"relu{i}" for i in range(1, 8)), "fc8"))),
        preprocessing=CAFFE_PREPROCESSING,
        cache_file=None,
        description="Caffe bvlc_alexnet (96/256/384/384/256 filters, groups=2, LRN)",
    ),
}
"""Registry: network name -> :class:`NetworkSpec`."""


def get_network(name: str) -> NetworkSpec:
    """The spec of network ``name``; UsageError (MissingInputError for a missing file) otherwise.

    ``name`` is a key of :data:`NETWORKS`, a torchvision classification model name, a Python
    callable ``package.module:function`` that returns an ``nn.Module``, or a TorchScript file.
    """
    name = str(name)
    if name in NETWORKS:
        return NETWORKS[name]
    if name in zoo.model_names():
        return _torchvision_spec(name)
    if ":" in name and not _looks_like_file(name):
        return _callable_spec(name)
    if _looks_like_file(name):
        return _torchscript_spec(name)
    raise UsageError(
        f"Unknown network {name!r}: expected one of {', '.join(NETWORKS)}, a torchvision "
        "classification model (torchvision.models.list_models(module=torchvision.models), e.g. "
        "resnet50, vit_b_16, convnext_tiny), 'package.module:function' returning an nn.Module, "
        "or a TorchScript file. Pass --network with one of these."
    )


def _looks_like_file(name: str) -> bool:
    return (name.lower().endswith(TORCHSCRIPT_SUFFIXES) or os.sep in name
            or Path(name).is_file())


@functools.cache
def _torchvision_spec(name: str) -> NetworkSpec:
    family = zoo.family(name)
    weights = zoo.default_weights(name)
    height, width = zoo.input_size(name)
    return NetworkSpec(
        name=name,
        build=functools.partial(zoo.build, name),
        layers={},
        preprocessing=Preprocessing(size=(height, width), channel_order="RGB", scale=1.0,
                                    mean=IMAGENET_PREPROCESSING.mean,
                                    std=IMAGENET_PREPROCESSING.std),
        cache_file=zoo.cache_file(name),
        description=f"torchvision {name} (weights {type(weights).__name__}.{weights.name})",
        weights_hint=zoo.weights_hint(name),
        source="torchvision",
        default_layers=family.layers if family else None,
        weights_enum=f"{type(weights).__name__}.{weights.name}",
        fix_state_dict=functools.partial(zoo.fix_state_dict, name),
    )


def _callable_spec(name: str) -> NetworkSpec:
    module_name, _, attr = name.partition(":")
    try:
        target = importlib.import_module(module_name)
        for part in attr.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError) as err:
        raise UsageError(
            f"Cannot import the network {name!r} ({type(err).__name__}: {err}). Expected "
            "'package.module:function' where the module is importable here (it is searched "
            f"on the Python path, which starts with {sys.path[0] or os.getcwd()!r}; set "
            "PYTHONPATH to add a folder) and the function returns a torch.nn.Module."
        ) from err
    if not callable(target):
        raise UsageError(f"--network {name!r} names a {type(target).__name__}, not a callable "
                         "that returns a torch.nn.Module.")

    def build() -> nn.Module:
        model = target()
        if not isinstance(model, nn.Module):
            raise UsageError(f"--network {name!r} returned a {type(model).__name__}, expected "
                             "a torch.nn.Module.")
        return model

    return NetworkSpec(name=name, build=build, layers={}, preprocessing=IMAGENET_PREPROCESSING,
                       cache_file=None, description=f"Python callable {name}",
                       source="callable", default_layers=_top_level_layers)


def _top_level_layers(model: nn.Module) -> list[str]:
    """Default layers of a model of one's own: each top-level child's output, and the output."""
    _, names = graphs.trace(model)
    order = list(names.values())
    children = [n for n, _ in model.named_children()]
    found = [c for c in children if graphs.resolve_node(c, order)]
    output = order[-1] if order else None
    return list(dict.fromkeys([*found, *([output] if output else [])]))


def _torchscript_spec(name: str) -> NetworkSpec:
    path = Path(name)
    if not path.is_file():
        raise MissingInputError(
            f"TorchScript network file {path} does not exist. Pass an existing file saved with "
            "torch.jit.save(torch.jit.script(model), FILE) as --network, mount it into the "
            "container, or give a torchvision model name."
        )

    def build() -> nn.Module:
        try:
            with warnings.catch_warnings():  # torch >= 2.9 deprecates TorchScript; it still loads
                warnings.simplefilter("ignore", FutureWarning)
                return torch.jit.load(str(path), map_location="cpu")
        except Exception as err:  # torch raises many types for a file it cannot read
            raise DataError(
                f"Cannot load the TorchScript network {path} ({type(err).__name__}: "
                f"{str(err).splitlines()[0] if str(err) else ''}). Save it with "
                "torch.jit.save(torch.jit.script(model), FILE) or pass another file."
            ) from err

    return NetworkSpec(name=name, build=build, layers={}, preprocessing=IMAGENET_PREPROCESSING,
                       cache_file=None, description=f"TorchScript {path.name}",
                       source="torchscript", default_layers=_script_output_names)


def _script_output_names(model: nn.Module) -> list[str]:
    return list(graphs.script_shapes(model, IMAGENET_PREPROCESSING.size))


def get_preprocessing(spec: NetworkSpec, choice: str = "default"):
    """The preprocessing of ``--preprocessing choice`` for ``spec``.

    Returns
    -------
    Preprocessing or TorchvisionPreprocessing
    """
    if choice not in PREPROCESSING_CHOICES:
        raise UsageError(f"--preprocessing must be one of {', '.join(PREPROCESSING_CHOICES)}; "
                         f"got {choice!r}.")
    if choice == "default":
        return spec.preprocessing
    if spec.weights_enum is None:
        raise UsageError(
            f"--preprocessing torchvision needs a torchvision network, but {spec.name!r} has no "
            "torchvision weights whose transforms could be used. Leave --preprocessing out "
            "(whole image resized, ImageNet mean/std)."
        )
    return TorchvisionPreprocessing(spec.weights_enum)
