"""Point transformer: FPS with the CUDA kernel's rules, kNN, golden encoder/context/decoder pieces, fast
decoder == reference decoder (values and gradients), input errors."""

import numpy as np
import pytest
import torch

from im2hands.official.ref_occ import rule_sub_state_dict
from im2hands.models.point_transformer import (FPS_SKIP_SQ_NORM, PointTransformerDecoderOcc,
                                               PointTransformerEncoder, furthest_point_sample, knn_indices,
                                               squared_distances)


def fps_loop(xyz: np.ndarray, m: int, skip: float | None) -> np.ndarray:
    """Slow reference: the pointnet2_ops kernel for one cloud, point by point, in float32."""
    xyz = xyz.astype(np.float32)
    n = len(xyz)
    temp = np.full(n, 1e10, dtype=np.float32)
    out = [0]
    old = 0
    for _ in range(1, m):
        best, besti = np.float32(-1), 0
        x1, y1, z1 = xyz[old]
        for k in range(n):
            x2, y2, z2 = xyz[k]
            mag = x2 * x2 + y2 * y2 + z2 * z2
            if skip is not None and mag <= skip:
                continue
            d = (x2 - x1) * (x2 - x1) + (y2 - y1) * (y2 - y1) + (z2 - z1) * (z2 - z1)
            d2 = min(d, temp[k])
            temp[k] = d2
            if d2 > best:
                best, besti = d2, k
        old = besti
        out.append(old)
    return np.array(out)


@pytest.mark.parametrize("seed,b,n,m", [(0, 1, 40, 10), (1, 3, 64, 32), (2, 2, 100, 50), (3, 2, 30, 30)])
@pytest.mark.parametrize("skip", [FPS_SKIP_SQ_NORM, None])
def test_fps_matches_kernel_loop(seed, b, n, m, skip):
    g = torch.Generator().manual_seed(seed)
    xyz = torch.randn(b, n, 3, generator=g) * 0.05       # metres: a good share falls in the 3.16 cm ball
    if skip is not None:
        inside = (xyz * xyz).sum(-1) <= skip
        assert inside.any(), "the sweep must exercise the skip rule"
    got = furthest_point_sample(xyz, m, skip_sq_norm=skip)
    assert got.dtype == torch.long and got.shape == (b, m)
    for i in range(b):
        np.testing.assert_array_equal(got[i].numpy(), fps_loop(xyz[i].numpy(), m, skip))


def test_fps_skipped_points_never_selected_and_all_skipped_gives_zero():
    xyz = torch.tensor([[[0.001, 0.0, 0.0], [0.01, 0.0, 0.0], [0.2, 0.0, 0.0], [0.0, 0.3, 0.0],
                         [0.0, 0.0, 0.02]]])
    idx = furthest_point_sample(xyz, 5)
    assert idx[0, 0] == 0
    assert set(idx[0, 1:].tolist()) <= {2, 3}             # 1 and 4 lie inside the skip ball
    all_skipped = torch.full((2, 6, 3), 0.001)
    assert furthest_point_sample(all_skipped, 4).eq(0).all()


def test_fps_without_skip_equals_plain_fps():
    xyz = torch.tensor([[[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 0.5]]])
    assert furthest_point_sample(xyz, 4, skip_sq_norm=None)[0].tolist() == [0, 2, 1, 3]


def test_knn_matches_sorted_distances():
    g = torch.Generator().manual_seed(5)
    q, p = torch.randn(2, 50, 3, generator=g), torch.randn(2, 80, 3, generator=g)
    idx = knn_indices(q, p, 9)
    d = ((q[:, :, None].double() - p[:, None].double()) ** 2).sum(-1)
    np.testing.assert_array_equal(idx.numpy(), d.argsort(dim=-1)[..., :9].numpy())
    assert knn_indices(p, p, 1)[..., 0].equal(torch.arange(80).expand(2, 80))   # a point is its own neighbour


def test_squared_distances_from_differences():
    a = torch.tensor([[[10.0, 0.0, 0.0]]])
    b = torch.tensor([[[10.0 + 2 ** -10, 0.0, 0.0], [10.0, 2 ** -11, 2 ** -12]]])   # exact in float32
    d = squared_distances(a, b)
    expected = torch.tensor([[[2.0 ** -20, 2.0 ** -22 + 2.0 ** -24]]])
    assert torch.equal(d, expected)
    expanded = (a * a).sum(-1)[..., None] + (b * b).sum(-1)[:, None] - 2 * a @ b.transpose(1, 2)
    assert not torch.allclose(expanded, expected, rtol=1e-2, atol=0)   # the form kNN must not use
    with pytest.raises(ValueError, match="k=5"):
        knn_indices(a, b, 5)


# ------------------------------------------------------------------------------------------- golden pieces


