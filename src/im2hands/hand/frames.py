"""The frames of one hand and the maps between them: query space, hand root, world, camera; the left mirror.

Every function is pure and batched: each tensor is an argument, nothing is cached, device and dtype follow
the inputs. ``docs/CONVENTIONS.md`` defines the frames once; this module is their only implementation.

Frames (metres unless said otherwise):

- **world**: the frame of the keypoints and of the camera extrinsics, true axes (never mirrored).
- **camera**: OpenCV (x right, y down, z forward), ``x_cam = R x_world + T``.
- **query space** of one hand: origin at the hand's root (the wrist), axes of the hand's canonical frame
  (``root_rot_mat`` from :func:`im2hands.hand.canonical.canonicalise`), scaled so that ``0.4 * p`` is
  metres. A **left** hand is x-mirrored first and handled as a right hand, so its query space is a mirrored
  frame: ``p = R0 m(x - root) / 0.4`` with ``m`` the x-mirror (identity for right hands) and
  ``R0 = root_rot_mat[:3, :3]``.

``root_rot_mat`` (B, 4, 4) is the canonicalisation's matrix as the official code stores it (zero
translation). Query -> world is computed exactly as the official model does, with row vectors
``[0.4 p, 1] @ root_rot_mat`` (i.e. ``R0ᵀ``); world -> query with column vectors ``R0 v``.

Sides: ``side`` is ``"right"``/``"left"`` for the whole batch or a (B,) bool tensor ``is_right``.
"""

from __future__ import annotations

from typing import Union

import numpy as np
import torch
from torch import Tensor

from im2hands._checks import check_shape
from im2hands.hand.skeleton import Side

QUERY_SCALE = 0.4
"""Query units -> metres: ``0.4 * p`` is metres (HALO's convention)."""

MIRROR_X = (-1.0, 1.0, 1.0)
"""Left hands are mirrored by negating x: a mirrored left hand is handled as a right hand."""

SideArg = Union[Side, Tensor]
"""``"right"``/``"left"`` for a whole batch, or a (B,) bool tensor ``is_right`` (True = right hand)."""


def mirror_x(points):
    """Negate the x coordinate of points (..., 3), torch or numpy; the left <-> right mirror.

    Args:
        points: (..., 3) tensor or array, any frame.
    Returns:
        (..., 3) the same type and dtype, x negated.
    """
    if points.shape[-1] != 3:
        raise ValueError(f"points: expected shape (..., 3), got {tuple(points.shape)}")
    if isinstance(points, Tensor):
        return points * points.new_tensor(MIRROR_X)
    return np.asarray(points) * np.asarray(MIRROR_X, dtype=np.asarray(points).dtype)


def side_mask(side: SideArg, batch: int, device=None) -> Tensor:
    """(B,) bool tensor, True for right hands, from ``"right"``/``"left"`` or a (B,) bool tensor."""
    if isinstance(side, str):
        if side not in ("right", "left"):
            raise ValueError(f"side: expected 'right', 'left' or a (B,) bool tensor is_right, got {side!r}")
        return torch.full((batch,), side == "right", dtype=torch.bool, device=device)
    if isinstance(side, Tensor):
        if side.dtype != torch.bool or side.shape != (batch,):
            raise ValueError(f"side: a tensor must be a ({batch},) bool tensor is_right (True = right hand), "
                             f"got dtype {side.dtype} shape {tuple(side.shape)}")
        return side.to(device)
    raise TypeError(f"side: expected 'right', 'left' or a (B,) bool tensor, got {type(side).__name__}")


def side_mirror(side: SideArg, batch: int, *, dtype: torch.dtype, device=None) -> Tensor:
    """(B, 1, 3) factors ``[+-1, 1, 1]``: -1 in x for left hands, so ``points * side_mirror(...)`` mirrors
    (B, N, 3) left-hand points and leaves right-hand points unchanged (exactly: the factors are +-1)."""
    is_right = side_mask(side, batch, device)
    m = torch.ones((batch, 1, 3), dtype=dtype, device=device)
    m[:, 0, 0] = torch.where(is_right, 1.0, -1.0).to(dtype)
    return m


