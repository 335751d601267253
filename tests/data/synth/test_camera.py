"""Cameras: OpenCV look-at, the normalised crop intrinsics, random viewpoints."""

import numpy as np
import pytest

from im2hands.data.synth.camera import Camera, crop_intrinsics, look_at, sample_camera


def test_look_at_is_an_opencv_camera():
    R, T = look_at(np.array([0.0, 0.0, -1.0]), np.zeros(3), np.array([0.0, 1.0, 0.0]))
    np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-12)
    assert np.isclose(np.linalg.det(R), 1.0)
    np.testing.assert_allclose(R @ np.zeros(3) + T, [0, 0, 1])  # target straight ahead, 1 m
    np.testing.assert_allclose(R @ [0, 1, 0], [0, -1, 0], atol=1e-12)  # world up is image up (-y)
    with pytest.raises(ValueError, match="up"):
        look_at(np.array([0.0, 0.0, -1.0]), np.zeros(3), np.array([0.0, 0.0, 1.0]))


def test_crop_intrinsics_centre_and_fill():
    rng = np.random.default_rng(0)
    pts = rng.normal(size=(500, 3)) * [0.05, 0.02, 0.03] + [0.1, -0.05, 0.6]
    K = crop_intrinsics(pts, size=256, fill=0.8)
    uv = pts @ K.T
    uv = uv[:, :2] / uv[:, 2:]
    lo, hi = uv.min(0), uv.max(0)
    np.testing.assert_allclose((lo + hi) / 2, [127.5, 127.5], atol=1e-9)
    np.testing.assert_allclose((hi - lo).max(), 0.8 * 256, atol=1e-9)
    assert K[0, 0] == K[1, 1]
    with pytest.raises(ValueError, match="in front"):
        crop_intrinsics(pts * [1, 1, -1])


def test_sampled_cameras_frame_the_points():
    rng = np.random.default_rng(1)
    pts = rng.uniform(-0.1, 0.1, (800, 3)) + [0.3, 0.2, -0.1]
    for _ in range(50):
        cam = sample_camera(rng, pts)
        assert isinstance(cam, Camera)
        cam_pts = cam.to_camera(pts)
        assert cam_pts[:, 2].min() > 0.1
        uv = cam.project(pts)
        lo, hi = uv.min(0), uv.max(0)
        np.testing.assert_allclose((lo + hi) / 2, [127.5, 127.5], atol=1e-6)
        np.testing.assert_allclose((hi - lo).max(), 204.8, atol=1e-6)
        np.testing.assert_allclose(cam.R @ cam.R.T, np.eye(3), atol=1e-12)
        np.testing.assert_allclose(cam.to_camera(cam.centre_world), 0, atol=1e-12)


def test_occlusion_views_look_along_the_axis_and_sampling_is_deterministic():
    pts = np.random.default_rng(2).uniform(-0.1, 0.1, (300, 3))
    axis = np.array([1.0, 2.0, -0.5]) / np.linalg.norm([1.0, 2.0, -0.5])
    for seed in range(40):
        cam = sample_camera(np.random.default_rng(seed), pts, occlusion_axis=axis, occlusion_prob=1.0)
        forward = cam.R[2]  # camera z axis in world coordinates
        assert abs(forward @ axis) >= np.cos(np.deg2rad(30.0)) - 1e-9
    a = sample_camera(np.random.default_rng(5), pts)
    b = sample_camera(np.random.default_rng(5), pts)
    np.testing.assert_array_equal(a.K, b.K)
    np.testing.assert_array_equal(a.R, b.R)
    with pytest.raises(ValueError, match="distance"):
        sample_camera(np.random.default_rng(0), pts, distance=(0.05, 0.1))
