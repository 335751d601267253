"""Multi-resolution iso-surface extraction (Occupancy Networks' MISE, level-synchronous, vectorised).

Algorithm (details and the exactness argument: ``docs/MESH.md``):

1. Level 0 evaluates every point of the coarse lattice (33^3 for Im2Hands).
2. At each level ``l < D`` the cells to split are (a) the evaluated cells whose 8 corners straddle the
   threshold (some value >= t and some <= t, MISE's rule) and (b) MISE's neighbour activation: every cell
   around a lattice edge whose endpoints lie on opposite sides (``v > t``, the marching-cubes rule) while
   at least one endpoint has not been evaluated (its value is only filled in from a coarser level). The
   corners of the split cells' children are the next level's queries.
3. At the finest level the same neighbour rule runs as *closure passes*: the unevaluated corners of the
   cells around such an edge are evaluated until no crossing edge has an unevaluated endpoint. When the
   surface stays inside the band refined from the coarse level (the usual case) there is no closure pass,
   and the occupancy function is called exactly once per level.
4. Unevaluated points take the value of the corner of the coarser cell that contains them (floor), and
   marching cubes (PyMCubes) runs on the bounding box of the cells the surface crosses, padded with -1e6
   outside the lattice as in Im2Hands.

Every level calls the occupancy function once for all fields together (e.g. both hands), so the network
batches them. Bookkeeping uses dense boxes around the evaluated band of each level, on the device of the
computation; marching cubes runs on the CPU.

Once no crossing edge has an unevaluated endpoint (``Extraction.unresolved_edges == 0``), every vertex of the
mesh lies on an edge whose two values were evaluated and every corner's side is that of an evaluated point,
so the mesh equals dense evaluation + marching cubes wherever the surface was detected.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import mcubes
import numpy as np
import torch
from torch import Tensor

from im2hands.mesh.lattice import Lattice

OccupancyFn = Callable[[list[Tensor]], list[Tensor]]
"""Given one (N_i, 3) float32 tensor of query points per field, return one (N_i,) tensor of values per field."""

PAD_VALUE = -1e6
"""Value outside the lattice (Im2Hands pads the dense grid with it before marching cubes)."""

_MARGIN = 2


def _corner_offsets(device: torch.device) -> Tensor:
    """(8, 3) int64 offsets of a cell's corners, x slowest."""
    r = torch.arange(2, device=device)
    return torch.stack(torch.meshgrid(r, r, r, indexing="ij"), -1).reshape(8, 3)


@dataclass
class LevelGrid:
    """Values of one level on a box of its lattice: evaluated values, the rest filled in from coarser levels."""

    level: int
    """Lattice level (0 = coarsest)."""
    origin: Tensor
    """(3,) int64 level-`level` lattice coordinates of ``values[0, 0, 0]``."""
    values: Tensor
    """(X, Y, Z) float32 values: evaluated where `known`, else the value of the coarser point they fill from."""
    known: Tensor
    """(X, Y, Z) bool, True where the point was evaluated (at this level or a coarser one)."""

    @property
    def hi(self) -> Tensor:
        """(3,) int64 last lattice coordinates of the box (inclusive)."""
        return self.origin + torch.tensor(self.values.shape, device=self.origin.device) - 1


def _gather_box(grid: LevelGrid, lo: Tensor, hi: Tensor, level: int) -> tuple[Tensor, Tensor, Tensor]:
    """Values of `grid` on the level-`level` box [lo, hi] (inclusive), each point taking its floor point.

    Returns (values, known, inside), each (X, Y, Z); `inside` marks points whose floor point is in the grid's
    box; `known` is True only for points that are themselves evaluated grid points.
    """
    shift = level - grid.level
    idx, inside, exact = [], [], []
    for a in range(3):
        c = torch.arange(int(lo[a]), int(hi[a]) + 1, device=grid.values.device)
        f = (c >> shift) - grid.origin[a]
        inside.append((f >= 0) & (f < grid.values.shape[a]))
        exact.append((c & ((1 << shift) - 1)) == 0)
        idx.append(f.clamp(0, grid.values.shape[a] - 1))
    v = grid.values.index_select(0, idx[0]).index_select(1, idx[1]).index_select(2, idx[2])
    k = grid.known.index_select(0, idx[0]).index_select(1, idx[1]).index_select(2, idx[2])
    ins = inside[0][:, None, None] & inside[1][None, :, None] & inside[2][None, None, :]
    ex = exact[0][:, None, None] & exact[1][None, :, None] & exact[2][None, None, :]
    return v, k & ins & ex, ins


