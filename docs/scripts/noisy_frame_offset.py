"""How far from its labelled position the network reads a training point when the bone transforms come from
the noisy keypoints but the point stays in the GT keypoints' query frame (official ``pred_joints`` path,
``points_frame: gt``), and with ``points_frame: input`` (docs/TRAINING.md, "Training on inexact keypoints").

Run::

    PYTHONPATH=src python docs/scripts/noisy_frame_offset.py data/synth --split val --samples 1

Per sample and hand: the largest and the median distance (mm), over the sample's stored occupancy points,
between where the point's label was taken (GT frame) and where the network reads it (through the noisy
keypoints' frame).
"""

from __future__ import annotations

import argparse


from im2hands.data.dataset import HandsDataset
from im2hands.hand.frames import query_to_camera
from im2hands.hand.skeleton import SIDES


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data")
    parser.add_argument("--split", default="val")
    parser.add_argument("--samples", type=int, default=1)
    args = parser.parse_args()
    kw = dict(points_per_hand=50_000, seed=0)
    gt = HandsDataset(args.data, args.split, **kw)
    print("| sample | hand | points_frame | max mm | median mm |\n|---|---|---|---|---|")
    for frame in ("gt", "input"):
        noisy = HandsDataset(args.data, args.split, transforms_from="noisy", points_frame=frame, **kw)
        for i in range(min(args.samples, len(gt))):
            g, n = gt[i], noisy[i]
            for side in SIDES:
                q2c = g[side]["query_to_cam"].double()
                labelled = g[side]["points"].double() @ q2c[:3, :3].T + q2c[:3, 3]
                read = query_to_camera(n[side]["points"][None].float(), n[side]["root"][None],
                                       n[side]["root_rot_mat"][None], side, n["camera_R"][None],
                                       n["camera_T"][None])[0].double()
                d = (read - labelled).norm(dim=-1) * 1000
                print(f"| {i} | {side} | {frame} | {d.max():.1f} | {d.median():.1f} |")


if __name__ == "__main__":
    main()
