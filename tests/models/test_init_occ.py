"""InitOcc: golden arrays, batching/chunking/point-order behaviour, the batched decoder against a per-bone
loop, state-dict names, and input errors."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from im2hands.hand.camera import Camera
from im2hands.hand.frames import query_to_query
from im2hands.models.init_occ import HandInputs, InitOcc, InitOccConfig
from im2hands.official.check import compare
from im2hands.official.init_occ import check, golden_camera, golden_hand, golden_init_occ
from im2hands.official.tolerance import tolerance_for
from im2hands.models.part_decoder import PartDecoder, Workspace
from tests.conftest import GOLDEN_DIR

SIDES = ("left", "right")
CPU = torch.device("cpu")


# --------------------------------------------------------------------------- slow reference
def reference_part_logits(dec: PartDecoder, points_dec, img_feat, unpose, bone_lengths, *, official_quirks: bool):
    """The official decoder's formulation: one point per row, a Python loop over the 16 bones.

    points_dec (B, N, 3) = p / 0.4; img_feat (B, N, 19); unpose (B, 16, 4, 4); bone_lengths (B, 16).
    Returns (B, N, 16) part logits.
    """
    b, n, _ = points_dec.shape
    q = points_dec.reshape(b * n, 3).float()
    f = img_feat.reshape(b * n, -1)
    u = unpose.float().repeat_interleave(n, dim=0)                       # (BN, 16, 4, 4)
    lengths = bone_lengths.float().repeat_interleave(n, dim=0)           # (BN, 16)
    qh = torch.cat([q, torch.ones_like(q[:, :1])], 1)[:, None, :, None]  # (BN, 1, 4, 1)
    if official_quirks:
        xb = torch.matmul(u.double(), qh.double())[:, :, :3, 0]
    else:
        xb = torch.matmul(u, qh)[:, :, :3, 0]
    latent = dec.bone_encoder(lengths)
    glob = u[:, :, :3, 3].reshape(b * n, 48)
    out = []
    for bone in range(16):
        x = torch.cat([xb[:, bone].float(), lengths[:, bone:bone + 1], latent,
                       getattr(dec, f"global_proj{bone}")(glob)], 1)
        for i in range(5):
            prev = x
            if i == 2:
                x = torch.cat([x, f], 1)
            y = getattr(dec, f"lin{bone}_{i}")(x)
            if i < 4:
                if i > 0:
                    y = y + prev
                y = F.leaky_relu(y, 0.1)
            x = y
        out.append(x[:, 0])
    return torch.stack(out, -1).reshape(b, n, 16)


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def official(golden):
    return golden_init_occ(golden, CPU, official_quirks=True)


@pytest.fixture(scope="module")
def default(golden, official):
    model = InitOcc(InitOccConfig(official_quirks=False)).eval()
    model.load_state_dict(official.state_dict())
    return model


@pytest.fixture(scope="module")
def img_feat(golden):
    return torch.from_numpy(golden["init_occ"]["img_feat"])


@pytest.fixture(scope="module")
def hands(golden):
    return {s: golden_hand(golden, s, CPU) for s in SIDES}


@pytest.fixture(scope="module")
def points(golden):
    return {s: torch.from_numpy(golden.inputs[f"p_{s}"]) for s in SIDES}


@pytest.fixture(scope="module")
def camera(golden):
    return golden_camera(golden, CPU)


# --------------------------------------------------------------------------- golden
@pytest.fixture(scope="module")
def golden_results(golden):
    return {r.name: r for r in check(golden, CPU)}


GOLDEN_NAMES = [f"{k}_{s}" for s in SIDES for k in (
    "occ", "query_token", "local_img_feat", "grid_tokens", "part_logits", "bone_latent", "global_proj",
    "bone_coords", "pen_init_occ")] + ["img_feat"]


@pytest.mark.parametrize("name", GOLDEN_NAMES)
def test_golden_array(golden_results, name):
    r = golden_results[name]
    assert r.passed, r.line()


def test_golden_check_covers_every_array(golden, golden_results):
    assert set(golden["init_occ"]) <= set(golden_results)
    assert set(golden_results) == set(GOLDEN_NAMES)


# --------------------------------------------------------------------------- batching, subsets, order
def _perturbed_hand(h: HandInputs, seed: int) -> HandInputs:
    g = torch.Generator().manual_seed(seed)
    return HandInputs(unpose=h.unpose + 0.02 * torch.randn(h.unpose.shape, generator=g, dtype=h.unpose.dtype),
                      bone_lengths=h.bone_lengths * 1.05,
                      root_rot_mat=h.root_rot_mat, root=h.root + 0.01)


def _stack_hands(a: HandInputs, b: HandInputs) -> HandInputs:
    return HandInputs(*(torch.cat([getattr(a, f.name), getattr(b, f.name)]) for f in dataclasses.fields(a)))


@pytest.mark.parametrize("model_name", ["official", "default"])
def test_batch_of_two_equals_per_row_runs(request, model_name, img_feat, camera, hands, points):
    model = request.getfixturevalue(model_name)
    side = "right"
    h0, h1 = hands[side], _perturbed_hand(hands[side], 1)
    p0 = points[side]
    p1 = p0.flip(1) * 0.9 + 0.01
    feat1 = img_feat * 0.8 + 0.05
    cam1 = Camera(K=camera.K, R=camera.R, T=camera.T + torch.tensor([0.01, -0.02, 0.03]))
    with torch.no_grad():
        enc2 = model.encode_features(torch.cat([img_feat, feat1]), Camera(
            torch.cat([camera.K, cam1.K]), torch.cat([camera.R, cam1.R]), torch.cat([camera.T, cam1.T])))
        both = model.decode(enc2, _stack_hands(h0, h1), torch.cat([p0, p1]), side)
        row0 = model.decode(model.encode_features(img_feat, camera), h0, p0, side)
        row1 = model.decode(model.encode_features(feat1, cam1), h1, p1, side)
    torch.testing.assert_close(both.part_logits[:1], row0.part_logits, atol=1e-6, rtol=0)
    torch.testing.assert_close(both.part_logits[1:], row1.part_logits, atol=1e-6, rtol=0)
    torch.testing.assert_close(both.occupancy, torch.cat([row0.occupancy, row1.occupancy]), atol=1e-6, rtol=0)
    assert (row0.part_logits - row1.part_logits).abs().max() > 1e-3  # the second row really differs


@pytest.mark.parametrize("side", SIDES)
def test_official_subset_keeping_query0_reproduces_golden(official, golden, img_feat, camera, hands, points,
                                                          side):
    g = torch.Generator().manual_seed(7)
    idx = torch.cat([torch.zeros(1, dtype=torch.long), 1 + torch.randperm(2047, generator=g)[:300]])
    with torch.no_grad():
        out = official.decode(official.encode_features(img_feat, camera), hands[side], points[side][:, idx], side)
    exp = golden["init_occ"]
    np.testing.assert_allclose(out.part_logits.numpy(), exp[f"part_logits_{side}"][:, idx.numpy()], atol=2e-6, rtol=0)
    np.testing.assert_allclose(out.occupancy.numpy(), exp[f"occ_{side}"][:, idx.numpy()], atol=2e-6, rtol=0)


def test_official_depends_on_query0_default_does_not(official, default, img_feat, camera, hands, points):
    side = "left"
    p = points[side]
    perm = torch.randperm(p.shape[1], generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        outs = {}
        for name, model in (("official", official), ("default", default)):
            enc = model.encode_features(img_feat, camera)
            a = model.decode(enc, hands[side], p, side).part_logits
            b = model.decode(enc, hands[side], p[:, perm], side).part_logits[:, perm.argsort()]
            outs[name] = (a - b).abs().max().item()
    assert outs["official"] > 1e-4          # quirk: a different query 0 changes every output
    assert outs["default"] <= 1e-6          # fix: order does not matter


@pytest.mark.parametrize("model_name", ["official", "default"])
def test_internal_chunking_does_not_change_results(request, model_name, img_feat, camera, hands, points):
    model = request.getfixturevalue(model_name)
    small = InitOcc(dataclasses.replace(model.config, chunk_points=97)).eval()
    small.load_state_dict(model.state_dict())
    side = "right"
    with torch.no_grad():
        a = model.decode(model.encode_features(img_feat, camera), hands[side], points[side], side)
        b = small.decode(small.encode_features(img_feat, camera), hands[side], points[side], side)
    torch.testing.assert_close(a.part_logits, b.part_logits, atol=1e-6, rtol=0)


def test_default_mode_caller_chunks_equal_one_call(default, img_feat, camera, hands, points):
    side = "left"
    with torch.no_grad():
        enc = default.encode_features(img_feat, camera)
        whole = default.decode(enc, hands[side], points[side], side).occupancy
        parts = torch.cat([default.decode(enc, hands[side], c, side).occupancy
                           for c in points[side].split(500, dim=1)], dim=1)
    torch.testing.assert_close(parts, whole, atol=1e-6, rtol=0)


def test_default_pen_is_occupancy_at_the_same_physical_points(default, img_feat, camera, hands, points):
    with torch.no_grad():
        enc = default.encode_features(img_feat, camera)
        p_right = points["right"][:, :256]
        pen = default.decode(enc, hands["left"], p_right, "left", pen=True, other=hands["right"])
        r, lh = hands["right"], hands["left"]
        local = query_to_query(p_right, r.root, r.root_rot_mat, "right", lh.root, lh.root_rot_mat, "left")
        plain = default.decode(enc, hands["left"], local, "left")
        back = query_to_query(local, lh.root, lh.root_rot_mat, "left", r.root, r.root_rot_mat, "right")
    torch.testing.assert_close(back, p_right, atol=2e-6, rtol=0)
    torch.testing.assert_close(pen.part_logits, plain.part_logits, atol=1e-6, rtol=0)


def test_empty_point_set(default, img_feat, camera, hands):
    with torch.no_grad():
        out = default.decode(default.encode_features(img_feat, camera), hands["left"], torch.zeros(1, 0, 3), "left")
    assert out.occupancy.shape == (1, 0) and out.part_logits.shape == (1, 0, 16)


# --------------------------------------------------------------------------- batched decoder vs loop
@pytest.mark.parametrize("official_mode", [True, False])
@pytest.mark.parametrize("b,n", [(1, 1), (2, 33), (3, 130)])
def test_batched_decoder_equals_per_bone_loop(official_mode, b, n):
    torch.manual_seed(b * 1000 + n)
    dec = PartDecoder().eval()
    q = torch.randn(b, n, 3)
    f = torch.randn(b, n, 19)
    u = torch.eye(4, dtype=torch.float64).repeat(b, 16, 1, 1)
    u[:, :, :3, :] += 0.3 * torch.randn(b, 16, 3, 4, dtype=torch.float64)
    lengths = 0.02 + 0.03 * torch.rand(b, 16)
    with torch.no_grad():
        fast = dec(q, f, dec.hand_code(u, lengths), official_quirks=official_mode)
        ws = Workspace(q.device)
        buffered = [dec(q[:, :k], f[:, :k], dec.hand_code(u, lengths), official_quirks=official_mode, workspace=ws)
                    for k in (n, max(1, n // 2))]   # reuse the buffers with a second, smaller chunk
        slow = reference_part_logits(dec, q, f, u, lengths, official_quirks=official_mode)
    torch.testing.assert_close(fast, slow, atol=2e-6, rtol=0)
    torch.testing.assert_close(buffered[0], fast, atol=1e-6, rtol=0)   # preallocated outputs: same maths
    torch.testing.assert_close(buffered[1], fast[:, :max(1, n // 2)], atol=1e-6, rtol=0)


def test_batched_decoder_gradients_equal_per_bone_loop():
    torch.manual_seed(0)
    dec = PartDecoder()
    q = torch.randn(2, 17, 3, requires_grad=True)
    f = torch.randn(2, 17, 19, requires_grad=True)
    u = torch.eye(4).repeat(2, 16, 1, 1) + 0.2 * F.pad(torch.randn(2, 16, 3, 4), (0, 0, 0, 1))
    lengths = 0.02 + 0.03 * torch.rand(2, 16)
    w = torch.randn(2, 17, 16)
    grads = []
    for fn in (lambda: dec(q, f, dec.hand_code(u, lengths), official_quirks=False),
               lambda: reference_part_logits(dec, q, f, u, lengths, official_quirks=False)):
        dec.zero_grad()
        q.grad = f.grad = None
        (fn() * w).sum().backward()
        params = (dec.lin3_1.weight, dec.global_proj5.weight, dec.bone_encoder.linear1.weight, dec.lin15_2.weight)
        grads.append([q.grad.clone(), f.grad.clone()] + [p.grad.clone() for p in params])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_stacked_weight_cache_follows_parameter_updates():
    dec = PartDecoder()
    with torch.no_grad():
        w1 = dec.stacked_weights()
        assert dec.stacked_weights() is w1
        dec.lin4_1.weight.add_(1.0)
        w2 = dec.stacked_weights()
    assert w2 is not w1
    torch.testing.assert_close(w2.w1[4] - w1.w1[4], torch.ones(64, 64))


# --------------------------------------------------------------------------- names and errors
def test_state_dict_keys_and_shapes_equal_official_manifest(default):
    manifest = json.loads((GOLDEN_DIR / "keys_init_occ.json").read_text())
    sd = default.state_dict()
    assert list(sd) == [e["key"] for e in manifest]
    assert [tuple(v.shape) for v in sd.values()] == [tuple(e["shape"]) for e in manifest]


def test_bad_inputs_raise_clear_errors(default, img_feat, camera, hands, points):
    enc = default.encode_features(img_feat, camera)
    h, p = hands["left"], points["left"]
    with pytest.raises(ValueError, match=r"points: expected shape \(B, N, 3\)"):
        default.decode(enc, h, p[..., :2], "left")
    bad = p.clone()
    bad[0, 5, 1] = float("nan")
    with pytest.raises(ValueError, match=r"points: contains NaN or inf \(first at index \(0, 5, 1\)"):
        default.decode(enc, h, bad, "left")
    with pytest.raises(ValueError, match=r"points and hand: mismatched batch size \(2 vs 1\)"):
        default.decode(enc, h, p.repeat(2, 1, 1), "left")
    h2 = _stack_hands(h, h)
    with pytest.raises(ValueError, match=r"points and encoding: mismatched batch size \(2 vs 1\)"):
        default.decode(enc, h2, p.repeat(2, 1, 1), "left")
    with pytest.raises(ValueError, match=r"side: expected 'left' or 'right', got 'up'"):
        default.decode(enc, h, p, "up")
    with pytest.raises(TypeError, match=r"other: pen=True needs the other hand's HandInputs"):
        default.decode(enc, h, p, "left", pen=True)
    with pytest.raises(ValueError, match=r"hand.unpose: expected shape \(B, 16, 4, 4\)"):
        HandInputs(h.unpose[:, :15], h.bone_lengths, h.root_rot_mat, h.root)
    with pytest.raises(ValueError, match=r"hand.bone_lengths and hand.unpose: mismatched batch size"):
        HandInputs(h.unpose, h.bone_lengths.repeat(2, 1), h.root_rot_mat, h.root)
    with pytest.raises(ValueError, match=r"camera.T: expected shape \(3,\) or \(B, 3\)"):
        Camera(camera.K, camera.R, camera.T[:, :2])
    with pytest.raises(ValueError, match=r"img_feat: expected shape \(B, 32, 64, 64\)"):
        default.encode_features(img_feat[:, :16], camera)
    # the image itself: size named against `image` (not a later feature map), NaN refused before encoding
    with pytest.raises(ValueError, match=r"image: expected shape \(B, 3, 256, 256\), got \(1, 3, 224, 224\)"):
        default.encode(torch.zeros(1, 3, 224, 224), camera)
    nan_image = torch.zeros(1, 3, 256, 256)
    nan_image[0, 1, 100, 3] = float("nan")
    with pytest.raises(ValueError, match=r"image: contains NaN or inf \(first at index \(0, 1, 100, 3\)"):
        default.encode(nan_image, camera)
    with pytest.raises(ValueError, match=r"chunk_points: expected a positive int"):
        InitOccConfig(chunk_points=0)


def test_training_forward_backward_matches_inference(golden):
    from im2hands.models.encoder import ImageEncoderConfig

    torch.manual_seed(0)
    model = InitOcc(InitOccConfig(image_encoder=ImageEncoderConfig(depth=18), chunk_points=300)).train()
    for mod in model.modules():   # dropout off so that the two passes compute the same function
        if isinstance(mod, torch.nn.Dropout):
            mod.p = 0.0
    image = torch.from_numpy(golden.inputs["image"])
    camera = golden_camera(golden, CPU)
    hands = {s: golden_hand(golden, s, CPU) for s in SIDES}
    pts = {s: torch.from_numpy(golden.inputs[f"p_{s}"])[:, :500] for s in SIDES}
    left, right = model(image, camera, hands["left"], hands["right"], pts["left"], pts["right"])
    # the hard max routes the occupancy gradient to one part per point; the logit term reaches every part
    loss = ((left.occupancy - 1) ** 2).mean() + (right.occupancy ** 2).mean() + 1e-3 * left.part_logits.square().mean()
    loss.backward()
    for name in ("left_decoder.lin7_2.weight", "right_decoder.lin0_0.weight", "img_ex_left.attn.fc.weight",
                 "right_pt_embeddings.0.weight", "image_final_layer.weight", "image_encoder.resnet.conv1.weight"):
        grad = dict(model.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name
    with torch.no_grad():
        enc = model.encode(image, camera)
        again = model.decode(enc, hands["left"], pts["left"], "left")
    torch.testing.assert_close(again.part_logits, left.part_logits.detach(), atol=1e-5, rtol=0)


@pytest.mark.parametrize("side", SIDES)
def test_hand_inputs_from_canonical_and_camera_convention(golden, side):
    from im2hands.hand.canonical import canonicalise, query_to_points
    joints = torch.from_numpy(golden.inputs[f"joints_world_{side}"])
    hand = HandInputs.from_canonical(canonicalise(joints, side))
    ref = golden_hand(golden, side, CPU)
    # recomputed from the keypoints: the golden rule of the canonical transforms (float32 kernels differ by CPU)
    r = compare("init_occ", f"unpose_{side}", hand.unpose, ref.unpose.numpy(), tolerance_for(f"unpose_{side}"))
    assert r.passed, r.line()
    torch.testing.assert_close(hand.root, ref.root, atol=1e-7, rtol=0)   # true axes for both sides
    # the model's query -> camera map agrees with hand.canonical's query -> world map
    cam = golden_camera(golden, CPU)
    p = torch.from_numpy(golden.inputs[f"p_{side}"])[:, :64]
    world = query_to_points(p.double(), joints[:, 0], ref.root_rot_mat.double(), side)
    expected = world @ cam.R.double().transpose(1, 2) + cam.T.double().unsqueeze(1)
    torch.testing.assert_close(ref.to_camera(p, side, cam).double(), expected, atol=2e-6, rtol=0)


@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize("official_mode", [True, False])
def test_golden_decoder_in_isolation(golden, side, official_mode):
    """The part decoder alone, fed the golden image features: logits, latents, projections, bone coords."""
    from im2hands.official.image_encoder import sub_state_dict
    from im2hands.models.part_decoder import bone_coords

    dec = PartDecoder().eval()
    dec.load_state_dict(sub_state_dict(golden.state_dict("init_occ"), f"{side}_decoder."))
    g, hand = golden["init_occ"], golden_hand(golden, side, CPU)
    q = torch.from_numpy(golden.inputs[f"p_{side}"]) / 0.4
    with torch.no_grad():
        code = dec.hand_code(hand.unpose, hand.bone_lengths)
        logits = dec(q, torch.from_numpy(g[f"local_img_feat_{side}"]), code, official_quirks=official_mode)
        coords = bone_coords(q, hand.unpose, official_quirks=official_mode)
    np.testing.assert_allclose(logits.numpy(), g[f"part_logits_{side}"], atol=2e-6, rtol=0)
    np.testing.assert_allclose(code.bone_latent.numpy(), g[f"bone_latent_{side}"], atol=1e-7, rtol=0)
    np.testing.assert_allclose(code.global_proj.numpy(), g[f"global_proj_{side}"], atol=1e-7, rtol=0)
    np.testing.assert_allclose(coords.numpy(), g[f"bone_coords_{side}"], atol=1e-12 if official_mode else 2e-6,
                               rtol=0)
    assert coords.dtype == (torch.float64 if official_mode else torch.float32)


@pytest.mark.parametrize("side", SIDES)
def test_bf16_decoder_close_to_float32_on_golden_weights(default, img_feat, camera, hands, points, side):
    """``bf16_decoder``: layers 1-4 of the part decoders in bfloat16 change the official network's part logits
    by a small fraction of their spread (bfloat16 rounds by 2^-8 relative at each of four layers), in several
    chunks; with autograd the flag is ignored (the float32 path runs)."""
    fast = InitOcc(dataclasses.replace(default.config, bf16_decoder=True, chunk_points=700)).eval()
    fast.load_state_dict(default.state_dict())
    with torch.no_grad():
        enc = default.encode_features(img_feat, camera)
        ref = default.decode(enc, hands[side], points[side], side)
        out = fast.decode(enc, hands[side], points[side], side)
    assert out.part_logits.dtype == torch.float32
    diff = (out.part_logits - ref.part_logits).abs()
    spread = float(ref.part_logits.std())
    assert 0 < float(diff.max()) < 0.03 * spread, (float(diff.max()), spread)
    assert float(((out.part_logits > 0) != (ref.part_logits > 0)).float().mean()) < 0.01
    with torch.enable_grad():
        grad = fast.decode(enc, hands[side], points[side][:, :100], side)
    torch.testing.assert_close(grad.part_logits.detach(), ref.part_logits[:, :100], atol=1e-5, rtol=1e-5)
    with pytest.raises(TypeError, match="bf16_decoder"):
        InitOccConfig(bf16_decoder=1)
