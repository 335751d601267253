"""Evaluation metrics of reconstructed hands: IoU, Chamfer-L1, MPJPE and interpenetration.

All geometry is in metres in the camera frame (OpenCV axes); meshes are closed, outward-oriented
triangle meshes (``docs/EVALUATION.md`` gives each protocol and how it differs from HALO and IntagHand).
Reported figures carry their unit in their name: ``_mm`` (millimetres), ``_mm3`` (cubic millimetres);
IoU is a ratio.

Every random choice draws from a ``numpy.random.Generator`` built from the ``seed`` argument (an ``int``,
a ``SeedSequence`` or a ``Generator``), so the same seed gives the same figures.

Libraries (measured in ``/work/shared/reference/libraries.md``): inside tests use point-cloud-utils' fast
generalised winding number (``> 0.5`` is inside), which also labels self-intersecting and nearly closed
meshes correctly; nearest neighbours use ``scipy.spatial.cKDTree``; point-to-surface distances use libigl's
``point_mesh_squared_distance`` (AABB tree).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Mapping, NamedTuple, Union

import numpy as np

__all__ = [
    "Mesh", "HandGeometry", "TwoHands", "EvalConfig",
    "IoUResult", "ChamferResult", "PenetrationResult", "ContactIoUResult",
    "HandMetrics", "PairMetrics", "SampleMetrics",
    "as_mesh", "mesh_contains", "sample_surface", "iou", "iou_at_points", "chamfer", "mpjpe", "keypoint_errors",
    "penetration", "contact_iou",
    "evaluate_hand", "evaluate_sample", "gt_from_sample",
    "ROOT_JOINT", "WRIST_JOINT",
]

WRIST_JOINT = 0
"""Index of the wrist in the internal joint order (``im2hands.hand.skeleton.INTERNAL``)."""
ROOT_JOINT = 9
"""Index of the middle-finger MCP (``middle1``) in the internal order: IntagHand's root joint."""

Seed = Union[int, np.random.SeedSequence, np.random.Generator]

M_TO_MM = 1e3
M3_TO_MM3 = 1e9


# --------------------------------------------------------------------------------------------------
# Meshes and input checks


@dataclass(frozen=True)
class Mesh:
    """A triangle mesh. Build with :func:`as_mesh`, which checks the arrays."""

    vertices: np.ndarray
    """(V, 3) float64 vertex positions, metres, camera frame."""
    faces: np.ndarray
    """(F, 3) int64 vertex indices of each triangle, outward-oriented."""


MeshLike = Union[Mesh, tuple, "trimesh.Trimesh"]  # noqa: F821  (trimesh is optional at import time)


def as_mesh(mesh: object, name: str = "mesh") -> Mesh:
    """Check a mesh and return it as a :class:`Mesh` (float64 vertices, int64 faces, contiguous).

    Args:
        mesh: a :class:`Mesh`, a ``trimesh.Trimesh`` or a ``(vertices, faces)`` pair: vertices (V, 3)
            metres, faces (F, 3) integer indices into the vertices.
        name: the argument's name, used in error messages.
    Raises:
        ValueError: wrong shapes, non-finite vertices, non-integer or out-of-range faces, no faces, or a
            mesh of zero area.
    """
    if isinstance(mesh, Mesh):
        v, f = mesh.vertices, mesh.faces
    elif isinstance(mesh, (tuple, list)) and len(mesh) == 2:
        v, f = mesh
    elif hasattr(mesh, "vertices") and hasattr(mesh, "faces"):
        v, f = mesh.vertices, mesh.faces
    else:
        raise TypeError(f"{name}: expected a Mesh, a trimesh.Trimesh or a (vertices, faces) pair, "
                        f"got {type(mesh).__name__}")
    v = np.ascontiguousarray(np.asarray(v, dtype=np.float64))
    f = np.asarray(f)
    if v.ndim != 2 or v.shape[1] != 3:
        raise ValueError(f"{name}: vertices must have shape (V, 3), got {v.shape}")
    if f.ndim != 2 or f.shape[1] != 3:
        raise ValueError(f"{name}: faces must have shape (F, 3), got {f.shape}")
    if len(f) == 0 or len(v) == 0:
        raise ValueError(f"{name}: empty mesh ({len(v)} vertices, {len(f)} faces); a metric needs a surface")
    if not np.issubdtype(f.dtype, np.integer):
        raise ValueError(f"{name}: faces must be integer indices, got dtype {f.dtype}")
    bad = ~np.isfinite(v)
    if bad.any():
        row = int(np.flatnonzero(bad.any(axis=1))[0])
        raise ValueError(f"{name}: vertices contain NaN or inf (first at vertex {row}: {v[row].tolist()})")
    f = np.ascontiguousarray(f, dtype=np.int64)
    if f.min() < 0 or f.max() >= len(v):
        raise ValueError(f"{name}: face indices must lie in [0, {len(v)}), got range [{f.min()}, {f.max()}]")
    if _face_areas(v, f).sum() <= 0.0:
        raise ValueError(f"{name}: the mesh has zero surface area")
    return Mesh(v, f)


