"""The Im2Hands API: known-answer reconstruction with oracle networks (frames, extraction, camera mapping and
winding end to end), the crop, real networks (extraction equals dense evaluation, checkpoints round trip),
inputs and errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from im2hands.api import (Im2Hands, load_camera_json, load_keypoints_json, parse_keypoints, save_camera_json,
                          save_keypoints_json, save_reconstruction)
from im2hands.data import read_sample
from im2hands.data.crop import Crop
from im2hands.eval.metrics import chamfer, iou
from im2hands.hand import skeleton
from im2hands.mesh import Lattice, extract_meshes, extract_meshes_dense
from tests.helpers import OracleInitOcc, OracleRefOcc, make_synth, sample_meshes, small_networks

LATTICE = Lattice(16, 3)   # 129^3: 3.4 mm cells


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    out = make_synth(tmp_path_factory.mktemp("synth"), num=1)
    return read_sample(out / "test" / "000000.npz")


def _crop(s) -> Crop:
    return Crop(image=np.asarray(s["image"]), K=np.asarray(s["camera_K"], np.float64), box=(0.0, 0.0, 256.0))


def _joints(s, key="joints"):
    return {side: np.asarray(s[f"{side}_{key}"], np.float64) for side in ("right", "left")}


@pytest.fixture(scope="module")
def oracle_result(sample):
    meshes = sample_meshes(sample)
    model = Im2Hands(init_occ=OracleInitOcc(meshes), ref_occ=OracleRefOcc(meshes, offset=0.002), lattice=LATTICE)
    return model.reconstruct_crop(_crop(sample), _joints(sample))


@pytest.mark.parametrize("side", ["right", "left"])
def test_oracle_initial_mesh_is_the_known_mesh(sample, oracle_result, side):
    """Occupancy = the GT mesh: the extracted mesh lands on it, in the camera frame, with outward normals."""
    import trimesh

    pred = oracle_result.mesh("initial", side)
    gt = sample_meshes(sample)[side]
    ch = chamfer((pred.vertices, pred.faces), gt, n_points=20_000, seed=0)
    assert ch.chamfer_l1_mm < 1.0, ch
    assert iou((pred.vertices, pred.faces), gt, n_points=50_000, seed=0).iou > 0.95
    mesh = trimesh.Trimesh(pred.vertices, pred.faces, process=False)
    assert mesh.volume > 0   # counter-clockwise seen from outside (the left hand's mirror flipped back)
    assert mesh.volume == pytest.approx(trimesh.Trimesh(*gt, process=False).volume, rel=0.05)


@pytest.mark.parametrize("side", ["right", "left"])
def test_oracle_refined_mesh_follows_the_refined_field(sample, oracle_result, side):
    """The refined field is the GT grown by 2 mm: the seeded refined extraction finds that surface."""
    import trimesh

    from tests.helpers import _signed_distance

    pred = oracle_result.mesh("refined", side)
    gt_v, gt_f = sample_meshes(sample)[side]
    # the 0.45 level of sigmoid(-(sd - 2 mm) / 2 mm) is at sd = 2 mm + 2 mm * logit(0.55) = 2.40 mm
    expected = 0.002 + 0.002 * np.log(0.55 / 0.45)
    sd = _signed_distance(torch.from_numpy(pred.vertices), gt_v, gt_f).numpy()
    assert abs(np.median(sd) - expected) < 3e-4, np.median(sd)
    assert np.quantile(np.abs(sd - expected), 0.95) < 1e-3
    initial = oracle_result.mesh("initial", side)
    v_ref = trimesh.Trimesh(pred.vertices, pred.faces, process=False).volume
    assert v_ref > trimesh.Trimesh(initial.vertices, initial.faces, process=False).volume


def test_seeded_refinement_equals_full_extraction(sample):
    meshes = sample_meshes(sample)
    model = Im2Hands(init_occ=OracleInitOcc(meshes), ref_occ=OracleRefOcc(meshes, offset=0.002), lattice=Lattice(8, 3))
    seeded = model.reconstruct_crop(_crop(sample), _joints(sample), stages=("refined",))
    full = model.reconstruct_crop(_crop(sample), _joints(sample), stages=("refined",), seeded_refinement=False)
    for side in ("right", "left"):
        a, b = seeded.mesh("refined", side), full.mesh("refined", side)
        np.testing.assert_array_equal(a.faces, b.faces)
        np.testing.assert_allclose(a.vertices, b.vertices, atol=1e-6)
    saved = sum(full.stages["refined"].evaluations.values()) - sum(seeded.stages["refined"].evaluations.values())
    assert saved > 0


def test_full_image_is_cropped_around_both_hands(sample):
    """Embed the sample in a larger image with other intrinsics: the API's crop puts the hands in view."""
    meshes = sample_meshes(sample)
    model = Im2Hands(init_occ=OracleInitOcc(meshes), lattice=Lattice(8, 2))
    big = np.zeros((480, 640, 3), np.uint8)
    big[100:356, 200:456] = sample["image"]
    K = np.asarray(sample["camera_K"], np.float64).copy()
    K[0, 2] += 200
    K[1, 2] += 100
    res = model.reconstruct(big, _joints(sample), {"K": K}, stages=("initial",))
    both = np.concatenate([sample["right_joints"], sample["left_joints"]]).astype(np.float64)
    uv = both @ res.crop.K.T
    uv = uv[:, :2] / uv[:, 2:]
    ext = uv.max(0) - uv.min(0)
    assert ext.max() == pytest.approx(0.8 * 256, rel=1e-6)
    np.testing.assert_allclose((uv.max(0) + uv.min(0)) / 2, 128, atol=1e-6)
    # and the meshes are the known ones, whatever the crop
    assert len(res.mesh("initial", "left").faces) > 100


