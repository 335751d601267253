"""HALO-style occupancy samples of one hand in its query space.

Query space (``docs/DATA.md``): the hand's canonical frame scaled so that ``0.4 * p`` is metres; the box
``[-0.55, 0.55]^3`` holds the hand. For one posed closed mesh already mapped into query space this module
draws

- occupancy points: ``uniform_fraction`` uniform in the box, the rest on the surface plus isotropic
  Gaussian noise of ``surface_sigma`` query units (HALO: 50 % / 50 %, sigma 0.01 = 4 mm),
- IoU points: uniform in the box,
- surface points with the normals of their faces (for Chamfer distance and normal consistency),

and labels points inside/outside with the generalised winding number (``> 0.5`` is inside). A winding
number is right where the mesh self-intersects (overlaps count 2, still inside), unlike ray parity.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class OccupancyConfig:
    """How many points of each kind to draw per hand, and where."""

    num_points: int = 100_000
    """Occupancy training points per hand (official data: 100,000)."""
    uniform_fraction: float = 0.5
    """Share of occupancy points drawn uniformly in the box; the rest are near the surface."""
    surface_sigma: float = 0.01
    """Standard deviation of the noise added to surface samples, query units (0.01 = 4 mm)."""
    half_extent: float = 0.55
    """Half side of the sampling box, query units (0.55 = 22 cm)."""
    num_iou_points: int = 10_000
    """Uniform points in the box with labels, for IoU."""
    num_surface_points: int = 10_000
    """Surface points with normals, for Chamfer distance."""

    def __post_init__(self):
        for name in ("num_points", "num_iou_points", "num_surface_points"):
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"OccupancyConfig.{name}: expected a positive int, got {v!r}")
        if not 0.0 <= self.uniform_fraction <= 1.0:
            raise ValueError(f"OccupancyConfig.uniform_fraction: expected a value in [0, 1], got {self.uniform_fraction}")
        if self.surface_sigma < 0 or self.half_extent <= 0:
            raise ValueError(
                f"OccupancyConfig: surface_sigma must be >= 0 and half_extent > 0, got "
                f"{self.surface_sigma}, {self.half_extent}"
            )


@dataclass(frozen=True)
class OccupancySamples:
    """Samples of one hand, all in its query space (x 0.4 = metres). float32 here; the writer stores float16.

    Attributes:
        points: (N, 3) occupancy points, values exactly representable in float16; the first ``round(N * uniform_fraction)`` are the uniform ones.
        occupancy: (N,) bool, True inside the mesh.
        points_iou: (M, 3) uniform points in the box, exactly representable in float16.
        occupancy_iou: (M,) bool.
        surface_points: (S, 3) points on the surface.
        surface_normals: (S, 3) unit outward normals of the faces the surface points lie on.
    """

    points: np.ndarray
    occupancy: np.ndarray
    points_iou: np.ndarray
    occupancy_iou: np.ndarray
    surface_points: np.ndarray
    surface_normals: np.ndarray


def inside_mesh(vertices: np.ndarray, faces: np.ndarray, points: np.ndarray) -> np.ndarray:
    """True where a point is inside a closed, outward-oriented (possibly self-intersecting) mesh.

    Uses point-cloud-utils' fast generalised winding number (``> 0.5`` is inside), evaluated only at the
    points inside the mesh's bounding box (the others are outside).

    Args:
        vertices: (V, 3) mesh vertices, any unit.
        faces: (F, 3) int triangle indices, outward-oriented.
        points: (N, 3) query points, same unit and frame as ``vertices``.
    Returns:
        (N,) bool.
    """
    import point_cloud_utils as pcu

    v = np.ascontiguousarray(vertices, dtype=np.float64)
    f = np.ascontiguousarray(faces, dtype=np.int64)
    q = np.ascontiguousarray(points, dtype=np.float64)
    if v.ndim != 2 or v.shape[1] != 3:
        raise ValueError(f"vertices: expected shape (V, 3), got {v.shape}")
    if f.ndim != 2 or f.shape[1] != 3:
        raise ValueError(f"faces: expected shape (F, 3), got {f.shape}")
    if q.ndim != 2 or q.shape[1] != 3:
        raise ValueError(f"points: expected shape (N, 3), got {q.shape}")
    if f.size and (f.min() < 0 or f.max() >= len(v)):
        raise ValueError(f"faces: indices must be in [0, {len(v)}), got range [{f.min()}, {f.max()}]")
    inside = np.zeros(len(q), dtype=bool)
    if len(q) == 0 or len(f) == 0:
        return inside
    # Points outside the mesh's bounding box are outside: skip their winding numbers (most uniform points).
    used = v[np.unique(f)]
    lo, hi = used.min(axis=0), used.max(axis=0)
    pad = 1e-9 * max(float(np.abs(used).max()), 1.0)
    candidates = np.flatnonzero(((q >= lo - pad) & (q <= hi + pad)).all(axis=1))
    if len(candidates):
        winding = pcu.triangle_soup_fast_winding_number(v, f, np.ascontiguousarray(q[candidates]))
        inside[candidates] = np.asarray(winding) > 0.5
    return inside


def check_closed(faces: np.ndarray, name: str) -> None:
    """Raise ``ValueError`` unless every edge of the triangle mesh is shared by exactly two faces with
    opposite directions (closed and consistently oriented), the condition for winding-number labels."""
    f = np.asarray(faces, dtype=np.int64)
    edges = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])  # directed half-edges
    uniq, counts = np.unique(edges, axis=0, return_counts=True)
    if (counts != 1).any():
        raise ValueError(f"{name}: mesh is not consistently oriented ({int((counts != 1).sum())} repeated half-edges)")
    key = uniq[:, 0] * (f.max() + 1) + uniq[:, 1]
    rev = uniq[:, 1] * (f.max() + 1) + uniq[:, 0]
    open_edges = int((~np.isin(rev, key)).sum())
    if open_edges:
        raise ValueError(f"{name}: mesh is not closed ({open_edges} boundary edges); seal it before labelling")


def sample_surface(
    rng: np.random.Generator, vertices: np.ndarray, faces: np.ndarray, count: int
) -> tuple[np.ndarray, np.ndarray]:
    """Area-uniform points on a mesh and the unit normals of their faces.

    Args:
        rng: source of randomness (one integer seed is drawn from it for trimesh).
        vertices: (V, 3), faces: (F, 3) int, outward-oriented.
        count: number of points.
    Returns:
        points (count, 3) float64 on the surface, normals (count, 3) float64 unit, outward.
    """
    import trimesh

    mesh = trimesh.Trimesh(np.asarray(vertices, dtype=np.float64), np.asarray(faces), process=False)
    points, face_index = trimesh.sample.sample_surface(mesh, int(count), seed=int(rng.integers(2**63 - 1)))
    return np.asarray(points), np.asarray(mesh.face_normals[face_index])


def sample_occupancy(
    rng: np.random.Generator, vertices_query: np.ndarray, faces: np.ndarray, config: OccupancyConfig = OccupancyConfig()
) -> OccupancySamples:
    """Draw and label all point sets of one hand.

    Args:
        rng: source of all randomness.
        vertices_query: (V, 3) posed closed mesh in the hand's query space (x 0.4 = metres).
        faces: (F, 3) int, outward-oriented in query space (flip them first if the map into query space
            mirrors, as it does for the left hand).
        config: counts and distributions.
    Returns:
        :class:`OccupancySamples` (float32 points).
    """
    c = config
    h = c.half_extent
    n_uniform = int(round(c.num_points * c.uniform_fraction))
    n_near = c.num_points - n_uniform
    uniform = rng.uniform(-h, h, (n_uniform, 3))
    surf, _ = sample_surface(rng, vertices_query, faces, n_near) if n_near else (np.zeros((0, 3)), None)
    near = surf + rng.normal(0.0, c.surface_sigma, surf.shape)
    # Round to float16, the stored precision, so that labels are right for the stored coordinates.
    points = np.concatenate([uniform, near]).astype(np.float16).astype(np.float32)
    points_iou = rng.uniform(-h, h, (c.num_iou_points, 3)).astype(np.float16).astype(np.float32)
    labels = inside_mesh(vertices_query, faces, np.concatenate([points, points_iou]))
    surface_points, surface_normals = sample_surface(rng, vertices_query, faces, c.num_surface_points)
    return OccupancySamples(
        points=points,
        occupancy=labels[: len(points)],
        points_iou=points_iou,
        occupancy_iou=labels[len(points):],
        surface_points=surface_points.astype(np.float32),
        surface_normals=surface_normals.astype(np.float32),
    )