def _face_areas(v: np.ndarray, f: np.ndarray) -> np.ndarray:
    a, b, c = v[f[:, 0]], v[f[:, 1]], v[f[:, 2]]
    return 0.5 * np.linalg.norm(np.cross(b - a, c - a), axis=1)


def _points(points: object, name: str) -> np.ndarray:
    """(N, 3) float64 finite points, else ValueError naming `name`."""
    p = np.asarray(points, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != 3:
        raise ValueError(f"{name}: expected shape (N, 3), got {p.shape}")
    bad = ~np.isfinite(p)
    if bad.any():
        row = int(np.flatnonzero(bad.any(axis=1))[0])
        raise ValueError(f"{name}: contains NaN or inf (first at row {row}: {p[row].tolist()})")
    return np.ascontiguousarray(p)


def _count(n: object, name: str) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"{name}: expected a positive integer, got {n!r}")
    return int(n)


def _bbox(mesh: Mesh) -> tuple[np.ndarray, np.ndarray]:
    used = mesh.vertices[np.unique(mesh.faces)]
    return used.min(axis=0), used.max(axis=0)


# --------------------------------------------------------------------------------------------------
# Inside tests and surface sampling


def mesh_contains(mesh: MeshLike, points: np.ndarray) -> np.ndarray:
    """True where a point is inside a closed (or nearly closed) outward-oriented mesh.

    Generalised winding number > 0.5 (point-cloud-utils' fast winding number), evaluated only for the
    points inside the mesh's bounding box; the others are outside. Self-intersecting meshes (overlapping
    parts, winding number 2) are labelled correctly, unlike ray parity.

    Args:
        mesh: the mesh (see :func:`as_mesh`), metres.
        points: (N, 3) query points, same frame and unit as the mesh.
    Returns:
        (N,) bool.
    """
    import point_cloud_utils as pcu

    m = as_mesh(mesh, "mesh")
    q = _points(points, "points")
    inside = np.zeros(len(q), dtype=bool)
    if len(q) == 0:
        return inside
    lo, hi = _bbox(m)
    pad = 1e-9 * max(float(np.abs(m.vertices).max()), 1.0)
    cand = np.flatnonzero(((q >= lo - pad) & (q <= hi + pad)).all(axis=1))
    if len(cand):
        w = pcu.triangle_soup_fast_winding_number(m.vertices, m.faces, np.ascontiguousarray(q[cand]))
        inside[cand] = np.asarray(w) > 0.5
    return inside


def sample_surface(mesh: MeshLike, n: int, *, seed: Seed = 0) -> np.ndarray:
    """Points uniform on a mesh's surface (area-weighted face choice, uniform barycentric coordinates).

    Args:
        mesh: the mesh (see :func:`as_mesh`).
        n: number of points.
        seed: seed or generator of the draws.
    Returns:
        (n, 3) float64 points, the mesh's frame and unit.
    """
    m = as_mesh(mesh, "mesh")
    n = _count(n, "n")
    rng = np.random.default_rng(seed)
    cdf = np.cumsum(_face_areas(m.vertices, m.faces))
    idx = np.minimum(np.searchsorted(cdf, rng.random(n) * cdf[-1], side="right"), len(cdf) - 1)
    r1, r2 = rng.random(n), rng.random(n)
    s = np.sqrt(r1)
    tri = m.vertices[m.faces[idx]]                                   # (n, 3 corners, 3)
    return ((1.0 - s)[:, None] * tri[:, 0] + (s * (1.0 - r2))[:, None] * tri[:, 1]
            + (s * r2)[:, None] * tri[:, 2])


# --------------------------------------------------------------------------------------------------
# IoU


class IoUResult(NamedTuple):
    """Volumetric IoU estimated from points uniform in a box."""

    iou: float
    """|pred ∩ gt| / |pred ∪ gt|; NaN if no point fell inside either mesh."""
    standard_error: float
    """Binomial standard error of `iou`, ``sqrt(iou (1 - iou) / n_union)`` (given the points in the union)."""
    n_union: int
    """Number of points inside either mesh."""


