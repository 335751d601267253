"""The best linear keypoint denoiser of the synthetic error model: how much of the noisy keypoints' error a
linear map of the whole hand removes (``docs/TRAINING.md``, the compact preset's KptsRef).

Per hand: ridge least squares from the noisy keypoints (each hand minus its own middle MCP, camera axes) to
their error, fitted on the training split with DRAWS fresh error draws per sample
(:func:`im2hands.data.synth.noise.noisy_keypoints`, as the generator calls it), scored on the validation
split's stored noisy keypoints: mean per-joint error (mm, middle-MCP-relative) before and after.

Run: ``PYTHONPATH=src python docs/scripts/linear_keypoint_baseline.py data/synth [--draws 20]``
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from im2hands.data.synth.noise import noisy_keypoints
from im2hands.hand import skeleton

SIDES = ("left", "right")
MID = skeleton.INTERNAL.index("middle1")


def load(folder: Path) -> list[dict[str, tuple[np.ndarray, np.ndarray]]]:
    out = []
    for f in sorted(folder.glob("*.npz")):
        with np.load(f) as z:
            out.append({s: (np.asarray(z[f"{s}_joints"], np.float64), np.asarray(z[f"{s}_noisy_joints"], np.float64))
                        for s in SIDES})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("--draws", type=int, default=20)
    parser.add_argument("--ridge", type=float, default=1e-3, help="Tikhonov weight relative to the rows")
    args = parser.parse_args()
    train, val = load(args.data / "train"), load(args.data / "val")
    rng = np.random.default_rng(0)
    for side in SIDES:
        x, y = [], []
        for sample in train:
            gt = sample[side][0]
            for _ in range(args.draws):
                noisy = noisy_keypoints(rng, gt, side)
                rel = noisy - noisy[MID]
                x.append(rel.ravel() / 0.1)
                y.append(((gt - gt[MID]) - rel).ravel() / 0.1)
        a = np.c_[np.array(x), np.ones(len(x))]
        lhs = a.T @ a + args.ridge * len(a) * np.eye(a.shape[1])
        w = np.linalg.lstsq(lhs, a.T @ np.array(y), rcond=None)[0]
        before, after = [], []
        for sample in val:
            gt, noisy = sample[side]
            rel, g = noisy - noisy[MID], gt - gt[MID]
            pred = rel + (np.r_[rel.ravel() / 0.1, 1.0] @ w).reshape(21, 3) * 0.1
            before.append(np.linalg.norm(rel - g, axis=1).mean())
            after.append(np.linalg.norm((pred - pred[MID]) - g, axis=1).mean())
        print(f"{side}: validation {1000 * np.mean(before):.2f} mm -> linear {1000 * np.mean(after):.2f} mm "
              f"({len(train)} training samples x {args.draws} draws, {len(val)} validation samples)")


if __name__ == "__main__":
    main()
