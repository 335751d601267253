"""Tests of the open hand model's builder (``im2hands.hand.openhand_build``): the shipped files' geometry, skinning, shape and pose spaces, and their byte-identical regeneration."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse
import torch
import trimesh

from im2hands.hand import openhand as oh
from im2hands.hand import openhand_build as ohb
from im2hands.hand.mano import ManoLayer, mano_model_from_dict
from im2hands.hand.skeleton import MANO_KINTREE_PARENTS

from ._mesh_quality import local_pairs, self_intersecting_pairs
from ._openhand import layer as _layer
from ._openhand import pose as _pose



# ------------------------------------------------------------------------------------------ rest mesh

def test_rest_mesh_is_closed_single_outward_and_free_of_self_intersections(right, left):
    for m in (right, left):
        mesh = trimesh.Trimesh(m["v_template"], m["f"], process=False)
        assert mesh.is_watertight
        assert mesh.is_winding_consistent
        assert mesh.body_count == 1
        assert mesh.volume > 0  # outward normals
        assert mesh.euler_number == 2  # a sphere topologically
        assert len(self_intersecting_pairs(np.asarray(m["v_template"], np.float64), m["f"].astype(np.int64))) == 0


# ------------------------------------------------------------------------------------------ weights, regressor

def test_skinning_weights_are_a_smooth_partition_of_unity(right):
    w = np.asarray(right["weights"], np.float64)
    assert w.min() >= 0
    np.testing.assert_allclose(w.sum(1), 1.0, atol=1e-6)
    assert set(np.unique(w.argmax(1))) == set(range(16))  # every bone drives some vertices
    e = trimesh.Trimesh(right["v_template"], right["f"], process=False).edges_unique
    jump = np.abs(w[e[:, 0]] - w[e[:, 1]]).max()
    assert jump < 0.5, jump


def test_joint_regressor_is_convex_and_reproduces_the_designed_joints(right, skel):
    jr = right["J_regressor"].tocsr()
    assert jr.data.min() >= 0
    np.testing.assert_allclose(np.asarray(jr.sum(1)).ravel(), 1.0, atol=1e-9)
    joints = jr @ np.asarray(right["v_template"], np.float64)
    err = np.abs(joints - skel.joints).max()
    assert err < 1e-5, err  # float32 template; < 0.01 mm
    # rows use vertices near their joint
    v = np.asarray(right["v_template"], np.float64)
    for j in range(16):
        cols = jr.indices[jr.indptr[j]:jr.indptr[j + 1]]
        assert np.linalg.norm(v[cols] - skel.joints[j], axis=1).max() < 0.03


# ------------------------------------------------------------------------------------------ shape space

def _girth(v, skel, bones):
    """Mean distance (m) of the vertices dominated by `bones` from their bone axes (rest frame)."""
    axes = oh.bone_axes(skel)
    out = []
    for b in bones:
        sel = _GIRTH_SEL[b]
        rel = v[sel] - skel.joints[b]
        rad = rel - (rel @ axes[b])[:, None] * axes[b]
        out.append(np.linalg.norm(rad, axis=1).mean())
    return float(np.mean(out))


_GIRTH_SEL: dict[int, np.ndarray] = {}


def test_shape_components_have_their_documented_effects(right, skel, layer_r):
    w = np.asarray(right["weights"])
    for b in range(1, 16):
        _GIRTH_SEL[b] = np.flatnonzero(w[:, b] > 0.6)
        assert len(_GIRTH_SEL[b]) > 20
    fingers = [b for n in ("index", "middle", "ring", "pinky") for b in oh.FINGER_CHAINS[n]]
    thumb = list(oh.FINGER_CHAINS["thumb"])
    rest = _pose(layer_r)
    v0, j0, t0 = rest.vertices[0].numpy(), rest.kinematic_joints[0].numpy(), rest.joints[0, 16:].numpy()

    def effect(c):
        betas = np.zeros(10)
        betas[c] = 1.0
        out = _pose(layer_r, betas=betas)
        return out.vertices[0].numpy(), out.kinematic_joints[0].numpy(), out.joints[0, 16:].numpy()

    names = [n for n, _ in oh.SHAPE_COMPONENTS]
    # size: uniform 7 % about the wrist
    v, j, t = effect(names.index("size"))
    np.testing.assert_allclose(v, 1.07 * v0, atol=1e-6)
    np.testing.assert_allclose(j, 1.07 * j0, atol=1e-6)
    # finger thickness: girth +9 % (about 0.7 mm per unit), joints move < 0.3 mm, thumb unchanged
    v, j, t = effect(names.index("finger_thickness"))
    dg = _girth(v, skel, fingers) - _girth(v0, skel, fingers)
    assert 0.5e-3 < dg < 1.0e-3, dg
    assert np.abs(j - j0).max() < 0.3e-3, np.abs(j - j0).max()
    assert abs(_girth(v, skel, thumb) - _girth(v0, skel, thumb)) < 0.05e-3
    # thumb thickness: thumb girth grows, joints stay
    v, j, t = effect(names.index("thumb_thickness"))
    assert _girth(v, skel, thumb) - _girth(v0, skel, thumb) > 0.7e-3
    assert np.abs(j - j0).max() < 0.5e-3
    # finger length: middle finger (MCP -> tip) +6 %, palm joints fixed
    v, j, t = effect(names.index("finger_length"))
    mid0 = np.linalg.norm(t0[2] - j0[4])
    assert abs(np.linalg.norm(t[2] - j[4]) / mid0 - 1.06) < 0.01
    assert np.abs(j[[0, 1, 4, 7, 10, 13]] - j0[[0, 1, 4, 7, 10, 13]]).max() < 0.3e-3  # knuckles stay
    # palm width: index1 - pinky1 distance +6 %
    v, j, t = effect(names.index("palm_width"))
    assert abs((j[1, 2] - j[7, 2]) / (j0[1, 2] - j0[7, 2]) - 1.06) < 3e-3
    # palm length: wrist -> middle1 +5 %
    v, j, t = effect(names.index("palm_length"))
    assert abs(np.linalg.norm(j[4]) / np.linalg.norm(j0[4]) - 1.05) < 3e-3
    # palm thickness: dorsal-palmar extent of the palm vertices +10 %, joints stay
    v, j, t = effect(names.index("palm_thickness"))
    palm = w[:, 0] > 0.99
    ext = lambda x: np.ptp(x[palm, 1])  # noqa: E731
    assert 1.07 < ext(v) / ext(v0) < 1.11
    assert np.abs(j - j0).max() < 1e-3  # the thumb CMC (palm side) moves most
    # thumb length, pinky length, index/ring ratio
    v, j, t = effect(names.index("thumb_length"))
    assert abs(np.linalg.norm(t[0] - j[13]) / np.linalg.norm(t0[0] - j0[13]) - 1.07) < 0.01
    v, j, t = effect(names.index("pinky_length"))
    assert abs(np.linalg.norm(t[4] - j[7]) / np.linalg.norm(t0[4] - j0[7]) - 1.08) < 0.01
    v, j, t = effect(names.index("index_ring_ratio"))
    assert np.linalg.norm(t[1] - j[1]) / np.linalg.norm(t0[1] - j0[1]) > 1.04
    assert np.linalg.norm(t[3] - j[10]) / np.linalg.norm(t0[3] - j0[10]) < 0.96


def test_random_betas_give_plausible_adult_hands(layer_r):
    betas = np.random.default_rng(0).normal(0, 1, (1000, 10))
    out = _pose(layer_r, betas=betas)
    length = torch.linalg.norm(out.joints[:, 18] - out.joints[:, 0], dim=-1).numpy()  # middle tip - wrist
    lo, hi = np.percentile(length, [0.5, 99.5])
    assert 0.14 < lo and hi < 0.25, (lo, hi)
    assert 0.185 < np.median(length) < 0.20
    faces = layer_r.faces.numpy()
    vol = np.array([trimesh.Trimesh(v, faces, process=False).volume for v in out.vertices[:50].numpy()])
    assert vol.min() > 0
    for v in out.vertices[:20].numpy():  # shaped rest meshes stay free of self-intersections
        assert len(self_intersecting_pairs(v, faces)) == 0


# ------------------------------------------------------------------------------------------ poses

def test_random_anatomical_poses_keep_the_mesh_clean(right, skel, layer_r):
    rng = np.random.default_rng(0)
    poses = ohb.sample_anatomical_poses(skel, 300, rng)
    verts = _pose(layer_r, poses).vertices.numpy()
    f = right["f"].astype(np.int64)
    rest = trimesh.Trimesh(np.asarray(right["v_template"], np.float64), f, process=False)
    vol = np.array([trimesh.Trimesh(v, f, process=False).volume for v in verts]) / rest.volume
    assert 0.96 < vol.min() and vol.max() < 1.03 and abs(vol.mean() - 1) < 0.01, (vol.min(), vol.mean(), vol.max())
    tri = verts[:, f]
    area = 0.5 * np.linalg.norm(np.cross(tri[:, :, 1] - tri[:, :, 0], tri[:, :, 2] - tri[:, :, 0]), axis=-1)
    degenerate = (area < 0.05 * rest.area_faces).mean(1)
    assert degenerate.max() < 0.002, degenerate.max()
    # flipped faces: normal opposite to the rest normal carried by the face's dominant bone
    face_bone = right["weights"][f].sum(1).argmax(1)
    out = _pose(layer_r, poses[:60])
    rot = out.skinning_transforms[:, :, :3, :3].numpy()[:, face_bone]  # (60, F, 3, 3)
    n_rest = np.einsum("pfij,fj->pfi", rot, rest.face_normals)
    t = out.vertices.numpy()[:, f]
    n_pose = np.cross(t[:, :, 1] - t[:, :, 0], t[:, :, 2] - t[:, :, 0])
    flipped = (np.einsum("pfi,pfi->pf", n_pose, n_rest) < 0).mean(1)
    assert flipped.max() < 0.01, flipped.max()
    # local self-intersections (faces of one bone or of a parent/child pair) at the knuckles
    frac = []
    for v in verts[:40]:
        pairs = self_intersecting_pairs(v, f)
        loc = pairs[local_pairs(pairs, face_bone, MANO_KINTREE_PARENTS)]
        frac.append(len(np.unique(loc)) / len(f))
    frac = np.array(frac)
    assert frac.mean() < 0.008 and frac.max() < 0.025, (frac.mean(), frac.max())


def test_pose_correctives_bulge_bent_joints_by_one_minus_cos(right, skel):
    """posedirs move a vertex along its rest normal by bulge * min(4 w_p w_j, 1) * (1 - cos angle); with
    them the mean volume of random poses stays within 1 % of the rest volume, without them it drops."""
    v = np.asarray(right["v_template"], np.float64)
    f = right["f"].astype(np.int64)
    w = np.asarray(right["weights"], np.float64)
    normals = trimesh.Trimesh(v, f, process=False).vertex_normals
    angle = np.deg2rad(70.0)
    pose = np.zeros(45)
    pose[3 * 4 + 2] = angle  # middle2 (PIP) about +z
    feature = np.zeros(135)
    rot = trimesh.transformations.rotation_matrix(angle, [0, 0, 1])[:3, :3]
    feature[9 * 4:9 * 5] = (rot - np.eye(3)).ravel()
    offsets = np.einsum("vck,k->vc", np.asarray(right["posedirs"], np.float64), feature)
    s = np.minimum(4 * w[:, 4] * w[:, 5], 1.0)
    expected = ohb.CORRECTIVE_BULGE * s[:, None] * normals * (1 - np.cos(angle))
    np.testing.assert_allclose(offsets, expected, atol=2e-6)  # float16 storage
    assert np.linalg.norm(offsets, axis=1).max() > 0.5e-3
    # volume with and without correctives over random anatomical poses
    poses = ohb.sample_anatomical_poses(skel, 40, np.random.default_rng(5))
    model = dict(right)
    flat = ManoLayer(mano_model_from_dict(dict(model, posedirs=np.zeros_like(model["posedirs"])), "right"),
                     side="right", flat_hand_mean=True, dtype=torch.float64)
    rest_vol = trimesh.Trimesh(v, f, process=False).volume
    vols = []
    for layer in (_layer("right", flat_hand_mean=True), flat):
        verts = _pose(layer, poses).vertices.numpy()
        vols.append(np.mean([trimesh.Trimesh(x, f, process=False).volume for x in verts]) / rest_vol)
    assert abs(vols[0] - 1) < 0.01 and vols[1] < 0.98, vols


def test_thumb_can_oppose_every_fingertip(skel):
    """A batched random search inside the anatomical ranges finds, for each finger, a pose where the thumb
    pad meets the fingertip."""
    layer = ManoLayer(oh.openhand_dir(), side="right", flat_hand_mean=True, joint_order="mano")
    rng = np.random.default_rng(0)
    keys = ("cmc_flex", "cmc_abd", "cmc_twist", "mcp_flex", "ip_flex")
    lo = np.deg2rad([ohb.THUMB_RANGES[k][0] for k in keys] + [0.0] * 3)
    hi = np.deg2rad([ohb.THUMB_RANGES[k][1] for k in keys] + [90.0] * 3)
    t_ids = [j - 1 for j in oh.FINGER_CHAINS["thumb"]]
    for fi, finger in enumerate(("index", "middle", "ring", "pinky"), start=1):
        c = [j - 1 for j in oh.FINGER_CHAINS[finger]]

        def dist(x):
            n = len(x)
            flex, abd, twist = np.zeros((n, 15)), np.zeros((n, 15)), np.zeros((n, 15))
            flex[:, t_ids[0]], abd[:, t_ids[0]], twist[:, t_ids[0]] = x[:, 0], x[:, 1], x[:, 2]
            flex[:, t_ids[1]], flex[:, t_ids[2]] = x[:, 3], x[:, 4]
            flex[:, c] = x[:, 5:8]
            pose = torch.tensor(oh.pose_from_angles(skel, flex, abd, twist), dtype=torch.float32)
            with torch.no_grad():
                j = layer(hand_pose=pose).joints
            return torch.linalg.norm(j[:, 16] - j[:, 16 + fi], dim=-1).numpy()

        x = rng.uniform(lo, hi, (600, 8))
        best = x[np.argmin(dist(x))]
        for step in (0.2, 0.08, 0.03):  # local refinement around the best pose
            x = np.clip(best + rng.normal(0, step, (300, 8)), lo, hi)
            x[0] = best
            d = dist(x)
            best = x[np.argmin(d)]
        assert d.min() < 0.012, (finger, d.min())  # tip vertices within 12 mm: the pads touch


def test_pose_prior_is_orthonormal_and_mean_is_relaxed(right, skel):
    c = right["hands_components"]
    np.testing.assert_allclose(c @ c.T, np.eye(45), atol=1e-10)
    np.testing.assert_allclose(right["hands_mean"], ohb.relaxed_pose(skel), atol=1e-12)
    # ordered by variance on fresh samples; the first 6 components explain most of it
    poses = ohb.sample_anatomical_poses(skel, 5000, np.random.default_rng(3), correlated=True)
    var = ((poses - right["hands_mean"]) @ c.T).var(0)
    assert np.all(var[1:] <= 1.1 * var[:-1] + 1e-12)  # decreasing (up to sampling noise)
    assert var[:6].sum() / var.sum() > 0.6
    # flat_hand_mean=False: a zero pose is the relaxed, slightly flexed hand
    flat = _pose(_layer("right", flat_hand_mean=True)).joints[0].numpy()
    relaxed = _pose(_layer("right", flat_hand_mean=False)).joints[0].numpy()
    for f in range(1, 5):
        assert relaxed[16 + f, 1] < flat[16 + f, 1] - 0.01  # fingertips dip towards the palm
    assert np.linalg.norm(relaxed[16:] - flat[16:], axis=1).max() < 0.06


# ------------------------------------------------------------------------------------------ generation

def test_regenerated_files_equal_the_shipped_ones(tmp_path, right, left):
    assert ohb.main(["--out", str(tmp_path)]) == 0
    for name, shipped in (("MANO_RIGHT.pkl", right), ("MANO_LEFT.pkl", left)):
        new = oh.load_model(tmp_path / name)
        assert sorted(new) == sorted(shipped)
        for key, value in shipped.items():
            if scipy.sparse.issparse(value):
                value, got = value.toarray(), new[key].toarray()
            else:
                got = new[key]
            if isinstance(value, str):
                assert got == value
            else:
                assert np.asarray(got).dtype == np.asarray(value).dtype, key
                np.testing.assert_allclose(np.asarray(got, np.float64), np.asarray(value, np.float64),
                                           atol=1e-6, rtol=0, err_msg=key)


def test_bad_arguments_raise_clear_errors(skel):
    with pytest.raises(ValueError, match="n: expected a positive int"):
        ohb.sample_anatomical_poses(skel, 0, np.random.default_rng(0))
    with pytest.raises(TypeError, match="rng: expected a numpy.random.Generator"):
        ohb.sample_anatomical_poses(skel, 3, 0)
    with pytest.raises(ValueError, match="voxel"):
        ohb.build_surface(skel, voxel=0.1)
