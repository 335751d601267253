"""Benchmark: image encoder (ResNet-18/34/50), KptsRef, and the query-image attention split.

Prints, per configuration, the fastest wall time over the repeats of a forward pass (batch 1, 256x256, eval, no_grad) and
the peak memory of the process while running it (CPU: peak RSS growth measured in a fresh subprocess;
CUDA: torch.cuda.max_memory_allocated). Ratios are against ResNet-50 (encoder) and against the official
attention formulation (one 1+G² sequence per query), both measured in the same run.

    PYTHONPATH=src python benchmarks/bm_encoder.py [--device cpu] [--repeats 10]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import torch


def _timed(fn, repeats: int, device: torch.device) -> float:
    """Fastest wall time (s) of `fn()` over `repeats` runs after one warm-up.

    The minimum, not the median: on cores shared with other processes it is the figure least disturbed
    by them (each run can only be slowed down by interference, never sped up).
    """
    fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - t)
    return min(times)


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def run_one(what: str, depth: int, repeats: int, device_name: str, threads: int = 2) -> dict:
    """Time one configuration in this process; returns seconds and peak memory growth (MB)."""
    from im2hands.models.encoder import ImageEncoder, ImageEncoderConfig
    from im2hands.models.kpts_ref import KptsRef, KptsRefConfig

    torch.set_num_threads(threads)
    device = torch.device(device_name)
    torch.manual_seed(0)
    image = torch.randn(1, 3, 256, 256, device=device)
    if what == "encoder":
        model = ImageEncoder(ImageEncoderConfig(depth=depth)).to(device).eval()
        fn = lambda: model(image)  # noqa: E731
    else:
        model = KptsRef(KptsRefConfig(encoder=ImageEncoderConfig(depth=depth), official_quirks=True)).to(device).eval()
        kl, kr = 50 * torch.randn(1, 21, 3, device=device), 50 * torch.randn(1, 21, 3, device=device)
        fn = lambda: model(image, kl, kr)  # noqa: E731
    base = _maxrss_mb()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    with torch.no_grad():
        seconds = _timed(fn, repeats, device)
    peak = (torch.cuda.max_memory_allocated(device) / 2**20) if device.type == "cuda" else _maxrss_mb() - base
    params = sum(p.numel() for p in model.parameters())
    return {"what": what, "depth": depth, "seconds": seconds, "peak_mb": peak, "params": params}


def attention_split(repeats: int, device: torch.device, n_queries: int = 65536, chunk: int = 16384,
                    threads: int = 2) -> dict:
    """init_occ-sized attention (grid 4x4 of a 32x64x64 map, 19-dim queries): split vs official formulation."""
    from im2hands.models.attention import ImageAttention

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    m = ImageAttention(img_size=64, img_dim=32, grid_size=4, grid_dim=32, query_dim=19, n_heads=2).to(device).eval()
    img = torch.randn(1, 32, 64, 64, device=device)
    queries = torch.randn(1, n_queries, 19, device=device)

    def split():
        ctx = m.prepare(img)  # once per image
        return [m.attend(ctx, q) for q in queries.split(chunk, dim=1)]

    def official():  # per chunk: grid encoder again, one (1 + 16)-token sequence per query, full attention
        out = []
        for q in queries.split(chunk, dim=1):
            grid = m.attn.fc(m.encoder(img))                                   # (1, 16, 19)
            seq = torch.cat([q.reshape(-1, 1, 19), grid.expand(q.shape[1], -1, -1)], dim=1)
            out.append(m.attn.Attn(seq)[:, 0])
        return out

    with torch.no_grad():
        a = torch.cat(split(), dim=1)[0]
        b = torch.cat(official(), dim=0)
        err = float((a - b).abs().max())
        t_split = _timed(split, repeats, device)
        t_off = _timed(official, repeats, device)
    return {"n_queries": n_queries, "chunk": chunk, "split_s": t_split, "official_s": t_off,
            "max_abs_diff": err}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--one", nargs=2, metavar=("WHAT", "DEPTH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:  # child process: one configuration, JSON on stdout
        print(json.dumps(run_one(args.one[0], int(args.one[1]), args.repeats, args.device, args.threads)))
        return
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    print(f"torch {torch.__version__}, device {args.device}, {args.threads} thread(s), batch 1, 256x256, fastest of {args.repeats}")
    rows = []
    for what, depth in (("encoder", 50), ("encoder", 34), ("encoder", 18), ("kpts_ref", 50)):
        out = subprocess.run([sys.executable, __file__, "--one", what, str(depth), "--repeats", str(args.repeats),
                              "--device", args.device, "--threads", str(args.threads)], capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    base = rows[0]["seconds"]
    for r in rows:
        print(f"{r['what']:<9s} ResNet-{r['depth']:<3d} {1000 * r['seconds']:7.1f} ms/image  "
              f"peak +{r['peak_mb']:6.1f} MB  params {r['params'] / 1e6:6.2f} M  "
              f"speed vs encoder ResNet-50: x{base / r['seconds']:.2f}")
    a = attention_split(args.repeats, torch.device(args.device), threads=args.threads)
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    print(f"query-image attention, {a['n_queries']} queries in chunks of {a['chunk']}: "
          f"split (grid once) {1000 * a['split_s']:.1f} ms, official formulation {1000 * a['official_s']:.1f} ms, "
          f"speed-up x{a['official_s'] / a['split_s']:.2f}, max |diff| {a['max_abs_diff']:.1e}")


if __name__ == "__main__":
    main()
