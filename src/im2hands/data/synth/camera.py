"""Cameras of the synthetic scenes: a random viewpoint around the hands and the normalised 256x256 crop.

Convention (OpenCV, as everywhere in im2hands): camera x right, y down, z forward; a world point X (metres)
maps to ``x_cam = R X + T`` and to the pixel ``K x_cam / z_cam``. Pixel centres are at integer
coordinates.

Crop (IntagHand-style normalisation): the intrinsics are chosen so that the bounding box of both hands'
projected vertices is centred in the ``size`` x ``size`` image and its longer side is ``fill * size``
(0.8 * 256 = 204.8 pixels). Square pixels; the principal point follows from the centring.
"""

from __future__ import annotations

import numpy as np

from im2hands.hand.camera import Camera, look_at

__all__ = ["Camera", "crop_intrinsics", "look_at", "sample_camera"]


def crop_intrinsics(points_cam: np.ndarray, size: int = 256, fill: float = 0.8) -> np.ndarray:
    """Intrinsics that centre the projected bounding box of `points_cam` and make its longer side
    ``fill * size`` pixels.

    Args:
        points_cam: (N, 3) camera-frame points, metres, all with z > 0.
        size: image side, pixels.
        fill: longer side of the bounding box / image side, in (0, 1].
    Returns:
        (3, 3) float64 K with ``fx = fy``; the bounding box of ``K p / z`` is centred at
        ``((size - 1) / 2, (size - 1) / 2)`` and its longer side is ``fill * size``.
    """
    points_cam = np.asarray(points_cam, dtype=np.float64)
    if points_cam.ndim != 2 or points_cam.shape[1] != 3 or len(points_cam) < 2:
        raise ValueError(f"points_cam: expected shape (N >= 2, 3), got {points_cam.shape}")
    if np.any(points_cam[:, 2] <= 0):
        raise ValueError(f"points_cam: all points must be in front of the camera (z > 0); min z = "
                         f"{points_cam[:, 2].min():.4f}")
    if not 0 < fill <= 1:
        raise ValueError(f"fill: expected a value in (0, 1], got {fill}")
    xy = points_cam[:, :2] / points_cam[:, 2:3]
    lo, hi = xy.min(0), xy.max(0)
    side = float((hi - lo).max())
    if side <= 0:
        raise ValueError("points_cam: the points project to a single pixel")
    f = fill * size / side
    c = (size - 1) / 2.0 - f * (lo + hi) / 2.0
    return np.array([[f, 0.0, c[0]], [0.0, f, c[1]], [0.0, 0.0, 1.0]])


def _random_unit(rng: np.random.Generator) -> np.ndarray:
    v = rng.normal(size=3)
    return v / np.linalg.norm(v)


def sample_camera(rng: np.random.Generator, points_world: np.ndarray, *, occlusion_axis: np.ndarray | None = None,
                  occlusion_prob: float = 0.4, occlusion_cone_deg: float = 30.0,
                  distance: tuple[float, float] = (0.4, 1.0), size: int = 256, fill: float = 0.8) -> Camera:
    """A random camera looking at the centre of `points_world`, with the normalised crop intrinsics.

    The viewing direction is uniform on the sphere, except that with probability `occlusion_prob` it lies
    within `occlusion_cone_deg` of ``+-occlusion_axis`` (e.g. the line through the two hands' centres, so
    that one hand is in front of the other). The roll about the viewing direction is uniform.

    Args:
        rng: the only source of randomness.
        points_world: (N, 3) points that must fill the crop (both hands' vertices), metres.
        occlusion_axis: (3,) world direction or None (no occluding views).
        occlusion_prob: probability of a view along `occlusion_axis`.
        occlusion_cone_deg: half-angle of the cone around the axis, degrees.
        distance: range of the distance from the camera centre to the bounding-box centre, metres.
        size, fill: see :func:`crop_intrinsics`.
    Returns:
        :class:`Camera`.
    """
    points_world = np.asarray(points_world, dtype=np.float64)
    if points_world.ndim != 2 or points_world.shape[1] != 3:
        raise ValueError(f"points_world: expected shape (N, 3), got {points_world.shape}")
    centre = (points_world.min(0) + points_world.max(0)) / 2
    radius = float(np.linalg.norm(points_world - centre, axis=1).max())
    lo, hi = distance
    if not 0 < lo <= hi or lo <= radius:
        raise ValueError(f"distance: expected 0 < lo <= hi with lo > the points' radius {radius:.3f} m, got {distance}")
    forward = _random_unit(rng)
    if occlusion_axis is not None and rng.uniform() < occlusion_prob:
        axis = np.asarray(occlusion_axis, dtype=np.float64)
        axis = axis / np.linalg.norm(axis) * (1.0 if rng.uniform() < 0.5 else -1.0)
        # uniform in the spherical cap around the axis
        cos_t = rng.uniform(np.cos(np.deg2rad(occlusion_cone_deg)), 1.0)
        perp = np.cross(axis, _random_unit(rng))
        perp /= np.linalg.norm(perp)
        forward = cos_t * axis + np.sqrt(1 - cos_t ** 2) * perp
    eye = centre - forward * rng.uniform(lo, hi)
    helper = _random_unit(rng)
    up = helper - np.dot(helper, forward) * forward
    R, T = look_at(eye, centre, up / np.linalg.norm(up))  # uniform roll: `up` is uniform around `forward`
    K = crop_intrinsics(points_world @ R.T + T, size=size, fill=fill)
    return Camera(K=K, R=R, T=T, size=size)