def test_world_frame_keypoints_with_extrinsics(sample):
    """Keypoints given in a world frame with R, T: the meshes still come out in the camera frame."""
    meshes = sample_meshes(sample)
    model = Im2Hands(init_occ=OracleInitOcc(meshes), lattice=Lattice(8, 2))
    c, s_ = np.cos(0.7), np.sin(0.7)
    R = np.array([[c, -s_, 0], [s_, c, 0], [0, 0, 1.0]])
    T = np.array([0.1, -0.05, 0.2])
    world = {side: (j - T) @ R for side, j in _joints(sample).items()}     # x_cam = R x + T
    a = model.reconstruct_crop(_crop(sample), _joints(sample), stages=("initial",))
    big = np.asarray(sample["image"])
    b = model.reconstruct(big, world, {"K": sample["camera_K"], "R": R, "T": T}, stages=("initial",))
    for side in ("right", "left"):
        np.testing.assert_allclose(b.keypoints_input[side], sample[f"{side}_joints"], atol=1e-6)
        va, vb = a.mesh("initial", side).vertices, b.mesh("initial", side).vertices
        np.testing.assert_allclose(vb.mean(0), va.mean(0), atol=2e-3)


# ------------------------------------------------------------------------------------------- real networks
@pytest.fixture(scope="module")
def small(sample):
    return small_networks(sample)


def test_extraction_on_network_outputs_equals_dense(sample, small):
    """Multi-resolution extraction of a real InitOcc equals dense evaluation + marching cubes."""
    init, _, _ = small
    model = Im2Hands(init_occ=init)
    crop = _crop(sample)
    from im2hands.data.dataset import normalise_image
    from im2hands.hand.camera import Camera

    hands = model._hand_inputs(_joints(sample))
    with torch.no_grad():
        enc = init.encode(normalise_image(crop.image)[None],
                          Camera(K=torch.tensor(crop.K, dtype=torch.float32)[None], R=torch.eye(3)[None],
                                 T=torch.zeros(1, 3)))

        def fn(points):
            return [init.decode(enc, hands[s], p[None], s).occupancy[0] for s, p in zip(("right", "left"), points)]

        lattice = Lattice(8, 2)
        fast = extract_meshes(fn, 2, lattice=lattice, threshold=0.5)
        dense = extract_meshes_dense(fn, 2, lattice=lattice, threshold=0.5)
    for a, b in zip(fast, dense):
        assert len(a.faces) > 100
        np.testing.assert_array_equal(a.faces.numpy(), b.faces.numpy())
        # Vertices interpolate the values along each crossing edge. The network's float32 outputs differ by
        # ~1e-7 with the batch they are evaluated in, and this random field is nearly flat (its values span
        # ~0.1 logit over the box), so a few vertices move by up to ~1e-4 query units (0.04 mm).
        diff = np.abs(a.vertices.numpy() - b.vertices.numpy()).max(-1)
        assert diff.max() < 2e-4 and np.median(diff) < 1e-6
        assert a.num_evaluations < 0.7 * b.num_evaluations


