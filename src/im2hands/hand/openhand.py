"""The open hand model at run time: the shipped files, their layer, and the pose helpers built on its design.

MANO's files cannot be redistributed, so the project ships its own hand model. It is built by
:mod:`im2hands.hand.openhand_build` from a designed rest skeleton and shipped as ``MANO_RIGHT.pkl`` /
``MANO_LEFT.pkl`` with MANO's keys, shapes and kinematic tree, so that the same layer runs it and users can
swap in real MANO files.

Files (plain numpy arrays and one ``scipy.sparse`` matrix, no chumpy; loadable by ``smplx.MANO``):

==================== ================= =====================================================================
key                  shape             meaning
==================== ================= =====================================================================
``v_template``       (V, 3) float32    rest vertices, metres (V = 1,300)
``f``                (F, 3) uint32     triangles, outward (counter-clockwise seen from outside)
``kintree_table``    (2, 16) int64     row 0: parent of each joint (root: 2**32-1 as in MANO), row 1: ids
``J_regressor``      (16, V) csc       convex rows: rest joints = ``J_regressor @ v_template``
``weights``          (V, 16) float32   linear-blend-skinning weights, rows sum to 1
``shapedirs``        (V, 3, 10) f32    vertex offsets per unit of each shape coefficient (``SHAPE_COMPONENTS``)
``posedirs``         (V, 3, 135) f16   simple pose correctives (a bulge at bent joints; float16 keeps files small)
``hands_components`` (45, 45) f64      orthonormal PCA basis (rows) of a designed anatomical pose prior
``hands_mean``       (45,) f64         relaxed mean pose (fingers slightly flexed), axis-angle, radians
``tip_vertex_ids``   (5,) int64        fingertip vertices: thumb, index, middle, ring, pinky
``openhand_version`` str               generator version
==================== ================= =====================================================================

Joints (MANO order): wrist, index1-3, middle1-3, pinky1-3, ring1-3, thumb1-3 (``skeleton.MANO[:16]``).

Axes (right hand, rest pose; chosen like real MANO's right-hand template): metres, the wrist joint at the
origin (MANO's template has it at about (0.096, 0.006, 0.006); ours is centred for convenience),
fingers point along **-x**, the back of the hand faces **+y** (palm faces -y), the thumb lies on the **+z**
side. So a positive rotation about +z flexes a finger towards the palm, as with MANO's right hand. The rest
pose is MANO's: flat hand, straight fingers slightly spread, thumb abducted about 45 degrees in the palm
plane with its base (CMC) on the palm side.

Left hand: the exact x-mirror of the right one (vertices and joints x-negated, face winding flipped,
``shapedirs[:, 0]`` negated, ``posedirs`` mirrored, pose components mirrored as axis-angle (x, -y, -z)).
Real MANO's left ``shapedirs`` need the well-known fix ``shapedirs[:, 0, :] *= -1`` (smplx issue #48);
ours are already correct and that fix must **not** be applied to them (``ManoLayer`` recognises our files
by the key ``openhand_version`` and skips it; ``open_hand_layer`` turns it off explicitly).

Run time (this module): ``openhand_dir`` (the shipped folder ``im2hands/assets/openhand``),
``open_hand_layer`` (a ``ManoLayer`` of it), ``load_model`` (a file as a dict of arrays), and the designed
rest skeleton with its anatomical pose helpers (``rest_skeleton``, ``joint_axes``, ``pose_from_angles``)
used to pose the model by angles. The builder (:mod:`im2hands.hand.openhand_build`) regenerates the
shipped files.

License: generated entirely by this project's own code and design numbers (no MANO data); it is part of
im2hands and under the project's license.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from im2hands.hand.skeleton import MANO

JOINT_NAMES: tuple[str, ...] = MANO[:16]
TIP_FINGERS: tuple[str, ...] = ("thumb", "index", "middle", "ring", "pinky")
"""Order of ``tip_vertex_ids`` (the fingertip order of ``skeleton.MANO``)."""

FINGER_CHAINS: dict[str, tuple[int, int, int]] = {
    "index": (1, 2, 3), "middle": (4, 5, 6), "pinky": (7, 8, 9), "ring": (10, 11, 12), "thumb": (13, 14, 15),
}
"""MANO joint ids of each finger's three joints (proximal first)."""

SHAPE_COMPONENTS: tuple[tuple[str, str], ...] = (
    ("size", "whole hand scaled about the wrist, +7 % per unit"),
    ("finger_length", "index-pinky segments stretched along their bones, +6 % per unit"),
    ("finger_thickness", "index-pinky girth scaled about the bone axes, +9 % per unit; joints stay"),
    ("palm_width", "palm scaled across (z) about its middle, +6 % per unit; fingers move with their knuckles"),
    ("palm_thickness", "palm scaled dorsal-palmar (y) about the joint plane, +10 % per unit; joints stay"),
    ("palm_length", "palm scaled along (x) from the wrist, +5 % per unit; fingers move with their knuckles"),
    ("thumb_length", "thumb segments stretched along their bones, +7 % per unit"),
    ("index_ring_ratio", "index longer and ring shorter, +-5 % per unit"),
    ("pinky_length", "pinky segments stretched, +8 % per unit"),
    ("thumb_thickness", "thumb and thenar girth scaled about the thumb axes, +10 % per unit; joints stay"),
)
"""The 10 shape coefficients (``betas``) in order: (name, effect of +1)."""



