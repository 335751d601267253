"""Readers of InterHand2.6M v1.0's annotation files, streaming where the files are large.

Files (``docs/INTERHAND.md``), under ``ROOT/annotations/``:

- ``skeleton.txt``: one line per joint, ``name id parent_id`` (``r_thumb4 0 1`` ...); checked against
  :data:`im2hands.hand.skeleton.INTERHAND`.
- ``<split>/InterHand2.6M_<split>_data.json``: COCO-style ``{"images": [...], "annotations": [...]}``.
- ``<split>/InterHand2.6M_<split>_camera.json``: ``{capture: {"campos"|"camrot"|"focal"|"princpt": {cam: ...}}}``.
- ``<split>/InterHand2.6M_<split>_joint_3d.json``: ``{capture: {frame: {"world_coord": 42x3 mm, "joint_valid",
  "hand_type", "hand_type_valid"}}}``.
- ``<split>/InterHand2.6M_<split>_MANO_NeuralAnnot.json``: ``{capture: {frame: {"right"|"left": {"pose": 48,
  "shape": 10, "trans": 3 metres} or null}}}``.

Traps handled here: ``capture``, ``camera`` and ``frame_idx`` are ints in some files and strings in others
(every id is normalised to ``int``); ``joint_valid`` is nested (42 x 1) or flat; a hand's MANO entry can be
``null``. The train files are GBs: :func:`iter_items` and :func:`iter_frames` stream them with ijson's C
parser (one COCO record or one frame's entry in memory at a time), and the callers keep only compact
numpy copies of what the selected frames need.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from pathlib import Path

import numpy as np

from im2hands.hand.skeleton import INTERHAND

SPLITS = ("train", "val", "test")
KINDS = ("data", "camera", "joint_3d", "MANO_NeuralAnnot")


def annotation_path(root: str | os.PathLike, split: str, kind: str) -> Path:
    """``ROOT/annotations/<split>/InterHand2.6M_<split>_<kind>.json``."""
    if split not in SPLITS:
        raise ValueError(f"split: expected one of {SPLITS}, got {split!r}")
    if kind not in KINDS:
        raise ValueError(f"kind: expected one of {KINDS}, got {kind!r}")
    return Path(root) / "annotations" / split / f"InterHand2.6M_{split}_{kind}.json"


def check_layout(root: str | os.PathLike, split: str) -> None:
    """Raise ``FileNotFoundError`` listing every missing annotation file or folder of `split` under `root`."""
    root = Path(root)
    wanted = [root / "annotations" / "skeleton.txt"] + [annotation_path(root, split, k) for k in KINDS]
    missing = [str(p) for p in wanted if not p.is_file()]
    if not (root / "images" / split).is_dir():
        missing.append(str(root / "images" / split) + "/")
    if missing:
        raise FileNotFoundError(
            f"root: {root} is not an InterHand2.6M v1.0 folder for split {split!r}; missing: {missing} "
            "(expected ROOT/annotations/skeleton.txt, ROOT/annotations/<split>/InterHand2.6M_<split>_*.json and "
            "ROOT/images/<split>/)")


def read_skeleton(path: str | os.PathLike) -> tuple[str, ...]:
    """Joint names of ``skeleton.txt`` in id order, as ``right_thumb4`` ... ``left_wrist``.

    Raises:
        ValueError: the file does not list InterHand2.6M's 42 joints in the order of
            :data:`im2hands.hand.skeleton.INTERHAND` (then every joint index in this module would be wrong).
    """
    names: dict[int, str] = {}
    for line in Path(path).read_text().splitlines():
        parts = line.split()
        if len(parts) < 2 or parts[0].startswith("#") or not parts[1].lstrip("-").isdigit():
            continue
        raw, jid = parts[0].lower(), int(parts[1])
        side = {"r": "right", "l": "left"}.get(raw[:1]) if raw[1:2] == "_" else None
        names[jid] = f"{side}_{raw[2:]}" if side else raw
    found = tuple(names[i] for i in sorted(names))
    if found != INTERHAND:
        raise ValueError(f"{path}: expected InterHand2.6M's 42 joints {INTERHAND[:3]}... in id order, got {found[:5]}... "
                         f"({len(found)} joints); is this InterHand2.6M's skeleton.txt?")
    return found


def iter_items(path: str | os.PathLike, prefix: str) -> Iterator[dict]:
    """Stream the elements of one array of a JSON file (e.g. ``"images.item"``), floats as ``float``."""
    import ijson

    with open(path, "rb") as f:
        yield from ijson.items(f, prefix, use_float=True)


def iter_frames(path: str | os.PathLike) -> Iterator[tuple[int, int, Any]]:
    """Stream a ``{capture: {frame: value}}`` file one frame at a time: ``(capture, frame, value)`` as ints.

    Only one frame's value is ever built (ijson's C tokenizer, objects assembled here), so memory does not grow
    with the file or with the size of a capture.
    """
    import ijson

    capture: int | None = None
    frame: int | None = None
    builder = None
    depth = 0  # nesting depth of the current event: 1 inside the top object, 2 inside a capture
    with open(path, "rb") as f:
        for _, event, value in ijson.parse(f, use_float=True):
            if builder is not None:
                builder.event(event, value)
                if event in ("start_map", "start_array"):
                    depth += 1
                elif event in ("end_map", "end_array"):
                    depth -= 1
                if depth == 2:  # the frame's value is complete
                    yield capture, frame, builder.value
                    builder = None
                continue
            if event == "map_key":
                if depth == 1:
                    capture = as_id(value, "capture")
                else:
                    frame = as_id(value, "frame")
                    builder = ijson.ObjectBuilder()
                    continue
            elif event == "start_map":
                depth += 1
            elif event == "end_map":
                depth -= 1


def as_id(value, name: str) -> int:
    """An id stored as int or as a decimal string (``0``, ``"0"``, ``"400262"``) -> int."""
    try:
        return int(str(value).strip())
    except ValueError:
        raise ValueError(f"{name}: expected an integer id, got {value!r}") from None


def joint_valid_array(value) -> np.ndarray:
    """``joint_valid`` as stored (42 x 1 nested or 42 flat, 0/1 numbers) -> (42,) bool."""
    a = np.asarray(value, dtype=np.float64).reshape(-1)
    if a.shape != (42,):
        raise ValueError(f"joint_valid: expected 42 values, got {a.shape[0]}")
    return a > 0


@dataclass(frozen=True)
class CameraTable:
    """Every camera of a split, keyed ``(capture, cam)``.

    Attributes:
        index: ``(capture, cam) -> row``.
        campos: (C, 3) float64 camera centres, world frame, **mm**.
        camrot: (C, 3, 3) float64 world -> camera rotations.
        focal: (C, 2) float64 (fx, fy) pixels.
        princpt: (C, 2) float64 (cx, cy) pixels.
    """

    index: dict[tuple[int, int], int]
    campos: np.ndarray
    camrot: np.ndarray
    focal: np.ndarray
    princpt: np.ndarray

    def K(self, row: int) -> np.ndarray:
        """(3, 3) intrinsics of the full image."""
        (fx, fy), (cx, cy) = self.focal[row], self.princpt[row]
        return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])


def read_cameras(path: str | os.PathLike) -> CameraTable:
    """Read ``..._camera.json`` (a few MB: loaded whole)."""
    with open(path) as f:
        data = json.load(f)
    index: dict[tuple[int, int], int] = {}
    rows: dict[str, list] = {k: [] for k in ("campos", "camrot", "focal", "princpt")}
    for capture, params in data.items():
        cap = as_id(capture, "camera.json capture")
        missing = [k for k in rows if k not in params]
        if missing:
            raise ValueError(f"{path}: capture {capture} lacks {missing}")
        for cam in params["campos"]:
            if not all(cam in params[k] for k in rows):
                continue  # a camera without all four entries cannot be used; frames seen by it count as no camera
            index[(cap, as_id(cam, "camera.json cam"))] = len(rows["campos"])
            for k in rows:
                rows[k].append(params[k][cam])
    shapes = {"campos": (3,), "camrot": (3, 3), "focal": (2,), "princpt": (2,)}
    arrays = {k: np.asarray(v, dtype=np.float64).reshape((-1,) + shapes[k]) for k, v in rows.items()}
    return CameraTable(index=index, **arrays)