@dataclass
class _Prior:
    """Seeded extraction: outside the evaluated band, points take the side of a previous extraction."""

    field: _Field
    """The previous extraction's state (its `fill` gives the previous values, its `threshold` their side)."""


class _Field:
    """The state of one field's extraction: one `LevelGrid` (or None) per level."""

    def __init__(self, lattice: Lattice, threshold: float, device: torch.device, prior: _Prior | None = None):
        self.lattice = lattice
        self.threshold = threshold
        self.device = device
        self.prior = prior
        self.grids: list[LevelGrid | None] = [None] * lattice.levels

    def fill(self, lo: Tensor, hi: Tensor, level: int) -> tuple[Tensor, Tensor]:
        """(values, known) on the level-`level` box [lo, hi]: finest grid wins, points take their floor point."""
        shape = tuple(int(h - l + 1) for l, h in zip(lo, hi))
        if self.prior is not None:
            prev, _ = self.prior.field.fill(lo, hi, level)
            inside = prev > self.prior.field.threshold
            t = self.threshold
            values = torch.where(inside, torch.full_like(prev, t + 1.0), torch.full_like(prev, t - 1.0))
        else:
            values = torch.full(shape, float("nan"), device=self.device)
        known = torch.zeros(shape, dtype=torch.bool, device=self.device)
        for j in range(level + 1):
            g = self.grids[j]
            if g is None:
                continue
            v, k, ins = _gather_box(g, lo, hi, level)
            if self.prior is not None and j < level:
                ins = k  # with a prior, only evaluated coarse points override it
            values = torch.where(ins, v, values)
            known = torch.where(ins, k, known)
        return values, known

    def box_around(self, points: Tensor, level: int, margin: int) -> tuple[Tensor, Tensor]:
        """Box [lo, hi] of level-`level` lattice points around `points` (P, 3), clamped to the lattice."""
        n = self.lattice.cells(level)
        lo = (points.min(0).values - margin).clamp(0, n)
        hi = (points.max(0).values + margin).clamp(0, n)
        return lo, hi

    def make_grid(self, lo: Tensor, hi: Tensor, level: int) -> LevelGrid:
        values, known = self.fill(lo, hi, level)
        return LevelGrid(level, lo.clone(), values, known)


def _mark(grid: LevelGrid, points: Tensor) -> Tensor:
    """(X, Y, Z) bool mask of `points` (P, 3) level lattice coordinates inside `grid`'s box."""
    mask = torch.zeros_like(grid.known)
    local = points - grid.origin
    mask[local[:, 0], local[:, 1], local[:, 2]] = True
    return mask


def _straddling(grid: LevelGrid, cells: Tensor, threshold: float) -> Tensor:
    """(C,) bool: MISE's split rule, some corner value >= threshold and some <= threshold."""
    corners = cells[:, None, :] + _corner_offsets(cells.device) - grid.origin        # (C, 8, 3)
    v = grid.values[corners[..., 0], corners[..., 1], corners[..., 2]]              # (C, 8)
    return (v >= threshold).any(1) & (v <= threshold).any(1)


def _unresolved_edges(grid: LevelGrid, threshold: float) -> list[Tensor]:
    """Per axis, (E, 3) local start points of lattice edges whose endpoints lie on opposite sides
    (``v > threshold``) while at least one endpoint is not evaluated."""
    side = grid.values > threshold
    out = []
    for a in range(3):
        n = side.shape[a]
        s0, s1 = side.narrow(a, 0, n - 1), side.narrow(a, 1, n - 1)
        k0, k1 = grid.known.narrow(a, 0, n - 1), grid.known.narrow(a, 1, n - 1)
        out.append(((s0 != s1) & ~(k0 & k1)).nonzero())
    return out


