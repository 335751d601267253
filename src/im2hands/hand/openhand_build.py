"""Builder of the open hand model: regenerates the shipped files ``im2hands/assets/openhand/MANO_{RIGHT,LEFT}.pkl``.

Run ``python -m im2hands.hand.openhand_build [--out DIR]`` (default DIR: the shipped folder). Generation is
deterministic: the files it writes are byte-identical to the shipped ones
(``tests/hand/test_openhand_build.py::test_regenerated_files_equal_the_shipped_ones``), so a change here
that alters them must ship the regenerated files too. Run-time code never imports this module; it loads
the files through :mod:`im2hands.hand.openhand`, whose docstring describes the file layout, the axes and
the left hand.

Construction (``build_right``):

1. Rest skeleton (``rest_skeleton``): designed adult joint positions, per-segment radii.
2. Surface: a signed distance field made of a rounded palm slab, a thenar ellipsoid and rounded cones
   along every finger segment (smooth unions), meshed by marching cubes, Taubin-smoothed, simplified by
   quadric edge collapse (libigl) to ``N_VERTS_TARGET`` vertices, then relaxed tangentially and projected
   back onto the field.
3. Skinning weights: soft membership to palm/finger regions of the distance field times smoothstep blends
   across each joint's plane along the bone, then a few mesh-Laplacian smoothing steps.
4. Joint regressor: for each joint, non-negative weights summing to 1 over its nearest vertices that
   reproduce the designed joint (so joints follow shape changes).
5. Pose correctives (``pose_correctives``): a bulge along the normal at each bent joint against linear
   blend skinning's volume loss.
6. Shape directions (``SHAPE_COMPONENTS``): each is a designed deformation (per-bone stretch along the
   bone, radial scaling around the bone, palm affine map) blended by the skinning weights.
7. Pose prior: PCA of poses sampled from ``sample_anatomical_poses``.

License: generated entirely by this project's own code and design numbers (no MANO data); it is part of
im2hands and under the project's license.
"""

from __future__ import annotations

import argparse
import os
import pickle
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse

from im2hands.hand.frames import MIRROR_X
from im2hands.hand.openhand import (FINGER_CHAINS, SHAPE_COMPONENTS, TIP_FINGERS, RestSkeleton, _unit, bone_axes,
                                    openhand_dir, pose_from_angles, rest_skeleton)
from im2hands.hand.skeleton import MANO_KINTREE_PARENTS

OPENHAND_VERSION = "1"
N_VERTS_TARGET = 1300
"""Target vertex count of the simplified surface (MANO has 778)."""


# ---------------------------------------------------------------------------------------- distance field

def _sd_round_cone(p: np.ndarray, a: np.ndarray, b: np.ndarray, ra: float, rb: float) -> np.ndarray:
    """Signed distance (N,) of points (N, 3) to a rounded cone between spheres (a, ra) and (b, rb)."""
    ba = b - a
    l2 = ba @ ba
    pa = p - a
    rr = ra - rb
    a2 = l2 - rr * rr
    il2 = 1.0 / l2
    y = pa @ ba
    z = y - l2
    xv = pa * l2 - y[:, None] * ba
    x2 = np.einsum("ij,ij->i", xv, xv)
    y2 = y * y * l2
    z2 = z * z * l2
    k = np.sign(rr) * rr * rr * x2
    out = (np.sqrt(x2 * a2 * il2) + y * rr) * il2 - ra
    m1 = np.sign(z) * a2 * z2 > k
    m2 = np.sign(y) * a2 * y2 < k
    out = np.where(m1, np.sqrt(x2 + z2) * il2 - rb, out)
    out = np.where(m2 & ~m1, np.sqrt(x2 + y2) * il2 - ra, out)
    return out