@pytest.fixture(scope="module")
def nets(golden):
    enc, dec = PointTransformerEncoder(), PointTransformerDecoderOcc()
    enc.load_state_dict(rule_sub_state_dict(golden, "trans_enc."))
    dec.load_state_dict(rule_sub_state_dict(golden, "trans_dec."))
    ctx = torch.nn.Linear(768, 256)
    ctx.load_state_dict(rule_sub_state_dict(golden, "context_enc.0."))
    return enc.eval(), dec.eval(), ctx.eval()


@pytest.fixture(scope="module")
def encodings(golden, nets):
    r = golden["ref_occ"]
    center = torch.from_numpy(r["center_xyz"])[:, None]
    out = {}
    with torch.no_grad():
        for side, label in (("left", [1.0, 0.0]), ("right", [0.0, 1.0])):
            xyz = torch.from_numpy(r[f"anchor_xyz_flip_{side}"]) - center
            feat = torch.cat([torch.from_numpy(r[f"anchor_img_feat_{side}"]),
                              torch.tensor(label).expand(1, 512, 2)], dim=2)
            out[side] = nets[0](xyz, feat)
    return out


@pytest.mark.parametrize("side", ["left", "right"])
def test_golden_encoder(golden, encodings, side):
    r, e = golden["ref_occ"], encodings[side]
    np.testing.assert_array_equal(e.fps_indices[0].numpy(), r[f"fps_idx_stage1_{side}"])
    np.testing.assert_array_equal(e.fps_indices[1].numpy(), r[f"fps_idx_stage2_{side}"])
    np.testing.assert_allclose(e.anchors.numpy(), r[f"enc_anchors_{side}"], atol=1e-7, rtol=0)
    np.testing.assert_allclose(e.z.numpy(), r[f"enc_z_{side}"], atol=2e-5, rtol=0)
    np.testing.assert_allclose(e.anchor_feats.numpy(), r[f"enc_anchor_feats_{side}"], atol=2e-5, rtol=0)


def test_golden_fps_needs_the_skip_rule(golden):
    """The public set has anchors inside the skip ball: a plain FPS picks other indices."""
    r = golden["ref_occ"]
    xyz = torch.from_numpy(r["anchor_xyz_flip_right"]) - torch.from_numpy(r["center_xyz"])[:, None]
    plain = furthest_point_sample(xyz, 256, skip_sq_norm=None)
    assert not np.array_equal(plain.numpy(), r["fps_idx_stage1_right"])


def test_golden_context(golden, nets):
    r = golden["ref_occ"]
    zl, zr, g = (torch.from_numpy(r[k]) for k in ("enc_z_left", "enc_z_right", "img_global"))
    ctx = nets[2]
    with torch.no_grad():
        np.testing.assert_allclose(ctx(torch.cat([zl, zr, g], 1)).numpy(), r["ctx_z_left"], atol=2e-5, rtol=0)
        np.testing.assert_allclose(ctx(torch.cat([zr, zl, g], 1)).numpy(), r["ctx_z_right"], atol=2e-5, rtol=0)
        cl, cr = torch.from_numpy(r["ctx_z_left"]), torch.from_numpy(r["ctx_z_right"])
        np.testing.assert_allclose(ctx(torch.cat([cl, cr, g], 1)).numpy(), r["pen_ctx_z_left"], atol=2e-5, rtol=0)


def _decoder_inputs(r, side, prefix=""):
    q = "right" if (prefix and side == "left") else "left" if prefix else side
    xyz = torch.from_numpy(r[f"query_xyz_flip_{q}"]) - torch.from_numpy(r["center_xyz"])[:, None]
    occ = torch.from_numpy(r[f"{prefix}init_occ_{side}"])
    feat = torch.cat([torch.from_numpy(r[f"query_img_feat_{q}"]), occ[..., None].expand(-1, -1, 32)], dim=2)
    return xyz, feat, torch.from_numpy(r[f"{prefix}ctx_z_{side}"])


@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("prefix", ["", "pen_"])
def test_golden_decoder_reference_and_fast(golden, nets, encodings, side, prefix):
    r, dec, e = golden["ref_occ"], nets[1], encodings[side]
    xyz, feat, z = _decoder_inputs(r, side, prefix)
    expected = r[f"{prefix}ref_logit_{side}"]
    with torch.no_grad():
        ref = dec.forward_reference(xyz, feat, z, e.anchors, e.anchor_feats)
        fast = dec(xyz, feat, dec.precompute(z, e.anchors, e.anchor_feats), chunk_size=300)
    np.testing.assert_allclose(ref.numpy(), expected, atol=1.5e-5, rtol=0)
    np.testing.assert_allclose(fast.numpy(), expected, atol=1.5e-5, rtol=0)


# ------------------------------------------------------------------------------------ fast == reference