def test_checkpoints_round_trip_and_every_stage_runs(sample, small, tmp_path):
    from im2hands.models.checkpoint import save_checkpoint

    init, ref, kpts = small
    for kind, net in (("init_occ", init), ("ref_occ", ref), ("kpts_ref", kpts)):
        save_checkpoint(tmp_path / "run" / f"{kind}.ckpt", model=kind, config=net.config, state_dict=net.state_dict())
    model = Im2Hands.from_checkpoint(tmp_path / "run", lattice=Lattice(8, 2), device="cpu")
    assert model.kpts_ref is not None and model.ref_occ is not None
    res = model.reconstruct_crop(_crop(sample), _joints(sample), refine_keypoints=False)
    assert set(res.stages) == {"initial", "refined"}
    for stage in res.stages.values():
        for side in ("right", "left"):
            assert np.all(np.isfinite(stage.hand(side).vertices))
    assert all(len(res.mesh("initial", side).faces) > 0 for side in ("right", "left"))
    assert sum(len(res.mesh("refined", side).faces) for side in ("right", "left")) > 0
    # keypoint refinement runs by default with a kpts_ref checkpoint (random weights: it moves them)
    moved = model.reconstruct_crop(_crop(sample), _joints(sample, "noisy_joints"), stages=("initial",))
    assert np.abs(moved.keypoints["right"] - moved.keypoints_input["right"]).max() > 1e-6
    written = save_reconstruction(res, tmp_path / "out")
    assert {p.name for p in written} == {"initial_right.ply", "initial_left.ply", "refined_right.ply",
                                          "refined_left.ply", "result.json"}
    info = json.loads((tmp_path / "out" / "result.json").read_text())
    assert info["stages"]["refined"]["evaluations"]["left"] == res.stages["refined"].evaluations["left"]
    # the bfloat16 fast mode: set on the loaded networks only, the refined stage still reuses the initial one;
    # the meshes stay near the float32 ones. Random weights give nearly flat fields, whose surfaces move far
    # for a small change of the logits (mean vertex moved by up to 1.3 finest cells with
    # ATEN_CPU_CAPABILITY=default, 0.7 natively); the trained model's metrics: docs/PERFORMANCE.md.
    fast = Im2Hands.from_checkpoint(tmp_path / "run", lattice=Lattice(8, 2), device="cpu", bf16=True)
    assert fast.ref_occ.config.bf16_decoder and fast.ref_occ.config.bf16_encoder
    assert fast.init_occ.config.bf16_decoder and fast.ref_occ.init_occ.config.bf16_decoder and fast.reuse_initial
    assert not (model.ref_occ.config.bf16_decoder or model.ref_occ.config.bf16_encoder
                or model.init_occ.config.bf16_decoder)
    res16 = fast.reconstruct_crop(_crop(sample), _joints(sample), refine_keypoints=False)
    cell = 0.4 * 1.1 / Lattice(8, 2).resolution   # metres (the meshes are in the camera frame)
    for stage in ("initial", "refined"):
        for side in ("right", "left"):
            a, b = res.mesh(stage, side).vertices, res16.mesh(stage, side).vertices
            if len(a) and len(b):
                assert abs(len(a) - len(b)) <= 0.25 * len(a) + 4
                assert np.abs(a.mean(0) - b.mean(0)).max() < 2 * cell


# ------------------------------------------------------------------------------------------- inputs, errors
def test_keypoint_orders_agree(sample):
    j = _joints(sample)
    a = parse_keypoints(j)
    b = parse_keypoints(np.stack([j["right"], j["left"]]))
    c = parse_keypoints(skeleton.internal_to_interhand(j["right"], j["left"]), "interhand")
    for side in ("right", "left"):
        np.testing.assert_array_equal(a[side], b[side])
        np.testing.assert_array_equal(a[side], c[side])


