"""Plain-torch ResNet-18/34/50 in torchvision's module layout and state-dict key names.

The official image encoder wraps ``torchvision.models.resnet50`` as ``resnet``; its checkpoints therefore
hold torchvision names (``conv1``, ``bn1``, ``layer1.0.conv1``, ``layer1.0.downsample.0``, ``fc``, ...).
This module rebuilds exactly that layout without depending on torchvision and without ever downloading
weights: every network starts from torch's default initialisation, and trained weights come from a
checkpoint. Architecture (torchvision's "v1.5": the stride of a Bottleneck sits on its 3x3 convolution):

- stem: conv 7x7 stride 2 (no bias) -> BatchNorm -> ReLU -> max-pool 3x3 stride 2;
- ``layer1``..``layer4``: residual stages of 64/128/256/512 base channels, strides 1/2/2/2; BasicBlock
  (ResNet-18/34, expansion 1) or Bottleneck (ResNet-50, expansion 4);
- ``avgpool`` + ``fc`` (a 1000-way classifier that the image encoder never uses but whose weights the
  official checkpoints contain).

At a 256x256 input the stage outputs are (C, 64, 64), (2C, 32, 32), (4C, 16, 16), (8C, 8, 8) with
C = 64 (ResNet-18/34) or 256 (ResNet-50).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

Depth = Literal[18, 34, 50]

_LAYOUT: dict[int, tuple[str, tuple[int, int, int, int]]] = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
}


def _conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=3, stride=stride, padding=1, bias=False)


def _conv1x1(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection (torchvision ``BasicBlock``)."""

    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = _conv3x3(cin, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 -> 3x3 (strided) -> 1x1 convolutions with a residual connection (torchvision ``Bottleneck``)."""

    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = _conv1x1(cin, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = _conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


@dataclass(frozen=True)
class ResNetStages:
    """Outputs of the four residual stages, finest first.

    Each tensor has shape (B, C_i, H_i, W_i) with H_i = H/4, H/8, H/16, H/32 for ``layer1``..``layer4``.
    """

    layer1: Tensor
    layer2: Tensor
    layer3: Tensor
    layer4: Tensor


class ResNet(nn.Module):
    """ResNet backbone with torchvision's module names (``conv1``, ``bn1``, ``layer1``-``layer4``, ``fc``)."""

    def __init__(self, depth: Depth = 50, *, num_classes: int = 1000, width: int = 64):
        super().__init__()
        if depth not in _LAYOUT:
            raise ValueError(f"depth: expected one of {sorted(_LAYOUT)}, got {depth!r}")
        kind, counts = _LAYOUT[depth]
        block = BasicBlock if kind == "basic" else Bottleneck
        self.depth = depth
        self.expansion = block.expansion
        if not isinstance(width, int) or width < 1:
            raise ValueError(f"width: expected a positive int, got {width!r}")
        self.width = w = width
        self._cin = w
        self.conv1 = nn.Conv2d(3, w, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(w)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, w, counts[0], 1)
        self.layer2 = self._make_layer(block, 2 * w, counts[1], 2)
        self.layer3 = self._make_layer(block, 4 * w, counts[2], 2)
        self.layer4 = self._make_layer(block, 8 * w, counts[3], 2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(8 * w * block.expansion, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    @property
    def stage_channels(self) -> tuple[int, int, int, int]:
        """Channels of ``layer1``..``layer4`` outputs."""
        e, w = self.expansion, self.width
        return (w * e, 2 * w * e, 4 * w * e, 8 * w * e)

    def _make_layer(self, block, planes: int, blocks: int, stride: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or self._cin != planes * block.expansion:
            downsample = nn.Sequential(
                _conv1x1(self._cin, planes * block.expansion, stride),
                nn.BatchNorm2d(planes * block.expansion),
            )
        layers = [block(self._cin, planes, stride, downsample)]
        self._cin = planes * block.expansion
        layers += [block(self._cin, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def stages(self, image: Tensor) -> ResNetStages:
        """Run the stem and the four residual stages (no pooling, no classifier).

        Args:
            image: (B, 3, H, W) normalised RGB image.
        Returns:
            the four stage outputs, see :class:`ResNetStages`.
        """
        x = self.maxpool(self.relu(self.bn1(self.conv1(image))))
        x1 = self.layer1(x)
        x2 = self.layer2(x1)
        x3 = self.layer3(x2)
        x4 = self.layer4(x3)
        return ResNetStages(x1, x2, x3, x4)

    def forward(self, image: Tensor) -> Tensor:
        """Classifier logits (B, num_classes); kept for completeness of the torchvision layout."""
        x = self.stages(image).layer4
        return self.fc(torch.flatten(self.avgpool(x), 1))
