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
0-255, mean pixel subtracted); see :data:`CAFFE_PREPROCESSING`.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import json
import logging
import math
import os
import sys
import warnings
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torchvision
from torch import nn

from bids_decode.errors import DataError, MissingInputError, UsageError
from bids_decode.features import graphs, zoo

LOGGER = logging.getLogger(__name__)

RANDOM_WEIGHTS = "random"
BUILT_WEIGHTS = "as-built"
"""``WeightsInfo.name`` of a callable's model used with the weights it was built with."""
PREPROCESSING_CHOICES = ("default", "torchvision")
TORCHSCRIPT_SUFFIXES = (".pt", ".pth", ".ts", ".torchscript", ".jit", ".zip")


# --------------------------------------------------------------------------- preprocessing
@dataclass(frozen=True)
class Preprocessing:
    """How an image becomes the network's input tensor.

    The whole image is resized (no crop) to ``size`` with PIL's antialiased bilinear
    filter, converted to RGB (alpha dropped, grey replicated), scaled to ``[0, scale]``,
    reordered to ``channel_order``, then ``(x - mean) / std`` per channel.

    Attributes
    ----------
    size : tuple of int (height, width)
    channel_order : {"RGB", "BGR"}
    scale : float
        Pixel values span ``[0, scale]`` before normalisation (1.0 or 255.0).
    mean, std : tuple of 3 floats
        Per channel, in ``channel_order``.
    """

    size: tuple[int, int]
    channel_order: str
    scale: float
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    resize: str = "whole image, PIL bilinear (antialiased), no crop"

    def describe(self) -> str:
        """JSON text recorded in the features file's ``preprocessing`` attribute."""
        return json.dumps(asdict(self), sort_keys=True)


