"""Benchmark InitOcc on CPU (2 threads): decode throughput with cached encodings, encoder time, peak memory,
and the ratio against a per-bone-loop decoder (the official decoder's formulation) measured in the same run.

Run from the repository root:
    PYTHONPATH=src:. python benchmarks/bm_init_occ.py [--points 100000] [--big 1000000] [--loop-points 20000]

Numbers are wall-clock minima over ``--reps`` repetitions (the machine may be shared). Not a test.
"""

from __future__ import annotations

import argparse
import os
import resource
import time

# Threads that wait at the end of a parallel op sleep instead of spinning. On a shared machine a spinning
# thread burns the time slice its partner needs (measured here: 4x lower throughput with 2 threads under
# load); on idle cores it makes no measurable difference. Set OMP_WAIT_POLICY=ACTIVE to override.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

from im2hands.hand.camera import Camera  # noqa: E402
from im2hands.models.init_occ import CHUNK_POINTS_PER_THREAD, HandInputs, InitOcc, InitOccConfig  # noqa: E402
from tests.models.test_init_occ import reference_part_logits  # noqa: E402


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: kB


def tmin(fn, reps: int) -> float:
    """Minimum wall-clock seconds of `fn` over `reps` runs."""
    return tmin_wall_cpu(fn, reps)[0]


def tmin_wall_cpu(fn, reps: int) -> tuple[float, float]:
    """(minimum wall-clock seconds, minimum process CPU seconds) of `fn` over `reps` runs.

    On a shared machine the wall clock measures the share of the cores this process got; the CPU time
    (summed over threads) measures the work, so ``points / cpu_s * threads`` estimates the throughput on
    otherwise idle cores (exact if all the work is spread over the threads; serial parts make it
    optimistic, spin-waits pessimistic). With one thread it is simply the single-core throughput.
    """
    wall = cpu = float("inf")
    for _ in range(reps):
        t, c = time.perf_counter(), time.process_time()
        fn()
        wall = min(wall, time.perf_counter() - t)
        cpu = min(cpu, time.process_time() - c)
    return wall, cpu


def random_hand(g: torch.Generator) -> HandInputs:
    u = torch.eye(4, dtype=torch.float64).repeat(1, 16, 1, 1)
    u[:, :, :3, :] += 0.2 * torch.randn(1, 16, 3, 4, generator=g, dtype=torch.float64)
    rot = torch.linalg.qr(torch.randn(3, 3, generator=g))[0]
    rrm = torch.eye(4).unsqueeze(0).clone()
    rrm[0, :3, :3] = rot
    return HandInputs(unpose=u, bone_lengths=0.02 + 0.03 * torch.rand(1, 16, generator=g), root_rot_mat=rrm,
                      root=0.05 * torch.randn(1, 3, generator=g))


def loop_decode(model: InitOcc, enc, hand, points, side, chunk: int) -> torch.Tensor:
    """Same tokens and attention as ``decode`` (one call, so official mode keeps one query 0); the decoder
    is the per-bone loop of the official formulation, run on chunks of the same size as ``decode``'s."""
    feats = model.local_image_features(enc, hand, points, side)
    out = []
    for c, feat in zip(points.split(chunk, dim=1), feats.split(chunk, dim=1)):
        out.append(reference_part_logits(model.decoder(side), c / 0.4, feat, hand.unpose, hand.bone_lengths,
                                         official_quirks=model.config.official_quirks))
    return torch.cat(out, dim=1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, default=100_000, help="query points per hand (default 100000)")
    ap.add_argument("--big", type=int, default=1_000_000, help="points per hand for the memory check")
    ap.add_argument("--loop-points", type=int, default=20_000, help="points per hand for the loop baseline")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    ap.add_argument("--chunk", type=int, default=None,
                    help="InitOccConfig.chunk_points (default: the config's, 2,048 per thread)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    chunk = args.chunk or CHUNK_POINTS_PER_THREAD * torch.get_num_threads()  # what decode uses
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    hands = {"left": random_hand(g), "right": random_hand(g)}
    camera = Camera(K=torch.eye(3).unsqueeze(0), R=torch.eye(3).unsqueeze(0), T=torch.tensor([[0.0, 0.0, 0.6]]))
    image = torch.randn(1, 3, 256, 256, generator=g)
    pts = {s: 0.55 * (2 * torch.rand(1, args.points, 3, generator=g) - 1) for s in hands}
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, points/hand {args.points}, "
          f"chunk {chunk}, OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}, "
          f"load average {os.getloadavg()[0]:.1f}")

    for official in (False, True):
        model = InitOcc(InitOccConfig(official_quirks=official, chunk_points=args.chunk)).eval()
        mode = "official" if official else "default"
        with torch.no_grad():
            t_enc = tmin(lambda: model.encode(image, camera), args.reps)
            enc = model.encode(image, camera)
            t_dec, c_dec = tmin_wall_cpu(lambda: [model.decode(enc, hands[s], pts[s], s) for s in hands], args.reps)
            n_loop = min(args.loop_points, args.points)
            sub = {s: pts[s][:, :n_loop] for s in hands}
            t_loop, c_loop = tmin_wall_cpu(lambda: [loop_decode(model, enc, hands[s], sub[s], s,
                                                                chunk) for s in hands],
                                           max(1, args.reps - 1))
            err = max((model.decode(enc, hands[s], sub[s], s).part_logits
                       - loop_decode(model, enc, hands[s], sub[s], s, chunk)).abs().max().item()
                      for s in hands)
        fast, fast_cpu = 2 * args.points / t_dec, 2 * args.points / c_dec * args.threads
        slow, slow_cpu = 2 * n_loop / t_loop, 2 * n_loop / c_loop * args.threads
        print(f"[{mode}] encoder: {1000 * t_enc:.0f} ms/image")
        print(f"[{mode}] decode: {fast:,.0f} points/s wall ({2 * args.points} points, both hands, {t_dec:.3f} s); "
              f"{fast_cpu:,.0f} points/s from CPU time ({c_dec:.3f} CPU-s, x{args.threads} threads)")
        print(f"[{mode}] per-bone loop decoder: {slow:,.0f} points/s wall; {slow_cpu:,.0f} from CPU time "
              f"({2 * n_loop} points)")
        print(f"[{mode}] ratio batched / loop: {fast / slow:.2f}x wall, {fast_cpu / slow_cpu:.2f}x CPU time; "
              f"max |logit diff| {err:.2e}")
        print(f"[{mode}] peak RSS so far: {peak_rss_mb():.0f} MB")
        del model, enc

    model = InitOcc(InitOccConfig(chunk_points=args.chunk)).eval()
    with torch.no_grad():
        enc = model.encode(image, camera)
        big = 0.55 * (2 * torch.rand(1, args.big, 3, generator=g) - 1)
        t = time.perf_counter()
        for s in hands:
            model.decode(enc, hands[s], big, s)
        dt = time.perf_counter() - t
    print(f"[default] {args.big} points per hand: {2 * args.big / dt:,.0f} points/s; peak RSS {peak_rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
