"""Golden check of the image encoder (IntagHand's ResNetSimple with ResNet-50) against ``image_encoder.npz``.

The weights are the golden rule's ``image_encoder.*`` entries (identical in all three official models); the
input is ``inputs.npz`` ``image``. Tolerances: :mod:`im2hands.official.tolerance` ("features").
"""

from __future__ import annotations

import torch

from im2hands.official.check import Comparison, Golden
from im2hands.official.tolerance import tolerance_for

NETWORK = "image_encoder"
GOLDEN_FILES = ("image_encoder",)
INPUT_ARRAYS: frozenset[str] = frozenset()


def sub_state_dict(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """Entries of `state` under ``prefix`` (e.g. ``"image_encoder."``), with the prefix removed."""
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def golden_encoder(golden: Golden, device: torch.device):
    """The official ResNet-50 encoder with the golden rule weights, in eval mode on `device`."""
    from im2hands.models.encoder import ImageEncoder, ImageEncoderConfig

    enc = ImageEncoder(ImageEncoderConfig(depth=50))
    enc.load_state_dict(sub_state_dict(golden.state_dict("kpts_ref"), "image_encoder."))
    return enc.to(device).eval()


def comparisons(golden: Golden, device: torch.device) -> list[Comparison]:
    """Run the encoder on the golden image; one comparison per map of ``image_encoder.npz``."""
    enc = golden_encoder(golden, device)
    image = torch.from_numpy(golden.inputs["image"]).to(device)
    with torch.no_grad():
        out = enc(image)
    actual = {"hms": out.hms, "mask": out.mask, "dp": out.dp}
    for i in range(4):
        actual[f"img_fmap{i}"] = out.img_fmaps[i]
        actual[f"hms_fmap{i}"] = out.hms_fmaps[i]
        actual[f"dp_fmap{i}"] = out.dp_fmaps[i]
    # the manifest says which maps are stored (not every level of every branch)
    return [Comparison("image_encoder", name, actual[name], tolerance_for(name))
            for name in golden.listed("image_encoder") if name in actual]


def check(golden: Golden, device: torch.device):
    """Every encoder result, with the coverage rules (see :func:`im2hands.official.check.check_network`)."""
    from im2hands.official.check import check_network

    return check_network(golden, NETWORK, device)