IMAGENET_PREPROCESSING = Preprocessing(size=(224, 224), channel_order="RGB", scale=1.0,
                                       mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
"""torchvision's ImageNet normalisation, as its pretrained AlexNet and VGG19 expect."""

CAFFE_PREPROCESSING = Preprocessing(size=(227, 227), channel_order="BGR", scale=255.0,
                                    mean=(104.0, 117.0, 123.0), std=(1.0, 1.0, 1.0))
"""Caffe's ``bvlc_alexnet`` convention: BGR, 0-255, ImageNet mean pixel subtracted."""


@dataclass(frozen=True)
class TorchvisionPreprocessing:
    """The transforms of a torchvision weights entry (``weights.transforms()``).

    Typically: resize the shorter side to ``resize_size``, centre-crop ``crop_size``, scale to
    0-1 and normalise with the weights' mean and std. Nothing is downloaded.

    Attributes
    ----------
    weights : str
        ``"<Enum>.<entry>"``, e.g. ``"ResNet50_Weights.IMAGENET1K_V2"``.
    """

    weights: str

    @property
    def transform(self):
        """The torchvision transform: PIL image -> tensor of shape (3, crop, crop)."""
        return torchvision.models.get_weight(self.weights).transforms()

    @property
    def size(self) -> tuple[int, int]:
        crop = list(self.transform.crop_size)
        return (crop[0], crop[-1])

    def describe(self) -> str:
        """JSON text recorded in the features file's ``preprocessing`` attribute."""
        t = self.transform
        return json.dumps({
            "kind": "torchvision", "weights": self.weights,
            "resize_size": list(t.resize_size), "crop_size": list(t.crop_size),
            "mean": list(t.mean), "std": list(t.std),
            "interpolation": str(t.interpolation.value), "antialias": bool(t.antialias),
            "transforms": " ".join(str(t).split()),
        }, sort_keys=True)


# --------------------------------------------------------------------------- architectures
class CaffeAlexNet(nn.Module):
    """The original Caffe ``bvlc_alexnet`` (Krizhevsky et al. 2012, two-GPU groups).

    Module names equal Caffe's layer names, so a converted ``.caffemodel`` maps one to one:
    Caffe blob 0 of layer ``convN``/``fcN`` is ``convN.weight``/``fcN.weight`` (same shapes:
    ``(out, in / groups, kh, kw)`` and ``(out, in)``), blob 1 is the bias.

    Input: tensor of shape (n_images, 3, 227, 227), Caffe-preprocessed.
    """

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 96, kernel_size=11, stride=4)
        self.relu1 = nn.ReLU(inplace=True)
        self.norm1 = nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0)
        self.pool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.conv2 = nn.Conv2d(96, 256, kernel_size=5, padding=2, groups=2)
        self.relu2 = nn.ReLU(inplace=True)
        self.norm2 = nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0)
        self.pool2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.conv3 = nn.Conv2d(256, 384, kernel_size=3, padding=1)
        self.relu3 = nn.ReLU(inplace=True)
        self.conv4 = nn.Conv2d(384, 384, kernel_size=3, padding=1, groups=2)
        self.relu4 = nn.ReLU(inplace=True)
        self.conv5 = nn.Conv2d(384, 256, kernel_size=3, padding=1, groups=2)
        self.relu5 = nn.ReLU(inplace=True)
        self.pool5 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.fc6 = nn.Linear(256 * 6 * 6, 4096)
        self.relu6 = nn.ReLU(inplace=True)
        self.drop6 = nn.Dropout(0.5)
        self.fc7 = nn.Linear(4096, 4096)
        self.relu7 = nn.ReLU(inplace=True)
        self.drop7 = nn.Dropout(0.5)
        self.fc8 = nn.Linear(4096, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(self.norm1(self.relu1(self.conv1(x))))
        x = self.pool2(self.norm2(self.relu2(self.conv2(x))))
        x = self.relu3(self.conv3(x))
        x = self.relu4(self.conv4(x))
        x = self.pool5(self.relu5(self.conv5(x)))
        x = torch.flatten(x, 1)
        x = self.drop6(self.relu6(self.fc6(x)))
        x = self.drop7(self.relu7(self.fc7(x)))
        return self.fc8(x)


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


# --------------------------------------------------------------------------- registry
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
    return list(_script_shapes(model, IMAGENET_PREPROCESSING.size))


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


def _shape_model(spec: NetworkSpec) -> tuple[nn.Module, torch.device]:
    """``spec``'s network for shape inference: on the meta device where it can be built there
    (no memory, no arithmetic), else on the CPU with seeded random weights."""
    try:
        with torch.device("meta"):
            model = spec.build()
        return model.eval(), torch.device("meta")
    except UsageError:
        raise
    except Exception:  # noqa: BLE001 - some builders compute values at init (regnet)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = spec.build()
        return model.eval(), torch.device("cpu")


def _node_names(spec: NetworkSpec) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(node names in execution order, module paths) of a traced network."""
    return _node_names_of(spec.name)


@functools.lru_cache(maxsize=8)
def _node_names_of(name: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    model, _ = _shape_model(get_network(name))
    _, names = graphs.trace(model)
    return tuple(names.values()), tuple(m for m, _ in model.named_modules())


def node_of(spec: NetworkSpec, layer: str) -> str:
    """The node or module path that layer name ``layer`` stands for (paper names mapped)."""
    return spec.layers.get(layer, layer)


def default_layer_names(spec: NetworkSpec) -> list[str]:
    """The layers extracted when ``--layers`` is not given."""
    if spec.default_layers is None:
        return list(spec.layers)
    model, _ = _shape_model(spec) if spec.source != "torchscript" else (spec.build(), None)
    return list(spec.default_layers(model))


def resolve_layers(spec: NetworkSpec, layers: Iterable[str] | None) -> list[str]:
    """Validate requested layer names; return them in forward order (the defaults when None).

    A name is a paper layer name of ``spec.layers``, a graph node name, or the path of a
    module whose output is wanted (see :mod:`bids_decode.features.graphs`); a TorchScript network's
    names are its outputs.

    Parameters
    ----------
    spec : NetworkSpec
    layers : iterable of str or None

    Returns
    -------
    list of str
        Unique layer names, in the network's forward order.
    """
    if layers is None:
        return default_layer_names(spec)
    requested = list(dict.fromkeys(layers))
    if not requested:
        raise UsageError(f"--layers names no layer for network {spec.name!r}. Give layer names, "
                         "or leave --layers out for the default layers.")
    if all(name in spec.layers for name in requested):  # paper names only: paper order
        return [name for name in spec.layers if name in set(requested)]
    if spec.source == "torchscript":
        outputs = default_layer_names(spec)
        unknown = [n for n in requested if n not in outputs]
        if unknown:
            raise UsageError(
                f"Unknown layer(s) {', '.join(map(repr, unknown))} for the TorchScript network "
                f"{spec.name}: its outputs are {', '.join(outputs)}. Fix --layers."
            )
        return [n for n in outputs if n in set(requested)]
    names, modules = _node_names(spec)
    names = list(names)
    unknown = [n for n in requested if graphs.resolve_node(node_of(spec, n), names) is None]
    if unknown:
        paper = (f"expected a non-empty subset of {', '.join(spec.layers)}, or graph node names. "
                 if spec.layers else "not a graph node or module of the network. ")
        raise UsageError(
            f"Unknown layer(s) {', '.join(map(repr, unknown))} for network {spec.name!r}: "
            + paper + graphs.near_names_hint(unknown, names, modules)
        )
    order = graphs.layer_order([node_of(spec, n) for n in requested], names)
    return sorted(requested, key=lambda n: order[node_of(spec, n)])


def make_capture(spec: NetworkSpec, model: nn.Module, layers: list[str]):
    """A capture of ``layers`` of ``model`` (:class:`bids_decode.features.graphs.GraphCapture`, or
    :class:`~bids_decode.features.graphs.ScriptCapture` for TorchScript)."""
    nodes = {name: node_of(spec, name) for name in layers}
    if spec.source == "torchscript":
        return graphs.ScriptCapture(model, nodes)
    return graphs.GraphCapture(model, nodes)


# --------------------------------------------------------------------------- weights
@dataclass(frozen=True)
class WeightsInfo:
    """Where a network's weights came from (recorded in the features file).

    Attributes
    ----------
    name : str
        ``"random"``, or the weights file's name.
    sha256 : str
        SHA-256 of the weights file; for random weights, of the state_dict's tensors
        (names and bytes in key order), so the draw is identifiable too.
    seed : int or None
        The seed of random weights; None for pretrained weights.
    path : Path or None
    """

    name: str
    sha256: str
    seed: int | None = None
    path: Path | None = None


def file_sha256(path: Path, chunk_bytes: int = 1 << 22) -> str:
    """SHA-256 hex digest of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk_bytes):
            digest.update(block)
    return digest.hexdigest()


