"""RefOcc: every golden array (official mode), batching, point counts, default-mode fixes, key names,
input errors."""

import dataclasses
import json

import numpy as np
import pytest
import torch

from im2hands.hand.camera import Camera
from im2hands.models.init_occ import HandInputs
from im2hands.official import ref_occ as golden_check
from im2hands.official.check import compare
from im2hands.official.tolerance import tolerance_for
from im2hands.models.ref_occ import CUE_CLIP, RefOcc, RefOccConfig, RefOccEncoding

from ..conftest import GOLDEN_DIR

CPU = torch.device("cpu")
NAMES = sorted(np.load(GOLDEN_DIR / "ref_occ.npz").files)


@pytest.fixture(scope="module")
def model(golden):
    return golden_check.golden_model(golden, CPU, chunk_points=700)     # several decoder chunks


@pytest.fixture(scope="module")
def inputs(golden):
    return golden_check.golden_inputs(golden, CPU)


@pytest.fixture(scope="module")
def arrays(model, inputs):
    return golden_check.golden_arrays(model, inputs)


@pytest.fixture(scope="module")
def encoding(model, inputs):
    with torch.no_grad():
        return model.encode_camera(inputs.image, inputs.camera, inputs.left, inputs.right,
                                   inputs.anchors_cam_left, inputs.anchors_cam_right)


@pytest.mark.parametrize("name", NAMES)
def test_golden_array(golden, arrays, name):
    r = compare("ref_occ", name, arrays[name], golden["ref_occ"][name], tolerance_for(name))
    assert r.passed, r.line()


def test_golden_check_covers_every_array(golden):
    assert {r.name for r in golden_check.check(golden, CPU) if r.passed} == set(NAMES)
    assert len(NAMES) == 36


def test_state_dict_keys_and_shapes_equal_official_manifest():
    manifest = json.loads((GOLDEN_DIR / "keys_ref_occ.json").read_text())
    ours = {k: tuple(v.shape) for k, v in RefOcc().state_dict().items()}
    assert list(ours) == [e["key"] for e in manifest] or set(ours) == {e["key"] for e in manifest}
    assert ours == {e["key"]: tuple(e["shape"]) for e in manifest}


# ------------------------------------------------------------------------------------------ batching


def _perturbed(inputs, seed=0):
    g = torch.Generator().manual_seed(seed)
    eps = lambda t, s: t + s * torch.randn(t.shape, generator=g, dtype=t.dtype)  # noqa: E731
    hand = lambda h: dataclasses.replace(h, root=eps(h.root, 0.003))     # noqa: E731
    return dataclasses.replace(
        inputs, image=eps(inputs.image, 0.3), left=hand(inputs.left), right=hand(inputs.right),
        anchors_cam_left=eps(inputs.anchors_cam_left, 0.001), anchors_cam_right=eps(inputs.anchors_cam_right, 0.001),
        points_left=eps(inputs.points_left, 0.01), points_right=eps(inputs.points_right, 0.01))


def _stack(a, b):
    cat = lambda x, y: torch.cat([x, y], 0)  # noqa: E731
    hand = lambda h1, h2: HandInputs(**{f.name: cat(getattr(h1, f.name), getattr(h2, f.name))  # noqa: E731
                                        for f in dataclasses.fields(HandInputs)})
    return dataclasses.replace(
        a, image=cat(a.image, b.image),
        camera=Camera(K=cat(a.camera.K, b.camera.K), R=cat(a.camera.R, b.camera.R), T=cat(a.camera.T, b.camera.T)),
        left=hand(a.left, b.left), right=hand(a.right, b.right),
        anchors_cam_left=cat(a.anchors_cam_left, b.anchors_cam_left),
        anchors_cam_right=cat(a.anchors_cam_right, b.anchors_cam_right),
        points_left=cat(a.points_left, b.points_left), points_right=cat(a.points_right, b.points_right))


