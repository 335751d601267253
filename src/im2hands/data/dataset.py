"""A torch ``Dataset`` over a folder of samples (``ROOT/<split>/*.npz``, the format of ``im2hands.data.sample``).

Each item is a nested dict of tensors with everything the three networks and their losses read::

    image        (3, 256, 256) float32, RGB normalised with the ImageNet mean/std
    mask         (256, 256) int64, visible hand per pixel (0 background, 1 right, 2 left)
    camera_K     (3, 3) float32 pixels;  camera_R (3, 3), camera_T (3,) metres: world -> camera (OpenCV)
    index        () int64, the sample index in its split
    right / left (one dict per hand):
        unpose        (16, 4, 4) float64 unposing bone transforms (query units; the official decoder
                      computes bone-local points in float64)
        bone_lengths  (16,) float32 metres
        root_rot_mat  (4, 4) float32
        root          (3,) float32 wrist, world frame, metres, true axes (the file stores the left hand's
                      root x-mirrored, ``root_xyz``; it is un-mirrored here)
        points        (N, 3) float32 query points, query space, drawn with replacement from the stored set
        occupancy     (N,) float32 labels of ``points`` (1 inside)
        points_iou    (M, 3) float32 all stored IoU points;  occupancy_iou (M,) float32
        anchors       (A, 3) float32 surface points, query space, drawn without replacement
        surface_points, surface_normals  (S, 3) float32 all stored surface points / normals, query space
        joints        (21, 3) float32 GT joints, internal order, camera frame, metres
        noisy_joints  (21, 3) float32 noisy input keypoints, camera frame, metres
        query_to_cam  (4, 4) float32 affine map query space -> camera frame metres
        vertices      only with ``with_mesh=True``: (V, 3) float32 camera metres (V varies: batch size 1)

The per-hand ``unpose``, ``bone_lengths``, ``root_rot_mat`` and ``root`` are the fields of
:class:`~im2hands.models.init_occ.HandInputs`; ``anchors`` and ``points`` are in the hand's query frame, as
``RefOcc.encode`` and ``decode`` read them; ``camera_K/R/T`` are the fields of
:class:`~im2hands.hand.camera.Camera`. A collated batch feeds the networks without conversion.

``transforms_from="noisy"`` takes unpose, bone_lengths, root_rot_mat and root from the noisy keypoints
(as the official loader does with predicted keypoints); the query points and labels stay in the GT frame
(official). Since a hand's query frame is defined by its keypoints' root and root rotation, the network then
reads each point somewhere else than where its label was taken. ``points_frame="input"`` moves every
query-space array (points, IoU points, surface points and normals, anchors) and ``query_to_cam`` into the
noisy keypoints' query frame instead: the same physical points, the same labels.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from im2hands.data.sample import read_sample
from im2hands.hand.frames import mirror_x, world_to_query_matrix
from im2hands.hand.skeleton import SIDES

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_TRANSFORM_KEYS = ("bone_lengths", "root_rot_mat", "root_xyz")


def _to_input_frame(hand: dict, side: str, *, gt_root: np.ndarray, gt_root_rot_mat: np.ndarray) -> None:
    """Move a hand item's query-space arrays from the GT keypoints' query frame to the frame of its
    transforms' keypoints (``hand["root"]``, ``hand["root_rot_mat"]``), in place; labels are unchanged."""
    def w2q(root: np.ndarray, rrm: np.ndarray) -> np.ndarray:
        return world_to_query_matrix(torch.from_numpy(root)[None], torch.from_numpy(rrm)[None], side)[0].numpy()

    gt_root_true = mirror_x(gt_root) if side == "left" else gt_root
    gt_to_input = w2q(hand["root"].double().numpy(), hand["root_rot_mat"].double().numpy()) @ np.linalg.inv(
        w2q(gt_root_true, gt_root_rot_mat))
    lin, shift = gt_to_input[:3, :3], gt_to_input[:3, 3]
    for key in ("points", "points_iou", "surface_points", "anchors"):
        p = hand[key].double().numpy()
        hand[key] = torch.from_numpy((p @ lin.T + shift).astype(np.float32))
    n = hand["surface_normals"].double().numpy() @ lin.T   # a rotation: both frames share the side mirror and the 0.4 scale
    hand["surface_normals"] = torch.from_numpy((n / np.linalg.norm(n, axis=-1, keepdims=True).clip(1e-12))
                                               .astype(np.float32))
    q2c = hand["query_to_cam"].double().numpy() @ np.linalg.inv(gt_to_input)
    hand["query_to_cam"] = torch.from_numpy(q2c.astype(np.float32))


