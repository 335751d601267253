"""Known-answer tests of the evaluation metrics: offset cubes, spheres, scaled and translated skeletons.

Sampling tolerances are derived, not guessed: IoU and volumes use 5 binomial standard errors; Chamfer
uses the expected nearest-neighbour distance to a planar Poisson set of the same density.
"""

import dataclasses

import numpy as np
import pytest
import trimesh
from scipy.spatial.transform import Rotation
from scipy.special import erfcx

from im2hands.eval.metrics import (
    ROOT_JOINT, WRIST_JOINT, EvalConfig, HandGeometry, Mesh, TwoHands, as_mesh, chamfer, contact_iou,
    evaluate_hand, evaluate_sample, gt_from_sample, iou, iou_at_points, mesh_contains, mpjpe, penetration, sample_surface,
)

MM = 1e-3


def cube(size: float, offset=(0.0, 0.0, 0.0), rot: np.ndarray | None = None) -> trimesh.Trimesh:
    """Axis-aligned cube of edge `size` with its min corner at `offset`, then rotated about the origin."""
    m = trimesh.creation.box(extents=(size,) * 3)
    m.apply_translation(np.asarray(offset) + size / 2)
    if rot is not None:
        t = np.eye(4)
        t[:3, :3] = rot
        m.apply_transform(t)
    return m


def sphere(radius: float, centre=(0.0, 0.0, 0.0), subdivisions: int = 4) -> trimesh.Trimesh:
    m = trimesh.creation.icosphere(subdivisions=subdivisions, radius=radius)
    m.apply_translation(centre)
    return m


ROT = Rotation.from_euler("xyz", [20, 35, 50], degrees=True).as_matrix()


def expected_nn_distance(d: float, density: float) -> float:
    """E[sqrt(d^2 + rho^2)]: distance from a point to the nearest of a planar Poisson set of `density`
    (points per m^2) lying in a parallel plane at distance `d` (P(rho > x) = exp(-pi density x^2))."""
    a = np.sqrt(np.pi * density)
    return d + erfcx(d * a) * np.sqrt(np.pi) / (2 * a)


def skeleton(seed: int = 0) -> np.ndarray:
    """(21, 3) a random hand-sized skeleton, metres (joints within ~10 cm)."""
    return np.random.default_rng(seed).normal(scale=0.04, size=(21, 3)) + np.array([0.0, 0.0, 0.5])


# ------------------------------------------------------------------------------------------ inputs


def test_as_mesh_accepts_trimesh_pair_and_mesh():
    m = cube(0.02)
    a = as_mesh(m)
    b = as_mesh((m.vertices, m.faces))
    c = as_mesh(Mesh(m.vertices, m.faces))
    for x in (a, b, c):
        assert x.vertices.dtype == np.float64 and x.faces.dtype == np.int64
        np.testing.assert_array_equal(x.faces, m.faces)


@pytest.mark.parametrize("make, match", [
    (lambda m: (m.vertices[:, :2], m.faces), "pred: vertices must have shape"),
    (lambda m: (m.vertices, m.faces[:, :2]), "pred: faces must have shape"),
    (lambda m: (np.where(np.arange(len(m.vertices))[:, None] == 3, np.nan, m.vertices), m.faces), "pred: vertices contain NaN"),
    (lambda m: (m.vertices, m.faces + 100), r"pred: face indices must lie in \[0, 8\)"),
    (lambda m: (m.vertices, m.faces.astype(float)), "pred: faces must be integer"),
    (lambda m: (np.zeros((0, 3)), np.zeros((0, 3), int)), "pred: empty mesh"),
    (lambda m: (m.vertices, np.zeros((0, 3), int)), "pred: empty mesh"),
    (lambda m: (np.zeros((3, 3)), np.array([[0, 1, 2]])), "pred: the mesh has zero surface area"),
])
def test_bad_mesh_raises_value_error_naming_argument(make, match):
    m = cube(0.02)
    with pytest.raises(ValueError, match=match):
        iou(make(m), m, n_points=100)
    with pytest.raises(ValueError, match=match):
        chamfer(make(m), m, n_points=100)


