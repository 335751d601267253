"""Reconstructed meshes drawn over the network input: per-image overlays and a contact sheet.

Right hand red, left hand blue (the colours of the sample gallery), rendered with the crop's intrinsics so
that a mesh lands where the image shows the hand.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from im2hands._io import atomic_write

COLOURS = {"right": np.array([0.90, 0.30, 0.22]), "left": np.array([0.20, 0.45, 0.92])}
"""sRGB in [0, 1] of each hand in overlays."""


def overlay_meshes(image: np.ndarray, K: np.ndarray, meshes: dict[str, tuple[np.ndarray, np.ndarray]], *,
                   alpha: float = 0.65) -> np.ndarray:
    """(S, S, 3) uint8: `image` with both hands' meshes rendered over it (shaded, blended by `alpha`).

    Args:
        image: (S, S, 3) uint8 RGB, the image the meshes were reconstructed from (the 256 x 256 crop).
        K: (3, 3) its intrinsics, pixels (OpenCV).
        meshes: {"right", "left"}: (vertices (V, 3) camera frame metres, faces (F, 3)); an empty mesh is skipped.
        alpha: opacity of the hands.
    """
    from im2hands.viz.render import Appearance, HandRenderer, Light

    image = np.asarray(image)
    if image.ndim != 3 or image.shape[0] != image.shape[1] or image.shape[2] != 3:
        raise ValueError(f"image: expected a square (S, S, 3) RGB image, got {image.shape}")
    if not 0 < alpha <= 1:
        raise ValueError(f"alpha: expected a value in (0, 1], got {alpha}")
    present = {s: m for s, m in meshes.items() if len(m[1]) and np.all(np.asarray(m[0])[:, 2] > 0)}
    if not present:
        return image.copy()
    # the renderer draws both hands; a missing one becomes a degenerate triangle far behind the other
    far = max(float(np.asarray(m[0])[:, 2].max()) for m in present.values()) * 1.5
    tiny = (np.array([[0.0, 0.0, far], [1e-6, 0.0, far], [0.0, 1e-6, far]]), np.array([[0, 1, 2]]))
    full = {s: present.get(s, tiny) for s in ("right", "left")}
    look = Appearance(skin_right=COLOURS["right"], skin_left=COLOURS["left"], roughness=0.6,
                      lights=(Light(np.array([0.3, 0.5, 1.0]) / np.linalg.norm([0.3, 0.5, 1.0]), np.ones(3), 3.0),),
                      ambient=np.full(3, 0.35), background=np.zeros_like(image))
    with HandRenderer(size=image.shape[0]) as renderer:
        r = renderer.render(full, K, look)
    covered = np.zeros(image.shape[:2], bool)
    for side in present:
        covered |= r.labels == (1 if side == "right" else 2)
    a = np.where(covered, alpha, 0.0)[..., None]
    return np.clip(image * (1 - a) + r.rgb * a, 0, 255).astype(np.uint8)


def save_png(path: str | os.PathLike, image: np.ndarray) -> None:
    from PIL import Image

    atomic_write(Path(path), lambda f: Image.fromarray(np.asarray(image)).save(f, format="PNG"))


def contact_sheet(rows: list[list[np.ndarray]], *, labels: list[str] | None = None, gap: int = 4) -> np.ndarray:
    """Tiles (each (S, S, 3) uint8) laid out one row per entry of `rows`, white gaps; optional row labels
    drawn in the first tile."""
    from PIL import Image, ImageDraw

    if not rows or not rows[0]:
        raise ValueError("rows: expected at least one row of tiles")
    s = rows[0][0].shape[0]
    cols = max(len(r) for r in rows)
    sheet = np.full((len(rows) * (s + gap), cols * (s + gap), 3), 255, np.uint8)
    for i, row in enumerate(rows):
        for j, tile in enumerate(row):
            sheet[i * (s + gap): i * (s + gap) + s, j * (s + gap): j * (s + gap) + s] = tile
    if labels:
        img = Image.fromarray(sheet)
        draw = ImageDraw.Draw(img)
        for i, text in enumerate(labels):
            draw.text((4, i * (s + gap) + 4), text, fill=(255, 255, 0))
        sheet = np.asarray(img).copy()
    return sheet
