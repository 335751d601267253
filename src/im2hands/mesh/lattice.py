"""The extraction lattice: levels, strides and the map from lattice indices to query space.

The finest lattice has ``R = resolution_0 * 2**upsampling_steps`` cells per axis, i.e. ``R + 1`` points
(257 for Im2Hands' 32 and 3). Level ``l`` uses every ``2**(upsampling_steps - l)``-th point. A lattice index
``i`` (integer, finest level) is the query point ``2 * box_half * (i / R - 0.5)``: the box is +-box_half query
units (0.55 for Im2Hands), its corners are lattice points.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor


@dataclass(frozen=True)
class Lattice:
    """Multi-resolution lattice of the extraction box (query space)."""

    resolution_0: int = 32
    """Cells per axis of the coarsest level (Im2Hands: 32)."""
    upsampling_steps: int = 3
    """Number of times the cells are halved (Im2Hands: 3, finest lattice 257^3 points)."""
    box_half: float = 0.55
    """Half the box edge in query units (Im2Hands: 0.5 * (1 + padding 0.1) = 0.55)."""

    def __post_init__(self) -> None:
        if not isinstance(self.resolution_0, int) or self.resolution_0 < 1:
            raise ValueError(f"resolution_0: expected an int >= 1, got {self.resolution_0!r}")
        if not isinstance(self.upsampling_steps, int) or not 0 <= self.upsampling_steps <= 8:
            raise ValueError(f"upsampling_steps: expected an int in [0, 8], got {self.upsampling_steps!r}")
        if not float(self.box_half) > 0.0:
            raise ValueError(f"box_half: expected a positive number of query units, got {self.box_half!r}")
        if (self.resolution_0 << self.upsampling_steps) + 1 > 4096:
            raise ValueError(
                f"resolution_0 * 2**upsampling_steps: at most 4095 cells per axis, got "
                f"{self.resolution_0 << self.upsampling_steps}"
            )

    @property
    def resolution(self) -> int:
        """Cells per axis of the finest level (points per axis minus one)."""
        return self.resolution_0 << self.upsampling_steps

    @property
    def levels(self) -> int:
        """Number of levels (``upsampling_steps + 1``)."""
        return self.upsampling_steps + 1

    def cells(self, level: int) -> int:
        """Cells per axis at `level` (level 0 = coarsest)."""
        return self.resolution_0 << level

    def stride(self, level: int) -> int:
        """Distance between neighbouring points of `level`, in finest-lattice units."""
        return 1 << (self.upsampling_steps - level)

    def index_to_query(self, index: Tensor) -> Tensor:
        """Query points of finest-lattice indices.

        Args:
            index: (N, 3) integer finest-lattice indices in [0, R].
        Returns:
            (N, 3) float32 query points, ``2 * box_half * (index / R - 0.5)`` evaluated in float32 the way
            Occupancy Networks' generator does (``box_size * (index / R - 0.5)``).
        """
        return (2.0 * self.box_half) * (index.to(torch.float32) / self.resolution - 0.5)

    def query_to_index(self, query: Tensor) -> Tensor:
        """Inverse of :meth:`index_to_query` for lattice points: (N, 3) query points -> (N, 3) int64 indices
        (rounded to the nearest lattice point; exact for points :meth:`index_to_query` made)."""
        return torch.round((query.to(torch.float64) / (2.0 * self.box_half) + 0.5) * self.resolution).long()

    def index_key(self, index: Tensor) -> Tensor:
        """(N,) int64 key of each (N, 3) finest-lattice index, unique over the lattice (row-major)."""
        r = self.resolution + 1
        return (index[:, 0] * r + index[:, 1]) * r + index[:, 2]

    def vertices_to_query(self, vertices_index: np.ndarray, *, official_vertex_shift: bool = False) -> np.ndarray:
        """Map marching-cubes vertices from finest-lattice index units to query units (float64).

        ``official_vertex_shift=True`` reproduces Occupancy Networks' (and Im2Hands') extra ``-0.5``: their
        meshes are shifted by half a finest cell along every axis (-0.00215 query units, -0.86 mm at 32/3).
        """
        v = vertices_index - 0.5 if official_vertex_shift else vertices_index
        return (2.0 * self.box_half) * (v / self.resolution - 0.5)
