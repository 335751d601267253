"""Analytic occupancy fields and a slow MISE reference shared by the mesh tests and benchmark."""

from __future__ import annotations

import mcubes
import numpy as np
import torch
from torch import Tensor

from im2hands.mesh.lattice import Lattice


def capsule_field(segments, radii, *, sharpness: float = 0.01):
    """Occupancy probability of a union of capsules: sigmoid(-signed distance / sharpness).

    segments: (K, 2, 3) query units; radii: (K,) query units. Returns f((N, 3)) -> (N,) float32.
    """
    seg = torch.as_tensor(segments, dtype=torch.float32)
    rad = torch.as_tensor(radii, dtype=torch.float32)
    a, b = seg[:, 0], seg[:, 1]
    ab = b - a
    ab2 = (ab * ab).sum(-1).clamp_min(1e-12)

    def occ(p: Tensor) -> Tensor:
        aa, abb, r = a.to(p.device), ab.to(p.device), rad.to(p.device)
        t = (((p[:, None] - aa) * abb).sum(-1) / ab2.to(p.device)).clamp(0, 1)     # (N, K)
        dist = (p[:, None] - (aa + t[..., None] * abb)).norm(dim=-1) - r          # (N, K)
        return torch.sigmoid(-dist.min(1).values / sharpness)

    return occ


def blob_field():
    """Two overlapping capsules: a 'palm and finger' blob."""
    return capsule_field([[(-0.3, 0.0, 0.0), (0.3, 0.1, 0.0)], [(0.0, -0.3, 0.05), (0.05, 0.3, -0.1)]], [0.08, 0.05])


def finger_field(radius: float = 0.03):
    """A thin diagonal finger (radius 0.03 query units = 1.2 cm)."""
    return capsule_field([[(-0.2, -0.2, -0.2), (0.25, 0.2, 0.3)]], [radius])


def hand_field(scale: float = 1.0, radius_delta: float = 0.0):
    """16 capsules in a hand layout (palm + 5 fingers of 3 bones), query units, ~0.45 long."""
    segs = [[(-0.12, 0.0, 0.0), (0.0, 0.0, 0.0)]]
    radii = [0.07]
    # the wrist -> middle-MCP bone points along -x in query space
    bases = [(-0.13, 0.0, -0.07), (-0.15, 0.0, -0.035), (-0.155, 0.0, 0.0), (-0.15, 0.0, 0.035), (-0.03, 0.0, -0.08)]
    dirs = [(-1.0, -0.05, -0.15), (-1.0, -0.03, -0.05), (-1.0, 0.0, 0.0), (-1.0, 0.03, 0.07), (-0.6, -0.2, -0.8)]
    lengths = [0.05, 0.06, 0.065, 0.06, 0.05]
    for base, dr, ln in zip(bases, dirs, lengths):
        p = np.array(base)
        dr = np.array(dr) / np.linalg.norm(dr)
        for j in range(3):
            q = p + dr * ln * (1.0 - 0.15 * j)
            segs.append([tuple(p), tuple(q)])
            radii.append(0.022 - 0.002 * j)
            dr = dr + np.array([0.0, -0.25, 0.0])
            dr = dr / np.linalg.norm(dr)
            p = q
    segs = np.asarray(segs) * scale
    return capsule_field(segs, np.asarray(radii) * scale + radius_delta)


def sphere_sdf_field(radius: float, center=(0.0, 0.0, 0.0)):
    """0.5 - signed distance to a sphere (so the 0.5 level set is the sphere; linear across it)."""
    c = torch.tensor(center)

    def occ(p: Tensor) -> Tensor:
        return 0.5 - ((p - c.to(p.device)).norm(dim=-1) - radius)

    return occ


def solo(fns):
    """An OccupancyFn over several single-field functions, recording the points per call."""
    calls: list[list[int]] = []

    def fn(points):
        calls.append([int(p.shape[0]) for p in points])
        return [f(p) for f, p in zip(fns, points)]

    fn.calls = calls
    return fn