def test_batch_of_two_equals_per_row_runs(golden, model, inputs):
    other = _perturbed(inputs)
    both = golden_check.golden_arrays(model, _stack(inputs, other))
    row1 = golden_check.golden_arrays(model, other)
    expected = golden["ref_occ"]
    for name in NAMES:
        tol = tolerance_for(name)
        r0 = compare("ref_occ", name, both[name][:1], expected[name], tol)
        r1 = compare("ref_occ", name, both[name][1:], row1[name].numpy(), tol)
        assert r0.passed, "row 0: " + r0.line()
        assert r1.passed, "row 1: " + r1.line()
    # the perturbed row really is different (else the test proves nothing)
    assert (both["ref_logit_left"][1] - both["ref_logit_left"][0]).abs().max() > 1e-3


# -------------------------------------------------------------------------------------- point counts


def test_other_point_counts(golden, model, encoding, inputs):
    r = golden["ref_occ"]
    with torch.no_grad():
        # a prefix keeps query 0 (official init_occ's z reference): the golden values must come back
        out = model.decode(encoding, inputs.points_left[:, :701], inputs.points_right[:, :5], pen=True)
        np.testing.assert_allclose(out.left.logit.numpy(), r["ref_logit_left"][:, :701], atol=1.5e-5, rtol=0)
        np.testing.assert_allclose(out.right.logit.numpy(), r["ref_logit_right"][:, :5], atol=1.5e-5, rtol=0)
        assert out.pen_left.logit.shape == (1, 5) and out.pen_right.logit.shape == (1, 701)
        # more points than the golden set (repeat it): the first 2048 are the golden values
        big = model.decode(encoding, inputs.points_left.repeat(1, 3, 1)[:, :5000], inputs.points_right[:, :1])
        np.testing.assert_allclose(big.left.logit[:, :2048].numpy(), r["ref_logit_left"], atol=1.5e-5, rtol=0)
        assert big.left.occupancy.shape == (1, 5000) and big.right.occupancy.shape == (1, 1)
        assert big.pen_left.occupancy.shape == (1, 0)
        empty = model.decode(encoding, inputs.points_left[:, :0], inputs.points_right[:, :3])
        assert empty.left.occupancy.shape == (1, 0) and empty.right.occupancy.shape == (1, 3)


# -------------------------------------------------------------------------------------- default mode


@pytest.fixture(scope="module")
def default_model(model):
    m = RefOcc(RefOccConfig(official_quirks=False, chunk_points=500))
    m.load_state_dict(model.state_dict())
    return m.eval()


def test_default_mode_fixes(default_model, inputs, golden):
    m = default_model
    with torch.no_grad():
        enc = m.encode_camera(inputs.image, inputs.camera, inputs.left, inputs.right,
                              inputs.anchors_cam_left, inputs.anchors_cam_right)
        pl, pr = inputs.points_left[:, :600], inputs.points_right[:, :400]
        out = m.decode(enc, pl, pr, pen=True)
        perm = torch.randperm(600, generator=torch.Generator().manual_seed(0))
        out_perm = m.decode(enc, pl[:, perm], pr, pen=True)
    for side in ("left", "right"):
        h = enc.hand(side)
        assert h.z_pen is h.z_context and h.cache_pen is h.cache                   # context applied once
    r = golden["ref_occ"]
    assert not np.array_equal(enc.right.points.fps_indices[0].numpy(), r["fps_idx_stage1_right"])  # no skip
    # pixel-centre sampling differs from the official (uv - 128)/128 mapping, but only slightly
    d = (m.query_features(enc, pl, "left")[0] - torch.from_numpy(r["query_img_feat_left"][:, :600])).abs().max()
    assert 1e-6 < d < 0.5
    # outputs do not depend on the order of the points (official init_occ does)
    torch.testing.assert_close(out_perm.left.logit, out.left.logit[:, perm], atol=1e-5, rtol=0)
    torch.testing.assert_close(out_perm.pen_right.logit, out.pen_right.logit[:, perm], atol=1e-5, rtol=0)
    for o in (out.left, out.right, out.pen_left, out.pen_right):
        assert torch.isfinite(o.logit).all() and ((o.occupancy > 0) & (o.occupancy < 1)).all()
        torch.testing.assert_close(o.occupancy, torch.sigmoid(o.logit))


