"""KptsRef: golden official forward, official quirks vs fixed mode, batch independence, input normalisation."""

import dataclasses
import json

import pytest
import torch

from im2hands.official import kpts_ref as golden_check
from im2hands.models.encoder import ImageEncoderConfig
from im2hands.hand.skeleton import reorder
from im2hands.models.kpts_ref import (
    KptsRef, KptsRefConfig, chebyshev_basis, hand_graph, keypoints_to_camera, network_keypoints, network_to_camera,
)
from im2hands.official.inputs import normalise_keypoints

from ..conftest import GOLDEN_DIR

# The official edge list of core_kpts_ref.hand_joint_graph (HALO order), written out as a known answer.
OFFICIAL_EDGES = [(0, 13), (13, 14), (14, 15), (15, 16), (0, 1), (1, 2), (2, 3), (3, 17), (0, 4), (4, 5), (5, 6),
                  (6, 18), (0, 10), (10, 11), (11, 12), (12, 19), (0, 7), (7, 8), (8, 9), (9, 20)]


@pytest.fixture(scope="module")
def model(golden):
    return golden_check.golden_model(golden, torch.device("cpu"))


@pytest.fixture(scope="module")
def inputs(golden):
    return golden_check.golden_inputs(golden, torch.device("cpu"))


@pytest.fixture(scope="module")
def results(golden):
    return {r.name: r for r in golden_check.check(golden, torch.device("cpu"))}


NAMES = ["kpts_in_left", "kpts_in_right", "left_mid_joint", "kpts_out_left", "kpts_out_right", "img_proj"] + [
    f"gcn{i}_feat_{s}" for i in range(4) for s in ("left", "right")]


@pytest.mark.parametrize("name", NAMES)
def test_golden_array(results, name):
    assert results[name].passed, results[name].line()


def test_golden_covers_every_output_array(golden, results):
    assert set(results) == {n for n in golden["kpts_ref"] if not n.startswith("joints_halo_rootrel")}


@pytest.mark.parametrize("official", [True, False])
def test_state_dict_matches_official_manifest(official):
    manifest = json.loads((GOLDEN_DIR / "keys_kpts_ref.json").read_text())
    expected = {e["key"]: tuple(e["shape"]) for e in manifest}
    ours = {k: tuple(v.shape) for k, v in KptsRef(KptsRefConfig(official_quirks=official)).state_dict().items()}
    assert ours == expected


def test_official_graph_is_the_raw_directed_adjacency():
    expected = torch.zeros(21, 21)
    for p, c in OFFICIAL_EDGES:
        expected[p, c] = 1.0
    assert torch.equal(hand_graph(official_quirks=True), expected)


def test_default_graph_is_the_rescaled_normalised_laplacian():
    g = hand_graph(official_quirks=False, dtype=torch.float64)
    adj = torch.zeros(21, 21, dtype=torch.float64)
    for p, c in OFFICIAL_EDGES:
        adj[p, c] = adj[c, p] = 1.0
    lap = torch.eye(21, dtype=torch.float64) - adj / torch.outer(adj.sum(1), adj.sum(1)).sqrt()
    torch.testing.assert_close(g, lap - torch.eye(21, dtype=torch.float64), atol=1e-15, rtol=0)
    eig = torch.linalg.eigvalsh(g)
    assert eig.min() >= -1 - 1e-12 and eig.max() <= 1 + 1e-12


@pytest.mark.parametrize("order", [1, 2, 3])
def test_chebyshev_basis_matches_official_layout(order):
    """Slow reference: IntagHand's graph_conv_cheby layout (V x Fin*B mm, then (B, V, Fin, K) flatten)."""
    torch.manual_seed(order)
    b, v, f = 2, 21, 5
    x = torch.randn(b, v, f, dtype=torch.float64)
    lap = hand_graph(official_quirks=False, dtype=torch.float64)
    x0 = x.permute(1, 2, 0).reshape(v, f * b)
    terms = [x0]
    if order > 1:
        terms.append(lap @ x0)
    for _ in range(2, order):
        terms.append(2 * lap @ terms[-1] - terms[-2])
    ref = torch.stack(terms).view(order, v, f, b).permute(3, 1, 2, 0).reshape(b, v, f * order)
    torch.testing.assert_close(chebyshev_basis(x, lap, order), ref, atol=1e-12, rtol=0)