def iou(pred: MeshLike, gt: MeshLike, *, n_points: int = 100_000, box: tuple[np.ndarray, np.ndarray] | None = None,
        pad: float = 0.002, seed: Seed = 0) -> IoUResult:
    """Volumetric IoU of two meshes from points uniform in a box (both labelled by :func:`mesh_contains`).

    IoU is a ratio of volumes, so any box that holds both meshes gives the same IoU in expectation: points
    outside both bounding boxes are outside both meshes. The default box is the bounding box of the two
    meshes grown by `pad`: for a hand about 14 % of the points fall inside either mesh instead of the
    ~0.5 % of HALO's ±0.55 query-unit box (±22 cm), so the standard error is ~6 times smaller for the same
    count (``benchmarks/bm_eval_metrics.py``).

    Args:
        pred, gt: closed meshes (see :func:`as_mesh`), same frame, metres.
        n_points: number of points (HALO and Occupancy Networks use 100,000).
        box: ``(lo, hi)``, each (3,), metres: an explicit box; it must hold both meshes.
        pad: margin added around the meshes' joint bounding box when `box` is None, metres.
        seed: seed or generator of the points.
    Returns:
        :class:`IoUResult`.
    """
    p, g = as_mesh(pred, "pred"), as_mesh(gt, "gt")
    n_points = _count(n_points, "n_points")
    (plo, phi), (glo, ghi) = _bbox(p), _bbox(g)
    lo_m, hi_m = np.minimum(plo, glo), np.maximum(phi, ghi)
    if box is None:
        if not (np.isfinite(pad) and pad >= 0):
            raise ValueError(f"pad: expected a finite margin >= 0 in metres, got {pad!r}")
        lo, hi = lo_m - pad, hi_m + pad
    else:
        lo, hi = (np.asarray(b, dtype=np.float64) for b in box)
        if lo.shape != (3,) or hi.shape != (3,) or not (np.isfinite(lo).all() and np.isfinite(hi).all()):
            raise ValueError(f"box: expected (lo, hi) of finite (3,) arrays, got shapes {lo.shape}, {hi.shape}")
        if (lo > lo_m).any() or (hi < hi_m).any():
            raise ValueError(f"box: must hold both meshes, whose bounds are {lo_m.tolist()} .. {hi_m.tolist()}; "
                             f"got {lo.tolist()} .. {hi.tolist()}")
    q = np.random.default_rng(seed).uniform(lo, hi, size=(n_points, 3))
    occ_p, occ_g = mesh_contains(p, q), mesh_contains(g, q)
    return _iou_from_labels(occ_p, occ_g)


def _iou_from_labels(occ_pred: np.ndarray, occ_gt: np.ndarray) -> IoUResult:
    union = int((occ_pred | occ_gt).sum())
    inter = int((occ_pred & occ_gt).sum())
    if union == 0:
        return IoUResult(float("nan"), float("nan"), 0)
    r = inter / union
    return IoUResult(r, float(np.sqrt(r * (1.0 - r) / union)), union)


def iou_at_points(pred: MeshLike, points: np.ndarray, occupancy: np.ndarray) -> IoUResult:
    """IoU of a mesh against ground-truth occupancy labels at given points (Occupancy Networks' form).

    Args:
        pred: the predicted mesh (see :func:`as_mesh`).
        points: (N, 3) points in the mesh's frame and unit; for HALO's protocol, uniform in a box.
        occupancy: (N,) bool ground-truth labels (True inside).
    Returns:
        :class:`IoUResult`; its standard error is only meaningful for uniform points.
    """
    p = as_mesh(pred, "pred")
    q = _points(points, "points")
    occ = np.asarray(occupancy)
    if occ.shape != (len(q),):
        raise ValueError(f"occupancy: expected shape ({len(q)},) to match points, got {occ.shape}")
    if occ.dtype != np.bool_:
        raise ValueError(f"occupancy: expected bool labels, got dtype {occ.dtype}")
    return _iou_from_labels(mesh_contains(p, q), occ)


# --------------------------------------------------------------------------------------------------
# Chamfer


class ChamferResult(NamedTuple):
    """Chamfer-L1 and its two halves, millimetres."""

    chamfer_l1_mm: float
    """0.5 (accuracy + completeness)."""
    accuracy_mm: float
    """Mean distance from the predicted surface's points to the nearest ground-truth point."""
    completeness_mm: float
    """Mean distance from the ground-truth points to the nearest predicted point."""


def chamfer(pred: MeshLike, gt: MeshLike | np.ndarray, *, n_points: int = 100_000, seed: Seed = 0) -> ChamferResult:
    """Chamfer-L1 (Occupancy Networks' definition) between a predicted mesh and a ground truth.

    `n_points` points are drawn on the predicted surface (and on the ground-truth surface if `gt` is a
    mesh); accuracy and completeness are the mean nearest-neighbour Euclidean distances each way
    (``scipy.spatial.cKDTree``). With both sets drawn at random, the figures include a sampling floor:
    two draws of the same surface of area A are ``0.5 * sqrt(A / n_points)`` apart on average (0.28 mm
    for a 100 cm² hand at 100,000 points).

    Args:
        pred: the predicted mesh (see :func:`as_mesh`), metres.
        gt: the ground-truth mesh, or an (M, 3) array of ground-truth surface points, same frame, metres.
        n_points: points drawn on each mesh.
        seed: seed or generator of the draws (the prediction's points are drawn first).
    Returns:
        :class:`ChamferResult` in millimetres.
    """
    from scipy.spatial import cKDTree

    p = as_mesh(pred, "pred")
    n_points = _count(n_points, "n_points")
    rng = np.random.default_rng(seed)
    pts_p = sample_surface(p, n_points, seed=rng)
    if isinstance(gt, np.ndarray):
        pts_g = _points(gt, "gt")
        if len(pts_g) == 0:
            raise ValueError("gt: empty point cloud; Chamfer needs ground-truth points")
    else:
        pts_g = sample_surface(as_mesh(gt, "gt"), n_points, seed=rng)
    acc = float(cKDTree(pts_g).query(pts_p, workers=-1)[0].mean())
    comp = float(cKDTree(pts_p).query(pts_g, workers=-1)[0].mean())
    return ChamferResult(0.5 * (acc + comp) * M_TO_MM, acc * M_TO_MM, comp * M_TO_MM)


