"""Query-space meshes to the camera frame, `.ply` / `.obj` export, and RefOcc's surface anchors."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import torch
import trimesh
from torch import Tensor

from im2hands._checks import check_shape, check_tensor


def mesh_to_camera(vertices_query: Tensor, faces: Tensor, query_to_camera: Tensor) -> tuple[Tensor, Tensor]:
    """Map a query-space mesh to the camera frame with a per-hand affine transform.

    Args:
        vertices_query: (V, 3) vertices, query units, the hand's query frame.
        faces: (F, 3) int64 vertex indices, counter-clockwise seen from outside.
        query_to_camera: (4, 4) affine transform, query frame -> camera frame (metres); for Im2Hands it
            contains the 0.4 query scale, the root rotation and, for a left hand, the x-mirror.
    Returns:
        (vertices_cam (V, 3) metres in the camera frame, dtype of `vertices_query`; faces (F, 3) int64).
        When the transform's 3x3 part has a negative determinant (a mirror: left hands) every face's winding
        is reversed, so faces stay counter-clockwise seen from outside and the normals point outwards.
    """
    check_shape(vertices_query, "V 3", "vertices_query")
    check_shape(faces, "F 3", "faces")
    check_shape(query_to_camera, "4 4", "query_to_camera")
    tf = query_to_camera.to(vertices_query.dtype)
    lin = tf[:3, :3]
    det = torch.linalg.det(lin.double())
    if not bool(torch.isfinite(det)) or abs(float(det)) < 1e-12:
        raise ValueError(f"query_to_camera: expected an invertible 3x3 part, got determinant {float(det):.3g}")
    vertices_cam = vertices_query @ lin.T + tf[:3, 3]
    faces_cam = faces[:, [0, 2, 1]] if float(det) < 0 else faces
    return vertices_cam, faces_cam


def _trimesh(vertices: Tensor | np.ndarray, faces: Tensor | np.ndarray) -> trimesh.Trimesh:
    v = vertices.detach().cpu().numpy() if isinstance(vertices, Tensor) else np.asarray(vertices)
    f = faces.detach().cpu().numpy() if isinstance(faces, Tensor) else np.asarray(faces)
    if v.ndim != 2 or v.shape[1] != 3:
        raise ValueError(f"vertices: expected shape (V, 3), got {v.shape}")
    if f.ndim != 2 or f.shape[1] != 3:
        raise ValueError(f"faces: expected shape (F, 3), got {f.shape}")
    return trimesh.Trimesh(vertices=v.astype(np.float64), faces=f.astype(np.int64), process=False)


def export_mesh(path: str | os.PathLike, vertices: Tensor, faces: Tensor) -> Path:
    """Write a mesh as `.ply` (binary) or `.obj` through trimesh, atomically (temporary file + rename).

    Args:
        path: destination; its suffix (`.ply` or `.obj`) picks the format.
        vertices: (V, 3) vertices (metres in the camera frame for Im2Hands' outputs).
        faces: (F, 3) int64 vertex indices.
    Returns:
        The written path.
    """
    path = Path(path)
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in ("ply", "obj"):
        raise ValueError(f"path: expected a .ply or .obj file, got {str(path)!r}")
    mesh = _trimesh(vertices, faces)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".{fmt}", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            mesh.export(fh, file_type=fmt)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def sample_anchors(vertices: Tensor, faces: Tensor, count: int = 512, *, seed: int = 0) -> Tensor:
    """Points spread evenly over a mesh's surface (RefOcc's anchors; official: trimesh `sample_surface_even`).

    `sample_surface_even` rejects points closer than a radius and may return fewer than `count`; the rest are
    drawn area-uniformly (`sample_surface`) with the seed ``seed + 1``. Same inputs and seed, same points.

    Args:
        vertices: (V, 3) mesh vertices (any frame/units; the anchors share them).
        faces: (F, 3) int64 vertex indices; the mesh must have a positive area.
        count: number of anchors (Im2Hands: 512).
        seed: random seed.
    Returns:
        (count, 3) anchors, dtype and device of `vertices`.
    """
    check_tensor(vertices, "vertices")
    if not isinstance(count, int) or count < 1:
        raise ValueError(f"count: expected an int >= 1, got {count!r}")
    mesh = _trimesh(vertices, faces)
    if len(mesh.faces) == 0 or not mesh.area > 0:
        raise ValueError("vertices, faces: the mesh is empty (no face with positive area); no anchors to sample")
    pts, _ = trimesh.sample.sample_surface_even(mesh, count, seed=seed)
    pts = np.asarray(pts)[:count]
    if len(pts) < count:
        extra, _ = trimesh.sample.sample_surface(mesh, count - len(pts), seed=seed + 1)
        pts = np.concatenate([pts, np.asarray(extra)])
    return torch.from_numpy(pts).to(dtype=vertices.dtype, device=vertices.device)
