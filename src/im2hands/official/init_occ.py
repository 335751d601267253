"""Golden check of the initial occupancy network against ``init_occ.npz``.

Weights: the golden rule's ``init_occ`` state dict, loaded by name into :class:`InitOcc` (official mode).
Inputs: ``inputs.npz`` (image, camera, roots, query points) and ``canonicalisation.npz`` (unpose, bone
lengths, root_rot_mat). Every array of ``init_occ.npz`` is compared with the golden README §6 tolerances,
plus ``pen_init_occ_{left,right}`` of ``ref_occ.npz`` (the ``pen=True`` pass that ref_occ runs: this hand's
network at the other hand's query points).
"""

from __future__ import annotations

import torch

from im2hands.official.check import ArrayResult, Golden, compare

NETWORK = "init_occ"

ATOL: dict[str, float] = {
    "occ": 2e-6,
    "img_feat": 5e-6,
    "query_token": 5e-6,
    "local_img_feat": 5e-6,
    "grid_tokens": 5e-6,
    "part_logits": 2e-6,
    "bone_latent": 1e-7,
    "global_proj": 1e-7,
    "bone_coords": 1e-12,
}
"""Absolute tolerance per array family (README §6; ``bone_coords`` is float64, hence 1e-12)."""


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


def check(golden: Golden, device: torch.device) -> list[ArrayResult]:
    expected = golden["init_occ"]
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
    results = []
    for name in expected:
        family = name.removesuffix("_left").removesuffix("_right")
        if name not in actual or family not in ATOL:
            results.append(ArrayResult(NETWORK, name, tuple(expected[name].shape), float("inf"), 0.0))
            continue
        results.append(compare(NETWORK, name, actual[name], expected[name], ATOL[family]))
    for side in ("left", "right"):
        name = f"pen_init_occ_{side}"
        results.append(compare(NETWORK, name, actual[name], golden["ref_occ"][name], ATOL["occ"]))
    return results
