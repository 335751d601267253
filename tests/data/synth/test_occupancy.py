"""Occupancy labels against exact geometry (sphere, box, overlapping boxes) and the sampling distribution."""

import numpy as np
import pytest
import trimesh

from im2hands.data.synth.occupancy import (
    OccupancyConfig,
    check_closed,
    inside_mesh,
    sample_occupancy,
    sample_surface,
)


def test_sphere_labels_match_exact_geometry():
    radius = 0.3
    mesh = trimesh.creation.icosphere(subdivisions=4, radius=radius)
    # The polyhedron lies between the inscribed radius (face planes) and the sphere: exact labels hold
    # outside that thin shell.
    r_in = np.abs(np.einsum("ij,ij->i", mesh.face_normals, mesh.triangles[:, 0])).min()
    rng = np.random.default_rng(0)
    q = rng.uniform(-0.5, 0.5, (20000, 3))
    near = rng.normal(size=(4000, 3))
    near = near / np.linalg.norm(near, axis=1, keepdims=True) * rng.uniform(r_in - 0.002, radius + 0.002, (4000, 1))
    q = np.concatenate([q, near])
    r = np.linalg.norm(q, axis=1)
    got = inside_mesh(mesh.vertices, mesh.faces, q)
    sure_in, sure_out = r < r_in - 1e-6, r > radius + 1e-6
    assert sure_in.sum() > 1000 and sure_out.sum() > 1000
    assert got[sure_in].all(), f"{(~got[sure_in]).sum()} inside points labelled outside"
    assert not got[sure_out].any(), f"{got[sure_out].sum()} outside points labelled inside"


def test_box_labels_exact_including_near_surface():
    extents = np.array([0.4, 0.2, 0.3])
    mesh = trimesh.creation.box(extents=extents)
    rng = np.random.default_rng(1)
    q = rng.uniform(-0.3, 0.3, (30000, 3))
    # plus points within 0.1 mm of the faces, on both sides
    face_pts, _ = sample_surface(rng, mesh.vertices, mesh.faces, 5000)
    q = np.concatenate([q, face_pts + rng.normal(0, 1e-4, face_pts.shape)])
    d = np.abs(q) - extents / 2  # > 0 on some axis: outside
    exact = (d < 0).all(axis=1)
    margin = np.abs(d).min(axis=1) > 1e-6
    got = inside_mesh(mesh.vertices, mesh.faces, q)
    np.testing.assert_array_equal(got[margin], exact[margin])


def test_self_intersecting_overlap_is_inside():
    # Two overlapping closed boxes concatenated (winding number 2 in the overlap, where ray parity fails).
    a = trimesh.creation.box(extents=(0.2, 0.2, 0.2))
    b = trimesh.creation.box(extents=(0.2, 0.2, 0.2))
    b.apply_translation((0.1, 0.0, 0.0))
    mesh = trimesh.util.concatenate([a, b])
    q = np.array([[0.05, 0.0, 0.0], [-0.05, 0.0, 0.0], [0.15, 0.01, 0.0], [0.25, 0.0, 0.0], [0.05, 0.15, 0.0]])
    np.testing.assert_array_equal(inside_mesh(mesh.vertices, mesh.faces, q), [True, True, True, False, False])


def test_sample_occupancy_distribution_and_labels():
    mesh = trimesh.creation.icosphere(subdivisions=3, radius=0.25)
    cfg = OccupancyConfig(num_points=4000, num_iou_points=1000, num_surface_points=500)
    s = sample_occupancy(np.random.default_rng(2), mesh.vertices, mesh.faces, cfg)
    assert s.points.shape == (4000, 3) and s.occupancy.shape == (4000,)
    assert s.points_iou.shape == (1000, 3) and s.surface_points.shape == (500, 3)
    # stored precision: points are float16-representable, so labels hold for the stored values
    np.testing.assert_array_equal(s.points, s.points.astype(np.float16).astype(np.float32))
    uniform, near = s.points[:2000], s.points[2000:]
    assert np.abs(uniform).max() <= 0.55 and np.abs(uniform).max() > 0.5
    dist = np.abs(np.linalg.norm(near, axis=1) - 0.25)
    assert 0.005 < np.median(dist) < 0.01  # |N(0, 0.01)| median = 0.0067 (plus faceting)
    r = np.linalg.norm(s.points, axis=1)
    r_in = np.abs(np.einsum("ij,ij->i", mesh.face_normals, mesh.triangles[:, 0])).min()
    sure = (r < r_in - 1e-6) | (r > 0.25 + 1e-6)  # outside the faceting shell: labels are exact
    assert sure.mean() > 0.9
    np.testing.assert_array_equal(s.occupancy[sure], r[sure] < 0.25)
    np.testing.assert_allclose(np.linalg.norm(s.surface_normals, axis=1), 1.0, atol=1e-5)
    radial = s.surface_points / np.linalg.norm(s.surface_points, axis=1, keepdims=True)
    assert (np.einsum("ij,ij->i", radial, s.surface_normals) > 0.95).all()  # outward
    # uniform labels of the box: the inside share approximates the volume ratio 4/3 pi r^3 / 1.1^3
    assert abs(s.occupancy_iou.mean() - 4 / 3 * np.pi * 0.25**3 / 1.1**3) < 0.03


def test_sampling_is_deterministic():
    mesh = trimesh.creation.icosphere(subdivisions=2, radius=0.2)
    cfg = OccupancyConfig(num_points=500, num_iou_points=100, num_surface_points=100)
    a = sample_occupancy(np.random.default_rng(5), mesh.vertices, mesh.faces, cfg)
    b = sample_occupancy(np.random.default_rng(5), mesh.vertices, mesh.faces, cfg)
    for k in ("points", "occupancy", "points_iou", "surface_points", "surface_normals"):
        np.testing.assert_array_equal(getattr(a, k), getattr(b, k))


def test_bad_input_raises():
    with pytest.raises(ValueError, match="points"):
        inside_mesh(np.zeros((3, 3)), np.array([[0, 1, 2]]), np.zeros((4, 2)))
    with pytest.raises(ValueError, match="faces"):
        inside_mesh(np.zeros((3, 3)), np.array([[0, 1, 5]]), np.zeros((4, 3)))
    with pytest.raises(ValueError, match="num_points"):
        OccupancyConfig(num_points=0)


def test_bounding_box_shortcut_matches_full_winding_number():
    import point_cloud_utils as pcu

    mesh = trimesh.creation.capsule(height=0.2, radius=0.05)
    q = np.random.default_rng(6).uniform(-0.3, 0.3, (5000, 3))
    full = pcu.triangle_soup_fast_winding_number(mesh.vertices, mesh.faces.astype(np.int64), q) > 0.5
    np.testing.assert_array_equal(inside_mesh(mesh.vertices, mesh.faces, q), full)


def test_check_closed():
    box = trimesh.creation.box()
    check_closed(box.faces, "box")
    with pytest.raises(ValueError, match="open: mesh is not closed"):
        check_closed(box.faces[1:], "open")
    flipped = box.faces.copy()
    flipped[0] = flipped[0, ::-1]
    with pytest.raises(ValueError, match="flip: mesh is not"):
        check_closed(flipped, "flip")
