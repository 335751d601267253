"""How far the inside points of a part spread in its bone's canonical frame (docs/TRAINING.md, "The compact
preset", point 1): the scale the part decoders read.

    PYTHONPATH=src python docs/scripts/bone_frame_spread.py DATA [SPLIT] [N_SAMPLES]

For parts 0 (palm), 2, 5, 13, 15 of both hands: the inside occupancy points nearest to that part's bone
(``train.losses.nearest_part``) mapped into the part's frame (``unpose @ [p / 0.4, 1]``, as the decoder
reads them); prints the mean over samples of their per-axis standard deviation, and the spread of their
means across samples (small: the frames are consistent).
"""

from __future__ import annotations

import sys

import numpy as np
import torch

from im2hands.data.dataset import HandsDataset
from im2hands.train.losses import nearest_part


def main(argv: list[str]) -> int:
    data, split = argv[0], (argv[1] if len(argv) > 1 else "train")
    n = int(argv[2]) if len(argv) > 2 else 12
    ds = HandsDataset(data, split, points_per_hand=20000, seed=0)
    for side in ("right", "left"):
        res: dict[int, list] = {b: [] for b in (0, 2, 5, 13, 15)}
        for i in range(min(n, len(ds))):
            h = ds[i][side]
            pts, q2c = h["points"], h["query_to_cam"]
            part = nearest_part((pts @ q2c[:3, :3].T + q2c[:3, 3])[None], h["joints"][None])[0]
            inside = h["occupancy"] > 0.5
            x = torch.cat([pts / 0.4, torch.ones(len(pts), 1)], 1).double()
            for b in res:
                xb = (h["unpose"][b] @ x[inside & (part == b)].T).T[:, :3].numpy()
                res[b].append((xb.mean(0), xb.std(0)))
        for b, rows in res.items():
            means = np.array([r[0] for r in rows])
            stds = np.array([r[1] for r in rows])
            print(f"{side} part {b:2d}: per-axis std inside {stds.mean(0).round(3)}, "
                  f"spread of the means over samples {means.std(0).round(3)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