def state_dict_sha256(model: nn.Module) -> str:
    """SHA-256 over a model's state_dict (key names and float tensor bytes, in order)."""
    digest = hashlib.sha256()
    for key, tensor in model.state_dict().items():
        digest.update(key.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy())  # buffer, no copy
    return digest.hexdigest()


def torchvision_cache_path(spec: NetworkSpec) -> Path | None:
    """Where torchvision caches ``spec``'s pretrained weights (follows ``TORCH_HOME``)."""
    if spec.cache_file is None:
        return None
    return Path(torch.hub.get_dir()) / "checkpoints" / spec.cache_file


def _missing_weights_message(spec: NetworkSpec) -> str:
    if spec.cache_file is None:
        return (
            f"No weights for network {spec.name!r}: --weights was not given and torchvision "
            "distributes none for this architecture. Convert the Caffe bvlc_alexnet weights "
            "to a PyTorch state_dict with keys conv1.weight, conv1.bias, ..., fc8.bias (Caffe "
            "blob shapes are kept; see docs/features.md) and pass it as --weights FILE, or "
            "pass --weights random for untrained, seeded weights (tests and demos only)."
        )
    cache = torchvision_cache_path(spec)
    if os.environ.get("BIDS_DECODE_CONTAINER"):
        torch_home = os.environ.get("TORCH_HOME", "/opt/torch")
        return (
            f"No weights for network {spec.name!r}: this container image was built without "
            f"them ({cache} is missing) and the image is read-only. On a machine with internet "
            f"access run `python -c \"import torchvision; {spec.weights_hint}\"`, then mount "
            f"the folder holding hub/checkpoints/{spec.cache_file} at {torch_home} (docker: "
            f"-v DIR:{torch_home}:ro; apptainer: -B DIR:{torch_home}:ro), or mount the file "
            "and pass it as --weights FILE."
        )
    return (
        f"No weights for network {spec.name!r}: --weights was not given and torchvision's "
        f"cache has no {cache}. On a machine with internet access run "
        f"`python -c \"import torchvision; {spec.weights_hint}\"` and copy "
        f"{spec.cache_file} into {cache.parent} here (set TORCH_HOME to use another cache "
        "folder), or pass the file as --weights FILE; --weights random gives untrained, "
        "seeded weights for tests and demos only."
    )


def _read_state_dict(path: Path, spec: NetworkSpec) -> dict[str, torch.Tensor]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for a file it cannot read
        raise DataError(
            f"Cannot read weights file {path} for network {spec.name!r} "
            f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}). "
            "Expected a PyTorch state_dict saved with torch.save(model.state_dict(), FILE); "
            "re-save it that way or pass another --weights FILE."
        ) from err
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise DataError(
            f"Weights file {path} holds a {type(state).__name__}, expected a state_dict (a dict "
            "of tensors). Save it with torch.save(model.state_dict(), FILE)."
        )
    return state


