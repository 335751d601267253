"""The official storage conventions, converted in one place: official arrays -> our public types.

The official data and meta files store

- the **left root x-mirrored** (``left_root_xyz``: the wrist in world metres times (-1, 1, 1));
- the RefOcc **anchors in millimetres**, relative to the hand's root, true world axes (the left hand not
  mirrored), float64.

Our types speak metres, true world axes and the camera frame (:class:`~im2hands.models.init_occ.HandInputs`,
:class:`~im2hands.hand.camera.Camera`); the golden checker and anything reading official files convert here.
"""

from __future__ import annotations

from torch import Tensor

from im2hands.hand.frames import mirror_x, world_to_camera
from im2hands.hand.skeleton import Side
from im2hands.models.init_occ import HandInputs


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
