"""Training: a smoke run of every stage shows learning; exact resume after SIGKILL; DDP (2 gloo processes)
equals one process; bad input gives errors that name it."""

from __future__ import annotations

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
import torch

from im2hands.train.config import preset

SRC = Path(__file__).resolve().parents[2] / "src"
ENV = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    from im2hands.cli import main

    out = tmp_path_factory.mktemp("train_data") / "synth"
    assert main(["synth", "--out", str(out), "--split", "train", "val", "--num", "8", "4", "--seed", "0",
                 "--points", "4000", "--iou-points", "1024", "--surface-points", "2048", "--gallery", "0",
                 "--no-progress"]) == 0
    return out


@pytest.fixture()
def threads():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def _run(args: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "im2hands", *args], env=ENV, capture_output=True, text=True,
                          timeout=600, **kw)


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


def test_smoke_every_stage_shows_learning(data, tmp_path, threads):
    """halo -> init-occ -> anchors -> ref-occ -> kpts-ref on the smoke preset; validation improves."""
    from im2hands.models.checkpoint import load_model
    from im2hands.models.ref_occ import RefOcc
    from im2hands.train.anchors import AnchorsConfig, precompute_anchors
    from im2hands.train.loop import train

    halo = train(replace(preset("smoke", "halo"), data=data, out=tmp_path / "halo", val_every=100))
    first, last = halo.history[0], halo.history[-1]
    assert first["step"] == 0 and last["step"] == 200
    assert last["iou"] > first["iou"] + 0.02, halo.history          # learning, not the all-inside start

    init = train(replace(preset("smoke", "init-occ"), data=data, out=tmp_path / "init", init_from=halo.best))
    # starts from the HALO decoders: not the untrained all-inside IoU, and it keeps it
    assert init.history[0]["iou"] > 0.5 * last["iou"], init.history
    assert np.isfinite(init.history[-1]["iou"])

    summary = precompute_anchors(AnchorsConfig(checkpoint=init.last, data=data, resolution_0=16, progress=False))
    assert summary.done == 12 and summary.cached == 0
    again = precompute_anchors(AnchorsConfig(checkpoint=init.last, data=data, resolution_0=16, progress=False))
    assert again.done == 0 and again.cached == 12                     # resumable: nothing redone
    with np.load(data / "anchors" / "default" / "train" / "000000.npz") as z:
        assert z["left"].shape == (512, 3) and z["right"].shape == (512, 3)
        assert np.abs(z["right"]).max() < 0.55                        # query frame, inside the box

    ref = train(replace(preset("smoke", "ref-occ"), data=data, out=tmp_path / "ref", init_from=init.last))
    assert isinstance(load_model(ref.last), RefOcc)
    assert all(np.isfinite(v) for v in ref.history[-1].values())
    # the frozen InitOcc inside RefOcc is the init-occ run's network
    assert ref.history[-1]["init_iou"] == pytest.approx(init.history[-1]["iou"], abs=0.05)

    kpts = train(replace(preset("smoke", "kpts-ref"), data=data, out=tmp_path / "kpts"))
    assert kpts.history[-1]["mpjpe_mm"] < kpts.history[0]["mpjpe_mm"], kpts.history
    for run in ("halo", "init", "ref", "kpts"):
        assert (tmp_path / run / "config.json").is_file() and list((tmp_path / run / "tb").iterdir())

    # ... -> evaluate: the trained checkpoints reconstruct and are scored (noisy keypoints, refined by KptsRef)
    import json

    from im2hands.cli import main

    assert main(["evaluate", "--checkpoint", str(ref.last), str(kpts.last), "--data", str(data), "--split", "val",
                 "--keypoints", "noisy", "--limit", "2", "--resolution", "8", "--upsampling-steps", "2",
                 "--metric-points", "4000", "--out", str(tmp_path / "eval"), "--no-progress"]) == 0
    summary = json.loads((tmp_path / "eval" / "evaluation.json").read_text())
    assert summary["samples"] == 2
    assert set(summary["reports"]) == {"initial", "refined"}
    kp = summary["keypoints_mpjpe_mm"]
    assert kp["used"]["right_mpjpe_wrist_mm"] != kp["input"]["right_mpjpe_wrist_mm"]   # KptsRef ran