def test_bad_arguments_raise_value_error_naming_them():
    m = cube(0.02)
    with pytest.raises(ValueError, match="gt: empty mesh"):
        iou(m, (np.zeros((0, 3)), np.zeros((0, 3), int)))
    with pytest.raises(ValueError, match="mesh_b: vertices contain NaN"):
        penetration(m, (m.vertices * np.nan, m.faces))
    with pytest.raises(ValueError, match="points: expected shape"):
        mesh_contains(m, np.zeros((5, 2)))
    with pytest.raises(ValueError, match="points: contains NaN"):
        mesh_contains(m, np.full((5, 3), np.nan))
    with pytest.raises(ValueError, match="n_points: expected a positive integer"):
        iou(m, m, n_points=0)
    with pytest.raises(ValueError, match="box: must hold both meshes"):
        iou(m, m, box=(np.zeros(3), np.full(3, 0.01)))
    with pytest.raises(ValueError, match="occupancy: expected shape"):
        iou_at_points(m, np.zeros((5, 3)), np.zeros(4, bool))
    with pytest.raises(ValueError, match="gt: expected shape"):
        chamfer(m, np.zeros((10, 2)))
    with pytest.raises(ValueError, match="box: expected 'tight' or 'bbox'"):
        penetration(m, m, box="loose")
    with pytest.raises(TypeError, match="mesh: expected a Mesh"):
        mesh_contains("cube", np.zeros((1, 3)))


def test_bad_joints_raise_value_error_naming_argument():
    j = skeleton()
    with pytest.raises(ValueError, match=r"joints_pred: expected shape \(..., 21, 3\)"):
        mpjpe(j[:20], j)
    with pytest.raises(ValueError, match="joints_gt: contains NaN"):
        mpjpe(j, np.where(np.arange(21)[:, None] == 4, np.nan, j))
    with pytest.raises(ValueError, match="shapes differ"):
        mpjpe(j[None].repeat(2, 0), j)
    with pytest.raises(ValueError, match="protocol"):
        mpjpe(j, j, protocol="root")
    flat = j.copy()
    flat[ROOT_JOINT] = flat[WRIST_JOINT]
    with pytest.raises(ValueError, match="joints_pred: the wrist and middle MCP coincide"):
        mpjpe(flat, j)
    with pytest.raises(ValueError, match=r"joints: expected shape \(21, 3\)"):
        HandGeometry(cube(0.02), j[:5])


# ------------------------------------------------------------------------------------------ inside test and sampling


def test_mesh_contains_matches_analytic_cube_and_counts_overlaps_as_inside():
    rot_cube = cube(0.02, rot=ROT)
    q = np.random.default_rng(0).uniform(-0.03, 0.03, size=(20000, 3))
    local = q @ ROT                                               # back to the axis-aligned frame
    truth = ((local > 0) & (local < 0.02)).all(axis=1)
    np.testing.assert_array_equal(mesh_contains(rot_cube, q), truth)
    # two overlapping cubes as one self-intersecting soup: winding number 2 in the overlap is inside
    a, b = cube(0.02), cube(0.02, offset=(0.005, 0, 0))
    soup = trimesh.util.concatenate([a, b])
    truth = ((q > [0, 0, 0]) & (q < [0.025, 0.02, 0.02])).all(axis=1)
    np.testing.assert_array_equal(mesh_contains(soup, q), truth)


def test_sample_surface_is_on_the_surface_and_area_weighted():
    box = trimesh.creation.box(extents=(0.01, 0.02, 0.03))
    p = sample_surface(box, 60000, seed=1)
    half = np.array([0.005, 0.01, 0.015])
    on_face = np.isclose(np.abs(p), half, atol=1e-12, rtol=0)
    assert on_face.any(axis=1).all() and (np.abs(p) <= half + 1e-12).all()
    # share of points on each pair of faces = its area share
    areas = np.array([0.02 * 0.03, 0.01 * 0.03, 0.01 * 0.02])
    share = areas / areas.sum()
    got = on_face.mean(axis=0)
    sigma = np.sqrt(share * (1 - share) / len(p))
    assert (np.abs(got - share) < 5 * sigma).all(), (got, share)


