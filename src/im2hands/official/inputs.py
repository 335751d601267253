"""The official storage conventions, converted in one place: official arrays -> our public types.

The official data and meta files store

- the **left root x-mirrored** (``left_root_xyz``: the wrist in world metres times (-1, 1, 1));
- the RefOcc **anchors in millimetres**, relative to the hand's root, true world axes (the left hand not
  mirrored), float64;
- the KptsRef **joints root-relative in HALO order**, the left ones x-mirrored (``normalise_keypoints``).

Our types speak metres, true world axes and the camera frame (:class:`~im2hands.models.init_occ.HandInputs`,
:class:`~im2hands.hand.camera.Camera`); the golden checker and anything reading official files convert here.
"""

from __future__ import annotations

import torch
from torch import Tensor

from im2hands._checks import check_finite, check_same_size, check_shape
from im2hands.hand.frames import MIRROR_X, mirror_x, world_to_camera
from im2hands.hand.skeleton import Side
from im2hands.models.init_occ import HandInputs
from im2hands.models.kpts_ref import NUM_JOINTS, KeypointInput


def root_from_official(root_xyz: Tensor, side: Side) -> Tensor:
    """(B, 3) official stored root (x-mirrored for the left hand) -> the root in world metres, true axes."""
    if side not in ("right", "left"):
        raise ValueError(f"side: expected 'right' or 'left', got {side!r}")
    return mirror_x(root_xyz) if side == "left" else root_xyz


def hand_inputs(unpose: Tensor, bone_lengths: Tensor, root_rot_mat: Tensor, root_xyz: Tensor,
                side: Side) -> HandInputs:
    """:class:`HandInputs` from the official arrays of one hand.

    Args:
        unpose: (B, 16, 4, 4), bone_lengths: (B, 16) metres, root_rot_mat: (B, 4, 4): the canonicalisation.
        root_xyz: (B, 3) the official stored root, world metres, x-mirrored for the left hand.
        side: "right" or "left".
    """
    return HandInputs(unpose=unpose, bone_lengths=bone_lengths, root_rot_mat=root_rot_mat,
                      root=root_from_official(root_xyz, side))


def anchors_to_camera(anchors_mm: Tensor, root: Tensor, R: Tensor, T: Tensor) -> Tensor:
    """Official RefOcc anchors -> camera frame, in the official order of operations (float32 result).

    ``anchors / 1000`` (in the anchors' dtype, float64 officially) -> float32 -> ``+ root`` -> ``@ Rᵀ + T``.

    Args:
        anchors_mm: (B, A, 3) anchors, millimetres, relative to the hand's root, true world axes.
        root: (B, 3) the hand's root, world metres, true axes (:func:`root_from_official`).
        R: (B, 3, 3), T: (B, 3) world -> camera extrinsics, metres.
    Returns:
        (B, A, 3) float32 camera-frame anchors, metres (the input of ``RefOcc.encode_camera``).
    """
    world = (anchors_mm / 1000).float() + root.float().unsqueeze(1)
    return world_to_camera(world, R.float(), T.float())


def normalise_keypoints(joints_left: Tensor, joints_right: Tensor, *, cam_R: Tensor, cam_T: Tensor,
                        left_root_xyz: Tensor, right_root_xyz: Tensor) -> KeypointInput:
    """Official kpts_ref input normalisation (``kpts_ref_training.preprocess_joints``), in float64.

    The same hands in our public types go through :func:`im2hands.models.kpts_ref.network_keypoints`.

    Steps: add the stored root to the root-relative joints; mirror the left hand back (x -> -x; the left
    joints *and* the left root are stored x-mirrored); go to the camera frame ``x @ Rᵀ + T``; subtract the
    **left** hand's HALO joint 4 (middle MCP) from **both** hands; multiply by 1000 (mm). Float64 because
    the official computation is float64 (joints float64, R and T cast to float64, float32 roots promoted).

    Args:
        joints_left: (B, 21, 3) left joints, HALO order, world axes **x-mirrored**, minus the wrist, metres.
        joints_right: (B, 21, 3) right joints, HALO order, world axes, minus the wrist, metres.
        cam_R: (B, 3, 3) world -> camera rotation (OpenCV camera).
        cam_T: (B, 3) world -> camera translation, metres.
        left_root_xyz: (B, 3) left wrist in world metres **multiplied by [-1, 1, 1]** (as stored officially).
        right_root_xyz: (B, 3) right wrist in world metres.
    Returns:
        :class:`KeypointInput`.
    """
    b = check_shape(joints_left, f"B {NUM_JOINTS} 3", "joints_left")
    for x, spec, name in ((joints_right, f"B {NUM_JOINTS} 3", "joints_right"), (cam_R, "B 3 3", "cam_R"),
                          (cam_T, "B 3", "cam_T"), (left_root_xyz, "B 3", "left_root_xyz"),
                          (right_root_xyz, "B 3", "right_root_xyz")):
        check_same_size(b, check_shape(x, spec, name), "B", ("joints_left", name))
        check_finite(x, name)
    check_finite(joints_left, "joints_left")
    f64 = torch.float64
    mirror = torch.tensor(MIRROR_X, dtype=f64, device=joints_left.device)
    left = (joints_left.to(f64) + left_root_xyz.to(f64)[:, None]) * mirror
    right = joints_right.to(f64) + right_root_xyz.to(f64)[:, None]
    rot_t = cam_R.to(f64).transpose(1, 2)
    trans = cam_T.to(f64)[:, None]
    left = torch.bmm(left, rot_t) + trans
    right = torch.bmm(right, rot_t) + trans
    mid = left[:, 4:5]
    return KeypointInput(left_mm=(left - mid) * 1000, right_mm=(right - mid) * 1000, left_mid_joint=mid)
