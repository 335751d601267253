"""Streaming readers and the selection's memory bound on a scaled-up fixture."""

from __future__ import annotations

import json
import tracemalloc

import numpy as np

from im2hands.data.interhand import reader as R
from im2hands.data.interhand.select import select_frames
from tests.data.interhand.fixture import write_scaled_annotations


def test_iter_frames_streams_every_frame_with_int_ids(tmp_path):
    data = {"0": {"12": {"right": None, "left": {"pose": [0.5] * 48}}, "18": None},
            "3": {"6": {"world_coord": [[1, 1, 1]] * 42}}}
    path = tmp_path / "x.json"
    path.write_text(json.dumps(data))
    got = list(R.iter_frames(path))
    assert [(c, f) for c, f, _ in got] == [(0, 12), (0, 18), (3, 6)]
    assert got[0][2]["right"] is None and got[0][2]["left"]["pose"][0] == 0.5 and got[1][2] is None
    assert np.asarray(got[2][2]["world_coord"]).shape == (42, 3)


def test_joint_valid_nested_or_flat():
    assert R.joint_valid_array([[1]] * 41 + [[0]]).sum() == 41
    assert R.joint_valid_array([1.0] * 42).all()


def test_selection_memory_is_bounded(tmp_path):
    """The selection keeps compact copies of what it selected, never a parsed file: its peak Python memory is
    below the annotation files' size and grows with the selected images only (json.load takes ~12x the file size)."""
    sizes = write_scaled_annotations(tmp_path, "train", frames=1000, cams=10)
    tracemalloc.start()
    try:
        selection = select_frames(tmp_path, "train")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(selection) == 5000 and selection.skipped == {"not interacting": 5000}
    total = sum(sizes.values())
    assert peak < 0.75 * total, (peak, total)  # a parse of the files would take ~12x total
    assert peak < 1500 * len(selection) + 2e6, (peak, len(selection))  # ~1 kB per selected image