def test_sigkill_then_resume_equals_uninterrupted(data, tmp_path):
    """A run killed with SIGKILL after a checkpoint and resumed ends with bit-identical weights."""
    common = ["train", "halo", "--preset", "smoke", "--data", str(data), "--steps", "40", "--checkpoint-every", "8",
              "--points-per-hand", "256"]
    ref = _run(common + ["--out", str(tmp_path / "full")])
    assert ref.returncode == 0, ref.stderr
    proc = subprocess.Popen([sys.executable, "-m", "im2hands", *common, "--out", str(tmp_path / "killed")],
                            env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = tmp_path / "killed" / "last.pt"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if ckpt.is_file():
            step = torch.load(ckpt, weights_only=True)["training"]["step"]
            if step >= 16:
                break
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = torch.load(ckpt, weights_only=True)["training"]["step"]
    assert 16 <= killed_at < 40
    res = _run(common + ["--out", str(tmp_path / "killed"), "--resume"])
    assert res.returncode == 0, res.stderr
    a, b = _weights(tmp_path / "full" / "last.pt"), _weights(ckpt)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k}: max diff {(a[k].float() - b[k].float()).abs().max()}"
    oa = torch.load(tmp_path / "full" / "last.pt", weights_only=True)["training"]["optimizer"]["state"]
    ob = torch.load(ckpt, weights_only=True)["training"]["optimizer"]["state"]
    for i in oa:
        assert torch.equal(oa[i]["exp_avg_sq"], ob[i]["exp_avg_sq"])


