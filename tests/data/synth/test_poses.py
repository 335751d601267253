"""Anatomical hand poses: limits, coupling, determinism, and the mapping to MANO axis-angle."""

import numpy as np
import pytest

from im2hands.data.synth import poses as P
from im2hands.data.synth.scene import load_hand_models
from im2hands.hand import skeleton as sk
from im2hands.hand.frames import mirror_x


@pytest.fixture(scope="module")
def hands():
    return load_hand_models()


@pytest.fixture(scope="module")
def samples():
    rng = np.random.default_rng(0)
    return [P.sample_hand_angles(rng) for _ in range(3000)]


def right_skeleton() -> np.ndarray:
    """A hand-built right hand: fingers along +y, thumb side +x, palm facing +z (towards the viewer)."""
    j = np.zeros((21, 3))
    xs = {"index": 0.022, "middle": 0.0, "ring": -0.018, "pinky": -0.033}
    for f, x in xs.items():
        base = 1 + 4 * sk.FINGERS.index(f)
        for k in range(4):
            j[base + k] = (x, 0.09 + 0.025 * k, 0.0)
    for k in range(4):
        j[1 + k] = (0.02 + 0.02 * k, 0.02 + 0.02 * k, 0.005)
    return j


def test_palm_axes_of_a_known_right_hand_and_its_mirror():
    j = right_skeleton()
    distal, radial, normal = P.palm_axes(j, "right")
    np.testing.assert_allclose(distal, [0, 1, 0], atol=1e-12)
    np.testing.assert_allclose(radial, [1, 0, 0], atol=1e-12)
    np.testing.assert_allclose(normal, [0, 0, 1], atol=1e-12)
    _, radial_l, normal_l = P.palm_axes(mirror_x(j), "left")
    np.testing.assert_allclose(radial_l, [-1, 0, 0], atol=1e-12)
    np.testing.assert_allclose(normal_l, [0, 0, 1], atol=1e-12)  # the mirror keeps the palm side


def test_frames_are_rotations(hands):
    for side in ("right", "left"):
        F = hands.side(side).frames.reshape(-1, 3, 3)
        np.testing.assert_allclose(F @ F.transpose(0, 2, 1), np.broadcast_to(np.eye(3), F.shape), atol=1e-12)
        np.testing.assert_allclose(np.linalg.det(F), 1.0, atol=1e-12)


def test_samples_respect_joint_limits(samples):
    a = np.stack([s.angles for s in samples])
    assert np.all(a >= P.JOINT_LIMITS[..., 0] - 1e-12) and np.all(a <= P.JOINT_LIMITS[..., 1] + 1e-12)
    # and the ranges are used: finger MCP/PIP flexion covers most of its range
    flex = np.rad2deg(a[:, 1:, :2, 0])
    assert flex.min() < 5 and flex.max() > 85


def test_dip_follows_two_thirds_of_pip(samples):
    a = np.rad2deg(np.stack([s.angles for s in samples]))
    pip, dip = a[:, 1:, 1, 0].ravel(), a[:, 1:, 2, 0].ravel()
    free = (pip > 5) & (pip < 100) & (dip < 75)  # away from the clipping limits
    slope, intercept = np.polyfit(pip[free], dip[free], 1)
    residual = dip[free] - (slope * pip[free] + intercept)
    assert abs(slope - P.DIP_PIP_RATIO) < 0.05, slope
    assert residual.std() < 6.0


def test_neighbouring_fingers_are_correlated(samples):
    pip = np.stack([s.angles[1:, 1, 0] for s in samples])  # index, middle, ring, pinky
    c = np.corrcoef(pip.T)
    assert c[0, 1] > 0.4 and c[1, 2] > 0.6 and c[2, 3] > 0.6
    # within one style the curl noise is correlated rho**k between fingers k apart
    relaxed = np.stack([s.curls for s in samples if s.style == "relaxed"])
    cr = np.corrcoef(relaxed.T)
    rho = P.CURL_NEIGHBOUR_CORRELATION
    for i in range(3):
        assert abs(cr[i, i + 1] - rho) < 0.1, cr
    assert abs(cr[0, 3] - rho ** 3) < 0.12, cr


