"""Render docs/images/openhand.png: the open hand model at rest, with several shapes and in several poses.

Run: ``PYTHONPATH=src python docs/scripts/make_openhand_figure.py [--out docs/images/openhand.png]``
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("PYOPENGL_PLATFORM", "egl")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import trimesh  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

from dataclasses import dataclass  # noqa: E402

from im2hands.hand import openhand as oh  # noqa: E402
from im2hands.hand import openhand_build as ohb  # noqa: E402
from im2hands.hand.camera import look_at  # noqa: E402
from im2hands.hand.mano import ManoLayer  # noqa: E402
from im2hands.viz.render import opengl_pose, render_meshes  # noqa: E402

TILE = 320
SKIN = (0.86, 0.66, 0.55)
SKIN_2 = (0.62, 0.72, 0.86)


@dataclass(frozen=True)
class HandAngles:
    """Anatomical angles (degrees) of a simple symmetric hand pose, see ``openhand.pose_from_angles``."""

    finger_flex: tuple[float, float, float]
    """Flexion of the MCP, PIP and DIP joints of index-pinky."""
    thumb: tuple[float, float, float, float, float]
    """Thumb CMC flexion, MCP flexion, IP flexion, CMC palmar abduction, CMC twist."""


def right_pose_from_angles(a: HandAngles) -> np.ndarray:
    """(45,) right-hand axis-angle pose of the open hand model from :class:`HandAngles`, radians."""
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


def _mesh(layer: ManoLayer, pose=None, betas=None) -> trimesh.Trimesh:
    t = lambda a: None if a is None else torch.tensor(np.atleast_2d(a), dtype=torch.float64)  # noqa: E731
    with torch.no_grad():
        out = layer(hand_pose=t(pose), betas=t(betas))
    return trimesh.Trimesh(out.vertices[0].numpy(), layer.faces.numpy(), process=False)


def _view(mesh: trimesh.Trimesh, direction, up, color=SKIN, dist=0.42) -> np.ndarray:
    c = mesh.bounds.mean(0)
    d = np.asarray(direction, float)
    return render_meshes([mesh], [color], opengl_pose(*look_at(c + dist * d / np.linalg.norm(d), c, up)), size=TILE)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("docs/images/openhand.png"))
    args = parser.parse_args()
    right = ManoLayer(oh.openhand_dir(), side="right", flat_hand_mean=True, dtype=torch.float64)
    left = ManoLayer(oh.openhand_dir(), side="left", flat_hand_mean=True, fix_left_shapedirs=False,
                     dtype=torch.float64)
    skel = oh.rest_skeleton()
    dorsal, palmar, oblique = (0.15, 1, 0.1), (0.15, -1, 0.1), (-0.6, 0.35, 0.8)
    up = (-1, 0, 0)
    rest = _mesh(right)
    row1 = [(_view(rest, dorsal, up), "rest, back (right)"), (_view(rest, palmar, up), "rest, palm"),
            (_view(rest, (0.3, 0.1, 1), (0, 1, 0)), "rest, thumb side"),
            (_view(_mesh(left), dorsal, (1, 0, 0), SKIN_2), "left = mirror")]
    names = [n for n, _ in oh.SHAPE_COMPONENTS]

    def betas(**kw):
        b = np.zeros(10)
        for k, v in kw.items():
            b[names.index(k)] = v
        return b

    shapes = [(betas(size=-2), "size -2"), (betas(size=2), "size +2"),
              (betas(finger_thickness=3, thumb_thickness=3, palm_thickness=3), "thickness +3"),
              (betas(finger_length=2, palm_width=-2), "long fingers, narrow palm")]
    row2 = [(_view(_mesh(right, betas=b), dorsal, up, dist=0.45), label) for b, label in shapes]
    fist = right_pose_from_angles(HandAngles((85, 95, 60), (30, 40, 40, 40, 25)))
    pinch = oh.pose_from_angles(skel, *[a[None] for a in _pinch_angles(right, skel)])[0]
    relaxed = ohb.relaxed_pose(skel)
    rng = np.random.default_rng(4)
    rnd = ohb.sample_anatomical_poses(skel, 1, rng)[0]
    poses = [(fist, "fist"), (pinch, "thumb-index pinch"), (relaxed, "hands_mean (relaxed)"), (rnd, "random anatomical")]
    row3 = [(_view(_mesh(right, pose=p), oblique, (0, 1, 0), dist=0.36), label) for p, label in poses]
    row3[3] = (_view(_mesh(left, pose=mirror_pose(rnd)), (0.6, 0.35, 0.8), (0, 1, 0), SKIN_2, dist=0.36),
               "random, left hand")
    tiles = []
    for img, label in row1 + row2 + row3:
        im = Image.fromarray(img)
        ImageDraw.Draw(im).text((8, 6), label, fill=(20, 20, 20))
        tiles.append(np.asarray(im))
    rows = [np.concatenate(tiles[i:i + 4], axis=1) for i in range(0, 12, 4)]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate(rows, axis=0)).save(args.out)
    print(f"wrote {args.out}")


def _pinch_angles(layer: ManoLayer, skel: oh.RestSkeleton):
    """Anatomical angles (radians) of a thumb-index tip pinch: a seeded random search inside the
    documented ranges (as in tests/hand/test_openhand_build.py), other fingers slightly curled."""
    rng = np.random.default_rng(0)
    keys = ("cmc_flex", "cmc_abd", "cmc_twist", "mcp_flex", "ip_flex")
    lo = np.deg2rad([ohb.THUMB_RANGES[k][0] for k in keys] + [0.0] * 3)
    hi = np.deg2rad([ohb.THUMB_RANGES[k][1] for k in keys] + [90.0] * 3)
    t = [j - 1 for j in oh.FINGER_CHAINS["thumb"]]
    c = [j - 1 for j in oh.FINGER_CHAINS["index"]]

    def angles(x):
        n = len(x)
        flex, abd, twist = np.zeros((n, 15)), np.zeros((n, 15)), np.zeros((n, 15))
        for finger, f in (("middle", 20), ("ring", 25), ("pinky", 30)):
            flex[:, [j - 1 for j in oh.FINGER_CHAINS[finger]]] = np.deg2rad([f, f + 10, f / 2])
        flex[:, t[0]], abd[:, t[0]], twist[:, t[0]], flex[:, t[1]], flex[:, t[2]] = x[:, :5].T
        flex[:, c] = x[:, 5:8]
        return flex, abd, twist

    def cost(x):
        pose = torch.tensor(oh.pose_from_angles(skel, *angles(x)))
        with torch.no_grad():
            j = layer(hand_pose=pose).joints  # internal order: thumb tip 4, index tip 8
        return torch.linalg.norm(j[:, 4] - j[:, 8], dim=-1).numpy() + 0.002 * np.abs(x).sum(1)

    x = rng.uniform(lo, hi, (600, 8))
    best = x[np.argmin(cost(x))]
    for step in (0.2, 0.08, 0.03):
        x = np.clip(best + rng.normal(0, step, (300, 8)), lo, hi)
        x[0] = best
        best = x[np.argmin(cost(x))]
    return tuple(a[0] for a in angles(best[None]))


if __name__ == "__main__":
    main()
