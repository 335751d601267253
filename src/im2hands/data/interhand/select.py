"""Which InterHand2.6M images become samples, with the count of every skipped image and why.

The default is the data the paper used, IntagHand's selection (``dataset/interhand.py``): annotations with
``hand_type == "interacting"`` and ``hand_type_valid``, whose frame has a NeuralAnnot MANO fit for both hands.
(IntagHand also drops images darker than mean 10, decided later when the image is read:
:mod:`im2hands.data.interhand.prepare`.) Options add single-hand-labelled frames, the human- or machine-
annotated subset, and a requirement on the annotated joints' validity.

Memory: the data file is streamed twice (annotations, then images), the MANO and joint files once each, one frame
at a time;
only the selected images' ids, file names, joint-validity flags and their frames' MANO parameters and joints
are kept, as numpy arrays (about 1.5 kB per selected image; ``docs/INTERHAND.md`` has measured peaks).
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from im2hands.data.interhand import reader as R

HAND_TYPES = ("right", "left", "interacting")


@dataclass(frozen=True)
class SelectionConfig:
    """Which annotations of a split are prepared."""

    hand_types: Literal["interacting", "all"] = "interacting"
    """``interacting``: only frames annotated as two interacting hands (the paper). ``all``: also frames annotated
    ``right`` or ``left`` whose frame has MANO fits for both hands (a sample always holds two hands)."""
    subset: Literal["all", "human", "machine"] = "all"
    """``all`` = H+M (the paper), ``human`` (H) or ``machine`` (M); H and M need ``human_annot_ids``."""
    human_annot_ids: Path | None = None
    """Text file of the human-annotated annotation ids, one per line (InterWild's ``aid_human_annot_<split>.txt``)."""
    require_joints: Literal["none", "wrists", "all"] = "none"
    """Annotated joints that must be valid (``joint_valid``) for both hands: ``none`` (IntagHand, the paper),
    ``wrists`` (both roots; InterHand2.6M invalidates a hand whose root is invalid) or ``all`` 42."""

    def __post_init__(self):
        if self.hand_types not in ("interacting", "all"):
            raise ValueError(f"hand_types: expected 'interacting' or 'all', got {self.hand_types!r}")
        if self.subset not in ("all", "human", "machine"):
            raise ValueError(f"subset: expected 'all', 'human' or 'machine', got {self.subset!r}")
        if self.subset != "all" and self.human_annot_ids is None:
            raise ValueError(f"subset: {self.subset!r} needs human_annot_ids (--human-annot-ids FILE, e.g. InterWild's "
                             "aid_human_annot_<split>.txt)")
        if self.require_joints not in ("none", "wrists", "all"):
            raise ValueError(f"require_joints: expected 'none', 'wrists' or 'all', got {self.require_joints!r}")


@dataclass(frozen=True)
class FrameRecord:
    """Everything needed to prepare one image; small and picklable (sent to worker processes).

    Attributes:
        index: position in the selection (the sample's file name and ``index``).
        image_id, annot_id, capture, cam, frame_idx: InterHand2.6M ids.
        file_name: image path relative to ``ROOT/images/<split>/``.
        hand_type: the annotation's ``hand_type`` (right, left, interacting).
        K: (3, 3) intrinsics of the full image, pixels.
        camrot: (3, 3) world -> camera rotation.
        campos: (3,) camera centre, world frame, mm.
        mano: (2, 61) float64 NeuralAnnot fits of the right and left hand: pose (48, axis-angle, root first),
            shape (10), trans (3, world, metres).
        joints_world_mm: (42, 3) float32 annotated joints, InterHand2.6M order, world mm (NaN without a joint_3d
            entry; invalid joints hold placeholders).
        joint_valid: (42,) bool annotation's joint validity.
    """

    index: int
    image_id: int
    annot_id: int
    capture: int
    cam: int
    frame_idx: int
    file_name: str
    hand_type: str
    K: np.ndarray
    camrot: np.ndarray
    campos: np.ndarray
    mano: np.ndarray
    joints_world_mm: np.ndarray
    joint_valid: np.ndarray


@dataclass
class Selection:
    """The selected images of a split (sorted by image id) in compact arrays, and the skip counts."""

    split: str
    image_id: np.ndarray
    annot_id: np.ndarray
    capture: np.ndarray
    cam: np.ndarray
    frame_idx: np.ndarray
    hand_type: np.ndarray
    """(S,) int8 index into :data:`HAND_TYPES`."""
    file_name: list[str]
    joint_valid: np.ndarray
    """(S, 42) bool."""
    frame_row: np.ndarray
    """(S,) row of the image's frame in ``mano`` / ``joints_world_mm``."""
    camera_row: np.ndarray
    """(S,) row in ``cameras``."""
    mano: np.ndarray
    """(Fr, 2, 61) float64 per frame."""
    joints_world_mm: np.ndarray
    """(Fr, 42, 3) float32 per frame."""
    cameras: R.CameraTable
    annotations_read: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    """reason -> number of annotations skipped for it (each counted under its first failing reason)."""

    def __len__(self) -> int:
        return len(self.image_id)

    def record(self, i: int) -> FrameRecord:
        """The :class:`FrameRecord` of selected image ``i``."""
        c, f = int(self.camera_row[i]), int(self.frame_row[i])
        return FrameRecord(
            index=i, image_id=int(self.image_id[i]), annot_id=int(self.annot_id[i]), capture=int(self.capture[i]),
            cam=int(self.cam[i]), frame_idx=int(self.frame_idx[i]), file_name=self.file_name[i],
            hand_type=HAND_TYPES[int(self.hand_type[i])], K=self.cameras.K(c), camrot=self.cameras.camrot[c],
            campos=self.cameras.campos[c], mano=self.mano[f], joints_world_mm=self.joints_world_mm[f],
            joint_valid=self.joint_valid[i],
        )


def _read_ids(path: str | os.PathLike) -> set[int]:
    ids = set()
    for line in Path(path).read_text().split():
        ids.add(R.as_id(line, f"{path}: annotation id"))
    return ids


def _mano_row(entry) -> tuple[np.ndarray, tuple[bool, bool]]:
    """One frame's ``{"right": {...}|null, "left": ...}`` -> ((2, 61) with NaN rows for null hands, present)."""
    out = np.full((2, 61), np.nan)
    present = []
    for k, side in enumerate(("right", "left")):
        hand = entry.get(side) if isinstance(entry, dict) else None
        ok = isinstance(hand, dict) and all(hand.get(n) is not None for n in ("pose", "shape", "trans"))
        if ok:
            values = np.concatenate([np.asarray(hand[n], dtype=np.float64).reshape(-1) for n in ("pose", "shape", "trans")])
            ok = values.shape == (61,) and bool(np.isfinite(values).all())
            if ok:
                out[k] = values
        present.append(ok)
    return out, (present[0], present[1])


def select_frames(root: str | os.PathLike, split: str, config: SelectionConfig = SelectionConfig()) -> Selection:
    """Read the annotation files of `split` and select the images to prepare.

    Args:
        root: InterHand2.6M folder holding ``annotations/`` and ``images/``.
        split: train, val or test.
        config: see :class:`SelectionConfig`.
    Returns:
        :class:`Selection`, sorted by image id; ``skipped`` counts annotations dropped, by reason:
        ``not interacting``, ``hand type not valid``, ``not in subset``, ``invalid joints``, ``duplicate
        annotation``, ``no image entry``, ``no camera``, ``no MANO entry``, ``MANO missing for a hand``.
    """
    R.check_layout(root, split)
    R.read_skeleton(Path(root) / "annotations" / "skeleton.txt")
    skipped: Counter[str] = Counter()
    human = _read_ids(config.human_annot_ids) if config.subset != "all" else None
    types_ok = {"interacting"} if config.hand_types == "interacting" else set(HAND_TYPES)

    # Pass 1: annotations -> the image ids that pass the annotation-level rules.
    keep: dict[int, tuple[int, int, bytes]] = {}  # image_id -> (annot id, hand type code, joint_valid bytes)
    read = 0
    for ann in R.iter_items(R.annotation_path(root, split, "data"), "annotations.item"):
        read += 1
        hand_type = str(ann.get("hand_type", "")).lower()
        aid = R.as_id(ann.get("id", -1), "annotation id")
        if hand_type not in types_ok:
            skipped["not interacting"] += 1
            continue
        if not ann.get("hand_type_valid", 0):
            skipped["hand type not valid"] += 1
            continue
        if human is not None and ((aid in human) != (config.subset == "human")):
            skipped["not in subset"] += 1
            continue
        valid = R.joint_valid_array(ann.get("joint_valid", [0] * 42))
        if config.require_joints == "all" and not valid.all():
            skipped["invalid joints"] += 1
            continue
        if config.require_joints == "wrists" and not (valid[20] and valid[41]):
            skipped["invalid joints"] += 1
            continue
        image_id = R.as_id(ann["image_id"], "annotation image_id")
        if image_id in keep:
            skipped["duplicate annotation"] += 1
            continue
        keep[image_id] = (aid, HAND_TYPES.index(hand_type), valid.tobytes())  # 42 bytes, not an array

    # Pass 2: images -> ids, file names (only the kept ones).
    images: dict[int, tuple[int, int, int, str]] = {}
    for img in R.iter_items(R.annotation_path(root, split, "data"), "images.item"):
        image_id = R.as_id(img["id"], "image id")
        if image_id in keep:
            images[image_id] = (R.as_id(img["capture"], "image capture"), R.as_id(img["camera"], "image camera"),
                                R.as_id(img["frame_idx"], "image frame_idx"), str(img["file_name"]))
    for image_id in [i for i in keep if i not in images]:
        skipped["no image entry"] += 1
        del keep[image_id]

    cameras = R.read_cameras(R.annotation_path(root, split, "camera"))
    for image_id in [i for i in keep if (images[i][0], images[i][1]) not in cameras.index]:
        skipped["no camera"] += 1
        del keep[image_id]

    # Pass 3: MANO fits of the frames still wanted.
    wanted_frames = {(images[i][0], images[i][2]) for i in keep}
    frame_index: dict[tuple[int, int], int] = {}
    mano_rows, present = [], []
    for capture, frame, entry in R.iter_frames(R.annotation_path(root, split, "MANO_NeuralAnnot")):
        key = (capture, frame)
        if key in wanted_frames and key not in frame_index:
            row, ok = _mano_row(entry)
            frame_index[key] = len(mano_rows)
            mano_rows.append(row)
            present.append(ok)
    for image_id in list(keep):
        cap, _, frame, _ = images[image_id]
        row = frame_index.get((cap, frame))
        if row is None:
            skipped["no MANO entry"] += 1
            del keep[image_id]
        elif not all(present[row]):
            skipped["MANO missing for a hand"] += 1
            del keep[image_id]

    # Pass 4: annotated world joints of the kept frames (for the MANO-vs-annotation check).
    joints = np.full((len(mano_rows), 42, 3), np.nan, dtype=np.float32)
    for capture, frame, entry in R.iter_frames(R.annotation_path(root, split, "joint_3d")):
        row = frame_index.get((capture, frame))
        if row is not None and isinstance(entry, dict) and entry.get("world_coord") is not None:
            wc = np.asarray(entry["world_coord"], dtype=np.float32)
            if wc.shape == (42, 3):
                joints[row] = wc

    ids = np.array(sorted(keep), dtype=np.int64)
    cap = np.array([images[i][0] for i in ids], dtype=np.int64)
    cam = np.array([images[i][1] for i in ids], dtype=np.int64)
    frm = np.array([images[i][2] for i in ids], dtype=np.int64)
    return Selection(
        split=split, image_id=ids,
        annot_id=np.array([keep[i][0] for i in ids], dtype=np.int64),
        capture=cap, cam=cam, frame_idx=frm,
        hand_type=np.array([keep[i][1] for i in ids], dtype=np.int8),
        file_name=[images[i][3] for i in ids],
        joint_valid=np.frombuffer(b"".join(keep[i][2] for i in ids), dtype=bool).reshape(-1, 42).copy(),
        frame_row=np.array([frame_index[(c, f)] for c, f in zip(cap.tolist(), frm.tolist())], dtype=np.int64),
        camera_row=np.array([cameras.index[(c, k)] for c, k in zip(cap.tolist(), cam.tolist())], dtype=np.int64),
        mano=np.asarray(mano_rows, dtype=np.float64).reshape(-1, 2, 61),
        joints_world_mm=joints, cameras=cameras, annotations_read=read, skipped=dict(sorted(skipped.items())),
    )
