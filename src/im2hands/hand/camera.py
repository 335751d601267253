"""The camera: one pinhole type (K, R, T), OpenCV convention, for the networks, the data and rendering.

Convention (``docs/CONVENTIONS.md``): camera x right, y down, z forward; a world point X (metres) maps to
``x_cam = R X + T`` and to the pixel ``K x_cam / z_cam``. Pixel centres are at integer coordinates.

:class:`Camera` holds numpy arrays (one camera: K (3, 3), R (3, 3), T (3,); the data generator) or torch
tensors (a batch: K (B, 3, 3), R (B, 3, 3), T (B, 3); the networks). :func:`look_at` is the only look-at.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from im2hands.hand.frames import world_to_camera


def _swap(a):
    return a.transpose(-1, -2) if isinstance(a, Tensor) else np.swapaxes(a, -1, -2)


@dataclass(frozen=True)
class Camera:
    """A pinhole camera of a square image (OpenCV convention), one camera (numpy) or a batch (torch)."""

    K: np.ndarray | Tensor
    """(3, 3) or (B, 3, 3) intrinsics of the ``size`` x ``size`` image, pixels."""
    R: np.ndarray | Tensor
    """(3, 3) or (B, 3, 3) world -> camera rotation."""
    T: np.ndarray | Tensor
    """(3,) or (B, 3) world -> camera translation, metres."""
    size: int = 256
    """Image width and height, pixels."""

    def __post_init__(self):
        lead = tuple(self.R.shape[:-2])
        for name, value, tail in (("K", self.K, (3, 3)), ("R", self.R, (3, 3)), ("T", self.T, (3,))):
            if not isinstance(value, (np.ndarray, Tensor)):
                raise TypeError(f"camera.{name}: expected a numpy array or a torch tensor, got {type(value).__name__}")
            shape = tuple(value.shape)
            if shape[len(shape) - len(tail):] != tail or len(shape) != len(lead) + len(tail) or len(lead) > 1:
                want = "(3, 3) or (B, 3, 3)" if tail == (3, 3) else "(3,) or (B, 3)"
                raise ValueError(f"camera.{name}: expected shape {want}, got {shape}")
            if tuple(shape[:len(lead)]) != lead:
                raise ValueError(f"camera.{name} and camera.R: mismatched batch size ({shape[0]} vs {lead[0]})")
            finite = torch.isfinite(value).all() if isinstance(value, Tensor) else np.isfinite(value).all()
            if not bool(finite):
                raise ValueError(f"camera.{name}: contains NaN or inf")

    @property
    def batch_size(self) -> int:
        """B for a batch of cameras; raises for a single camera."""
        if self.R.ndim != 3:
            raise ValueError("camera: a single camera has no batch size")
        return self.R.shape[0]

    def to_camera(self, points_world):
        """World points -> camera frame, metres: ``x_cam = R x + T``.

        Args:
            points_world: (..., 3) array for a single camera (float64 result), or a (B, N, 3) tensor for a
                batch (dtype of the points).
        """
        if isinstance(self.R, Tensor):
            return world_to_camera(points_world, self.R, self.T)
        return np.asarray(points_world, dtype=np.float64) @ self.R.T + self.T

    def project(self, points_world):
        """World points -> pixel coordinates ``K x_cam / z`` ((..., 2), u right, v down)."""
        cam = self.to_camera(points_world)
        K = self.K.to(cam.dtype) if isinstance(cam, Tensor) else self.K
        uvw = cam @ _swap(K)
        return uvw[..., :2] / uvw[..., 2:3]

    @property
    def centre_world(self):
        """(3,) or (B, 3) position of the camera centre in the world frame, metres."""
        if isinstance(self.R, Tensor):
            return -(self.R.transpose(-1, -2) @ self.T.unsqueeze(-1))[..., 0]
        return -self.R.T @ self.T


def look_at(eye: np.ndarray, target: np.ndarray, up: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """World -> camera rotation and translation of a camera at `eye` looking at `target` (OpenCV axes).

    Args:
        eye, target: (3,) world points, metres.
        up: (3,) world direction that appears upwards in the image (camera -y); must not be parallel to
            the viewing direction.
    Returns:
        ``(R (3, 3), T (3,))`` float64 with ``R (target - eye)`` along +z.
    """
    eye, target, up = (np.asarray(x, dtype=np.float64) for x in (eye, target, up))
    z = target - eye
    if np.linalg.norm(z) < 1e-9:
        raise ValueError("eye, target: the camera centre coincides with the target")
    z = z / np.linalg.norm(z)
    x = np.cross(z, up)  # image right = forward x up
    if np.linalg.norm(x) < 1e-6:
        raise ValueError("up: parallel to the viewing direction")
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    R = np.stack([x, y, z])
    return R, -R @ eye