# --------------------------------------------------------------------------------------------------
# MPJPE


def mpjpe(joints_pred: np.ndarray, joints_gt: np.ndarray, *,
          protocol: Literal["intaghand", "wrist"] = "intaghand") -> np.ndarray:
    """Mean per-joint position error of 21 joints (internal order), millimetres.

    Protocols:

    - ``"intaghand"`` (IntagHand ``apps/eval_interhand.py``): both skeletons are centred on their middle
      MCP (:data:`ROOT_JOINT`) and the prediction is scaled so that its wrist -> middle-MCP length equals
      the ground truth's; this removes global translation and scale.
    - ``"wrist"``: both skeletons are centred on their wrist (:data:`WRIST_JOINT`), no scaling; removes
      translation only.

    Args:
        joints_pred: (..., 21, 3) predicted joints, metres, internal order.
        joints_gt: (..., 21, 3) ground-truth joints, same shape, frame and order.
        protocol: ``"intaghand"`` or ``"wrist"``.
    Returns:
        (...) float64 mean over the 21 joints of the Euclidean error, millimetres.
    """
    jp = np.asarray(joints_pred, dtype=np.float64)
    jg = np.asarray(joints_gt, dtype=np.float64)
    for name, j in (("joints_pred", jp), ("joints_gt", jg)):
        if j.ndim < 2 or j.shape[-2:] != (21, 3):
            raise ValueError(f"{name}: expected shape (..., 21, 3), got {j.shape}")
        if not np.isfinite(j).all():
            raise ValueError(f"{name}: contains NaN or inf")
    if jp.shape != jg.shape:
        raise ValueError(f"joints_pred and joints_gt: shapes differ ({jp.shape} vs {jg.shape})")
    if protocol == "intaghand":
        len_p = np.linalg.norm(jp[..., ROOT_JOINT, :] - jp[..., WRIST_JOINT, :], axis=-1)
        len_g = np.linalg.norm(jg[..., ROOT_JOINT, :] - jg[..., WRIST_JOINT, :], axis=-1)
        if (len_p <= 0).any():
            raise ValueError("joints_pred: the wrist and middle MCP coincide; the IntagHand scale is undefined")
        scale = (len_g / len_p)[..., None, None]
        jp = (jp - jp[..., ROOT_JOINT:ROOT_JOINT + 1, :]) * scale
        jg = jg - jg[..., ROOT_JOINT:ROOT_JOINT + 1, :]
    elif protocol == "wrist":
        jp = jp - jp[..., WRIST_JOINT:WRIST_JOINT + 1, :]
        jg = jg - jg[..., WRIST_JOINT:WRIST_JOINT + 1, :]
    else:
        raise ValueError(f"protocol: expected 'intaghand' or 'wrist', got {protocol!r}")
    return np.linalg.norm(jp - jg, axis=-1).mean(axis=-1) * M_TO_MM


def keypoint_errors(joints: Mapping[str, np.ndarray], gt: TwoHands) -> dict[str, float]:
    """Both hands' keypoint MPJPE (mm) under both protocols of :func:`mpjpe`: ``{side}_mpjpe_mm``
    (IntagHand) and ``{side}_mpjpe_wrist_mm``, for ``right`` and ``left``.

    Args:
        joints: {"right", "left"}: (21, 3) keypoints, internal order, camera frame, metres.
        gt: the ground truth (its hands' ``joints``).
    """
    out = {}
    for side in ("right", "left"):
        g = getattr(gt, side).joints
        out[f"{side}_mpjpe_mm"] = float(mpjpe(np.asarray(joints[side]), g, protocol="intaghand"))
        out[f"{side}_mpjpe_wrist_mm"] = float(mpjpe(np.asarray(joints[side]), g, protocol="wrist"))
    return out


# --------------------------------------------------------------------------------------------------
# Penetration


class PenetrationResult(NamedTuple):
    """Interpenetration of two closed meshes."""

    volume_mm3: float
    """Monte-Carlo estimate of the volume inside both meshes, mm³."""
    volume_se_mm3: float
    """Its binomial standard error, ``region_volume * sqrt(p (1 - p) / n_points)`` with p the share of
    points inside both, mm³ (0 when no point is inside both)."""
    depth_mm: float
    """Deepest point: the largest ``min(distance to A's surface, distance to B's surface)`` over the points
    found inside both meshes, mm; the radius of the largest ball found inside both. A lower bound of the
    true value (it is attained at a found point); 0 when no point is inside both."""
    n_inside: int
    """Number of the `n_points` Monte-Carlo points inside both meshes."""


def _vertex_reach(m: Mesh) -> np.ndarray:
    """(V,) longest edge incident to each vertex (0 for unused vertices), metres."""
    v, f = m.vertices, m.faces
    reach = np.zeros(len(v))
    for i, j in ((0, 1), (1, 2), (2, 0)):
        length = np.linalg.norm(v[f[:, i]] - v[f[:, j]], axis=1)
        np.maximum.at(reach, f[:, i], length)
        np.maximum.at(reach, f[:, j], length)
    return reach


