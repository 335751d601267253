"""A contact sheet of samples: each image above the same image with the hand masks and 2D joints drawn."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from im2hands._io import atomic_write
from im2hands.data.sample import read_sample

_MASK_COLOURS = np.array([[0, 0, 0], [230, 60, 40], [40, 110, 240]], dtype=np.float32)  # bg, right, left


def overlay(sample: dict[str, np.ndarray]) -> np.ndarray:
    """(H, W, 3) uint8: the image with each hand's visible mask tinted (right red, left blue) and its 2D joints."""
    img = sample["image"].astype(np.float32)
    mask = sample["mask"]
    tint = _MASK_COLOURS[mask]
    alpha = np.where(mask > 0, 0.45, 0.0)[..., None]
    out = Image.fromarray(np.clip(img * (1 - alpha) + tint * alpha, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(out)
    for side, colour in (("right", (255, 230, 0)), ("left", (0, 255, 255))):
        for u, v in sample[f"{side}_joints_2d"]:
            draw.ellipse((u - 1.5, v - 1.5, u + 1.5, v + 1.5), fill=colour)
    return np.asarray(out)


def save_gallery(paths: list[Path], out: str | os.PathLike, *, columns: int = 8) -> None:
    """Write a PNG with, per sample, the image and below it the mask/joint overlay (atomic write)."""
    if not paths:
        raise ValueError("paths: expected at least one sample file")
    tiles = []
    for p in paths:
        s = read_sample(p, keys=("image", "mask", "right_joints_2d", "left_joints_2d"))
        tiles.append(np.concatenate([s["image"], overlay(s)], axis=0))
    h, w, _ = tiles[0].shape
    columns = min(columns, len(tiles))
    rows = -(-len(tiles) // columns)
    sheet = np.full((rows * (h + 4), columns * (w + 4), 3), 255, dtype=np.uint8)
    for k, t in enumerate(tiles):
        r, c = divmod(k, columns)
        sheet[r * (h + 4): r * (h + 4) + h, c * (w + 4): c * (w + 4) + w] = t
    out = Path(out)
    atomic_write(out, lambda f: Image.fromarray(sheet).save(f, format="PNG"))