# ----------------------------------------------------------------------------------------------- skeleton

@dataclass(frozen=True)
class RestSkeleton:
    """Designed rest skeleton of the right hand (metres, axes in the module docstring).

    Attributes:
        joints: (16, 3) joint positions in MANO order.
        tips: (5, 3) fingertip surface points, order ``TIP_FINGERS``.
        radii: (16, 2) radius of each bone's rounded cone at its start and end joint (bone b starts at
            joint b; bone 0, the palm, has no cone and radii 0).
        nail_normal_thumb: (3,) unit normal of the thumbnail at rest (defines the thumb's flexion axis).
    """

    joints: np.ndarray
    tips: np.ndarray
    radii: np.ndarray
    nail_normal_thumb: np.ndarray

    def bone_end(self, b: int) -> np.ndarray:
        """(3,) end point of bone ``b`` (1..15): its child joint, or the fingertip for a distal bone."""
        for finger, chain in FINGER_CHAINS.items():
            if b in chain:
                i = chain.index(b)
                return self.joints[chain[i + 1]] if i < 2 else self.tips[TIP_FINGERS.index(finger)]
        raise ValueError(f"bone: expected 1..15, got {b}")


def _unit(v) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v)


def _rot(axis, angle: float) -> np.ndarray:
    """(3, 3) rotation by `angle` radians about unit `axis` (right-hand rule)."""
    x, y, z = _unit(axis)
    c, s = np.cos(angle), np.sin(angle)
    k = np.array([[0, -z, y], [z, 0, -x], [-y, x, 0]])
    return np.eye(3) + s * k + (1 - c) * k @ k


# finger: knuckle (x, y, z), spread angle towards the thumb (deg), segment lengths (m), radius scale
_FINGER_DESIGN = {
    "index": ((-0.0880, 0.0000, 0.0250), 7.0, (0.0410, 0.0250, 0.0230), 0.95),
    "middle": ((-0.0930, 0.0005, 0.0040), 0.0, (0.0460, 0.0290, 0.0245), 1.00),
    "ring": ((-0.0870, 0.0000, -0.0165), -7.0, (0.0430, 0.0280, 0.0235), 0.95),
    "pinky": ((-0.0770, -0.0020, -0.0340), -15.0, (0.0330, 0.0215, 0.0215), 0.83),
}
_FINGER_RADII = ((0.0098, 0.0090), (0.0088, 0.0081), (0.0079, 0.0069))
_THUMB_CMC = (-0.0200, -0.0100, 0.0210)
_THUMB_DIR = (-0.70, -0.07, 0.70)
_THUMB_LENGTHS = (0.0420, 0.0320, 0.0275)
_THUMB_RADII = ((0.0125, 0.0105), (0.0102, 0.0096), (0.0094, 0.0082))
_THUMB_NAIL_TILT = np.deg2rad(50.0)
"""Thumbnail normal: tilted from +y (dorsal) towards the side away from the fingers."""


def rest_skeleton() -> RestSkeleton:
    """The designed right-hand rest skeleton (betas = 0); see ``RestSkeleton``."""
    joints = np.zeros((16, 3))
    tips = np.zeros((5, 3))
    radii = np.zeros((16, 2))
    for finger, (mcp, spread, lengths, rscale) in _FINGER_DESIGN.items():
        d = _rot([0, 1, 0], np.deg2rad(spread)) @ np.array([-1.0, 0.0, 0.0])
        p = np.array(mcp)
        chain = FINGER_CHAINS[finger]
        for i, j in enumerate(chain):
            joints[j] = p
            radii[j] = np.array(_FINGER_RADII[i]) * rscale
            p = p + lengths[i] * d
        tips[TIP_FINGERS.index(finger)] = p
    d = _unit(_THUMB_DIR)
    p = np.array(_THUMB_CMC)
    for i, j in enumerate(FINGER_CHAINS["thumb"]):
        joints[j] = p
        radii[j] = _THUMB_RADII[i]
        p = p + _THUMB_LENGTHS[i] * d
    tips[0] = p
    away = _unit(np.cross(d, [0.0, 1.0, 0.0]))  # in the palm plane, perpendicular to the thumb
    if away @ np.array([1.0, 0.0, 1.0]) < 0:  # point away from the fingers (towards +x +z)
        away = -away
    nail = _unit(np.cos(_THUMB_NAIL_TILT) * _unit(np.array([0, 1.0, 0]) - d[1] * d) + np.sin(_THUMB_NAIL_TILT) * away)
    return RestSkeleton(joints=joints, tips=tips, radii=radii, nail_normal_thumb=nail)


