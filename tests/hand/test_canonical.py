"""Keypoint canonicalisation: golden arrays, batching, mirroring, invariants, errors, gradients."""

from __future__ import annotations

import pytest
import torch

from im2hands.official import canonicalisation as golden_canon
from im2hands.official.check import compare
from im2hands.official.tolerance import tolerance_for
from im2hands.hand import skeleton
from im2hands.hand.frames import mirror_x
from im2hands.hand.canonical import QUERY_SCALE, canonicalise, points_to_query, query_to_points

FIELDS = ("unpose", "bone_lengths", "root_rot_mat")


@pytest.fixture(scope="module")
def golden_results(golden):
    return {r.name: r for r in golden_canon.check(golden, device=torch.device("cpu"))}


@pytest.mark.parametrize("name", golden_canon.array_names())
def test_golden_array(golden_results, name):
    r = golden_results[name]
    assert r.passed, r.line()


def test_golden_check_covers_every_canonicalisation_array(golden, golden_results):
    assert set(golden_results) == set(golden_canon.array_names())
    stored = {f"{k}" for k in golden["canonicalisation"]} | {f"extra/{k}" for k in FIELDS}
    assert stored <= set(golden_results)


def _extra_hands(golden, n: int, seed: int = 0):
    """`n` hands: the 24 golden extra hands, resampled with 2 mm jitter and a random rigid motion."""
    extra = golden["canon_extra"]
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, 24, (n,), generator=g)
    joints = torch.from_numpy(extra["joints_world"])[idx]
    joints = joints + 0.002 * torch.randn(joints.shape, generator=g, dtype=torch.float64)
    return joints, torch.from_numpy(extra["is_right"] != 0)[idx]


def _random_rotation(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    q, r = torch.linalg.qr(torch.randn(n, 3, 3, generator=g, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1)).unsqueeze(-2)
    return q * torch.det(q).sign().view(n, 1, 1)  # proper rotations


@pytest.mark.parametrize("official", [True, False])
def test_batch_equals_per_hand(golden, official):
    joints, is_right = _extra_hands(golden, 12, seed=1)
    batch = canonicalise(joints, is_right, official_quirks=official)
    for b in range(len(joints)):
        one = canonicalise(joints[b:b + 1], "right" if is_right[b] else "left", official_quirks=official)
        # Vectorised float64 sin/atan2 may round differently by position in a batch: ~1e-16 per op.
        # Batched and single-hand kernels may round differently (float32 stages: a few ulp, amplified by
        # the matrix inverse in unpose); a real difference between the paths would be orders larger.
        torch.testing.assert_close(batch.unpose[b], one.unpose[0], atol=1e-5 if official else 1e-12, rtol=0)
        for f in ("bone_lengths", "root_rot_mat"):
            torch.testing.assert_close(getattr(batch, f)[b], getattr(one, f)[0], atol=1e-6 if official else 1e-14,
                                       rtol=0, msg=f)
        assert torch.equal(batch.wrist[b], joints[b, 0])


def test_output_dtypes_and_shapes(golden):
    joints, is_right = _extra_hands(golden, 3)
    c = canonicalise(joints, is_right)
    assert c.unpose.shape == (3, 16, 4, 4) and c.unpose.dtype == torch.float64
    assert c.bone_lengths.shape == (3, 16) and c.bone_lengths.dtype == torch.float32
    assert c.root_rot_mat.shape == (3, 4, 4) and c.root_rot_mat.dtype == torch.float32
    c64 = canonicalise(joints.float(), is_right, official_quirks=False)
    assert {t.dtype for t in (c64.unpose, c64.bone_lengths, c64.root_rot_mat)} == {torch.float64}
    assert c64.wrist.dtype == torch.float32


@pytest.mark.parametrize("official", [True, False])
def test_left_is_mirrored_right(golden, official):
    joints, _ = _extra_hands(golden, 6, seed=2)
    right = canonicalise(joints, "right", official_quirks=official)
    left = canonicalise(mirror_x(joints), "left", official_quirks=official)
    for f in FIELDS:  # the same operations on mirrored inputs (the mirror is exact)
        torch.testing.assert_close(getattr(left, f), getattr(right, f), atol=1e-6 if official else 1e-13, rtol=0,
                                   msg=f)
    # A per-sample is_right tensor gives the same as the side strings.
    mixed = torch.tensor([True, False] * 3)
    inputs = torch.where(mixed.view(-1, 1, 1), joints, mirror_x(joints))
    both = canonicalise(inputs, mixed, official_quirks=official)
    torch.testing.assert_close(both.unpose, right.unpose, atol=1e-5 if official else 1e-13, rtol=0)
    torch.testing.assert_close(both.bone_lengths, right.bone_lengths, atol=1e-6 if official else 1e-14, rtol=0)


def test_rigid_motion_invariance(golden):
    """unpose and bone lengths do not depend on the input frame; R0 absorbs the rotation (float64 path)."""
    joints, is_right = _extra_hands(golden, 8, seed=3)
    rot = _random_rotation(8, seed=4)
    moved = joints @ rot.transpose(1, 2) + torch.tensor([0.3, -1.2, 2.0], dtype=torch.float64)
    # A left hand's frame is mirrored: its rotation is conjugated by the mirror.
    a = canonicalise(joints, is_right, official_quirks=False)
    b = canonicalise(moved, is_right, official_quirks=False)
    torch.testing.assert_close(b.unpose, a.unpose, atol=1e-9, rtol=0)
    torch.testing.assert_close(b.bone_lengths, a.bone_lengths, atol=1e-12, rtol=0)
    mirror = torch.diag(torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64))
    rot_m = torch.where(is_right.view(-1, 1, 1), rot, mirror @ rot @ mirror)
    torch.testing.assert_close(b.root_rot_mat[:, :3, :3], a.root_rot_mat[:, :3, :3] @ rot_m.transpose(1, 2),
                               atol=1e-9, rtol=0)


