"""The IoU and Chamfer-L1 a *perfect* occupancy field reaches when meshes are extracted at a given lattice:
how much of the evaluation's error is the extraction's, not the network's.

The field is the ground-truth mesh itself: either binary (1 inside, 0 outside: the sharpest a network can
be) or smooth, ``sigmoid(signed distance / tau)`` (a calibrated network; signed distance from 200,000 surface
samples, inside positive). Meshes are extracted like ``im2hands evaluate`` extracts them (MISE from a 32³
start, iso-value 0.5, the ±0.55 query-unit box) and scored with the same metrics against the GT mesh.

Run::

    PYTHONPATH=src python docs/scripts/lattice_ceiling.py data/test_s101 --samples 10 --upsampling-steps 2 3

Prints one row per (lattice, field): mean IoU %, Chamfer-L1 mm over both hands of the first samples.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from scipy.spatial import cKDTree

from im2hands.eval.metrics import chamfer, iou, mesh_contains, sample_surface
from im2hands.hand.skeleton import SIDES
from im2hands.mesh.export import mesh_to_camera
from im2hands.mesh.extract import extract_meshes
from im2hands.mesh.lattice import Lattice

FIELDS = {"binary": None, "smooth, tau 0.5 mm": 0.5e-3, "smooth, tau 1 mm": 1e-3}
"""Field kind -> tau (metres) of the smooth field (None: binary)."""


def perfect_field(vertices: np.ndarray, faces: np.ndarray, query_to_cam: np.ndarray, tau: float | None):
    """An ``extract_meshes`` occupancy function of one hand: GT-mesh occupancy at query-frame points."""
    tree = cKDTree(sample_surface((vertices, faces), 200_000, seed=0)) if tau else None

    def fn(points: list[torch.Tensor]) -> list[torch.Tensor]:
        out = []
        for p in points:
            cam = p.double().numpy() @ query_to_cam[:3, :3].T + query_to_cam[:3, 3]
            if len(cam) == 0:
                out.append(torch.zeros(0))
                continue
            inside = mesh_contains((vertices, faces), cam)
            if tree is None:
                occ = inside.astype(np.float64)
            else:
                d = tree.query(cam)[0]
                occ = 1.0 / (1.0 + np.exp(-np.where(inside, d, -d) / tau))
            out.append(torch.from_numpy(occ.astype(np.float32)))
        return out
    return fn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", type=Path, help="a data folder with a test/ split (im2hands synth)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--samples", type=int, default=10)
    parser.add_argument("--upsampling-steps", type=int, nargs="+", default=[2, 3])
    parser.add_argument("--metric-points", type=int, default=30_000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    files = sorted((args.data / args.split).glob("*.npz"))[:args.samples]
    if not files:
        raise SystemExit(f"{args.data / args.split}: no .npz samples")
    print("| lattice (finest cell) | field | IoU % | Chamfer-L1 mm | hands |")
    print("|---|---|---|---|---|")
    for steps in args.upsampling_steps:
        lattice = Lattice(32, steps, 0.55)
        cell_mm = 2 * 0.55 * 0.4 / lattice.resolution * 1000
        for name, tau in FIELDS.items():
            ious, chamfers = [], []
            for f in files:
                z = np.load(f)
                for side in SIDES:
                    v, fc = z[f"{side}_vertices"].astype(np.float64), z[f"{side}_faces"].astype(np.int64)
                    q2c = np.asarray(z[f"{side}_query_to_cam"], np.float64)
                    ex = extract_meshes(perfect_field(v, fc, q2c, tau), 1, lattice=lattice, threshold=0.5)[0]
                    mv, mf = mesh_to_camera(ex.vertices.double(), ex.faces.long(), torch.from_numpy(q2c))
                    pred = (mv.numpy(), mf.numpy())
                    ious.append(iou(pred, (v, fc), n_points=args.metric_points, seed=0).iou)
                    chamfers.append(chamfer(pred, (v, fc), n_points=args.metric_points, seed=0).chamfer_l1_mm)
            print(f"| {lattice.resolution + 1}³ ({cell_mm:.1f} mm) | {name} | {100 * np.mean(ious):.1f} | "
                  f"{np.mean(chamfers):.2f} | {len(ious)} |", flush=True)


if __name__ == "__main__":
    main()
