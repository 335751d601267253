"""Keypoints predicted by another method (e.g. IntagHand), one JSON file per image.

Layout: ``PRED_DIR/<file_name of the image with .json instead of .jpg>``, i.e. the tree of
``ROOT/images/<split>/``: ``PRED_DIR/Capture0/ROM03_RT_No_Occlusion/cam400262/image21700.json``. Content::

    {
      "right": [[x, y, z], ... 21 joints],
      "left":  [[x, y, z], ... 21 joints],
      "joint_order": "internal",        # or "interhand"; default "internal"
      "units": "m",                     # or "mm"; default "m"
      "frame": "camera"                 # or "root-relative"; default "camera"
    }

- ``joint_order``: ``internal`` = wrist, thumb1-4, index1-4, middle1-4, ring1-4, pinky1-4 (manopth's order, the
  order of the official ``pred_joints/*.ply``); ``interhand`` = InterHand2.6M's per-hand order (tip first, wrist
  last).
- ``frame``: ``camera`` = the camera frame of the original image (the crop changes only the intrinsics);
  ``root-relative`` = any translation (IntagHand predicts root-relative joints): each hand is moved so that its
  wrist is the ground-truth wrist, as the official pipeline does (its predicted joints give the pose, the
  ground-truth root the position).
"""

from __future__ import annotations

import json
import os
from pathlib import Path, PurePosixPath

import numpy as np

from im2hands.hand.skeleton import INTERNAL_FROM_INTERHAND_HAND, SIDES


class PredictedKeypointsError(ValueError):
    """A predicted-keypoints file exists but is malformed; the message names the file."""


def predicted_path(pred_dir: str | os.PathLike, file_name: str) -> Path:
    """Where the predictions of image ``file_name`` (relative to ``images/<split>/``) are stored."""
    return Path(pred_dir) / PurePosixPath(file_name).with_suffix(".json")


def read_predicted(path: str | os.PathLike, joints_cam_gt: dict[str, np.ndarray] | None = None
                   ) -> dict[str, np.ndarray] | None:
    """Read one file of predicted keypoints.

    Args:
        path: the JSON file (format in the module docstring).
        joints_cam_gt: ``{"right", "left"}`` -> (21, 3) ground-truth joints, internal order, camera frame,
            metres; needed for ``"frame": "root-relative"``.
    Returns:
        ``{"right", "left"}`` -> (21, 3) float64 keypoints, internal order, camera frame, metres; None if the
        file does not exist.
    Raises:
        PredictedKeypointsError: the file is malformed.
    """
    path = Path(path)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise PredictedKeypointsError(f"{path}: not readable JSON ({e})") from None
    order = data.get("joint_order", "internal")
    units = data.get("units", "m")
    frame = data.get("frame", "camera")
    if order not in ("internal", "interhand") or units not in ("m", "mm") or frame not in ("camera", "root-relative"):
        raise PredictedKeypointsError(
            f"{path}: joint_order must be 'internal' or 'interhand', units 'm' or 'mm', frame 'camera' or "
            f"'root-relative'; got {order!r}, {units!r}, {frame!r}")
    out = {}
    for side in SIDES:
        try:
            j = np.asarray(data[side], dtype=np.float64)
        except (KeyError, TypeError, ValueError):
            raise PredictedKeypointsError(f"{path}: needs '{side}': 21 [x, y, z] joints") from None
        if j.shape != (21, 3) or not np.isfinite(j).all():
            raise PredictedKeypointsError(f"{path}: '{side}' must be 21 finite [x, y, z] joints, got shape {j.shape}")
        if order == "interhand":
            j = j[list(INTERNAL_FROM_INTERHAND_HAND)]
        if units == "mm":
            j = j / 1000.0
        if frame == "root-relative":
            if joints_cam_gt is None:
                raise ValueError("joints_cam_gt: needed to place root-relative predictions")
            j = j - j[0] + np.asarray(joints_cam_gt[side], dtype=np.float64)[0]
        out[side] = j
    return out


def write_predicted(path: str | os.PathLike, joints: dict[str, np.ndarray], *, joint_order: str = "internal",
                    units: str = "m", frame: str = "camera") -> None:
    """Write one file in the format of :func:`read_predicted` (for converters and tests)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {s: np.asarray(joints[s], dtype=np.float64).tolist() for s in SIDES}
    data |= {"joint_order": joint_order, "units": units, "frame": frame}
    path.write_text(json.dumps(data))
