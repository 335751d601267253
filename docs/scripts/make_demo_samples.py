"""Make the demo samples shipped in ``src/im2hands/assets/demo/``: three synthetic test frames of a seed that
no training set uses (77), as the files a user would give ``im2hands demo --image --keypoints --camera``.

Run: ``PYTHONPATH=src python docs/scripts/make_demo_samples.py [--src /tmp/demo_src] [--out src/im2hands/assets/demo]``

It generates the test split (``im2hands synth --split test --num 40 --seed 77``; occupancy point counts are
small, the demo does not use them) and picks, by the samples' stored labels:

- ``clasp``: interlaced fingers, the clasp whose more hidden hand has the largest ``occluded_fraction``;
- ``cross``: hands crossed in depth, the cross with the largest occluded fraction;
- ``touch``: hands in contact, the touch (with ``contact``) with the largest occluded fraction.

Each ``OUT/<name>/`` gets ``image.png`` (the sample's 256 x 256 image), ``keypoints.json`` (the sample's noisy
keypoints of both hands, camera frame, metres, ``docs/RECONSTRUCT.md``), ``camera.json`` (the sample's K; R, T
the identity because the keypoints are in the camera frame), ``ground_truth.npz`` (per hand ``vertices``
(V, 3) float32, ``faces`` (F, 3) int32, ``joints`` (21, 3) float32, camera frame, metres) and ``info.json``
(where the sample comes from, its kind and occlusion).
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np

from im2hands._io import atomic_write
from im2hands.api import save_camera_json, save_keypoints_json
from im2hands.data import read_sample
from im2hands.data.synth.generate import SynthConfig, generate
from im2hands.data.synth.occupancy import OccupancyConfig

SEED = 77
"""Job seed of the demo samples' test split (training and evaluation runs use other seeds)."""
NUM = 40
PICKS = (("clasp", "clasp", False), ("cross", "cross", False), ("touch", "touch", True))
"""(folder name, sample kind, contact required)."""


def occluded(sample: dict) -> float:
    """The larger of the two hands' occluded fractions."""
    return max(float(sample["right_occluded_fraction"]), float(sample["left_occluded_fraction"]))


def pick(samples: dict[Path, dict], kind: str, contact: bool) -> Path:
    found = [p for p, s in samples.items() if str(s["kind"]) == kind and (bool(s["contact"]) or not contact)]
    if not found:
        raise SystemExit(f"no {kind} sample{' in contact' if contact else ''} among {len(samples)}; raise NUM")
    return max(found, key=lambda p: (occluded(samples[p]), -int(samples[p]["index"])))


def write_sample(sample: dict, source: Path, out: Path) -> None:
    from PIL import Image

    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    image = np.asarray(sample["image"])
    atomic_write(out / "image.png", lambda f: Image.fromarray(image).save(f, format="PNG", optimize=True))
    save_keypoints_json(out / "keypoints.json", {s: np.asarray(sample[f"{s}_noisy_joints"], np.float64)
                                                  for s in ("right", "left")})
    save_camera_json(out / "camera.json", {"K": np.asarray(sample["camera_K"], np.float64)})
    gt = {}
    for s in ("right", "left"):
        gt[f"{s}_vertices"] = np.asarray(sample[f"{s}_vertices"], np.float32)
        gt[f"{s}_faces"] = np.asarray(sample[f"{s}_faces"], np.int32)
        gt[f"{s}_joints"] = np.asarray(sample[f"{s}_joints"], np.float32)
    atomic_write(out / "ground_truth.npz", lambda f: np.savez_compressed(f, **gt))
    info = {
        "source": f"im2hands synth --split test --num {NUM} --seed {SEED}: sample {source.name}",
        "kind": str(sample["kind"]),
        "contact": bool(sample["contact"]),
        "occluded_fraction": {s: round(float(sample[f"{s}_occluded_fraction"]), 4) for s in ("right", "left")},
        "noisy_keypoints_mpjpe_mm": {s: round(1000 * float(sample[f"{s}_noisy_mpjpe"]), 2) for s in ("right", "left")},
        "frame": "camera (OpenCV: x right, y down, z forward), metres",
    }
    text = json.dumps(info, indent=1)
    atomic_write(out / "info.json", lambda f: f.write(text.encode()))


def main() -> None:
    repo = Path(__file__).resolve().parents[2]
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--src", type=Path, default=Path("/tmp/demo_src"), help="where the test split is generated")
    ap.add_argument("--out", type=Path, default=repo / "src" / "im2hands" / "assets" / "demo")
    args = ap.parse_args()
    generate(SynthConfig(out=args.src, num=NUM, split="test", seed=SEED, workers=1, gallery=0, progress=False,
                         occupancy=OccupancyConfig(num_points=2000, num_iou_points=1000, num_surface_points=1000)))
    samples = {p: read_sample(p) for p in sorted((args.src / "test").glob("*.npz"))}
    total = 0
    for name, kind, contact in PICKS:
        path = pick(samples, kind, contact)
        s = samples[path]
        write_sample(s, path, args.out / name)
        size = sum(f.stat().st_size for f in (args.out / name).iterdir())
        total += size
        print(f"{name}: {path.name}, occluded right {float(s['right_occluded_fraction']):.2f} "
              f"left {float(s['left_occluded_fraction']):.2f}, contact {bool(s['contact'])}, {size / 1e3:.0f} kB")
    print(f"wrote {args.out}: {total / 1e3:.0f} kB in all")


if __name__ == "__main__":
    main()