def test_bone_lengths_known(golden):
    """Bone lengths equal the distances between the input keypoints (slow reference by joint names)."""
    joints, is_right = _extra_hands(golden, 5, seed=5)
    c = canonicalise(joints, is_right, official_quirks=False)
    name = skeleton.INTERNAL.index
    for b in range(5):
        for k, part in enumerate(skeleton.PART_NAMES):
            if part == "palm":
                start, end = "wrist", "middle1"
            else:
                start, end = part, part[:-1] + str(int(part[-1]) + 1)
            ref = (joints[b, name(end)] - joints[b, name(start)]).norm()
            assert abs(float(c.bone_lengths[b, k]) - float(ref)) < 1e-12, (b, part)


def test_canonical_frame_axes(golden):
    """In query space the middle MCP lies on -x and the palm normal (middle x index) points along +y."""
    joints, is_right = _extra_hands(golden, 6, seed=6)
    c = canonicalise(joints, is_right, official_quirks=False)
    q = points_to_query(joints, c.wrist, c.root_rot_mat, is_right)
    mid = q[:, skeleton.INTERNAL.index("middle1")]
    idx = q[:, skeleton.INTERNAL.index("index1")]
    torch.testing.assert_close(torch.nn.functional.normalize(mid, dim=-1),
                               torch.tensor([-1.0, 0, 0], dtype=torch.float64).expand(6, 3), atol=1e-12, rtol=0)
    normal = torch.nn.functional.normalize(torch.linalg.cross(mid, idx, dim=-1), dim=-1)
    torch.testing.assert_close(normal, torch.tensor([0.0, 1, 0], dtype=torch.float64).expand(6, 3),
                               atol=1e-12, rtol=0)
    torch.testing.assert_close(q[:, 0], torch.zeros(6, 3, dtype=torch.float64), atol=1e-15, rtol=0)


def test_unpose_is_rigid_in_metres(golden):
    """unpose = S^-1 T S^2 with T rigid: its 3x3 block divided by 0.4 is a rotation (float64 path)."""
    joints, is_right = _extra_hands(golden, 4, seed=7)
    u = canonicalise(joints, is_right, official_quirks=False).unpose
    rot = u[..., :3, :3] / QUERY_SCALE
    eye = torch.eye(3, dtype=torch.float64).expand_as(rot)
    torch.testing.assert_close(rot @ rot.transpose(-1, -2), eye, atol=1e-12, rtol=0)
    torch.testing.assert_close(torch.det(rot), torch.ones(4, 16, dtype=torch.float64), atol=1e-12, rtol=0)
    assert torch.equal(u[:, 0], torch.diag(torch.tensor([0.4, 0.4, 0.4, 1.0], dtype=torch.float64)).expand(4, 4, 4))