def _cells_around_edges(edges: list[Tensor], shape: Sequence[int]) -> Tensor:
    """(C, 3) local cells (lower corners) touching the given edges, inside the box, unique."""
    device = edges[0].device
    mask = torch.zeros([max(s - 1, 0) for s in shape], dtype=torch.bool, device=device)
    if mask.numel() == 0:
        return torch.zeros((0, 3), dtype=torch.long, device=device)
    for a, e in enumerate(edges):
        if e.numel() == 0:
            continue
        others = [b for b in range(3) if b != a]
        for du in (0, 1):
            for dv in (0, 1):
                c = e.clone()
                c[:, others[0]] -= du
                c[:, others[1]] -= dv
                ok = ((c >= 0) & (c < torch.tensor(mask.shape, device=device))).all(1)
                c = c[ok]
                mask[c[:, 0], c[:, 1], c[:, 2]] = True
    return mask.nonzero()


def _edges_touch_border(edges: list[Tensor], grid: LevelGrid, n: int) -> bool:
    """True if an edge lies on a face of the box that is not a face of the lattice."""
    shape = torch.tensor(grid.values.shape, device=grid.origin.device)
    lo_open = grid.origin > 0
    hi_open = grid.hi < n
    for a, e in enumerate(edges):
        if e.numel() == 0:
            continue
        for b in range(3):
            last = shape[b] - (2 if b == a else 1)
            if (lo_open[b] and bool((e[:, b] == 0).any())) or (hi_open[b] and bool((e[:, b] >= last).any())):
                return True
    return False


@dataclass(frozen=True)
class Extraction:
    """One field's extracted mesh and the evaluated lattice needed to seed a later extraction."""

    vertices: Tensor
    """(V, 3) float32 mesh vertices, query units, query frame (CPU)."""
    faces: Tensor
    """(F, 3) int64 vertex indices, counter-clockwise seen from outside (normals point to lower values)."""
    evaluations: tuple[int, ...]
    """Points evaluated per level (0 where nothing was left; no call is made when no field has points), then
    per closure pass."""
    closure_passes: int
    """Calls after the last level (0 when the surface stayed inside the refined band)."""
    unresolved_edges: int
    """Crossing lattice edges with an unevaluated endpoint left when `max_closure_passes` ran out (else 0)."""
    threshold: float
    """Iso-value the mesh was extracted at (same units as the field's values)."""
    lattice: Lattice
    """The lattice (resolution, box) of the extraction."""
    grids: tuple[LevelGrid | None, ...] = field(repr=False)
    """Per level, the values on the box around that level's band (None where a level was skipped)."""
    _field: _Field = field(repr=False, compare=False)

    @property
    def num_evaluations(self) -> int:
        """Total number of points evaluated for this field."""
        return sum(self.evaluations)

    def filled_values(self, lo: Tensor, hi: Tensor) -> tuple[Tensor, Tensor]:
        """(values, known) of the finest lattice on the box [lo, hi] (inclusive, (3,) int64 indices), with
        unevaluated points filled in as the extraction saw them. Each is (X, Y, Z); values float32."""
        return self._field.fill(lo.to(self._field.device), hi.to(self._field.device), self.lattice.upsampling_steps)

    def evaluated_points(self) -> tuple[Tensor, Tensor]:
        """All evaluated points: ((M, 3) int64 finest-lattice indices, (M,) float32 values), unordered."""
        pts, vals = [], []
        for g in self.grids:
            if g is None:
                continue
            local = g.known.nonzero()
            s = self.lattice.stride(g.level)
            pts.append((local + g.origin) * s)
            vals.append(g.values[local[:, 0], local[:, 1], local[:, 2]])
        if not pts:
            return torch.zeros((0, 3), dtype=torch.long), torch.zeros(0)
        key_pts = torch.cat(pts)
        r = self.lattice.resolution + 1
        keys = (key_pts[:, 0] * r + key_pts[:, 1]) * r + key_pts[:, 2]
        uniq, inv = torch.unique(keys, return_inverse=True)
        first = torch.full_like(uniq, key_pts.shape[0]).scatter_reduce(
            0, inv, torch.arange(key_pts.shape[0], device=keys.device), "amin")
        return key_pts[first], torch.cat(vals)[first]


def _check_options(num_fields: int, threshold: float, max_closure_passes: int) -> None:
    if not isinstance(num_fields, int) or num_fields < 1:
        raise ValueError(f"num_fields: expected an int >= 1, got {num_fields!r}")
    if not np.isfinite(threshold):
        raise ValueError(f"threshold: expected a finite number, got {threshold!r}")
    if not isinstance(max_closure_passes, int) or max_closure_passes < 0:
        raise ValueError(f"max_closure_passes: expected an int >= 0, got {max_closure_passes!r}")


