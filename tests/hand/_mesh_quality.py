"""Mesh checks shared by the hand tests: triangle-triangle self-intersections (vectorised)."""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree


def _segments_hit_triangles(p0, p1, a, b, c, eps=1e-12):
    """(N,) bool: segment p0-p1 crosses triangle abc (strictly inside both; Moller-Trumbore)."""
    d = p1 - p0
    e1, e2 = b - a, c - a
    h = np.cross(d, e2)
    det = np.einsum("ij,ij->i", e1, h)
    ok = np.abs(det) > eps
    inv = np.where(ok, 1.0 / np.where(ok, det, 1.0), 0.0)
    s = p0 - a
    u = inv * np.einsum("ij,ij->i", s, h)
    q = np.cross(s, e1)
    v = inv * np.einsum("ij,ij->i", d, q)
    t = inv * np.einsum("ij,ij->i", e2, q)
    tol = 1e-9
    return ok & (u > tol) & (v > tol) & (u + v < 1 - tol) & (t > tol) & (t < 1 - tol)


def self_intersecting_pairs(v: np.ndarray, f: np.ndarray) -> np.ndarray:
    """(P, 2) ids of face pairs that intersect each other and share no vertex.

    Candidate pairs: faces whose centroids are closer than the sum of their circumradii (KD-tree); a pair
    intersects when an edge of one crosses the other.
    """
    tri = v[f]
    cen = tri.mean(1)
    rad = np.linalg.norm(tri - cen[:, None], axis=2).max(1)
    tree = cKDTree(cen)
    pairs = tree.query_pairs(2 * rad.max(), output_type="ndarray")
    if len(pairs) == 0:
        return np.zeros((0, 2), dtype=np.int64)
    i, j = pairs[:, 0], pairs[:, 1]
    close = np.linalg.norm(cen[i] - cen[j], axis=1) <= rad[i] + rad[j]
    shared = (f[i][:, :, None] == f[j][:, None, :]).any((1, 2))
    i, j = i[close & ~shared], j[close & ~shared]
    hit = np.zeros(len(i), dtype=bool)
    for x, y in ((i, j), (j, i)):
        ta, tb = tri[x], tri[y]
        for k in range(3):
            hit |= _segments_hit_triangles(ta[:, k], ta[:, (k + 1) % 3], tb[:, 0], tb[:, 1], tb[:, 2])
    return np.stack([i[hit], j[hit]], axis=1)


def local_pairs(pairs: np.ndarray, face_bone: np.ndarray, parents) -> np.ndarray:
    """(P,) bool: the two faces' dominant bones are equal or parent and child (a crease at one joint),
    as opposed to two different fingers (or a fingertip and the palm) touching."""
    a, b = face_bone[pairs[:, 0]], face_bone[pairs[:, 1]]
    par = np.asarray(parents)
    return (a == b) | (par[a] == b) | (par[b] == a)