def test_init_occ_frozen_and_in_eval(default_model):
    m = default_model
    m.train()
    assert m.training and not m.init_occ.training and not any(p.requires_grad for p in m.init_occ.parameters())
    assert all(p.requires_grad for p in m.trans_dec.parameters())
    m.eval()


def test_gradients_reach_trainable_parts(default_model, inputs):
    m = default_model
    enc = m.encode_camera(inputs.image, inputs.camera, inputs.left, inputs.right,
                          inputs.anchors_cam_left, inputs.anchors_cam_right)
    out = m.decode(enc, inputs.points_left[:, :50], inputs.points_right[:, :50], pen=True)
    (out.left.occupancy.sum() + out.pen_right.occupancy.sum()).backward()
    for mod in (m.trans_dec, m.trans_enc, m.context_enc, m.image_final_layer, m.hms_global_layer):
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in mod.parameters()), mod
    m.zero_grad(set_to_none=True)


def test_residual_starts_as_initocc_and_adds_the_correction(default_model, inputs):
    """residual=True: a new network returns InitOcc's occupancy (both passes); a trained decoder's output is
    added to InitOcc's max part logit; the official parameters are unchanged."""
    cfg = dataclasses.replace(default_model.config, residual=True)
    fresh = RefOcc(cfg).eval()
    assert fresh.state_dict().keys() == default_model.state_dict().keys()
    fresh.init_occ.load_state_dict(default_model.init_occ.state_dict())
    pl, pr = inputs.points_left[:, :300], inputs.points_right[:, :200]
    enc_args = (inputs.image, inputs.camera, inputs.left, inputs.right, inputs.anchors_cam_left,
                inputs.anchors_cam_right)
    with torch.no_grad():
        out = fresh.decode(fresh.encode_camera(*enc_args), pl, pr, pen=True)
        for o in (out.left, out.right, out.pen_left, out.pen_right):
            torch.testing.assert_close(o.occupancy, o.init_occupancy, atol=1e-6, rtol=0)
        trained = RefOcc(cfg).eval()
        trained.load_state_dict(default_model.state_dict())
        res = trained.decode(trained.encode_camera(*enc_args), pl, pr, pen=True)
        plain = default_model.decode(default_model.encode_camera(*enc_args), pl, pr, pen=True)
        enc = fresh.init_occ.encode(inputs.image, inputs.camera)
        init_logit = fresh.init_occ.decode(enc, inputs.left, pl, "left").part_logits.amax(-1)
    torch.testing.assert_close(res.left.logit, plain.left.logit + init_logit, atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(res.left.init_occupancy, plain.left.init_occupancy)
    with pytest.raises(TypeError, match="residual"):
        RefOccConfig(residual=1)


def test_contact_cue_reads_both_initial_hands(default_model, inputs):
    """contact_cue=True: a new network equals the residual one (the head starts at zero); with a trained head
    the refined logit is the residual logit + head(this hand's, the other hand's frozen InitOcc max part logit
    at the point, clipped), in both passes, with each frozen InitOcc run once per point set; only
    ``contact_head.*`` parameters are added."""
    base_cfg = dataclasses.replace(default_model.config, residual=True)
    cfg = dataclasses.replace(base_cfg, contact_cue=True)
    base, cued = RefOcc(base_cfg).eval(), RefOcc(cfg).eval()
    extra = set(cued.state_dict()) - set(base.state_dict())
    assert extra and all(k.startswith("contact_head.") for k in extra)
    assert set(base.state_dict()) <= set(cued.state_dict())
    base.load_state_dict(default_model.state_dict())
    cued.load_state_dict({**cued.state_dict(), **default_model.state_dict()})
    pl, pr = inputs.points_left[:, :300], inputs.points_right[:, :200]
    enc_args = (inputs.image, inputs.camera, inputs.left, inputs.right, inputs.anchors_cam_left,
                inputs.anchors_cam_right)
    with torch.no_grad():
        ref = base.decode(base.encode_camera(*enc_args), pl, pr, pen=True)
        fresh = cued.decode(cued.encode_camera(*enc_args), pl, pr, pen=True)
        for a, b in ((fresh.left, ref.left), (fresh.right, ref.right), (fresh.pen_left, ref.pen_left)):
            torch.testing.assert_close(a.logit, b.logit)
        torch.manual_seed(0)
        for p in cued.contact_head.parameters():   # a "trained" head
            p.normal_(0, 0.5)
        enc_cued = cued.encode_camera(*enc_args)
        decoded, decode = [], cued.init_occ.decode
        cued.init_occ.decode = lambda *a, **kw: decoded.append(a[2].shape[1]) or decode(*a, **kw)
        out = cued.decode(enc_cued, pl, pr, pen=True)
        del cued.init_occ.decode
        # each frozen InitOcc once per point set: both hands' networks at both hands' points
        assert sum(decoded) == 2 * (pl.shape[1] + pr.shape[1])
        enc = cued.init_occ.encode(inputs.image, inputs.camera)
        init = cued.init_occ
        own_l = init.decode(enc, inputs.left, pl, "left").part_logits.amax(-1)
        right_at_l = init.decode(enc, inputs.right, pl, "right", pen=True, other=inputs.left).part_logits.amax(-1)
        own_r = init.decode(enc, inputs.right, pr, "right").part_logits.amax(-1)
        left_at_r = init.decode(enc, inputs.left, pr, "left", pen=True, other=inputs.right).part_logits.amax(-1)
        head = lambda a, b: cued.contact_head(torch.stack([a, b], -1).clamp(-CUE_CLIP, CUE_CLIP))[..., 0]
        expect = {"left": ref.left.logit + head(own_l, right_at_l),
                  "pen_right": ref.pen_right.logit + head(right_at_l, own_l),
                  "right": ref.right.logit + head(own_r, left_at_r),
                  "pen_left": ref.pen_left.logit + head(left_at_r, own_r)}
    assert float((expect["left"] - ref.left.logit).abs().max()) > 0.1   # the head does change the output
    for name, e in expect.items():
        torch.testing.assert_close(getattr(out, name).logit, e, atol=1e-4, rtol=1e-5)
    for bad in (dict(residual=False), dict(official_quirks=True)):
        with pytest.raises(ValueError, match="contact_cue"):
            RefOccConfig(**{"residual": True, "contact_cue": True, **bad})


def test_runs_under_bf16_autocast_with_the_frozen_initocc_in_float32(default_model, inputs):
    """Training with ``--precision bf16`` autocasts the forward; the frozen InitOcc (float32 buffers inside its
    stacked part decoders) must stay float32 and give the same initial occupancy as without autocast."""
    m = default_model
    args = (inputs.image, inputs.camera, inputs.left, inputs.right, inputs.anchors_cam_left, inputs.anchors_cam_right)
    pl, pr = inputs.points_left[:, :64], inputs.points_right[:, :64]
    with torch.no_grad():
        ref = m.decode(m.encode_camera(*args), pl, pr, pen=True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = m.decode(m.encode_camera(*args), pl, pr, pen=True)
    for a, b in ((out.left, ref.left), (out.pen_right, ref.pen_right)):
        assert a.init_occupancy.dtype == torch.float32
        torch.testing.assert_close(a.init_occupancy, b.init_occupancy)
        assert torch.isfinite(a.logit).all() and float((a.logit.float() - b.logit).abs().max()) < 0.5


def test_bf16_encoder_close_to_float32_on_golden_weights(model, inputs, encoding):
    """``bf16_encoder``: the anchors' encoder under bfloat16 autocast (inference) moves the official network's
    latents by a small fraction of their spread, returns float32, samples the same anchors; the refined logits
    stay close; with autograd the flag is ignored (float32)."""
    fast = RefOcc(dataclasses.replace(model.config, bf16_encoder=True)).eval()
    fast.load_state_dict(model.state_dict())
    args = (inputs.image, inputs.camera, inputs.left, inputs.right, inputs.anchors_cam_left, inputs.anchors_cam_right)
    pl, pr = inputs.points_left[:, :400], inputs.points_right[:, :400]
    with torch.no_grad():
        enc = fast.encode_camera(*args)
        ref, out = model.decode(encoding, pl, pr), fast.decode(enc, pl, pr)
    for side in ("left", "right"):
        a, b = enc.hand(side), encoding.hand(side)
        assert a.z_context.dtype == a.points.anchor_feats.dtype == torch.float32
        # measured: latents within 2 % (z) and 5.3 % (anchor features) of their spread, natively and with
        # ATEN_CPU_CAPABILITY=default (no native bfloat16)
        for got, want in ((a.z_context, b.z_context), (a.points.anchor_feats, b.points.anchor_feats)):
            diff = float((got - want).abs().max())
            assert 0 < diff < 0.1 * float(want.std()), (diff, float(want.std()))
        for i, j in zip(a.points.fps_indices, b.points.fps_indices):
            assert torch.equal(i, j)
        # the golden network's refined logits barely vary (about -1.3 +- 0.05): bound the change by their size
        # (bfloat16 rounds by 2^-8 relative at each of the encoder's ~10 layers; measured 1.2 %)
        lo, lr = getattr(out, side).logit, getattr(ref, side).logit
        assert float((lo - lr).abs().max()) < 0.02 * float(lr.abs().max()) + 1e-3
    with torch.enable_grad():
        grad = fast.encode_camera(*args)
    torch.testing.assert_close(grad.hand("left").z_context.detach(), encoding.hand("left").z_context,
                               atol=1e-5, rtol=1e-5)


# -------------------------------------------------------------------------------------------- errors


def test_input_errors(model, inputs, encoding):
    a = inputs
    enc_args = [a.image, a.camera, a.left, a.right, a.anchors_cam_left, a.anchors_cam_right]

    def enc_with(i, value):
        args = list(enc_args)
        args[i] = value
        return model.encode_camera(*args)

    with pytest.raises(ValueError, match="anchors_left"):
        enc_with(4, a.anchors_cam_left[:, :500])
    with pytest.raises(ValueError, match="anchors_right.*NaN"):
        bad = a.anchors_cam_right.clone()
        bad[0, 3, 1] = float("nan")
        enc_with(5, bad)
    with pytest.raises(ValueError, match="image"):
        enc_with(0, a.image[:, :, :128])
    with pytest.raises(ValueError, match="image and camera: mismatched batch size"):
        c = a.camera
        enc_with(1, Camera(K=c.K.repeat(2, 1, 1), R=c.R.repeat(2, 1, 1), T=c.T.repeat(2, 1)))
    with pytest.raises(TypeError, match="camera"):
        enc_with(1, a.camera.R)
    with pytest.raises(ValueError, match="points_left"):
        model.decode(encoding, a.points_left[0], a.points_right)
    with pytest.raises(ValueError, match="points_right.*NaN"):
        bad = a.points_right.clone()
        bad[0, 0, 0] = float("nan")
        model.decode(encoding, a.points_left, bad)
    with pytest.raises(ValueError, match="points_left and encoding: mismatched batch"):
        model.decode(encoding, a.points_left.repeat(2, 1, 1), a.points_right)
    with pytest.raises(TypeError, match="encoding"):
        model.decode(None, a.points_left, a.points_right)
    with pytest.raises(ValueError, match="chunk_points"):
        RefOccConfig(chunk_points=0)
    assert isinstance(encoding, RefOccEncoding)