def _call(occupancy_fn: OccupancyFn, lattice: Lattice, pending: list[Tensor]) -> list[Tensor]:
    """One call of the occupancy function for all fields; `pending` holds finest-lattice indices."""
    queries = [lattice.index_to_query(p) for p in pending]
    out = occupancy_fn(queries)
    if not isinstance(out, (list, tuple)) or len(out) != len(queries):
        raise ValueError(
            f"occupancy_fn: expected a list of {len(queries)} tensors (one per field), got "
            f"{type(out).__name__} of length {len(out) if isinstance(out, (list, tuple)) else '?'}"
        )
    values = []
    for i, (q, v) in enumerate(zip(queries, out)):
        if not isinstance(v, Tensor) or v.shape != (q.shape[0],):
            got = tuple(v.shape) if isinstance(v, Tensor) else type(v).__name__
            raise ValueError(f"occupancy_fn: field {i}: expected values of shape ({q.shape[0]},), got {got}")
        values.append(v.detach().to(device=q.device, dtype=torch.float32))
    return values


def _evaluate(occupancy_fn: OccupancyFn, lattice: Lattice, fields: list[_Field], level: int,
              requests: list[Tensor | None]) -> list[int]:
    """Evaluate the unknown points among `requests` (level lattice coords, in each field's level grid)."""
    pending, locals_ = [], []
    for f, req in zip(fields, requests):
        g = f.grids[level]
        if req is None or g is None or req.numel() == 0:
            locals_.append(None)
            pending.append(torch.zeros((0, 3), dtype=torch.long, device=f.device))
            continue
        local = (_mark(g, req) & ~g.known).nonzero()
        locals_.append(local)
        pending.append((local + g.origin) * lattice.stride(level))
    counts = [int(p.shape[0]) for p in pending]
    if sum(counts) == 0:
        return counts
    values = _call(occupancy_fn, lattice, pending)
    for f, local, v in zip(fields, locals_, values):
        if local is None:
            continue
        g = f.grids[level]
        g.values[local[:, 0], local[:, 1], local[:, 2]] = v
        g.known[local[:, 0], local[:, 1], local[:, 2]] = True
    return counts


def _refine(occupancy_fn: OccupancyFn, lattice: Lattice, fields: list[_Field],
            active: list[Tensor | None], *, first_level: int, extra_final: list[Tensor | None] | None,
            max_closure_passes: int) -> tuple[list[list[int]], int, list[int]]:
    """Run levels `first_level`..D from the given active cells, then the closure passes.

    `active[f]`: (C, 3) int64 cells of `first_level` to evaluate (None: none). `extra_final[f]`: cells of the
    finest level added to its active set (seeded extraction). Returns per field the evaluation counts per
    call, the number of closure passes and per field the unresolved edges left.
    """
    d = lattice.upsampling_steps
    offsets = _corner_offsets(fields[0].device)
    evals: list[list[int]] = [[] for _ in fields]
    level = first_level
    while True:
        if level == d and extra_final is not None:
            active = [a if e is None else (e if a is None else torch.cat([a, e])) for a, e in zip(active, extra_final)]
        requests: list[Tensor | None] = []
        for f, cells in zip(fields, active):
            if cells is None or cells.numel() == 0:
                requests.append(None)
                continue
            corners = (cells[:, None, :] + offsets).reshape(-1, 3)
            lo, hi = f.box_around(corners, level, _MARGIN)
            f.grids[level] = f.make_grid(lo, hi, level)
            requests.append(corners)
        for e, c in zip(evals, _evaluate(occupancy_fn, lattice, fields, level, requests)):
            e.append(c)
        if level == d:
            break
        nxt: list[Tensor | None] = []
        for f, cells in zip(fields, active):
            g = f.grids[level]
            if g is None:
                nxt.append(None)
                continue
            split = cells[_straddling(g, cells, f.threshold)] - g.origin
            around = _cells_around_edges(_unresolved_edges(g, f.threshold), g.values.shape)
            mask = torch.zeros([s - 1 for s in g.values.shape], dtype=torch.bool, device=f.device)
            mask[split[:, 0], split[:, 1], split[:, 2]] = True
            mask[around[:, 0], around[:, 1], around[:, 2]] = True
            parents = mask.nonzero() + g.origin
            nxt.append((parents[:, None, :] * 2 + offsets).reshape(-1, 3) if parents.numel() else None)
        active = nxt
        level += 1

    passes = 0
    n = lattice.resolution
    while True:
        requests = []
        for f in fields:
            g = f.grids[d]
            if g is None:
                requests.append(None)
                continue
            edges = _unresolved_edges(g, f.threshold)
            while _edges_touch_border(edges, g, n):
                lo = (g.origin - 4 * _MARGIN).clamp(0, n)
                hi = (g.hi + 4 * _MARGIN).clamp(0, n)
                g = f.grids[d] = f.make_grid(lo, hi, d)
                edges = _unresolved_edges(g, f.threshold)
            cells = _cells_around_edges(edges, g.values.shape)
            requests.append((cells[:, None, :] + offsets + g.origin).reshape(-1, 3) if cells.numel() else None)
        if all(r is None for r in requests) or passes == max_closure_passes:
            break
        counts = _evaluate(occupancy_fn, lattice, fields, d, requests)
        if sum(counts) == 0:
            break
        for e, c in zip(evals, counts):
            e.append(c)
        passes += 1
    unresolved = [0 if f.grids[d] is None else sum(int(e.shape[0]) for e in _unresolved_edges(f.grids[d], f.threshold))
                  for f in fields]
    return evals, passes, unresolved


