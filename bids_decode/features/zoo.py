"""torchvision's classification models: architecture settings and default layers per family.

Every name of ``torchvision.models.list_models(module=torchvision.models)`` is a network.
Each is built untrained with the settings of its default pretrained weights (``DEFAULT`` of
its weights enum), so that a state_dict of those weights fits it exactly: the number of
classes, the image size of the ViTs, and ``transform_input`` of GoogLeNet and Inception v3.

Default layers (:data:`FAMILIES`) are, for each family: the output of each stage, the
penultimate layer (what the classifier reads) and the logits (pre-softmax). A stage ends
where the next block lowers the spatial resolution; for families built as one flat
``nn.Sequential`` (VGG, SqueezeNet, MobileNet, MNASNet, EfficientNet) this is found from the
modules (:func:`resolution_stages`), for the others it is listed.
"""

from __future__ import annotations

import functools
import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass

import torchvision
from torch import nn

LOGGER = logging.getLogger(__name__)


@functools.lru_cache(maxsize=1)
def model_names() -> tuple[str, ...]:
    """Every torchvision classification model name, sorted."""
    return tuple(torchvision.models.list_models(module=torchvision.models))


def default_weights(name: str):
    """The ``DEFAULT`` entry of the model's weights enum (no download)."""
    return torchvision.models.get_model_weights(name).DEFAULT


def architecture_kwargs(name: str) -> dict:
    """Builder keyword arguments that make the untrained model fit its default weights."""
    weights = default_weights(name)
    kwargs: dict = {"num_classes": len(weights.meta["categories"])}
    if name.startswith("vit_"):
        kwargs["image_size"] = weights.meta["min_size"][0]
    if name in ("googlenet", "inception_v3"):
        kwargs.update(transform_input=True, aux_logits=True, init_weights=True)
    return kwargs


def build(name: str) -> nn.Module:
    """torchvision model ``name``, untrained (torch's default initialisation)."""
    return torchvision.models.get_model(name, weights=None, **architecture_kwargs(name))


def input_size(name: str) -> tuple[int, int]:
    """The (height, width) the default preprocessing resizes to: 224, or the fixed size of a
    ViT built for larger images (``vit_h_14``: 518)."""
    size = architecture_kwargs(name).get("image_size", 224)
    return (size, size)


def cache_file(name: str) -> str:
    """File name of the default weights in torchvision's cache (``hub/checkpoints``)."""
    return os.path.basename(default_weights(name).url)


def weights_hint(name: str) -> str:
    """Python that downloads the default weights into torchvision's cache."""
    weights = default_weights(name)
    return f"torchvision.models.get_model('{name}', weights='{weights.name}')"


_DENSENET_OLD_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$"
)


def fix_state_dict(name: str, state: dict) -> dict:
    """Rename keys of old torchvision checkpoints to the current module names.

    DenseNet's published weights name ``norm.1`` what is now ``norm1`` (torchvision renames
    them the same way when it loads them).
    """
    if not name.startswith("densenet"):
        return state
    out = {}
    for key, value in state.items():
        match = _DENSENET_OLD_KEY.match(key)
        out[match.group(1) + match.group(2) if match else key] = value
    return out


