"""The frames module: query <-> world <-> camera maps and the left mirror (docs/CONVENTIONS.md)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from im2hands.hand import frames
from im2hands.hand.camera import Camera, look_at
from im2hands.hand.canonical import canonicalise


def _joints(b: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    from im2hands.hand.openhand import open_hand_layer

    layer = open_hand_layer("right", dtype=torch.float64)
    pose = 0.3 * torch.randn(b, 45, generator=g, dtype=torch.float64)
    orient = torch.randn(b, 3, generator=g, dtype=torch.float64)
    out = layer(global_orient=orient, hand_pose=pose, transl=0.1 * torch.randn(b, 3, generator=g, dtype=torch.float64))
    is_right = torch.arange(b) % 2 == 0
    joints = torch.where(is_right.view(-1, 1, 1), out.joints, frames.mirror_x(out.joints))
    return joints, is_right


def test_mirror_is_an_involution():
    x = torch.randn(5, 21, 3)
    torch.testing.assert_close(frames.mirror_x(frames.mirror_x(x)), x)
    assert torch.equal(frames.mirror_x(x)[..., 1:], x[..., 1:])
    a = np.random.default_rng(0).normal(size=(4, 3))
    np.testing.assert_array_equal(frames.mirror_x(a), a * [-1, 1, 1])


def test_side_mirror_matches_sides():
    m = frames.side_mirror(torch.tensor([True, False]), 2, dtype=torch.float64)
    assert m.shape == (2, 1, 3) and m[0, 0, 0] == 1 and m[1, 0, 0] == -1
    with pytest.raises(ValueError, match="side"):
        frames.side_mirror("up", 1, dtype=torch.float32)


def test_query_maps_round_trip_and_matrix_form():
    joints, is_right = _joints(4, 1)
    c = canonicalise(joints, is_right, official_quirks=False)
    q = frames.points_to_query(joints, c.wrist, c.root_rot_mat, is_right)
    torch.testing.assert_close(frames.query_to_points(q, c.wrist, c.root_rot_mat, is_right), joints,
                               atol=1e-12, rtol=0)
    m = frames.world_to_query_matrix(c.wrist, c.root_rot_mat, is_right)
    hom = torch.cat([joints, torch.ones_like(joints[..., :1])], -1)
    torch.testing.assert_close(torch.einsum("bij,bnj->bni", m, hom)[..., :3], q, atol=1e-12, rtol=0)
    assert torch.equal(torch.linalg.det(m[:, :3, :3]) > 0, is_right)


def test_query_to_camera_is_world_to_camera_of_query_to_points():
    joints, is_right = _joints(2, 2)
    c = canonicalise(joints, is_right)
    R, T = look_at([0.3, -0.2, -0.5], [0, 0, 0], [0, -1, 0])
    cam = Camera(K=torch.eye(3).expand(2, 3, 3), R=torch.from_numpy(R).expand(2, 3, 3),
                 T=torch.from_numpy(T).expand(2, 3))
    p = 0.5 * torch.rand(2, 7, 3) - 0.25
    got = frames.query_to_camera(p, c.wrist, c.root_rot_mat, is_right, cam.R, cam.T)
    world = frames.query_to_points(p.double(), c.wrist, c.root_rot_mat.double(), is_right)
    torch.testing.assert_close(got.double(), cam.to_camera(world), atol=1e-6, rtol=0)
    z = frames.root_to_camera_z(c.wrist, cam.R, cam.T)
    torch.testing.assert_close(z.double(), cam.to_camera(c.wrist.unsqueeze(1))[:, 0, 2], atol=1e-6, rtol=0)


def test_query_to_query_maps_the_same_physical_points():
    joints, _ = _joints(2, 3)
    right = canonicalise(joints[:1], "right", official_quirks=False)
    left = canonicalise(frames.mirror_x(joints[1:]), "left", official_quirks=False)
    p = 0.5 * torch.rand(1, 9, 3) - 0.25
    moved = frames.query_to_query(p, right.wrist, right.root_rot_mat, "right", left.wrist, left.root_rot_mat, "left")
    a = frames.query_to_points(p.double(), right.wrist, right.root_rot_mat, "right")
    b = frames.query_to_points(moved.double(), left.wrist, left.root_rot_mat, "left")
    torch.testing.assert_close(a, b, atol=1e-6, rtol=0)


def test_camera_numpy_and_torch_agree_and_look_at_convention():
    R, T = look_at([0.0, 0.0, -1.0], [0.0, 0.0, 0.0], [0.0, -1.0, 0.0])
    np.testing.assert_allclose(R, np.eye(3), atol=1e-12)   # looking along +z, y down
    K = np.array([[200.0, 0, 127.5], [0, 200.0, 127.5], [0, 0, 1]])
    one = Camera(K=K, R=R, T=T)
    batch = Camera(K=torch.from_numpy(K)[None], R=torch.from_numpy(R)[None], T=torch.from_numpy(T)[None])
    x = np.array([[0.01, 0.02, 0.03], [0.0, 0.0, 0.0]])
    np.testing.assert_allclose(batch.project(torch.from_numpy(x)[None])[0].numpy(), one.project(x), atol=1e-12)
    np.testing.assert_allclose(one.project(x)[1], [127.5, 127.5], atol=1e-12)
    np.testing.assert_allclose(one.centre_world, [0, 0, -1], atol=1e-12)
    np.testing.assert_allclose(batch.centre_world[0].numpy(), [0, 0, -1], atol=1e-12)
    with pytest.raises(ValueError, match=r"camera.K: expected shape"):
        Camera(K=K[:2], R=R, T=T)
