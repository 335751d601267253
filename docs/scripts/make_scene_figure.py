"""Render docs/images/synth_scenes.png: four sampled scenes per interaction category, seen through each
scene's own camera (the 256 x 256 normalised crop; right hand red, left hand blue).

Run: ``PYTHONPATH=src python docs/scripts/make_scene_figure.py [--out docs/images/synth_scenes.png]``
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("PYOPENGL_PLATFORM", "egl")

import numpy as np  # noqa: E402
import pyrender  # noqa: E402
import trimesh  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

from im2hands.data.synth.scene import KINDS, load_hand_models, sample_scene  # noqa: E402

COLORS = {"right": (0.85, 0.45, 0.35, 1.0), "left": (0.35, 0.55, 0.85, 1.0)}
TILE = 192


def render(scene, renderer: pyrender.OffscreenRenderer) -> np.ndarray:
    sc = pyrender.Scene(ambient_light=(0.35, 0.35, 0.35), bg_color=(1.0, 1.0, 1.0, 1.0))
    for h in (scene.right, scene.left):
        mat = pyrender.MetallicRoughnessMaterial(baseColorFactor=COLORS[h.side], roughnessFactor=0.8)
        sc.add(pyrender.Mesh.from_trimesh(trimesh.Trimesh(h.vertices, h.faces, process=False), material=mat))
    cam = scene.camera
    K = cam.K
    # OpenCV camera (x right, y down, z forward) -> OpenGL camera pose (y up, z backward)
    pose = np.eye(4)
    pose[:3, :3] = cam.R.T @ np.diag([1.0, -1.0, -1.0])
    pose[:3, 3] = cam.centre_world
    sc.add(pyrender.IntrinsicsCamera(K[0, 0], K[1, 1], K[0, 2], K[1, 2], znear=0.01, zfar=10.0), pose=pose)
    sc.add(pyrender.DirectionalLight(intensity=3.0), pose=pose)
    return renderer.render(sc)[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("docs/images/synth_scenes.png"))
    parser.add_argument("--per-kind", type=int, default=4)
    args = parser.parse_args()
    hands = load_hand_models()
    renderer = pyrender.OffscreenRenderer(256, 256)
    rows = []
    for r, kind in enumerate(KINDS):
        tiles = []
        for i in range(args.per_kind):
            s = sample_scene(np.random.default_rng(1000 * r + i), hands, kind=kind)
            img = Image.fromarray(render(s, renderer)).resize((TILE, TILE), Image.LANCZOS)
            ImageDraw.Draw(img).text((4, 4), f"{kind}  {'contact' if s.contact else f'{s.min_distance * 1e3:.0f} mm'}",
                                     fill=(0, 0, 0))
            tiles.append(np.asarray(img))
        rows.append(np.concatenate(tiles, axis=1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate(rows, axis=0)).save(args.out, optimize=True)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