def _check_hand_frame(points: Tensor, root: Tensor, root_rot_mat: Tensor, name: str) -> int:
    sp = check_shape(points, "B N 3", name)
    sw = check_shape(root, "B 3", "root")
    sr = check_shape(root_rot_mat, "B 4 4", "root_rot_mat")
    for other, nm in ((sw, "root"), (sr, "root_rot_mat")):
        if other["B"] != sp["B"]:
            raise ValueError(f"{name} and {nm}: mismatched batch size ({sp['B']} vs {other['B']})")
    return sp["B"]


def points_to_query(points: Tensor, root: Tensor, root_rot_mat: Tensor, side: SideArg) -> Tensor:
    """World points -> the hand's query space: ``p = R0 m(x - root) / 0.4``.

    Args:
        points: (B, N, 3) world points, metres (the frame of the keypoints given to ``canonicalise``).
        root: (B, 3) the hand's root (wrist) in the same frame, true axes, metres (``Canonical.wrist``).
        root_rot_mat: (B, 4, 4) ``Canonical.root_rot_mat``.
        side: ``"right"``, ``"left"`` or a (B,) bool tensor ``is_right``.
    Returns:
        (B, N, 3) query points (query units, ``0.4 * p`` = metres), dtype of `points`.
    """
    bs = _check_hand_frame(points, root, root_rot_mat, "points")
    dt = points.dtype
    m = side_mirror(side, bs, dtype=dt, device=points.device)
    rel = (points - root.to(dt).unsqueeze(1)) * m
    return torch.matmul(rel, root_rot_mat[:, :3, :3].to(dt).transpose(1, 2)) / QUERY_SCALE


def query_to_points(points_query: Tensor, root: Tensor, root_rot_mat: Tensor, side: SideArg) -> Tensor:
    """The hand's query space -> world points (inverse of :func:`points_to_query`).

    Computed in the official order: ``[0.4 p, 1] @ root_rot_mat`` (row vectors), plus the x-mirrored root,
    then left hands mirrored back to true axes. Bit for bit the official camera-frame path in float32.

    Args:
        points_query: (B, N, 3) query points (query units).
        root: (B, 3) the hand's root in world metres, true axes.
        root_rot_mat: (B, 4, 4) ``Canonical.root_rot_mat``.
        side: ``"right"``, ``"left"`` or a (B,) bool tensor ``is_right``.
    Returns:
        (B, N, 3) world points, metres, dtype of `points_query`.
    """
    bs = _check_hand_frame(points_query, root, root_rot_mat, "points_query")
    dt = points_query.dtype
    m = side_mirror(side, bs, dtype=dt, device=points_query.device)
    hom = torch.cat([points_query * QUERY_SCALE,
                     torch.ones((*points_query.shape[:-1], 1), dtype=dt, device=points_query.device)], dim=-1)
    x = torch.bmm(hom, root_rot_mat.to(dt))[..., :3]
    return (x + root.to(dt).unsqueeze(1) * m) * m


def world_to_camera(points: Tensor, R: Tensor, T: Tensor) -> Tensor:
    """World -> OpenCV camera frame: ``x_cam = R x + T``.

    Args:
        points: (B, N, 3) world points, metres.
        R: (B, 3, 3) world -> camera rotation.
        T: (B, 3) world -> camera translation, metres.
    Returns:
        (B, N, 3) camera-frame points, metres, dtype of `points`.
    """
    dt = points.dtype
    return torch.bmm(points, R.to(dt).transpose(1, 2)) + T.to(dt).unsqueeze(1)