def test_json_inputs(tmp_path, sample):
    j = _joints(sample)
    (tmp_path / "kp.json").write_text(json.dumps({"order": "internal", "units": "mm",
                                                  "right": (j["right"] * 1000).tolist(), "left": (j["left"] * 1000).tolist()}))
    kp, order = load_keypoints_json(tmp_path / "kp.json")
    np.testing.assert_allclose(kp["right"], j["right"], atol=1e-12)
    (tmp_path / "cam.json").write_text(json.dumps({"K": np.asarray(sample["camera_K"]).tolist()}))
    assert load_camera_json(tmp_path / "cam.json")["K"].shape == (3, 3)
    (tmp_path / "bad.json").write_text(json.dumps({"order": "internal", "right": j["right"].tolist()}))
    with pytest.raises(ValueError, match="bad.json: missing key 'left'"):
        load_keypoints_json(tmp_path / "bad.json")
    (tmp_path / "badcam.json").write_text(json.dumps({"K": [[1, 0], [0, 1]]}))
    with pytest.raises(ValueError, match=r"badcam.json: camera.K: expected shape \(3, 3\)"):
        load_camera_json(tmp_path / "badcam.json")


def test_json_writers_round_trip(tmp_path, sample):
    j = _joints(sample)
    save_keypoints_json(tmp_path / "kp.json", j)
    kp, order = load_keypoints_json(tmp_path / "kp.json")
    assert order == "internal"
    for side in ("right", "left"):
        np.testing.assert_array_equal(kp[side], j[side])
    R = np.array([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]])
    save_camera_json(tmp_path / "cam.json", {"K": sample["camera_K"], "R": R, "T": [0.1, 0, 0.2]})
    cam = load_camera_json(tmp_path / "cam.json")
    np.testing.assert_array_equal(cam["K"], sample["camera_K"])
    np.testing.assert_array_equal(cam["R"], R)
    np.testing.assert_array_equal(cam["T"], [0.1, 0, 0.2])
    with pytest.raises(ValueError, match="missing hand"):
        save_keypoints_json(tmp_path / "one.json", {"right": j["right"]})
    assert not (tmp_path / "one.json").exists()


def test_errors_name_the_problem(sample):
    meshes = sample_meshes(sample)
    model = Im2Hands(init_occ=OracleInitOcc(meshes), lattice=Lattice(8, 2))
    j = _joints(sample)
    with pytest.raises(ValueError, match="missing hand"):
        model.reconstruct(sample["image"], {"right": j["right"]}, {"K": sample["camera_K"]})
    bad = {**j, "left": j["left"].copy()}
    bad["left"][3] = np.nan
    with pytest.raises(ValueError, match=r"keypoints\['left'\]: joint 3 is NaN"):
        model.reconstruct(sample["image"], bad, {"K": sample["camera_K"]})
    far = {**j, "right": j["right"] + np.array([1.0, 0, 0])}
    with pytest.raises(ValueError, match="outside the 256x256 image"):
        model.reconstruct(sample["image"], far, {"K": sample["camera_K"]})
    with pytest.raises(ValueError, match="'refined' needs a ref_occ"):
        model.reconstruct(sample["image"], j, {"K": sample["camera_K"]})
    with pytest.raises(ValueError, match="camera: missing 'K'"):
        model.reconstruct(sample["image"], j, {"R": np.eye(3)})
    with pytest.raises(ValueError, match="no kpts_ref network"):
        model.reconstruct(sample["image"], j, {"K": sample["camera_K"]}, refine_keypoints=True, stages=("initial",))


