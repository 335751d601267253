"""`im2hands prepare interhand` end to end on a tiny fixture in the official layouts (tests/data/interhand/fixture.py).

One module-scoped run prepares the fixture; the tests check it against the fixture's own truth: the skip
counts, joints on the rendered hands, the crop, occupancy labels against independently posed meshes, the
Dataset and the evaluation metrics on the prepared samples, predicted keypoints, shards, and resume after
SIGKILL.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from im2hands.data import read_sample
from im2hands.data.interhand.predicted import predicted_path, write_predicted
from im2hands.data.interhand.prepare import PrepareConfig, load_posable_hands, prepare, sample_path
from im2hands.data.interhand.select import SelectionConfig, select_frames
from im2hands.data.synth.occupancy import OccupancyConfig
from im2hands.hand.skeleton import INTERHAND_HAND_FROM_INTERNAL, SIDES
from tests.data.interhand import fixture as F

REPO = Path(__file__).resolve().parents[3]
SMALL = OccupancyConfig(num_points=3000, num_iou_points=1000, num_surface_points=1000)
NON_TIPS = [j for j in range(21) if j not in (4, 8, 12, 16, 20)]


@pytest.fixture(scope="module")
def ih(tmp_path_factory):
    base = tmp_path_factory.mktemp("interhand")
    mano = F.write_open_wrist_mano(base / "mano")
    info = F.write_interhand_fixture(base / "IH", mano)
    config = PrepareConfig(root=base / "IH", mano_dir=mano, split="test", out=base / "out", occupancy=SMALL,
                           progress=False)
    summary = prepare(config)
    return {"base": base, "mano": mano, "info": info, "config": config, "summary": summary}


def _samples(ih) -> list[Path]:
    return sorted((ih["config"].out / "test").glob("*.npz"))


def test_selection_and_skip_counts(ih):
    s = ih["summary"]
    assert s.selection_skipped == F.SELECTION_SKIPS
    assert s.selected == 2 * len(F.SELECTED_FRAMES)
    assert s.prepare_skipped == F.PREPARE_SKIPS
    assert s.samples == s.made_now == 4
    lines = (ih["config"].out / "test" / "skipped-0-of-1.jsonl").read_text().splitlines()
    assert sorted(json.loads(x)["reason"] for x in lines) == ["dark image", "image missing"]
    # options: the wrists rule drops frame 106 (left wrist invalid); "all" hand types let frame 118 through
    # the type rule, where its null left hand stops it
    root = ih["base"] / "IH"
    wrists = select_frames(root, "test", SelectionConfig(require_joints="wrists"))
    assert wrists.skipped["invalid joints"] == 2 and len(wrists) == 4
    every = select_frames(root, "test", SelectionConfig(hand_types="all"))
    assert every.skipped == {"MANO missing for a hand": 4, "hand type not valid": 2, "no MANO entry": 2}
    id_file = ih["base"] / "human.txt"
    id_file.write_text("0\n1\n")
    human = select_frames(root, "test", SelectionConfig(subset="human", human_annot_ids=id_file))
    assert list(human.annot_id) == [0, 1]


def test_trap_fields_are_read(ih):
    """int vs str ids, nested joint_valid, [1, 1, 1] placeholders: the annotated joints match the MANO joints
    wherever they are valid (the fixture's annotations are the MANO joints in mm)."""
    assert ih["summary"].annotated_joint_error_mm < 1e-3
    sel = select_frames(ih["base"] / "IH", "test")
    rec = sel.record(2)  # frame 106: joints 0, 5 and 41 invalid
    assert rec.frame_idx == 106 and rec.cam == int(F.CAMS[0]) and rec.capture == F.CAPTURE
    assert not rec.joint_valid[[0, 5, 41]].any() and rec.joint_valid.sum() == 39
    np.testing.assert_array_equal(rec.joints_world_mm[41], [1.0, 1.0, 1.0])


def test_projected_joints_land_on_the_rendered_hands(ih):
    """The fixture's images were rendered from the MANO fits through the official cameras; the sample's joints,
    projected with the crop's K, must fall on the hand pixels of the cropped image and of the sample's mask."""
    bg = np.array(F.BACKGROUND, dtype=np.int64)
    for path in _samples(ih):
        s = read_sample(path)
        for value, side in ((1, "right"), (2, "left")):
            uv = np.rint(s[f"{side}_joints_2d"][NON_TIPS]).astype(int)
            assert ((uv >= 0) & (uv < 256)).all()
            on_mask = s["mask"][uv[:, 1], uv[:, 0]] > 0
            assert on_mask.mean() >= 0.9, (path.name, side, on_mask)
            pixels = s["image"][uv[:, 1], uv[:, 0]].astype(np.int64)
            visible = (pixels.sum(1) > 30)  # inside the image (camera 2 sees part of the hands past its edge)
            on_hand = (np.abs(pixels - bg).max(1) > 30)[visible]
            assert visible.sum() >= 5 and on_hand.mean() >= 0.9, (path.name, side, pixels)


def test_crop_contains_both_hands(ih):
    for path in _samples(ih):
        s = read_sample(path, keys=("camera_K", "right_vertices", "left_vertices", "mask"))
        uv = np.concatenate([s[f"{side}_vertices"] for side in SIDES]) @ s["camera_K"].T
        uv = uv[:, :2] / uv[:, 2:]
        assert (uv > -0.5).all() and (uv < 255.5).all()
        assert abs((uv.max(0) - uv.min(0)).max() - 0.8 * 256) < 0.5  # IntagHand's ratio 0.8
        assert (s["mask"] == 1).any() and (s["mask"] == 2).any()


def test_occupancy_labels_match_the_posed_meshes(ih):
    """Re-pose each hand from the sample's own MANO parameters with a separately built layer, check the stored
    mesh, then label the stored points by ray parity (trimesh) instead of the preparer's winding numbers."""
    import torch
    import trimesh

    from im2hands.hand.mano import ManoLayer

    layers = {side: ManoLayer(ih["mano"], side, dtype=torch.float64) for side in SIDES}
    s = read_sample(_samples(ih)[0])
    for side in SIDES:
        g = lambda k: torch.from_numpy(np.asarray(s[f"{side}_{k}"], dtype=np.float64))[None]  # noqa: E731
        out = layers[side](global_orient=g("global_orient"), hand_pose=g("hand_pose"), betas=g("betas"),
                           transl=g("transl"))
        v = out.vertices[0].numpy() @ s["camera_R"].T + s["camera_T"]
        stored = s[f"{side}_vertices"]
        np.testing.assert_allclose(stored[:len(v)], v, atol=1e-6)
        np.testing.assert_allclose(s[f"{side}_joints"], out.joints[0].numpy() @ s["camera_R"].T + s["camera_T"], atol=1e-6)
        mesh = trimesh.Trimesh(stored, s[f"{side}_faces"], process=False)
        assert mesh.is_watertight and mesh.is_winding_consistent and mesh.volume > 0
        q2c = s[f"{side}_query_to_cam"]
        for pts, occ in (("points", "occupancy"), ("points_iou", "occupancy_iou")):
            cam = s[f"{side}_{pts}"].astype(np.float64) @ q2c[:3, :3].T + q2c[:3, 3]
            expected = mesh.contains(cam)
            assert (expected == s[f"{side}_{occ}"]).mean() > 0.995, (side, pts)
            assert s[f"{side}_{occ}"].any()


def test_left_shapedirs_fix_is_detected_or_forced(ih):
    assert load_posable_hands(ih["mano"])["left"].layer.left_shapedirs_fixed
    assert not load_posable_hands(ih["mano"], "no")["left"].layer.left_shapedirs_fixed


def test_dataset_and_evaluation_run_on_prepared_samples(ih):
    from im2hands.data.dataset import HandsDataset
    from im2hands.eval.metrics import EvalConfig, evaluate_sample, gt_from_sample

    for mode in ("gt", "noisy"):
        ds = HandsDataset(ih["config"].out, "test", points_per_hand=64, transforms_from=mode, seed=0)
        item = ds[0]
        assert len(ds) == 4 and item["image"].shape == (3, 256, 256) and item["right"]["points"].shape == (64, 3)
    gt = gt_from_sample(read_sample(_samples(ih)[0]))
    m = evaluate_sample(gt, gt, config=EvalConfig(iou_points=4000, chamfer_points=2000, penetration_points=2000))
    assert m.right.iou > 0.99 and m.left.chamfer_l1_mm < 4.0 and m.right.mpjpe_mm < 1e-6  # 2000 points: ~2 mm sampling gap


def test_predicted_keypoints_are_stored_as_input_keypoints(ih, tmp_path):
    """Two formats: InterHand order in mm in the camera frame, and internal order root-relative in metres."""
    ref = read_sample(_samples(ih)[0])
    ref1 = read_sample(_samples(ih)[1])
    pred_dir = tmp_path / "pred"
    rng = np.random.default_rng(0)
    noisy = {s: ref[f"{s}_joints"].astype(np.float64) + rng.normal(0, 0.005, (21, 3)) for s in SIDES}
    sel = select_frames(ih["base"] / "IH", "test")
    write_predicted(predicted_path(pred_dir, sel.file_name[0]),
                    {s: noisy[s][list(INTERHAND_HAND_FROM_INTERNAL)] * 1000 for s in SIDES},
                    joint_order="interhand", units="mm")
    shifted = {s: ref1[f"{s}_joints"].astype(np.float64) + np.array([0.3, -0.2, 1.0]) for s in SIDES}
    write_predicted(predicted_path(pred_dir, sel.file_name[1]), shifted, frame="root-relative")
    config = replace(ih["config"], out=tmp_path / "out", pred_keypoints=pred_dir, limit=3)
    summary = prepare(config)
    assert summary.prepare_skipped == {"no predicted keypoints": 1} and summary.samples == 2
    s0, s1 = read_sample(sample_path(config.out, "test", 0)), read_sample(sample_path(config.out, "test", 1))
    for side in SIDES:
        np.testing.assert_allclose(s0[f"{side}_noisy_joints"], noisy[side], atol=1e-6)
        assert 0.003 < s0[f"{side}_noisy_mpjpe"] < 0.015
        np.testing.assert_allclose(s1[f"{side}_noisy_joints"], ref1[f"{side}_joints"], atol=1e-6)
        np.testing.assert_array_equal(s0[f"{side}_points"], ref[f"{side}_points"])  # GT-frame labels unchanged


def test_shards_are_disjoint_and_give_the_same_files(ih, tmp_path):
    out = tmp_path / "sharded"
    for k in range(2):
        prepare(replace(ih["config"], out=out, shard=(k, 2)))
    names = sorted(p.name for p in (out / "test").glob("*.npz"))
    assert names == [p.name for p in _samples(ih)]
    for name in names:
        assert (out / "test" / name).read_bytes() == (ih["config"].out / "test" / name).read_bytes()
    assert {p.name for p in (out / "test").glob("summary-*.json")} == {"summary-0-of-2.json", "summary-1-of-2.json"}


def test_resume_after_sigkill(ih, tmp_path):
    """Kill a two-worker run once a sample exists, truncate a finished sample, rerun: every sample is made once
    more where needed and equals the uninterrupted run's."""
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "im2hands", "prepare", "interhand", "--root", str(ih["base"] / "IH"), "--mano",
           str(ih["mano"]), "--split", "test", "--out", str(out), "--points", str(SMALL.num_points), "--iou-points",
           str(SMALL.num_iou_points), "--surface-points", str(SMALL.num_surface_points), "--workers", "2",
           "--no-progress"]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO / "src"), str(REPO)]))
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list((out / "test").glob("*.npz")) and proc.poll() is None:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the run and its workers, as an out-of-memory kill or a pre-emption would
    proc.wait()
    done = sorted((out / "test").glob("*.npz"))
    assert done, "the run was killed before it wrote a sample"
    data = done[0].read_bytes()
    done[0].write_bytes(data[: len(data) // 2])  # a file corrupted after the fact is detected and redone
    summary = prepare(replace(ih["config"], out=out))
    assert summary.redone_corrupt == 1 and summary.samples == 4 and summary.reused + summary.made_now + 2 == 6
    assert not list((out / "test").glob(".*.tmp"))
    for path in _samples(ih):
        assert (out / "test" / path.name).read_bytes() == path.read_bytes()


def test_resume_refuses_other_arguments(ih, tmp_path):
    out = tmp_path / "again"
    shutil.copytree(ih["config"].out, out)
    with pytest.raises(ValueError, match="other arguments"):
        prepare(replace(ih["config"], out=out, seed=1))
    summary = prepare(replace(ih["config"], out=out))
    assert summary.made_now == 0 and summary.reused == 4 and summary.samples == 4  # the 2 skipped are retried


def test_bad_inputs_are_named(ih, tmp_path):
    with pytest.raises(FileNotFoundError, match="InterHand2.6M_val_data.json"):
        select_frames(ih["base"] / "IH", "val")
    bad = tmp_path / "IH"
    shutil.copytree(ih["base"] / "IH" / "annotations", bad / "annotations")
    (bad / "images" / "test").mkdir(parents=True)
    (bad / "annotations" / "skeleton.txt").write_text("r_wrist 0 -1\n")
    with pytest.raises(ValueError, match="skeleton"):
        select_frames(bad, "test")


def test_evaluate_command_on_prepared_samples(ih, tmp_path):
    """`im2hands evaluate` on prepared InterHand2.6M samples, with GT and with the input (predicted) keypoints."""
    from im2hands.cli import main
    from im2hands.models.checkpoint import save_checkpoint
    from tests.helpers import small_networks

    init, ref, _ = small_networks(read_sample(_samples(ih)[0]))
    for kind, net in (("init_occ", init), ("ref_occ", ref)):
        save_checkpoint(tmp_path / "ckpt" / f"{kind}.ckpt", model=kind, config=net.config, state_dict=net.state_dict())
    for keypoints in ("gt", "predicted"):
        out = tmp_path / f"eval_{keypoints}"
        assert main(["evaluate", "--checkpoint", str(tmp_path / "ckpt"), "--data", str(ih["config"].out),
                     "--split", "test", "--keypoints", keypoints, "--resolution", "8", "--upsampling-steps", "2",
                     "--metric-points", "3000", "--out", str(out), "--no-progress"]) == 0
        summary = json.loads((out / "evaluation.json").read_text())
        assert summary["samples"] == 4
        rows = {r["metric"] for r in summary["reports"]["initial"]["hands"]}
        assert {"iou", "chamfer_l1_mm", "mpjpe_mm", "mpjpe_wrist_mm"} <= rows
