"""Golden check of RefOcc (official mode) against every array of ``ref_occ.npz``.

Weights: the golden rule's ``ref_occ`` state dict (frozen ``init_occ.*`` copy included). Inputs: image,
camera (R, T, K), roots, query points and anchors from ``inputs.npz``; unposing matrices, bone lengths and
root rotations from ``canonicalisation.npz``. One ``encode`` and one ``decode(pen=True)`` produce every
array. Tolerances: :mod:`im2hands.official.tolerance` (FPS indices exact).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch

from im2hands.official.check import Comparison, Golden
from im2hands.official.tolerance import tolerance_for

NETWORK = "ref_occ"

GOLDEN_FILES = ("ref_occ",)
INPUT_ARRAYS: frozenset[str] = frozenset()


@dataclass(frozen=True)
class GoldenInputs:
    """RefOcc inputs of the golden set, as model arguments (B = 1), converted from the official storage by
    :mod:`im2hands.official.inputs`."""

    image: torch.Tensor
    camera: object
    left: object
    right: object
    anchors_cam_left: torch.Tensor
    """(1, 512, 3) float32 camera frame, metres (from the official mm anchors, official arithmetic)."""
    anchors_cam_right: torch.Tensor
    points_left: torch.Tensor
    points_right: torch.Tensor


def golden_inputs(golden: Golden, device: torch.device) -> GoldenInputs:
    """The golden set's inputs on `device`, in our types (metres, true axes, camera frame)."""
    from im2hands.hand.camera import Camera
    from im2hands.official.inputs import anchors_to_camera, hand_inputs

    inp, can = golden.inputs, golden["canonicalisation"]

    def t(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a)).to(device)

    camera = Camera(K=t(inp["cam_K"]), R=t(inp["cam_R"]), T=t(inp["cam_T"]))
    hands = {side: hand_inputs(t(can[f"unpose_{side}"]), t(can[f"bone_lengths_{side}"]),
                               t(can[f"root_rot_mat_{side}"]), t(inp[f"{side}_root_xyz"]), side)
             for side in ("left", "right")}
    anchors = {side: anchors_to_camera(t(inp[f"anchors_{side}"]), hands[side].root, camera.R, camera.T)
               for side in ("left", "right")}
    return GoldenInputs(image=t(inp["image"]), camera=camera, left=hands["left"], right=hands["right"],
                        anchors_cam_left=anchors["left"], anchors_cam_right=anchors["right"],
                        points_left=t(inp["p_left"]), points_right=t(inp["p_right"]))


def rule_sub_state_dict(golden: Golden, prefix: str) -> dict[str, torch.Tensor]:
    """The golden rule's ref_occ entries under `prefix` (e.g. ``"trans_enc."``), prefix removed.

    Cheaper than ``golden.state_dict("ref_occ")`` when only a sub-network is needed.
    """
    from im2hands.official.weights import load_keys, rule_tensor

    return {e["key"][len(prefix):]: rule_tensor(e["key"], tuple(e["shape"]), e["dtype"], seed=golden.seed,
                                                gain=golden.gain)
            for e in load_keys(golden.folder, "ref_occ") if e["key"].startswith(prefix)}


def golden_model(golden: Golden, device: torch.device, *, chunk_points: int | None = None):
    """RefOcc in official mode with the golden rule weights, eval mode, on `device`.

    `chunk_points`: the decoder's chunk size (None: the config default).
    """
    from im2hands.models.ref_occ import RefOcc, RefOccConfig

    config = RefOccConfig(official_quirks=True)
    if chunk_points is not None:
        config = dataclasses.replace(config, chunk_points=chunk_points)
    model = RefOcc(config)
    model.load_state_dict(golden.state_dict("ref_occ"))
    return model.to(device).eval()


def golden_arrays(model, inputs: GoldenInputs) -> dict[str, torch.Tensor]:
    """Every array of ``ref_occ.npz`` computed by `model` from `inputs` (one encode, one pen decode)."""
    with torch.no_grad():
        enc = model.encode_camera(inputs.image, inputs.camera, inputs.left, inputs.right, inputs.anchors_cam_left,
                                  inputs.anchors_cam_right)
        out = model.decode(enc, inputs.points_left, inputs.points_right, pen=True)
        arrays = {"img_global": enc.img_global, "center_xyz": enc.center}
        for side in ("left", "right"):
            h = enc.hand(side)
            main, pen = getattr(out, side), getattr(out, f"pen_{side}")
            feat, xyz = model.query_features(enc, getattr(inputs, f"points_{side}"), side)
            arrays.update({
                f"ref_occ_{side}": main.occupancy, f"ref_logit_{side}": main.logit,
                f"init_occ_{side}": main.init_occupancy, f"query_img_feat_{side}": feat,
                f"pen_ref_occ_{side}": pen.occupancy, f"pen_ref_logit_{side}": pen.logit,
                f"pen_init_occ_{side}": pen.init_occupancy,
                f"query_xyz_flip_{side}": xyz + enc.center[:, None],
                f"anchor_img_feat_{side}": h.anchor_img_feat, f"anchor_xyz_flip_{side}": h.anchors_flip,
                f"enc_z_{side}": h.points.z, f"enc_anchors_{side}": h.points.anchors,
                f"enc_anchor_feats_{side}": h.points.anchor_feats,
                f"ctx_z_{side}": h.z_context, f"pen_ctx_z_{side}": h.z_pen,
                f"fps_idx_stage1_{side}": h.points.fps_indices[0],
                f"fps_idx_stage2_{side}": h.points.fps_indices[1],
            })
    return arrays


def comparisons(golden: Golden, device: torch.device) -> list[Comparison]:
    """Run RefOcc on the golden inputs; one comparison per array of ``ref_occ.npz``."""
    actual = golden_arrays(golden_model(golden, device), golden_inputs(golden, device))
    return [Comparison("ref_occ", name, actual[name], tolerance_for(name))
            for name in golden.listed("ref_occ") if name in actual]


def check(golden: Golden, device: torch.device):
    """Every RefOcc result, with the coverage rules (see :func:`im2hands.official.check.check_network`)."""
    from im2hands.official.check import check_network

    return check_network(golden, NETWORK, device)
