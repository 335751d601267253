"""Rotation conversions used by the hand models.

Convention: a rotation is applied to column vectors, ``x' = R @ x``. An axis-angle vector ``v`` rotates
by ``|v|`` radians anticlockwise (right-hand rule) about the unit axis ``v / |v|``; this is MANO's,
smplx's and manopth's pose parameterisation.
"""

from __future__ import annotations

import torch
from torch import Tensor

from im2hands._checks import check_shape

_SMALL_ANGLE_SQ = 1e-6
"""Below this squared angle (rad^2) the Rodrigues coefficients use their Taylor series (error < 1e-14)."""


def skew(v: Tensor) -> Tensor:
    """Cross-product matrices: ``skew(v) @ x == cross(v, x)``.

    Args:
        v: (..., 3) vectors.
    Returns:
        (..., 3, 3) skew-symmetric matrices, same dtype and device as `v`.
    """
    check_shape(v, "... 3", "v")
    x, y, z = v.unbind(-1)
    zero = torch.zeros_like(x)
    rows = (zero, -z, y, z, zero, -x, -y, x, zero)
    return torch.stack(rows, dim=-1).reshape(*v.shape[:-1], 3, 3)


def batch_rodrigues(axis_angle: Tensor) -> Tensor:
    """Rotation matrices from axis-angle vectors (Rodrigues' formula).

    ``R = I + a K + b K^2`` with ``K = skew(v)``, ``a = sin(t)/t``, ``b = (1 - cos t)/t^2``, ``t = |v|``.
    ``b`` is evaluated as ``2 sin^2(t/2) / t^2`` (no cancellation in float32), and both coefficients switch
    to their Taylor series near ``t = 0``, so the result and its gradient are exact and finite at zero
    (unlike ``v / (|v| + eps)`` formulations).

    Args:
        axis_angle: (..., 3) axis-angle vectors, radians.
    Returns:
        (..., 3, 3) rotation matrices, same dtype and device as the input.
    """
    check_shape(axis_angle, "... 3", "axis_angle")
    theta_sq = (axis_angle * axis_angle).sum(-1)  # (...)
    small = theta_sq < _SMALL_ANGLE_SQ
    safe_sq = torch.where(small, torch.ones_like(theta_sq), theta_sq)
    theta = safe_sq.sqrt()
    a = torch.where(small, 1.0 - theta_sq / 6.0, torch.sin(theta) / theta)
    half_sin = torch.sin(0.5 * theta)
    b = torch.where(small, 0.5 - theta_sq / 24.0, 2.0 * half_sin * half_sin / safe_sq)
    k = skew(axis_angle)  # (..., 3, 3)
    eye = torch.eye(3, dtype=axis_angle.dtype, device=axis_angle.device)
    return eye + a[..., None, None] * k + b[..., None, None] * (k @ k)


def axis_angle_to_matrix(axis_angle: Tensor) -> Tensor:
    """Alias of :func:`batch_rodrigues`: (..., 3) axis-angle, radians -> (..., 3, 3) rotation matrices."""
    return batch_rodrigues(axis_angle)


def matrix_to_axis_angle(matrix: Tensor) -> Tensor:
    """Axis-angle vectors from rotation matrices (the inverse of :func:`batch_rodrigues`).

    The angle is returned in [0, pi]. Near pi the axis is taken from the symmetric part ``(R + R^T)/2``,
    so the result is accurate everywhere (up to the sign ambiguity of a rotation by exactly pi).

    Args:
        matrix: (..., 3, 3) rotation matrices.
    Returns:
        (..., 3) axis-angle vectors, radians.
    """
    check_shape(matrix, "... 3 3", "matrix")
    trace = matrix[..., 0, 0] + matrix[..., 1, 1] + matrix[..., 2, 2]
    cos = ((trace - 1.0) * 0.5).clamp(-1.0, 1.0)
    # 2 sin(t) * axis from the antisymmetric part
    w = torch.stack(
        (matrix[..., 2, 1] - matrix[..., 1, 2],
         matrix[..., 0, 2] - matrix[..., 2, 0],
         matrix[..., 1, 0] - matrix[..., 0, 1]), dim=-1)
    sin = 0.5 * w.norm(dim=-1)
    theta = torch.atan2(sin, cos)
    # generic case: axis * theta = w * theta / (2 sin)
    small = sin < 1e-4
    factor = torch.where(small, 0.5 + theta * theta / 12.0, 0.5 * theta / torch.where(small, 1.0, sin))
    generic = w * factor[..., None]
    # near pi: the symmetric part is cos I + (1 - cos) a a^T; the column of (1 - cos) a a^T with the
    # largest diagonal entry is parallel to the axis a
    sym = 0.5 * (matrix + matrix.transpose(-1, -2))
    outer = sym - cos[..., None, None] * torch.eye(3, dtype=matrix.dtype, device=matrix.device)
    diag = torch.diagonal(outer, dim1=-2, dim2=-1)
    col = diag.argmax(-1)
    axis = torch.take_along_dim(outer, col[..., None, None].expand(*col.shape, 3, 1), dim=-1)[..., 0]
    axis = axis / axis.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    # orient the axis consistently with the antisymmetric part
    sign = torch.where((axis * w).sum(-1) < 0, -1.0, 1.0).to(matrix.dtype)
    near_pi = cos < -0.99
    return torch.where(near_pi[..., None], axis * (theta * sign)[..., None], generic)
