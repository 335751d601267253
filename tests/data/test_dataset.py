"""HandsDataset over generated samples, and the `im2hands synth` command."""


import numpy as np
import pytest
import torch

from im2hands.data import read_sample
from im2hands.data.dataset import IMAGENET_MEAN, IMAGENET_STD, HandsDataset
from im2hands.data.synth.generate import SynthConfig, generate
from im2hands.data.synth.occupancy import OccupancyConfig

SCENE = "im2hands.data.synth.scene"


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    out = tmp_path_factory.mktemp("ds")
    occ = OccupancyConfig(num_points=1000, num_iou_points=300, num_surface_points=400)
    generate(SynthConfig(out=out, num=2, split="val", seed=3, occupancy=occ, gallery=0, progress=False,
                         scene_module=SCENE))
    return out


def test_item_contents(root):
    ds = HandsDataset(root, "val", points_per_hand=512, anchors_per_hand=128)
    assert len(ds) == 2
    item = ds[1]
    s = read_sample(root / "val" / "000001.npz")
    assert item["image"].shape == (3, 256, 256) and item["image"].dtype == torch.float32
    pixel = (s["image"][10, 20] / 255.0 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    np.testing.assert_allclose(item["image"][:, 10, 20].numpy(), pixel, atol=1e-6)
    for side in ("right", "left"):
        h = item[side]
        assert h["unpose"].shape == (16, 4, 4) and h["unpose"].dtype == torch.float64
        assert h["points"].shape == (512, 3) and h["occupancy"].shape == (512,)
        assert h["anchors"].shape == (128, 3)
        # every drawn point is a stored point and carries its stored label
        stored = {tuple(p): o for p, o in zip(s[f"{side}_points"].tolist(), s[f"{side}_occupancy"].tolist())}
        for p, o in zip(h["points"].tolist(), h["occupancy"].tolist()):
            assert stored[tuple(p)] == bool(o)
        # the root is the wrist in the world frame, true axes (the file stores the left one x-mirrored)
        R, T = s["camera_R"], s["camera_T"]
        wrist_world = R.T @ (s[f"{side}_joints"][0].astype(np.float64) - T)
        np.testing.assert_allclose(h["root"].numpy(), wrist_world, atol=1e-5)
        sign = np.array([-1.0, 1.0, 1.0]) if side == "left" else np.ones(3)
        np.testing.assert_array_equal(h["root"].numpy(), s[f"{side}_root_xyz"] * sign.astype(np.float32))


def test_seeded_draws_and_noisy_transforms(root):
    a = HandsDataset(root, "val", points_per_hand=64, seed=5)[0]
    b = HandsDataset(root, "val", points_per_hand=64, seed=5)[0]
    torch.testing.assert_close(a["right"]["points"], b["right"]["points"])
    noisy = HandsDataset(root, "val", points_per_hand=64, seed=5, transforms_from="noisy")[0]
    assert not torch.equal(noisy["right"]["unpose"], a["right"]["unpose"])
    torch.testing.assert_close(noisy["right"]["points"], a["right"]["points"])  # labels stay GT


def test_points_in_the_input_keypoints_frame_are_the_same_physical_points(root):
    """points_frame='input' with noisy transforms: every query-space array, mapped to the camera through the
    noisy keypoints' frame, lands where the GT-frame array lands through the GT frame; labels unchanged. The
    official GT-frame points read through the noisy frame land elsewhere."""
    from im2hands.hand.frames import query_to_camera

    kw = dict(points_per_hand=64, anchors_per_hand=32, seed=5)
    gt = HandsDataset(root, "val", **kw)[1]
    moved = HandsDataset(root, "val", transforms_from="noisy", points_frame="input", **kw)[1]
    official = HandsDataset(root, "val", transforms_from="noisy", **kw)[1]
    assert HandsDataset(root, "val", points_frame="input", **kw)[1]["left"]["points"].equal(gt["left"]["points"])
    R, T = moved["camera_R"][None], moved["camera_T"][None]
    for side in ("right", "left"):
        g, m, o = gt[side], moved[side], official[side]
        torch.testing.assert_close(m["occupancy"], g["occupancy"], rtol=0, atol=0)
        torch.testing.assert_close(m["unpose"], o["unpose"], rtol=0, atol=0)   # the noisy transforms
        for key in ("points", "points_iou", "surface_points", "anchors"):
            want = g[key].double() @ g["query_to_cam"][:3, :3].double().T + g["query_to_cam"][:3, 3].double()
            got = query_to_camera(m[key][None], m["root"][None], m["root_rot_mat"][None], side, R, T)[0]
            torch.testing.assert_close(got.double(), want, rtol=0, atol=2e-6)        # metres
            q2c = m["query_to_cam"].double()
            torch.testing.assert_close(m[key].double() @ q2c[:3, :3].T + q2c[:3, 3], want, rtol=0, atol=2e-6)
        # normals: still unit, and the same directions in the camera frame
        n_gt = g["surface_normals"].double() @ g["query_to_cam"][:3, :3].double().T
        n_m = m["surface_normals"].double() @ m["query_to_cam"][:3, :3].double().T
        torch.testing.assert_close(n_m / n_m.norm(dim=-1, keepdim=True), n_gt / n_gt.norm(dim=-1, keepdim=True),
                                   rtol=0, atol=1e-3)
        off = query_to_camera(o["points"][None].float(), o["root"][None], o["root_rot_mat"][None], side, R, T)[0]
        want = g["points"].double() @ g["query_to_cam"][:3, :3].double().T + g["query_to_cam"][:3, 3].double()
        assert (off.double() - want).norm(dim=-1).max() > 1e-3    # the official GT-frame points: > 1 mm off
    with pytest.raises(ValueError, match="points_frame"):
        HandsDataset(root, "val", points_frame="noisy")


def test_dataloader_batches(root):
    loader = torch.utils.data.DataLoader(HandsDataset(root, "val", points_per_hand=32), batch_size=2)
    batch = next(iter(loader))
    assert batch["right"]["points"].shape == (2, 32, 3) and batch["camera_K"].shape == (2, 3, 3)


def test_bad_arguments(root, tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        HandsDataset(root, "train")
    with pytest.raises(ValueError, match="points_per_hand"):
        HandsDataset(root, "val", points_per_hand=0)
    with pytest.raises(ValueError, match="transforms_from"):
        HandsDataset(root, "val", transforms_from="pred")


def test_corrupt_sample_error_names_file(root, tmp_path):
    (tmp_path / "val").mkdir()
    bad = tmp_path / "val" / "000000.npz"
    bad.write_bytes((root / "val" / "000000.npz").read_bytes()[:3000])
    with pytest.raises(ValueError, match="000000.npz"):
        HandsDataset(tmp_path, "val")[0]


def test_cli_synth(tmp_path, capsys):
    from im2hands.cli import main

    rc = main(["synth", "--out", str(tmp_path), "--num", "2", "1", "--split", "train", "test", "--points", "500",
               "--iou-points", "100", "--surface-points", "100", "--gallery", "2", "--no-progress"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "split train: 2 samples" in out and "split test: 1 samples" in out
    assert sorted(p.name for p in (tmp_path / "train").glob("*.npz")) == ["000000.npz", "000001.npz"]
    assert read_sample(tmp_path / "test" / "000000.npz")["right_points"].shape == (500, 3)
    assert (tmp_path / "gallery.png").exists()
    assert main(["synth", "--out", str(tmp_path), "--num", "2", "--split", "train", "test"]) == 2
    assert "one count per --split" in capsys.readouterr().err


def test_a_batch_feeds_init_occ_and_ref_occ_without_conversion(root):
    """Dataset items speak the networks' types: metres, true world axes, query frames, camera K/R/T."""
    from torch.utils.data import DataLoader

    from im2hands.hand.camera import Camera
    from im2hands.models.encoder import ImageEncoderConfig
    from im2hands.models.init_occ import HandInputs, InitOcc, InitOccConfig
    from im2hands.models.ref_occ import RefOcc, RefOccConfig

    ds = HandsDataset(root, "val", points_per_hand=64, anchors_per_hand=512, seed=0)
    batch = next(iter(DataLoader(ds, batch_size=2)))
    camera = Camera(K=batch["camera_K"], R=batch["camera_R"], T=batch["camera_T"])
    hands = {s: HandInputs(unpose=batch[s]["unpose"], bone_lengths=batch[s]["bone_lengths"],
                           root_rot_mat=batch[s]["root_rot_mat"], root=batch[s]["root"]) for s in ("left", "right")}
    small = ImageEncoderConfig(depth=18)
    torch.manual_seed(0)
    init = InitOcc(InitOccConfig(image_encoder=small)).eval()
    ref = RefOcc(RefOccConfig(image_encoder=small, init_occ=InitOccConfig(image_encoder=small))).eval()
    with torch.no_grad():
        enc = init.encode(batch["image"], camera)
        occ = {s: init.decode(enc, hands[s], batch[s]["points"], s).occupancy for s in ("left", "right")}
        renc = ref.encode(batch["image"], camera, hands["left"], hands["right"], batch["left"]["anchors"],
                          batch["right"]["anchors"])
        out = ref.decode(renc, batch["left"]["points"], batch["right"]["points"])
    for s in ("left", "right"):
        assert occ[s].shape == (2, 64) and torch.isfinite(occ[s]).all()
        assert getattr(out, s).occupancy.shape == (2, 64) and torch.isfinite(getattr(out, s).logit).all()
    # the anchors land on the hand: their projections are the GT joints' neighbourhood in the crop
    uv = camera.project(camera.centre_world.new_zeros(2, 1, 3) + hands["right"].root.double().unsqueeze(1))
    joints_uv = batch["right"]["joints"][:, :1].double() @ batch["camera_K"].double().transpose(1, 2)
    torch.testing.assert_close(uv, joints_uv[..., :2] / joints_uv[..., 2:], atol=1e-2, rtol=0)
    cam = hands["left"].to_camera(batch["left"]["anchors"], "left", camera)
    assert (cam[..., 2] > 0).all()
