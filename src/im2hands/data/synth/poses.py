"""Anatomically plausible hand poses: sampled as joint angles, converted to MANO axis-angle.

Parametrisation. Each of the 15 finger joints has three anatomical angles (radians), stored as an array
``angles`` of shape (5, 3, 3) = (finger, level, dof):

- finger: thumb, index, middle, ring, pinky (:data:`im2hands.hand.skeleton.FINGERS`);
- level: the three joints of the finger from the palm outwards: MCP, PIP, DIP for the fingers and
  CMC, MCP, IP for the thumb (MANO joints ``{finger}1``, ``{finger}2``, ``{finger}3``);
- dof: ``flex`` (positive bends the bone towards the palm), ``abd`` (positive moves the bone towards the
  thumb side, i.e. radial deviation), ``twist`` (about the bone).

Anatomical frames. :func:`anatomical_frames` derives, from the model's own rest joints, a right-handed
frame per joint with columns ``(a, b, t)``:

- ``d`` = unit bone direction (joint -> child joint) in the rest pose;
- ``n`` = palm (volar) direction: ``s * (radial x distal)`` with ``radial`` = index MCP - pinky MCP,
  ``distal`` = middle MCP - wrist and ``s`` = +1 for a right hand, -1 for a left hand; for the thumb the
  volar direction is tilted by :data:`THUMB_VOLAR_TILT` from the palm normal towards the ulnar side (the
  thumb pad faces the fingers); ``n`` is then made orthogonal to ``d``;
- flexion axis ``a = d x n`` (a positive rotation moves ``d`` towards ``n``), twist axis ``t = s d``,
  abduction axis ``b = t x a`` (a positive rotation moves ``d`` towards the thumb side).

The local MANO rotation of a joint is ``F Rx(flex) Ry(abd) Rz(twist) F^T`` with ``F = [a b t]``: MANO's
joint rotations act in the axes of the rest pose, so these frames work for any model in MANO's format (the
open hand model or real MANO) and give mirror-image motions for the left and right hands.

Sampling (:func:`sample_hand_angles`): a pose *style* (flat, relaxed, fist, grasp, pinch, point, random)
sets the mean curl of each finger, the thumb curl and opposition and the finger spread; the four finger
curls get Gaussian noise correlated between neighbours (:data:`CURL_NEIGHBOUR_CORRELATION`); joint
angles follow from the curls with the DIP flexion coupled to the PIP flexion (:data:`DIP_PIP_RATIO`);
every angle is finally clipped to :data:`JOINT_LIMITS_DEG`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation

from im2hands.hand import skeleton as sk

LEVELS: dict[str, tuple[str, str, str]] = {
    "thumb": ("CMC", "MCP", "IP"), "index": ("MCP", "PIP", "DIP"), "middle": ("MCP", "PIP", "DIP"),
    "ring": ("MCP", "PIP", "DIP"), "pinky": ("MCP", "PIP", "DIP"),
}
"""Anatomical name of each finger's three joints (MANO's ``{finger}1-3``)."""

DOFS: tuple[str, str, str] = ("flex", "abd", "twist")
"""The three angles of every joint, in the last axis of ``angles``."""

# (finger, level) -> ((flex lo, hi), (abd lo, hi), (twist lo, hi)) in degrees.
_LIMITS = {
    "thumb": (((-20, 50), (-15, 45), (-15, 25)),     # CMC
              ((-10, 60), (-10, 10), (-10, 10)),     # MCP
              ((-15, 80), (-3, 3), (-5, 5))),        # IP
    "index": (((-20, 90), (-15, 20), (-8, 8)),       # MCP
              ((-5, 105), (-3, 3), (-5, 5)),         # PIP
              ((-5, 80), (-2, 2), (-3, 3))),         # DIP
    "middle": (((-20, 90), (-12, 12), (-8, 8)),
               ((-5, 105), (-3, 3), (-5, 5)),
               ((-5, 80), (-2, 2), (-3, 3))),
    "ring": (((-20, 90), (-15, 10), (-8, 8)),
             ((-5, 105), (-3, 3), (-5, 5)),
             ((-5, 80), (-2, 2), (-3, 3))),
    "pinky": (((-20, 90), (-30, 10), (-10, 10)),
              ((-5, 105), (-3, 3), (-5, 5)),
              ((-5, 80), (-2, 2), (-3, 3))),
}
JOINT_LIMITS_DEG: np.ndarray = np.array([_LIMITS[f] for f in sk.FINGERS], dtype=np.float64)
"""(5, 3, 3, 2) lower/upper limit of every (finger, level, dof) angle, degrees. Typical active ranges of
motion of the adult hand; negative flexion is hyperextension, negative abduction is ulnar deviation."""

JOINT_LIMITS: np.ndarray = np.deg2rad(JOINT_LIMITS_DEG)
"""(5, 3, 3, 2) :data:`JOINT_LIMITS_DEG` in radians."""

THUMB_VOLAR_TILT = np.deg2rad(45.0)
"""Angle (radians) by which the thumb's volar direction is tilted from the palm normal towards the ulnar
side (the thumb pad faces the palm and the fingers)."""

DIP_PIP_RATIO = 2.0 / 3.0
"""Mean DIP flexion / PIP flexion of the fingers (the tendon coupling of the DIP joint)."""

CURL_NEIGHBOUR_CORRELATION = 0.6
"""Correlation of the curl noise of neighbouring fingers (index-middle, ...); rho**k for k fingers apart."""

STYLES: dict[str, float] = {
    "flat": 0.12, "relaxed": 0.22, "fist": 0.12, "grasp": 0.20, "pinch": 0.12, "point": 0.10, "random": 0.12,
}
"""Pose styles and their default sampling probabilities."""

# style -> (mean curls index, middle, ring, pinky; thumb curl; thumb opposition; spread; curl noise std)
# None draws the value uniformly from [0, 1].
_STYLE_MEANS = {
    "flat": ((0.02, 0.02, 0.02, 0.02), 0.05, 0.10, None, 0.04),
    "relaxed": ((0.22, 0.27, 0.32, 0.37), 0.25, 0.35, 0.3, 0.08),
    "fist": ((0.95, 0.95, 0.95, 0.95), 0.75, 0.55, 0.0, 0.05),
    "grasp": ((0.55, 0.60, 0.62, 0.66), 0.40, 0.75, 0.1, 0.10),
    "pinch": ((0.45, None, None, None), 0.35, 0.90, 0.2, 0.08),
    "point": ((0.03, 0.92, 0.92, 0.92), 0.60, 0.60, 0.1, 0.05),
    "random": ((None, None, None, None), None, None, None, 0.12),
}

_SPREAD_DEG = np.array([15.0, 3.0, -8.0, -18.0])
"""MCP abduction (degrees) of index, middle, ring, pinky at full spread (spread = 1, straight fingers)."""


def _unit(v: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    if np.any(n < 1e-9):
        raise ValueError("rest_joints: two joints coincide; cannot build a joint frame")
    return v / n


def _check_side(side: str) -> int:
    if side not in ("right", "left"):
        raise ValueError(f"side: expected 'right' or 'left', got {side!r}")
    return 1 if side == "right" else -1


def _joint_index(finger: int, level: int) -> int:
    """Internal-order index of joint ``level`` (0..3, 3 = tip) of finger ``finger`` (0 = thumb)."""
    return 1 + 4 * finger + level


MANO_POSE_SLOT: np.ndarray = np.array(
    [[sk.MANO.index(f"{f}{k + 1}") - 1 for k in range(3)] for f in sk.FINGERS], dtype=np.int64)
"""(5, 3) index of each (finger, level) joint among MANO's 15 pose joints (hand_pose.reshape(15, 3))."""


