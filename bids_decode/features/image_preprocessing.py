"""How a stimulus image becomes a network's input tensor.

:class:`Preprocessing` is a network's own convention (the whole image resized, no crop; scale,
channel order, mean and std), recorded as JSON in the features file;
:class:`TorchvisionPreprocessing` uses the transforms of a torchvision weights entry
(``--preprocessing torchvision``). :func:`preprocess_image` applies either to one image file.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torchvision
from PIL import Image, UnidentifiedImageError

from bids_decode.errors import DataError
from bids_decode.features.stimuli import IMAGE_EXTENSIONS

LOGGER = logging.getLogger(__name__)

PREPROCESSING_CHOICES = ("default", "torchvision")
"""Values of ``--preprocessing``: the network's own :class:`Preprocessing`, or the transforms
of its torchvision weights (:class:`TorchvisionPreprocessing`)."""


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


def preprocess_image(
    path: Path, preprocessing: Preprocessing | TorchvisionPreprocessing
) -> torch.Tensor:
    """Load one image as the network's input.

    :class:`Preprocessing`: the whole image is resized to
    ``preprocessing.size`` (no crop, PIL bilinear with antialiasing), converted to RGB,
    scaled, reordered and normalised.
    :class:`TorchvisionPreprocessing`: the RGB image goes through
    the torchvision weights' transforms.

    Returns
    -------
    tensor of shape (3, height, width), float32
    """
    try:
        with Image.open(path) as image:
            image = image.convert("RGB")
            if isinstance(preprocessing, TorchvisionPreprocessing):
                return preprocessing.transform(image).to(torch.float32).contiguous()
            height, width = preprocessing.size
            image = image.resize((width, height), Image.Resampling.BILINEAR)
            array = np.asarray(image, dtype=np.float32)
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise DataError(
            f"Cannot read image {path} ({type(err).__name__}: {err}). Replace it with a "
            f"readable image ({' '.join(IMAGE_EXTENSIONS)}) or remove it from the stimuli."
        ) from err
    array = array * (preprocessing.scale / 255.0)
    if preprocessing.channel_order == "BGR":
        array = array[:, :, ::-1]
    mean = np.asarray(preprocessing.mean, dtype=np.float32)
    std = np.asarray(preprocessing.std, dtype=np.float32)
    array = (array - mean) / std
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))