class _Region(NamedTuple):
    """A union of equal axis-aligned boxes ("cells") that holds the intersection of two meshes."""

    cells_lo: np.ndarray
    """(C, 3) lower corner of each cell, metres (C = 0: the intersection is empty)."""
    cell_size: np.ndarray
    """(3,) edge lengths of a cell, metres."""


_MAX_CELLS_PER_AXIS = 64


def _penetration_region(a: Mesh, b: Mesh, kind: str) -> _Region:
    """Cells that hold the intersection of two closed meshes; ``"bbox"``: one cell, the intersection of
    the bounding boxes."""
    import igl
    from scipy import ndimage

    (alo, ahi), (blo, bhi) = _bbox(a), _bbox(b)
    lo, hi = np.maximum(alo, blo), np.minimum(ahi, bhi)
    if (hi <= lo).any():
        return _Region(np.zeros((0, 3)), hi - lo)
    if kind == "bbox":
        return _Region(lo[None], hi - lo)
    # A boundary point x of the intersection lies on a triangle T of one mesh, inside (or on) the other.
    # Each corner v of T is within r_v (v's longest incident edge) of x, and either lies inside the other
    # mesh or, the segment x-v crossing the other surface, within r_v of that surface. So x lies in the
    # box [v - r_v, v + r_v] of such a vertex: these boxes cover the intersection's boundary (no such
    # vertex: no intersection).
    centres, reaches = [], []
    for m, other in ((a, b), (b, a)):
        used = np.unique(m.faces)
        v, r = m.vertices[used], _vertex_reach(m)[used]
        near = np.zeros(len(v), dtype=bool)
        cand = np.flatnonzero(((v + r[:, None] >= lo) & (v - r[:, None] <= hi)).all(axis=1))
        if len(cand):
            d2 = igl.point_mesh_squared_distance(np.ascontiguousarray(v[cand]), other.vertices, other.faces)[0]
            near[cand] = d2 <= r[cand] ** 2
            rest = cand[~near[cand]]
            near[rest] = mesh_contains(other, v[rest])
        centres.append(v[near])
        reaches.append(r[near])
    c, r = np.concatenate(centres), np.concatenate(reaches)
    if len(c) == 0:
        return _Region(np.zeros((0, 3)), hi - lo)
    # Mark the cells of a grid tiling the bounding-box intersection that these boxes touch (cells of about
    # half the median reach, at most _MAX_CELLS_PER_AXIS per axis).
    shape = np.clip(np.ceil((hi - lo) / (0.5 * float(np.median(r)))).astype(int), 1, _MAX_CELLS_PER_AXIS)
    cell = (hi - lo) / shape
    i0 = np.clip(np.floor((c - r[:, None] - lo) / cell).astype(int), 0, shape - 1)
    i1 = np.clip(np.floor((c + r[:, None] - lo) / cell).astype(int), 0, shape - 1)
    keep = ((c + r[:, None] >= lo) & (c - r[:, None] <= hi)).all(axis=1)
    grid = np.zeros(tuple(shape), dtype=bool)
    for (x0, y0, z0), (x1, y1, z1) in zip(i0[keep], i1[keep]):
        grid[x0:x1 + 1, y0:y1 + 1, z0:z1 + 1] = True
    # The marked cells hold the intersection's boundary. A face-connected component of unmarked cells holds
    # none of it, so it lies wholly inside or wholly outside the intersection: one point decides.
    labels, n_labels = ndimage.label(~grid)
    if n_labels:
        first = np.unique(labels.ravel(), return_index=True)[1][1:]    # one cell per label 1..n
        centres = lo + (np.stack(np.unravel_index(first, grid.shape), axis=1) + 0.5) * cell
        inside = np.flatnonzero(_inside_both(centres, a, b)) + 1
        if len(inside):
            grid |= np.isin(labels, inside)
    return _Region(lo + np.argwhere(grid) * cell, cell)


def _depth(points: np.ndarray, a: Mesh, b: Mesh) -> np.ndarray:
    """(N,) min(distance to A's surface, distance to B's surface), metres."""
    import igl

    if len(points) == 0:
        return np.zeros(0)
    da = igl.point_mesh_squared_distance(points, a.vertices, a.faces)[0]
    db = igl.point_mesh_squared_distance(points, b.vertices, b.faces)[0]
    return np.sqrt(np.minimum(da, db))


def _inside_both(points: np.ndarray, a: Mesh, b: Mesh) -> np.ndarray:
    in_both = mesh_contains(a, points)
    idx = np.flatnonzero(in_both)
    if len(idx):
        in_both[idx] = mesh_contains(b, points[idx])
    return in_both