def _sd_convex_polygon_2d(q: np.ndarray, poly: np.ndarray) -> np.ndarray:
    """Exact signed distance (N,) of 2-D points (N, 2) to a convex counter-clockwise polygon (M, 2)."""
    n_edges = len(poly)
    inside = np.full(len(q), -np.inf)
    outside = np.full(len(q), np.inf)
    for i in range(n_edges):
        a, b = poly[i], poly[(i + 1) % n_edges]
        e = b - a
        normal = np.array([e[1], -e[0]]) / np.linalg.norm(e)  # outward for a CCW polygon
        inside = np.maximum(inside, (q - a) @ normal)
        t = np.clip(((q - a) @ e) / (e @ e), 0.0, 1.0)
        outside = np.minimum(outside, np.linalg.norm(q - a - t[:, None] * e, axis=1))
    return np.where(inside > 0, outside, inside)


def _smin(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    """Polynomial smooth minimum of two distance fields with blend radius `k` (metres)."""
    h = np.maximum(k - np.abs(a - b), 0.0) / k
    return np.minimum(a, b) - h * h * k * 0.25


# palm slab: convex outline (x, z) of its flat core, the core's half thickness, the rounding radius
# (added all round) and the y of its mid plane
_PALM_OUTLINE = np.array([[0.024, -0.018], [0.004, -0.022], [-0.074, -0.032], [-0.086, -0.005], [-0.080, 0.024],
                          [0.004, 0.016], [0.024, 0.012]])
_PALM_HALF_CORE = 0.0035
_PALM_ROUND = 0.0095
_PALM_MID_Y = -0.0015
_K_FINGER_PALM = 0.0085
_K_SEGMENTS = 0.0025
_K_THUMB = 0.012


def region_fields(points: np.ndarray, skel: RestSkeleton) -> dict[str, np.ndarray]:
    """Signed distance (N,) of points (N, 3) to each region: ``palm``, the four fingers, ``thumb``.

    Finger fields are the smooth union of the finger's three rounded cones; the thumb field includes the
    thenar eminence. The hand's field is ``hand_field``.
    """
    p = np.asarray(points, dtype=np.float64)
    poly = _PALM_OUTLINE
    e0, e1 = poly[1] - poly[0], poly[2] - poly[1]
    if e0[0] * e1[1] - e0[1] * e1[0] < 0:
        poly = poly[::-1]
    d2 = _sd_convex_polygon_2d(p[:, [0, 2]], poly)  # the flat core's outline, then extrude and round
    dy = np.abs(p[:, 1] - _PALM_MID_Y) - _PALM_HALF_CORE
    w = np.stack([d2, dy], axis=1)
    palm = np.minimum(np.maximum(d2, dy), 0.0) + np.linalg.norm(np.maximum(w, 0.0), axis=1) - _PALM_ROUND
    fields = {"palm": palm}
    for finger, chain in FINGER_CHAINS.items():
        f = None
        for b in chain:
            end = skel.bone_end(b)
            if b == chain[2]:  # the distal cone ends one radius short so that its surface reaches the tip
                end = end - skel.radii[b, 1] * _unit(end - skel.joints[b])
            seg = _sd_round_cone(p, skel.joints[b], end, skel.radii[b, 0], skel.radii[b, 1])
            f = seg if f is None else _smin(f, seg, _K_SEGMENTS)
        if finger == "thumb":
            # thenar eminence: a flattened ellipsoid-like rounded cone from the wrist side to the thumb MCP
            a = np.array([-0.008, -0.0095, 0.0070])
            b = skel.joints[14] + np.array([0.006, 0.001, -0.008])
            thenar = _sd_round_cone(p, a, b, 0.0135, 0.0100)
            f = _smin(f, thenar, _K_THUMB)
        fields[finger] = f
    return fields


def hand_field(points: np.ndarray, skel: RestSkeleton) -> np.ndarray:
    """Signed distance-like field (N,) of the rest hand (negative inside), metres."""
    fields = region_fields(points, skel)
    palm = fields["palm"]
    out = None
    for finger in FINGER_CHAINS:
        k = _K_THUMB if finger == "thumb" else _K_FINGER_PALM
        u = _smin(palm, fields[finger], k)
        out = u if out is None else np.minimum(out, u)
    return out


# ------------------------------------------------------------------------------------------------ surface

def _taubin(v: np.ndarray, f: np.ndarray, iterations: int) -> np.ndarray:
    import trimesh

    mesh = trimesh.Trimesh(v, f, process=False)
    trimesh.smoothing.filter_taubin(mesh, lamb=0.5, nu=0.53, iterations=iterations)
    return np.asarray(mesh.vertices)


def build_surface(skel: RestSkeleton, *, voxel: float = 0.0016, n_verts: int = N_VERTS_TARGET
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Mesh the rest hand: marching cubes of ``hand_field`` (`voxel` metres), Taubin smoothing, quadric
    simplification to `n_verts` vertices (libigl, intersection blocking), then tangential relaxation of the
    triangles alternating with projection back onto the field's zero level.

    Returns:
        v: (V, 3) float64 vertices, metres; f: (F, 3) int64 outward triangles. Watertight, one component.
    """
    import igl
    import mcubes
    import trimesh

    if not 0.0005 <= voxel <= 0.004:
        raise ValueError(f"voxel: expected a marching-cubes voxel size in [0.0005, 0.004] m, got {voxel}")
    if not 300 <= n_verts <= 20000:
        raise ValueError(f"n_verts: expected a target vertex count in [300, 20000], got {n_verts}")

    outline = np.stack([_PALM_OUTLINE[:, 0], np.full(len(_PALM_OUTLINE), _PALM_MID_Y), _PALM_OUTLINE[:, 1]], 1)
    pts = np.concatenate([skel.joints, skel.tips, outline])
    lo = pts.min(0) - 0.025
    hi = pts.max(0) + 0.025
    axes = [np.arange(lo[i], hi[i] + voxel, voxel) for i in range(3)]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1)
    field = hand_field(grid.reshape(-1, 3), skel).reshape(grid.shape[:3])
    v, f = mcubes.marching_cubes(-field, 0.0)
    v = lo + v * voxel
    mesh = trimesh.Trimesh(v, f.astype(np.int64), process=True)
    parts = mesh.split(only_watertight=False)
    mesh = max(parts, key=lambda m: len(m.faces))
    if mesh.volume < 0:
        mesh.invert()
    v = _taubin(np.asarray(mesh.vertices), np.asarray(mesh.faces), 10)
    f = np.asarray(mesh.faces, dtype=np.int64)
    v2, f2, _, _ = igl.qslim(np.asfortranarray(v), np.asfortranarray(f.astype(np.int32)), int(2 * n_verts - 4),
                             block_intersections=True)
    mesh = trimesh.Trimesh(np.asarray(v2), np.asarray(f2, dtype=np.int64), process=True)
    if not mesh.is_watertight or mesh.volume < 0:
        raise RuntimeError("open hand surface: simplification did not give a closed, outward mesh")
    v = np.asarray(mesh.vertices)
    f = np.asarray(mesh.faces, dtype=np.int64)
    for _ in range(3):
        v = _relax_tangential(v, f, 2)
        v = _project_to_surface(v, skel)
    return v, f


def _project_to_surface(v: np.ndarray, skel: RestSkeleton, iterations: int = 3) -> np.ndarray:
    """Move points onto the zero level of ``hand_field`` along its (finite-difference) gradient."""
    h = 1e-5
    for _ in range(iterations):
        d = hand_field(v, skel)
        grad = np.stack([(hand_field(v + h * e, skel) - hand_field(v - h * e, skel)) / (2 * h)
                         for e in np.eye(3)], axis=1)
        v = v - (d / np.maximum((grad * grad).sum(1), 1e-12))[:, None] * grad
    return v


def _relax_tangential(v: np.ndarray, f: np.ndarray, iterations: int, step: float = 0.5) -> np.ndarray:
    """Improve triangle shapes: move each vertex towards its neighbours' centroid within its tangent plane."""
    import trimesh

    lap = _uniform_laplacian(f, len(v))
    for _ in range(iterations):
        n = trimesh.Trimesh(v, f, process=False).vertex_normals
        d = lap @ v - v
        d -= np.einsum("ij,ij->i", d, n)[:, None] * n
        v = v + step * d
    return v


# ------------------------------------------------------------------------------------------------ weights

def _smoothstep(x: np.ndarray) -> np.ndarray:
    t = np.clip(x, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _uniform_laplacian(f: np.ndarray, n: int) -> scipy.sparse.csr_matrix:
    """Row-normalised vertex adjacency (n, n) of a triangle mesh."""
    i = np.concatenate([f[:, 0], f[:, 1], f[:, 2], f[:, 1], f[:, 2], f[:, 0]])
    j = np.concatenate([f[:, 1], f[:, 2], f[:, 0], f[:, 0], f[:, 1], f[:, 2]])
    a = scipy.sparse.coo_matrix((np.ones(len(i)), (i, j)), shape=(n, n)).tocsr()
    a.data[:] = 1.0
    deg = np.asarray(a.sum(1)).ravel()
    return scipy.sparse.diags(1.0 / deg) @ a


_BLEND_HALF = {1: 0.0075, 2: 0.0050, 3: 0.0045}
"""Half width (m) of the blend across a finger's proximal (MCP), middle (PIP) and distal (DIP) joint."""
_BLEND_HALF_THUMB = {1: 0.0120, 2: 0.0060, 3: 0.0050}
_REGION_TEMPERATURE = 0.0015
_WEIGHT_SMOOTHING_STEPS = 4


def skinning_weights(v: np.ndarray, f: np.ndarray, skel: RestSkeleton) -> np.ndarray:
    """Linear-blend-skinning weights (V, 16), rows sum to 1, MANO joint order.

    A vertex's soft membership to each region (palm, five fingers) comes from the region distance fields
    (softmin with temperature ``_REGION_TEMPERATURE``). Inside a finger region the weight moves from bone
    to bone across each joint's plane (perpendicular to the distal bone) with a smoothstep of half width
    ``_BLEND_HALF``; the part before the first joint's plane belongs to the palm (bone 0). Finally the
    weights are averaged over mesh neighbours ``_WEIGHT_SMOOTHING_STEPS`` times.
    """
    fields = region_fields(v, skel)
    names = ["palm", *FINGER_CHAINS]
    d = np.stack([fields[n] for n in names], axis=1)
    m = np.exp(-(d - d.min(1, keepdims=True)) / _REGION_TEMPERATURE)
    m /= m.sum(1, keepdims=True)
    axes = bone_axes(skel)
    w = np.zeros((len(v), 16))
    w[:, 0] += m[:, 0]
    for r, finger in enumerate(FINGER_CHAINS, start=1):
        chain = FINGER_CHAINS[finger]
        half = _BLEND_HALF_THUMB if finger == "thumb" else _BLEND_HALF
        # cumulative "beyond joint i" indicators
        beyond = [_smoothstep(((v - skel.joints[b]) @ axes[b] + half[i + 1]) / (2 * half[i + 1]))
                  for i, b in enumerate(chain)]
        parts = [1 - beyond[0], beyond[0] * (1 - beyond[1]), beyond[1] * (1 - beyond[2]), beyond[2]]
        w[:, 0] += m[:, r] * parts[0]
        for i, b in enumerate(chain):
            w[:, b] += m[:, r] * parts[i + 1]
    lap = _uniform_laplacian(f, len(v))
    for _ in range(_WEIGHT_SMOOTHING_STEPS):
        w = 0.5 * w + 0.5 * (lap @ w)
    w = np.clip(w, 0.0, None)
    w[w < 1e-4] = 0.0
    return w / w.sum(1, keepdims=True)


# -------------------------------------------------------------------------------------- joint regressor

_REGRESSOR_NEIGHBOURS = 40


def joint_regressor(v: np.ndarray, joints: np.ndarray) -> scipy.sparse.csc_matrix:
    """Sparse (16, V) regressor whose rows are convex combinations of each joint's nearest vertices.

    Each row solves a non-negative least-squares problem: reproduce the joint exactly (weight 1e3),
    sum to one (weight 1e3), stay close to uniform (weight 1), over the ``_REGRESSOR_NEIGHBOURS`` nearest
    vertices; tiny weights are dropped and the row renormalised.
    """
    from scipy.optimize import nnls
    from scipy.spatial import cKDTree

    tree = cKDTree(v)
    rows, cols, vals = [], [], []
    k = _REGRESSOR_NEIGHBOURS
    for j, joint in enumerate(joints):
        _, idx = tree.query(joint, k=k)
        idx = np.sort(idx)
        big = 1e3
        a = np.concatenate([big * v[idx].T, big * np.ones((1, k)), np.eye(k) * 1e-2])
        b = np.concatenate([big * joint, [big], np.full(k, 1e-2 / k)])
        wj, _ = nnls(a, b, maxiter=50 * k)
        wj[wj < 1e-5] = 0.0
        wj /= wj.sum()
        keep = wj > 0
        rows += [j] * int(keep.sum())
        cols += list(idx[keep])
        vals += list(wj[keep])
    return scipy.sparse.csc_matrix((vals, (rows, cols)), shape=(len(joints), len(v)))


# ---------------------------------------------------------------------------------------- shape space

@dataclass(frozen=True)
class _Deformation:
    """A designed deformation, linear in its magnitude (values are per unit coefficient).

    palm: (3, 3) velocity of the palm's linear map, applied about ``palm_centre``.
    stretch: (16,) fractional stretch of each bone along its axis (bones 1..15).
    radial: (16,) fractional scaling of each bone's distance from its axis (bone 0: palm thickness in y).
    """

    palm: np.ndarray
    palm_centre: np.ndarray
    stretch: np.ndarray
    radial: np.ndarray


def _designed_deformations(skel: RestSkeleton) -> list[_Deformation]:
    z = np.zeros(16)
    fingers = [b for n in ("index", "middle", "ring", "pinky") for b in FINGER_CHAINS[n]]
    thumb = list(FINGER_CHAINS["thumb"])
    origin = skel.joints[0]
    palm_mid = np.array([0.0, _PALM_MID_Y, skel.joints[[1, 4, 7, 10], 2].mean()])

    def sel(bones, value):
        out = z.copy()
        out[bones] = value
        return out

    def diag(x=0.0, y=0.0, zz=0.0):
        return np.diag([x, y, zz])

    zero3 = np.zeros((3, 3))
    return [
        _Deformation(0.07 * np.eye(3), origin, np.full(16, 0.07), sel(list(range(1, 16)), 0.07)),
        _Deformation(zero3, origin, sel(fingers, 0.06), z),
        _Deformation(zero3, origin, z, sel(fingers, 0.09)),
        _Deformation(diag(zz=0.06), palm_mid, z, z),
        _Deformation(zero3, origin, z, sel([0], 0.10)),
        _Deformation(diag(x=0.05), origin, z, z),
        _Deformation(zero3, origin, sel(thumb, 0.07), z),
        _Deformation(zero3, origin, sel(list(FINGER_CHAINS["index"]), 0.05) + sel(list(FINGER_CHAINS["ring"]), -0.05), z),
        _Deformation(zero3, origin, sel(list(FINGER_CHAINS["pinky"]), 0.08), z),
        _Deformation(zero3, origin, z, sel(thumb, 0.10)),
    ]


def _joint_velocity(skel: RestSkeleton, d: _Deformation) -> tuple[np.ndarray, np.ndarray]:
    """Joint (16, 3) and tip (5, 3) displacements per unit coefficient of deformation `d`."""
    dj = np.zeros((16, 3))
    dtip = np.zeros((5, 3))
    dj[0] = d.palm @ (skel.joints[0] - d.palm_centre)
    for finger, chain in FINGER_CHAINS.items():
        first = chain[0]
        dj[first] = d.palm @ (skel.joints[first] - d.palm_centre)
        for i, b in enumerate(chain):
            delta = dj[b] + d.stretch[b] * (skel.bone_end(b) - skel.joints[b])
            if i < 2:
                dj[chain[i + 1]] = delta
            else:
                dtip[TIP_FINGERS.index(finger)] = delta
    return dj, dtip


def shape_directions(v: np.ndarray, weights: np.ndarray, skel: RestSkeleton) -> np.ndarray:
    """Shape blend shapes (V, 3, 10): vertex offsets (metres) per unit of each coefficient.

    For each designed deformation, bone b moves a vertex by its start joint's displacement plus a stretch
    along the bone axis and a radial scaling about it (the palm, bone 0, by the palm's linear map and a
    y-scaling about the palm's mid plane); the vertex offset is the skinning-weighted sum over bones.
    """
    axes = bone_axes(skel)
    out = np.zeros((len(v), 3, len(SHAPE_COMPONENTS)))
    for c, d in enumerate(_designed_deformations(skel)):
        dj, _ = _joint_velocity(skel, d)
        disp = np.zeros((16, len(v), 3))
        rel0 = v - d.palm_centre
        disp[0] = rel0 @ d.palm.T
        disp[0, :, 1] += d.radial[0] * (v[:, 1] - _PALM_MID_Y)
        for b in range(1, 16):
            rel = v - skel.joints[b]
            t = rel @ axes[b]
            radial = rel - t[:, None] * axes[b]
            disp[b] = dj[b] + d.stretch[b] * t[:, None] * axes[b] + d.radial[b] * radial
        out[:, :, c] = np.einsum("vb,bvi->vi", weights, disp)
    return out


# -------------------------------------------------------------------------------------- pose correctives

CORRECTIVE_BULGE = 0.0015
"""Outward push (m) of the middle of a joint's blend region at 90 degrees of rotation (``posedirs``)."""


def pose_correctives(v: np.ndarray, f: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Pose blend shapes (V, 3, 135) that offset linear blend skinning's volume loss at bent joints.

    For joint j (1..15) with parent p, a vertex moves along its rest normal n by
    ``CORRECTIVE_BULGE * s * (1 - cos(angle_j))`` with profile ``s = min(4 w_p w_j, 1)`` (1 where the two
    bones' weights are equal). MANO's pose feature is ``R_j - I`` (row-major, 9 per joint) and
    ``trace(R_j - I) = 2 (cos(angle_j) - 1)``, so only the three diagonal entries get ``-bulge * s * n / 2``.
    """
    import trimesh

    n = trimesh.Trimesh(v, f, process=False).vertex_normals
    out = np.zeros((len(v), 3, 9 * 15))
    for j in range(1, 16):
        s = np.minimum(4.0 * weights[:, MANO_KINTREE_PARENTS[j]] * weights[:, j], 1.0)
        for d in range(3):
            out[:, :, 9 * (j - 1) + 4 * d] = -0.5 * CORRECTIVE_BULGE * s[:, None] * n
    return out


# ------------------------------------------------------------------------------------------- pose space

FINGER_FLEX_RANGE = ((0.0, 90.0), (0.0, 90.0), (0.0, 90.0))
FINGER_ABD_RANGE = (-15.0, 15.0)
THUMB_RANGES = {"cmc_flex": (-10.0, 40.0), "cmc_abd": (0.0, 60.0), "cmc_twist": (0.0, 30.0),
                "mcp_flex": (0.0, 50.0), "ip_flex": (-10.0, 80.0)}


def _relaxed_angles() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    flex = np.zeros(15)
    abd = np.zeros(15)
    twist = np.zeros(15)
    for finger, extra in (("index", 0.0), ("middle", 3.0), ("ring", 6.0), ("pinky", 9.0)):
        c = FINGER_CHAINS[finger]
        flex[[c[0] - 1, c[1] - 1, c[2] - 1]] = np.deg2rad([12.0 + extra, 22.0 + extra, 10.0 + extra / 2])
    t = FINGER_CHAINS["thumb"]
    flex[[t[0] - 1, t[1] - 1, t[2] - 1]] = np.deg2rad([8.0, 12.0, 12.0])
    abd[t[0] - 1] = np.deg2rad(20.0)
    twist[t[0] - 1] = np.deg2rad(8.0)
    return flex, abd, twist


def relaxed_pose(skel: RestSkeleton) -> np.ndarray:
    """(45,) axis-angle relaxed pose (``hands_mean``): fingers slightly flexed, thumb slightly opposed."""
    flex, abd, twist = _relaxed_angles()
    return pose_from_angles(skel, flex[None], abd[None], twist[None])[0]


def sample_anatomical_poses(skel: RestSkeleton, n: int, rng: np.random.Generator, *,
                            correlated: bool = False) -> np.ndarray:
    """Random anatomical poses (n, 45), axis-angle of MANO joints 1..15 in the rest frame, radians.

    Independent uniform angles in ``FINGER_FLEX_RANGE`` (per joint), ``FINGER_ABD_RANGE`` (MCPs) and
    ``THUMB_RANGES``. With ``correlated=True`` the flexions share a per-sample grip level (as in real
    hands; used for the PCA prior).
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n: expected a positive int, got {n!r}")
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng: expected a numpy.random.Generator (np.random.default_rng(seed)), got {type(rng).__name__}")
    flex = np.zeros((n, 15))
    abd = np.zeros((n, 15))
    twist = np.zeros((n, 15))
    grip = rng.uniform(0.0, 1.0, size=(n, 1))
    for finger in ("index", "middle", "ring", "pinky"):
        c = FINGER_CHAINS[finger]
        for level, j in enumerate(c):
            lo, hi = FINGER_FLEX_RANGE[level]
            u = rng.uniform(0.0, 1.0, size=n)
            if correlated:
                u = np.clip(0.65 * grip[:, 0] + 0.35 * u + rng.normal(0, 0.08, n), 0.0, 1.0)
            flex[:, j - 1] = np.deg2rad(lo + (hi - lo) * u)
        abd[:, c[0] - 1] = np.deg2rad(rng.uniform(*FINGER_ABD_RANGE, size=n))
    t = FINGER_CHAINS["thumb"]
    r = THUMB_RANGES
    u = rng.uniform(0.0, 1.0, size=(n, 5))
    if correlated:
        u = np.clip(0.5 * grip + 0.5 * u, 0.0, 1.0)
    flex[:, t[0] - 1] = np.deg2rad(r["cmc_flex"][0] + (r["cmc_flex"][1] - r["cmc_flex"][0]) * u[:, 0])
    abd[:, t[0] - 1] = np.deg2rad(r["cmc_abd"][0] + (r["cmc_abd"][1] - r["cmc_abd"][0]) * u[:, 1])
    twist[:, t[0] - 1] = np.deg2rad(r["cmc_twist"][0] + (r["cmc_twist"][1] - r["cmc_twist"][0]) * u[:, 2])
    flex[:, t[1] - 1] = np.deg2rad(r["mcp_flex"][0] + (r["mcp_flex"][1] - r["mcp_flex"][0]) * u[:, 3])
    flex[:, t[2] - 1] = np.deg2rad(r["ip_flex"][0] + (r["ip_flex"][1] - r["ip_flex"][0]) * u[:, 4])
    return pose_from_angles(skel, flex, abd, twist)


_PCA_SAMPLES = 20000


def pose_pca(skel: RestSkeleton) -> tuple[np.ndarray, np.ndarray]:
    """PCA pose prior: ``hands_components`` (45, 45), rows orthonormal, by decreasing variance of the
    correlated ``sample_anatomical_poses``, and ``hands_mean`` (45,), the designed ``relaxed_pose``."""
    rng = np.random.default_rng(0)
    poses = sample_anatomical_poses(skel, _PCA_SAMPLES, rng, correlated=True)
    _, _, vt = np.linalg.svd(poses - poses.mean(0), full_matrices=False)
    # deterministic signs: largest-magnitude entry of each component positive
    signs = np.sign(vt[np.arange(45), np.abs(vt).argmax(1)])
    return vt * signs[:, None], relaxed_pose(skel)


# ------------------------------------------------------------------------------------------- the model

def _tip_vertices(v: np.ndarray, skel: RestSkeleton) -> np.ndarray:
    """(5,) ids of the vertex furthest along each finger's distal axis near its designed tip."""
    ids = []
    for fi, finger in enumerate(TIP_FINGERS):
        b = FINGER_CHAINS[finger][2]
        axis = _unit(skel.tips[fi] - skel.joints[b])
        near = np.linalg.norm(v - skel.tips[fi], axis=1) < 0.015
        score = np.where(near, (v - skel.joints[b]) @ axis, -np.inf)
        ids.append(int(np.argmax(score)))
    return np.array(ids, dtype=np.int64)


def build_right() -> dict:
    """Generate the right-hand model as a dict in MANO's layout (module docstring)."""
    skel = rest_skeleton()
    v, f = build_surface(skel)
    w = skinning_weights(v, f, skel)
    jreg = joint_regressor(v, skel.joints)
    shapedirs = shape_directions(v, w, skel)
    components, mean = pose_pca(skel)
    kintree = np.array([[2**32 - 1 if p < 0 else p for p in MANO_KINTREE_PARENTS], list(range(16))],
                       dtype=np.int64)
    return {
        "v_template": v.astype(np.float32),
        "f": f.astype(np.uint32),
        "kintree_table": kintree,
        "J_regressor": jreg,
        "weights": w.astype(np.float32),
        "shapedirs": shapedirs.astype(np.float32),
        "posedirs": pose_correctives(v, f, w).astype(np.float16),
        "hands_components": components,
        "hands_mean": mean,
        "tip_vertex_ids": _tip_vertices(v, skel),
        "openhand_version": OPENHAND_VERSION,
    }


_MIRROR = np.array(MIRROR_X)
_POSE_MIRROR = np.tile(np.array([1.0, -1.0, -1.0]), 15)


def mirror_model(model: dict) -> dict:
    """The left-hand model: the exact x-mirror of a right-hand model dict (module docstring)."""
    out = dict(model)
    out["v_template"] = (model["v_template"] * _MIRROR).astype(model["v_template"].dtype)
    out["f"] = model["f"][:, [0, 2, 1]].copy()
    sd = model["shapedirs"].copy()
    sd[:, 0, :] *= -1
    out["shapedirs"] = sd
    # pose feature (R - I) of joint k, entry (i, j) changes sign by m_i * m_j under the mirror
    m = _MIRROR
    feat_sign = np.tile(np.outer(m, m).ravel(), 15)
    pd = model["posedirs"]
    out["posedirs"] = (pd * (m[None, :, None] * feat_sign[None, None, :])).astype(pd.dtype)
    out["hands_components"] = model["hands_components"] * _POSE_MIRROR[None, :]
    out["hands_mean"] = model["hands_mean"] * _POSE_MIRROR
    return out


def write_model(model: dict, path: Path) -> None:
    """Pickle a model dict atomically (temp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            pickle.dump(model, fh, protocol=4)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def generate(out_dir: Path) -> tuple[Path, Path]:
    """Generate and write ``MANO_RIGHT.pkl`` and ``MANO_LEFT.pkl`` into `out_dir`; return their paths."""
    out_dir = Path(out_dir)
    right = build_right()
    left = mirror_model(right)
    paths = (out_dir / "MANO_RIGHT.pkl", out_dir / "MANO_LEFT.pkl")
    write_model(right, paths[0])
    write_model(left, paths[1])
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m im2hands.hand.openhand_build",
                                     description="Generate the open hand model files (MANO layout).")
    parser.add_argument("--out", type=Path, default=openhand_dir(), help="output folder (default: the shipped assets)")
    args = parser.parse_args(argv)
    for p in generate(args.out):
        print(f"wrote {p}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
