"""Benchmark: seconds per image for both hands, initial + refined, at the 257^3 lattice, with official-size
networks (ResNet-50 encoders) on N CPU threads; evaluations per stage; peak memory; marching-cubes time.

Run: ``PYTHONPATH=src:. python benchmarks/bm_reconstruct.py [--threads 2] [--repeats 2]``

Weights: random (no trained official-size weights are shipped), so the networks are evaluated for their cost
at exactly the points that an analytic hand-shaped field makes the extraction request: every occupancy
call runs the real InitOcc / RefOcc decode on its points and then answers with the field (16 capsules in a
hand layout, ``tests/mesh/fields.py::hand_field``; the refined field is the same hand 0.004 query units
(1.6 mm) thicker, threshold 0.45). Input: one synthetic sample (image, intrinsics, keypoints).

``--bf16`` adds the same in the bfloat16 fast mode (``Im2Hands(bf16=True)``: InitOcc's part decoders, RefOcc's
decoder products and anchor encoder);
``--shipped`` adds the shipped model (compact preset: a half-width ResNet-18 encoder, official-size decoders)
with its trained weights on the sample's real fields (fp32 and, with ``--bf16``, bf16).

Baseline, measured in the same run, in its own process: an official-style loop -- the image encoders (and
RefOcc's anchor encoding with its InitOcc) re-run on every extraction round, the refined surface extracted
from a fresh 32^3 start, and marching cubes on the dense 259^3 grid.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")   # as the CLI; see src/im2hands/cli.py

import numpy as np  # noqa: E402
import torch  # noqa: E402


def _field(radius_delta: float):
    from tests.mesh.fields import hand_field

    return hand_field(radius_delta=radius_delta)


def build(mode: str):
    from im2hands.models.init_occ import InitOcc, InitOccConfig, InitOccOutput
    from im2hands.models.ref_occ import HandOutput, RefOcc, RefOccConfig, RefOccOutput

    initial_field, refined_field = _field(0.0), _field(0.004)
    reencode = mode == "baseline"

    class BenchInitOcc(InitOcc):
        def decode(self, encoding, hand, points, side, **kw):
            if reencode and getattr(self, "_image", None) is not None:
                if side == "right":   # official: the encoder runs once per extraction round (both hands)
                    self._round = self.encode(self._image, encoding.camera)
                encoding = self._round
            out = super().decode(encoding, hand, points, side, **kw)          # the cost
            return InitOccOutput(occupancy=initial_field(points[0])[None].float(), part_logits=out.part_logits)

    class BenchRefOcc(RefOcc):
        def decode(self, encoding, points_left, points_right, **kw):
            if reencode:
                a = self._anchors
                encoding = self.encode(self._image, encoding.camera, encoding.hand_left, encoding.hand_right, *a)
            out = super().decode(encoding, points_left, points_right, **kw)
            occ = {s: refined_field(p[0])[None].float() for s, p in (("left", points_left), ("right", points_right))}
            return RefOccOutput(left=HandOutput(occ["left"], out.left.logit, out.left.init_occupancy),
                                right=HandOutput(occ["right"], out.right.logit, out.right.init_occupancy),
                                pen_left=out.pen_left, pen_right=out.pen_right)

        def encode(self, image, camera, left, right, anchors_left, anchors_right, **kw):
            self._image, self._anchors = image, (anchors_left, anchors_right)
            return super().encode(image, camera, left, right, anchors_left, anchors_right, **kw)

    torch.manual_seed(0)
    bf16 = mode.endswith("bf16")
    init = BenchInitOcc(InitOccConfig(bf16_decoder=bf16)).eval()
    ref = BenchRefOcc(RefOccConfig(bf16_decoder=bf16, bf16_encoder=bf16, init_occ=init.config)).eval()
    ref.init_occ.load_state_dict(init.state_dict())
    if not reencode:   # one InitOcc, as in a trained bundle: the refined stage reuses its encoding and values
        ref.init_occ = init
    return init, ref


def child(mode: str, sample_path: str, threads: int, repeats: int) -> dict:
    import mcubes

    from im2hands.api import Im2Hands
    from im2hands.data import read_sample
    from im2hands.data.crop import Crop
    from im2hands.mesh import Lattice

    torch.set_num_threads(threads)
    s = read_sample(sample_path)
    crop = Crop(image=np.asarray(s["image"]), K=np.asarray(s["camera_K"], np.float64), box=(0.0, 0.0, 256.0))
    joints = {side: np.asarray(s[f"{side}_joints"], np.float64) for side in ("right", "left")}
    if mode.startswith("shipped"):
        model = Im2Hands.pretrained("cpu", lattice=Lattice(32, 3), bf16=mode.endswith("bf16"))
    else:
        init, ref = build(mode)
        model = Im2Hands(init_occ=init, ref_occ=ref, lattice=Lattice(32, 3), device="cpu")
    if mode == "baseline":
        from im2hands.data.dataset import normalise_image
        init._image = normalise_image(crop.image)[None]
    best = None
    for _ in range(repeats):
        t0 = time.perf_counter()
        rec = model.reconstruct_crop(crop, joints, refine_keypoints=False, seeded_refinement=(mode != "baseline"))
        total = time.perf_counter() - t0
        if best is None or total < best[0]:
            best = (total, rec)
    total, rec = best
    out = {"mode": mode, "threads": threads, "total_s": total,
           "initial_s": rec.stages["initial"].seconds, "refined_s": rec.stages["refined"].seconds,
           "anchors_s": rec.timings.get("anchors", 0.0),
           "evaluations": {st: rec.stages[st].evaluations for st in ("initial", "refined")}}
    # marching cubes: ours runs on the crop around the surface (inside the extraction, timed here alone);
    # the baseline's dense grid is 259^3.
    if mode == "baseline":
        n = 257
        g = torch.linspace(-0.55, 0.55, n)
        grid = torch.stack(torch.meshgrid(g, g, g, indexing="ij"), -1).reshape(-1, 3)
        values = np.pad(_field(0.0)(grid).reshape(n, n, n).numpy(), 1, constant_values=-1e6)
        t0 = time.perf_counter()
        for _ in range(2):   # both hands
            mcubes.marching_cubes(values, 0.5)
        out["marching_cubes_s"] = time.perf_counter() - t0
        # the stage times already hold the cropped marching cubes (~0.02 s); the dense grid comes on top
        out["total_s"] += out["marching_cubes_s"]
    else:
        out["marching_cubes_s"] = None   # inside the stage times (cropped around the surface; bm_mesh.py)
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--child", choices=("ours", "ours-bf16", "shipped", "shipped-bf16", "baseline"))
    parser.add_argument("--sample")
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument("--bf16", action="store_true", help="also RefOcc's decoder products in bfloat16")
    parser.add_argument("--shipped", action="store_true", help="also the shipped model on the sample's real fields")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.sample, args.threads, args.repeats)))
        return 0

    from tests.helpers import make_synth

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "unknown CPU")
    load = os.getloadavg()[0]
    print(f"torch {torch.__version__}, {args.threads} threads, CPU: {cpu}, OMP_WAIT_POLICY="
          f"{os.environ['OMP_WAIT_POLICY']}, load average {load:.1f}")
    with tempfile.TemporaryDirectory() as tmp:
        data = make_synth(Path(tmp) / "data", num=1)
        sample = str(data / "test" / "000000.npz")
        results = {}
        modes = ["ours"] + (["ours-bf16"] if args.bf16 else [])
        modes += (["shipped"] + (["shipped-bf16"] if args.bf16 else [])) if args.shipped else []
        for mode in modes + ([] if args.skip_baseline else ["baseline"]):
            cmd = [sys.executable, __file__, "--child", mode, "--sample", sample, "--threads", str(args.threads),
                   "--repeats", str(args.repeats if mode != "baseline" else 1)]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode:
                print(proc.stderr[-3000:])
                return 1
            results[mode] = json.loads(proc.stdout.strip().splitlines()[-1])
    print("| | initial s | refined s | total s / image | evaluations initial (R+L) | evaluations refined (R+L) | peak RSS MB |")
    print("|---|---|---|---|---|---|---|")
    for mode, r in results.items():
        ev = {st: sum(r["evaluations"][st].values()) for st in ("initial", "refined")}
        print(f"| {mode} | {r['initial_s']:.2f} | {r['refined_s']:.2f} | {r['total_s']:.2f} | {ev['initial']:,} | "
              f"{ev['refined']:,} | {r['peak_rss_mb']:.0f} |")
    if "baseline" in results:
        print(f"baseline dense marching cubes (2 hands, 259^3): {results['baseline']['marching_cubes_s']:.2f} s")
        print(f"speed-up: {results['baseline']['total_s'] / results['ours']['total_s']:.1f}x")
    if "ours-bf16" in results:
        print(f"bf16 decoder: {results['ours']['total_s'] / results['ours-bf16']['total_s']:.2f}x ours")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
