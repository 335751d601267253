"""Detector-like keypoint noise: its statistics and its outliers."""

import dataclasses

import numpy as np
import pytest

from im2hands.data.synth.noise import DEFAULT_NOISE, NoiseConfig, mpjpe, noisy_keypoints


def hand_joints(rng, centre=(0.02, -0.03, 0.5)):
    return np.asarray(centre) + rng.normal(0, 0.04, (21, 3))


QUIET = NoiseConfig(hand_depth_std=0.0, finger_std=0.0, flip_prob=0.0, snap_prob=0.0, jump_prob=0.0)


def test_lateral_and_depth_errors_have_the_configured_spread():
    rng = np.random.default_rng(0)
    joints = hand_joints(rng)
    ray = joints / np.linalg.norm(joints, axis=1, keepdims=True)
    err = np.stack([noisy_keypoints(rng, joints, "right", config=QUIET) - joints for _ in range(4000)])
    depth = (err * ray).sum(-1)  # (N, 21)
    lateral = err - depth[..., None] * ray
    level = np.array([0] + [1, 2, 3, 4] * 5)
    std = np.asarray(QUIET.lateral_std)[level]
    # lateral: 2 dof of std sigma -> E|e|^2 = 2 sigma^2
    np.testing.assert_allclose(np.sqrt((lateral ** 2).sum(-1).mean(0) / 2), std, rtol=0.06)
    np.testing.assert_allclose(depth.std(0), QUIET.depth_ratio * std, rtol=0.06)
    np.testing.assert_allclose(depth.mean(0), 0, atol=3 * depth.std(0).max() / np.sqrt(4000))
    tips, wrist = np.linalg.norm(err, axis=-1)[:, [4, 8, 12, 16, 20]].mean(), np.linalg.norm(err[:, 0], axis=-1).mean()
    assert tips > 1.7 * wrist


def test_hand_depth_offset_is_shared_by_all_joints():
    cfg = dataclasses.replace(QUIET, lateral_std=(0.0,) * 5, hand_depth_std=0.01)
    rng = np.random.default_rng(1)
    joints = hand_joints(rng)
    ray = joints / np.linalg.norm(joints, axis=1, keepdims=True)
    out = noisy_keypoints(rng, joints, "left", config=cfg)
    shift = ((out - joints) * ray).sum(-1)
    np.testing.assert_allclose(out - joints, shift[:, None] * ray, atol=1e-15)
    np.testing.assert_allclose(shift, shift[0], atol=1e-15)


def test_flipped_finger_keeps_its_projection_and_reflects_its_depth():
    cfg = dataclasses.replace(QUIET, lateral_std=(0.0,) * 5, flip_prob=1.0)
    rng = np.random.default_rng(2)
    joints = hand_joints(rng)
    out = noisy_keypoints(rng, joints, "right", config=cfg)
    np.testing.assert_allclose(out[:, :2] / out[:, 2:], joints[:, :2] / joints[:, 2:], atol=1e-12)
    moved = np.flatnonzero(np.abs(out[:, 2] - joints[:, 2]) > 1e-12)
    assert 1 <= len(moved) <= 3
    f = (moved[0] - 1) // 4
    mcp = 1 + 4 * f
    assert set(moved) <= set(range(mcp + 1, mcp + 4))
    np.testing.assert_allclose(out[moved, 2], np.maximum(2 * joints[mcp, 2] - joints[moved, 2], 0.05 * joints[mcp, 2]))


def test_snapped_joint_lands_on_the_other_hand():
    cfg = dataclasses.replace(QUIET, lateral_std=(0.0,) * 5, snap_prob=1.0)
    rng = np.random.default_rng(3)
    joints, other = hand_joints(rng), hand_joints(rng, (0.1, 0.0, 0.6))
    out = noisy_keypoints(rng, joints, "right", other=other, config=cfg)
    changed = np.flatnonzero(np.any(out != joints, axis=1))
    assert len(changed) == 1
    assert np.min(np.linalg.norm(other - out[changed[0]], axis=1)) < 1e-12
    np.testing.assert_array_equal(noisy_keypoints(rng, joints, "right", config=cfg), joints)  # no other hand


def test_default_model_error_and_determinism():
    rng = np.random.default_rng(4)
    errs, errs_rel = [], []
    for _ in range(2000):
        j, o = hand_joints(rng), hand_joints(rng, (0.08, 0.0, 0.55))
        n = noisy_keypoints(rng, j, "right", other=o)
        errs.append(mpjpe(n, j))
        errs_rel.append(mpjpe(n, j, root_relative=True))
    assert 0.006 < np.mean(errs) < 0.014, np.mean(errs)
    assert 0.006 < np.mean(errs_rel) < 0.016, np.mean(errs_rel)
    j = hand_joints(np.random.default_rng(9))
    np.testing.assert_array_equal(noisy_keypoints(np.random.default_rng(1), j, "left"),
                                  noisy_keypoints(np.random.default_rng(1), j, "left"))


def test_bad_inputs_name_the_argument():
    rng = np.random.default_rng(0)
    j = hand_joints(rng)
    with pytest.raises(ValueError, match="joints_cam"):
        noisy_keypoints(rng, j[:20], "right")
    with pytest.raises(ValueError, match="side"):
        noisy_keypoints(rng, j, "both")
    with pytest.raises(ValueError, match="in front"):
        noisy_keypoints(rng, j * [1, 1, -1], "right")
    with pytest.raises(ValueError, match="other"):
        noisy_keypoints(rng, j, "right", other=j[:3])
    with pytest.raises(TypeError, match="config"):
        noisy_keypoints(rng, j, "right", config={"flip_prob": 1})
    assert DEFAULT_NOISE == NoiseConfig()