def penetration(mesh_a: MeshLike, mesh_b: MeshLike, *, n_points: int = 100_000, seed: Seed = 0,
                box: Literal["tight", "bbox"] = "tight", refine_steps: int = 8) -> PenetrationResult:
    """Volume inside both meshes and depth of the deepest point inside both.

    The volume is a Monte-Carlo estimate from `n_points` points uniform in a region that holds the
    intersection (:class:`PenetrationResult` gives its standard error). ``box="bbox"``: the region is the
    intersection of the two bounding boxes. ``box="tight"`` (default): the region is the union of the
    cells of a grid tiling that box (cells about half the median r_v, at most 64 per axis) touched by the
    boxes ``[v - r_v, v + r_v]`` of the vertices v that lie inside the other mesh or closer to its surface
    than r_v, their longest incident edge (these boxes provably cover the boundary of the intersection of
    closed meshes), plus every face-connected group of untouched cells whose centre is inside both (such a
    group holds no boundary, so it is wholly inside or outside). For finely meshed hands that merely touch
    this region is far smaller than the box, so the standard error is smaller for the same count; coarse
    meshes (long edges) gain less (``docs/EVALUATION.md``).
    Meshes whose bounding boxes do not overlap give exactly 0.

    The depth is the largest ``min(d_A, d_B)`` over the points found inside both (``d`` = distance to a
    mesh's surface, libigl), improved by `refine_steps` rounds of 256 points around the deepest point so
    far in a cube halving each round (starting at the Monte-Carlo point spacing).

    Args:
        mesh_a, mesh_b: closed meshes (see :func:`as_mesh`), same frame, metres.
        n_points: Monte-Carlo points.
        seed: seed or generator of the points.
        box: ``"tight"`` or ``"bbox"``: the sampled region, see above.
        refine_steps: rounds of the depth refinement (0 for none).
    Returns:
        :class:`PenetrationResult` in mm³ and mm.
    """
    a, b = as_mesh(mesh_a, "mesh_a"), as_mesh(mesh_b, "mesh_b")
    n_points = _count(n_points, "n_points")
    if box not in ("tight", "bbox"):
        raise ValueError(f"box: expected 'tight' or 'bbox', got {box!r}")
    if isinstance(refine_steps, bool) or not isinstance(refine_steps, (int, np.integer)) or refine_steps < 0:
        raise ValueError(f"refine_steps: expected an integer >= 0, got {refine_steps!r}")
    region = _penetration_region(a, b, box)
    if len(region.cells_lo) == 0:
        return PenetrationResult(0.0, 0.0, 0.0, 0)
    rng = np.random.default_rng(seed)
    cells = region.cells_lo[rng.integers(len(region.cells_lo), size=n_points)]     # (n, 3)
    q = cells + rng.random((n_points, 3)) * region.cell_size
    in_both = _inside_both(q, a, b)
    n_in = int(in_both.sum())
    if n_in == 0:
        return PenetrationResult(0.0, 0.0, 0.0, 0)
    region_volume = len(region.cells_lo) * float(np.prod(region.cell_size))
    frac = n_in / n_points
    volume = frac * region_volume
    volume_se = region_volume * float(np.sqrt(frac * (1.0 - frac) / n_points))
    inside = q[in_both]
    depth = _depth(inside, a, b)
    best_i = int(np.argmax(depth))
    best_p, best_d = inside[best_i], float(depth[best_i])
    half = 0.5 * (region_volume / n_points) ** (1.0 / 3.0)
    for _ in range(refine_steps):
        c = best_p + rng.uniform(-half, half, size=(256, 3))
        c = c[_inside_both(c, a, b)]
        if len(c):
            d = _depth(c, a, b)
            i = int(np.argmax(d))
            if d[i] > best_d:
                best_p, best_d = c[i], float(d[i])
        half *= 0.5
    return PenetrationResult(volume * M3_TO_MM3, volume_se * M3_TO_MM3, best_d * M_TO_MM, n_in)


# --------------------------------------------------------------------------------------------------
# Where the hands meet


class ContactIoUResult(NamedTuple):
    """IoU of both hands inside the contact zone of the ground truth."""

    iou: float
    """Summed over both hands, |pred ∩ gt ∩ zone| / |(pred ∪ gt) ∩ zone|; NaN when the zone is empty (the
    ground-truth hands never come within twice the radius of each other) or no zone point is inside a hand."""
    n_zone: int
    """Points that fell in the zone."""
    zone_volume_mm3: float
    """Monte-Carlo volume of the zone, mm³."""