# ------------------------------------------------------------------------------------------ IoU


@pytest.mark.parametrize("size, offset, expected", [(1.0, 0.5, 1 / 3), (0.02, 0.005, 0.6)])
def test_iou_of_offset_cubes(size, offset, expected):
    r = iou(cube(size), cube(size, offset=(offset, 0, 0)), seed=0)
    sigma = np.sqrt(expected * (1 - expected) / r.n_union)
    assert abs(r.iou - expected) < 5 * sigma, (r, expected)
    assert r.standard_error == pytest.approx(sigma, rel=0.05)


def test_iou_of_rotated_offset_cubes_with_explicit_box():
    a, b = cube(0.02, rot=ROT), cube(0.02, offset=(0.005, 0, 0), rot=ROT)
    r = iou(a, b, box=(np.full(3, -0.05), np.full(3, 0.05)), seed=3)
    sigma = np.sqrt(0.6 * 0.4 / r.n_union)
    assert abs(r.iou - 0.6) < 5 * sigma, r


def test_iou_of_sphere_with_itself_is_one():
    s = sphere(0.05)
    r = iou(s, s)
    assert r.iou == 1.0 and r.standard_error == 0.0 and r.n_union > 0


def test_iou_at_points_against_analytic_labels():
    q = np.random.default_rng(0).uniform(-0.01, 0.04, size=(50000, 3))
    occ_gt = ((q > [0.005, 0, 0]) & (q < [0.025, 0.02, 0.02])).all(axis=1)
    r = iou_at_points(cube(0.02), q, occ_gt)
    inside_a = ((q > 0) & (q < 0.02)).all(axis=1)
    assert r.iou == pytest.approx((inside_a & occ_gt).sum() / (inside_a | occ_gt).sum(), abs=0)
    assert abs(r.iou - 0.6) < 5 * np.sqrt(0.24 / r.n_union)


def test_iou_of_disjoint_meshes_is_zero():
    r = iou(cube(0.02), cube(0.02, offset=(0.05, 0, 0)))
    assert r.iou == 0.0


# ------------------------------------------------------------------------------------------ Chamfer


def test_chamfer_of_sphere_with_itself_is_the_sampling_floor():
    s = sphere(0.05)
    r = chamfer(s, s, n_points=100_000, seed=0)
    floor = expected_nn_distance(0.0, 100_000 / s.area) / MM    # 0.5 sqrt(A / n) = 0.28 mm
    assert floor == pytest.approx(0.5 * np.sqrt(s.area / 1e5) / MM)
    for x in (r.chamfer_l1_mm, r.accuracy_mm, r.completeness_mm):
        assert x == pytest.approx(floor, rel=0.02), (r, floor)
    assert r.chamfer_l1_mm == pytest.approx(0.5 * (r.accuracy_mm + r.completeness_mm))


@pytest.mark.parametrize("d", [0.002, 0.005])
def test_chamfer_of_concentric_spheres_is_the_radius_gap(d):
    rad, n = 0.05, 100_000
    inner = sphere(rad)
    outer = inner.copy()
    outer.apply_scale((rad + d) / rad)
    # the facets of the scaled polyhedra are (s - 1) h apart, h = a facet plane's distance to the centre
    h = np.einsum("ij,ij->i", inner.triangles_center, inner.face_normals)
    gap = d * np.sum(h * inner.area_faces) / inner.area / rad
    acc_expected = expected_nn_distance(gap, n / outer.area) / MM
    comp_expected = expected_nn_distance(gap, n / inner.area) / MM
    r = chamfer(inner, outer, n_points=n, seed=0)
    assert r.accuracy_mm == pytest.approx(acc_expected, abs=0.005), r
    assert r.completeness_mm == pytest.approx(comp_expected, abs=0.005), r
    assert r.chamfer_l1_mm == pytest.approx(d / MM, rel=0.02)