def query_to_camera(points_query: Tensor, root: Tensor, root_rot_mat: Tensor, side: SideArg, R: Tensor,
                    T: Tensor) -> Tensor:
    """The hand's query space -> camera frame, float32, in the official order of operations.

    ``world_to_camera(query_to_points(p))``: ``[0.4 p, 1] @ root_rot_mat``, ``+ m(root)``, mirror x if left,
    ``@ Rᵀ + T``.

    Args:
        points_query: (B, N, 3) query points of the hand (query units).
        root: (B, 3) the hand's root in world metres, true axes.
        root_rot_mat: (B, 4, 4) ``Canonical.root_rot_mat``.
        side: ``"right"``, ``"left"`` or a (B,) bool tensor ``is_right``.
        R: (B, 3, 3), T: (B, 3) world -> camera extrinsics (metres).
    Returns:
        (B, N, 3) float32 camera-frame points, metres.
    """
    world = query_to_points(points_query.float(), root.float(), root_rot_mat.float(), side)
    return world_to_camera(world, R.float(), T.float())


def query_to_query(points_query: Tensor, src_root: Tensor, src_root_rot_mat: Tensor, src_side: SideArg,
                   dst_root: Tensor, dst_root_rot_mat: Tensor, dst_side: SideArg) -> Tensor:
    """One hand's query space -> another hand's query space (through true world axes), float32.

    Args:
        points_query: (B, N, 3) points in the source hand's query space.
        src_root, dst_root: (B, 3) the two hands' roots, world metres, true axes.
        src_root_rot_mat, dst_root_rot_mat: (B, 4, 4) their ``root_rot_mat``.
        src_side, dst_side: their sides.
    Returns:
        (B, N, 3) float32: the same physical points in the destination hand's query space.
    """
    world = query_to_points(points_query.float(), src_root.float(), src_root_rot_mat.float(), src_side)
    bs = world.shape[0]
    m = side_mirror(dst_side, bs, dtype=world.dtype, device=world.device)
    rel = (world - dst_root.float().unsqueeze(1)) * m
    # the inverse of the float32 rotation (not its transpose): the numbers of the first implementation
    return torch.bmm(rel, torch.linalg.inv(dst_root_rot_mat.float()[:, :3, :3])) / QUERY_SCALE


def root_to_camera_z(root: Tensor, R: Tensor, T: Tensor) -> Tensor:
    """(B,) camera-frame z of the hands' roots, metres, float32.

    Args:
        root: (B, 3) world metres, true axes.
        R: (B, 3, 3), T: (B, 3) world -> camera extrinsics.
    """
    return world_to_camera(root.float().unsqueeze(1), R.float(), T.float())[:, 0, 2]


def world_to_query_matrix(root: Tensor, root_rot_mat: Tensor, side: SideArg) -> Tensor:
    """(B, 4, 4) affine matrices ``M`` with ``[p, 1] = M [x, 1]``: :func:`points_to_query` as one matrix.

    Args:
        root: (B, 3) the hands' roots, world metres, true axes.
        root_rot_mat: (B, 4, 4) ``Canonical.root_rot_mat``.
        side: ``"right"``, ``"left"`` or a (B,) bool tensor ``is_right``.
    Returns:
        (B, 4, 4) in the dtype of `root_rot_mat` (use float64 for exact meshes); the left hands' matrices
        include the mirror (determinant < 0).
    """
    bs = check_shape(root, "B 3", "root")["B"]
    dt = root_rot_mat.dtype
    m = side_mirror(side, bs, dtype=dt, device=root.device)                  # (B, 1, 3)
    lin = root_rot_mat[:, :3, :3] * m / QUERY_SCALE                          # R0 diag(m) / 0.4
    out = torch.zeros((bs, 4, 4), dtype=dt, device=root.device)
    out[:, :3, :3] = lin
    out[:, :3, 3] = -torch.matmul(lin, root.to(dt).unsqueeze(-1))[..., 0]
    out[:, 3, 3] = 1.0
    return out
