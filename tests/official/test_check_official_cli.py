"""`im2hands check-official`: passes on the shipped golden folder, fails on a corrupted copy."""

from __future__ import annotations

import shutil

import numpy as np

from im2hands.cli import main
from tests.conftest import GOLDEN_DIR


def test_check_official_passes(capsys):
    assert main(["check-official", str(GOLDEN_DIR)]) == 0
    out = capsys.readouterr().out
    assert "FAIL" not in out
    assert "unpose_right" in out and "atol" in out


def _corrupt_copy(tmp_path, file: str, key: str, delta: float):
    for name in ("manifest.json", "inputs.npz", "canonicalisation.npz", "canon_extra.npz"):
        shutil.copy(GOLDEN_DIR / name, tmp_path / name)
    with np.load(GOLDEN_DIR / file) as z:
        arrays = {k: z[k].copy() for k in z.files}
    arrays[key].flat[5] += delta
    np.savez(tmp_path / file, **arrays)
    return tmp_path


def test_check_official_fails_on_corrupted_golden(tmp_path, capsys):
    folder = _corrupt_copy(tmp_path, "canonicalisation.npz", "unpose_right", 1e-9)
    assert main(["check-official", str(folder), "--networks", "canonicalisation"]) == 1
    out = capsys.readouterr().out
    failed = [line for line in out.splitlines() if line.startswith("FAIL")]
    # the official-dtype array fails; the float64-path comparison (atol 1e-4) still passes
    assert len(failed) == 1 and "unpose_right " in failed[0], out
    assert "1 failed" in out


def test_check_official_fails_on_corrupted_extra(tmp_path, capsys):
    folder = _corrupt_copy(tmp_path, "canon_extra.npz", "bone_lengths", 1e-6)
    assert main(["check-official", str(folder), "--networks", "canonicalisation"]) == 1
    out = capsys.readouterr().out
    assert "FAIL canonicalisation  extra/bone_lengths " in out
