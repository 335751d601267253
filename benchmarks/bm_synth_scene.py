"""Statistics and speed of the synthetic two-hand scene sampler.

    PYTHONPATH=src python benchmarks/bm_synth_scene.py --scenes 200

Prints the share of each interaction category, the contact share, penetration volumes, rejections, how
much one hand hides the other in the crop, the error of the noisy keypoints, and the sampling speed.
The speed figure is compared with a baseline measured in the same run: ``measure_pair`` (pruned
candidate vertices, box-bounded Monte Carlo) against a brute-force measurement (signed distances of all
vertices, Monte Carlo over the whole overlap of the bounding boxes), on the same scenes.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter

import numpy as np
import torch


def occlusion(scene, grid: int = 64) -> tuple[float, float]:
    """Fraction of each hand's silhouette (right, left) hidden by the other hand, by ray casting a
    grid x grid lattice of pixel centres of the crop."""
    import trimesh

    cam = scene.camera
    s = cam.size
    u, v = np.meshgrid((np.arange(grid) + 0.5) * s / grid - 0.5, (np.arange(grid) + 0.5) * s / grid - 0.5)
    pix = np.stack([u.ravel(), v.ravel(), np.ones(u.size)], 1)
    dirs = pix @ np.linalg.inv(cam.K).T @ cam.R  # camera rays in world coordinates
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    origins = np.broadcast_to(cam.centre_world, dirs.shape)
    hands = [scene.right, scene.left]
    meshes = [trimesh.Trimesh(h.vertices, h.faces, process=False) for h in hands]
    sil = [m.ray.intersects_any(origins, dirs) for m in meshes]
    both = trimesh.util.concatenate(meshes)
    first = both.ray.intersects_first(origins, dirs)
    owner = np.where(first < 0, -1, (first >= len(meshes[0].faces)).astype(int))
    out = []
    for i in range(2):
        n = sil[i].sum()
        out.append(float(((owner != i) & sil[i]).sum() / n) if n else 0.0)
    return out[0], out[1]


def brute_measure(a_v, a_f, b_v, b_f, rng, samples):
    """Baseline: signed distances of every vertex, Monte Carlo over the whole bounding-box overlap."""
    import igl
    import point_cloud_utils as pcu

    st = igl.SignedDistanceType.SIGNED_DISTANCE_TYPE_PSEUDONORMAL
    sa = igl.signed_distance(a_v, b_v, b_f, st)[0]
    sb = igl.signed_distance(b_v, a_v, a_f, st)[0]
    lo, hi = np.maximum(a_v.min(0), b_v.min(0)), np.minimum(a_v.max(0), b_v.max(0))
    vol = 0.0
    if np.all(hi > lo):
        q = rng.uniform(lo, hi, (samples, 3))
        wa = pcu.triangle_soup_fast_winding_number(a_v, a_f.astype(np.int32), q) > 0.5
        wb = pcu.triangle_soup_fast_winding_number(b_v, b_f.astype(np.int32), q) > 0.5
        vol = (wa & wb).mean() * np.prod(hi - lo)
    return max(0.0, min(sa.min(), sb.min())), vol


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--mano", default=None, help="folder with real MANO files (default: open hand model)")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)

    from im2hands.data.synth.noise import mpjpe, noisy_keypoints, NoiseConfig
    from im2hands.data.synth.scene import (MAX_ATTEMPTS, MAX_PENETRATION_VOLUME, PENETRATION_SAMPLES,
                                           load_hand_models, measure_pair, sample_scene)

    hands = load_hand_models(args.mano)
    sample_scene(np.random.default_rng(10 ** 9), hands)  # warm-up (imports, caches)
    scenes, wall, cpu = [], [], []
    for i in range(args.scenes):
        rng = np.random.default_rng(args.seed + i)
        t0, c0 = time.perf_counter(), time.process_time()
        scenes.append(sample_scene(rng, hands))
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    n = len(scenes)
    wall, cpu = np.array(wall), np.array(cpu)
    kinds = Counter(s.kind for s in scenes)
    contact = np.array([s.contact for s in scenes])
    vol = np.array([s.penetration_volume for s in scenes]) * 1e6  # cm^3
    dist = np.array([s.min_distance for s in scenes]) * 1e3
    attempts = np.array([s.attempts for s in scenes])
    print(f"scenes: {n} (open hand model)" if args.mano is None else f"scenes: {n} (MANO from {args.mano})")
    print("category  share  contact  mean pen. vol (cm^3)  mean min dist (mm)  mean time (s)")
    for k in sorted(kinds):
        sel = np.array([s.kind == k for s in scenes])
        print(f"{k:8s}  {sel.mean():5.2f}  {contact[sel].mean():7.2f}  {vol[sel].mean():20.3f}  "
              f"{dist[sel].mean():18.1f}  {wall[sel].mean():13.3f}")
    print(f"all       1.00  {contact.mean():7.2f}  {vol.mean():20.3f}  {dist.mean():18.1f}  {wall.mean():13.3f}")
    from im2hands.data.synth.scene import KINDS

    names = list(KINDS)
    draws = Counter(names[int(np.random.default_rng(i).choice(len(names), p=[KINDS[k] for k in names]))]
                    for i in range(20000))  # the category is the first draw of sample_scene
    print("configured shares " + ", ".join(f"{k} {KINDS[k]:.2f}" for k in names) + "; drawn over 20,000 seeds "
          + ", ".join(f"{k} {draws[k] / 20000:.2f}" for k in names))
    print(f"contact share: {contact.mean():.2f}; penetration volume mean {vol.mean():.3f} cm^3, "
          f"mean over contact scenes {vol[contact].mean():.3f} cm^3, max {vol.max():.3f} cm^3 "
          f"(threshold {MAX_PENETRATION_VOLUME * 1e6:.1f}); scenes with any overlap {np.mean(vol > 0):.2f}")
    print(f"placements per scene: mean {attempts.mean():.2f}; scenes needing >1: {np.mean(attempts > 1):.2f}; "
          f"backed off: {np.mean(attempts > MAX_ATTEMPTS):.3f}")

    occ = np.array([occlusion(s) for s in scenes])  # (n, 2)
    worst = occ.max(1)
    print(f"occlusion (fraction of a hand's silhouette hidden by the other): mean {occ.mean():.2f}; "
          f"scenes with a hand >= 20% hidden: {np.mean(worst >= 0.2):.2f}, >= 50%: {np.mean(worst >= 0.5):.2f}")

    rng = np.random.default_rng(args.seed + 10 ** 6)
    clean = NoiseConfig(flip_prob=0.0, snap_prob=0.0, jump_prob=0.0)
    e_abs, e_rel, e_clean = [], [], []
    for s in scenes:
        jr, jl = s.camera.to_camera(s.right.joints), s.camera.to_camera(s.left.joints)
        for j, o, side in ((jr, jl, "right"), (jl, jr, "left")):
            noisy = noisy_keypoints(rng, j, side, other=o)
            e_abs.append(mpjpe(noisy, j))
            e_rel.append(mpjpe(noisy, j, root_relative=True))
            e_clean.append(mpjpe(noisy_keypoints(rng, j, side, other=o, config=clean), j))
    print(f"noisy keypoints MPJPE: {np.mean(e_abs) * 1e3:.2f} mm (camera frame), "
          f"{np.mean(e_rel) * 1e3:.2f} mm (wrist-relative), {np.mean(e_clean) * 1e3:.2f} mm without outliers; "
          f"hands with an error > 20 mm: {np.mean(np.array(e_abs) > 0.02):.3f}")

    print(f"sample_scene: {wall.mean():.3f} s wall / {cpu.mean():.3f} s CPU per scene on average "
          f"({1 / wall.mean():.1f} scenes/s), median {np.median(wall):.3f} s, max {wall.max():.3f} s")
    sub = scenes[: min(n, 40)]
    t0 = time.perf_counter()
    for s in sub:
        measure_pair(s.right.vertices, s.right.faces, s.left.vertices, s.left.faces, np.random.default_rng(0))
    fast = (time.perf_counter() - t0) / len(sub)
    t0 = time.perf_counter()
    for s in sub:
        brute_measure(s.right.vertices, s.right.faces, s.left.vertices, s.left.faces, np.random.default_rng(0),
                      PENETRATION_SAMPLES)
    brute = (time.perf_counter() - t0) / len(sub)
    print(f"measure_pair {fast * 1e3:.1f} ms vs brute force {brute * 1e3:.1f} ms per scene: {brute / fast:.1f}x")

    layer = hands.right.layer
    pose, betas = torch.zeros(1, 45, dtype=torch.float64), torch.zeros(1, 10, dtype=torch.float64)
    times = {}
    for threads in (2, 1):
        torch.set_num_threads(threads)
        with torch.no_grad():
            layer(hand_pose=pose, betas=betas)
            t0 = time.perf_counter()
            for _ in range(50):
                layer(hand_pose=pose, betas=betas)
        times[threads] = (time.perf_counter() - t0) / 50
    torch.set_num_threads(2)
    print(f"layer forward (batch 1, float64): {times[2] * 1e3:.2f} ms on 2 threads vs {times[1] * 1e3:.2f} ms on 1 "
          f"thread: {times[2] / times[1]:.1f}x (the sampler runs the layer on 1 thread)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