def test_style_mix_contains_grasps_and_open_hands(samples):
    styles = [s.style for s in samples]
    shares = {k: styles.count(k) / len(styles) for k in P.STYLES}
    for k, p in P.STYLES.items():
        assert abs(shares[k] - p) < 0.03, (k, shares[k])
    point = [s for s in samples if s.style == "point"]
    assert np.mean([s.curls[0] for s in point]) < 0.15 and np.mean([s.curls[1:].mean() for s in point]) > 0.75


def test_sampling_is_deterministic_per_rng():
    a = P.sample_hand_angles(np.random.default_rng(7))
    b = P.sample_hand_angles(np.random.default_rng(7))
    c = P.sample_hand_angles(np.random.default_rng(8))
    np.testing.assert_array_equal(a.angles, b.angles)
    assert a.style == b.style
    assert not np.array_equal(a.angles, c.angles)


def test_angles_round_trip_through_axis_angle(hands, samples):
    frames = hands.right.frames
    a = np.stack([s.angles for s in samples[:200]])
    back = P.hand_pose_to_angles(P.angles_to_hand_pose(a, frames), frames)
    np.testing.assert_allclose(back, a, atol=1e-10)


def _tip_motion(hm, f: int, dof: int, deg: float = 30.0) -> np.ndarray:
    """Displacement (3,) of finger f's tip when all three of its joints move by `deg` in `dof`."""
    ang = np.zeros((5, 3, 3))
    rest_j = hm.forward((P.angles_to_hand_pose(ang, hm.frames) - hm.hands_mean)[None], np.zeros(10))[1][0]
    ang[f, :, dof] = np.deg2rad(deg)
    j = hm.forward((P.angles_to_hand_pose(ang, hm.frames) - hm.hands_mean)[None], np.zeros(10))[1][0]
    return j[4 + 4 * f] - rest_j[4 + 4 * f], rest_j


@pytest.mark.parametrize("side", ["right", "left"])
def test_flexion_moves_fingertips_to_the_palm_side_and_abduction_to_the_thumb_side(hands, side):
    hm = hands.side(side)
    for f in range(5):
        disp, rest = _tip_motion(hm, f, 0)
        _, radial, normal = P.palm_axes(rest, side)
        assert disp @ normal > 0.02, (side, sk.FINGERS[f], disp @ normal)
        if f > 0:
            disp, _ = _tip_motion(hm, f, 1)
            assert disp @ radial > 0.02, (side, sk.FINGERS[f], disp @ radial)


def test_palm_side_agrees_with_the_models_own_relaxed_pose(hands):
    """Independent of our frames: the model's hands_mean (relaxed, fingers flexed) bends the fingertips
    towards the palm normal of palm_axes."""
    for side in ("right", "left"):
        hm = hands.side(side)
        flat = hm.forward(-hm.hands_mean[None], np.zeros(10))[1][0]
        relaxed = hm.forward(np.zeros((1, 45)), np.zeros(10))[1][0]
        _, _, normal = P.palm_axes(flat, side)
        moved = (relaxed - flat)[[8, 12, 16, 20]] @ normal
        assert np.all(moved > 0.005), (side, moved)


def test_same_angles_give_mirrored_hands(hands):
    """The open hand model's left hand is the x-mirror of its right: equal angles, mirrored joints."""
    ang = P.sample_hand_angles(np.random.default_rng(3), "grasp").angles
    joints = {}
    for side in ("right", "left"):
        hm = hands.side(side)
        joints[side] = hm.forward((P.angles_to_hand_pose(ang, hm.frames) - hm.hands_mean)[None], np.zeros(10))[1][0]
    np.testing.assert_allclose(joints["left"], mirror_x(joints["right"]), atol=1e-9)


def test_bad_inputs_name_the_argument():
    with pytest.raises(ValueError, match="style"):
        P.sample_hand_angles(np.random.default_rng(0), "claw")
    with pytest.raises(ValueError, match="angles"):
        P.angles_to_hand_pose(np.zeros((5, 3)), np.zeros((5, 3, 3, 3)))
    with pytest.raises(ValueError, match="side"):
        P.anatomical_frames(right_skeleton(), "middle")
    with pytest.raises(ValueError, match="rest_joints"):
        P.anatomical_frames(np.zeros((16, 3)), "right")
