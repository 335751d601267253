"""Synthetic two-hand scenes: the contract with the writer, contact measurements, camera, determinism."""

import pickle

import numpy as np
import pytest
import torch
import trimesh

from im2hands.data.synth import poses as P
from im2hands.data.synth.scene import (CONTACT_DISTANCE, KINDS, MAX_PENETRATION_VOLUME, HandState, Scene,
                                       load_hand_models, measure_pair, sample_scene)
from im2hands.hand.openhand import openhand_dir


@pytest.fixture(scope="module")
def hands():
    return load_hand_models()


@pytest.fixture(scope="module")
def scenes(hands):
    """Two scenes per category."""
    return [sample_scene(np.random.default_rng(10 * i + j), hands, kind=k)
            for i, k in enumerate(KINDS) for j in range(2)]


def _check_hand(h: HandState, hands):
    model = hands.side(h.side)
    V = model.layer.num_vertices + (1 if len(model.rim) else 0)
    for name, shape in (("global_orient", (3,)), ("hand_pose", (45,)), ("betas", (10,)), ("transl", (3,)),
                        ("vertices", (V, 3)), ("joints", (21, 3)), ("joint_transforms", (16, 4, 4))):
        arr = getattr(h, name)
        assert arr.shape == shape and arr.dtype == np.float64, (name, arr.shape, arr.dtype)
        assert np.all(np.isfinite(arr)), name
    assert h.faces.dtype == np.int64
    mesh = trimesh.Trimesh(h.vertices, h.faces, process=False)
    assert mesh.is_watertight and mesh.is_winding_consistent and mesh.volume > 0


def test_scenes_follow_the_contract(scenes, hands):
    for s in scenes:
        assert isinstance(s, Scene) and s.kind in KINDS
        assert s.right.side == "right" and s.left.side == "left"
        for h in (s.right, s.left):
            _check_hand(h, hands)
        assert s.penetration_volume <= MAX_PENETRATION_VOLUME
        assert s.contact == (s.min_distance < CONTACT_DISTANCE)


def test_parameters_reproduce_the_meshes_through_the_layer(scenes, hands):
    """The writer may re-pose the hands from the parameters: the layer must give the same geometry."""
    for s in scenes[::2]:
        for h in (s.right, s.left):
            layer = hands.side(h.side).layer
            t = {k: torch.from_numpy(getattr(h, k))[None] for k in ("global_orient", "hand_pose", "betas", "transl")}
            with torch.no_grad():
                out = layer(**t)
            n = layer.num_vertices
            np.testing.assert_allclose(out.vertices[0].numpy(), h.vertices[:n], atol=1e-9)
            np.testing.assert_allclose(out.joints[0].numpy(), h.joints, atol=1e-9)
            np.testing.assert_allclose(out.joint_transforms[0].numpy(), h.joint_transforms, atol=1e-9)


def test_poses_are_within_the_joint_limits(scenes, hands):
    for s in scenes:
        for h in (s.right, s.left):
            model = hands.side(h.side)
            ang = P.hand_pose_to_angles(h.hand_pose + model.hands_mean, model.frames)
            assert np.all(ang >= P.JOINT_LIMITS[..., 0] - 1e-6) and np.all(ang <= P.JOINT_LIMITS[..., 1] + 1e-6)


def test_camera_centres_both_hands_in_the_crop(scenes):
    for s in scenes:
        pts = np.concatenate([s.right.vertices, s.left.vertices])
        assert s.camera.to_camera(pts)[:, 2].min() > 0.05  # all in front of the camera
        uv = s.camera.project(pts)
        lo, hi = uv.min(0), uv.max(0)
        np.testing.assert_allclose((lo + hi) / 2, 128, atol=0.5)
        np.testing.assert_allclose((hi - lo).max(), 0.8 * 256, atol=1e-6)


def test_measurements_agree_with_a_fresh_measurement(scenes):
    for s in scenes:
        m = measure_pair(s.right.vertices, s.right.faces, s.left.vertices, s.left.faces,
                         np.random.default_rng(0), samples=20000)
        assert m.contact == s.contact
        assert abs(m.min_distance - s.min_distance) < 1e-9
        assert abs(m.penetration_volume - s.penetration_volume) < 0.5e-6 + 0.5 * s.penetration_volume


