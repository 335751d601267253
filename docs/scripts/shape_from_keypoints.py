"""How much of a hand's shape its ground-truth keypoints already fix: the most an image can add to them.

The generator draws each hand's shape coefficients (``betas``, 10 per hand) and pose independently. Given
ground-truth keypoints a network knows the pose and the bone lengths; what the keypoints do not say about the
mesh is the part of the shape the bone lengths do not determine (and the twist of each finger bone about its
axis, which no joint position reveals; not measured here). This script estimates that part:

1. fits, per side, a linear map from the 16 bone lengths (+1) to the 10 betas on the training split (least
   squares; its R² per beta on the test samples is printed);
2. for each test hand, poses the hand model with the same pose and global rotation and (a) the betas
   predicted from its bone lengths, (b) the mean shape (betas 0), each placed at the ground-truth wrist, and
   scores them against the ground-truth mesh with the evaluation's metrics (``im2hands.eval.metrics``: IoU
   of 100,000 points in the meshes' box, Chamfer-L1 from 100,000 surface points, MPJPE of the 21 joints).

(a) is what a keypoints-only model could reach if its only error were the shape the bone lengths leave open:
the gap between (a) and a perfect 100 % bounds what reading shape from the image can add with exact
keypoints. (b) shows how much shape matters at all. The ground truth's own row gives the Chamfer-L1 floor of two
independent draws of the same surface.

Run::

    PYTHONPATH=src python docs/scripts/shape_from_keypoints.py data/synth data/test_s101 --samples 70
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from im2hands.data.sample import read_sample
from im2hands.data.synth.scene import load_hand_models
from im2hands.eval.metrics import chamfer, iou
from im2hands.hand.skeleton import SIDES


def bone_lengths_and_betas(folder: Path, limit: int | None = None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """side -> ((N, 16) bone lengths, (N, 10) betas) of a split's samples."""
    lengths = {s: [] for s in SIDES}
    betas = {s: [] for s in SIDES}
    for f in sorted(folder.glob("*.npz"))[:limit]:
        with np.load(f) as z:
            for s in SIDES:
                lengths[s].append(z[f"{s}_bone_lengths"])
                betas[s].append(z[f"{s}_betas"])
    return {s: (np.array(lengths[s], dtype=np.float64), np.array(betas[s], dtype=np.float64)) for s in SIDES}


def with_bias(x: np.ndarray) -> np.ndarray:
    return np.concatenate([x, np.ones((len(x), 1))], axis=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("train_data", type=Path, help="a data folder with a train/ split (the fit)")
    parser.add_argument("test_data", type=Path, help="a data folder with a test/ split (the scores)")
    parser.add_argument("--samples", type=int, default=70, help="test samples scored")
    parser.add_argument("--points", type=int, default=100_000, help="IoU and Chamfer points per hand")
    args = parser.parse_args()

    train = bone_lengths_and_betas(args.train_data / "train")
    fits = {s: np.linalg.lstsq(with_bias(train[s][0]), train[s][1], rcond=None)[0] for s in SIDES}
    test = bone_lengths_and_betas(args.test_data / "test", args.samples)
    for s in SIDES:
        x, y = test[s]
        pred = with_bias(x) @ fits[s]
        r2 = 1 - ((pred - y) ** 2).sum(0) / ((y - train[s][1].mean(0)) ** 2).sum(0)
        print(f"{s}: R² of each beta from the bone lengths on the test hands: {np.round(r2, 3).tolist()}")

    models = load_hand_models()
    rows = {"ground truth (floor)": [], "betas from bone lengths": [], "mean shape (betas 0)": []}
    check = []
    for f in sorted((args.test_data / "test").glob("*.npz"))[:args.samples]:
        z = read_sample(f)
        cam_r, cam_t = z["camera_R"].astype(np.float64), z["camera_T"].astype(np.float64)
        for s in SIDES:
            model = getattr(models, s)
            pose, betas = z[f"{s}_hand_pose"][None], z[f"{s}_betas"]
            rot = Rotation.from_rotvec(z[f"{s}_global_orient"]).as_matrix()
            faces = model.faces

            def placed(b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
                """(vertices, joints) in the camera frame, the wrist at the ground-truth wrist."""
                v, j, _ = model.forward(pose, b)
                wrist_world = (z[f"{s}_joints"][0] - cam_t) @ cam_r     # camera -> world (R orthonormal)
                to_world = lambda p: (p - j[0, 0]) @ rot.T + wrist_world
                return to_world(v[0]) @ cam_r.T + cam_t, to_world(j[0]) @ cam_r.T + cam_t

            gt_v, gt_j = placed(betas)
            check.append(max(np.abs(gt_v - z[f"{s}_vertices"]).max(), np.abs(gt_j - z[f"{s}_joints"]).max()))
            gt = (z[f"{s}_vertices"], z[f"{s}_faces"])
            # two independent draws of the same surface: the Chamfer-L1 of a perfect shape at this point count
            rows["ground truth (floor)"].append((1.0, chamfer(gt, gt, n_points=args.points).chamfer_l1_mm, 0.0))
            for name, b in (("betas from bone lengths", with_bias(z[f"{s}_bone_lengths"][None]) @ fits[s]),
                            ("mean shape (betas 0)", np.zeros((1, 10)))):
                v, j = placed(b[0])
                mesh = (v, faces)
                rows[name].append((iou(mesh, gt, n_points=args.points).iou,
                                   chamfer(mesh, gt, n_points=args.points).chamfer_l1_mm,
                                   1000 * np.linalg.norm(j - z[f"{s}_joints"], axis=-1).mean()))
    print(f"re-posed GT vs stored GT: max deviation {max(check) * 1e3:.2e} mm (the placement is the generator's)")
    print(f"{'shape':28s} {'IoU %':>8s} {'Chamfer-L1 mm':>14s} {'MPJPE mm':>9s}  ({len(rows['mean shape (betas 0)'])} hands)")
    for name, r in rows.items():
        a = np.array(r)
        print(f"{name:28s} {100 * a[:, 0].mean():8.2f} {a[:, 1].mean():14.3f} {a[:, 2].mean():9.2f}")


if __name__ == "__main__":
    main()
