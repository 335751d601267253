"""The image encoder shared by all three Im2Hands networks: IntagHand's ``ResNetSimple``.

A ResNet backbone followed by two small decoders that read the coarsest backbone map (``layer4``):

- ``hms_decoder``: 2D heat maps of the 2 x 21 joints (42 channels);
- ``dp_decoder``: 2 hand masks + 2 x 3 dense-pose channels (8 channels).

Each decoder is a 1x1 convolution to ``fmap_dim`` channels (+ ReLU + BatchNorm) followed by three stages of
x2 bilinear upsampling (``align_corners=True``) + 3x3 convolution + ReLU + BatchNorm, then a 1x1
``final_layer``. Module and parameter names are the official ones (``resnet.*``, ``hms_decoder.models.0.0``,
``hms_decoder.models.1.1``, ``.final_layer``, ...), so an official ``image_encoder.*`` state dict loads
as is. Source of facts: IntagHand ``models/encoder.py`` (``ResNetSimple``, ``ResNetSimple_decoder``).

Shapes at a 256x256 input with ResNet-50 (official): ``img_fmaps`` = 2048@8², 1024@16², 512@32², 256@64²;
``hms_fmaps`` = ``dp_fmaps`` = 128@8², 128@16², 128@32², 128@64²; ``hms`` 42@64², ``mask`` 2@64²,
``dp`` 6@64². ResNet-18/34 give ``img_fmaps`` = 512@8², 256@16², 128@32², 64@64² and the same decoder maps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from torch import Tensor, nn

from im2hands._checks import check_finite, check_shape, check_tensor
from im2hands.models.resnet import ResNet


@dataclass(frozen=True)
class ImageEncoderConfig:
    """ResNet backbone + heat-map and dense-pose decoders (IntagHand's ResNetSimple)."""

    depth: Literal[18, 34, 50] = 50
    """ResNet depth; 50 is the official encoder, 18/34 are small variants for CPU training."""
    fmap_dim: int = 128
    """Channels of every decoder stage (official: 128)."""
    width: int = 64
    """Base channels of the ResNet (``layer1``; the stages have 1, 2, 4, 8 times this); official 64. A
    smaller width is a CPU-sized variant (32: a quarter of the weights and of the convolution work)."""
    joints_per_hand: int = 21
    """Heat maps per hand; ``hms`` has 2 x this many channels."""


@dataclass(frozen=True)
class ImageFeatures:
    """Everything the encoder computes for a batch of images; H, W are the input image size.

    Feature maps are listed coarsest first, as officially (index -1 is the finest, H/4 x W/4).
    """

    img_fmaps: tuple[Tensor, Tensor, Tensor, Tensor]
    """Backbone maps ``layer4``, ``layer3``, ``layer2``, ``layer1``: (B, 8C/4C/2C/C, H/32..H/4, W/32..W/4)
    with C = 256 (ResNet-50) or 64 (ResNet-18/34)."""
    hms_fmaps: tuple[Tensor, Tensor, Tensor, Tensor]
    """Heat-map decoder stages: (B, fmap_dim, H/32, W/32) ... (B, fmap_dim, H/4, W/4)."""
    dp_fmaps: tuple[Tensor, Tensor, Tensor, Tensor]
    """Dense-pose decoder stages, shaped as ``hms_fmaps``."""
    hms: Tensor
    """(B, 2*joints_per_hand, H/4, W/4) joint heat maps (raw, no activation)."""
    mask: Tensor
    """(B, 2, H/4, W/4) hand mask logits (``dp_decoder`` output channels 0-1)."""
    dp: Tensor
    """(B, 6, H/4, W/4) dense-pose channels (``dp_decoder`` output channels 2-7)."""


class SimpleDecoder(nn.Module):
    """``ResNetSimple_decoder``: 1x1 conv, then 3 x (upsample x2, 3x3 conv), each + ReLU + BatchNorm."""

    def __init__(self, in_dim: int, fmap_dim: int, out_dim: int, *, n_up: int = 3):
        super().__init__()
        stages = [nn.Sequential(nn.Conv2d(in_dim, fmap_dim, 1, bias=False), nn.ReLU(inplace=True),
                                nn.BatchNorm2d(fmap_dim))]
        for _ in range(n_up):
            stages.append(nn.Sequential(
                nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True),
                nn.Conv2d(fmap_dim, fmap_dim, 3, padding=1, bias=False),
                nn.ReLU(inplace=True),
                nn.BatchNorm2d(fmap_dim),
            ))
        self.models = nn.ModuleList(stages)
        self.final_layer = nn.Conv2d(fmap_dim, out_dim, 1)

    def forward(self, x: Tensor) -> tuple[Tensor, tuple[Tensor, ...]]:
        """(B, in_dim, h, w) -> ((B, out_dim, 8h, 8w), stage maps coarsest first)."""
        fmaps = []
        for stage in self.models:
            x = stage(x)
            fmaps.append(x)
        return self.final_layer(x), tuple(fmaps)


