"""The ``im2hands demo`` command: two open hand models posed in a loose clasp, written as meshes and a picture.

The right hand grips the back of the relaxed left hand from above, its fingers curled over the left hand's
little-finger edge (a pose found by a small search for a contact-free, close configuration). Everything
runs on the CPU in a few seconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from im2hands._io import atomic_write
from im2hands.hand.camera import look_at
from im2hands.viz.render import opengl_pose, render_meshes


@dataclass(frozen=True)
class HandAngles:
    """Anatomical angles (degrees) of a simple symmetric hand pose, see ``openhand.pose_from_angles``."""

    finger_flex: tuple[float, float, float]
    """Flexion of the MCP, PIP and DIP joints of index-pinky."""
    thumb: tuple[float, float, float, float, float]
    """Thumb CMC flexion, MCP flexion, IP flexion, CMC palmar abduction, CMC twist."""


CLASP_RIGHT = HandAngles(finger_flex=(45.0, 85.0, 50.0), thumb=(10.0, 10.0, 10.0, 0.0, 10.0))
CLASP_LEFT = HandAngles(finger_flex=(10.0, 15.0, 8.0), thumb=(5.0, 10.0, 10.0, 15.0, 5.0))
CLASP_RIGHT_ORIENT_DEG = (0.0, -90.0, 0.0)
"""Right hand's global orientation, rotation about x, y, z (degrees, applied about the wrist)."""
CLASP_RIGHT_TRANSL = (0.03, 0.042, 0.024)
"""Right hand's translation (metres) relative to the left hand (which stays at the origin)."""


def right_pose_from_angles(a: HandAngles) -> np.ndarray:
    """(45,) right-hand axis-angle pose of the open hand model from :class:`HandAngles`, radians."""
    from im2hands.hand import openhand as oh

    skel = oh.rest_skeleton()
    flex, abd, twist = np.zeros(15), np.zeros(15), np.zeros(15)
    for finger in ("index", "middle", "ring", "pinky"):
        flex[[j - 1 for j in oh.FINGER_CHAINS[finger]]] = np.deg2rad(a.finger_flex)
    t = [j - 1 for j in oh.FINGER_CHAINS["thumb"]]
    flex[t] = np.deg2rad(a.thumb[:3])
    abd[t[0]] = np.deg2rad(a.thumb[3])
    twist[t[0]] = np.deg2rad(a.thumb[4])
    return oh.pose_from_angles(skel, flex[None], abd[None], twist[None])[0]


def mirror_pose(pose: np.ndarray) -> np.ndarray:
    """Mirror axis-angle poses (..., 3k) between right and left hands: (x, y, z) -> (x, -y, -z)."""
    pose = np.asarray(pose)
    return (pose.reshape(*pose.shape[:-1], -1, 3) * np.array([1.0, -1.0, -1.0])).reshape(pose.shape)


def clasp_meshes():
    """The demo's two posed open hands as ``(right, left)`` ``trimesh.Trimesh`` (metres, left hand's frame)."""
    import torch
    import trimesh
    from scipy.spatial.transform import Rotation

    from im2hands.hand.openhand import open_hand_layer

    out = []
    for side, angles in (("right", CLASP_RIGHT), ("left", CLASP_LEFT)):
        layer = open_hand_layer(side, flat_hand_mean=True, dtype=torch.float64)
        pose = right_pose_from_angles(angles)
        orient, transl = np.zeros(3), np.zeros(3)
        if side == "left":
            pose = mirror_pose(pose)
        else:
            orient = Rotation.from_euler("xyz", CLASP_RIGHT_ORIENT_DEG, degrees=True).as_rotvec()
            transl = np.array(CLASP_RIGHT_TRANSL)
        with torch.no_grad():
            res = layer(global_orient=torch.tensor(orient[None]), hand_pose=torch.tensor(pose[None]),
                        transl=torch.tensor(transl[None]))
        out.append(trimesh.Trimesh(res.vertices[0].numpy(), layer.faces.numpy(), process=False))
    return out[0], out[1]


SKIN = (0.86, 0.66, 0.55)
SKIN_2 = (0.62, 0.72, 0.86)


def run_demo(out_dir: Path) -> None:
    """Pose the right and left open hand models in a loose clasp; write ``right_hand.ply``,
    ``left_hand.ply`` and ``clasp.png`` (two views) into `out_dir` and print what was written."""
    from PIL import Image

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    right, left = clasp_meshes()
    written = []
    for name, mesh in (("right_hand.ply", right), ("left_hand.ply", left)):
        atomic_write(out_dir / name, lambda f, m=mesh: m.export(f, file_type="ply"))
        written.append(out_dir / name)
    centre = np.concatenate([right.vertices, left.vertices]).mean(0)
    views = [opengl_pose(*look_at(centre + np.array([0.22, 0.36, -0.22]), centre, [0, -1, 0])),
             opengl_pose(*look_at(centre + np.array([0.08, 0.04, -0.48]), centre, [0, -1, 0]))]
    image = np.concatenate([render_meshes([right, left], [SKIN, SKIN_2], v) for v in views], axis=1)
    atomic_write(out_dir / "clasp.png", lambda f: Image.fromarray(image).save(f, format="PNG"))
    written.append(out_dir / "clasp.png")
    for p in written:
        print(f"wrote {p}")