def test_two_gloo_processes_equal_one(data, tmp_path):
    """torchrun --nproc-per-node 2 (gloo, CPU) gives the weights of one process with the same global batch."""
    common = ["--preset", "smoke", "--data", str(data), "--steps", "6", "--batch-size", "4",
              "--points-per-hand", "256", "--disable-dropout", "--checkpoint-every", "0"]
    one = _run(["train", "halo", *common, "--out", str(tmp_path / "one")])
    assert one.returncode == 0, one.stderr
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port",
                          "29517", "-m", "im2hands", "train", "halo", *common, "--out", str(tmp_path / "two")],
                         env=ENV, capture_output=True, text=True, timeout=600)
    assert two.returncode == 0, two.stderr[-3000:]
    a, b = _weights(tmp_path / "one" / "last.pt"), _weights(tmp_path / "two" / "last.pt")
    for k in a:
        torch.testing.assert_close(b[k], a[k], atol=2e-5, rtol=1e-4, msg=lambda m, k=k: f"{k}: {m}")
    # only rank 0 wrote: one metrics line per step, not two
    lines = (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()
    assert sum('"loss"' in line for line in lines) == 6


def test_bad_input_errors_name_it(data, tmp_path, threads):
    from im2hands.train.loop import train

    empty = tmp_path / "empty"
    (empty / "train").mkdir(parents=True)
    with pytest.raises(ValueError, match="no .npz samples"):
        train(replace(preset("smoke", "halo"), data=empty, out=tmp_path / "r0"))
    with pytest.raises(ValueError, match="does not exist"):
        train(replace(preset("smoke", "halo"), data=data, out=tmp_path / "r1", val_split="test"))
    res = _run(["train", "halo", "--preset", "smoke", "--data", str(data), "--out", str(tmp_path / "r2"),
                "--no-such-field", "3"])
    assert res.returncode != 0 and "no-such-field" in (res.stderr + res.stdout)
    res = _run(["train", "halo", "--preset", "nope", "--data", str(data), "--out", str(tmp_path / "r3")])
    assert res.returncode == 2 and "unknown preset 'nope'" in res.stderr
    # a checkpoint of another stage: ref-occ needs an init-occ checkpoint, not a halo one
    halo = train(replace(preset("smoke", "halo"), data=data, out=tmp_path / "h", steps=2))
    with pytest.raises(ValueError, match="halo checkpoint"):
        train(replace(preset("smoke", "ref-occ"), data=data, out=tmp_path / "r4", init_from=halo.last, anchors="gt"))
    # resuming with another preset's settings
    with pytest.raises(ValueError, match="other settings"):
        train(replace(preset("smoke", "halo"), data=data, out=tmp_path / "h", steps=4, resume=True,
                      batch_size=4))


def test_corrupt_sample_mid_run_is_skipped_and_counted(data, tmp_path, threads):
    from im2hands.train.loop import train

    copy = tmp_path / "data"
    shutil.copytree(data / "train", copy / "train")
    shutil.copytree(data / "val", copy / "val")
    bad = copy / "train" / "000003.npz"
    bad.write_bytes(bad.read_bytes()[:1000])                       # truncated
    result = train(replace(preset("smoke", "halo"), data=copy, out=tmp_path / "run", steps=8, points_per_hand=128))
    assert result.step == 8
    assert result.skipped >= 1


def test_frozen_encoder_is_shared_and_kpts_features_cached(data, tmp_path, threads):
    """ref-occ and kpts-ref with --freeze-encoder keep init-occ's image encoder exactly (weights and batch-norm
    statistics), and kpts-ref still learns from the cached features."""
    from im2hands.train.loop import train

    small = dict(encoder_width=16, encoder_fmap_dim=32)
    init = train(replace(preset("smoke", "init-occ"), data=data, out=tmp_path / "init", steps=3, **small))
    enc = {k[len("image_encoder."):]: v for k, v in _weights(init.last).items() if k.startswith("image_encoder.")}
    assert any("running_mean" in k for k in enc)

    kpts = train(replace(preset("smoke", "kpts-ref"), data=data, out=tmp_path / "kpts", init_from=init.last,
                         freeze_encoder=True, kpts_img_dim=16, steps=30, **small))
    assert kpts.history[-1]["mpjpe_mm"] < kpts.history[0]["mpjpe_mm"], kpts.history
    ref = train(replace(preset("smoke", "ref-occ"), data=data, out=tmp_path / "ref", init_from=init.last,
                        anchors="gt", freeze_encoder=True, steps=3, **small))
    for run in (kpts, ref):
        got = _weights(run.last)
        for k, v in enc.items():
            assert torch.equal(got[f"image_encoder.{k}"], v), k
    with pytest.raises(ValueError, match="freeze_encoder: needs --init-from"):
        train(replace(preset("smoke", "kpts-ref"), data=data, out=tmp_path / "k2", freeze_encoder=True, **small))


def test_coord_init_scale_scales_only_the_coordinate_columns(data, tmp_path):
    from im2hands.train.stages import build_network, model_config

    cfg = preset("smoke", "halo")
    torch.manual_seed(0)
    plain = build_network(cfg, model_config(cfg))
    torch.manual_seed(0)
    scaled = build_network(replace(cfg, coord_init_scale=30.0), model_config(cfg))
    for side in ("left_decoder", "right_decoder"):
        for b in (0, 15):
            a = getattr(getattr(plain, side), f"lin{b}_0").weight
            s = getattr(getattr(scaled, side), f"lin{b}_0").weight
            torch.testing.assert_close(s[:, :3], 30.0 * a[:, :3])
            assert torch.equal(s[:, 3:], a[:, 3:])


def test_train_samples_and_anchor_limit_use_the_first_samples(data, tmp_path, threads):
    """--train-samples N trains on the first N samples; `train anchors --limit N` makes only theirs, and a
    ref-occ run on those N finds every anchor it needs."""
    from im2hands.train.anchors import AnchorsConfig, precompute_anchors
    from im2hands.train.loop import _dataset, train

    cfg = replace(preset("smoke", "ref-occ"), data=data, train_samples=3)
    assert [f.name for f in _dataset(cfg, "train", seed=0, points=8, limit=3).files] == \
        ["000000.npz", "000001.npz", "000002.npz"]
    small = dict(encoder_width=16, encoder_fmap_dim=32)
    init = train(replace(preset("smoke", "init-occ"), data=data, out=tmp_path / "init", steps=1, **small))
    summary = precompute_anchors(AnchorsConfig(checkpoint=init.last, data=data, name="first4", limit=4,
                                               resolution_0=8, progress=False))
    assert summary.done == 8                                     # 4 train + 4 val
    assert sorted(p.name for p in (data / "anchors" / "first4" / "train").glob("*.npz")) == \
        [f"{i:06d}.npz" for i in range(4)]
    ref = train(replace(preset("smoke", "ref-occ"), data=data, out=tmp_path / "ref", init_from=init.last,
                        anchors_dir=data / "anchors" / "first4", train_samples=4, steps=2, **small))
    assert ref.step == 2
    with pytest.raises(ValueError, match="lacks the anchors"):
        train(replace(preset("smoke", "ref-occ"), data=data, out=tmp_path / "ref2", init_from=init.last,
                      anchors_dir=data / "anchors" / "first4", steps=1, **small))


def test_compact_recipe_fields_refuse_bad_values(tmp_path):
    from im2hands.train.anchors import AnchorsConfig, precompute_anchors
    from im2hands.train.config import TrainConfig

    for field, value, message in (("coord_init_scale", 0.0, "coord_init_scale"),
                                  ("part_loss_weight", -1.0, "part_loss_weight"),
                                  ("pen_weight", float("nan"), "pen_weight"),
                                  ("train_samples", -1, "train_samples"),
                                  ("encoder_width", 0, "encoder_width")):
        with pytest.raises(ValueError, match=message):
            TrainConfig(**{field: value})
    for kw in (dict(stage="ref-occ", refine_residual=False), dict(stage="init-occ", refine_residual=True),
               dict(stage="ref-occ", refine_residual=True, official_quirks=True)):
        with pytest.raises(ValueError, match="contact_cue"):
            TrainConfig(contact_cue=True, **kw)
    TrainConfig(stage="ref-occ", refine_residual=True, contact_cue=True)
    for stage in ("ref-occ", "kpts-ref"):
        with pytest.raises(ValueError, match="image_loss_weight"):
            TrainConfig(stage=stage, image_loss_weight=1.0)
    with pytest.raises(ValueError, match="image_loss_weight"):
        TrainConfig(image_loss_weight=-1.0)
    with pytest.raises(ValueError, match="limit: expected an int >= 0"):
        precompute_anchors(AnchorsConfig(checkpoint=tmp_path / "none.pt", data=tmp_path, limit=-2))


def test_resampled_noise_is_new_per_draw_and_deterministic_per_key(data):
    from im2hands.data.dataset import HandsDataset
    from im2hands.data.synth.noise import DEFAULT_NOISE
    from im2hands.train.config import TrainConfig
    from im2hands.train.data import TrainItems

    ds = lambda: HandsDataset(data, "train", points_per_hand=64, anchors_per_hand=512)  # noqa: E731
    stored, fresh = TrainItems(ds()), TrainItems(ds(), resample_noise=True)
    a, b, again = fresh[(11, 3)], fresh[(12, 3)], fresh[(11, 3)]
    ref = stored[(11, 3)]
    errors = []
    for side in ("left", "right"):
        torch.testing.assert_close(a[side]["joints"], ref[side]["joints"])            # GT untouched
        torch.testing.assert_close(a[side]["points"], ref[side]["points"])            # draws untouched
        assert torch.equal(a[side]["noisy_joints"], again[side]["noisy_joints"])       # same key, same error
        assert not torch.allclose(a[side]["noisy_joints"], b[side]["noisy_joints"])    # new epoch, new error
        assert not torch.allclose(a[side]["noisy_joints"], ref[side]["noisy_joints"])
        errors.append((a[side]["noisy_joints"] - a[side]["joints"]).norm(dim=-1))
    # the error model's size: wrist lateral std 2.5 mm, depth 2x, so joints err by millimetres, not metres
    err = torch.cat(errors)
    assert 1e-3 < float(err.median()) < 4 * DEFAULT_NOISE.depth_ratio * max(DEFAULT_NOISE.lateral_std)
    # validation keys (no draw seed) keep the stored keypoints
    v = fresh.item(3, None)
    assert torch.equal(v["left"]["noisy_joints"], stored.item(3, None)["left"]["noisy_joints"])
    with pytest.raises(ValueError, match="resample_noise"):
        TrainConfig(stage="ref-occ", resample_noise=True)


def test_kpts_mpjpe_loss_is_the_mean_joint_distance():
    from types import SimpleNamespace

    from im2hands.models.kpts_ref import MID_MCP_HALO
    from im2hands.train import stages
    from im2hands.train.config import TrainConfig

    gt_l, gt_r = torch.zeros(1, 21, 3), torch.zeros(1, 21, 3)
    out_l, out_r = gt_l.clone(), gt_r.clone()
    out_l[0, 0] = torch.tensor([3.0, 4.0, 0.0])    # one joint 5 mm off -> 5/21 mm
    out_r[0, 7] = torch.tensor([0.0, 0.0, 2.0])
    out_r[0, 9] = torch.tensor([0.0, 6.0, 8.0])    # 2 + 10 mm -> 12/21 mm
    assert MID_MCP_HALO not in (0, 7, 9)
    orig = (stages.kpts_inputs, stages._kpts_forward)
    try:
        stages.kpts_inputs = lambda batch: (gt_l, gt_r, gt_l, gt_r)
        stages._kpts_forward = lambda *a: SimpleNamespace(left=out_l, right=out_r)
        got = stages.kpts_ref_loss(None, {}, TrainConfig(stage="kpts-ref", kpts_loss="mpjpe"), 1)
        mse = stages.kpts_ref_loss(None, {}, TrainConfig(stage="kpts-ref"), 1)
    finally:
        stages.kpts_inputs, stages._kpts_forward = orig
    assert float(got.parts["mpjpe_left_mm"]) == pytest.approx(5 / 21, abs=1e-3)   # + 1e-4 mm per exact joint (epsilon)
    assert float(got.parts["mpjpe_right_mm"]) == pytest.approx(12 / 21, abs=1e-3)
    assert float(mse.total) == pytest.approx(25 / 63 + (4 + 100) / 63, rel=1e-6)


def test_linear_path_fit_is_the_ridge_solution_and_lowers_the_error(data):
    from im2hands.models.encoder import ImageEncoderConfig
    from im2hands.models.kpts_ref import KptsRef, KptsRefConfig, network_keypoints
    from im2hands.train.stages import fit_linear_path

    files = sorted((data / "train").glob("*.npz"))
    cfg = KptsRefConfig(encoder=ImageEncoderConfig(depth=18, fmap_dim=16), img_dim=32, grid_dims=(16, 18),
                        grid_size=4, hand_centred=True, linear_path=True, dropout=0.0)
    model = KptsRef(cfg)
    report = fit_linear_path(model, files, draws=30, resample_noise=True, seed=0, ridge=1e-6)
    for side in ("left", "right"):   # least squares on its own rows: well below the input error
        assert report[f"fit_mpjpe_{side}_mm"] < 0.8 * report[f"input_mpjpe_{side}_mm"], report
    again = KptsRef(cfg)
    fit_linear_path(again, files, draws=30, resample_noise=True, seed=0, ridge=1e-6)
    assert torch.equal(again.left_linear.weight, model.left_linear.weight)      # seeded: deterministic
    # the stored draw alone: the normal equations' solution (numpy lstsq on the same rows)
    fit_linear_path(model, files, draws=1, resample_noise=False, seed=0, ridge=0.0)
    z = [np.load(f) for f in files]
    kin = network_keypoints(*(torch.from_numpy(np.stack([x[f"{s}_noisy_joints"] for x in z])).double()
                              for s in ("left", "right")))
    x = kin.right_mm - kin.right_mm[:, 4:5]
    a = torch.cat([(x / 100).flatten(1), torch.ones(len(x), 1, dtype=x.dtype)], 1)
    assert a.shape == (8, 64)      # fewer rows than unknowns: lstsq's minimum-norm solution fits exactly
    w = model.right_linear.weight.detach().double()
    b = model.right_linear.bias.detach().double()
    pred = (a[:, :63] @ w.T + b).view(8, 21, 3) * 100 + x
    from im2hands.models.kpts_ref import to_network_frame
    gt = to_network_frame(torch.from_numpy(np.stack([q["right_joints"] for q in z])).double(), kin.left_mid_joint)
    gt = gt - gt[:, 4:5]
    # the fitted map reproduces the GT on its rows (up to the middle MCP's offset, common to the hand)
    err = ((pred - pred[:, 4:5]) - gt).norm(dim=-1).mean()
    assert float(err) < 0.05, float(err)
    with pytest.raises(ValueError, match="linear path"):
        fit_linear_path(KptsRef(replace(cfg, linear_path=False)), files, draws=1, resample_noise=False, seed=0)


def test_halo_pretrains_the_image_encoder_for_init_occ(data, tmp_path, threads):
    """image_loss_weight in the halo stage trains the image encoder on the 2D labels beside the part decoders,
    which never read it (so they train exactly as without it), and init-occ starts from that encoder."""
    import json

    from im2hands.train.loop import train

    base = replace(preset("smoke", "halo"), data=data, steps=12, points_per_hand=256, checkpoint_every=12)
    plain = train(replace(base, out=tmp_path / "plain"))
    pre = train(replace(base, out=tmp_path / "pre", image_loss_weight=1.0))
    a, b = _weights(plain.last), _weights(pre.last)
    decoders = [k for k in a if k.startswith(("left_decoder.", "right_decoder."))]
    encoder = [k for k in a if k.startswith("image_encoder.") and a[k].is_floating_point()]
    assert decoders and encoder
    for k in decoders:
        torch.testing.assert_close(b[k], a[k], msg=k)
    # the plain run never touched its encoder; the pretraining one moved it and its 2D loss fell
    moved = [k for k in encoder if not torch.allclose(a[k], b[k])]
    assert len(moved) > len(encoder) // 2
    logged = [json.loads(line) for line in (tmp_path / "pre" / "metrics.jsonl").read_text().splitlines()]
    image = [r["image_mask_bce"] + r["image_heatmap"] for r in logged if "image_mask_bce" in r]
    assert len(image) == 12 and np.mean(image[-3:]) < 0.5 * np.mean(image[:3])

    # init-occ takes the pretrained encoder from such a halo run (and only the decoders from a plain one)
    init = replace(preset("smoke", "init-occ"), data=data, steps=1, points_per_hand=64, checkpoint_every=1,
                   optim=replace(preset("smoke", "init-occ").optim, lr=0.0))
    from_pre = _weights(train(replace(init, out=tmp_path / "i_pre", init_from=pre.last)).last)
    from_plain = _weights(train(replace(init, out=tmp_path / "i_plain", init_from=plain.last)).last)
    for k in encoder:
        if "running" not in k and "num_batches" not in k:   # lr 0: the weights are the starting ones
            torch.testing.assert_close(from_pre[k], b[k], msg=k)
    assert not all(torch.allclose(from_plain[k], b[k]) for k in encoder if "running" not in k)

    # a halo run continues a HALO (all its weights, encoder included) under its own schedule; not an InitOcc
    halo_again = replace(base, out=tmp_path / "h_again", steps=1, points_per_hand=64, checkpoint_every=1,
                         init_from=pre.last, optim=replace(base.optim, lr=0.0))
    cont = _weights(train(halo_again).last)
    for k in decoders + encoder:
        if "running" not in k and "num_batches" not in k:
            torch.testing.assert_close(cont[k], b[k], msg=k)
    with pytest.raises(ValueError, match="init-occ checkpoint; the halo stage continues a halo one"):
        train(replace(halo_again, out=tmp_path / "h_bad", init_from=tmp_path / "i_pre" / "last.pt"))
