"""Helpers shared by the open hand model's tests (``test_openhand.py``, ``test_openhand_build.py``)."""

from __future__ import annotations

import numpy as np
import torch

from im2hands.hand.mano import ManoLayer
from im2hands.hand.openhand import openhand_dir

MIRROR_POSE = torch.tensor([1.0, -1.0, -1.0], dtype=torch.float64).repeat(16)
"""Axis-angle mirror (x, -y, -z) of a full 48-value MANO pose."""


def layer(side: str, **kw) -> ManoLayer:
    """A float64 ``ManoLayer`` of the shipped open hand model, MANO joint order."""
    # our left shapedirs are already mirrored: the real-MANO left fix must stay off
    return ManoLayer(openhand_dir(), side=side, fix_left_shapedirs=False, joint_order="mano",
                     dtype=torch.float64, **kw)


def pose(layer: ManoLayer, hand_pose=None, betas=None, global_orient=None):
    """Run `layer` without gradients on numpy (or None) arguments, as float64."""
    t = lambda a: None if a is None else torch.as_tensor(np.atleast_2d(a), dtype=torch.float64)  # noqa: E731
    with torch.no_grad():
        return layer(global_orient=t(global_orient), hand_pose=t(hand_pose), betas=t(betas))