def test_overlay_puts_the_known_meshes_on_the_hands(sample):
    """Oracle meshes rendered with the crop's intrinsics cover the pixels the sample's mask labels as hands."""
    from im2hands.viz.overlay import overlay_meshes

    meshes = sample_meshes(sample)
    model = Im2Hands(init_occ=OracleInitOcc(meshes), lattice=Lattice(16, 3))
    res = model.reconstruct_crop(_crop(sample), _joints(sample), stages=("initial",)).stages["initial"]
    img = np.asarray(sample["image"])
    ov = overlay_meshes(img, np.asarray(sample["camera_K"]), {s: (res.hand(s).vertices, res.hand(s).faces)
                                                              for s in ("right", "left")}, alpha=1.0)
    drawn = np.abs(ov.astype(int) - img.astype(int)).sum(-1) > 0
    hands = np.asarray(sample["mask"]) > 0
    iou = (drawn & hands).sum() / (drawn | hands).sum()
    assert iou > 0.9, iou


def test_refined_stage_reuses_the_initial_values(sample, small, monkeypatch):
    """The refined stage takes the initial stage's encoding and InitOcc values at the lattice points both
    evaluate: the same refined meshes, with the frozen InitOcc run on far fewer points."""
    init, ref, _ = small
    model = Im2Hands(init_occ=init, ref_occ=ref, lattice=Lattice(8, 2))
    assert model.reuse_initial   # same class, configuration and weights
    decoded, encoded = [], []
    decode, encode = ref.init_occ.decode, ref.init_occ.encode
    monkeypatch.setattr(ref.init_occ, "decode", lambda *a, **kw: decoded.append(a[2].shape[1]) or decode(*a, **kw))
    monkeypatch.setattr(ref.init_occ, "encode", lambda *a, **kw: encoded.append(1) or encode(*a, **kw))
    reused = model.reconstruct_crop(_crop(sample), _joints(sample), refine_keypoints=False)
    n_reused, enc_reused = sum(decoded), len(encoded)
    decoded.clear(), encoded.clear()
    model.reuse_initial = False
    fresh = model.reconstruct_crop(_crop(sample), _joints(sample), refine_keypoints=False)
    assert (enc_reused, len(encoded)) == (0, 1)
    assert reused.stages["refined"].evaluations == fresh.stages["refined"].evaluations
    assert sum(decoded) == sum(fresh.stages["refined"].evaluations.values())
    # the frozen InitOcc ran exactly on the refined points the initial stage had not evaluated
    lat = Lattice(8, 2)
    new = 0
    for ini, ref_ext in zip(reused.stages["initial"].extractions, reused.stages["refined"].extractions):
        seen = lat.index_key(ini.evaluated_points()[0]).numpy()
        new += len(np.setdiff1d(lat.index_key(ref_ext.evaluated_points()[0]).numpy(), seen))
    assert n_reused == new < sum(decoded)
    for side in ("right", "left"):
        a, b = reused.mesh("refined", side), fresh.mesh("refined", side)
        np.testing.assert_array_equal(a.faces, b.faces)
        np.testing.assert_allclose(a.vertices, b.vertices, atol=1e-5)


def test_contact_cue_refinement_reuses_the_initial_values(sample, small):
    """A RefOcc with the contact cue (the other hand's frozen InitOcc at each query) reconstructs the same
    refined meshes with and without reusing the initial stage's values, and differs from the same residual
    refinement without the cue once its head is non-zero."""
    import dataclasses

    from im2hands.models.ref_occ import RefOcc

    init, ref, _ = small
    cued = RefOcc(dataclasses.replace(ref.config, residual=True, contact_cue=True)).eval()
    cued.load_state_dict({**cued.state_dict(), **ref.state_dict()})
    torch.manual_seed(0)
    with torch.no_grad():
        for p in cued.contact_head.parameters():
            p.normal_(0, 0.5)
    model = Im2Hands(init_occ=init, ref_occ=cued, lattice=Lattice(8, 2))
    assert model.reuse_initial
    reused = model.reconstruct_crop(_crop(sample), _joints(sample), refine_keypoints=False)
    model.reuse_initial = False
    fresh = model.reconstruct_crop(_crop(sample), _joints(sample), refine_keypoints=False)
    residual = RefOcc(dataclasses.replace(ref.config, residual=True)).eval()
    residual.load_state_dict(ref.state_dict())
    plain = Im2Hands(init_occ=init, ref_occ=residual, lattice=Lattice(8, 2)).reconstruct_crop(
        _crop(sample), _joints(sample), refine_keypoints=False)
    for side in ("right", "left"):
        a, b = reused.mesh("refined", side), fresh.mesh("refined", side)
        np.testing.assert_array_equal(a.faces, b.faces)
        np.testing.assert_allclose(a.vertices, b.vertices, atol=1e-5)
    assert any(len(reused.mesh("refined", s).vertices) != len(plain.mesh("refined", s).vertices)
               or not np.allclose(reused.mesh("refined", s).vertices, plain.mesh("refined", s).vertices)
               for s in ("right", "left"))


