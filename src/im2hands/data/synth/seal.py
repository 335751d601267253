"""Closing a hand mesh that is open at the wrist.

The official MANO mesh (778 vertices) is open at the wrist: 16 vertices form a boundary loop. Occupancy
labels, winding numbers and signed distances need a closed surface, so we seal it the way HALO's data
preparation does (repo korrawe/halo, ``halo_base/scripts/prepare_data_from_mano_param_keypoints.py``,
``seal``): one new vertex at the centroid of the rim, joined to every rim edge by a triangle (a fan).

Unlike HALO's fixed face order, the fan faces here take their orientation from the mesh: each boundary
edge ``a -> b`` of an existing face gets the fan face ``(b, a, centre)``, so the sealed mesh is
consistently oriented for either hand (the left MANO mesh is mirrored, its faces run the other way).

The centre vertex is appended after the original ones (index ``V``); posed vertices are sealed by
:func:`seal_vertices`, which appends the centroid of the posed rim, so the seal follows every pose.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MANO_WRIST_RIM: tuple[int, ...] = (108, 79, 78, 121, 214, 215, 279, 239, 234, 92, 38, 122, 118, 117, 119, 120)
"""The 16 wrist-rim vertices of the official MANO mesh, in loop order (HALO's ``circle_v_id``)."""


@dataclass(frozen=True)
class SealedTopology:
    """Faces of a mesh whose open boundary loop has been closed by a centroid fan."""

    faces: np.ndarray
    """(F + R, 3) int64: the original faces followed by R fan faces, consistently oriented."""
    rim: np.ndarray
    """(R,) int64 the rim vertices (the boundary loop that was closed), in loop order."""
    centre: int
    """Index of the added centre vertex (= the original vertex count V)."""


def _check_faces(faces: np.ndarray, num_vertices: int) -> np.ndarray:
    faces = np.asarray(faces)
    if faces.ndim != 2 or faces.shape[1] != 3 or not np.issubdtype(faces.dtype, np.integer):
        raise ValueError(f"faces: expected an (F, 3) integer array, got shape {faces.shape} dtype {faces.dtype}")
    if faces.size and (faces.min() < 0 or faces.max() >= num_vertices):
        raise ValueError(f"faces: indices must lie in [0, {num_vertices}), got [{faces.min()}, {faces.max()}]")
    return faces.astype(np.int64)


def boundary_half_edges(faces: np.ndarray) -> np.ndarray:
    """Directed edges ``(a, b)`` of the faces whose undirected edge belongs to exactly one face.

    Args:
        faces: (F, 3) integer triangle indices.
    Returns:
        (E, 2) int64, each boundary edge as it runs in its face (``a -> b``), sorted by ``a``.
    """
    faces = np.asarray(faces, dtype=np.int64)
    directed = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])  # (3F, 2)
    undirected = np.sort(directed, axis=1)
    _, inverse, counts = np.unique(undirected, axis=0, return_inverse=True, return_counts=True)
    edges = directed[counts[inverse.reshape(-1)] == 1]
    return edges[np.argsort(edges[:, 0], kind="stable")]


def boundary_loops(faces: np.ndarray) -> list[np.ndarray]:
    """The boundary of a mesh as closed vertex loops, each ordered along its boundary half-edges.

    Args:
        faces: (F, 3) integer triangle indices.
    Returns:
        A list of (R_i,) int64 loops (empty for a closed mesh).
    Raises:
        ValueError: the boundary is not a set of simple loops (a vertex with two outgoing boundary edges).
    """
    edges = boundary_half_edges(faces)
    nxt: dict[int, int] = {}
    for a, b in edges.tolist():
        if a in nxt:
            raise ValueError(f"faces: vertex {a} starts two boundary edges; the boundary is not a set of simple loops")
        nxt[a] = b
    loops = []
    while nxt:
        start = next(iter(nxt))
        loop = [start]
        v = nxt.pop(start)
        while v != start:
            if v not in nxt:
                raise ValueError(f"faces: the boundary through vertex {start} does not close into a loop")
            loop.append(v)
            v = nxt.pop(v)
        loops.append(np.asarray(loop, dtype=np.int64))
    return loops


def seal_topology(faces: np.ndarray, num_vertices: int, rim: np.ndarray | tuple[int, ...] | None = None
                  ) -> SealedTopology:
    """Close one boundary loop with a fan around a new centre vertex (index ``num_vertices``).

    Args:
        faces: (F, 3) integer triangle indices of a consistently oriented mesh.
        num_vertices: V, the number of vertices the faces index.
        rim: the vertices of the loop to close (any order), e.g. :data:`MANO_WRIST_RIM`. None: the mesh must
            have exactly one boundary loop, which is closed.
    Returns:
        :class:`SealedTopology`; seal the vertices with :func:`seal_vertices` ``(vertices, topology.rim)``.
    Raises:
        ValueError: `rim` is not exactly one boundary loop of the mesh, or (with ``rim=None``) the mesh has
            no boundary or several loops.
    """
    faces = _check_faces(faces, num_vertices)
    loops = boundary_loops(faces)
    if rim is None:
        if len(loops) != 1:
            raise ValueError(f"faces: expected exactly one boundary loop (the wrist) to seal, found {len(loops)}; "
                             "pass rim= to choose one")
        loop = loops[0]
    else:
        wanted = set(int(i) for i in np.asarray(rim).reshape(-1))
        matches = [lp for lp in loops if set(lp.tolist()) == wanted]
        if not matches:
            sizes = [len(lp) for lp in loops]
            raise ValueError(f"rim: the {len(wanted)} given vertices are not one boundary loop of the mesh "
                             f"(its boundary loops have sizes {sizes})")
        loop = matches[0]
    centre = int(num_vertices)
    # boundary half-edge a -> b (loop[i] -> loop[i+1]) gets the fan face (b, a, centre)
    fan = np.stack([np.roll(loop, -1), loop, np.full_like(loop, centre)], axis=1)
    return SealedTopology(faces=np.concatenate([faces, fan]), rim=loop, centre=centre)


def seal_vertices(vertices: np.ndarray, rim: np.ndarray) -> np.ndarray:
    """Append the centroid of the rim vertices (the seal's centre vertex).

    Args:
        vertices: (..., V, 3) vertices, any frame and units.
        rim: (R,) rim vertex indices (:attr:`SealedTopology.rim`).
    Returns:
        (..., V + 1, 3) the vertices followed by the rim centroid, same dtype.
    """
    vertices = np.asarray(vertices)
    if vertices.ndim < 2 or vertices.shape[-1] != 3:
        raise ValueError(f"vertices: expected shape (..., V, 3), got {vertices.shape}")
    centre = vertices[..., np.asarray(rim), :].mean(axis=-2, keepdims=True)
    return np.concatenate([vertices, centre], axis=-2)


def seal_mesh(vertices: np.ndarray, faces: np.ndarray, rim: np.ndarray | tuple[int, ...] | None = None
              ) -> tuple[np.ndarray, np.ndarray]:
    """Seal one open boundary loop of a mesh: ``(vertices (V+1, 3), faces (F+R, 3))``.

    See :func:`seal_topology` for `rim`; the centre vertex is the rim centroid.
    """
    vertices = np.asarray(vertices)
    if vertices.ndim != 2 or vertices.shape[1] != 3:
        raise ValueError(f"vertices: expected shape (V, 3), got {vertices.shape}")
    topo = seal_topology(faces, vertices.shape[0], rim)
    return seal_vertices(vertices, topo.rim), topo.faces
