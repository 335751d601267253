"""The two-hand crop: a full-size image, its intrinsics and both hands' 3D keypoints -> the 256 x 256 network
input and the intrinsics of that crop.

IntagHand's rule (which the official Im2Hands data follows): the bounding box of both hands' projected
joints, made square around its centre with side ``max(w, h) / ratio`` (ratio 0.8: the hands fill 80 % of the
longer side), resampled to ``size`` x ``size``. Pixels of the box outside the image are black.

Pixel convention: OpenCV's, pixel centres at integer coordinates, ``uv = K X / z``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CROP_SIZE = 256
"""Side of the network input, pixels."""
CROP_RATIO = 0.8
"""Longer side of the hands' box / side of the crop (IntagHand)."""


@dataclass(frozen=True)
class Crop:
    """A square crop of an image and its intrinsics."""

    image: np.ndarray
    """(size, size, 3) uint8 RGB."""
    K: np.ndarray
    """(3, 3) float64 intrinsics of the crop (same camera frame as the input's K)."""
    box: tuple[float, float, float]
    """(u0, v0, side): the crop's top-left pixel centre and side in the input image, pixels."""

    @property
    def scale(self) -> float:
        """Crop pixels per input pixel."""
        return self.image.shape[0] / self.box[2]


def project(points_cam: np.ndarray, K: np.ndarray) -> np.ndarray:
    """(..., 3) camera-frame points, metres -> (..., 2) pixels under intrinsics `K` (3, 3)."""
    uvw = points_cam @ np.asarray(K, np.float64).T
    return uvw[..., :2] / uvw[..., 2:3]


def crop_box(joints_cam: np.ndarray, K: np.ndarray, *, ratio: float = CROP_RATIO) -> tuple[float, float, float]:
    """The square box around both hands' projected joints: (u0, v0, side) in pixels.

    Args:
        joints_cam: (J, 3) joints of both hands in the camera frame, metres, all with z > 0.
        K: (3, 3) intrinsics of the image.
        ratio: longer side of the joints' box / side of the crop, in (0, 1].
    """
    joints_cam = np.asarray(joints_cam, np.float64)
    if joints_cam.ndim != 2 or joints_cam.shape[1] != 3 or len(joints_cam) < 2:
        raise ValueError(f"joints_cam: expected shape (J >= 2, 3), got {joints_cam.shape}")
    if not np.all(np.isfinite(joints_cam)):
        raise ValueError("joints_cam: contains NaN or inf (a hand's keypoints are missing)")
    if np.any(joints_cam[:, 2] <= 0):
        j = int(np.argmin(joints_cam[:, 2]))
        raise ValueError(f"joints_cam: joint {j} is behind the camera (z = {joints_cam[j, 2]:.4f} m)")
    if not 0 < ratio <= 1:
        raise ValueError(f"ratio: expected a value in (0, 1], got {ratio}")
    uv = project(joints_cam, K)
    lo, hi = uv.min(0), uv.max(0)
    side = float((hi - lo).max()) / ratio
    if side <= 0:
        raise ValueError("joints_cam: every joint projects to the same pixel")
    centre = (lo + hi) / 2
    return float(centre[0] - side / 2), float(centre[1] - side / 2), side


def crop_intrinsics(K: np.ndarray, box: tuple[float, float, float], size: int = CROP_SIZE) -> np.ndarray:
    """Intrinsics of the crop `box` = (u0, v0, side) resampled to `size` pixels: ``K' = S K``."""
    u0, v0, side = box
    s = size / side
    S = np.array([[s, 0.0, -s * u0], [0.0, s, -s * v0], [0.0, 0.0, 1.0]])
    return S @ np.asarray(K, np.float64)