def test_chamfer_against_ground_truth_points():
    rad, d = 0.05, 0.003
    inner, outer = sphere(rad), sphere(rad + d)
    pts = sample_surface(outer, 100_000, seed=7)
    r = chamfer(inner, pts, seed=0)
    assert r.chamfer_l1_mm == pytest.approx(d / MM, rel=0.03), r


# ------------------------------------------------------------------------------------------ MPJPE


def slow_mpjpe(jp: np.ndarray, jg: np.ndarray, protocol: str) -> float:
    """Reference: one skeleton, written joint by joint."""
    if protocol == "intaghand":
        s = np.linalg.norm(jg[9] - jg[0]) / np.linalg.norm(jp[9] - jp[0])
        errs = [np.linalg.norm((jp[j] - jp[9]) * s - (jg[j] - jg[9])) for j in range(21)]
    else:
        errs = [np.linalg.norm((jp[j] - jp[0]) - (jg[j] - jg[0])) for j in range(21)]
    return float(np.mean(errs)) / MM


def test_mpjpe_root_is_middle_mcp_of_the_internal_order():
    from im2hands.hand.skeleton import INTERNAL

    assert INTERNAL[ROOT_JOINT] == "middle1" and INTERNAL[WRIST_JOINT] == "wrist"


def test_mpjpe_of_scaled_and_translated_skeleton():
    gt = skeleton()
    pred = 1.3 * gt + np.array([0.1, -0.2, 0.3])
    assert mpjpe(pred, gt, protocol="intaghand") == pytest.approx(0.0, abs=1e-9)
    # wrist-rooted, no scaling: joint j is off by 0.3 |gt_j - gt_wrist|
    expected = 0.3 * np.linalg.norm(gt - gt[0], axis=1).mean() / MM
    assert mpjpe(pred, gt, protocol="wrist") == pytest.approx(expected, rel=1e-12)


def test_mpjpe_of_translated_skeleton_is_zero():
    gt = skeleton()
    pred = gt + np.array([0.05, 0.02, -0.1])
    assert mpjpe(pred, gt) == pytest.approx(0.0, abs=1e-9)
    assert mpjpe(pred, gt, protocol="wrist") == pytest.approx(0.0, abs=1e-9)


def test_mpjpe_one_joint_moved():
    gt = skeleton()
    pred = gt.copy()
    pred[8] += [0.0, 0.021, 0.0]                                  # index tip 21 mm off
    assert mpjpe(pred, gt, protocol="wrist") == pytest.approx(1.0)  # 21 mm / 21 joints


def test_keypoint_errors_of_both_hands_under_both_protocols():
    from im2hands.eval.metrics import keypoint_errors

    j = skeleton()
    gt = TwoHands(right=HandGeometry(cube(0.02), j), left=HandGeometry(cube(0.02), j + 0.01))
    moved = j.copy()
    moved[8] += [0.0, 0.021, 0.0]                                 # index tip 21 mm off
    got = keypoint_errors({"right": 1.3 * j, "left": moved + 0.01}, gt)
    assert set(got) == {"right_mpjpe_mm", "right_mpjpe_wrist_mm", "left_mpjpe_mm", "left_mpjpe_wrist_mm"}
    assert got["right_mpjpe_mm"] == pytest.approx(0.0, abs=1e-9)   # scaled about the origin: removed
    assert got["right_mpjpe_wrist_mm"] == pytest.approx(mpjpe(1.3 * j, j, protocol="wrist"), rel=1e-12)
    assert got["left_mpjpe_wrist_mm"] == pytest.approx(1.0)         # 21 mm / 21 joints


@pytest.mark.parametrize("protocol", ["intaghand", "wrist"])
def test_mpjpe_batched_matches_slow_reference(protocol):
    rng = np.random.default_rng(5)
    gt = rng.normal(scale=0.04, size=(2, 3, 21, 3))
    pred = gt + rng.normal(scale=0.005, size=gt.shape)
    got = mpjpe(pred, gt, protocol=protocol)
    assert got.shape == (2, 3)
    want = np.array([[slow_mpjpe(pred[i, k], gt[i, k], protocol) for k in range(3)] for i in range(2)])
    diff = np.abs(got - want)
    assert diff.max() < 1e-9, f"max diff {diff.max()} at {np.unravel_index(diff.argmax(), diff.shape)}"


