"""A small stand-in for the scene sampler (same interface): two capsule 'hands' in front of a camera.

Each hand is a palm capsule plus five three-segment finger capsules, concatenated (so it self-intersects,
like posed hand meshes can); its 21 joints sit on the capsule axes in the internal order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import trimesh
from scipy.spatial.transform import Rotation


@dataclass(frozen=True)
class HandState:
    side: str
    global_orient: np.ndarray
    hand_pose: np.ndarray
    betas: np.ndarray
    transl: np.ndarray
    vertices: np.ndarray
    faces: np.ndarray
    joints: np.ndarray
    joint_transforms: np.ndarray


@dataclass(frozen=True)
class Camera:
    K: np.ndarray
    R: np.ndarray
    T: np.ndarray
    size: int = 256


@dataclass(frozen=True)
class Scene:
    right: HandState
    left: HandState
    camera: Camera
    kind: str
    contact: bool
    penetration_volume: float
    min_distance: float


def load_hand_models(mano_dir=None):
    return None


def _capsule(a, b, r):
    a, b = np.asarray(a, float), np.asarray(b, float)
    d = b - a
    cap = trimesh.creation.capsule(height=np.linalg.norm(d), radius=r, count=[8, 8])
    z = np.array([0.0, 0, 1])
    rot, _ = Rotation.align_vectors([d / np.linalg.norm(d)], [z])
    cap.apply_transform(np.block([[rot.as_matrix(), ((a + b) / 2)[:, None]], [np.zeros((1, 3)), np.ones((1, 1))]]))
    return cap


def _hand(rng, side):
    s = -1.0 if side == "left" else 1.0
    joints = [np.zeros(3)]
    parts = [_capsule([0, 0.0, 0], [0, 0.08, 0], 0.03)]
    bases = [(0.035, 0.025), (0.025, 0.09), (0.008, 0.095), (-0.01, 0.09), (-0.027, 0.08)]
    for f, (x, y) in enumerate(bases):
        direction = np.array([0.6, 0.8, 0.0]) if f == 0 else np.array([0.0, 1.0, 0.0])
        bend = rng.uniform(0, 0.6)
        p = np.array([s * x, y, 0.0])
        joints.append(p.copy())
        for seg, length in enumerate((0.035, 0.025, 0.02)):
            ang = bend * (seg + 1) / 2
            d = direction * np.cos(ang) + np.array([0, 0, 1.0]) * np.sin(ang)
            d = d * np.array([s, 1, 1])
            q = p + d * length
            parts.append(_capsule(p, q, 0.009))
            joints.append(q.copy())
            p = q
    mesh = trimesh.util.concatenate(parts)
    return mesh.vertices, mesh.faces, np.array(joints)


def sample_scene(rng, hands):
    states = {}
    for side, off in (("right", 0.03), ("left", -0.03)):
        v, f, j = _hand(rng, side)
        rot = Rotation.from_rotvec(rng.normal(0, 0.3, 3)).as_matrix()
        t = np.array([off, 0.0, rng.uniform(-0.01, 0.01)])
        states[side] = HandState(
            side=side, global_orient=np.zeros(3), hand_pose=np.zeros(45), betas=np.zeros(10), transl=t,
            vertices=v @ rot.T + t, faces=f.astype(np.int64), joints=j @ rot.T + t,
            joint_transforms=np.tile(np.eye(4), (16, 1, 1)),
        )
    R = Rotation.from_rotvec([np.pi, 0, 0]).as_matrix()  # look at the hands' front, y up in the image
    T = np.array([0.0, 0.05, 0.5])
    K = np.array([[450.0, 0, 128], [0, 450.0, 128], [0, 0, 1]])
    return Scene(states["right"], states["left"], Camera(K, R, T), "near", False, 0.0, 0.01)


def noisy_keypoints(rng, joints_cam, side):
    return joints_cam + rng.normal(0.0, 0.005, joints_cam.shape)