def crop_image(image: np.ndarray, box: tuple[float, float, float], size: int = CROP_SIZE) -> np.ndarray:
    """Resample `box` = (u0, v0, side) of `image` (H, W, 3) uint8 to (size, size, 3), bilinear, black outside.

    Output pixel centre ``u'`` samples input position ``u0 + u' / s`` with ``s = size / side``, the inverse
    of :func:`crop_intrinsics`.
    """
    from PIL import Image

    u0, v0, side = box
    s = size / side
    # PIL's affine maps output to input in pixel-corner coordinates (centres at +0.5).
    a = 1.0 / s
    coeffs = (a, 0.0, u0 + 0.5 - 0.5 * a, 0.0, a, v0 + 0.5 - 0.5 * a)
    # Downscaling by more than 2 aliases with plain bilinear sampling: pre-shrink with a box filter.
    pil = Image.fromarray(image)
    factor = int(1.0 / s) if s < 0.5 else 1
    if factor > 1:
        pil = pil.reduce(factor)
        a = a / factor
        coeffs = (a, 0.0, (u0 + 0.5) / factor - 0.5 * a, 0.0, a, (v0 + 0.5) / factor - 0.5 * a)
    out = pil.transform((size, size), Image.Transform.AFFINE, coeffs, resample=Image.Resampling.BILINEAR,
                        fillcolor=(0, 0, 0))
    return np.array(out)  # a writable copy


def as_rgb_array(image) -> np.ndarray:
    """A path, PIL image or array -> (H, W, 3) uint8 RGB (grey and RGBA converted)."""
    from PIL import Image

    if isinstance(image, (str, bytes)) or hasattr(image, "__fspath__"):
        try:
            with Image.open(image) as im:
                return np.asarray(im.convert("RGB"))
        except OSError as e:
            raise ValueError(f"image: cannot read {image} ({e})") from None
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"))
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=-1)
    if arr.ndim != 3 or arr.shape[-1] not in (3, 4):
        raise ValueError(f"image: expected (H, W, 3) RGB, got shape {arr.shape}")
    arr = arr[..., :3]
    if arr.dtype != np.uint8:
        if np.issubdtype(arr.dtype, np.floating) and arr.size and float(np.nanmax(arr)) <= 1.0:
            arr = arr * 255.0
        if not np.all(np.isfinite(arr)):
            raise ValueError("image: contains NaN or inf")
        arr = np.clip(np.rint(arr), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(arr)


def crop_two_hands(image, K: np.ndarray, joints_cam: np.ndarray, *, ratio: float = CROP_RATIO,
                   size: int = CROP_SIZE, require_inside: bool = True) -> Crop:
    """The network input for both hands of a full-size image.

    Args:
        image: path, PIL image or (H, W, 3) array (uint8, or float in [0, 1]).
        K: (3, 3) intrinsics of `image`, pixels.
        joints_cam: (J, 3) keypoints of both hands in the camera frame, metres.
        ratio, size: see :data:`CROP_RATIO`, :data:`CROP_SIZE`.
        require_inside: raise if a keypoint projects outside the image (the crop would show no hand there).
    Returns:
        :class:`Crop`.
    """
    rgb = as_rgb_array(image)
    K = np.asarray(K, np.float64)
    if K.shape != (3, 3) or not np.all(np.isfinite(K)) or K[0, 0] <= 0 or K[1, 1] <= 0:
        raise ValueError(f"K: expected (3, 3) intrinsics with positive focal lengths, got {K.tolist()}")
    box = crop_box(joints_cam, K, ratio=ratio)
    if require_inside:
        uv = project(np.asarray(joints_cam, np.float64), K)
        h, w = rgb.shape[:2]
        outside = np.nonzero((uv[:, 0] < -0.5) | (uv[:, 0] > w - 0.5) | (uv[:, 1] < -0.5) | (uv[:, 1] > h - 0.5))[0]
        if len(outside):
            j = int(outside[0])
            raise ValueError(f"keypoints: joint {j} projects to pixel ({uv[j, 0]:.1f}, {uv[j, 1]:.1f}), outside the "
                             f"{w}x{h} image ({len(outside)} joints outside); check the camera and the keypoints' frame")
    return Crop(image=crop_image(rgb, box, size), K=crop_intrinsics(K, box, size), box=box)
