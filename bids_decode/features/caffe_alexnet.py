"""The original Caffe ``bvlc_alexnet``, the network of Horikawa & Kamitani (2017).

torchvision has no such model: its AlexNet has 64/192/384/256/256 filters, no groups and no
local response normalisation. This one has Caffe's 96/256/384/384/256 filters, two groups in
conv2/4/5 and LRN, hence the paper's unit counts (290,400 in conv1; 659,272 in all), and
Caffe's layer names, so that converted ``.caffemodel`` weights load one to one (see
docs/features.md). It expects Caffe's 227 x 227 input and preprocessing
(:data:`bids_decode.features.image_preprocessing.CAFFE_PREPROCESSING`).
"""

from __future__ import annotations

import logging

import torch
from torch import nn

LOGGER = logging.getLogger(__name__)


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
