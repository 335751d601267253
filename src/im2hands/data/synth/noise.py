"""Detector-like errors for 3D hand keypoints (the "predicted keypoints" input of the networks).

A monocular keypoint detector is accurate across the image and poor in depth, worse at the fingertips
than at the palm, errs coherently along a finger, and now and then fails outright. The model
(:class:`NoiseConfig`, all lengths in metres, camera frame, camera centre at the origin):

1. lateral error: per joint, Gaussian in the plane perpendicular to the joint's viewing ray, standard
   deviation ``lateral_std[level]`` (wrist, then finger levels 1-4; growing towards the tips);
2. depth error along the viewing ray: per joint ``depth_ratio * lateral_std[level]``, plus one offset
   per hand (``hand_depth_std``) shared by all its joints (a wrong hand distance);
3. finger bend error: per finger a random 3D offset (``finger_std``) that grows linearly along the finger
   (joint ``k`` of 4 gets ``k / 4`` of it), i.e. a finger bent slightly wrong;
4. outliers, per hand:
   - ``flip_prob``: one finger's depth ambiguity resolved wrongly: its joints beyond the MCP are
     reflected in depth about the MCP's depth, each moved along its own viewing ray (the 2D projection is
     kept exactly);
   - ``snap_prob``: one joint (a fingertip with probability ``snap_tip_share``) is snapped onto a random
     joint of the other hand (only when ``other`` is given), plus the lateral error of that level;
   - ``jump_prob``: one joint jumps by ``jump_range`` metres in a random direction.

Measured statistics of the default model over many synthetic scenes are in ``docs/DATA.md``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_LEVEL = np.array([0] + [1, 2, 3, 4] * 5)
"""Level of each internal joint: 0 wrist, 1 MCP/CMC, 2 PIP/MCP, 3 DIP/IP, 4 tip."""


@dataclass(frozen=True)
class NoiseConfig:
    """Parameters of the keypoint error model (metres)."""

    lateral_std: tuple[float, float, float, float, float] = (0.0025, 0.003, 0.0035, 0.004, 0.005)
    """Std of the per-joint error perpendicular to the viewing ray: wrist, level 1, 2, 3, tip."""
    depth_ratio: float = 2.0
    """Per-joint std along the viewing ray = depth_ratio * lateral std."""
    hand_depth_std: float = 0.004
    """Std of one depth offset shared by all joints of a hand."""
    finger_std: float = 0.0025
    """Std (per axis) of each finger's bend offset at its tip (linear along the finger)."""
    flip_prob: float = 0.05
    """Probability per hand that one finger is flipped in depth about its MCP."""
    snap_prob: float = 0.03
    """Probability per hand that one joint is snapped onto the other hand (needs `other`)."""
    snap_tip_share: float = 0.7
    """Share of snapped joints that are fingertips."""
    jump_prob: float = 0.03
    """Probability per hand that one joint jumps far away."""
    jump_range: tuple[float, float] = (0.015, 0.04)
    """Range of the jump length, metres."""


DEFAULT_NOISE = NoiseConfig()


def _check_joints(x: np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.shape != (21, 3):
        raise ValueError(f"{name}: expected shape (21, 3) (internal joint order, camera frame), got {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name}: contains NaN or inf")
    if np.any(x[:, 2] <= 0):
        raise ValueError(f"{name}: joints must be in front of the camera (z > 0); min z = {x[:, 2].min():.4f}")
    return x


def noisy_keypoints(rng: np.random.Generator, joints_cam: np.ndarray, side: str, *,
                    other: np.ndarray | None = None, config: NoiseConfig = DEFAULT_NOISE) -> np.ndarray:
    """Simulate a keypoint detector's output for one hand.

    Args:
        rng: the only source of randomness.
        joints_cam: (21, 3) true joints, internal order, camera frame (OpenCV, camera centre at the
            origin), metres.
        side: ``"right"`` or ``"left"``; validated only (the error model is the same for both hands).
        other: (21, 3) true joints of the other hand in the same frame, or None (then no snapping outlier).
        config: :class:`NoiseConfig`.
    Returns:
        (21, 3) float64 noisy joints, same order and frame, metres.
    """
    if side not in ("right", "left"):
        raise ValueError(f"side: expected 'right' or 'left', got {side!r}")
    joints = _check_joints(joints_cam, "joints_cam")
    if other is not None:
        other = _check_joints(other, "other")
    if not isinstance(config, NoiseConfig):
        raise TypeError(f"config: expected a NoiseConfig, got {type(config).__name__}")

    ray = joints / np.linalg.norm(joints, axis=1, keepdims=True)  # (21, 3) unit viewing rays
    lateral_std = np.asarray(config.lateral_std)[_LEVEL]  # (21,)

    # 1-2. per-joint lateral and depth errors, and one depth offset per hand
    e = rng.normal(size=(21, 3)) * lateral_std[:, None]
    e -= (e * ray).sum(1, keepdims=True) * ray  # keep the lateral part
    depth = rng.normal(size=21) * lateral_std * config.depth_ratio + rng.normal() * config.hand_depth_std
    out = joints + e + depth[:, None] * ray

    # 3. finger bend offsets growing along each finger
    bend = rng.normal(size=(5, 3)) * config.finger_std
    for f in range(5):
        out[1 + 4 * f: 5 + 4 * f] += np.arange(1, 5)[:, None] / 4.0 * bend[f]

    # 4. outliers
    if rng.uniform() < config.flip_prob:
        f = int(rng.integers(5))
        mcp = 1 + 4 * f
        z_mcp = out[mcp, 2]
        for j in range(mcp + 1, mcp + 4):
            z_new = max(2.0 * z_mcp - out[j, 2], 0.05 * z_mcp)
            out[j] *= z_new / out[j, 2]  # along the viewing ray: the projection is unchanged
    if other is not None and rng.uniform() < config.snap_prob:
        j = 4 + 4 * int(rng.integers(5)) if rng.uniform() < config.snap_tip_share else int(rng.integers(21))
        target = other[int(rng.integers(21))]
        out[j] = target + rng.normal(size=3) * lateral_std[j]
    if rng.uniform() < config.jump_prob:
        j = int(rng.integers(21))
        v = rng.normal(size=3)
        out[j] += v / np.linalg.norm(v) * rng.uniform(*config.jump_range)
    return out


def mpjpe(pred: np.ndarray, target: np.ndarray, *, root_relative: bool = False) -> float:
    """Mean per-joint position error (metres) of (..., 21, 3) joints; ``root_relative`` subtracts each
    hand's wrist (joint 0) first."""
    pred, target = np.asarray(pred, dtype=np.float64), np.asarray(target, dtype=np.float64)
    if pred.shape != target.shape or pred.shape[-2:] != (21, 3):
        raise ValueError(f"pred, target: expected equal shapes (..., 21, 3), got {pred.shape} and {target.shape}")
    if root_relative:
        pred = pred - pred[..., :1, :]
        target = target - target[..., :1, :]
    return float(np.linalg.norm(pred - target, axis=-1).mean())
