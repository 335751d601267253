"""The ``im2hands demo`` command: the shipped samples and a user's input through a stand-in model (small random
networks in a bundle) on a small lattice: every output, the metrics' keys, both hands' colours in the pictures,
and clear errors."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from im2hands.cli import main
from im2hands.demo import DEMO_DIR, shipped_inputs, viewer_available
from im2hands.models.bundle import save_bundle
from im2hands.models.checkpoint import Checkpoint, config_to_dict
from tests.helpers import demo_sample, small_networks

SMALL = ["--resolution", "8", "--upsampling-steps", "1", "--metric-points", "5000"]
SAMPLES = ("clasp", "cross", "touch")
STAGE_FILES = [f"{stage}_{side}.ply" for stage in ("initial", "refined") for side in ("right", "left")]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    """A stand-in for the shipped model: small random networks whose fields have surfaces on the clasp sample."""
    _, ref, kpts = small_networks(demo_sample(DEMO_DIR / "clasp"), shared_encoder=True)
    path = tmp_path_factory.mktemp("model") / "standin.pt"
    save_bundle(path, {kind: Checkpoint(kind, config_to_dict(net.config), net.state_dict())
                       for kind, net in (("ref_occ", ref), ("kpts_ref", kpts))})
    return path


@pytest.fixture(scope="module")
def shipped_run(bundle, tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main(["demo", "--out", str(out), "--model", str(bundle), *SMALL])
    return code, out, buf.getvalue()


def _hand_colour_shares(picture: np.ndarray, background: np.ndarray) -> tuple[float, float]:
    """Shares of pixels pushed towards the right hand's red and the left hand's blue against `background`."""
    d = picture.astype(int) - background.astype(int)
    red = ((d[..., 0] - d[..., 2]) > 40).mean()
    blue = ((d[..., 2] - d[..., 0]) > 40).mean()
    return float(red), float(blue)


def _png(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def test_shipped_samples_are_small_and_complete():
    names = [i.name for i in shipped_inputs()]
    assert names == sorted(SAMPLES)
    size = sum(f.stat().st_size for f in DEMO_DIR.rglob("*") if f.is_file())
    assert size < 1_000_000
    kinds = {json.loads((DEMO_DIR / n / "info.json").read_text())["kind"] for n in names}
    assert kinds == {"clasp", "cross", "touch"}
    clasp = json.loads((DEMO_DIR / "clasp" / "info.json").read_text())
    assert max(clasp["occluded_fraction"].values()) > 0.5     # the hard case: a hand mostly hidden


def test_demo_writes_every_output_for_each_shipped_sample(shipped_run):
    code, out, printed = shipped_run
    assert code == 0, printed
    for name in SAMPLES:
        folder = out / name
        for f in [*STAGE_FILES, "ground_truth_right.ply", "ground_truth_left.ply", "result.json", "overlay.png",
                  "figure.png", "metrics.json"]:
            assert (folder / f).is_file(), folder / f
        assert (folder / "viewer.html").is_file() == viewer_available()
        assert f"{name}: keypoints" in printed and str(folder) in printed
        metrics = json.loads((folder / "metrics.json").read_text())
        assert set(metrics["stages"]) == {"initial", "refined"}
        assert set(metrics["keypoints"]) == {"input", "refined"}
        for kp in metrics["keypoints"].values():
            assert {"right_mpjpe_mm", "left_mpjpe_mm", "mean_mpjpe_mm", "right_mpjpe_wrist_mm"} <= set(kp)
        for stage in metrics["stages"].values():   # random networks may leave a hand empty in a stage
            assert set(stage) in ({"right", "left", "mean", "pair"}, {"error"}), stage
    # the networks were tuned on the clasp sample: every figure there
    clasp = json.loads((out / "clasp" / "metrics.json").read_text())
    for stage in clasp["stages"].values():
        assert {"iou", "chamfer_l1_mm", "mpjpe_mm"} <= set(stage["mean"])
        assert {"penetration_volume_mm3", "penetration_depth_mm"} <= set(stage["pair"])
        assert 0 <= stage["mean"]["iou"] <= 1 and stage["mean"]["chamfer_l1_mm"] > 0
    assert "refined keypoints" in printed and "initial meshes" in printed


def test_demo_pictures_show_both_hands(shipped_run):
    _, out, _ = shipped_run
    image = _png(DEMO_DIR / "clasp" / "image.png")
    overlay = _png(out / "clasp" / "overlay.png")
    assert overlay.shape == image.shape
    red, blue = _hand_colour_shares(overlay, image)
    assert red > 0.02 and blue > 0.02, (red, blue)
    fig = _png(out / "clasp" / "figure.png")
    assert fig.shape == (256, 4 * 256 + 3 * 4, 3)        # input | initial | refined | ground truth
    tiles = [fig[:, k * 260: k * 260 + 256] for k in range(4)]
    # each tile against the input tile (whose keypoint dots are few pixels); the random networks' hands may
    # hide one another, the ground truth's do not
    shares = [_hand_colour_shares(tile, tiles[0]) for tile in tiles[1:]]
    assert all(max(red, blue) > 0.02 for red, blue in shares), shares
    red, blue = shares[-1]
    assert red > 0.02 and blue > 0.02, shares


def test_demo_on_a_users_input(bundle, tmp_path, capsys):
    """--image/--keypoints/--camera: a non-square image (the sample pasted into a larger one, K shifted)."""
    src = DEMO_DIR / "clasp"
    big = np.full((300, 420, 3), 90, np.uint8)
    big[30:286, 120:376] = _png(src / "image.png")
    Image.fromarray(big).save(tmp_path / "mine.png")
    cam = json.loads((src / "camera.json").read_text())
    cam["K"][0][2] += 120
    cam["K"][1][2] += 30
    (tmp_path / "cam.json").write_text(json.dumps(cam))
    out = tmp_path / "out"
    code = main(["demo", "--image", str(tmp_path / "mine.png"), "--keypoints", str(src / "keypoints.json"),
                 "--camera", str(tmp_path / "cam.json"), "--out", str(out), "--model", str(bundle), *SMALL])
    assert code == 0, capsys.readouterr()
    folder = out / "mine"
    for f in [*STAGE_FILES, "result.json", "overlay.png", "figure.png"]:
        assert (folder / f).is_file(), f
    assert not (folder / "metrics.json").exists() and not (folder / "ground_truth_right.ply").exists()
    assert _png(folder / "figure.png").shape == (256, 3 * 256 + 2 * 4, 3)   # no ground-truth column
    overlay = _png(folder / "overlay.png")
    assert overlay.shape == big.shape
    red, blue = _hand_colour_shares(overlay, big)
    assert red > 0.01 and blue > 0.01, (red, blue)
    assert "IoU" not in capsys.readouterr().out


# ------------------------------------------------------------------------------------------------- errors
def _user_files(tmp_path):
    src = DEMO_DIR / "clasp"
    for f in ("image.png", "keypoints.json", "camera.json"):
        shutil.copy(src / f, tmp_path / f)
    return tmp_path / "image.png", tmp_path / "keypoints.json", tmp_path / "camera.json"


def _demo(args, capsys) -> tuple[int, str]:
    code = main(["demo", *map(str, args)])
    return code, capsys.readouterr().err


def test_a_missing_file_is_named(tmp_path, capsys):
    image, keypoints, camera = _user_files(tmp_path)
    code, err = _demo(["--image", image, "--keypoints", tmp_path / "absent.json", "--camera", camera,
                       "--out", tmp_path / "o"], capsys)
    assert code == 2 and "keypoints file not found" in err and "absent.json" in err


def test_keypoints_without_a_hand_name_the_file_and_key(tmp_path, capsys):
    image, keypoints, camera = _user_files(tmp_path)
    data = json.loads(keypoints.read_text())
    del data["left"]
    keypoints.write_text(json.dumps(data))
    code, err = _demo(["--image", image, "--keypoints", keypoints, "--camera", camera, "--out", tmp_path / "o"],
                      capsys)
    assert code == 2 and str(keypoints) in err and "'left'" in err


def test_camera_without_K_names_the_file(tmp_path, capsys):
    image, keypoints, camera = _user_files(tmp_path)
    camera.write_text(json.dumps({"R": np.eye(3).tolist()}))
    code, err = _demo(["--image", image, "--keypoints", keypoints, "--camera", camera, "--out", tmp_path / "o"],
                      capsys)
    assert code == 2 and str(camera) in err and "'K'" in err


def test_image_needs_keypoints_and_camera(tmp_path, capsys):
    image, _, _ = _user_files(tmp_path)
    code, err = _demo(["--image", image, "--out", tmp_path / "o"], capsys)
    assert code == 2 and "--keypoints and --camera" in err


def test_without_the_shipped_model_the_error_says_how_to_make_it(tmp_path, capsys, monkeypatch):
    import im2hands.api

    monkeypatch.setattr(im2hands.api, "SHIPPED_BUNDLE", tmp_path / "absent.pt")
    code, err = _demo(["--out", tmp_path / "o"], capsys)
    assert code == 2 and "absent.pt" in err and "ship_model.py" in err