def _init_decoder(module: nn.Module) -> None:
    """Official decoder initialisation: Xavier-uniform convolutions (bias kept at torch's default)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.xavier_uniform_(m.weight)


class ImageEncoder(nn.Module):
    """ResNet + heat-map/dense-pose decoders; key names ``resnet.*``, ``hms_decoder.*``, ``dp_decoder.*``.

    Run it once per image: :meth:`forward` returns every map the three networks read.
    """

    def __init__(self, config: ImageEncoderConfig | None = None):
        super().__init__()
        self.config = config = config or ImageEncoderConfig()
        if config.fmap_dim < 1 or config.joints_per_hand < 1 or config.width < 1:
            raise ValueError(f"config: fmap_dim, joints_per_hand and width must be positive, got {config}")
        self.resnet = ResNet(config.depth, width=config.width)
        top = self.resnet.stage_channels[3]
        self.hms_decoder = SimpleDecoder(top, config.fmap_dim, 2 * config.joints_per_hand)
        self.dp_decoder = SimpleDecoder(top, config.fmap_dim, 2 + 3 * 2)
        _init_decoder(self.hms_decoder)
        _init_decoder(self.dp_decoder)

    @property
    def img_channels(self) -> tuple[int, int, int, int]:
        """Channels of ``img_fmaps`` (coarsest first)."""
        return tuple(reversed(self.resnet.stage_channels))  # type: ignore[return-value]

    def forward(self, image: Tensor) -> ImageFeatures:
        """Encode a batch of images.

        Args:
            image: (B, 3, H, W) RGB image normalised with the ImageNet mean and std; H and W multiples of
                32 (official: 256 x 256). Float dtype; the output follows its dtype and device.
        Returns:
            :class:`ImageFeatures`.
        """
        check_tensor(image, "image")
        check_shape(image, "B 3 H W", "image")
        if not image.dtype.is_floating_point:
            raise TypeError(f"image: expected a float tensor (normalised RGB), got {image.dtype}")
        h, w = image.shape[-2:]
        if h % 32 or w % 32 or h == 0 or w == 0:
            raise ValueError(f"image: height and width must be positive multiples of 32, got {h}x{w}")
        check_finite(image, "image")
        st = self.resnet.stages(image)
        hms, hms_fmaps = self.hms_decoder(st.layer4)
        out, dp_fmaps = self.dp_decoder(st.layer4)
        return ImageFeatures(
            img_fmaps=(st.layer4, st.layer3, st.layer2, st.layer1),
            hms_fmaps=hms_fmaps,  # type: ignore[arg-type]
            dp_fmaps=dp_fmaps,  # type: ignore[arg-type]
            hms=hms,
            mask=out[:, :2],
            dp=out[:, 2:],
        )
