"""Benchmark: each evaluation metric on a hand-sized mesh (1,300 vertices) at 100,000 points.

Run: ``PYTHONPATH=src python benchmarks/bm_eval_metrics.py`` (draws a penetrating pair of hands with the
synthetic scene sampler, open hand model). Prints the best wall and CPU time of each metric, and two
same-run comparisons:

- IoU points in the two meshes' bounding box (ours) vs in HALO's +-0.55 query-unit box (+-22 cm around
  the wrist): the standard error of IoU over repeated seeds, and its ratio;
- penetration in the ``tight`` region vs the bounding-box intersection: time and standard error.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from im2hands.eval.metrics import chamfer, contact_iou, iou, mesh_contains, mpjpe, penetration, sample_surface


def _time(fn, repeats: int) -> tuple[float, float, object]:
    out = fn()
    wall = cpu = float("inf")
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        wall, cpu = min(wall, time.perf_counter() - t0), min(cpu, time.process_time() - c0)
    return wall, cpu, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, default=100_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seeds", type=int, default=8, help="seeds for the IoU noise comparison")
    args = ap.parse_args()

    from im2hands.data.synth.scene import load_hand_models, sample_scene

    models = load_hand_models()
    for seed in range(200):
        scene = sample_scene(np.random.default_rng(seed), models)
        if scene.penetration_volume > 0:
            break
    right = (scene.right.vertices, scene.right.faces)
    left = (scene.left.vertices, scene.left.faces)
    # a "prediction": the right hand grown by 1 % about its wrist, 2 mm noise on the joints
    wrist = scene.right.joints[0]
    pred = ((scene.right.vertices - wrist) * 1.01 + wrist, scene.right.faces)
    joints_pred = scene.right.joints + np.random.default_rng(0).normal(scale=0.002, size=(21, 3))
    n = args.points
    print(f"scene seed {seed} ({scene.kind}): {len(right[0])} vertices, {len(right[1])} faces per hand; "
          f"{n} points; best of {args.repeats}")

    q = np.random.default_rng(0).uniform(right[0].min(0), right[0].max(0), size=(n, 3))
    rows = [
        ("mesh_contains (points in the hand's bbox)", lambda: mesh_contains(right, q)),
        ("sample_surface", lambda: sample_surface(right, n)),
        ("iou (2 x mesh_contains)", lambda: iou(pred, right, n_points=n)),
        ("chamfer (2 x sample + 2 kd-trees)", lambda: chamfer(pred, right, n_points=n)),
        ("mpjpe intaghand + wrist, 1 hand", lambda: (mpjpe(joints_pred, scene.right.joints),
                                                    mpjpe(joints_pred, scene.right.joints, protocol="wrist"))),
        ("penetration, tight region", lambda: penetration(right, left, n_points=n)),
        ("penetration, bbox intersection", lambda: penetration(right, left, n_points=n, box="bbox")),
        ("contact_iou (2 samplings, 2 kd-trees, 4 x mesh_contains in the zone)",
         lambda: contact_iou(pred, left, right, left, n_points=n, surface_points=n)),
    ]
    print(f"{'metric':45s} {'wall ms':>8s} {'cpu ms':>8s}  result")
    # (names longer than the column push their figures right)
    for name, fn in rows:
        wall, cpu, out = _time(fn, args.repeats)
        text = str(out) if not isinstance(out, np.ndarray) else f"array{out.shape}"
        print(f"{name:45s} {wall * 1e3:8.1f} {cpu * 1e3:8.1f}  {text[:110]}")

    # IoU noise: our box vs HALO's +-0.55 query-unit box (+-0.22 m) around the wrist
    halo = (wrist - 0.22, wrist + 0.22)
    ours = [iou(pred, right, n_points=n, seed=s) for s in range(args.seeds)]
    theirs = [iou(pred, right, n_points=n, box=halo, seed=s) for s in range(args.seeds)]
    sd_o, sd_t = np.std([r.iou for r in ours], ddof=1), np.std([r.iou for r in theirs], ddof=1)
    print(f"IoU over {args.seeds} seeds: ours mean {np.mean([r.iou for r in ours]):.4f} sd {sd_o:.4f} "
          f"(points in union {np.mean([r.n_union for r in ours]):.0f}); HALO box mean "
          f"{np.mean([r.iou for r in theirs]):.4f} sd {sd_t:.4f} (points in union "
          f"{np.mean([r.n_union for r in theirs]):.0f}); sd ratio HALO/ours {sd_t / sd_o:.1f}")


if __name__ == "__main__":
    main()
