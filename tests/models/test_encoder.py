"""ImageEncoder: golden ResNet-50 maps, batch independence, small backbones, key names, input errors."""

import json

import pytest
import torch

from im2hands.official import image_encoder as golden_check
from im2hands.models.encoder import ImageEncoder, ImageEncoderConfig
from im2hands.models.resnet import ResNet

from ..conftest import GOLDEN_DIR

NAMES = ["hms", "mask", "dp", "img_fmap0", "img_fmap1", "img_fmap2", "img_fmap3",
         "hms_fmap0", "hms_fmap3", "dp_fmap0", "dp_fmap3"]


def _arrays(out):
    d = {"hms": out.hms, "mask": out.mask, "dp": out.dp}
    for i in range(4):
        d[f"img_fmap{i}"], d[f"hms_fmap{i}"], d[f"dp_fmap{i}"] = out.img_fmaps[i], out.hms_fmaps[i], out.dp_fmaps[i]
    return d


@pytest.fixture(scope="module")
def encoder(golden):
    return golden_check.golden_encoder(golden, torch.device("cpu"))


@pytest.fixture(scope="module")
def golden_results(golden):
    return {r.name: r for r in golden_check.check(golden, torch.device("cpu"))}


@pytest.mark.parametrize("name", NAMES)
def test_golden_array(golden_results, name):
    r = golden_results[name]
    assert r.passed, r.line()


def test_golden_covers_every_array(golden, golden_results):
    assert set(golden_results) == set(golden["image_encoder"]) == set(NAMES)


def test_state_dict_names_and_shapes_match_official_manifest():
    manifest = json.loads((GOLDEN_DIR / "keys_init_occ.json").read_text())
    expected = {e["key"][len("image_encoder."):]: tuple(e["shape"]) for e in manifest
                if e["key"].startswith("image_encoder.")}
    ours = {k: tuple(v.shape) for k, v in ImageEncoder().state_dict().items()}
    assert ours == expected


def test_batch_rows_equal_single_row_runs(golden, encoder):
    image = torch.from_numpy(golden.inputs["image"])
    perturbed = image + 0.1 * torch.randn(image.shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        both = _arrays(encoder(torch.cat([image, perturbed])))
        singles = [_arrays(encoder(image)), _arrays(encoder(perturbed))]
    for name in NAMES:
        for row in range(2):
            torch.testing.assert_close(both[name][row:row + 1], singles[row][name], atol=5e-6, rtol=0,
                                       msg=lambda m: f"{name} row {row}: {m}")
    assert (both["img_fmap3"][0] - both["img_fmap3"][1]).abs().max() > 1e-2  # the perturbation changes the output


@pytest.mark.parametrize("depth,c", [(18, 64), (34, 64), (50, 256)])
def test_small_backbones_give_documented_shapes(depth, c):
    torch.manual_seed(0)
    enc = ImageEncoder(ImageEncoderConfig(depth=depth, fmap_dim=16)).eval()
    with torch.no_grad():
        out = enc(torch.randn(2, 3, 64, 96))
    assert enc.img_channels == (8 * c, 4 * c, 2 * c, c)
    assert [tuple(f.shape) for f in out.img_fmaps] == [(2, 8 * c, 2, 3), (2, 4 * c, 4, 6), (2, 2 * c, 8, 12),
                                                       (2, c, 16, 24)]
    assert [tuple(f.shape) for f in out.hms_fmaps] == [(2, 16, 2, 3), (2, 16, 4, 6), (2, 16, 8, 12), (2, 16, 16, 24)]
    assert [tuple(f.shape) for f in out.dp_fmaps] == [tuple(f.shape) for f in out.hms_fmaps]
    assert tuple(out.hms.shape) == (2, 42, 16, 24)
    assert tuple(out.mask.shape) == (2, 2, 16, 24) and tuple(out.dp.shape) == (2, 6, 16, 24)


@pytest.mark.parametrize("depth,blocks", [(18, (2, 2, 2, 2)), (34, (3, 4, 6, 3)), (50, (3, 4, 6, 3))])
def test_resnet_layout_is_torchvisions(depth, blocks):
    net = ResNet(depth)
    assert tuple(len(getattr(net, f"layer{i}")) for i in range(1, 5)) == blocks
    keys = set(net.state_dict())
    assert {"conv1.weight", "bn1.running_var", "layer2.0.downsample.0.weight", "layer2.0.downsample.1.bias",
            "fc.weight", "fc.bias"} <= keys
    assert ("layer1.0.conv3.weight" in keys) == (depth == 50)
    assert ("layer1.0.downsample.0.weight" in keys) == (depth == 50)
    n_params = sum(p.numel() for p in net.parameters())
    # torchvision's parameter counts of resnet18 / resnet34 / resnet50
    assert n_params == {18: 11_689_512, 34: 21_797_672, 50: 25_557_032}[depth]


def test_bad_inputs_raise_clear_errors():
    enc = ImageEncoder(ImageEncoderConfig(depth=18, fmap_dim=8))
    with pytest.raises(ValueError, match=r"image: expected shape \(B, 3, H, W\), got \(1, 1, 64, 64\)"):
        enc(torch.zeros(1, 1, 64, 64))
    with pytest.raises(ValueError, match="multiples of 32, got 64x50"):
        enc(torch.zeros(1, 3, 64, 50))
    with pytest.raises(TypeError, match="image: expected a float tensor"):
        enc(torch.zeros(1, 3, 64, 64, dtype=torch.uint8))
    with pytest.raises(TypeError, match="image: expected a torch.Tensor"):
        enc([[0.0]])
    nan_image = torch.zeros(1, 3, 64, 64)
    nan_image[0, 2, 10, 7] = float("nan")
    with pytest.raises(ValueError, match=r"image: contains NaN or inf \(first at index \(0, 2, 10, 7\)"):
        enc(nan_image)
    with pytest.raises(ValueError, match="depth: expected one of"):
        ResNet(101)  # type: ignore[arg-type]