@pytest.fixture(scope="module")
def random_decoder():
    torch.manual_seed(0)
    dec = PointTransformerDecoderOcc()
    for p in dec.parameters():          # non-zero everywhere (torch zero-inits nothing here, but be sure)
        torch.nn.init.normal_(p, std=0.1)
    return dec.eval()


@pytest.mark.parametrize("b,n,s,chunk", [(1, 1, 9, 7), (2, 37, 20, 8), (3, 100, 128, 4096)])
def test_fast_decoder_equals_reference(random_decoder, b, n, s, chunk):
    g = torch.Generator().manual_seed(b * 100 + n)
    xyz, feat = torch.randn(b, n, 3, generator=g) * 0.05, torch.randn(b, n, 64, generator=g)
    z, anchors = torch.randn(b, 256, generator=g), torch.randn(b, s, 3, generator=g) * 0.05
    lat = torch.randn(b, s, 256, generator=g)
    dec = random_decoder
    with torch.no_grad():
        ref = dec.forward_reference(xyz, feat, z, anchors, lat)
        fast = dec(xyz, feat, dec.precompute(z, anchors, lat), chunk_size=chunk)
    torch.testing.assert_close(fast, ref, atol=2e-5, rtol=1e-5)


@pytest.mark.parametrize("side", ["left", "right"])
def test_bf16_decoder_close_to_float32_on_golden_weights(golden, nets, encodings, side):
    """The bfloat16 products change the official network's logits by a small fraction of their spread (the
    bound: bfloat16's 2^-8 relative rounding through three products), over several chunks; with autograd
    the flag is ignored (the float32 path runs)."""
    r, dec, e = golden["ref_occ"], nets[1], encodings[side]
    xyz, feat, z = _decoder_inputs(r, side, "")
    cache = dec.precompute(z, e.anchors, e.anchor_feats)
    with torch.no_grad():
        fp32 = dec(xyz, feat, cache, chunk_size=300)
        bf16 = dec(xyz, feat, cache, chunk_size=300, bf16=True)
    diff = (bf16 - fp32).abs()
    assert 0 < float(diff.max()) < 0.02 * float(fp32.std()) + 1e-3, (float(diff.max()), float(fp32.std()))
    assert float(((bf16 > 0) != (fp32 > 0)).float().mean()) < 0.01
    with torch.enable_grad():
        torch.testing.assert_close(dec(xyz[:, :50], feat[:, :50], cache, bf16=True).detach(), fp32[:, :50],
                                   atol=1.5e-5, rtol=0)


def test_fast_decoder_gradients_equal_reference(random_decoder):
    g = torch.Generator().manual_seed(3)
    xyz, feat = torch.randn(2, 30, 3, generator=g) * 0.05, torch.randn(2, 30, 64, generator=g)
    anchors, lat = torch.randn(2, 16, 3, generator=g) * 0.05, torch.randn(2, 16, 256, generator=g)
    dec = random_decoder
    grads = []
    for fast in (False, True):
        z = torch.randn(2, 256, generator=torch.Generator().manual_seed(4)).requires_grad_()
        la = lat.clone().requires_grad_()
        dec.zero_grad()
        out = dec(xyz, feat, dec.precompute(z, anchors, la), chunk_size=7) if fast else \
            dec.forward_reference(xyz, feat, z, anchors, la)
        (out.sin().sum()).backward()
        grads.append((z.grad, la.grad, dec.ct1.fc_delta[2].weight.grad.clone(), dec.fc_c[3].weight.grad.clone()))
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_decoder_and_encoder_errors(random_decoder):
    dec = random_decoder
    xyz, feat, z = torch.zeros(1, 5, 3), torch.zeros(1, 5, 64), torch.zeros(1, 256)
    anchors, lat = torch.randn(1, 16, 3), torch.zeros(1, 16, 256)
    with pytest.raises(ValueError, match="query_feat"):
        dec.forward_reference(xyz, torch.zeros(1, 5, 63), z, anchors, lat)
    with pytest.raises(ValueError, match="disagree"):
        dec.forward_reference(xyz, torch.zeros(1, 6, 64), z, anchors, lat)
    with pytest.raises(ValueError, match="at least 9 anchors"):
        dec(xyz, feat, dec.precompute(z, anchors[:, :4], lat[:, :4]))
    with pytest.raises(ValueError, match="chunk_size"):
        dec(xyz, feat, dec.precompute(z, anchors, lat), chunk_size=0)
    enc = PointTransformerEncoder()
    with pytest.raises(ValueError, match="feats"):
        enc(torch.zeros(1, 512, 3), torch.zeros(1, 512, 33))
    with pytest.raises(ValueError, match="xyz"):
        enc(torch.zeros(1, 512, 2), torch.zeros(1, 512, 34))
