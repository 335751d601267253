"""Speed and disk use of the synthetic-data job (`im2hands synth`).

Runs the job into a temporary folder and prints samples/s and MB per sample:
  - 20k occupancy points per hand with --workers 2 (target >= 2 samples/s, <= 1 MB per sample),
  - the same with --workers 1 (baseline measured in the same run: the ratio is the gain from workers),
  - 100k points per hand (the official count) with --workers 2,
and the time of each stage of one sample in one process (scene, render, occupancy, encode + write).

    PYTHONPATH=src python benchmarks/bm_synth.py --num 24
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

os.environ.setdefault("PYOPENGL_PLATFORM", "egl")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from im2hands.data.sample import atomic_save_npz, encode_sample  # noqa: E402
from im2hands.data.synth import generate as gen  # noqa: E402
from im2hands.data.synth.occupancy import OccupancyConfig  # noqa: E402


def run_job(out: Path, num: int, workers: int, points: int, scene_module: str) -> tuple[float, float, float, float]:
    """(samples/s including worker start-up, steady samples/s after the first sample, start-up s, MB/sample)."""
    cfg = gen.SynthConfig(out=out, num=num, split="train", seed=0, workers=workers, gallery=0, progress=False,
                          occupancy=OccupancyConfig(num_points=points), scene_module=scene_module)
    t = time.perf_counter()
    summary = gen.generate(cfg)
    rate = num / (time.perf_counter() - t)
    return rate, summary.steady_samples_per_second, summary.first_sample_seconds, summary.mean_file_bytes / 1e6


def stage_times(num: int, points: int, scene_module: str) -> dict[str, float]:
    """Mean wall ms per sample of each stage, in this process (renderer and models made once), and the CPU
    ms per sample of the whole (all threads of this process; independent of other load on the machine)."""
    from im2hands.viz.render import HandRenderer

    api = gen._scene_api(scene_module)
    hands = api.load_hand_models(None)
    renderer = HandRenderer()
    occ = OccupancyConfig(num_points=points)
    times = {"scene": [], "total make_sample (scene included)": [], "encode + write": []}
    real_occ, real_render = gen.sample_occupancy, renderer.render
    acc = {"occupancy": [], "render": []}

    def timed(fn, key):
        def wrap(*a, **k):
            t = time.perf_counter()
            r = fn(*a, **k)
            acc[key].append(time.perf_counter() - t)
            return r
        return wrap

    gen.sample_occupancy = timed(real_occ, "occupancy")
    renderer.render = timed(real_render, "render")
    real_scene = api.sample_scene
    tmp = Path(tempfile.mkdtemp())
    gen.make_sample(0, "train", num, hands=hands, api=api, renderer=renderer, occupancy=occ)  # warm-up
    for v in acc.values():
        v.clear()
    cpu = 0.0
    try:
        for i in range(num):
            t = time.perf_counter()
            rng = np.random.default_rng(gen.sample_seed(0, "train", i).spawn(4)[0])
            real_scene(rng, hands)
            times["scene"].append(time.perf_counter() - t)
            t, c = time.perf_counter(), time.process_time()
            s = gen.make_sample(0, "train", i, hands=hands, api=api, renderer=renderer, occupancy=occ)
            times["total make_sample (scene included)"].append(time.perf_counter() - t)
            t = time.perf_counter()
            atomic_save_npz(tmp / f"{i}.npz", encode_sample(s))
            times["encode + write"].append(time.perf_counter() - t)
            cpu += time.process_time() - c
    finally:
        gen.sample_occupancy = real_occ
        renderer.close()
        shutil.rmtree(tmp)
    out = {k: 1e3 * float(np.mean(v)) for k, v in times.items()}
    out["render (in make_sample)"] = 1e3 * float(np.sum(acc["render"])) / num
    out["occupancy, both hands (in make_sample)"] = 1e3 * float(np.sum(acc["occupancy"])) / num
    out["CPU time of make_sample + write"] = 1e3 * cpu / num
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--num", type=int, default=24, help="samples per measured run")
    ap.add_argument("--scene-module", default="im2hands.data.synth.scene")
    args = ap.parse_args()
    torch.set_num_threads(2)
    print(f"CPU cores: {os.cpu_count()}; load average {os.getloadavg()[0]:.1f}; {args.num} samples per run; "
          f"scene module {args.scene_module}")
    root = Path(tempfile.mkdtemp(prefix="bm_synth_"))
    try:
        # Multi-worker runs first: this process has not rendered yet, so their workers are forked (as from
        # the CLI); the single-worker run renders in this process.
        runs = {
            "20k points/hand, --workers 2": run_job(root / "w2", args.num, 2, 20_000, args.scene_module),
            "100k points/hand, --workers 2": run_job(root / "w2_100k", args.num, 2, 100_000, args.scene_module),
            "20k points/hand, --workers 1 (baseline)": run_job(root / "w1", args.num, 1, 20_000, args.scene_module),
        }
    finally:
        shutil.rmtree(root)
    base = runs["20k points/hand, --workers 1 (baseline)"]
    for name, (rate, steady, first, mb) in runs.items():
        print(f"{name:40s} {rate:5.2f} samples/s overall ({rate / base[0]:.2f}x), {steady:5.2f} samples/s after "
              f"the first sample ({steady / base[1]:.2f}x), first sample after {first:4.1f} s, {mb:.3f} MB/sample")
    for k, v in stage_times(min(args.num, 8), 20_000, args.scene_module).items():
        print(f"  {k:42s} {v:8.1f} ms/sample (20k points, 1 process)")
    print(f"load average at the end: {os.getloadavg()[0]:.1f} (rates include worker start-up)")


if __name__ == "__main__":
    main()
