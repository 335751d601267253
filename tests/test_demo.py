"""The ``im2hands demo`` command: two posed open hands, written as meshes and a rendered picture."""

from __future__ import annotations

import numpy as np
import trimesh
from PIL import Image

from im2hands.cli import main


def test_demo_writes_two_closed_hand_meshes_and_a_picture(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    right = trimesh.load(tmp_path / "right_hand.ply", process=False)
    left = trimesh.load(tmp_path / "left_hand.ply", process=False)
    for name, mesh in (("right_hand.ply", right), ("left_hand.ply", left)):
        assert str(tmp_path / name) in printed
        assert mesh.is_watertight and mesh.is_winding_consistent and mesh.volume > 0
        assert 0.0002 < mesh.volume < 0.0006  # an adult hand, m^3
    # the hands interact: close to each other but not interpenetrating
    assert right.contains(left.vertices).sum() == 0 and left.contains(right.vertices).sum() == 0
    gap = trimesh.proximity.closest_point(left, right.vertices)[1].min()
    assert gap < 0.01
    # the picture shows both hands (their two colours) on a white background
    img = np.asarray(Image.open(tmp_path / "clasp.png").convert("RGB")).astype(int)
    assert img.shape[0] >= 256 and img.shape[1] >= 512
    background = (img > 245).all(-1).mean()
    assert 0.2 < background < 0.95
    warm = ((img[..., 0] - img[..., 2]) > 30).mean()   # skin-coloured right hand
    cool = ((img[..., 2] - img[..., 0]) > 20).mean()   # bluish left hand
    assert warm > 0.03 and cool > 0.03, (warm, cool)
    assert str(tmp_path / "clasp.png") in printed
