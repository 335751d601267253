"""Tests of the open hand model at run time (``im2hands.hand.openhand``): the shipped files, their layer, the pose helpers."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse
import torch
import trimesh

from im2hands.hand import openhand as oh
from im2hands.hand.mano import ManoLayer
from im2hands.hand.skeleton import MANO_KINTREE_PARENTS

from ._openhand import MIRROR_POSE
from ._openhand import layer as _layer
from ._openhand import pose as _pose



# ------------------------------------------------------------------------------------------ file layout

def test_files_have_mano_layout(right, left):
    for m in (right, left):
        v = m["v_template"]
        n = len(v)
        assert 700 <= n <= 2000
        assert v.shape == (n, 3)
        assert m["f"].shape[1] == 3 and m["f"].max() == n - 1
        np.testing.assert_array_equal(m["kintree_table"][1], np.arange(16))
        assert tuple(int(p) for p in m["kintree_table"][0, 1:]) == MANO_KINTREE_PARENTS[1:]
        assert scipy.sparse.issparse(m["J_regressor"]) and m["J_regressor"].shape == (16, n)
        assert m["weights"].shape == (n, 16)
        assert m["shapedirs"].shape == (n, 3, 10)
        assert m["posedirs"].shape == (n, 3, 135)
        assert m["hands_components"].shape == (45, 45) and m["hands_mean"].shape == (45,)
        assert m["tip_vertex_ids"].shape == (5,)
    size = sum((oh.openhand_dir() / f"MANO_{s}.pkl").stat().st_size for s in ("RIGHT", "LEFT"))
    assert size < 3e6, size


def test_smplx_loads_the_files_and_agrees_with_our_layer():
    import smplx  # test dependency (pyproject [test]); never skipped
    rng = np.random.default_rng(1)
    pose = rng.normal(0, 0.3, (2, 45))
    betas = rng.normal(0, 1, (2, 10))
    orient = rng.normal(0, 0.5, (2, 3))
    for side in ("right", "left"):
        ref = smplx.MANO(str(oh.openhand_dir()), is_rhand=side == "right", use_pca=False, flat_hand_mean=False,
                         dtype=torch.float64)
        out_ref = ref(global_orient=torch.tensor(orient), hand_pose=torch.tensor(pose), betas=torch.tensor(betas))
        ours = _pose(_layer(side, flat_hand_mean=False), pose, betas, orient)
        torch.testing.assert_close(ours.vertices, out_ref.vertices, atol=1e-9, rtol=0)
        torch.testing.assert_close(ours.kinematic_joints, out_ref.joints[:, :16], atol=1e-9, rtol=0)


# ------------------------------------------------------------------------------------------ rest mesh

def test_rest_pose_axes_and_proportions(right, skel):
    v = np.asarray(right["v_template"], np.float64)
    joints = right["J_regressor"] @ v
    tips = v[right["tip_vertex_ids"]]
    # wrist at the origin, fingers along -x, thumb on the +z side, palm facing -y
    np.testing.assert_allclose(joints[0], 0.0, atol=1e-6)
    middle_dir = (tips[2] - joints[4]) / np.linalg.norm(tips[2] - joints[4])
    assert middle_dir @ np.array([-1.0, 0, 0]) > 0.99
    assert joints[13:16, 2].min() > 0.015 and tips[0, 2] > 0.07
    assert joints[13, 1] < -0.005  # thumb CMC on the palm side
    thumb_dir = (tips[0] - joints[13]) / np.linalg.norm(tips[0] - joints[13])
    assert 35 < np.degrees(np.arccos(thumb_dir @ middle_dir)) < 55  # abducted thumb
    # adult size: wrist -> middle fingertip 0.18-0.20 m; the tip vertices are the fingertips
    length = np.linalg.norm(tips[2] - joints[0])
    assert 0.18 <= length <= 0.20, length
    for f, finger in enumerate(oh.TIP_FINGERS):
        chain = oh.FINGER_CHAINS[finger]
        seg = [np.linalg.norm(joints[chain[i + 1]] - joints[chain[i]]) for i in range(2)]
        seg.append(np.linalg.norm(tips[f] - joints[chain[2]]))
        assert all(0.015 < s < 0.05 for s in seg), (finger, seg)
        assert np.linalg.norm(tips[f] - skel.tips[f]) < 0.003, finger


def test_positive_z_rotation_flexes_a_finger_towards_the_palm(layer_r):
    pose = np.zeros(45)
    pose[2] = np.deg2rad(60)  # index1 about +z
    out = _pose(layer_r, pose)
    tip = out.joints[0, 17].numpy()  # index tip (MANO order, then the tips of thumb, index, ...)
    rest = _pose(layer_r).joints[0, 17].numpy()
    assert tip[1] < rest[1] - 0.03


# ------------------------------------------------------------------------------------------ left = mirror

def test_left_model_is_the_exact_mirror_of_the_right(right, left):
    np.testing.assert_array_equal(left["v_template"], right["v_template"] * np.array([-1, 1, 1], np.float32))
    np.testing.assert_array_equal(left["f"], right["f"][:, [0, 2, 1]])
    rng = np.random.default_rng(2)
    pose = torch.tensor(rng.normal(0, 0.4, (3, 48)))
    betas = rng.normal(0, 1, (3, 10))
    r = _pose(_layer("right", flat_hand_mean=False), pose[:, 3:].numpy(), betas, pose[:, :3].numpy())
    pm = (pose * MIRROR_POSE).numpy()
    lo = _pose(_layer("left", flat_hand_mean=False), pm[:, 3:], betas, pm[:, :3])
    mirror = torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64)
    torch.testing.assert_close(lo.vertices, r.vertices * mirror, atol=1e-9, rtol=0)
    torch.testing.assert_close(lo.joints, r.joints * mirror, atol=1e-9, rtol=0)
    mesh = trimesh.Trimesh(lo.vertices[0].numpy(), left["f"], process=False)
    assert mesh.volume > 0


# ------------------------------------------------------------------------------------------ generation

def test_open_hand_layer_never_applies_the_left_shapedirs_fix():
    shipped = oh.load_model(oh.openhand_dir() / "MANO_LEFT.pkl")["shapedirs"]
    # ManoLayer's default recognises the open hand file (key openhand_version) and skips the fix too
    for layer in (oh.open_hand_layer("left", dtype=torch.float64),
                  ManoLayer(oh.openhand_dir(), side="left", dtype=torch.float64)):
        assert not layer.left_shapedirs_fixed and layer.side == "left"
        np.testing.assert_array_equal(layer.shapedirs.numpy(), np.asarray(shipped, np.float64))


def test_bad_arguments_raise_clear_errors(skel):
    with pytest.raises(ValueError, match="abd: expected shape"):
        oh.pose_from_angles(skel, np.zeros((2, 15)), np.zeros((3, 15)), np.zeros((2, 15)))
    with pytest.raises(ValueError, match="flex: contains NaN"):
        oh.pose_from_angles(skel, np.full((1, 15), np.nan), np.zeros((1, 15)), np.zeros((1, 15)))
    with pytest.raises(ValueError, match="bone: expected 1..15"):
        skel.bone_end(0)


def test_load_model_names_a_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.pkl"):
        oh.load_model(tmp_path / "nothere.pkl")