# --------------------------------------------------------------------------- marching cubes
def _face_has_inside(f: _Field, axis: int, end: int) -> bool:
    """True if an evaluated point on the lattice face ``index[axis] == end`` (of `f` or of its prior) is
    above the threshold."""
    d = f.lattice.upsampling_steps
    for g in f.grids:
        if g is None:
            continue
        p = (end >> (d - g.level)) - int(g.origin[axis])
        if 0 <= p < g.values.shape[axis]:
            if bool((g.known.select(axis, p) & (g.values.select(axis, p) > f.threshold)).any()):
                return True
    return f.prior is not None and _face_has_inside(f.prior.field, axis, end)


def _face_crop(f: _Field, lattice: Lattice) -> list[tuple[Tensor, Tensor]]:
    """Padded-index boxes [lo, hi] of the cells between the lattice's faces and the -1e6 padding that the
    surface crosses (points on a face of the lattice with a value above the threshold)."""
    n, d, t = lattice.resolution, lattice.upsampling_steps, f.threshold
    boxes = []
    dev = f.device
    for a in range(3):
        for end in (0, n):
            # Filled values are copies of evaluated values on the same face (floor keeps a face), or, seeded,
            # markers of the previous extraction's side there: only evaluated values can put a face inside.
            if not _face_has_inside(f, a, end):
                continue
            lo = torch.zeros(3, dtype=torch.long, device=dev)
            hi = torch.full((3,), n, dtype=torch.long, device=dev)
            lo[a] = hi[a] = end
            v, _ = f.fill(lo, hi, d)
            inside = (v > t).squeeze(a).nonzero()
            if inside.numel() == 0:
                continue
            others = [b for b in range(3) if b != a]
            blo = torch.zeros(3, dtype=torch.long, device=dev)
            bhi = torch.zeros(3, dtype=torch.long, device=dev)
            blo[a], bhi[a] = (0, 1) if end == 0 else (n + 1, n + 2)
            for i, b in enumerate(others):
                blo[b] = inside[:, i].min()
                bhi[b] = inside[:, i].max() + 2
            boxes.append((blo, bhi.clamp(max=n + 2)))
    return boxes


def _crossing_crop(f: _Field, lattice: Lattice) -> tuple[Tensor, Tensor] | None:
    """Padded-index box [lo, hi] holding every cell the surface crosses, or None for an empty mesh."""
    d = lattice.upsampling_steps
    boxes = _face_crop(f, lattice)
    g = f.grids[d]
    if g is not None:
        side = g.values > f.threshold
        x, y, z = (s - 1 for s in side.shape)
        if min(x, y, z) > 0:
            views = [side[i:i + x, j:j + y, k:k + z] for i in (0, 1) for j in (0, 1) for k in (0, 1)]
            anyv = torch.stack(views).any(0)
            allv = torch.stack(views).all(0)
            cells = (anyv & ~allv).nonzero()
            if cells.numel():
                c = cells + g.origin
                boxes.append((c.min(0).values + 1, c.max(0).values + 2))
    if not boxes:
        return None
    lo = torch.stack([b[0] for b in boxes]).min(0).values
    hi = torch.stack([b[1] for b in boxes]).max(0).values
    return lo, hi


