"""The two-hand crop: box rule, intrinsics that agree with the resampled pixels, errors."""

import numpy as np
import pytest

from im2hands.data.crop import crop_box, crop_intrinsics, crop_two_hands, project

K = np.array([[900.0, 0.0, 320.0], [0.0, 880.0, 240.0], [0.0, 0.0, 1.0]])


def _joints(seed=0, n=42):
    rng = np.random.default_rng(seed)
    return np.c_[rng.uniform(-0.08, 0.08, n), rng.uniform(-0.06, 0.06, n), rng.uniform(0.5, 0.7, n)]


def test_box_is_square_centred_and_fills_ratio():
    j = _joints()
    u0, v0, side = crop_box(j, K, ratio=0.8)
    uv = project(j, K)
    lo, hi = uv.min(0), uv.max(0)
    np.testing.assert_allclose([u0 + side / 2, v0 + side / 2], (lo + hi) / 2, atol=1e-9)
    assert side == pytest.approx((hi - lo).max() / 0.8)
    # in the crop, the joints' longer extent is 80 % of 256 pixels and centred
    uvc = project(j, crop_intrinsics(K, (u0, v0, side)))
    ext = uvc.max(0) - uvc.min(0)
    assert ext.max() == pytest.approx(0.8 * 256)
    np.testing.assert_allclose((uvc.max(0) + uvc.min(0)) / 2, [128, 128], atol=1e-9)


@pytest.mark.parametrize("shape", [(480, 640), (2000, 3000)])   # upscaled and strongly downscaled crops
def test_crop_pixels_agree_with_crop_intrinsics(shape):
    """Bright dots drawn at projected joints appear where the crop's K projects them."""
    h, w = shape
    scale = w / 640
    Kf = K.copy()
    Kf[:2] *= scale
    j = _joints(1, n=6)
    img = np.zeros((h, w, 3), np.uint8)
    r = max(1, int(3 * scale))
    for u, v in project(j, Kf):
        ui, vi = int(round(u)), int(round(v))
        img[vi - r:vi + r + 1, ui - r:ui + r + 1] = 255
    crop = crop_two_hands(img, Kf, j)
    assert crop.image.shape == (256, 256, 3) and crop.image.dtype == np.uint8
    grey = crop.image[..., 0].astype(float)
    for u, v in project(j, crop.K):
        ui, vi = int(round(u)), int(round(v))
        win = grey[max(vi - 4, 0):vi + 5, max(ui - 4, 0):ui + 5]
        ys, xs = np.nonzero(win > 0.5 * win.max())
        cy = (ys * win[ys, xs]).sum() / win[ys, xs].sum() + max(vi - 4, 0)
        cx = (xs * win[ys, xs]).sum() / win[ys, xs].sum() + max(ui - 4, 0)
        assert abs(cx - u) < 1.0 and abs(cy - v) < 1.0, (cx, cy, u, v)


def test_errors_name_the_problem():
    img = np.zeros((480, 640, 3), np.uint8)
    j = _joints()
    with pytest.raises(ValueError, match="joint 3 projects to pixel"):
        far = j.copy()
        far[3, 0] = 1.0
        crop_two_hands(img, K, far)
    with pytest.raises(ValueError, match="NaN"):
        bad = j.copy()
        bad[21:] = np.nan
        crop_two_hands(img, K, bad)
    with pytest.raises(ValueError, match="behind the camera"):
        bad = j.copy()
        bad[5, 2] = -0.1
        crop_two_hands(img, K, bad)
    with pytest.raises(ValueError, match="K: expected"):
        crop_two_hands(img, np.eye(2), j)
    with pytest.raises(ValueError, match="image: expected"):
        crop_two_hands(np.zeros((4, 4, 5)), K, j)