# ------------------------------------------------------------------------------------------ penetration


def test_penetration_of_offset_cubes():
    # 20 mm cubes offset by 5 mm: the overlap is a 15 x 20 x 20 mm box, 6000 mm^3, inradius 7.5 mm
    r = penetration(cube(0.02), cube(0.02, offset=(0.005, 0, 0)), seed=0)
    assert r.volume_mm3 == pytest.approx(6000.0, rel=1e-9)       # the box is the overlap itself
    assert r.volume_se_mm3 == pytest.approx(0.0, abs=1e-9)
    assert 7.5 - 0.01 < r.depth_mm <= 7.5 + 1e-9


@pytest.mark.parametrize("box", ["tight", "bbox"])
def test_penetration_of_rotated_offset_cubes(box):
    r = penetration(cube(0.02, rot=ROT), cube(0.02, offset=(0.005, 0, 0), rot=ROT), seed=1, box=box)
    assert r.volume_se_mm3 > 0
    assert abs(r.volume_mm3 - 6000.0) < 5 * r.volume_se_mm3, r
    assert 7.5 - 0.01 < r.depth_mm <= 7.5 + 1e-9, r


@pytest.mark.parametrize("box", ["tight", "bbox"])
def test_penetration_of_overlapping_spheres_is_the_lens(box):
    rad, d = 0.010, 0.015
    a, b = sphere(rad, subdivisions=5), sphere(rad, centre=(d, 0, 0), subdivisions=5)
    lens = np.pi * (4 * rad + d) * (2 * rad - d) ** 2 / 12 / MM**3     # 360 mm^3
    r = penetration(a, b, seed=2, box=box)
    facets = 0.01 * lens                                           # the icospheres hold 99.95 % of the balls
    assert abs(r.volume_mm3 - lens) < 5 * r.volume_se_mm3 + facets, (r, lens)
    assert r.depth_mm == pytest.approx((2 * rad - d) / 2 / MM, abs=0.01), r   # 2.5 mm, lens half-thickness


@pytest.mark.parametrize("box", ["tight", "bbox"])
def test_penetration_of_nested_spheres_is_the_inner_ball(box):
    # no vertex of either sphere is near the inside of the overlap: the tight region must fill its interior
    inner, outer = sphere(0.005, centre=(0.001, 0, 0)), sphere(0.010)
    r = penetration(inner, outer, seed=3, box=box)
    assert abs(r.volume_mm3 - inner.volume / MM**3) < 5 * r.volume_se_mm3, (r, inner.volume / MM**3)
    h = np.einsum("ij,ij->i", inner.triangles_center - [0.001, 0, 0], inner.face_normals).min()
    assert h / MM - 0.01 < r.depth_mm <= h / MM + 1e-9, (r, h / MM)   # inradius of the inner polyhedron


def test_penetration_of_separated_hands_is_zero():
    # bounding boxes overlap but the spheres are 1.2 mm apart
    a, b = sphere(0.010), sphere(0.010, centre=(0.015, 0.015, 0.0))
    for box in ("tight", "bbox"):
        r = penetration(a, b, box=box)
        assert (r.volume_mm3, r.volume_se_mm3, r.depth_mm, r.n_inside) == (0.0, 0.0, 0.0, 0)
    r = penetration(cube(0.02), cube(0.02, offset=(0.021, 0, 0)))
    assert (r.volume_mm3, r.depth_mm) == (0.0, 0.0)


# ------------------------------------------------------------------------------------------ determinism


