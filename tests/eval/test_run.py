"""`im2hands evaluate` and `im2hands reconstruct` end to end on a tiny synthetic set with small networks:
outputs, identical results for any worker count, a corrupt sample counted (never fatal), bad input named."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from im2hands.cli import main
from im2hands.data import read_sample
from im2hands.models.checkpoint import save_checkpoint
from tests.helpers import make_synth, small_networks

SMALL = ["--resolution", "8", "--upsampling-steps", "2", "--no-progress"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("evalrun")
    data = make_synth(root / "data", num=1)
    # the random networks are calibrated on this sample: evaluate it twice (a second file, the same content)
    shutil.copy(data / "test" / "000000.npz", data / "test" / "000001.npz")
    sample = read_sample(data / "test" / "000000.npz")
    init, ref, kpts = small_networks(sample)
    for kind, net in (("init_occ", init), ("ref_occ", ref), ("kpts_ref", kpts)):
        save_checkpoint(root / "ckpt" / f"{kind}.ckpt", model=kind, config=net.config, state_dict=net.state_dict())
    return root, data, sample


def _evaluate(root, data, out, *extra):
    return main(["evaluate", "--checkpoint", str(root / "ckpt" / "init_occ.ckpt"), str(root / "ckpt" / "ref_occ.ckpt"),
                 "--data", str(data), "--out", str(out), "--metric-points", "4000", *SMALL, *extra])


def test_evaluate_writes_tables_and_is_independent_of_workers(setup, capsys):
    root, data, _ = setup
    assert _evaluate(root, data, root / "e1") == 0
    printed = capsys.readouterr().out
    assert "initial" in printed and "refined" in printed and "IoU" in printed
    for name in ("evaluation.json", "evaluation.md", "metrics_initial.json", "metrics_initial.md",
                 "metrics_refined.json", "metrics_refined.md"):
        assert (root / "e1" / name).is_file(), name
    summary = json.loads((root / "e1" / "evaluation.json").read_text())
    assert summary["samples"] == 2 and summary["failed"] == 0
    # the result names the exact weights behind it
    import hashlib
    files = [root / "ckpt" / "init_occ.ckpt", root / "ckpt" / "ref_occ.ckpt"]
    assert summary["checkpoints"] == [{"path": str(f), "sha256": hashlib.sha256(f.read_bytes()).hexdigest()}
                                      for f in files]
    pair = summary["reports"]["refined"]["samples"][0]["pair"]
    assert "contact_iou" in pair and "contact IoU" in printed
    assert _evaluate(root, data, root / "e2", "--workers", "2") == 0
    for stage in ("initial", "refined"):
        a = (root / "e1" / f"metrics_{stage}.json").read_text()
        b = (root / "e2" / f"metrics_{stage}.json").read_text()
        assert a == b


def test_corrupt_sample_is_counted_not_fatal(setup, tmp_path, capsys):
    root, data, _ = setup
    copy = tmp_path / "data"
    shutil.copytree(data, copy)
    (copy / "test" / "000001.npz").write_bytes(b"broken")
    assert _evaluate(root, copy, tmp_path / "out", "--stages", "initial") == 0
    summary = json.loads((tmp_path / "out" / "evaluation.json").read_text())
    assert summary["samples"] == 2 and summary["failed"] == 1
    assert "000001" in capsys.readouterr().out


def test_evaluate_bad_input_is_named(setup, tmp_path, capsys):
    root, data, _ = setup
    assert main(["evaluate", "--checkpoint", str(root / "ckpt"), "--data", str(data), "--split", "val",
                 "--out", str(tmp_path / "o"), *SMALL]) == 2
    assert "split" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
    (tmp_path / "junk.ckpt").write_bytes(b"junk")
    assert main(["evaluate", "--checkpoint", str(tmp_path / "junk.ckpt"), "--data", str(data),
                 "--out", str(tmp_path / "o"), *SMALL]) == 2
    assert "junk.ckpt" in capsys.readouterr().err


def _write_inputs(folder, sample, name="a"):
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(sample["image"])).save(folder / f"{name}.png")
    kp = {"order": "internal", "right": np.asarray(sample["right_joints"]).tolist(),
          "left": np.asarray(sample["left_joints"]).tolist()}
    (folder / f"{name}.keypoints.json").write_text(json.dumps(kp))
    (folder / f"{name}.camera.json").write_text(json.dumps({"K": np.asarray(sample["camera_K"]).tolist()}))


def test_reconstruct_one_image_and_a_folder(setup, tmp_path, capsys):
    root, _, sample = setup
    _write_inputs(tmp_path / "in", sample, "a")
    _write_inputs(tmp_path / "in", sample, "b")
    assert main(["reconstruct", "--image", str(tmp_path / "in" / "a.png"), "--keypoints",
                 str(tmp_path / "in" / "a.keypoints.json"), "--camera", str(tmp_path / "in" / "a.camera.json"),
                 "--checkpoint", str(root / "ckpt"), "--out", str(tmp_path / "one"), *SMALL]) == 0
    names = {p.name for p in (tmp_path / "one").iterdir()}
    assert {"initial_right.ply", "initial_left.ply", "refined_right.ply", "refined_left.ply", "result.json"} <= names
    info = json.loads((tmp_path / "one" / "result.json").read_text())
    assert set(info["timings_s"]) >= {"crop", "keypoints", "initial", "refined", "total"}
    assert main(["reconstruct", "--inputs", str(tmp_path / "in"), "--checkpoint", str(root / "ckpt"),
                 "--out", str(tmp_path / "many"), "--stages", "initial", "--format", "obj", *SMALL]) == 0
    assert (tmp_path / "many" / "a" / "initial_left.obj").is_file()
    assert (tmp_path / "many" / "b" / "initial_right.obj").is_file()
    # pictures: per input the crop and each stage's meshes over it; one contact sheet for the folder
    overlay = np.asarray(Image.open(tmp_path / "many" / "a" / "overlay.png"))
    assert overlay.shape == (256, 512, 3)
    assert np.abs(overlay[:, 256:].astype(int) - overlay[:, :256].astype(int)).max() > 50   # meshes drawn
    sheet = np.asarray(Image.open(tmp_path / "many" / "contact_sheet.png"))
    assert sheet.shape[0] == 2 * (256 + 4)


def test_reconstruct_bad_input_is_named(setup, tmp_path, capsys):
    root, _, sample = setup
    _write_inputs(tmp_path / "in", sample, "a")
    (tmp_path / "in" / "a.keypoints.json").write_text("{not json")
    assert main(["reconstruct", "--image", str(tmp_path / "in" / "a.png"), "--keypoints",
                 str(tmp_path / "in" / "a.keypoints.json"), "--camera", str(tmp_path / "in" / "a.camera.json"),
                 "--checkpoint", str(root / "ckpt"), "--out", str(tmp_path / "o"), *SMALL]) == 2
    assert "a.keypoints.json" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
    assert main(["reconstruct", "--image", str(tmp_path / "in" / "a.png"), "--checkpoint", str(root / "ckpt"),
                 "--out", str(tmp_path / "o"), *SMALL]) == 2
    assert "--keypoints" in capsys.readouterr().err


def test_ground_truth_keypoints_are_refined_only_when_asked(setup, tmp_path):
    """With a kpts_ref network loaded, --keypoints gt scores the exact keypoints (auto does not refine them);
    --refine-keypoints yes runs the refinement on them, noisy keypoints are refined by default."""
    root, data, _ = setup
    ckpts = [str(root / "ckpt" / "init_occ.ckpt"), str(root / "ckpt" / "kpts_ref.ckpt")]

    def used_mpjpe(out, *extra):
        assert main(["evaluate", "--checkpoint", *ckpts, "--data", str(data), "--out", str(tmp_path / out),
                     "--stages", "initial", "--metric-points", "2000", "--limit", "1", *SMALL, *extra]) == 0
        report = json.loads((tmp_path / out / "evaluation.json").read_text())["keypoints_mpjpe_mm"]
        return {k: report[k]["right_mpjpe_mm"] + report[k]["left_mpjpe_mm"] for k in ("input", "used")}

    auto = used_mpjpe("auto")
    asked = used_mpjpe("asked", "--refine-keypoints", "yes")
    noisy = used_mpjpe("noisy", "--keypoints", "noisy")
    assert auto == {"input": 0, "used": 0}
    assert asked["input"] == 0 and asked["used"] > 0
    assert noisy["input"] > 0 and noisy["used"] != noisy["input"]