class SlowMise:
    """Occupancy Networks' MISE rules written plainly (dict octree, Python loops): the test reference.

    A leaf voxel of size > 1 is subdivided when the evaluated points on its closed boundary include a value
    >= threshold and one <= threshold; iterations continue until no point is left to evaluate. `to_dense`
    fills unevaluated points from their predecessor along x, then y, then z.
    """

    def __init__(self, resolution_0: int, depth: int, threshold: float):
        self.s0 = 1 << depth
        self.resolution = resolution_0 * self.s0
        self.threshold = threshold
        self.leaves: dict[tuple[int, int, int], int] = {}
        self.values: dict[tuple[int, int, int], float | None] = {}
        for i in range(resolution_0):
            for j in range(resolution_0):
                for k in range(resolution_0):
                    self.leaves[(i * self.s0, j * self.s0, k * self.s0)] = self.s0
        for i in range(resolution_0 + 1):
            for j in range(resolution_0 + 1):
                for k in range(resolution_0 + 1):
                    self.values[(i * self.s0, j * self.s0, k * self.s0)] = None

    def query(self) -> np.ndarray:
        return np.array([p for p, v in self.values.items() if v is None], dtype=np.int64).reshape(-1, 3)

    def _leaf_of_cell(self, c):
        s = self.s0
        while s >= 1:
            key = (c[0] // s * s, c[1] // s * s, c[2] // s * s)
            if self.leaves.get(key) == s:
                return key
            s //= 2
        raise AssertionError(c)

    def update(self, points: np.ndarray, values: np.ndarray) -> None:
        for p, v in zip(map(tuple, points.tolist()), values.tolist()):
            self.values[p] = v
        pos, neg = set(), set()
        for p, v in self.values.items():
            if v is None:
                continue
            for dx in (-1, 0):
                for dy in (-1, 0):
                    for dz in (-1, 0):
                        c = (p[0] + dx, p[1] + dy, p[2] + dz)
                        if min(c) < 0 or max(c) >= self.resolution:
                            continue
                        leaf = self._leaf_of_cell(c)
                        if v >= self.threshold:
                            pos.add(leaf)
                        if v <= self.threshold:
                            neg.add(leaf)
        for leaf in sorted(pos & neg):
            size = self.leaves[leaf]
            if size == 1:
                continue
            h = size // 2
            del self.leaves[leaf]
            for i in range(2):
                for j in range(2):
                    for k in range(2):
                        self.leaves[(leaf[0] + i * h, leaf[1] + j * h, leaf[2] + k * h)] = h
            for i in range(3):
                for j in range(3):
                    for k in range(3):
                        self.values.setdefault((leaf[0] + i * h, leaf[1] + j * h, leaf[2] + k * h), None)

    def to_dense(self) -> np.ndarray:
        n = self.resolution + 1
        out = np.full((n, n, n), np.nan)
        for p, v in self.values.items():
            out[p] = v
        for axis in range(3):
            idx = np.where(np.isnan(out), 0, np.arange(n).reshape([-1 if a == axis else 1 for a in range(3)]))
            idx = np.maximum.accumulate(idx, axis=axis)
            filled = np.take_along_axis(out, idx, axis=axis)
            out = np.where(np.isnan(out), filled, out)
        return out


def slow_mise(fn, lattice: Lattice, threshold: float):
    """Run `SlowMise` on one field fn((N, 3)) -> (N,). Returns (vertices query float32, faces, evaluations per
    iteration)."""
    m = SlowMise(lattice.resolution_0, lattice.upsampling_steps, threshold)
    evals = []
    pts = m.query()
    while len(pts):
        q = lattice.index_to_query(torch.from_numpy(pts))
        m.update(pts, fn(q).double().numpy())
        evals.append(len(pts))
        pts = m.query()
    grid = np.pad(m.to_dense(), 1, "constant", constant_values=-1e6)
    v, f = mcubes.marching_cubes(grid, threshold)
    v = lattice.vertices_to_query(v - 1.0)
    return torch.from_numpy(v).float(), torch.from_numpy(f.astype(np.int64)), evals