@pytest.fixture(scope="module")
def kin(inputs):
    return normalise_keypoints(inputs["joints_left"], inputs["joints_right"], cam_R=inputs["cam_R"],
                               cam_T=inputs["cam_T"], left_root_xyz=inputs["left_root_xyz"],
                               right_root_xyz=inputs["right_root_xyz"])


@pytest.fixture(scope="module")
def features(model, inputs):
    with torch.no_grad():
        return model.image_encoder(inputs["image"])


def test_right_hand_regressor_per_mode(model, kin, features):
    fixed = KptsRef(dataclasses.replace(model.config, official_quirks=False))
    fixed.load_state_dict(model.state_dict())
    fixed.eval()
    with torch.no_grad():
        out = model.refine(features, kin.left_mm, kin.right_mm)
        feat = out.stage_feats_right[-1].transpose(1, 2)
        by_left = model.left_reg(feat).transpose(1, 2)
        by_right = model.right_reg(feat).transpose(1, 2)
        # stage features differ between modes (graph, norm1); the regressor choice is checked on each
        out_fixed = fixed.refine(features, kin.left_mm, kin.right_mm)
        fixed_right = fixed.right_reg(out_fixed.stage_feats_right[-1].transpose(1, 2)).transpose(1, 2)
    torch.testing.assert_close(out.right, by_left, atol=1e-5, rtol=0)   # vs a 1e-2 regressor difference
    assert (by_left - by_right).abs().max() > 1e-2
    # default mode: an offset from the input keypoints (official quirk 4 fixed)
    torch.testing.assert_close(out_fixed.right, fixed_right + kin.right_mm.float(), atol=1e-4, rtol=0)
    assert (out_fixed.left - out.left).abs().max() > 1e-3  # the fixed GCN changes the features


@pytest.mark.parametrize("official", [True, False])
def test_norm1_is_ignored_only_in_official_mode(official):
    torch.manual_seed(0)
    from im2hands.models.kpts_ref import GCNResBlock

    block = GCNResBlock(6, 4, official_quirks=official).eval()
    x = torch.randn(2, 21, 6)
    graph = hand_graph(official_quirks=official)
    before = block(x, graph)
    with torch.no_grad():
        block.norm1.weight.mul_(3.0).add_(0.5)
        block.norm1.bias.add_(1.0)
    changed = (block(x, graph) - before).abs().max()
    assert (changed == 0) if official else (changed > 1e-3)


def test_batch_rows_equal_single_row_runs(model, inputs, kin, features):
    """Golden row + a perturbed copy (keypoints and image features) in one batch == two single-row runs.

    The encoder's own batch independence is tested in test_encoder; here its features are perturbed directly.
    """
    gen = torch.Generator().manual_seed(1)
    def perturb(t, s):
        return t + s * torch.randn(t.shape, generator=gen, dtype=t.dtype)
    feats2 = type(features)(**{
        f: tuple(perturb(m, 0.05) for m in getattr(features, f)) if isinstance(getattr(features, f), tuple)
        else perturb(getattr(features, f), 0.05) for f in ("img_fmaps", "hms_fmaps", "dp_fmaps", "hms", "mask", "dp")})
    left2, right2 = perturb(kin.left_mm, 5.0), perturb(kin.right_mm, 5.0)
    cat = lambda a, b: torch.cat([a, b])  # noqa: E731
    both_feats = type(features)(
        img_fmaps=tuple(map(cat, features.img_fmaps, feats2.img_fmaps)),
        hms_fmaps=tuple(map(cat, features.hms_fmaps, feats2.hms_fmaps)),
        dp_fmaps=tuple(map(cat, features.dp_fmaps, feats2.dp_fmaps)),
        hms=cat(features.hms, feats2.hms), mask=cat(features.mask, feats2.mask), dp=cat(features.dp, feats2.dp))
    with torch.no_grad():
        both = model.refine(both_feats, cat(kin.left_mm, left2), cat(kin.right_mm, right2))
        singles = [model.refine(features, kin.left_mm, kin.right_mm), model.refine(feats2, left2, right2)]
    for name in ("left", "right", "img_proj", "stage_feats_left", "stage_feats_right"):
        for row in range(2):
            got, want = getattr(both, name), getattr(singles[row], name)
            for g, w in zip(got if isinstance(got, tuple) else (got,), want if isinstance(want, tuple) else (want,)):
                torch.testing.assert_close(g[row:row + 1], w, atol=2e-5, rtol=0, msg=lambda m: f"{name} row {row}: {m}")
    assert (both.left[0] - both.left[1]).abs().max() > 1e-2