def test_reuse_needs_the_same_initial_network(small):
    import copy

    init, ref, _ = small
    other = copy.deepcopy(init)
    with torch.no_grad():
        next(other.parameters()).add_(1e-3)
    assert not Im2Hands(init_occ=other, ref_occ=ref).reuse_initial
    assert Im2Hands(ref_occ=ref).reuse_initial   # the frozen InitOcc itself


def test_known_initial_values_give_the_same_refined_occupancy(sample, small):
    from im2hands.models.ref_occ import InitialValues

    init, ref, _ = small
    model = Im2Hands(init_occ=init, ref_occ=ref)
    hands = model._hand_inputs(_joints(sample))
    from im2hands.data.dataset import normalise_image
    from im2hands.hand.camera import Camera

    cam = Camera(K=torch.tensor(_crop(sample).K, dtype=torch.float32)[None], R=torch.eye(3)[None], T=torch.zeros(1, 3))
    image = normalise_image(np.asarray(sample["image"]))[None]
    g = torch.Generator().manual_seed(3)
    pts = {s: (torch.rand(1, 300, 3, generator=g) - 0.5) * 0.6 for s in ("left", "right")}
    anchors = {s: (torch.rand(1, 512, 3, generator=g) - 0.5) * 0.3 for s in ("left", "right")}
    with torch.no_grad():
        enc = ref.encode(image, cam, hands["left"], hands["right"], anchors["left"], anchors["right"])
        plain = ref.decode(enc, pts["left"], pts["right"])
        known = {}
        for s in ("left", "right"):
            out = ref.init_occ.decode(enc.init_occ, hands[s], pts[s], s)
            occ = out.occupancy.clone()
            occ[:, ::2] = float("nan")   # every other value unknown: the network fills them in
            known[s] = InitialValues(occupancy=occ, max_logit=out.part_logits.amax(-1))
        given = ref.decode(enc, pts["left"], pts["right"], known_left=known["left"], known_right=known["right"])
    for s in ("left", "right"):
        a, b = getattr(plain, s), getattr(given, s)
        torch.testing.assert_close(b.init_occupancy, a.init_occupancy, rtol=0, atol=1e-6)
        torch.testing.assert_close(b.logit, a.logit, rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="known_left.occupancy: expected shape"):
        ref.decode(enc, pts["left"], pts["right"], known_left=InitialValues(occupancy=occ[:, :5], max_logit=occ))


def test_refined_threshold_follows_the_refinement(sample, small):
    """0.45 (official) for a RefOcc that predicts the occupancy itself, 0.5 for a residual RefOcc (InitOcc's
    logit plus a correction): an untrained residual refinement then gives the initial meshes exactly."""
    import dataclasses

    from im2hands.api import refined_threshold
    from im2hands.models.ref_occ import RefOcc

    init, ref, _ = small
    residual = RefOcc(dataclasses.replace(ref.config, residual=True)).eval()   # its last layer starts at zero
    residual.init_occ.load_state_dict(init.state_dict())
    assert (refined_threshold(ref), refined_threshold(residual)) == (0.45, 0.5)
    res = Im2Hands(init_occ=init, ref_occ=residual, lattice=Lattice(8, 2)).reconstruct_crop(
        _crop(sample), _joints(sample), refine_keypoints=False)
    assert all(e.threshold == 0.5 for e in res.stages["refined"].extractions)
    for side in ("right", "left"):
        a, b = res.mesh("initial", side), res.mesh("refined", side)
        np.testing.assert_array_equal(a.faces, b.faces)
        np.testing.assert_allclose(a.vertices, b.vertices, atol=1e-6)
