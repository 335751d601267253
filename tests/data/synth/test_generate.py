"""The generation job: identical files whatever the number of workers, resume after interruption, summary."""

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from im2hands.data import read_sample
from im2hands.data.synth.generate import SynthConfig, generate, pending_indices, sample_path, sample_seed
from im2hands.data.synth.occupancy import OccupancyConfig, inside_mesh

SCENE = "im2hands.data.synth.scene"
OCC = OccupancyConfig(num_points=2000, num_iou_points=500, num_surface_points=500)


def _config(out: Path, **kw) -> SynthConfig:
    base = SynthConfig(out=out, num=3, split="train", seed=7, workers=1, occupancy=OCC, gallery=2,
                       progress=False, scene_module=SCENE)
    return replace(base, **kw)


def _files(out: Path, split: str = "train") -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((out / split).glob("*.npz"))}


@pytest.fixture(scope="module")
def serial_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("serial")
    summary = generate(_config(out))
    return out, summary


def test_workers_give_identical_files(serial_run, tmp_path):
    out1, _ = serial_run
    generate(_config(tmp_path, workers=2, start_method="spawn"))
    a, b = _files(out1), _files(tmp_path)
    assert list(a) == ["000000.npz", "000001.npz", "000002.npz"]
    assert a == b


def test_forked_workers_from_the_cli_give_identical_files(serial_run, tmp_path):
    # A fresh `im2hands synth` process has no rendering context, so its workers are forked.
    import os
    import subprocess
    import sys

    import im2hands

    env = dict(os.environ, PYTHONPATH=str(Path(im2hands.__file__).parents[1]))
    cmd = [sys.executable, "-m", "im2hands", "synth", "--out", str(tmp_path), "--num", "3", "--seed", "7",
           "--workers", "2", "--points", "2000", "--iou-points", "500", "--surface-points", "500",
           "--gallery", "0", "--no-progress"]
    subprocess.run(cmd, check=True, env=env, capture_output=True)
    assert _files(tmp_path) == _files(serial_run[0])
    # and different seeds or splits give different samples
    assert sample_seed(7, "train", 0).generate_state(2).tolist() != sample_seed(7, "test", 0).generate_state(2).tolist()


def test_sample_content(serial_run):
    out, summary = serial_run
    s = read_sample(sample_path(out, "train", 1))
    assert s["image"].shape == (256, 256, 3) and s["index"] == 1 and str(s["split"]) == "train"
    assert set(np.unique(s["mask"])) <= {0, 1, 2}
    for side, value in (("right", 1), ("left", 2)):
        # the 2D joints are the projection of the 3D joints with K
        uvw = s[f"{side}_joints"].astype(np.float64) @ s["camera_K"].T
        np.testing.assert_allclose(s[f"{side}_joints_2d"], uvw[:, :2] / uvw[:, 2:], atol=1e-3)
        # query_to_cam maps the query-space surface points onto the camera-frame mesh
        m = s[f"{side}_query_to_cam"]
        surf_cam = s[f"{side}_surface_points"] @ m[:3, :3].T + m[:3, 3]
        import trimesh

        mesh = trimesh.Trimesh(s[f"{side}_vertices"], s[f"{side}_faces"], process=False)
        _, d, _ = mesh.nearest.on_surface(surf_cam[:200])
        assert d.max() < 2e-4  # float16 rounding of query coordinates (<= 2.4e-4 units = 0.1 mm)
        # labels agree with an independent winding number on the camera-frame mesh (checks the mirror and
        # face flip of the left hand's query map); points within 0.05 mm of the surface may differ
        pts_cam = s[f"{side}_points"].astype(np.float64) @ m[:3, :3].T + m[:3, 3]
        inside_cam = inside_mesh(s[f"{side}_vertices"], s[f"{side}_faces"], pts_cam)
        differ = inside_cam != s[f"{side}_occupancy"]
        assert differ.mean() < 0.002
        if differ.any():
            _, dist, _ = mesh.nearest.on_surface(pts_cam[differ])
            assert (dist < 5e-5).all()
        # the mesh fits the +-0.55 query box, and labels near the surface are mixed
        assert np.abs(s[f"{side}_surface_points"]).max() < 0.55
        occ = s[f"{side}_occupancy"]
        assert 0.05 < occ[1000:].mean() < 0.95
        assert abs(s[f"{side}_mask_share"] - (s["mask"] == value).mean()) < 1e-12
    assert summary.num_samples == 3 and summary.made_now == 3
    data = json.loads((out / "summary.json").read_text())
    assert data["train"]["num_samples"] == 3
    assert (out / "gallery.png").stat().st_size > 1000


def test_resume_redoes_only_missing_and_corrupt(serial_run, tmp_path):
    out1, _ = serial_run
    cfg = _config(tmp_path)
    generate(replace(cfg, num=2))  # a run that stopped after two samples...
    before = _files(tmp_path)
    p0, p1 = sample_path(tmp_path, "train", 0), sample_path(tmp_path, "train", 1)
    p1.write_bytes(p1.read_bytes()[:5000])  # ...with one file truncated (e.g. copied by hand)
    (tmp_path / "train" / ".000002.npz.abc.tmp").write_bytes(b"partial")  # and a temp file left behind
    mtime0 = p0.stat().st_mtime_ns
    todo, corrupt = pending_indices(cfg)
    assert todo == [1, 2] and len(corrupt) == 1 and "000001.npz" in corrupt[0]
    summary = generate(cfg)
    assert summary.made_now == 2 and summary.reused == 1 and summary.redone_corrupt == 1
    assert p0.stat().st_mtime_ns == mtime0  # the finished sample was not redone
    assert _files(tmp_path) == _files(out1)  # and the result is the same as an uninterrupted run
    assert before["000000.npz"] == _files(out1)["000000.npz"]
    assert not list((tmp_path / "train").glob(".*tmp"))