def test_normalisation_batch_rows_equal_single_rows(inputs):
    keys = ("joints_left", "joints_right", "cam_R", "cam_T", "left_root_xyz", "right_root_xyz")
    gen = torch.Generator().manual_seed(2)
    second = {k: inputs[k] + 0.01 * torch.randn(inputs[k].shape, generator=gen, dtype=inputs[k].dtype) for k in keys}
    args = lambda d: (d["joints_left"], d["joints_right"])  # noqa: E731
    kw = lambda d: {k: d[k] for k in keys[2:]}  # noqa: E731
    both = {k: torch.cat([inputs[k], second[k]]) for k in keys}
    out2 = normalise_keypoints(*args(both), **kw(both))
    for row, d in enumerate((inputs, second)):
        one = normalise_keypoints(*args(d), **kw(d))
        for f in ("left_mm", "right_mm", "left_mid_joint"):
            torch.testing.assert_close(getattr(out2, f)[row:row + 1], getattr(one, f), atol=1e-12, rtol=0)


def test_normalisation_round_trip_to_camera(inputs):
    kin = normalise_keypoints(inputs["joints_left"], inputs["joints_right"], cam_R=inputs["cam_R"],
                              cam_T=inputs["cam_T"], left_root_xyz=inputs["left_root_xyz"],
                              right_root_xyz=inputs["right_root_xyz"])
    r, t = inputs["cam_R"][0].double(), inputs["cam_T"][0].double()
    world_left = (inputs["joints_left"][0] + inputs["left_root_xyz"][0].double()) * torch.tensor([-1.0, 1.0, 1.0],
                                                                                                dtype=torch.float64)
    cam_left = world_left @ r.T + t
    torch.testing.assert_close(keypoints_to_camera(kin.left_mm, kin.left_mid_joint)[0], cam_left, atol=1e-12, rtol=0)
    assert kin.left_mm[0, 4].abs().max() == 0  # the left middle MCP is the origin
    assert kin.left_mm.dtype == torch.float64


def _camera_joints_internal(inputs) -> tuple[torch.Tensor, torch.Tensor]:
    """The golden hands in our public types: camera frame, metres, true axes, internal joint order.

    Undoes the official storage by hand: add the stored root, un-mirror the left hand (x -> -x for the
    left joints and the left root alike), world -> camera ``x @ Rᵀ + T``, HALO -> internal order."""
    f64 = torch.float64
    mirror = torch.tensor([-1.0, 1.0, 1.0], dtype=f64)
    r, t = inputs["cam_R"].to(f64), inputs["cam_T"].to(f64)[:, None]
    world_left = (inputs["joints_left"].to(f64) + inputs["left_root_xyz"].to(f64)[:, None]) * mirror
    world_right = inputs["joints_right"].to(f64) + inputs["right_root_xyz"].to(f64)[:, None]
    cam = [w @ r.transpose(1, 2) + t for w in (world_left, world_right)]
    return tuple(reorder(c, "halo", "internal") for c in cam)


def test_network_keypoints_equal_the_official_normalisation(inputs, kin):
    left, right = _camera_joints_internal(inputs)
    ours = network_keypoints(left, right)
    for f in ("left_mm", "right_mm", "left_mid_joint"):
        got, want = getattr(ours, f), getattr(kin, f)
        assert got.dtype == torch.float64, f
        torch.testing.assert_close(got, want, atol=1e-9, rtol=0, msg=lambda m, f=f: f"{f}: {m}")