def test_bones_unposed_to_straight_canonical_pose(golden):
    """Each finger's phalanges map to one straight line in the canonical pose: the unposed child joint of
    bone k equals the unposed start joint of bone k+1, and all phalanges of a finger share a direction."""
    joints, is_right = _extra_hands(golden, 4, seed=8)
    c = canonicalise(joints, is_right, official_quirks=False)
    q = points_to_query(joints, c.wrist, c.root_rot_mat, is_right)  # (B, 21, 3)
    hom = torch.cat([q / QUERY_SCALE, torch.ones(4, 21, 1, dtype=torch.float64)], -1)
    part = {n: k for k, n in enumerate(skeleton.PART_NAMES)}
    name = skeleton.INTERNAL.index
    for f in ("index", "middle", "ring", "pinky", "thumb"):
        ends, dirs = [], []
        for i in (1, 2, 3):
            u = c.unpose[:, part[f"{f}{i}"]]
            a = (u @ hom[:, name(f"{f}{i}")].unsqueeze(-1))[:, :3, 0]
            b = (u @ hom[:, name(f"{f}{i + 1}")].unsqueeze(-1))[:, :3, 0]
            if ends:
                torch.testing.assert_close(a, ends[-1], atol=1e-9, rtol=0)
            ends.append(b)
            dirs.append(torch.nn.functional.normalize(b - a, dim=-1))
        for d in dirs[1:]:
            torch.testing.assert_close(d, dirs[0], atol=1e-9, rtol=0)


@pytest.mark.parametrize("side", ["right", "left", "mixed"])
def test_query_round_trip(golden, side):
    joints, is_right = _extra_hands(golden, 4, seed=9)
    s = is_right if side == "mixed" else side
    c = canonicalise(joints, s, official_quirks=False)
    g = torch.Generator().manual_seed(10)
    p = torch.rand(4, 50, 3, generator=g, dtype=torch.float64) * 1.1 - 0.55
    x = query_to_points(p, c.wrist, c.root_rot_mat, s)
    torch.testing.assert_close(points_to_query(x, c.wrist, c.root_rot_mat, s), p, atol=1e-13, rtol=0)
    # Query units are 0.4 m: distances scale by 0.4, and the query origin is the wrist.
    d_world = (x[:, 1:] - x[:, :1]).norm(dim=-1)
    torch.testing.assert_close(d_world, QUERY_SCALE * (p[:, 1:] - p[:, :1]).norm(dim=-1), atol=1e-13, rtol=0)
    origin = query_to_points(torch.zeros(4, 1, 3, dtype=torch.float64), c.wrist, c.root_rot_mat, s)
    torch.testing.assert_close(origin[:, 0], c.wrist, atol=1e-15, rtol=0)


@pytest.mark.parametrize("side", ["left", "right"])
def test_query_to_points_matches_official_camera_coords(golden, side):
    """Official query points -> world -> camera equals ref_occ's stored camera coordinates (golden rule for
    coordinates: float32 kernels round by an ulp differently across CPUs)."""
    inputs = golden.inputs
    c = canonicalise(torch.from_numpy(inputs[f"joints_world_{side}"]), side)
    p = torch.from_numpy(inputs[f"p_{side}"])
    x = query_to_points(p, c.wrist.float(), c.root_rot_mat, side)
    cam = torch.bmm(x, torch.from_numpy(inputs["cam_R"]).transpose(1, 2)) + torch.from_numpy(inputs["cam_T"])[:, None]
    expected = golden["ref_occ"][f"query_xyz_flip_{side}"]
    r = compare("ref_occ", f"query_xyz_flip_{side}", cam * torch.tensor([1.0, -1.0, -1.0]), expected,
                tolerance_for(f"query_xyz_flip_{side}"))
    assert r.passed, r.line()


@pytest.mark.parametrize("side", ["left", "right"])
def test_unpose_gives_official_bone_coords(golden, side):
    """``(unpose_b @ [p / 0.4, 1])[:3]`` with the official operand casts equals init_occ's bone_coords."""
    inputs = golden.inputs
    c = canonicalise(torch.from_numpy(inputs[f"joints_world_{side}"]), side)
    p = torch.from_numpy(inputs[f"p_{side}"]) / QUERY_SCALE  # float32, as officially
    hom = torch.cat([p, torch.ones(*p.shape[:-1], 1)], -1).double()
    coords = (c.unpose.float().double()[:, None] @ hom[:, :, None, :, None])[..., :3, 0]  # (B, N, 16, 3)
    # our unpose (recomputed from the keypoints) carries the canonical transforms' tolerance into the coords
    r = compare("init_occ", f"bone_coords_{side}", coords, golden["init_occ"][f"bone_coords_{side}"],
                tolerance_for(f"unpose_{side}"))
    assert r.passed, r.line()