def normalise_image(image: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 RGB -> (3, H, W) float32 normalised with the ImageNet mean and std."""
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float() / 255.0
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return (x - mean) / std


class HandsDataset(Dataset):
    """Samples of one split, with query points drawn per hand and per call.

    Args:
        root: folder holding ``<split>/*.npz``.
        split: sub-folder name (train, val, test).
        points_per_hand: N, query points drawn with replacement from each hand's stored points (official:
            4096 for init_occ, 2048 for ref_occ).
        anchors_per_hand: A, surface points returned as anchors (official: 512).
        transforms_from: ``"gt"`` or ``"noisy"`` keypoints for the bone transforms.
        points_frame: the query frame of the returned points: ``"gt"`` (official: the GT keypoints' frame,
            whatever ``transforms_from`` says) or ``"input"`` (the frame of the keypoints the transforms come
            from; differs from ``"gt"`` only with ``transforms_from="noisy"``).
        seed: None draws with torch's RNG (each DataLoader worker is seeded by torch); an int makes item i
            always draw the same points (``np.random.default_rng((seed, i))``), e.g. for validation.
        with_mesh: also return each hand's mesh vertices (their count varies between meshes).
    """

    def __init__(
        self,
        root: str | Path,
        split: str,
        *,
        points_per_hand: int = 4096,
        anchors_per_hand: int = 512,
        transforms_from: Literal["gt", "noisy"] = "gt",
        points_frame: Literal["gt", "input"] = "gt",
        seed: int | None = None,
        with_mesh: bool = False,
    ):
        self.root = Path(root)
        self.split = split
        folder = self.root / split
        if not folder.is_dir():
            raise ValueError(f"root/split: folder {folder} does not exist (make it with `im2hands synth`)")
        self.files = sorted(folder.glob("*.npz"))
        if not self.files:
            raise ValueError(f"root/split: no .npz samples in {folder}")
        for name, v in (("points_per_hand", points_per_hand), ("anchors_per_hand", anchors_per_hand)):
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name}: expected a positive int, got {v!r}")
        if transforms_from not in ("gt", "noisy"):
            raise ValueError(f"transforms_from: expected 'gt' or 'noisy', got {transforms_from!r}")
        self.points_per_hand = points_per_hand
        self.anchors_per_hand = anchors_per_hand
        if points_frame not in ("gt", "input"):
            raise ValueError(f"points_frame: expected 'gt' or 'input', got {points_frame!r}")
        self.transforms_from = transforms_from
        self.points_frame = points_frame
        self.seed = seed
        self.with_mesh = with_mesh

    def __len__(self) -> int:
        return len(self.files)

    def _draw(self, rng: np.random.Generator | None, high: int, size: int, replace: bool) -> np.ndarray:
        if rng is not None:
            return rng.choice(high, size, replace=replace)
        if replace:
            return torch.randint(0, high, (size,)).numpy()
        if size > high:  # fewer points stored than asked: repeat a permutation (official anchors pad so too)
            return torch.randperm(high).repeat(-(-size // high))[:size].numpy()
        return torch.randperm(high)[:size].numpy()

    @property
    def _moves_points(self) -> bool:
        return self.points_frame == "input" and self.transforms_from == "noisy"

    def _keys(self) -> tuple[str, ...]:
        hand = ("points", "occupancy", "points_iou", "occupancy_iou", "surface_points", "surface_normals",
                "joints", "noisy_joints", "query_to_cam")
        prefix = "noisy_" if self.transforms_from == "noisy" else ""
        hand += tuple(prefix + k for k in _TRANSFORM_KEYS + ("unpose",)) + (("vertices",) if self.with_mesh else ())
        if self._moves_points:
            hand += ("root_rot_mat", "root_xyz")
        return ("image", "mask", "camera_K", "camera_R", "camera_T", "index") + tuple(
            f"{side}_{k}" for side in SIDES for k in hand
        )

    def __getitem__(self, i: int) -> dict:
        s = read_sample(self.files[i], keys=self._keys())
        rng = None if self.seed is None else np.random.default_rng((self.seed, i))
        item: dict = {
            "image": normalise_image(s["image"]),
            "mask": torch.from_numpy(s["mask"].astype(np.int64)),
            "camera_K": torch.from_numpy(s["camera_K"]).float(),
            "camera_R": torch.from_numpy(s["camera_R"]).float(),
            "camera_T": torch.from_numpy(s["camera_T"]).float(),
            "index": torch.tensor(int(s["index"])),
        }
        for side in SIDES:
            g = lambda k: s[f"{side}_{k}"]  # noqa: E731
            prefix = "noisy_" if self.transforms_from == "noisy" else ""
            n_stored = len(g("points"))
            idx = self._draw(rng, n_stored, self.points_per_hand, replace=True)
            surf = g("surface_points")
            if self.anchors_per_hand > len(surf) and rng is not None:
                aidx = rng.choice(len(surf), self.anchors_per_hand, replace=True)
            else:
                aidx = self._draw(rng, len(surf), self.anchors_per_hand, replace=False)
            hand = {k: torch.from_numpy(np.asarray(g(prefix + k), dtype=np.float32)) for k in _TRANSFORM_KEYS}
            hand["unpose"] = torch.from_numpy(g(prefix + "unpose"))  # float64, as the official decoder uses it
            root = hand.pop("root_xyz")
            hand["root"] = mirror_x(root) if side == "left" else root
            hand |= {
                "points": torch.from_numpy(g("points")[idx]),
                "occupancy": torch.from_numpy(g("occupancy")[idx].astype(np.float32)),
                "points_iou": torch.from_numpy(g("points_iou")),
                "occupancy_iou": torch.from_numpy(g("occupancy_iou").astype(np.float32)),
                "anchors": torch.from_numpy(surf[aidx]),
                "surface_points": torch.from_numpy(surf),
                "surface_normals": torch.from_numpy(g("surface_normals")),
                "joints": torch.from_numpy(g("joints")),
                "noisy_joints": torch.from_numpy(g("noisy_joints")),
                "query_to_cam": torch.from_numpy(g("query_to_cam")).float(),
            }
            if self.with_mesh:
                hand["vertices"] = torch.from_numpy(g("vertices"))
            if self._moves_points:
                _to_input_frame(hand, side, gt_root=np.asarray(g("root_xyz"), np.float64),
                                gt_root_rot_mat=np.asarray(g("root_rot_mat"), np.float64))
            item[side] = hand
        return item