def test_network_keypoints_round_trip_to_camera(inputs):
    left, right = _camera_joints_internal(inputs)
    kin = network_keypoints(left.float(), right.float())
    assert kin.left_mm[0, 4].abs().max() == 0  # the left middle MCP (HALO joint 4) is the origin
    for mm, cam in ((kin.left_mm, left.float()), (kin.right_mm, right.float())):
        torch.testing.assert_close(network_to_camera(mm, kin.left_mid_joint), cam.double(), atol=1e-12, rtol=0)
    with pytest.raises(ValueError, match="joints_cam_left and joints_cam_right: mismatched B"):
        network_keypoints(left.repeat(2, 1, 1), right)
    bad = right.clone()
    bad[0, 5, 1] = float("nan")
    with pytest.raises(ValueError, match="joints_cam_right: contains NaN"):
        network_keypoints(left, bad)


def test_small_variant_trains_on_cpu():
    torch.manual_seed(0)
    cfg = KptsRefConfig(encoder=ImageEncoderConfig(depth=18, fmap_dim=16), image_size=64, img_dim=32,
                        grid_dims=(16, 18), grid_size=4)
    model = KptsRef(cfg)
    assert cfg.stage_dims == (48, 64, 80)
    image = torch.randn(2, 3, 64, 64)
    kl, kr = 50 * torch.randn(2, 21, 3), 50 * torch.randn(2, 21, 3)
    out = model(image, kl, kr)
    assert tuple(out.left.shape) == tuple(out.right.shape) == (2, 21, 3)
    assert tuple(out.img_proj.shape) == (2, 32, 16, 16)
    assert [tuple(f.shape) for f in out.stage_feats_left] == [(2, 21, 64), (2, 21, 80)]
    loss = (out.left - kl).pow(2).mean() + (out.right - kr).pow(2).mean()
    loss.backward()
    assert model.right_reg[0].weight.grad is not None and model.right_reg[0].weight.grad.abs().sum() > 0
    assert model.img_final_layer.weight.grad is None  # unused, as officially


def test_hand_centred_starts_as_identity_and_each_hand_is_translation_equivariant():
    torch.manual_seed(0)
    cfg = KptsRefConfig(encoder=ImageEncoderConfig(depth=18, fmap_dim=16), image_size=64, img_dim=32,
                        grid_dims=(16, 18), grid_size=4, hand_centred=True, dropout=0.0)
    model = KptsRef(cfg).eval()
    image = torch.randn(2, 3, 64, 64)
    kl, kr = 30 * torch.randn(2, 21, 3), 30 * torch.randn(2, 21, 3) + torch.tensor([150.0, -40.0, 20.0])
    with torch.no_grad():
        fresh = model(image, kl, kr)
    assert torch.equal(fresh.left, kl) and torch.equal(fresh.right, kr)   # zero offsets until trained
    with torch.no_grad():
        for reg in (model.left_reg, model.right_reg):
            reg[3].weight.normal_(0, 0.1)
            reg[3].bias.normal_(0, 0.1)
        out = model(image, kl, kr)
        shift = torch.tensor([-80.0, 25.0, 300.0])
        moved = model(image, kl, kr + shift)      # the right hand moved: same refinement, moved with it
    assert (out.right - kr).abs().max() > 1e-2
    torch.testing.assert_close(out.right.mean(1), kr.mean(1))      # each hand keeps its mean joint position
    torch.testing.assert_close(out.left.mean(1), kl.mean(1))
    torch.testing.assert_close(moved.right, out.right + shift, atol=1e-3, rtol=0)
    torch.testing.assert_close(moved.left, out.left, atol=1e-4, rtol=0)
    # offsets come out in units of coord_unit_mm: the same weights at half the unit give half the offsets
    half = KptsRef(dataclasses.replace(cfg, coord_unit_mm=50.0)).eval()
    half.load_state_dict(model.state_dict())
    with torch.no_grad():
        h = half(image, kl / 2, kr / 2)      # the same embedded coordinates (half the mm in half the unit)
    torch.testing.assert_close(h.left - kl / 2, (out.left - kl) / 2, atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="hand_centred"):
        KptsRefConfig(hand_centred=True, official_quirks=True)
    with pytest.raises(ValueError, match="coord_unit_mm"):
        KptsRefConfig(coord_unit_mm=0.0)
    with pytest.raises(ValueError, match="linear_path"):
        KptsRefConfig(linear_path=True)


