"""RefOcc speed: decode throughput, encoder time per image, peak memory (2 CPU threads).

Official-size network (ResNet-50 encoders, 512 anchors, 2 x 128 encoder anchors) with the golden rule
weights, golden image/camera/hands/anchors, query points uniform in the +-0.55 extraction box of each hand.
Encodings are computed once and reused, as in mesh extraction.

Measured in one process (figures are the best of ``--repeats`` runs; the machine may be shared):
- ``fast``: ``RefOcc.decode`` (per-anchor terms precomputed at encode time, chunked) on N points per hand;
- ``straightforward``: the same model with the decoder run in the official order of operations on all
  points at once (``PointTransformerDecoderOcc.forward_reference``): the baseline of the ratio;
- the init_occ share of each decode and the refinement decoder alone;
- peak resident memory during each phase (sampled every 5 ms), incl. a large point count for the fast path.

Usage: PYTHONPATH=src python benchmarks/bm_ref_occ.py [--points 100000] [--baseline-points 20000]
       PYTHONPATH=src python benchmarks/bm_ref_occ.py --decoder-chunks 16384 4096 1024 --repeats 3
"""

from __future__ import annotations

import argparse
import threading
import time
from pathlib import Path

import torch

GOLDEN_DIR = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "golden" / "official"


class PeakRSS:
    """Samples this process's resident set size every 5 ms; ``peak`` in bytes."""

    def __init__(self):
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def now() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * 4096

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self.now())
            time.sleep(0.005)

    def __enter__(self):
        self.peak = self.now()
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.now())


def straightforward_decode(model, enc, points_left, points_right):
    """Decode both hands with the decoder in the official order of operations, all points at once."""
    out = {}
    for side, pts in (("left", points_left), ("right", points_right)):
        feat, xyz = model.query_features(enc, pts, side)
        init = model.init_occ.decode(enc.init_occ, enc.inputs(side), pts, side).occupancy
        h = enc.hand(side)
        qfeat = torch.cat([feat, init[..., None].expand(-1, -1, 32)], dim=2)
        out[side] = torch.sigmoid(model.trans_dec.forward_reference(xyz, qfeat, h.z_context, h.points.anchors,
                                                                    h.points.anchor_feats))
    return out


def best_of(k: int, fn) -> float:
    """Smallest wall time of `k` calls of `fn` (robust to other load on the machine)."""
    times = []
    for _ in range(k):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def decoder_only(model, enc, pts, side, *, fast: bool) -> None:
    """The refinement decoder alone (image features and init occupancy precomputed outside the timing)."""
    feat, xyz = model.query_features(enc, pts, side)
    qfeat = torch.cat([feat, torch.rand_like(feat)], dim=2)
    h = enc.hand(side)

    def run():
        if fast:
            model.trans_dec(xyz, qfeat, h.cache, chunk_size=model.config.chunk_points)
        else:
            model.trans_dec.forward_reference(xyz, qfeat, h.z_context, h.points.anchors, h.points.anchor_feats)
    return run