# --------------------------------------------------------------------------- default layers
def _downsamples(module: nn.Module) -> bool:
    """True when ``module`` holds a strided convolution or a strided (non-adaptive) pooling."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d) and max(m.stride) > 1:
            return True
        if isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)):
            stride = m.stride if isinstance(m.stride, tuple) else (m.stride,)
            if max(stride) > 1:
                return True
    return False


def resolution_stages(model: nn.Module, trunk: str) -> list[str]:
    """Children of ``trunk`` that end a resolution stage: each child followed by a child that
    downsamples, and the last child unless it downsamples itself (a final pooling)."""
    children = list(model.get_submodule(trunk).named_children())
    out = []
    for i, (name, child) in enumerate(children):
        last = i == len(children) - 1
        if (not last and _downsamples(children[i + 1][1])) or (last and not _downsamples(child)):
            out.append(f"{trunk}.{name}")
    return out


@dataclass(frozen=True)
class Family:
    """Default layers of a family of torchvision models.

    Attributes
    ----------
    pattern : str
        Regular expression matched against the model name.
    stages : callable (model) -> list of str
        Node or module names of the stage outputs, in forward order.
    penultimate, logits : str
    example : str
        The model whose defaults the documentation shows.
    """

    pattern: str
    stages: Callable[[nn.Module], list[str]]
    penultimate: str
    logits: str
    example: str

    def layers(self, model: nn.Module) -> list[str]:
        return list(dict.fromkeys([*self.stages(model), self.penultimate, self.logits]))


def _listed(*names: str) -> Callable[[nn.Module], list[str]]:
    return lambda model: list(names)


def _children(path: str) -> Callable[[nn.Module], list[str]]:
    return lambda model: [f"{path}.{n}" for n, _ in model.get_submodule(path).named_children()]


def _by_resolution(trunk: str) -> Callable[[nn.Module], list[str]]:
    return lambda model: resolution_stages(model, trunk)


FAMILIES: tuple[Family, ...] = (
    Family(r"^(resnet|resnext|wide_resnet)\d", _listed("layer1", "layer2", "layer3", "layer4"),
           "flatten", "fc", "resnet50"),
    Family(r"^regnet_", _listed("stem", *(f"trunk_output.block{i}" for i in range(1, 5))),
           "flatten", "fc", "regnet_y_400mf"),
    Family(r"^densenet", _listed(*(f"features.denseblock{i}" for i in range(1, 5))),
           "flatten", "classifier", "densenet121"),
    Family(r"^(vgg|alexnet)", _by_resolution("features"), "classifier.4", "classifier.6",
           "vgg16"),
    Family(r"^squeezenet", _by_resolution("features"), "classifier.2", "flatten",
           "squeezenet1_1"),
    Family(r"^googlenet$", _listed("maxpool1", "maxpool2", "inception3b", "inception4e",
                                   "inception5b"), "flatten", "fc", "googlenet"),
    Family(r"^inception_v3$", _listed("maxpool1", "maxpool2", "Mixed_5d", "Mixed_6e",
                                      "Mixed_7c"), "flatten", "fc", "inception_v3"),
    Family(r"^shufflenet_v2", _listed("maxpool", "stage2", "stage3", "stage4", "conv5"),
           "mean", "fc", "shufflenet_v2_x1_0"),
    Family(r"^mobilenet_v2$", _by_resolution("features"), "flatten", "classifier.1",
           "mobilenet_v2"),
    Family(r"^mobilenet_v3", _by_resolution("features"), "classifier.1", "classifier.3",
           "mobilenet_v3_large"),
    Family(r"^mnasnet", _by_resolution("layers"), "mean", "classifier.1", "mnasnet1_0"),
    Family(r"^efficientnet", _by_resolution("features"), "flatten", "classifier.1",
           "efficientnet_b0"),
    Family(r"^convnext", _listed("features.1", "features.3", "features.5", "features.7"),
           "classifier.1", "classifier.2", "convnext_tiny"),
    Family(r"^swin", _listed("features.1", "features.3", "features.5", "features.7"),
           "flatten", "head", "swin_t"),
    Family(r"^maxvit", _listed("stem", "blocks.0", "blocks.1", "blocks.2", "blocks.3"),
           "classifier.4", "classifier.5", "maxvit_t"),
    Family(r"^vit_", _children("encoder.layers"), "encoder.ln", "heads.head", "vit_b_16"),
)
"""Default layers of each family (first matching pattern wins)."""


def family(name: str) -> Family | None:
    """The :class:`Family` of torchvision model ``name`` (None for other networks)."""
    return next((f for f in FAMILIES if re.search(f.pattern, name)), None)