def palm_axes(joints: np.ndarray, side: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distal, radial and palm-normal unit vectors of a hand from its joints.

    Args:
        joints: (..., 21, 3) joints in the internal order, any frame, metres.
        side: ``"right"`` or ``"left"``.
    Returns:
        ``(distal, radial, normal)``, each (..., 3): wrist -> middle MCP; pinky MCP -> index MCP (towards the
        thumb), made orthogonal to distal; the palm (volar) normal ``s * radial x distal``.
    """
    s = _check_side(side)
    joints = np.asarray(joints, dtype=np.float64)
    if joints.ndim < 2 or joints.shape[-2:] != (21, 3):
        raise ValueError(f"joints: expected shape (..., 21, 3), got {joints.shape}")
    distal = _unit(joints[..., 9, :] - joints[..., 0, :])
    radial = joints[..., 5, :] - joints[..., 17, :]
    radial = _unit(radial - (radial * distal).sum(-1, keepdims=True) * distal)
    normal = s * np.cross(radial, distal)
    return distal, radial, normal


def anatomical_frames(rest_joints: np.ndarray, side: str) -> np.ndarray:
    """Per-joint anatomical frames ``F = [a b t]`` (flexion, abduction, twist axes) of a rest pose.

    Args:
        rest_joints: (21, 3) joints of the unposed hand (zero full pose) in the internal order, model frame,
            metres.
        side: ``"right"`` or ``"left"`` (sets the chirality ``s``).
    Returns:
        (5, 3, 3, 3) float64 rotation matrices, ``frames[f, k][:, 0]`` the flexion axis of level ``k`` of
        finger ``f``, ``[:, 1]`` its abduction axis and ``[:, 2]`` its twist axis (model frame).
    """
    s = _check_side(side)
    rest_joints = np.asarray(rest_joints, dtype=np.float64)
    if rest_joints.shape != (21, 3):
        raise ValueError(f"rest_joints: expected shape (21, 3), got {rest_joints.shape}")
    _, radial, normal = palm_axes(rest_joints, side)
    frames = np.empty((5, 3, 3, 3))
    for f in range(5):
        volar = normal
        if f == 0:
            volar = np.cos(THUMB_VOLAR_TILT) * normal - np.sin(THUMB_VOLAR_TILT) * radial
        for k in range(3):
            d = _unit(rest_joints[_joint_index(f, k + 1)] - rest_joints[_joint_index(f, k)])
            n = volar - np.dot(volar, d) * d
            if np.linalg.norm(n) < 1e-3:
                raise ValueError(f"rest_joints: the {sk.FINGERS[f]} bone {k + 1} is parallel to the palm normal")
            n = _unit(n)
            a = np.cross(d, n)
            t = s * d
            b = np.cross(t, a)
            frames[f, k] = np.stack([a, b, t], axis=1)
    return frames


def _check_angles(angles: np.ndarray) -> np.ndarray:
    angles = np.asarray(angles, dtype=np.float64)
    if angles.ndim < 3 or angles.shape[-3:] != (5, 3, 3):
        raise ValueError(f"angles: expected shape (..., 5, 3, 3) (finger, level, dof), got {angles.shape}")
    return angles


def angles_to_hand_pose(angles: np.ndarray, frames: np.ndarray) -> np.ndarray:
    """Convert anatomical angles to MANO's 45 axis-angle values (rotation relative to the rest pose).

    Args:
        angles: (..., 5, 3, 3) radians, (finger, level, [flex, abd, twist]).
        frames: (5, 3, 3, 3) from :func:`anatomical_frames`.
    Returns:
        (..., 45) float64 axis-angle of MANO's 15 joints in MANO's order (index1-3, middle1-3, pinky1-3,
        ring1-3, thumb1-3), radians. This is the *full* pose: a layer that adds ``hands_mean`` needs
        ``hand_pose = full - hands_mean``.
    """
    angles = _check_angles(angles)
    frames = np.asarray(frames, dtype=np.float64)
    if frames.shape != (5, 3, 3, 3):
        raise ValueError(f"frames: expected shape (5, 3, 3, 3), got {frames.shape}")
    lead = angles.shape[:-3]
    anat = Rotation.from_euler("XYZ", angles.reshape(-1, 3)).as_matrix().reshape(*lead, 5, 3, 3, 3)
    local = frames @ anat @ np.swapaxes(frames, -1, -2)  # (..., 5, 3, 3, 3)
    rotvec = Rotation.from_matrix(local.reshape(-1, 3, 3)).as_rotvec().reshape(*lead, 5, 3, 3)
    out = np.zeros((*lead, 15, 3))
    out[..., MANO_POSE_SLOT.reshape(-1), :] = rotvec.reshape(*lead, 15, 3)
    return out.reshape(*lead, 45)


def hand_pose_to_angles(hand_pose: np.ndarray, frames: np.ndarray) -> np.ndarray:
    """Inverse of :func:`angles_to_hand_pose` (exact while every ``|abd| < 90`` degrees).

    Args:
        hand_pose: (..., 45) full axis-angle pose, MANO order, radians.
        frames: (5, 3, 3, 3) from :func:`anatomical_frames`.
    Returns:
        (..., 5, 3, 3) anatomical angles, radians.
    """
    hand_pose = np.asarray(hand_pose, dtype=np.float64)
    if hand_pose.ndim < 1 or hand_pose.shape[-1] != 45:
        raise ValueError(f"hand_pose: expected shape (..., 45), got {hand_pose.shape}")
    lead = hand_pose.shape[:-1]
    rotvec = hand_pose.reshape(*lead, 15, 3)[..., MANO_POSE_SLOT.reshape(-1), :].reshape(*lead, 5, 3, 3)
    local = Rotation.from_rotvec(rotvec.reshape(-1, 3)).as_matrix().reshape(*lead, 5, 3, 3, 3)
    anat = np.swapaxes(frames, -1, -2) @ local @ frames
    return Rotation.from_matrix(anat.reshape(-1, 3, 3)).as_euler("XYZ").reshape(*lead, 5, 3, 3)


def clip_to_limits(angles: np.ndarray) -> np.ndarray:
    """Clip anatomical angles (..., 5, 3, 3), radians, to :data:`JOINT_LIMITS`."""
    angles = _check_angles(angles)
    return np.clip(angles, JOINT_LIMITS[..., 0], JOINT_LIMITS[..., 1])


@dataclass(frozen=True)
class PoseSample:
    """One sampled hand pose."""

    angles: np.ndarray
    """(5, 3, 3) anatomical angles, radians (finger, level, [flex, abd, twist]), within the limits."""
    style: str
    """The pose style it was drawn from (a key of :data:`STYLES`)."""
    curls: np.ndarray
    """(4,) curl in [0, 1] of index, middle, ring, pinky (0 straight, 1 fully flexed)."""


def _curl_covariance(std: float) -> np.ndarray:
    idx = np.arange(4)
    return std ** 2 * CURL_NEIGHBOUR_CORRELATION ** np.abs(idx[:, None] - idx[None, :])


def sample_hand_angles(rng: np.random.Generator, style: str | None = None,
                       styles: dict[str, float] | None = None) -> PoseSample:
    """Draw one anatomically plausible hand pose.

    Args:
        rng: the only source of randomness.
        style: a key of :data:`STYLES`; None draws one from `styles`.
        styles: style -> probability (normalised here); default :data:`STYLES`.
    Returns:
        :class:`PoseSample`.
    """
    if style is None:
        table = STYLES if styles is None else styles
        bad = [k for k in table if k not in _STYLE_MEANS]
        if bad or not table:
            raise ValueError(f"styles: unknown styles {bad}; choose from {sorted(_STYLE_MEANS)}")
        names = list(table)
        p = np.asarray([table[k] for k in names], dtype=np.float64)
        if np.any(p < 0) or p.sum() <= 0:
            raise ValueError(f"styles: probabilities must be >= 0 with a positive sum, got {table}")
        style = names[int(rng.choice(len(names), p=p / p.sum()))]
    elif style not in _STYLE_MEANS:
        raise ValueError(f"style: expected one of {sorted(_STYLE_MEANS)}, got {style!r}")
    curl_means, thumb_curl, opposition, spread, noise = _STYLE_MEANS[style]

    def value(x):
        return rng.uniform() if x is None else x

    mean = np.array([value(c) for c in curl_means])
    curls = np.clip(mean + rng.multivariate_normal(np.zeros(4), _curl_covariance(noise)), 0.0, 1.0)
    thumb_curl = float(np.clip(value(thumb_curl) + rng.normal(0, 0.08), 0, 1))
    opposition = float(np.clip(value(opposition) + rng.normal(0, 0.08), 0, 1))
    spread = float(np.clip(value(spread) + rng.normal(0, 0.1), -0.3, 1.0))

    deg = np.zeros((5, 3, 3))
    # fingers: MCP, PIP from the curl (with independent noise), DIP coupled to PIP
    deg[1:, 0, 0] = -10.0 + 95.0 * curls + rng.normal(0, 6.0, 4)
    deg[1:, 1, 0] = 100.0 * curls + rng.normal(0, 6.0, 4)
    deg[1:, 2, 0] = DIP_PIP_RATIO * np.clip(deg[1:, 1, 0], 0, None) + rng.normal(0, 4.0, 4)
    deg[1:, 0, 1] = spread * _SPREAD_DEG * (1.0 - 0.6 * curls) + rng.normal(0, 3.0, 4)
    deg[1:, 0, 2] = rng.normal(0, 3.0, 4)
    deg[1:, 1:, 1] = rng.normal(0, 1.0, (4, 2))
    deg[1:, 1:, 2] = rng.normal(0, 2.0, (4, 2))
    # thumb: CMC from the opposition, MCP and IP from the thumb curl
    deg[0, 0] = (-5.0 + 50.0 * opposition + rng.normal(0, 5.0), 5.0 - 15.0 * opposition + rng.normal(0, 5.0),
                 15.0 * opposition + rng.normal(0, 4.0))
    deg[0, 1] = (50.0 * thumb_curl + rng.normal(0, 5.0), rng.normal(0, 3.0), rng.normal(0, 3.0))
    deg[0, 2] = (75.0 * thumb_curl + rng.normal(0, 6.0), rng.normal(0, 1.0), rng.normal(0, 2.0))
    angles = clip_to_limits(np.deg2rad(deg))
    return PoseSample(angles=angles, style=style, curls=curls)


def fist_angles(rng: np.random.Generator) -> np.ndarray:
    """A closed target pose (5, 3, 3), radians, for closing a hand around an object (strong flexion)."""
    return sample_hand_angles(rng, "fist").angles