def decoder_chunks(model, enc, pts, chunks, repeats) -> None:
    """Points/s of the refinement decoder alone per chunk size, float32 and bf16 products."""
    feat, xyz = model.query_features(enc, pts, "left")
    qfeat = torch.cat([feat, torch.rand_like(feat)], dim=2)
    cache = enc.hand("left").cache
    n = pts.shape[1]
    for bf16 in (False, True):
        figures = []
        for chunk in chunks:
            scratch = model.trans_dec.scratch(chunk, xyz)
            t = best_of(repeats, lambda: model.trans_dec(xyz, qfeat, cache, chunk_size=chunk, scratch=scratch,
                                                         bf16=bf16))
            figures.append(f"{chunk}: {n / t / 1e3:.1f}k")
        print(f"decoder alone, {'bf16' if bf16 else 'float32'} products, points/s per chunk size: "
              + ", ".join(figures))
    print(f"load average at end: {open('/proc/loadavg').read().split()[:3]} (2 cores)")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, default=100_000, help="query points per hand (fast path)")
    ap.add_argument("--big-points", type=int, default=400_000, help="per hand, for the memory bound")
    ap.add_argument("--baseline-points", type=int, default=20_000,
                    help="per hand for the straightforward baseline (unchunked: memory grows with N)")
    ap.add_argument("--repeats", type=int, default=2, help="timed repeats per figure (the best is kept)")
    ap.add_argument("--decoder-chunks", type=int, nargs="*", default=[],
                    help="only time the refinement decoder alone (40,000 points, one hand, float32 and bf16 "
                         "products, one reused scratch buffer as in RefOcc.decode) at these chunk sizes")
    a = ap.parse_args()

    from im2hands.official.check import Golden
    from im2hands.official.ref_occ import golden_inputs, golden_model

    torch.set_num_threads(2)
    torch.manual_seed(0)
    golden = Golden(GOLDEN_DIR)
    model = golden_model(golden, torch.device("cpu"))
    inp = golden_inputs(golden, torch.device("cpu"))
    n, nb, nbig = a.points, a.baseline_points, a.big_points
    pts = {s: (torch.rand(1, max(n, nb, nbig), 3) - 0.5) * 1.1 for s in ("left", "right")}
    print(f"load average at start: {open('/proc/loadavg').read().split()[:3]} (2 cores)")
    with torch.no_grad():
        args = (inp.image, inp.camera, inp.left, inp.right, inp.anchors_cam_left, inp.anchors_cam_right)
        model.encode_camera(*args)                                                 # warm-up
        t_enc = best_of(a.repeats, lambda: model.encode_camera(*args))
        enc = model.encode_camera(*args)
        if a.decoder_chunks:
            decoder_chunks(model, enc, pts["left"][:, :40_000], a.decoder_chunks, a.repeats)
            return
        model.decode(enc, pts["left"][:, :4096], pts["right"][:, :4096])           # warm-up

        def fast(k):
            return lambda: model.decode(enc, pts["left"][:, :k], pts["right"][:, :k])

        def straight(k):
            return lambda: straightforward_decode(model, enc, pts["left"][:, :k], pts["right"][:, :k])

        def init_only(k):
            return lambda: [model.init_occ.decode(enc.init_occ, enc.inputs(s), pts[s][:, :k], s) for s in pts]

        rows = []
        for name, k, fn, dec_fast in (("fast", n, fast, True), ("straightforward", nb, straight, False)):
            with PeakRSS() as mem:
                before = PeakRSS.now()
                t = best_of(a.repeats, fn(k))
            t_init = best_of(a.repeats, init_only(k))
            runs = [decoder_only(model, enc, pts[s][:, :k], s, fast=dec_fast) for s in pts]
            t_dec = best_of(a.repeats, lambda: [r() for r in runs])
            rows.append((name, k, t, t_init, t_dec, before, mem.peak))
        with PeakRSS() as mem:
            before = PeakRSS.now()
            t = best_of(1, fast(nbig))
        rows.append(("fast", nbig, t, float("nan"), float("nan"), before, mem.peak))

    print(f"encoder (both image encoders, anchors, context, decoder precompute): {t_enc:.2f} s per image")
    for name, k, t, t_init, t_dec, before, peak in rows:
        print(f"{name:>15s} {k:>7d} pts/hand: decode {t:7.2f} s = {2 * k / t:8.0f} points/s | "
              f"init_occ part {t_init:6.2f} s | refinement decoder alone {2 * k / t_dec:8.0f} points/s | "
              f"peak RSS {peak / 1e9:.2f} GB (+{(peak - before) / 1e9:.2f} GB over {before / 1e9:.2f} GB)")
    f, b = rows[0], rows[1]
    print(f"ratio fast / straightforward (points/s): full decode {(2 * f[1] / f[2]) / (2 * b[1] / b[2]):.2f}x, "
          f"refinement decoder alone {(2 * f[1] / f[4]) / (2 * b[1] / b[4]):.2f}x")
    print(f"load average at end: {open('/proc/loadavg').read().split()[:3]} (2 cores)")


if __name__ == "__main__":
    main()