def test_same_seed_same_numbers_other_seed_other_numbers():
    a, b = cube(0.02, rot=ROT), cube(0.02, offset=(0.005, 0, 0), rot=ROT)
    assert iou(a, b, seed=4) == iou(a, b, seed=4)
    assert iou(a, b, seed=4) != iou(a, b, seed=5)
    assert chamfer(a, b, n_points=5000, seed=4) == chamfer(a, b, n_points=5000, seed=4)
    assert chamfer(a, b, n_points=5000, seed=4) != chamfer(a, b, n_points=5000, seed=5)
    assert penetration(a, b, seed=4) == penetration(a, b, seed=4)
    assert penetration(a, b, seed=4) != penetration(a, b, seed=5)
    np.testing.assert_array_equal(sample_surface(a, 100, seed=np.random.default_rng(9)), sample_surface(a, 100, seed=9))


# ------------------------------------------------------------------------------------------ per-hand and per-sample


SMALL = EvalConfig(iou_points=20_000, chamfer_points=20_000, penetration_points=20_000)


def test_evaluate_hand_of_ground_truth_itself():
    s = sphere(0.03)
    gt = HandGeometry(s, skeleton())
    m = evaluate_hand(gt, gt, config=SMALL)
    assert m.iou == 1.0 and m.mpjpe_mm == pytest.approx(0, abs=1e-9) and m.mpjpe_wrist_mm == pytest.approx(0, abs=1e-9)
    assert m.chamfer_l1_mm == pytest.approx(0.5 * np.sqrt(s.area / 20_000) / MM, rel=0.05)


def test_evaluate_sample_right_left_mean_and_pair():
    j = skeleton()
    gt = TwoHands(right=HandGeometry(cube(0.02), j), left=HandGeometry(cube(0.02, offset=(0.005, 0, 0)), j + 0.01))
    pred = TwoHands(right=HandGeometry(cube(0.02), 1.3 * j),
                    left=HandGeometry(cube(0.02, offset=(0.005, 0, 0)), j + 0.01))
    m = evaluate_sample(pred, gt, config=SMALL, seed=0)
    assert m.right.iou == 1.0 and m.left.iou == 1.0
    assert m.right.mpjpe_mm == pytest.approx(0, abs=1e-9)
    wrist = 0.3 * np.linalg.norm(j - j[0], axis=1).mean() / MM
    assert m.right.mpjpe_wrist_mm == pytest.approx(wrist) and m.left.mpjpe_wrist_mm == pytest.approx(0, abs=1e-9)
    assert m.mean.mpjpe_wrist_mm == pytest.approx(wrist / 2)
    for f in dataclasses.fields(m.mean):
        assert getattr(m.mean, f.name) == pytest.approx(0.5 * (getattr(m.right, f.name) + getattr(m.left, f.name)))
    assert m.pair.penetration_volume_mm3 == pytest.approx(6000.0)
    assert m.pair.penetration_depth_mm == pytest.approx(7.5, abs=0.01)
    assert evaluate_sample(pred, gt, config=SMALL, seed=0) == m
    with pytest.raises(TypeError, match="pred: expected a TwoHands"):
        evaluate_sample(pred.right, gt)


def box(lo, hi) -> trimesh.Trimesh:
    lo, hi = np.asarray(lo, dtype=float), np.asarray(hi, dtype=float)
    m = trimesh.creation.box(extents=hi - lo)
    m.apply_translation((lo + hi) / 2)
    return m


def box_distance(points: np.ndarray, lo, hi) -> np.ndarray:
    """Exact distance from points to an axis-aligned box's surface (0 inside is not needed here: the test
    uses it for the zone, where inside points are at distance <= radius of their own box's surface)."""
    lo, hi = np.asarray(lo), np.asarray(hi)
    outside = np.linalg.norm(np.maximum(np.maximum(lo - points, points - hi), 0.0), axis=1)
    inside = np.minimum(points - lo, hi - points).min(axis=1)
    return np.where((points >= lo).all(1) & (points <= hi).all(1), inside, outside)