def test_linear_path_adds_a_linear_map_of_the_centred_hand():
    torch.manual_seed(0)
    cfg = KptsRefConfig(encoder=ImageEncoderConfig(depth=18, fmap_dim=16), image_size=64, img_dim=32,
                        grid_dims=(16, 18), grid_size=4, hand_centred=True, linear_path=True, dropout=0.0)
    model = KptsRef(cfg).eval()
    plain = KptsRef(dataclasses.replace(cfg, linear_path=False)).eval()
    assert set(model.state_dict()) - set(plain.state_dict()) == {
        "left_linear.weight", "left_linear.bias", "right_linear.weight", "right_linear.bias"}
    plain.load_state_dict(model.state_dict(), strict=False)
    image = torch.randn(1, 3, 64, 64)
    kl, kr = 30 * torch.randn(1, 21, 3), 30 * torch.randn(1, 21, 3) + 120.0
    with torch.no_grad():
        assert torch.equal(model(image, kl, kr).right, kr)       # both paths start at zero
        for reg in (model.left_reg, model.right_reg):
            reg[3].weight.normal_(0, 0.1)
        plain.load_state_dict(model.state_dict(), strict=False)
        model.right_linear.weight.normal_(0, 0.1)
        model.right_linear.bias.normal_(0, 0.1)
        out, base = model(image, kl, kr), plain(image, kl, kr)
        centred = (kr - kr[:, 4:5]) / cfg.coord_unit_mm          # HALO joint 4: the middle MCP
        lin = model.right_linear(centred.flatten(1)).view(1, 21, 3)
        want = base.right + cfg.coord_unit_mm * (lin - lin.mean(1, keepdim=True))   # mean joint stays in place
    torch.testing.assert_close(out.right, want, atol=1e-3, rtol=1e-5)
    torch.testing.assert_close(out.left, base.left)               # the left path is still zero


def test_bad_inputs_raise_clear_errors(inputs):
    cfg = KptsRefConfig(encoder=ImageEncoderConfig(depth=18, fmap_dim=8), image_size=64, img_dim=16,
                        grid_dims=(8,), grid_size=4)
    model = KptsRef(cfg)
    image, k = torch.zeros(2, 3, 64, 64), torch.zeros(2, 21, 3)
    with pytest.raises(ValueError, match=r"kpts_left: expected shape \(B, 21, 3\), got \(2, 20, 3\)"):
        model(image, torch.zeros(2, 20, 3), k)
    with pytest.raises(ValueError, match=r"kpts_right and image: mismatched batch size \(1 vs 2\)"):
        model(image, k, torch.zeros(1, 21, 3))
    bad = k.clone()
    bad[1, 7, 2] = float("nan")
    with pytest.raises(ValueError, match=r"kpts_right: contains NaN or inf \(first at index \(1, 7, 2\)"):
        model(image, k, bad)
    with pytest.raises(ValueError, match=r"image: expected shape \(B, 3, 64, 64\)"):
        model(torch.zeros(2, 3, 256, 256), k, k)
    big = KptsRef(dataclasses.replace(cfg, encoder=ImageEncoderConfig(depth=18, fmap_dim=8), image_size=128))
    with pytest.raises(ValueError, match=r"features.img_fmaps\[-1\]: expected shape \(B, 64, 16, 16\), got \(2, 64, 32, 32\)"):
        model.refine(big.image_encoder(torch.zeros(2, 3, 128, 128)), k, k)
    kw = {n: inputs[n] for n in ("cam_R", "cam_T", "left_root_xyz", "right_root_xyz")}
    with pytest.raises(ValueError, match="joints_left and cam_R: mismatched B"):
        normalise_keypoints(inputs["joints_left"].repeat(2, 1, 1), inputs["joints_right"].repeat(2, 1, 1), **kw)
    nan = inputs["joints_left"].clone()
    nan[0, 3, 0] = float("nan")
    with pytest.raises(ValueError, match="joints_left: contains NaN"):
        normalise_keypoints(nan, inputs["joints_right"], **kw)
    with pytest.raises(ValueError, match="config.image_size: must be a multiple of 32"):
        KptsRef(dataclasses.replace(cfg, image_size=100))