def bone_axes(skel: RestSkeleton) -> np.ndarray:
    """(16, 3) unit axis of each bone (start joint -> end point); bone 0 (palm) gets wrist -> middle1."""
    axes = np.zeros((16, 3))
    axes[0] = _unit(skel.joints[4] - skel.joints[0])
    for b in range(1, 16):
        axes[b] = _unit(skel.bone_end(b) - skel.joints[b])
    return axes



# ------------------------------------------------------------------------------------------- pose space

def joint_axes(skel: RestSkeleton) -> dict[str, np.ndarray]:
    """Anatomical rotation axes (rest template frame, unit) for building poses.

    Returns a dict with (15, 3) arrays for the 15 finger joints (MANO ids 1..15 -> rows 0..14):
    ``flex`` (positive = flexion towards the palm), ``abd`` (positive = towards the thumb side for
    index-pinky; palmar abduction for the thumb CMC), ``twist`` (along the bone; positive = the thumb pad
    turns towards the fingers).
    """
    axes = bone_axes(skel)
    up = np.array([0.0, 1.0, 0.0])
    flex = np.zeros((15, 3))
    abd = np.zeros((15, 3))
    twist = np.zeros((15, 3))
    for finger, chain in FINGER_CHAINS.items():
        for b in chain:
            d = axes[b]
            n = skel.nail_normal_thumb if finger == "thumb" else up
            flex[b - 1] = _unit(np.cross(n, d))  # rotates d towards -n
            if finger == "thumb":
                abd[b - 1] = _unit(np.cross(up, d))  # rotates d towards -y (in front of the palm)
                twist[b - 1] = -d
            else:
                abd[b - 1] = up
                twist[b - 1] = d
    return {"flex": flex, "abd": abd, "twist": twist}


def pose_from_angles(skel: RestSkeleton, flex: np.ndarray, abd: np.ndarray, twist: np.ndarray) -> np.ndarray:
    """Axis-angle pose (N, 45) of the 15 finger joints from anatomical angles (N, 15) each, radians.

    The rotation of each joint is ``R(abd axis, abd) @ R(flex axis, flex) @ R(twist axis, twist)`` in the
    rest template frame (MANO's relative joint rotations are expressed in the rest frame's axes).
    For index-pinky, positive ``abd`` spreads a finger towards the thumb.
    """
    arrays = {"flex": np.asarray(flex, dtype=np.float64), "abd": np.asarray(abd, dtype=np.float64),
              "twist": np.asarray(twist, dtype=np.float64)}
    n = arrays["flex"].shape[0] if arrays["flex"].ndim == 2 else -1
    for name, a in arrays.items():
        if a.ndim != 2 or a.shape != (n, 15):
            raise ValueError(f"{name}: expected shape (N, 15) with the same N for flex, abd and twist, "
                             f"got {a.shape}")
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{name}: contains NaN or inf")
    flex, abd, twist = arrays["flex"], arrays["abd"], arrays["twist"]
    ax = joint_axes(skel)
    out = np.zeros((n, 15, 3))
    from scipy.spatial.transform import Rotation

    for j in range(15):
        r = (Rotation.from_rotvec(ax["abd"][j] * abd[:, j:j + 1])
             * Rotation.from_rotvec(ax["flex"][j] * flex[:, j:j + 1])
             * Rotation.from_rotvec(ax["twist"][j] * twist[:, j:j + 1]))
        out[:, j] = r.as_rotvec()
    return out.reshape(n, 45)




# ---------------------------------------------------------------------------------------- shipped files

def openhand_dir() -> Path:
    """Folder of the shipped open hand model files (``MANO_RIGHT.pkl``, ``MANO_LEFT.pkl``)."""
    return Path(__file__).resolve().parents[1] / "assets" / "openhand"


def open_hand_layer(side: str = "right", *, use_pca: bool = False, num_pca_comps: int = 6,
                    flat_hand_mean: bool = False, joint_order: str = "internal", dtype=None):
    """A :class:`im2hands.hand.mano.ManoLayer` of the shipped open hand model for `side`.

    Same options as ``ManoLayer``, except that the real-MANO left-hand shapedirs fix is always off (our left
    model is already an exact mirror). `dtype` defaults to ``torch.float32``.
    """
    import torch

    from im2hands.hand.mano import ManoLayer

    return ManoLayer(openhand_dir(), side=side, use_pca=use_pca, num_pca_comps=num_pca_comps,
                     flat_hand_mean=flat_hand_mean, fix_left_shapedirs=False, joint_order=joint_order,
                     dtype=torch.float32 if dtype is None else dtype)


def load_model(path: Path) -> dict:
    """Read a model file (ours or MANO's) into a dict of arrays, with the restricted, chumpy-free
    unpickler of :func:`im2hands.hand.mano.load_mano_pickle` (no arbitrary code runs)."""
    from im2hands.hand.mano import load_mano_pickle

    return load_mano_pickle(path)