def contact_iou(pred_a: MeshLike, pred_b: MeshLike, gt_a: MeshLike, gt_b: MeshLike, *, radius: float = 0.01,
                n_points: int = 100_000, surface_points: int = 100_000, seed: Seed = 0) -> ContactIoUResult:
    """Volumetric IoU of two predicted hands restricted to where the ground-truth hands meet.

    The zone is the set of points within `radius` of **both** ground-truth surfaces: where the two hands
    touch, interlace or come close, the region a two-hand refinement acts on and the whole-hand IoU dilutes
    (a hand of the generator is ~350 cm³; the zone of two crossed hands ~50 cm³, mostly air between them). Points are uniform in the intersection of
    the two ground-truth bounding boxes grown by `radius` (the zone lies inside it); the distance to a
    surface is the distance to the nearest of `surface_points` points drawn on it (``cKDTree``; ~0.1 mm
    off for a hand at 100,000). Inside each zone point, each hand's prediction and ground truth are
    labelled by :func:`mesh_contains`; intersections and unions are summed over both hands.

    Args:
        pred_a, pred_b: the predicted meshes of the two hands (see :func:`as_mesh`), metres.
        gt_a, gt_b: their ground-truth meshes, same order and frame.
        radius: zone radius, metres (default 10 mm, about a finger's width).
        n_points: points uniform in the box.
        surface_points: points drawn on each ground-truth surface for the distances.
        seed: seed or generator of the draws.
    Returns:
        :class:`ContactIoUResult`.
    """
    from scipy.spatial import cKDTree

    meshes = [as_mesh(m, name) for m, name in ((pred_a, "pred_a"), (pred_b, "pred_b"), (gt_a, "gt_a"), (gt_b, "gt_b"))]
    if not (np.isfinite(radius) and radius > 0):
        raise ValueError(f"radius: expected a positive distance in metres, got {radius!r}")
    n_points, surface_points = _count(n_points, "n_points"), _count(surface_points, "surface_points")
    (alo, ahi), (blo, bhi) = _bbox(meshes[2]), _bbox(meshes[3])
    lo, hi = np.maximum(alo, blo) - radius, np.minimum(ahi, bhi) + radius
    if (lo >= hi).any():
        return ContactIoUResult(float("nan"), 0, 0.0)
    rng_a, rng_b, rng_q = np.random.default_rng(seed).spawn(3)
    q = rng_q.uniform(lo, hi, size=(n_points, 3))
    near = np.ones(n_points, dtype=bool)
    for gt, rng in ((meshes[2], rng_a), (meshes[3], rng_b)):
        tree = cKDTree(sample_surface(gt, surface_points, seed=rng))
        near[near] = tree.query(q[near], distance_upper_bound=radius)[0] <= radius
    zone = q[near]
    volume = float(np.prod(hi - lo)) * len(zone) / n_points * M3_TO_MM3
    inter = union = 0
    for pred, gt in ((meshes[0], meshes[2]), (meshes[1], meshes[3])):
        p, g = mesh_contains(pred, zone), mesh_contains(gt, zone)
        inter += int((p & g).sum())
        union += int((p | g).sum())
    return ContactIoUResult(inter / union if union else float("nan"), len(zone), volume)


# --------------------------------------------------------------------------------------------------
# Per-hand and per-sample evaluation


@dataclass(frozen=True)
class HandGeometry:
    """One hand: its closed mesh and its 21 joints, camera frame, metres."""

    mesh: Mesh
    """Closed, outward-oriented mesh (build with :func:`as_mesh`)."""
    joints: np.ndarray
    """(21, 3) float64 joints, internal order (``im2hands.hand.skeleton.INTERNAL``), metres."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "mesh", as_mesh(self.mesh, "mesh"))
        j = np.asarray(self.joints, dtype=np.float64)
        if j.shape != (21, 3):
            raise ValueError(f"joints: expected shape (21, 3), got {j.shape}")
        if not np.isfinite(j).all():
            raise ValueError("joints: contains NaN or inf")
        object.__setattr__(self, "joints", j)


@dataclass(frozen=True)
class TwoHands:
    """Both hands of one frame, camera frame, metres."""

    right: HandGeometry
    left: HandGeometry


@dataclass(frozen=True)
class EvalConfig:
    """Point counts and options of :func:`evaluate_hand` and :func:`evaluate_sample`."""

    iou_points: int = 100_000
    """Points uniform in the box of both meshes for IoU (HALO: 100,000)."""
    iou_pad: float = 0.002
    """Margin around the two meshes' bounding box for the IoU points, metres."""
    chamfer_points: int = 100_000
    """Points drawn on each surface for Chamfer-L1 (HALO: 100,000)."""
    penetration_points: int = 100_000
    """Monte-Carlo points for the penetration volume."""
    penetration_box: Literal["tight", "bbox"] = "tight"
    """Box of the penetration points (see :func:`penetration`)."""
    contact_points: int = 100_000
    """Points uniform in the box of the ground-truth hands' contact zone (see :func:`contact_iou`)."""
    contact_radius: float = 0.01
    """Radius of the contact zone, metres: points within it of both ground-truth surfaces."""


@dataclass(frozen=True)
class HandMetrics:
    """Metrics of one reconstructed hand against its ground truth."""

    iou: float
    """Volumetric IoU (ratio)."""
    chamfer_l1_mm: float
    """Chamfer-L1, 0.5 (accuracy + completeness), mm."""
    accuracy_mm: float
    """Mean distance of predicted surface points to the ground truth, mm."""
    completeness_mm: float
    """Mean distance of ground-truth surface points to the prediction, mm."""
    mpjpe_mm: float
    """MPJPE, IntagHand protocol (middle-MCP root, prediction scaled to the GT palm length), mm."""
    mpjpe_wrist_mm: float
    """MPJPE after centring both skeletons on the wrist, no scaling, mm."""


HAND_METRIC_UNITS: Mapping[str, str] = {
    "iou": "", "chamfer_l1_mm": "mm", "accuracy_mm": "mm", "completeness_mm": "mm",
    "mpjpe_mm": "mm", "mpjpe_wrist_mm": "mm",
}


