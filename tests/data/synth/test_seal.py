"""Wrist sealing: a centroid fan over one boundary loop (HALO's way), tested on open cylinders."""

import numpy as np
import pytest
import trimesh

from im2hands.data.synth.seal import (MANO_WRIST_RIM, boundary_loops, seal_mesh, seal_topology,
                                      seal_vertices)


def open_cylinder(n: int = 16, rings: int = 4, radius: float = 0.02, height: float = 0.05):
    """A tube of `rings` rings of `n` vertices along z, open at both ends, faces outward."""
    t = np.arange(n) * 2 * np.pi / n
    v = np.concatenate([np.stack([radius * np.cos(t), radius * np.sin(t), np.full(n, z)], 1)
                        for z in np.linspace(0, height, rings)])
    faces = []
    for r in range(rings - 1):
        for i in range(n):
            a, b = r * n + i, r * n + (i + 1) % n
            c, d = a + n, b + n
            faces += [(a, b, d), (a, d, c)]
    return v, np.asarray(faces, dtype=np.int64)


def prism_volume(n, radius, height):
    """Volume of the closed tube: a prism over a regular n-gon (planar caps)."""
    return n / 2 * radius ** 2 * np.sin(2 * np.pi / n) * height


def test_open_cylinder_has_two_loops_and_is_not_watertight():
    v, f = open_cylinder()
    assert not trimesh.Trimesh(v, f, process=False).is_watertight
    loops = boundary_loops(f)
    assert sorted(len(lp) for lp in loops) == [16, 16]


@pytest.mark.parametrize("flip", [False, True])
def test_sealing_both_ends_gives_a_closed_consistent_mesh_of_known_volume(flip):
    n, radius, height = 16, 0.02, 0.05
    v, f = open_cylinder(n, 4, radius, height)
    if flip:  # inward faces: the fans must follow the mesh's own orientation
        f = f[:, ::-1]
    bottom = np.arange(n)
    v1, f1 = seal_mesh(v, f, rim=bottom[::-1])  # any order of the rim ids
    v2, f2 = seal_mesh(v1, f1)  # the single remaining loop
    mesh = trimesh.Trimesh(v2, f2, process=False)
    assert mesh.is_watertight and mesh.is_winding_consistent
    assert v2.shape == (len(v) + 2, 3) and f2.shape == (len(f) + 2 * n, 3)
    expected = prism_volume(n, radius, height) * (-1 if flip else 1)
    np.testing.assert_allclose(mesh.volume, expected, rtol=1e-9)
    np.testing.assert_allclose(v2[len(v)], [0, 0, 0], atol=1e-12)  # bottom centroid
    np.testing.assert_allclose(v2[len(v) + 1], [0, 0, height], atol=1e-12)


def test_seal_vertices_follows_posed_vertices_in_a_batch():
    v, f = open_cylinder()
    topo = seal_topology(f, len(v), rim=np.arange(16))
    posed = np.stack([v, v * 2 + 1.0])  # (2, V, 3)
    sealed = seal_vertices(posed, topo.rim)
    assert sealed.shape == (2, len(v) + 1, 3)
    np.testing.assert_allclose(sealed[:, -1], posed[:, :16].mean(1))
    assert topo.centre == len(v)


def test_bad_rims_are_rejected():
    v, f = open_cylinder()
    with pytest.raises(ValueError, match="rim"):
        seal_topology(f, len(v), rim=np.arange(8))
    with pytest.raises(ValueError, match="exactly one boundary loop"):
        seal_topology(f, len(v))  # two loops, none chosen
    closed_v, closed_f = seal_mesh(*seal_mesh(v, f, rim=np.arange(16)))
    with pytest.raises(ValueError, match="found 0"):
        seal_topology(closed_f, len(closed_v))
    with pytest.raises(ValueError, match="faces"):
        seal_topology(f, 10)


def test_mano_wrist_rim_is_sixteen_distinct_vertices():
    assert len(MANO_WRIST_RIM) == 16 and len(set(MANO_WRIST_RIM)) == 16
    assert max(MANO_WRIST_RIM) < 778
