"""Joint orders of the field, converters between them, bones, and the two sides (the left mirror itself is
:func:`im2hands.hand.frames.mirror_x`).

This module is the only place where joint orders are defined. Every other module speaks the **internal
order** and converts at its edges with the functions below.

Orders (each a list of 21 joint names unless stated):

- ``INTERNAL`` (= manopth's order, the order the official occupancy networks read from ``pred_joints``):
  wrist, thumb1-4, index1-4, middle1-4, ring1-4, pinky1-4; the tip is the 4th joint of each finger.
- ``MANO`` (MANO's 16 kinematic joints + 5 fingertips, the order of smplx/manotorch with tips appended):
  wrist, index1-3, middle1-3, pinky1-3, ring1-3, thumb1-3, then tips of thumb, index, middle, ring, pinky.
- ``HALO``: HALO's order. It is the same list as ``MANO``; both names are kept so code says which
  convention it follows.
- ``BIOMECH``: wrist, the 5 MCPs (thumb to pinky), the 5 PIPs, the 5 DIPs, the 5 tips (HALO's internal
  order for its pose converter).
- ``INTERHAND`` (InterHand2.6M, 42 joints): right hand 0-20, left hand 21-41; per hand thumb4 (tip),
  thumb3, thumb2, thumb1, index4..1, middle4..1, ring4..1, pinky4..1, wrist.

A permutation ``ORDER_FROM_INTERNAL`` maps internal joints to that order: ``joints_order =
joints_internal[..., PERM, :]``.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from torch import Tensor

Side = Literal["right", "left"]
"""A hand's side."""
SIDES: tuple[Side, Side] = ("right", "left")
"""Both sides, in the one order used everywhere (sample keys, loops over hands)."""
FINGERS = ("thumb", "index", "middle", "ring", "pinky")

INTERNAL: tuple[str, ...] = ("wrist",) + tuple(f"{f}{i}" for f in FINGERS for i in range(1, 5))
"""Internal 21-joint order (manopth). ``{finger}4`` is the fingertip."""

MANO: tuple[str, ...] = (
    ("wrist",)
    + tuple(f"{f}{i}" for f in ("index", "middle", "pinky", "ring", "thumb") for i in range(1, 4))
    + tuple(f"{f}4" for f in FINGERS)
)
"""MANO's 16 kinematic joints followed by the 5 fingertips (thumb, index, middle, ring, pinky)."""

HALO: tuple[str, ...] = MANO
"""HALO's 21-joint order; identical to ``MANO``."""

BIOMECH: tuple[str, ...] = ("wrist",) + tuple(f"{f}{i}" for i in range(1, 5) for f in FINGERS)
"""Wrist, then the 5 joints of each level (MCP, PIP, DIP, tip) from thumb to pinky."""

INTERHAND_HAND: tuple[str, ...] = tuple(f"{f}{i}" for f in FINGERS for i in range(4, 0, -1)) + ("wrist",)
"""InterHand2.6M's 21 joints of one hand (tip first, wrist last)."""

INTERHAND: tuple[str, ...] = tuple(f"right_{n}" for n in INTERHAND_HAND) + tuple(f"left_{n}" for n in INTERHAND_HAND)
"""InterHand2.6M's 42 joints: right hand 0-20, left hand 21-41."""

INTERHAND_ROOT = {"right": 20, "left": 41}
"""Index of each hand's wrist in InterHand2.6M's 42 joints."""


def _perm(target: tuple[str, ...], source: tuple[str, ...]) -> tuple[int, ...]:
    """Indices ``p`` such that ``target[i] == source[p[i]]``."""
    return tuple(source.index(n) for n in target)


MANO_FROM_INTERNAL = _perm(MANO, INTERNAL)
INTERNAL_FROM_MANO = _perm(INTERNAL, MANO)
HALO_FROM_INTERNAL = MANO_FROM_INTERNAL
INTERNAL_FROM_HALO = INTERNAL_FROM_MANO
BIOMECH_FROM_INTERNAL = _perm(BIOMECH, INTERNAL)
INTERNAL_FROM_BIOMECH = _perm(INTERNAL, BIOMECH)
BIOMECH_FROM_HALO = _perm(BIOMECH, HALO)
HALO_FROM_BIOMECH = _perm(HALO, BIOMECH)
INTERHAND_HAND_FROM_INTERNAL = _perm(INTERHAND_HAND, INTERNAL)
INTERNAL_FROM_INTERHAND_HAND = _perm(INTERNAL, INTERHAND_HAND)

