"""`im2hands check-official`: passes on the shipped golden folder, under a second kernel set too, and fails
on corrupted, incomplete or inconsistent copies, naming the array."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from im2hands.cli import main
from tests.conftest import GOLDEN_DIR

FILES = ("manifest.json", "inputs.npz", "canonicalisation.npz", "canon_extra.npz", "image_encoder.npz",
         "init_occ.npz", "ref_occ.npz", "kpts_ref.npz", "keys_init_occ.json", "keys_ref_occ.json",
         "keys_kpts_ref.json")


def test_check_official_passes(capsys):
    assert main(["check-official", str(GOLDEN_DIR)]) == 0
    out = capsys.readouterr().out
    assert "FAIL" not in out
    assert "unpose_right" in out and "allowed" in out
    assert "checked 106 arrays" in out and "106 passed, 0 failed" in out


def test_check_official_passes_with_the_default_kernel_set(tmp_path):
    """The golden check under ``ATEN_CPU_CAPABILITY=default`` (no AVX kernels), in a subprocess: a tolerance
    that only holds for one CPU's kernels fails here first."""
    env = dict(os.environ, ATEN_CPU_CAPABILITY="default")
    report = tmp_path / "results.json"
    proc = subprocess.run([sys.executable, "-m", "im2hands", "check-official", str(GOLDEN_DIR), "--json", str(report)],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads(report.read_text())
    assert results["compared"] == 106 and results["failed"] == 0


def _copy(tmp_path, files=FILES):
    for name in files:
        shutil.copy(GOLDEN_DIR / name, tmp_path / name)
    return tmp_path


def _rewrite(folder, file: str, edit) -> None:
    with np.load(folder / file) as z:
        arrays = {k: z[k].copy() for k in z.files}
    edit(arrays)
    np.savez(folder / file, **arrays)


def _failed_lines(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith("FAIL")]


def test_corrupted_array_fails_naming_it(tmp_path, capsys):
    folder = _copy(tmp_path)

    def edit(a):
        a["unpose_right"].flat[5] += 1e-3

    _rewrite(folder, "canonicalisation.npz", edit)
    assert main(["check-official", str(folder), "--networks", "canonicalisation"]) == 1
    out = capsys.readouterr().out
    failed = _failed_lines(out)
    # the official-dtype array and the float64-path comparison of the same array both fail
    assert len(failed) == 2 and all("unpose_right" in line for line in failed), out
    assert "2 failed" in out


def test_corrupted_extra_array_fails(tmp_path, capsys):
    folder = _copy(tmp_path)

    def edit(a):
        a["bone_lengths"].flat[5] += 1e-5   # 10 micrometres

    _rewrite(folder, "canon_extra.npz", edit)
    assert main(["check-official", str(folder), "--networks", "canonicalisation"]) == 1
    assert "FAIL canonicalisation  extra/bone_lengths " in capsys.readouterr().out


@pytest.mark.parametrize("file, key, network", [("ref_occ.npz", "ref_logit_left", "ref_occ"),
                                                ("init_occ.npz", "part_logits_right", "init_occ")])
def test_corrupted_model_array_fails(tmp_path, capsys, file, key, network):
    folder = _copy(tmp_path)

    def edit(a):
        a[key].flat[7] += 1e-4

    _rewrite(folder, file, edit)
    assert main(["check-official", str(folder), "--networks", network]) == 1
    failed = _failed_lines(capsys.readouterr().out)
    assert len(failed) == 1 and f" {key} " in failed[0]


def test_removed_model_array_fails_naming_it(tmp_path, capsys):
    folder = _copy(tmp_path)
    _rewrite(folder, "ref_occ.npz", lambda a: a.pop("ctx_z_left"))
    assert main(["check-official", str(folder), "--networks", "ref_occ"]) == 1
    out = capsys.readouterr().out
    failed = _failed_lines(out)
    assert len(failed) == 1 and "ctx_z_left" in failed[0] and "missing" in failed[0], out


def test_extra_array_is_reported(tmp_path, capsys):
    folder = _copy(tmp_path)

    def edit(a):
        a["surprise"] = np.zeros(3, np.float32)

    _rewrite(folder, "kpts_ref.npz", edit)
    assert main(["check-official", str(folder), "--networks", "kpts_ref"]) == 1
    failed = _failed_lines(capsys.readouterr().out)
    assert len(failed) == 1 and "surprise" in failed[0] and "not listed in manifest.json" in failed[0]


def test_array_missing_from_manifest_and_file_is_named(tmp_path, capsys):
    """A manifest that lists an array the check cannot compare names it (no silent skip)."""
    folder = _copy(tmp_path)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"]["image_encoder.npz"].append({"name": "hms_fmap9", "shape": [1], "dtype": "float32"})
    (folder / "manifest.json").write_text(json.dumps(manifest))
    assert main(["check-official", str(folder), "--networks", "image_encoder"]) == 1
    failed = _failed_lines(capsys.readouterr().out)
    assert len(failed) == 1 and "hms_fmap9" in failed[0]


def test_empty_model_files_fail(tmp_path, capsys):
    """Arrays deleted from every model file: each listed array is a named failure, never "0 failed"."""
    folder = _copy(tmp_path)
    for file in ("image_encoder.npz", "init_occ.npz", "ref_occ.npz", "kpts_ref.npz"):
        np.savez(folder / file)
    assert main(["check-official", str(folder), "--networks", "image_encoder", "init_occ", "ref_occ",
                 "kpts_ref"]) == 1
    out = capsys.readouterr().out
    assert "0 failed" not in out
    assert "FAIL image_encoder     hms " in out and "FAIL ref_occ           ref_logit_left " in out


def test_nothing_compared_exits_nonzero(tmp_path, capsys):
    """A folder whose manifest lists no array and whose files are empty: nothing checked is a failure."""
    folder = _copy(tmp_path, ("manifest.json", "inputs.npz", "keys_kpts_ref.json"))
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"] = {"image_encoder.npz": []}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    np.savez(folder / "image_encoder.npz")
    assert main(["check-official", str(folder), "--networks", "image_encoder"]) == 1
    captured = capsys.readouterr()
    assert "checked 0 arrays" in captured.out and "nothing was compared" in captured.err


def test_missing_input_file_is_a_named_failure(tmp_path, capsys):
    folder = _copy(tmp_path)
    (folder / "inputs.npz").unlink()
    assert main(["check-official", str(folder), "--networks", "init_occ"]) == 1
    out = capsys.readouterr().out
    assert "cannot run" in out and "inputs.npz" in out