def test_killed_run_resumes(serial_run, tmp_path):
    # Kill a real run (SIGKILL) after its first sample, then rerun: only complete files are ever visible,
    # and the finished split equals an uninterrupted run.
    import os
    import subprocess
    import sys
    import time

    import im2hands

    env = dict(os.environ, PYTHONPATH=str(Path(im2hands.__file__).parents[1]))
    cmd = [sys.executable, "-m", "im2hands", "synth", "--out", str(tmp_path), "--num", "3", "--seed", "7",
           "--points", "2000", "--iou-points", "500", "--surface-points", "500", "--gallery", "0", "--no-progress"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not sample_path(tmp_path, "train", 0).exists() and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        proc.kill()
        proc.wait()
    reference = _files(serial_run[0])
    partial = _files(tmp_path)
    assert len(partial) >= 1
    for name, data in partial.items():
        assert data == reference[name]  # every visible file is complete and right
    subprocess.run(cmd, check=True, env=env, capture_output=True)
    assert _files(tmp_path) == reference


def test_resume_with_other_arguments_is_refused(tmp_path):
    generate(_config(tmp_path, num=1, gallery=0))
    with pytest.raises(ValueError, match="other arguments.*seed"):
        generate(_config(tmp_path, num=1, seed=8, gallery=0))


def test_bad_config():
    with pytest.raises(ValueError, match="split"):
        SynthConfig(out=Path("x"), num=1, split="dev")
    with pytest.raises(ValueError, match="workers"):
        SynthConfig(out=Path("x"), num=1, workers=0)
    with pytest.raises(ValueError, match="start_method"):
        SynthConfig(out=Path("x"), num=1, start_method="thread")


def test_fork_is_refused_after_rendering_here(serial_run, tmp_path):
    # the serial run rendered in this process: forking renderers from here is refused, auto picks spawn
    from im2hands.data.synth.generate import _start_method

    with pytest.raises(ValueError, match="fork"):
        _start_method(_config(tmp_path, workers=2, start_method="fork"))
    assert _start_method(_config(tmp_path, workers=2)) == "spawn"


# ------------------------------------------------------------------------------------------ bad input
def _synth_cli(*args: str):
    from im2hands.cli import main

    return main(["synth", *args, "--num", "1", "--points", "500", "--iou-points", "100", "--surface-points", "100",
                 "--gallery", "0", "--no-progress"])


def test_missing_mano_dir_is_named_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "out"
    assert _synth_cli("--out", str(out), "--mano", str(tmp_path / "nowhere")) == 2
    assert "--mano" in capsys.readouterr().err
    assert not out.exists()


def test_unreadable_mano_files_are_named_and_a_corrected_rerun_works(tmp_path, capsys):
    from im2hands.hand.openhand import openhand_dir

    bad = tmp_path / "mano"
    bad.mkdir()
    (bad / "MANO_RIGHT.pkl").write_bytes(b"not a pickle")
    (bad / "MANO_LEFT.pkl").write_bytes(b"not a pickle")
    out = tmp_path / "out"
    assert _synth_cli("--out", str(out), "--mano", str(bad)) == 2
    err = capsys.readouterr().err
    assert "--mano" in err and "MANO_RIGHT.pkl" in err
    assert not out.exists()   # validated before anything was written: no job.json to refuse the rerun
    assert _synth_cli("--out", str(out), "--mano", str(openhand_dir())) == 0
    assert (out / "train" / "000000.npz").is_file()


def test_negative_gallery_is_refused_by_name(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        _synth_cli("--out", str(tmp_path / "out"), "--gallery", "-1")
    assert e.value.code == 2
    assert "--gallery" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    with pytest.raises(ValueError, match="gallery"):
        SynthConfig(out=tmp_path, num=1, gallery=-1)


def test_failing_worker_ends_the_job_with_its_message(tmp_path):
    """A pool whose workers cannot start must end the job (never re-spawn workers without end)."""
    import os
    import subprocess
    import sys

    import im2hands

    root = Path(__file__).parents[3]
    code = ("from pathlib import Path\n"
            "from im2hands.data.synth.generate import SynthConfig, SynthWorkerError, generate\n"
            "from im2hands.data.synth.occupancy import OccupancyConfig\n"
            f"c = SynthConfig(out=Path({str(tmp_path)!r}), num=3, workers=2, gallery=0, progress=False,\n"
            "    occupancy=OccupancyConfig(num_points=500, num_iou_points=100, num_surface_points=100),\n"
            "    scene_module='tests.data.synth.failing_scene', start_method='spawn')\n"
            "try:\n    generate(c)\nexcept SynthWorkerError as e:\n    print('WORKER-ERROR', e)\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(im2hands.__file__).parents[1]), str(root)]))
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300,
                          cwd=root)
    assert "WORKER-ERROR" in proc.stdout, proc.stdout + proc.stderr
    assert "disk unreadable in this worker" in proc.stdout