def _crop_values(f: _Field, lattice: Lattice, lo: Tensor, hi: Tensor) -> np.ndarray:
    """float64 values of the padded finest grid on the padded-index box [lo, hi]."""
    n = lattice.resolution
    shape = tuple(int(h - l + 1) for l, h in zip(lo, hi))
    out = np.full(shape, PAD_VALUE, dtype=np.float64)
    llo, lhi = (lo - 1).clamp(0, n), (hi - 1).clamp(0, n)
    if bool((llo <= lhi).all()):
        v, _ = f.fill(llo, lhi, lattice.upsampling_steps)
        start = (llo + 1 - lo).tolist()
        out[start[0]:start[0] + v.shape[0], start[1]:start[1] + v.shape[1],
            start[2]:start[2] + v.shape[2]] = v.cpu().double().numpy()
    return out


def _marching_cubes(f: _Field, lattice: Lattice, official_vertex_shift: bool) -> tuple[Tensor, Tensor]:
    crop = _crossing_crop(f, lattice)
    if crop is None:
        return torch.zeros((0, 3)), torch.zeros((0, 3), dtype=torch.long)
    lo, hi = crop
    grid = _crop_values(f, lattice, lo, hi)
    verts, faces = mcubes.marching_cubes(grid, float(f.threshold))
    verts_index = verts + (lo.cpu().numpy() - 1).astype(np.float64)
    query = lattice.vertices_to_query(verts_index, official_vertex_shift=official_vertex_shift)
    return torch.from_numpy(query).float(), torch.from_numpy(faces.astype(np.int64))


def _finish(fields: list[_Field], lattice: Lattice, evals, passes, unresolved, official_vertex_shift) -> list[Extraction]:
    out = []
    for f, e, u in zip(fields, evals, unresolved):
        v, fc = _marching_cubes(f, lattice, official_vertex_shift)
        out.append(Extraction(v, fc, tuple(e), passes, u, f.threshold, lattice, tuple(f.grids), f))
    return out


# --------------------------------------------------------------------------- public API
def extract_meshes(
    occupancy_fn: OccupancyFn,
    num_fields: int,
    *,
    lattice: Lattice = Lattice(),
    threshold: float = 0.5,
    device: torch.device | str = "cpu",
    max_closure_passes: int = 16,
    official_vertex_shift: bool = False,
) -> list[Extraction]:
    """Extract the iso-surface of `num_fields` fields with one occupancy call per level for all of them.

    Args:
        occupancy_fn: given a list of `num_fields` (N_i, 3) float32 tensors of query points (query units,
            on `device`; N_i may differ and may be 0), returns a list of (N_i,) values (occupancy
            probabilities for Im2Hands) in the same order.
        num_fields: number of fields (2 for two hands).
        lattice: resolution and box; Im2Hands: ``Lattice(32, 3, 0.55)`` (the default).
        threshold: iso-value; Im2Hands: 0.5 (initial occupancy) and 0.45 (refined occupancy).
        device: where query points and bookkeeping live (the occupancy network's device).
        max_closure_passes: at most this many extra calls at the finest level for surfaces leaving the band.
        official_vertex_shift: shift vertices by -half a finest cell like the official generator.
    Returns:
        One `Extraction` per field: mesh in query units (query frame), evaluation counts, the evaluated grids.
    """
    _check_options(num_fields, threshold, max_closure_passes)
    device = torch.device(device)
    fields = [_Field(lattice, float(threshold), device) for _ in range(num_fields)]
    n0 = lattice.cells(0)
    r = torch.arange(n0, device=device)
    cells0 = torch.stack(torch.meshgrid(r, r, r, indexing="ij"), -1).reshape(-1, 3)
    evals, passes, unresolved = _refine(occupancy_fn, lattice, fields, [cells0] * num_fields, first_level=0,
                                        extra_final=None, max_closure_passes=max_closure_passes)
    return _finish(fields, lattice, evals, passes, unresolved, official_vertex_shift)


