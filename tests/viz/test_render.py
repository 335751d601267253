"""The CPU renderer: pixel convention of K, masks and occlusion, determinism, varied backgrounds."""

import numpy as np
import pytest
import trimesh

from im2hands.viz.render import HandRenderer, random_appearance, random_background

K = np.array([[400.0, 0.0, 120.0], [0.0, 420.0, 135.0], [0.0, 0.0, 1.0]])


@pytest.fixture(scope="module")
def renderer():
    with HandRenderer(256) as r:
        yield r


def _sphere(centre, radius):
    m = trimesh.creation.icosphere(subdivisions=3, radius=radius)
    return m.vertices + np.asarray(centre), m.faces


def test_projection_follows_K_opencv_convention(renderer):
    # Two spheres apart: each silhouette's centroid is the projection of its centre (symmetric shapes).
    right, left = np.array([0.05, -0.03, 0.6]), np.array([-0.06, 0.04, 0.7])
    res = renderer.render({"right": _sphere(right, 0.02), "left": _sphere(left, 0.025)}, K,
                          random_appearance(np.random.default_rng(0)))
    for centre, value in ((right, 1), (left, 2)):
        v, u = np.nonzero(res.labels == value)
        proj = K @ centre
        np.testing.assert_allclose([u.mean(), v.mean()], proj[:2] / proj[2], atol=0.15)
        # silhouette radius matches the projected sphere radius (area = pi r^2)
    r_px = np.sqrt((res.labels == 1).sum() / np.pi)
    assert abs(r_px - 400 * 0.02 / np.sqrt(0.6**2 - 0.02**2)) < 0.6


def test_masks_and_occlusion(renderer):
    # The right sphere sits in front of the left one and hides part of it.
    front, back = np.array([0.0, 0.0, 0.5]), np.array([0.02, 0.0, 0.6])
    res = renderer.render({"right": _sphere(front, 0.03), "left": _sphere(back, 0.03)}, K,
                          random_appearance(np.random.default_rng(1)))
    right_vis, left_vis = res.labels == 1, res.labels == 2
    np.testing.assert_array_equal(right_vis, res.silhouette_right)  # front hand: fully visible
    assert (left_vis <= res.silhouette_left).all()
    hidden = res.silhouette_left & ~left_vis
    assert hidden.sum() > 100
    np.testing.assert_array_equal(hidden, res.silhouette_left & res.silhouette_right)
    # the hands are shaded (not flat) and differ from the background where they are
    rgb = res.rgb.astype(float)
    assert rgb[right_vis].std(axis=0).mean() > 2.0


def _render_once(seed: int) -> bytes:
    meshes = {"right": _sphere((0.02, 0.0, 0.5), 0.03), "left": _sphere((-0.03, 0.01, 0.55), 0.03)}
    with HandRenderer(256) as r:
        res = r.render(meshes, K, random_appearance(np.random.default_rng(seed)))
    return res.rgb.tobytes() + res.labels.tobytes()


def test_render_is_deterministic_across_renderers_and_processes(renderer):
    here = _render_once(2)
    with HandRenderer(256):  # a second renderer shares the context; closing it keeps `renderer`
        pass
    assert _render_once(2) == here
    import multiprocessing as mp

    with mp.get_context("spawn").Pool(1) as pool:
        there = pool.apply(_render_once, (2,))
    assert there == here


def test_background_is_varied_and_seeded():
    a = random_background(np.random.default_rng(3))
    assert a.shape == (256, 256, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, random_background(np.random.default_rng(3)))
    assert not np.array_equal(a, random_background(np.random.default_rng(4)))
    # non-uniform: large spread overall and between image quarters
    assert a.astype(float).std() > 10
    quarters = [a[:128, :128], a[:128, 128:], a[128:, :128], a[128:, 128:]]
    assert np.ptp([q.astype(float).mean() for q in quarters]) > 1


def test_skin_tones_differ_between_samples():
    skins = np.array([random_appearance(np.random.default_rng(s)).skin_right for s in range(40)])
    assert np.ptp(skins.mean(axis=1)) > 0.3  # light and dark tones both occur
    pairs = [random_appearance(np.random.default_rng(s)) for s in range(40)]
    assert any(not np.allclose(p.skin_left, p.skin_right, atol=0.05) for p in pairs)


def test_bad_input(renderer):
    look = random_appearance(np.random.default_rng(0))
    with pytest.raises(ValueError, match="in front of the camera"):
        renderer.render({"right": _sphere((0, 0, -0.5), 0.03), "left": _sphere((0, 0, 0.5), 0.03)}, K, look)
    with pytest.raises(ValueError, match="meshes"):
        renderer.render({"right": _sphere((0, 0, 0.5), 0.03)}, K, look)
    with pytest.raises(ValueError, match="K"):
        renderer.render({"right": _sphere((0, 0, 0.5), 0.03), "left": _sphere((0, 0, 0.5), 0.03)}, K[:2], look)
