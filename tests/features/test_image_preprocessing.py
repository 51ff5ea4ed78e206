"""Image -> network input: resizing, channel order, scaling and normalisation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from bids_decode.errors import DataError
from bids_decode.features.image_preprocessing import (
    CAFFE_PREPROCESSING,
    IMAGENET_PREPROCESSING,
    preprocess_image,
)


def test_preprocess_image_shape_and_normalisation(tmp_path):
    path = tmp_path / "grey.png"
    Image.new("L", (33, 17), color=128).save(path)
    x = preprocess_image(path, IMAGENET_PREPROCESSING)
    assert x.shape == (3, 224, 224) and x.dtype == torch.float32
    mean = np.array([0.485, 0.456, 0.406])
    std = np.array([0.229, 0.224, 0.225])
    expected = (128 / 255 - mean) / std
    np.testing.assert_allclose(x.mean(dim=(1, 2)).numpy(), expected, rtol=1e-5)


def test_caffe_preprocessing_is_bgr_0_255_mean_subtracted(tmp_path):
    path = tmp_path / "red.png"
    Image.new("RGB", (50, 70), color=(200, 10, 0)).save(path)
    x = preprocess_image(path, CAFFE_PREPROCESSING)
    assert x.shape == (3, 227, 227)
    np.testing.assert_allclose(x[:, 100, 100].numpy(), [0 - 104, 10 - 117, 200 - 123])


def test_unreadable_image_is_a_data_error(tmp_path):
    path = tmp_path / "broken.jpg"
    path.write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(DataError, match=r"Cannot read image .*broken\.jpg.*Replace it"):
        preprocess_image(path, IMAGENET_PREPROCESSING)