def test_categories_give_contact_and_gaps(scenes):
    by_kind = {k: [s for s in scenes if s.kind == k] for k in KINDS}
    assert all(s.contact for s in by_kind["clasp"] + by_kind["touch"])
    assert all(s.min_distance > 0.0 for s in by_kind["near"])
    assert any(not s.contact for s in scenes)


def test_same_seed_same_scene(hands):
    a = sample_scene(np.random.default_rng(123), hands)
    b = sample_scene(np.random.default_rng(123), hands)
    assert a.kind == b.kind
    np.testing.assert_array_equal(a.right.vertices, b.right.vertices)
    np.testing.assert_array_equal(a.left.hand_pose, b.left.hand_pose)
    np.testing.assert_array_equal(a.camera.K, b.camera.K)
    assert a.penetration_volume == b.penetration_volume


def test_measure_pair_on_spheres_known_answers():
    r = 0.03
    s = trimesh.creation.icosphere(subdivisions=4, radius=r)
    v, f = np.asarray(s.vertices), np.asarray(s.faces)
    rng = np.random.default_rng(0)
    apart = measure_pair(v, f, v + [2 * r + 0.005, 0, 0], f, rng)
    assert not apart.contact and apart.penetration_volume == 0.0
    assert abs(apart.min_distance - 0.005) < 2e-4  # polygonal sphere vs exact
    d = 1.5 * r  # overlapping: lens volume pi (4r + d)(2r - d)^2 / 12
    over = measure_pair(v, f, v + [d, 0, 0], f, rng, samples=40000)
    lens = np.pi * (4 * r + d) * (2 * r - d) ** 2 / 12
    assert over.contact and over.min_distance == 0.0
    assert abs(over.penetration_volume - lens) < 0.08 * lens


def test_open_models_are_sealed(tmp_path, hands):
    """A model open at the wrist (like real MANO) is sealed with a centre vertex; scenes stay closed."""
    for side in ("RIGHT", "LEFT"):
        with open(openhand_dir() / f"MANO_{side}.pkl", "rb") as fh:
            data = pickle.load(fh, encoding="latin1")
        f = np.asarray(data["f"]).astype(np.int64)
        wrist_vertex = int(np.argmin(np.linalg.norm(data["v_template"], axis=1)))  # nearest the wrist joint
        data["f"] = f[~np.any(f == wrist_vertex, axis=1)]  # opens a hole around that vertex
        with open(tmp_path / f"MANO_{side}.pkl", "wb") as fh:
            pickle.dump(data, fh)
    open_hands = load_hand_models(tmp_path)
    assert len(open_hands.right.rim) >= 3 and len(open_hands.left.rim) >= 3
    s = sample_scene(np.random.default_rng(0), open_hands, kind="touch")
    for h in (s.right, s.left):
        _check_hand(h, open_hands)
        model = open_hands.side(h.side)
        np.testing.assert_allclose(h.vertices[-1], h.vertices[model.rim].mean(0), atol=1e-12)


def test_bad_arguments(hands):
    with pytest.raises(ValueError, match="kind"):
        sample_scene(np.random.default_rng(0), hands, kind="hug")
    with pytest.raises(TypeError, match="rng"):
        sample_scene(0, hands)
    with pytest.raises(TypeError, match="hands"):
        sample_scene(np.random.default_rng(0), None)
    with pytest.raises(FileNotFoundError):
        load_hand_models("/nonexistent/mano")


def test_penetrating_placements_are_rejected(hands, monkeypatch):
    """With a threshold below the first placement's penetration, that placement is rejected and the
    returned scene respects the threshold."""
    from im2hands.data.synth import scene as scene_mod

    for seed in range(40):  # the first touch whose pushed-in contact overlaps
        first = sample_scene(np.random.default_rng(seed), hands, kind="touch")
        if first.penetration_volume > 0:
            break
    assert first.attempts == 1 and first.penetration_volume > 0
    threshold = 0.5 * first.penetration_volume
    monkeypatch.setattr(scene_mod, "MAX_PENETRATION_VOLUME", threshold)
    again = sample_scene(np.random.default_rng(seed), hands, kind="touch")
    assert again.attempts > 1
    assert again.penetration_volume <= threshold


def test_sampling_leaves_the_torch_thread_count_alone(hands):
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        sample_scene(np.random.default_rng(5), hands, kind="near")
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
