"""Golden check of the initial occupancy network against ``init_occ.npz``.

Weights: the golden rule's ``init_occ`` state dict, loaded by name into :class:`InitOcc` (official mode).
Inputs: ``inputs.npz`` (image, camera, roots, query points) and ``canonicalisation.npz`` (unpose, bone
lengths, root_rot_mat). Every array of ``init_occ.npz`` is compared (tolerances: :mod:`im2hands.official.tolerance`),
plus ``pen_init_occ_{left,right}`` of ``ref_occ.npz`` (the ``pen=True`` pass that ref_occ runs: this hand's
network at the other hand's query points).
"""

from __future__ import annotations

import torch

from im2hands.official.check import Comparison, Golden
from im2hands.official.tolerance import tolerance_for

NETWORK = "init_occ"
GOLDEN_FILES = ("init_occ",)
INPUT_ARRAYS: frozenset[str] = frozenset()


def golden_init_occ(golden: Golden, device: torch.device, *, official_quirks: bool = True, chunk_points: int | None = None):
    """:class:`InitOcc` (ResNet-50) with the golden rule weights, in eval mode on `device`."""
    from im2hands.models.init_occ import InitOcc, InitOccConfig

    model = InitOcc(InitOccConfig(official_quirks=official_quirks, chunk_points=chunk_points))
    model.load_state_dict(golden.state_dict("init_occ"))
    return model.to(device).eval()


def golden_hand(golden: Golden, side: str, device: torch.device):
    """The golden :class:`HandInputs` of one side (root un-mirrored by :mod:`im2hands.official.inputs`)."""
    from im2hands.official.inputs import hand_inputs

    c, i = golden["canonicalisation"], golden.inputs
    t = lambda a: torch.from_numpy(a).to(device)  # noqa: E731
    return hand_inputs(t(c[f"unpose_{side}"]), t(c[f"bone_lengths_{side}"]), t(c[f"root_rot_mat_{side}"]),
                       t(i[f"{side}_root_xyz"]), side)


def golden_camera(golden: Golden, device: torch.device):
    """The golden :class:`~im2hands.hand.camera.Camera` (K, R, T)."""
    from im2hands.hand.camera import Camera

    i = golden.inputs
    t = lambda a: torch.from_numpy(a).to(device)  # noqa: E731
    return Camera(K=t(i["cam_K"]), R=t(i["cam_R"]), T=t(i["cam_T"]))


def comparisons(golden: Golden, device: torch.device) -> list[Comparison]:
    """Run InitOcc on the golden inputs; one comparison per array of ``init_occ.npz`` and the pen pass."""
    model = golden_init_occ(golden, device)
    image = torch.from_numpy(golden.inputs["image"]).to(device)
    actual: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        enc = model.encode(image, golden_camera(golden, device))
        actual["img_feat"] = enc.img_feat
        for side in ("left", "right"):
            hand = golden_hand(golden, side, device)
            points = torch.from_numpy(golden.inputs[f"p_{side}"]).to(device)
            out = model.decode(enc, hand, points, side)
            code = model.decoder(side).hand_code(hand.unpose, hand.bone_lengths)
            actual[f"occ_{side}"] = out.occupancy
            actual[f"part_logits_{side}"] = out.part_logits
            actual[f"query_token_{side}"] = model.query_tokens(enc, hand, points, side)
            actual[f"local_img_feat_{side}"] = model.local_image_features(enc, hand, points, side)
            actual[f"grid_tokens_{side}"] = enc.grid(side).tokens
            actual[f"bone_latent_{side}"] = code.bone_latent
            actual[f"global_proj_{side}"] = code.global_proj
            actual[f"bone_coords_{side}"] = model.bone_coords(hand, points)
        for side, other in (("left", "right"), ("right", "left")):
            pen = model.decode(enc, golden_hand(golden, side, device),
                               torch.from_numpy(golden.inputs[f"p_{other}"]).to(device), side, pen=True,
                               other=golden_hand(golden, other, device))
            actual[f"pen_init_occ_{side}"] = pen.occupancy
    comps = [Comparison("init_occ", name, actual[name], tolerance_for(name))
             for name in golden.listed("init_occ") if name in actual]
    # the pen pass is stored with ref_occ's arrays
    comps += [Comparison("ref_occ", f"pen_init_occ_{side}", actual[f"pen_init_occ_{side}"],
                         tolerance_for(f"pen_init_occ_{side}")) for side in ("left", "right")]
    return comps


def check(golden: Golden, device: torch.device):
    """Every InitOcc result, with the coverage rules (see :func:`im2hands.official.check.check_network`)."""
    from im2hands.official.check import check_network

    return check_network(golden, NETWORK, device)