def test_contact_iou_known_answer_and_invariants():
    """Two 20 mm boxes 5 mm apart, zone radius 10 mm: a prediction wrong only far from the contact scores 1;
    one wrong inside it scores the IoU computed from exact box distances; apart hands have no zone."""
    a_lo, a_hi = np.zeros(3), np.full(3, 0.02)
    b_lo, b_hi = np.array([0.025, 0, 0]), np.array([0.045, 0.02, 0.02])
    gt_a, gt_b = box(a_lo, a_hi), box(b_lo, b_hi)
    r = 0.01
    same = contact_iou(gt_a, gt_b, gt_a, gt_b, radius=r, n_points=20_000, seed=0)
    assert same.iou == 1.0 and same.n_zone > 1000
    # wrong by 10 mm on the far side of hand a (> 25 mm from b): outside the zone
    far = box(a_lo - [0.01, 0, 0], a_hi)
    assert contact_iou(far, gt_b, gt_a, gt_b, radius=r, n_points=20_000, seed=0).iou == 1.0
    assert iou(far, gt_a, n_points=20_000).iou < 0.7
    # wrong by 3 mm towards b: inside the zone; the expected IoU from exact distances on 400,000 points
    near = box(a_lo, a_hi + [0.003, 0, 0])
    res = contact_iou(near, gt_b, gt_a, gt_b, radius=r, n_points=200_000, seed=1)
    lo, hi = np.maximum(a_lo, b_lo) - r, np.minimum(a_hi, b_hi) + r
    q = np.random.default_rng(2).uniform(lo, hi, size=(400_000, 3))
    z = q[(box_distance(q, a_lo, a_hi) <= r) & (box_distance(q, b_lo, b_hi) <= r)]
    in_a, in_b = (z >= a_lo).all(1) & (z <= a_hi).all(1), (z >= b_lo).all(1) & (z <= b_hi).all(1)
    in_near = (z >= a_lo).all(1) & (z <= a_hi + [0.003, 0, 0]).all(1)
    expected = ((in_near & in_a).sum() + in_b.sum()) / ((in_near | in_a).sum() + in_b.sum())
    se = np.sqrt(expected * (1 - expected) / ((in_near | in_a).sum() + in_b.sum()))
    assert 0.3 < expected < 0.95 and abs(res.iou - expected) < 5 * se + 0.005   # + the surface sampling's ~0.1 mm
    box_volume = np.prod(hi - lo) * 1e9
    assert res.zone_volume_mm3 == pytest.approx(box_volume * len(z) / len(q), rel=0.03)
    # hands more than 2 radii apart: no zone
    apart = contact_iou(gt_a, box(b_lo + [0.02, 0, 0], b_hi + [0.02, 0, 0]), gt_a,
                        box(b_lo + [0.02, 0, 0], b_hi + [0.02, 0, 0]), radius=r, n_points=1000)
    assert np.isnan(apart.iou) and apart.n_zone == 0
    with pytest.raises(ValueError, match="radius"):
        contact_iou(gt_a, gt_b, gt_a, gt_b, radius=0.0)
    # evaluate_sample reports it, and adding it left the other figures' draws unchanged
    j = skeleton()
    m = evaluate_sample(TwoHands(HandGeometry(near, j), HandGeometry(gt_b, j)),
                        TwoHands(HandGeometry(gt_a, j), HandGeometry(gt_b, j)), config=SMALL, seed=0)
    assert 0.3 < m.pair.contact_iou < 1.0
    rng_r = np.random.default_rng(0).spawn(3)[0]
    assert m.right == evaluate_hand(HandGeometry(near, j), HandGeometry(gt_a, j), config=SMALL, seed=rng_r)


def test_gt_from_sample_reads_the_sample_keys():
    s = {}
    for side, off in (("right", 0.0), ("left", 0.005)):
        c = cube(0.02, offset=(off, 0, 0))
        s[f"{side}_vertices"] = c.vertices.astype(np.float32)
        s[f"{side}_faces"] = c.faces.astype(np.int32)
        s[f"{side}_joints"] = skeleton().astype(np.float32)
    hands = gt_from_sample(s)
    assert hands.left.mesh.vertices.dtype == np.float64 and hands.left.joints.shape == (21, 3)
    del s["left_joints"]
    with pytest.raises(ValueError, match="left_joints"):
        gt_from_sample(s)
