import numpy as np
import pytest
import torch

from im2hands.hand import lbs as L
from im2hands.hand.rotations import batch_rodrigues
from im2hands.hand.skeleton import MANO_KINTREE_PARENTS

PARENTS = MANO_KINTREE_PARENTS
DT = torch.float64


def _slow_chain(rot, joints, parents):
    """Reference: compose the transforms one joint at a time, in plain Python."""
    b, k = joints.shape[:2]
    out = torch.zeros(b, k, 4, 4, dtype=rot.dtype)
    for n in range(b):
        for j in range(k):
            local = torch.eye(4, dtype=rot.dtype)
            local[:3, :3] = rot[n, j]
            local[:3, 3] = joints[n, j] - (joints[n, parents[j]] if parents[j] >= 0 else 0)
            out[n, j] = local if parents[j] < 0 else out[n, parents[j]] @ local
    return out


@pytest.mark.parametrize("parents", [PARENTS, (-1, 0, 0, 1, 1, 2, 5, 6)])
def test_rigid_transform_matches_slow_chain(parents):
    torch.manual_seed(0)
    b, k = 3, len(parents)
    rot = batch_rodrigues(torch.randn(b, k, 3, dtype=DT))
    joints = torch.randn(b, k, 3, dtype=DT)
    res = L.batch_rigid_transform(rot, joints, parents)
    ref = _slow_chain(rot, joints, parents)
    torch.testing.assert_close(res.joint_transforms, ref, atol=1e-12, rtol=0)
    # the skinning transform maps each rest joint to its posed place, with the joint's rotation
    homog = torch.cat([joints, torch.ones(b, k, 1, dtype=DT)], -1)
    posed = (res.skinning_transforms @ homog[..., None])[..., :3, 0]
    torch.testing.assert_close(posed, ref[..., :3, 3], atol=1e-12, rtol=0)
    torch.testing.assert_close(res.skinning_transforms[..., :3, :3], ref[..., :3, :3])


def test_skin_vertices_matches_slow_loop():
    torch.manual_seed(1)
    b, v, k = 2, 7, 4
    verts = torch.randn(b, v, 3, dtype=DT)
    weights = torch.rand(v, k, dtype=DT)
    tfs = torch.randn(b, k, 4, 4, dtype=DT)
    tfs[..., 3, :] = torch.tensor([0, 0, 0, 1.0], dtype=DT)
    out = L.skin_vertices(verts, weights, tfs)
    ref = torch.zeros_like(verts)
    for n in range(b):
        for i in range(v):
            t = sum(weights[i, j] * tfs[n, j] for j in range(k))
            ref[n, i] = (t @ torch.cat([verts[n, i], torch.ones(1, dtype=DT)]))[:3]
    torch.testing.assert_close(out, ref, atol=1e-12, rtol=0)


def test_blend_shapes_and_pose_features_known_values():
    shapedirs = torch.arange(2 * 3 * 4, dtype=DT).reshape(2, 3, 4)
    betas = torch.tensor([[1.0, 0, 0, 0], [0, 0, 2.0, 0]], dtype=DT)
    out = L.blend_shapes(betas, shapedirs)
    torch.testing.assert_close(out[0], shapedirs[..., 0])
    torch.testing.assert_close(out[1], 2 * shapedirs[..., 2])
    # identity rotations give zero pose features and no pose displacement
    rot = torch.eye(3, dtype=DT).expand(2, 16, 3, 3)
    assert torch.equal(L.pose_features(rot), torch.zeros(2, 135, dtype=DT))
    posedirs = torch.randn(5, 3, 135, dtype=DT)
    assert torch.equal(L.pose_blend_shapes(rot, posedirs), torch.zeros(2, 5, 3, dtype=DT))
    # one feature switched on selects one blend shape (row-major flattening of R_1 - I, R_2 - I, ...)
    rot = rot.clone()
    rot[0, 2, 1, 0] += 1.0  # joint 2, entry (1, 0) -> feature 9 * (2 - 1) + 3 * 1 + 0 = 12
    torch.testing.assert_close(L.pose_blend_shapes(rot, posedirs)[0], posedirs[..., 12])


def test_lbs_zero_pose_is_the_shaped_template():
    torch.manual_seed(2)
    v, k = 30, 16
    v_template = torch.randn(v, 3, dtype=DT)
    shapedirs = torch.randn(v, 3, 10, dtype=DT)
    betas = torch.randn(2, 10, dtype=DT)
    reg = torch.rand(k, v, dtype=DT)
    reg /= reg.sum(1, keepdim=True)
    weights = torch.rand(v, k, dtype=DT)
    weights /= weights.sum(1, keepdim=True)
    rot = torch.eye(3, dtype=DT).expand(2, k, 3, 3)
    res = L.lbs(betas, rot, v_template, shapedirs, torch.randn(v, 3, 135, dtype=DT), reg, PARENTS, weights)
    shaped = v_template + torch.einsum("bs,vcs->bvc", betas, shapedirs)
    torch.testing.assert_close(res.vertices, shaped)
    torch.testing.assert_close(res.rest_joints, torch.einsum("kv,bvc->bkc", reg, shaped))
    torch.testing.assert_close(res.joint_transforms[..., :3, 3], res.rest_joints)


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match="betas"):
        L.blend_shapes(torch.zeros(2, 5), torch.zeros(4, 3, 10))
    with pytest.raises(ValueError, match="parents"):
        L.check_parents([0, 0, 1])
    with pytest.raises(ValueError, match="joint 2 has parent 3"):
        L.check_parents([-1, 0, 3, 1])
    with pytest.raises(ValueError, match="parents"):
        L.batch_rigid_transform(torch.eye(3).expand(1, 4, 3, 3), torch.zeros(1, 4, 3), [-1, 0, 1])
    with pytest.raises(ValueError, match="posedirs"):
        L.pose_blend_shapes(torch.eye(3).expand(1, 16, 3, 3), torch.zeros(5, 3, 10))


def test_chain_is_differentiable():
    rot_aa = torch.randn(2, 16, 3, dtype=DT, requires_grad=True)
    joints = torch.randn(2, 16, 3, dtype=DT, requires_grad=True)

    def f(a, j):
        return L.batch_rigid_transform(batch_rodrigues(a), j, PARENTS).skinning_transforms

    assert torch.autograd.gradcheck(f, (rot_aa, joints))
    assert np.isfinite(f(rot_aa, joints).sum().item())