def _load_state_dict(model: nn.Module, state: dict, path: Path, spec: NetworkSpec) -> None:
    if spec.fix_state_dict is not None:
        state = spec.fix_state_dict(state)
    expected = model.state_dict()
    # old checkpoints (torchvision's ResNet, DenseNet ...) have no BatchNorm step counters;
    # BatchNorm fills them in when it loads
    missing = [k for k in expected if k not in state and not k.endswith(".num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    wrong_shape = [
        f"{k} {tuple(state[k].shape)} (expected {tuple(v.shape)})"
        for k, v in expected.items()
        if k in state and hasattr(state[k], "shape") and tuple(state[k].shape) != tuple(v.shape)
    ]
    if missing or unexpected or wrong_shape:
        def few(items):
            return ", ".join(items[:4]) + (f" and {len(items) - 4} more" if len(items) > 4 else "")

        problems = []
        if missing:
            problems.append(f"missing keys {few(missing)}")
        if unexpected:
            problems.append(f"unexpected keys {few(unexpected)}")
        if wrong_shape:
            problems.append(f"wrong shapes {few(wrong_shape)}")
        raise DataError(
            f"Weights file {path} does not fit network {spec.name!r}: {'; '.join(problems)}. "
            f"Expected the keys {few(list(expected))}. Check that --network matches the "
            "weights, or convert the weights to this architecture's names."
        )
    model.load_state_dict(state, strict=True)


def load_network(
    name: str, weights: str | os.PathLike | None = None, *, seed: int = 0
) -> tuple[nn.Module, WeightsInfo]:
    """Build network ``name`` in eval mode with its weights.

    Parameters
    ----------
    name : str
        A network accepted by :func:`get_network`.
    weights : str, path or None
        ``"random"``: torch's default initialisation drawn with ``seed`` (tests, demos);
        a path: a state_dict file; None: torchvision's cache under ``TORCH_HOME`` (the
        weights a callable's model is built with; those in a TorchScript file).
    seed : int
        Seed of random weights; ignored otherwise.

    Returns
    -------
    model : torch.nn.Module
        On the CPU, in eval mode, gradients off.
    info : WeightsInfo

    Raises
    ------
    MissingInputError
        The weights file, or torchvision's cached file, is not there.
    DataError
        The file cannot be read or does not fit the architecture.
    """
    spec = get_network(name)
    if isinstance(weights, str) and weights == RANDOM_WEIGHTS:
        if spec.source == "torchscript":
            raise UsageError(
                f"--weights random cannot be used with the TorchScript network {name}: its "
                "weights are in the file. Leave --weights out, or pass a state_dict FILE."
            )
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            model = spec.build()
        info = WeightsInfo(RANDOM_WEIGHTS, state_dict_sha256(model), seed=int(seed))
        LOGGER.warning(
            "Network %s uses RANDOM weights (seed %d): features are for tests and demos only.",
            name,
            seed,
        )
    elif weights is None and spec.source in ("callable", "torchscript"):
        model = spec.build()
        if spec.source == "torchscript":
            path = Path(spec.name)
            info = WeightsInfo(path.name, file_sha256(path), path=path.resolve())
        else:
            info = WeightsInfo(BUILT_WEIGHTS, state_dict_sha256(model))
        LOGGER.info("Network %s: the weights it is built with (sha256 %s)", name,
                    info.sha256[:12])
    else:
        if weights is None:
            path = torchvision_cache_path(spec)
            if path is None or not path.is_file():
                raise MissingInputError(_missing_weights_message(spec))
        else:
            path = Path(weights)
            if not path.is_file():
                raise MissingInputError(
                    f"Weights file {path} for network {name!r} does not exist. Pass an "
                    "existing state_dict file with --weights FILE (in a container: mount it "
                    "and pass the path inside), leave --weights out to use torchvision's "
                    "cache, or pass --weights random (tests and demos only)."
                )
        model = spec.build()
        _load_state_dict(model, _read_state_dict(path, spec), path, spec)
        info = WeightsInfo(path.name, file_sha256(path), path=path.resolve())
        LOGGER.info("Network %s: weights %s (sha256 %s)", name, path, info.sha256[:12])
    model.eval()
    for parameter in model.parameters():  # (ScriptModules have no requires_grad_)
        parameter.requires_grad_(False)
    return model, info


# --------------------------------------------------------------------------- layer capture
def run_layers(
    model: nn.Module,
    x: torch.Tensor,
    nodes: dict[str, str],
    callback: Callable[[str, torch.Tensor], None],
) -> None:
    """Run ``model`` on ``x`` once and hand each requested layer's output to ``callback``.

    Each layer goes to ``callback(layer_name, output)`` as soon as it is computed, so the
    caller can write it out before the next layer runs; the pass stops after the last
    requested layer (:class:`bids_decode.features.graphs.GraphCapture`, which traces ``model`` on
    each call: keep a capture to run many batches). ``output`` may be modified in place later (ReLU
    runs in place): the callback must copy what it keeps.

    Parameters
    ----------
    model : torch.nn.Module
    x : tensor of shape (n_images, 3, height, width)
    nodes : dict of str to str
        Layer name -> node name or module path (``NetworkSpec.layers`` restricted to the
        requested ones).
    callback : callable (str, tensor of shape (n_images, *unit_shape)) -> None
    """
    graphs.GraphCapture(model, dict(nodes)).run(x, callback)


def _unit_shape(value) -> tuple | None:
    return tuple(value.shape[1:]) if isinstance(value, torch.Tensor) and value.ndim >= 1 else None


def _script_shapes(model: nn.Module, size: tuple[int, int]) -> dict[str, tuple | None]:
    height, width = size
    with torch.inference_mode():
        outputs = graphs.script_outputs(model(torch.zeros(1, 3, height, width)))
    return {name: _unit_shape(v) for name, v in outputs.items()}


def unit_shapes(spec: NetworkSpec, layers: Iterable[str] | None = None,
                size: tuple[int, int] | None = None) -> dict[str, tuple]:
    """Shape of one image's units in each layer.

    The network is built on PyTorch's ``meta`` device, which propagates shapes only (on the
    CPU with random weights where it cannot be built there).

    Parameters
    ----------
    spec : NetworkSpec
    layers : iterable of str or None
        Default: the default layers.
    size : (height, width), optional
        Input size; default that of ``spec.preprocessing``.

    Returns
    -------
    dict of str to tuple of int
        Layer name -> ``unit_shape``: ``(C, H, W)`` for conv layers, ``(T, D)`` for token
        sequences, ``(n_units,)`` for vectors.
    """
    names = resolve_layers(spec, layers)
    height, width = size or spec.preprocessing.size
    if spec.source == "torchscript":
        shapes = _script_shapes(spec.build(), (height, width))
        return {name: shapes[name] for name in names}
    model, device = _shape_model(spec)
    shapes: dict[str, tuple] = {}
    graphs.GraphCapture(model, {name: node_of(spec, name) for name in names}).run(
        torch.zeros(1, 3, height, width, device=device),
        lambda name, out: shapes.__setitem__(name, _unit_shape(out)),
    )
    return {name: shapes[name] for name in names}


@dataclass(frozen=True)
class LayerRow:
    """One line of ``bids_decode features --list-layers``.

    Attributes
    ----------
    name : str
        Node name, module path (output of a module: ``of`` is its last node) or paper name.
    unit_shape : tuple of int or None
        None where the node's value is not a tensor (shapes, sizes): not a layer.
    of : str
        The node a module path or paper name stands for ("" for a node).
    default : bool
        Extracted when ``--layers`` is not given.
    """

    name: str
    unit_shape: tuple | None
    of: str = ""
    default: bool = False

    @property
    def n_units(self) -> int | None:
        return None if self.unit_shape is None else int(math.prod(self.unit_shape))


def list_layers(spec: NetworkSpec, size: tuple[int, int] | None = None) -> list[LayerRow]:
    """Every layer name of ``spec`` with its unit shape, in execution order.

    One forward pass of a dummy image at ``size`` (default: the default preprocessing's),
    on the meta device where possible, else on the CPU with random weights.

    Returns
    -------
    list of LayerRow
        Paper names first (registry networks), then each graph node, each non-leaf module's
        path right after its last node (TorchScript: the outputs).
    """
    height, width = size or spec.preprocessing.size
    defaults = set(default_layer_names(spec))
    if spec.source == "torchscript":
        shapes = _script_shapes(spec.build(), (height, width))
        return [LayerRow(n, s, default=n in defaults) for n, s in shapes.items()]
    model, device = _shape_model(spec)
    names = list(_node_names(spec)[0])
    shapes: dict[str, tuple | None] = {}
    capture = graphs.GraphCapture(model, {n: n for n in names})
    capture.run(torch.zeros(1, 3, height, width, device=device),
                lambda name, out: shapes.__setitem__(name, _unit_shape(out)))
    modules = graphs.module_outputs(names, (m for m, _ in model.named_modules()))
    after: dict[str, list[str]] = {}
    for module, last in modules.items():
        after.setdefault(last, []).append(module)
    rows = [LayerRow(p, shapes.get(node), node, p in defaults) for p, node in spec.layers.items()]
    for name in names:
        rows.append(LayerRow(name, shapes.get(name), "", name in defaults))
        for module in sorted(after.get(name, []), key=lambda m: -m.count(".")):
            rows.append(LayerRow(module, shapes.get(name), name, module in defaults))
    return rows
