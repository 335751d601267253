"""Benchmark: keypoint canonicalisation, 1,024 hands per call (batched) vs a per-hand loop.

Run: ``PYTHONPATH=src python benchmarks/bm_canonical.py`` (uses the golden extra hands, resampled with
2 mm jitter). Prints hands/s for the batched call and for the per-hand loop baseline, and their ratio.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch

from im2hands.hand.canonical import canonicalise

GOLDEN = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "golden" / "official"


def hands(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(n, 21, 3) float64 joints and (n,) is_right: the 24 golden extra hands resampled with 2 mm jitter."""
    with np.load(GOLDEN / "canon_extra.npz") as z:
        joints, is_right = torch.from_numpy(z["joints_world"]), torch.from_numpy(z["is_right"] != 0)
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, len(joints), (n,), generator=g)
    return joints[idx] + 0.002 * torch.randn(n, 21, 3, generator=g, dtype=torch.float64), is_right[idx]


def _rate(fn, n_hands: int, repeats: int) -> tuple[float, float]:
    """(hands/s by the best wall time, hands/s by the best process CPU time) over `repeats` runs."""
    fn()  # warm-up
    wall = cpu = float("inf")
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall = min(wall, time.perf_counter() - t0)
        cpu = min(cpu, time.process_time() - c0)
    return n_hands / wall, n_hands / cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hands", type=int, default=1024, help="hands per batched call (default 1024)")
    parser.add_argument("--loop-hands", type=int, default=128, help="hands timed in the per-hand loop")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--repeats", type=int, default=10, help="timed runs; the best is reported")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    joints, is_right = hands(args.hands)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, {args.hands} hands per call, "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    for official in (True, False):
        label = "official dtypes" if official else "float64 path"
        batched = _rate(lambda: canonicalise(joints, is_right, official_quirks=official), args.hands, args.repeats)
        sub_j, sub_r = joints[:args.loop_hands], is_right[:args.loop_hands]

        def loop():
            for b in range(len(sub_j)):
                canonicalise(sub_j[b:b + 1], sub_r[b:b + 1], official_quirks=official)

        looped = _rate(loop, len(sub_j), max(1, args.repeats // 2))
        print(f"{label:>16s}: batched {batched[0]:8.0f} hands/s wall ({batched[1]:8.0f} per CPU-s) | "
              f"per-hand loop {looped[0]:6.0f} hands/s wall ({looped[1]:6.0f} per CPU-s) | "
              f"ratio {batched[0] / looped[0]:5.1f}x wall, {batched[1] / looped[1]:5.1f}x CPU")


if __name__ == "__main__":
    main()