PARENTS_INTERNAL: tuple[int, ...] = (-1,) + tuple(
    0 if i == 0 else 1 + 4 * f + i - 1 for f in range(5) for i in range(4)
)
"""Parent of each internal joint (wrist = -1; each finger's first joint hangs on the wrist)."""

BONES_INTERNAL: tuple[tuple[int, int], ...] = tuple((p, c) for c, p in enumerate(PARENTS_INTERNAL) if p >= 0)
"""20 (parent, child) joint pairs in the internal order."""

MANO_KINTREE_PARENTS: tuple[int, ...] = (-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 0, 10, 11, 0, 13, 14)
"""Parent of each of MANO's 16 kinematic joints (row 0 of MANO's ``kintree_table``, root = -1)."""

HALO_PARENTS: tuple[int, ...] = MANO_KINTREE_PARENTS + (15, 3, 6, 12, 9)
"""Parent of each HALO/MANO-order joint, fingertips included."""

PART_NAMES: tuple[str, ...] = ("palm",) + MANO[1:16]
"""The 16 parts of the occupancy networks, in MANO's joint order: palm, index1-3, middle1-3, pinky1-3,
ring1-3, thumb1-3 (part b is the bone that starts at MANO joint b)."""


def _check_joints(joints: Tensor | np.ndarray, n: int, name: str) -> None:
    if joints.ndim < 2 or joints.shape[-2] != n or joints.shape[-1] != 3:
        raise ValueError(f"{name}: expected shape (..., {n}, 3), got {tuple(joints.shape)}")


def _take(joints, perm: tuple[int, ...]):
    idx = list(perm)
    if isinstance(joints, Tensor):
        return joints[..., torch.as_tensor(idx, device=joints.device), :]
    return np.asarray(joints)[..., idx, :]


def reorder(joints, source: str, target: str):
    """Convert joints (..., 21, 3) between the 21-joint orders by name.

    Args:
        joints: (..., 21, 3) array or tensor in order `source`.
        source, target: one of ``"internal"``, ``"mano"``, ``"halo"``, ``"biomech"``, ``"interhand"``
            (``"interhand"`` is one hand of InterHand2.6M, 21 joints, tip first and wrist last).
    Returns:
        (..., 21, 3) same type, in order `target`.
    """
    orders = {"internal": INTERNAL, "manopth": INTERNAL, "mano": MANO, "halo": HALO, "biomech": BIOMECH,
              "interhand": INTERHAND_HAND}
    for o in (source, target):
        if o not in orders:
            raise ValueError(f"unknown joint order {o!r}; choose from {sorted(orders)}")
    _check_joints(joints, 21, "joints")
    return _take(joints, _perm(orders[target], orders[source]))


def interhand_to_internal(joints42) -> tuple:
    """Split InterHand2.6M's 42 joints (..., 42, 3) into (right, left), each (..., 21, 3) in internal order."""
    _check_joints(joints42, 42, "joints42")
    right = _take(joints42[..., :21, :], INTERNAL_FROM_INTERHAND_HAND)
    left = _take(joints42[..., 21:, :], INTERNAL_FROM_INTERHAND_HAND)
    return right, left


def internal_to_interhand(right, left):
    """Join two hands (..., 21, 3) in internal order into InterHand2.6M's (..., 42, 3)."""
    _check_joints(right, 21, "right")
    _check_joints(left, 21, "left")
    r = _take(right, INTERHAND_HAND_FROM_INTERNAL)
    l = _take(left, INTERHAND_HAND_FROM_INTERNAL)
    if isinstance(r, Tensor):
        return torch.cat([r, l], dim=-2)
    return np.concatenate([r, l], axis=-2)


def other_side(side: Side) -> Side:
    """The other hand's side; raises ``ValueError`` for anything but "right"/"left"."""
    if side not in ("right", "left"):
        raise ValueError(f"side: expected 'right' or 'left', got {side!r}")
    return "left" if side == "right" else "right"