@dataclass(frozen=True)
class PairMetrics:
    """Interpenetration of the two predicted hands."""

    penetration_volume_mm3: float
    """Volume inside both hands, mm³."""
    penetration_volume_se_mm3: float
    """Standard error of the Monte-Carlo volume, mm³."""
    penetration_depth_mm: float
    """Depth of the deepest point inside both hands (radius of the largest ball inside both), mm."""
    contact_iou: float = float("nan")
    """IoU of both hands within the ground truth's contact zone (:func:`contact_iou`); NaN when the
    ground-truth hands never come within twice ``EvalConfig.contact_radius`` of each other (such samples are
    left out of a report's mean)."""


PAIR_METRIC_UNITS: Mapping[str, str] = {
    "penetration_volume_mm3": "mm³", "penetration_volume_se_mm3": "mm³", "penetration_depth_mm": "mm",
    "contact_iou": "",
}
UNDEFINED_WITHOUT_CONTACT = frozenset({"contact_iou"})
"""Pair metrics that are NaN for a sample whose hands do not meet: a report averages them over the others."""


@dataclass(frozen=True)
class SampleMetrics:
    """Metrics of one frame."""

    right: HandMetrics
    left: HandMetrics
    pair: PairMetrics
    """Interpenetration of the predicted hands."""
    mean: HandMetrics = field(init=False)
    """Mean of the right and left figures (computed)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "mean", HandMetrics(**{
            k: 0.5 * (getattr(self.right, k) + getattr(self.left, k)) for k in HAND_METRIC_UNITS}))


def evaluate_hand(pred: HandGeometry, gt: HandGeometry, *, config: EvalConfig = EvalConfig(),
                  seed: Seed = 0) -> HandMetrics:
    """IoU, Chamfer-L1 and both MPJPEs of one predicted hand against its ground truth.

    Args:
        pred, gt: the hand's predicted and ground-truth mesh and joints, camera frame, metres.
        config: point counts.
        seed: seed or generator; IoU and Chamfer draw from independent child streams.
    Returns:
        :class:`HandMetrics`.
    """
    for name, h in (("pred", pred), ("gt", gt)):
        if not isinstance(h, HandGeometry):
            raise TypeError(f"{name}: expected a HandGeometry, got {type(h).__name__}")
    rng_iou, rng_chamfer = np.random.default_rng(seed).spawn(2)
    r_iou = iou(pred.mesh, gt.mesh, n_points=config.iou_points, pad=config.iou_pad, seed=rng_iou)
    r_ch = chamfer(pred.mesh, gt.mesh, n_points=config.chamfer_points, seed=rng_chamfer)
    return HandMetrics(
        iou=r_iou.iou, chamfer_l1_mm=r_ch.chamfer_l1_mm, accuracy_mm=r_ch.accuracy_mm,
        completeness_mm=r_ch.completeness_mm,
        mpjpe_mm=float(mpjpe(pred.joints, gt.joints, protocol="intaghand")),
        mpjpe_wrist_mm=float(mpjpe(pred.joints, gt.joints, protocol="wrist")),
    )


def evaluate_sample(pred: TwoHands, gt: TwoHands, *, config: EvalConfig = EvalConfig(),
                    seed: Seed = 0) -> SampleMetrics:
    """Metrics of both hands of one frame and the interpenetration of the predicted pair.

    Args:
        pred, gt: predicted and ground-truth hands, camera frame, metres.
        config: point counts.
        seed: seed or generator; right, left and pair draw from independent child streams.
    Returns:
        :class:`SampleMetrics` (right, left, their mean, pair).
    """
    for name, h in (("pred", pred), ("gt", gt)):
        if not isinstance(h, TwoHands):
            raise TypeError(f"{name}: expected a TwoHands, got {type(h).__name__}")
    # the fourth stream is new: the first three (and so the other figures) are what they were without it
    rng_r, rng_l, rng_pair, rng_contact = np.random.default_rng(seed).spawn(4)
    right = evaluate_hand(pred.right, gt.right, config=config, seed=rng_r)
    left = evaluate_hand(pred.left, gt.left, config=config, seed=rng_l)
    pen = penetration(pred.right.mesh, pred.left.mesh, n_points=config.penetration_points, seed=rng_pair,
                      box=config.penetration_box)
    contact = contact_iou(pred.right.mesh, pred.left.mesh, gt.right.mesh, gt.left.mesh,
                          radius=config.contact_radius, n_points=config.contact_points, seed=rng_contact)
    return SampleMetrics(right, left, PairMetrics(pen.volume_mm3, pen.volume_se_mm3, pen.depth_mm, contact.iou))


def gt_from_sample(sample: Mapping[str, np.ndarray]) -> TwoHands:
    """Ground-truth hands of a sample read by ``im2hands.data.read_sample``: each hand's closed mesh
    (``{side}_vertices``, ``{side}_faces``) and joints (``{side}_joints``), camera frame, metres."""
    hands = {}
    for side in ("right", "left"):
        keys = [f"{side}_vertices", f"{side}_faces", f"{side}_joints"]
        missing = [k for k in keys if k not in sample]
        if missing:
            raise ValueError(f"sample: missing keys {missing}; read the sample with these keys")
        hands[side] = HandGeometry(Mesh(sample[keys[0]], sample[keys[1]]), sample[keys[2]])
    return TwoHands(right=hands["right"], left=hands["left"])
