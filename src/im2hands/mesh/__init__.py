"""Mesh extraction (multi-resolution iso-surface), camera-frame meshes, export and RefOcc anchors.

``docs/MESH.md`` describes the algorithm, the lattice mapping, the seeding condition and the API.
"""

from im2hands.mesh.export import export_mesh, mesh_to_camera, sample_anchors
from im2hands.mesh.extract import (
    PAD_VALUE,
    Extraction,
    LevelGrid,
    OccupancyFn,
    extract_meshes,
    extract_meshes_dense,
    extract_meshes_seeded,
)
from im2hands.mesh.lattice import Lattice

__all__ = [
    "PAD_VALUE", "Extraction", "Lattice", "LevelGrid", "OccupancyFn", "export_mesh", "extract_meshes",
    "extract_meshes_dense", "extract_meshes_seeded", "mesh_to_camera", "sample_anchors",
]