def extract_meshes_seeded(
    occupancy_fn: OccupancyFn,
    previous: Sequence[Extraction],
    *,
    threshold: float = 0.45,
    band_cells: int = 1,
    safety_cells: int = 16,
    device: torch.device | str = "cpu",
    max_closure_passes: int = 16,
    official_vertex_shift: bool = False,
) -> list[Extraction]:
    """Extract fields whose surfaces lie near those of `previous` (e.g. refined occupancy after initial).

    Calls the occupancy function once on a coarse `safety_cells`^3 lattice over the whole box (a safety check)
    and then once at the finest level, only on the band of finest cells the previous surface crossed, dilated
    by `band_cells`, plus every finest cell of the safety cells whose corners straddle the new threshold and
    that are not within one safety cell of the band (a new piece of surface far from the previous one). Closure passes follow the surface wherever it leaves the band. Outside the evaluated points the
    field is assumed to be on the same side as the previous one; the closure passes verify that on every
    lattice edge next to an evaluated point.

    The mesh equals dense evaluation + marching cubes when every connected piece of the new surface crosses
    the band or a coarse cell flagged by the safety check, and ``unresolved_edges == 0`` (``docs/MESH.md``).

    Args:
        occupancy_fn: as in `extract_meshes`, one list entry per element of `previous`.
        previous: one earlier `Extraction` per field, on the same lattice.
        threshold: iso-value of the new fields (Im2Hands' refined occupancy: 0.45).
        band_cells: dilation of the previous crossing cells, in finest cells (>= 0).
        safety_cells: cells per axis of the safety lattice (`resolution_0` over a power of two; 16 for 32^3).
        device, max_closure_passes, official_vertex_shift: as in `extract_meshes`.
    Returns:
        One `Extraction` per field.
    """
    if not previous:
        raise ValueError("previous: expected at least one Extraction")
    _check_options(len(previous), threshold, max_closure_passes)
    if not isinstance(band_cells, int) or band_cells < 0:
        raise ValueError(f"band_cells: expected an int >= 0, got {band_cells!r}")
    lattice = previous[0].lattice
    n0 = lattice.cells(0)
    if not isinstance(safety_cells, int) or safety_cells < 1 or n0 % safety_cells or (n0 // safety_cells) & (
            n0 // safety_cells - 1):
        raise ValueError(f"safety_cells: expected resolution_0 ({n0}) divided by a power of two, got {safety_cells!r}")
    if any(p.lattice != lattice for p in previous):
        raise ValueError("previous: all extractions must share one lattice")
    device = torch.device(device)
    d = lattice.upsampling_steps
    fields = [_Field(lattice, float(threshold), device, _Prior(p._field)) for p in previous]

    # The safety check: the new fields on a coarse lattice of `safety_cells`^3 cells (stored in level 0).
    n0 = lattice.cells(0)
    step = n0 // safety_cells
    r = torch.arange(safety_cells, device=device)
    cells_s = torch.stack(torch.meshgrid(r, r, r, indexing="ij"), -1).reshape(-1, 3)      # safety cells
    offsets = _corner_offsets(device)
    corners_s = (cells_s[:, None, :] + offsets) * step                                     # (C, 8, 3) level 0
    points_s = torch.unique(corners_s.reshape(-1, 3), dim=0)
    for f in fields:
        f.grids[0] = f.make_grid(torch.zeros(3, dtype=torch.long, device=device),
                                 torch.full((3,), n0, dtype=torch.long, device=device), 0)
    count0 = _evaluate(occupancy_fn, lattice, fields, 0, [points_s] * len(fields))

    band: list[Tensor | None] = []
    k = step << d                                                   # finest cells per safety cell and axis
    for f, p in zip(fields, previous):
        cells = _previous_band(p, band_cells)
        covered = torch.zeros((safety_cells,) * 3, dtype=torch.bool, device=device)
        if cells is not None:
            cc = cells // k
            covered[cc[:, 0], cc[:, 1], cc[:, 2]] = True
            # a surface piece within one safety cell of the band is reached by the closure passes
            covered = torch.nn.functional.max_pool3d(covered[None, None].float(), 3, 1, 1)[0, 0].bool()
        v = f.grids[0].values[corners_s[..., 0], corners_s[..., 1], corners_s[..., 2]]   # (C, 8)
        straddle = cells_s[(v >= f.threshold).any(1) & (v <= f.threshold).any(1)]
        missed = straddle[~covered[straddle[:, 0], straddle[:, 1], straddle[:, 2]]]
        if missed.numel():
            rr = torch.arange(k, device=device)
            sub = torch.stack(torch.meshgrid(rr, rr, rr, indexing="ij"), -1).reshape(-1, 3)
            fine = (missed[:, None, :] * k + sub).reshape(-1, 3)
            cells = fine if cells is None else torch.cat([cells, fine])
        band.append(cells)
    evals, passes, unresolved = _refine(occupancy_fn, lattice, fields, [None] * len(fields), first_level=d,
                                        extra_final=band, max_closure_passes=max_closure_passes)
    evals = [[c0] + e for c0, e in zip(count0, evals)]
    return _finish(fields, lattice, evals, passes, unresolved, official_vertex_shift)


def _previous_band(p: Extraction, band_cells: int) -> Tensor | None:
    """(C, 3) finest cells crossed by `p`'s surface (all 8 corners evaluated), dilated by `band_cells`."""
    d = p.lattice.upsampling_steps
    g = p.grids[d]
    if g is None or min(g.values.shape) < 2:
        return None
    x, y, z = (s - 1 for s in g.values.shape)
    side = g.values > p.threshold
    sides = torch.stack([side[i:i + x, j:j + y, k:k + z] for i in (0, 1) for j in (0, 1) for k in (0, 1)])
    crossing = (sides.any(0) & ~sides.all(0)).float()
    if band_cells > 0:
        crossing = torch.nn.functional.max_pool3d(crossing[None, None], 2 * band_cells + 1, 1, band_cells)[0, 0]
    cells = crossing.bool().nonzero()
    if cells.numel() == 0:
        return None
    return cells + g.origin


def extract_meshes_dense(
    occupancy_fn: OccupancyFn,
    num_fields: int,
    *,
    lattice: Lattice = Lattice(),
    threshold: float = 0.5,
    device: torch.device | str = "cpu",
    chunk_points: int = 2_000_000,
    official_vertex_shift: bool = False,
) -> list[Extraction]:
    """Reference: evaluate every finest-lattice point, pad with -1e6, marching cubes on the whole grid.

    Same arguments and result as `extract_meshes` (calls `occupancy_fn` once per chunk of `chunk_points`
    points per field).
    """
    _check_options(num_fields, threshold, 0)
    if not isinstance(chunk_points, int) or chunk_points < 1:
        raise ValueError(f"chunk_points: expected an int >= 1, got {chunk_points!r}")
    device = torch.device(device)
    n = lattice.resolution
    total = (n + 1) ** 3
    values = [torch.empty(total, device=device) for _ in range(num_fields)]
    evals: list[list[int]] = [[] for _ in range(num_fields)]
    for start in range(0, total, chunk_points):
        flat = torch.arange(start, min(start + chunk_points, total), device=device)
        idx = torch.stack([flat // (n + 1) ** 2, (flat // (n + 1)) % (n + 1), flat % (n + 1)], -1)
        out = _call(occupancy_fn, lattice, [idx] * num_fields)
        for f in range(num_fields):
            values[f][flat] = out[f]
            evals[f].append(int(flat.shape[0]))
    results = []
    for f in range(num_fields):
        fld = _Field(lattice, float(threshold), device)
        grid = values[f].reshape(n + 1, n + 1, n + 1)
        fld.grids[-1] = LevelGrid(lattice.upsampling_steps, torch.zeros(3, dtype=torch.long, device=device),
                                  grid, torch.ones_like(grid, dtype=torch.bool))
        padded = np.pad(grid.cpu().double().numpy(), 1, "constant", constant_values=PAD_VALUE)
        verts, faces = mcubes.marching_cubes(padded, float(threshold))
        query = lattice.vertices_to_query(verts - 1.0, official_vertex_shift=official_vertex_shift)
        results.append(Extraction(torch.from_numpy(query).float(), torch.from_numpy(faces.astype(np.int64)),
                                  tuple(evals[f]), 0, 0, float(threshold), lattice, tuple(fld.grids), fld))
    return results