# --- errors ---------------------------------------------------------------------------------------------

def _two_hands(golden):
    return torch.from_numpy(golden["canon_extra"]["joints_world"][:2]).clone()


def test_non_finite_joint_names_hand_and_joint(golden):
    j = _two_hands(golden)
    j[1, skeleton.INTERNAL.index("index2"), 1] = float("nan")
    with pytest.raises(ValueError, match=r"hand 1 \(left\) joint 'index2'"):
        canonicalise(j, "left")
    j = _two_hands(golden)
    j[0, 0, 2] = float("inf")
    with pytest.raises(ValueError, match=r"hand 0 \(right\) joint 'wrist'"):
        canonicalise(j, torch.tensor([True, False]), official_quirks=False)


def test_zero_length_bone(golden):
    j = _two_hands(golden)
    j[1, skeleton.INTERNAL.index("ring3")] = j[1, skeleton.INTERNAL.index("ring2")]
    with pytest.raises(ValueError, match=r"hand 1 \(right\).*'ring3' coincides with 'ring2'"):
        canonicalise(j, "right")


def test_collinear_palm(golden):
    j = _two_hands(golden)
    w, m = j[0, 0], j[0, skeleton.INTERNAL.index("middle1")]
    j[0, skeleton.INTERNAL.index("index1")] = w + 0.7 * (m - w)
    with pytest.raises(ValueError, match=r"hand 0 \(left\).*palm.*'wrist', 'index1' and 'middle1'"):
        canonicalise(j, "left")
    j = _two_hands(golden)
    w, r = j[1, 0], j[1, skeleton.INTERNAL.index("ring1")]
    j[1, skeleton.INTERNAL.index("pinky1")] = w + 1.1 * (r - w)
    with pytest.raises(ValueError, match=r"hand 1 \(right\).*'ring1' and 'pinky1' are collinear"):
        canonicalise(j, "right")


@pytest.mark.parametrize("shape", [(21, 3), (2, 20, 3), (2, 21, 4), (0, 21, 3)])
def test_bad_shapes(shape):
    with pytest.raises(ValueError, match="joints"):
        canonicalise(torch.zeros(shape, dtype=torch.float64), "right")


def test_bad_side_and_type(golden):
    j = _two_hands(golden)
    with pytest.raises(ValueError, match="side"):
        canonicalise(j, "both")
    with pytest.raises(ValueError, match="side"):
        canonicalise(j, torch.tensor([1, 0]))
    with pytest.raises(TypeError, match="joints"):
        canonicalise(j.numpy(), "right")
    with pytest.raises(TypeError, match="joints"):
        canonicalise(j.long(), "right")


def test_query_transform_shape_errors(golden):
    c = canonicalise(_two_hands(golden), "right")
    with pytest.raises(ValueError, match="points"):
        points_to_query(torch.zeros(2, 5, 2), c.wrist, c.root_rot_mat, "right")
    with pytest.raises(ValueError, match="batch"):
        query_to_points(torch.zeros(3, 5, 3), c.wrist, c.root_rot_mat, "right")
    with pytest.raises(ValueError, match="root_rot_mat"):
        query_to_points(torch.zeros(2, 5, 3), c.wrist, c.root_rot_mat[:, :3], "right")


# --- gradients ------------------------------------------------------------------------------------------

def test_gradcheck_float64_path(golden):
    joints = torch.from_numpy(golden["canon_extra"]["joints_world"][[0, 1]]).clone().requires_grad_(True)
    is_right = torch.tensor([True, False])

    def f(j):
        c = canonicalise(j, is_right, official_quirks=False)
        return c.unpose, c.bone_lengths, c.root_rot_mat

    assert torch.autograd.gradcheck(f, (joints,), eps=1e-7, atol=1e-6, rtol=1e-5)


def test_gradients_finite_official_path(golden):
    joints = torch.from_numpy(golden["canon_extra"]["joints_world"][:4]).clone().requires_grad_(True)
    c = canonicalise(joints, "right")
    (c.unpose.sum() + c.bone_lengths.sum()).backward()
    assert torch.isfinite(joints.grad).all() and joints.grad.abs().sum() > 0
