"""Benchmark: multi-resolution extraction vs dense evaluation + marching cubes, and seeded re-extraction.

Run: ``PYTHONPATH=src:. python benchmarks/bm_mesh.py`` (add ``--threads N``). Field: 16 capsules in a hand
layout (``tests/mesh/fields.py::hand_field``), 32^3 start, 3 upsampling steps (257^3 lattice), box +-0.55,
two hands (the second one mirrored and moved) in the same calls. Prints evaluations, extraction time,
marching-cubes time and the ratios to the dense baseline measured in the same run; then the seeded
extraction of a slightly thicker hand (threshold 0.45) against a full extraction of it.
"""

from __future__ import annotations

import argparse
import time

import mcubes
import numpy as np
import torch

from im2hands.mesh import Lattice, extract_meshes, extract_meshes_dense, extract_meshes_seeded
from im2hands.mesh.extract import _crop_values, _crossing_crop
from tests.mesh.fields import hand_field


def two_hands(radius_delta: float = 0.0):
    right = hand_field(radius_delta=radius_delta)

    def fn(points):
        left = points[1] * torch.tensor([-1.0, 1.0, 1.0]) + torch.tensor([0.02, 0.01, -0.03])
        return [right(points[0]), right(left)]

    return fn


def timed(f, repeat: int = 1):
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = f()
        best = min(best, time.perf_counter() - t0)
    return out, best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    lattice = Lattice(32, 3, 0.55)

    counter = {"points": 0}

    def counting(fn):
        def wrapped(points):
            counter["points"] += sum(int(p.shape[0]) for p in points)
            return fn(points)
        return wrapped

    fn = two_hands()
    field_time = timed(lambda: fn([lattice.index_to_query(torch.zeros(200_000, 3, dtype=torch.long))] * 2))[1]
    res, t_mr = timed(lambda: extract_meshes(fn, 2, lattice=lattice), args.repeat)
    # marching cubes alone: on the crop vs on the dense padded grid
    crop = _crossing_crop(res[0]._field, lattice)
    grid_crop = _crop_values(res[0]._field, lattice, *crop)
    _, t_mc_crop = timed(lambda: mcubes.marching_cubes(grid_crop, 0.5), args.repeat)
    dense, t_dense = timed(lambda: extract_meshes_dense(fn, 2, lattice=lattice), 1)
    full_grid = np.pad(dense[0].grids[-1].values.double().numpy(), 1, "constant", constant_values=-1e6)
    _, t_mc_dense = timed(lambda: mcubes.marching_cubes(full_grid, 0.5), args.repeat)
    same = all(torch.equal(a.faces, b.faces) and float((a.vertices - b.vertices).abs().max()) <= 1e-6
               for a, b in zip(res, dense))

    ev_mr = sum(r.num_evaluations for r in res)
    ev_dense = sum(r.num_evaluations for r in dense)
    print(f"lattice {lattice.resolution + 1}^3, two hands, {args.threads} threads; field cost "
          f"{1e9 * field_time / 400_000:.0f} ns/point")
    print(f"{'':26s}{'evaluations':>14s}{'time (s)':>10s}{'mcubes (s)':>12s}{'mcubes grid':>16s}")
    print(f"{'dense + mcubes':26s}{ev_dense:>14,d}{t_dense:>10.2f}{2 * t_mc_dense:>12.3f}{'259^3':>16s}")
    shape = "x".join(str(s) for s in grid_crop.shape)
    print(f"{'multi-resolution':26s}{ev_mr:>14,d}{t_mr:>10.2f}{2 * t_mc_crop:>12.3f}{shape:>16s}")
    print(f"ratio dense / multi-resolution: evaluations {ev_dense / ev_mr:.0f}x, time {t_dense / t_mr:.1f}x, "
          f"marching cubes {t_mc_dense / t_mc_crop:.1f}x; same meshes: {same}")
    print(f"per hand: evaluations per call {res[0].evaluations} and {res[1].evaluations}; "
          f"{len(res[0].faces):,d} and {len(res[1].faces):,d} faces")

    moved = two_hands(radius_delta=0.004)
    full, t_full = timed(lambda: extract_meshes(moved, 2, lattice=lattice, threshold=0.45), args.repeat)
    seeded, t_seed = timed(lambda: extract_meshes_seeded(moved, res, threshold=0.45), args.repeat)
    same = all(torch.equal(a.faces, b.faces) for a, b in zip(seeded, full))
    ev_full = sum(r.num_evaluations for r in full)
    ev_seed = sum(r.num_evaluations for r in seeded)
    print(f"seeded (radius +0.004, threshold 0.45): evaluations {ev_seed:,d} vs full {ev_full:,d} "
          f"({100 * (1 - ev_seed / ev_full):.0f}% fewer), calls {len(seeded[0].evaluations)} vs "
          f"{len(full[0].evaluations)}, time {t_seed:.2f} vs {t_full:.2f} s; same meshes: {same}")


if __name__ == "__main__":
    main()
