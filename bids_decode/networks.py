"""Deep networks whose units are decoded: a registry from network name to builder.

Each entry of :data:`NETWORKS` says how to build the network (untrained), which module
output is each of the paper's layers, how images must be preprocessed for its weights and
where torchvision caches its pretrained weights. Adding a network is one entry.

Layers follow Horikawa & Kamitani (2017): conv layers and fc6/fc7 are taken after their
ReLU (as the Caffe blobs the authors used, where ReLU runs in place); fc8 is the
pre-softmax output.

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

import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torchvision
from torch import nn

from .errors import DataError, MissingInputError, UsageError

logger = logging.getLogger(__name__)

RANDOM_WEIGHTS = "random"


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


IMAGENET_PREPROCESSING = Preprocessing(
    size=(224, 224),
    channel_order="RGB",
    scale=1.0,
    mean=(0.485, 0.456, 0.406),
    std=(0.229, 0.224, 0.225),
)
"""torchvision's ImageNet normalisation, as its pretrained AlexNet and VGG19 expect."""

CAFFE_PREPROCESSING = Preprocessing(
    size=(227, 227),
    channel_order="BGR",
    scale=255.0,
    mean=(104.0, 117.0, 123.0),
    std=(1.0, 1.0, 1.0),
)
"""Caffe's ``bvlc_alexnet`` convention: BGR, 0-255, ImageNet mean pixel subtracted."""


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
    """

    name: str
    build: Callable[[], nn.Module]
    layers: dict[str, str]
    preprocessing: Preprocessing
    cache_file: str | None
    description: str = ""
    weights_hint: str = field(default="", repr=False)


def _cache_name(weights_enum) -> str:
    return os.path.basename(weights_enum.url)


NETWORKS: dict[str, NetworkSpec] = {
    "alexnet": NetworkSpec(
        name="alexnet",
        build=lambda: torchvision.models.alexnet(weights=None),
        layers={
            "conv1": "features.1",
            "conv2": "features.4",
            "conv3": "features.7",
            "conv4": "features.9",
            "conv5": "features.11",
            "fc6": "classifier.2",
            "fc7": "classifier.5",
            "fc8": "classifier.6",
        },
        preprocessing=IMAGENET_PREPROCESSING,
        cache_file=_cache_name(torchvision.models.AlexNet_Weights.IMAGENET1K_V1),
        description="torchvision AlexNet (64/192/384/256/256 filters, no groups, no LRN)",
        weights_hint="torchvision.models.alexnet(weights='IMAGENET1K_V1')",
    ),
    "vgg19": NetworkSpec(
        name="vgg19",
        build=lambda: torchvision.models.vgg19(weights=None),
        layers={**_vgg19_layers()},
        preprocessing=IMAGENET_PREPROCESSING,
        cache_file=_cache_name(torchvision.models.VGG19_Weights.IMAGENET1K_V1),
        description="torchvision VGG19 (no batch normalisation)",
        weights_hint="torchvision.models.vgg19(weights='IMAGENET1K_V1')",
    ),
    "caffe-alexnet": NetworkSpec(
        name="caffe-alexnet",
        build=CaffeAlexNet,
        layers={
            "conv1": "relu1",
            "conv2": "relu2",
            "conv3": "relu3",
            "conv4": "relu4",
            "conv5": "relu5",
            "fc6": "relu6",
            "fc7": "relu7",
            "fc8": "fc8",
        },
        preprocessing=CAFFE_PREPROCESSING,
        cache_file=None,
        description="Caffe bvlc_alexnet (96/256/384/384/256 filters, groups=2, LRN)",
    ),
}
"""Registry: network name -> :class:`NetworkSpec`."""


def get_network(name: str) -> NetworkSpec:
    """Return the registry entry of ``name``; UsageError listing the choices otherwise."""
    try:
        return NETWORKS[name]
    except KeyError:
        raise UsageError(
            f"Unknown network {name!r}: expected one of {', '.join(NETWORKS)}. "
            "Pass --network with one of these names."
        ) from None


def resolve_layers(spec: NetworkSpec, layers: Iterable[str] | None) -> list[str]:
    """Validate requested layer names; return them in forward order (all when None).

    Parameters
    ----------
    spec : NetworkSpec
    layers : iterable of str or None

    Returns
    -------
    list of str
        Unique layer names of ``spec``, in the network's forward order.
    """
    if layers is None:
        return list(spec.layers)
    requested = list(layers)
    unknown = [name for name in requested if name not in spec.layers]
    if unknown or not requested:
        raise UsageError(
            f"Unknown layer(s) {', '.join(map(repr, unknown)) or '(none given)'} for network "
            f"{spec.name!r}: expected a non-empty subset of {', '.join(spec.layers)}. "
            "Fix --layers, or leave it out to extract every layer."
        )
    return [name for name in spec.layers if name in set(requested)]


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
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
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
        A key of :data:`NETWORKS`.
    weights : str, path or None
        ``"random"``: torch's default initialisation drawn with ``seed`` (tests, demos);
        a path: a state_dict file; None: torchvision's cache under ``TORCH_HOME``.
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
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            model = spec.build()
        info = WeightsInfo(RANDOM_WEIGHTS, state_dict_sha256(model), seed=int(seed))
        logger.warning(
            "Network %s uses RANDOM weights (seed %d): features are for tests and demos only.",
            name,
            seed,
        )
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
                    "existing state_dict file with --weights FILE, leave --weights out to use "
                    "torchvision's cache, or pass --weights random (tests and demos only)."
                )
        model = spec.build()
        _load_state_dict(model, _read_state_dict(path, spec), path, spec)
        info = WeightsInfo(path.name, file_sha256(path), path=path.resolve())
        logger.info("Network %s: weights %s (sha256 %s)", name, path, info.sha256[:12])
    model.eval()
    model.requires_grad_(False)
    return model, info


# --------------------------------------------------------------------------- layer capture
class _AllLayersCaptured(Exception):
    """Raised by the last hook to skip the rest of the forward pass."""


def run_layers(
    model: nn.Module,
    x: torch.Tensor,
    nodes: dict[str, str],
    callback: Callable[[str, torch.Tensor], None],
) -> None:
    """Run ``model`` on ``x`` once and hand each requested layer's output to ``callback``.

    Forward hooks call ``callback(layer_name, output)`` as soon as the layer is computed,
    so the caller can write it out before the next layer runs; the forward pass stops after
    the last requested layer. ``output`` may be modified in place later (ReLU runs in
    place): the callback must copy what it keeps.

    Parameters
    ----------
    model : torch.nn.Module
    x : tensor of shape (n_images, 3, height, width)
    nodes : dict of str to str
        Layer name -> module name (``NetworkSpec.layers`` restricted to the requested ones).
    callback : callable (str, tensor of shape (n_images, *unit_shape)) -> None
    """
    remaining = set(nodes)
    handles = []

    def make_hook(layer: str):
        def hook(module, inputs, output):
            callback(layer, output)
            remaining.discard(layer)
            if not remaining:
                raise _AllLayersCaptured

        return hook

    try:
        for layer, node in nodes.items():
            handles.append(model.get_submodule(node).register_forward_hook(make_hook(layer)))
        with torch.inference_mode():
            model(x)
    except _AllLayersCaptured:
        pass
    finally:
        for handle in handles:
            handle.remove()


def unit_shapes(spec: NetworkSpec, layers: Iterable[str] | None = None) -> dict[str, tuple]:
    """Shape of one image's units in each layer, without computing anything.

    The network is built on PyTorch's ``meta`` device, which propagates shapes only.

    Returns
    -------
    dict of str to tuple of int
        Layer name -> ``unit_shape``: ``(C, H, W)`` for conv layers, ``(n_units,)`` for fc.
    """
    names = resolve_layers(spec, layers)
    with torch.device("meta"):
        model = spec.build()
    model.eval()
    shapes: dict[str, tuple] = {}
    height, width = spec.preprocessing.size
    run_layers(
        model,
        torch.empty(1, 3, height, width, device="meta"),
        {name: spec.layers[name] for name in names},
        lambda name, out: shapes.__setitem__(name, tuple(out.shape[1:])),
    )
    return {name: shapes[name] for name in names}
