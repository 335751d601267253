import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from im2hands.hand.rotations import batch_rodrigues, matrix_to_axis_angle, skew


def _axis_angles(n: int, seed: int = 0) -> np.ndarray:
    """Random axis-angles with angles spread over [0, pi), plus tiny and near-pi ones."""
    rng = np.random.default_rng(seed)
    axes = rng.normal(size=(n, 3))
    axes /= np.linalg.norm(axes, axis=1, keepdims=True)
    angles = np.concatenate([rng.uniform(0, np.pi, n - 8), [0.0, 1e-9, 1e-5, 1e-3, 2e-3, np.pi - 1e-3,
                                                             np.pi - 1e-6, 3.0]])
    return axes * angles[:, None]


def test_rodrigues_matches_scipy_float64():
    aa = _axis_angles(200)
    ours = batch_rodrigues(torch.from_numpy(aa)).numpy()
    ref = Rotation.from_rotvec(aa).as_matrix()
    np.testing.assert_allclose(ours, ref, atol=1e-14, rtol=0)


def test_rodrigues_float32_close_to_float64_and_orthonormal():
    aa = torch.from_numpy(_axis_angles(200, seed=1))
    r32 = batch_rodrigues(aa.float())
    r64 = batch_rodrigues(aa)
    assert (r32.double() - r64).abs().max() < 1e-6
    eye = torch.eye(3, dtype=torch.float64)
    assert (r64 @ r64.transpose(-1, -2) - eye).abs().max() < 1e-14
    torch.testing.assert_close(torch.linalg.det(r64), torch.ones(200, dtype=torch.float64))


def test_rodrigues_zero_is_identity_with_finite_gradient():
    aa = torch.zeros(2, 5, 3, dtype=torch.float64, requires_grad=True)
    rot = batch_rodrigues(aa)
    assert rot.shape == (2, 5, 3, 3)
    assert torch.equal(rot.detach(), torch.eye(3, dtype=torch.float64).expand(2, 5, 3, 3))
    (rot * torch.randn_like(rot)).sum().backward()
    assert torch.isfinite(aa.grad).all()
    # d R / d a at zero is skew(e_a): the gradient of sum(R * G) is the "vee" of G's antisymmetric part
    g = torch.randn(3, 3, dtype=torch.float64)
    a0 = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    (batch_rodrigues(a0) * g).sum().backward()
    expected = torch.stack([g[2, 1] - g[1, 2], g[0, 2] - g[2, 0], g[1, 0] - g[0, 1]])
    torch.testing.assert_close(a0.grad, expected)


@pytest.mark.parametrize("scale", [1e-4, 1.0])
def test_rodrigues_gradcheck(scale):
    aa = (torch.randn(4, 3, dtype=torch.float64) * scale).requires_grad_()
    assert torch.autograd.gradcheck(batch_rodrigues, (aa,))


def test_skew_is_cross_product():
    v, x = torch.randn(6, 3, dtype=torch.float64), torch.randn(6, 3, dtype=torch.float64)
    torch.testing.assert_close((skew(v) @ x[..., None])[..., 0], torch.linalg.cross(v, x))


def test_matrix_to_axis_angle_round_trip():
    aa = torch.from_numpy(_axis_angles(300, seed=2))
    back = matrix_to_axis_angle(batch_rodrigues(aa))
    # same rotation (angles < pi, so the axis-angle is unique up to the exact-pi case)
    torch.testing.assert_close(batch_rodrigues(back), batch_rodrigues(aa), atol=1e-9, rtol=0)
    not_pi = aa.norm(dim=-1) < np.pi - 1e-4
    torch.testing.assert_close(back[not_pi], aa[not_pi], atol=1e-9, rtol=0)


def test_shape_errors_name_the_argument():
    with pytest.raises(ValueError, match="axis_angle"):
        batch_rodrigues(torch.zeros(4, 2))
    with pytest.raises(ValueError, match="matrix"):
        matrix_to_axis_angle(torch.zeros(4, 3))
