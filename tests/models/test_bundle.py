"""The model bundle: round trip, one copy of shared tensors, float16 storage read back as float32, errors."""

from __future__ import annotations

import pytest
import torch

from im2hands.api import Im2Hands
from im2hands.demo import DEMO_DIR
from im2hands.mesh import Lattice
from im2hands.models.bundle import BUNDLE_FORMAT, load_bundle, read_networks, save_bundle
from im2hands.models.checkpoint import Checkpoint, build_model, config_to_dict, load_checkpoint, save_checkpoint
from tests.helpers import demo_sample, small_networks


@pytest.fixture(scope="module")
def sample():
    return demo_sample(DEMO_DIR / "clasp")


@pytest.fixture(scope="module")
def checkpoints(sample) -> dict[str, Checkpoint]:
    """RefOcc (with its InitOcc) and KptsRef whose image encoders are one encoder, as after training."""
    _, ref, kpts = small_networks(sample, shared_encoder=True)
    return {kind: Checkpoint(kind, config_to_dict(net.config), net.state_dict())
            for kind, net in (("ref_occ", ref), ("kpts_ref", kpts))}


@pytest.fixture(scope="module")
def bundle(checkpoints, tmp_path_factory):
    path = tmp_path_factory.mktemp("bundle") / "model.pt"
    save_bundle(path, checkpoints)
    return path


def _stored_bytes(state_dicts) -> int:
    """Bytes of the distinct tensors after the float16 cast (slow reference: content keys, no hashing tricks)."""
    seen = set()
    total = 0
    for sd in state_dicts:
        for t in sd.values():
            s = t.half() if t.is_floating_point() else t
            key = (str(s.dtype), tuple(s.shape), s.contiguous().numpy().tobytes())
            if key not in seen:
                seen.add(key)
                total += s.numel() * s.element_size()
    return total


def test_round_trip_keeps_kinds_configs_and_keys(checkpoints, bundle):
    loaded = load_bundle(bundle)
    assert sorted(loaded) == ["kpts_ref", "ref_occ"]
    for kind, ckpt in checkpoints.items():
        got = loaded[kind]
        assert got.kind == kind
        assert got.config == ckpt.config
        assert list(got.state_dict) == list(ckpt.state_dict)
        for key, t in ckpt.state_dict.items():
            assert got.state_dict[key].shape == t.shape, key
            if not t.is_floating_point():   # integer buffers unchanged
                assert got.state_dict[key].dtype == t.dtype
                torch.testing.assert_close(got.state_dict[key], t, rtol=0, atol=0)


def test_float16_storage_loads_as_float32_close_to_the_original(checkpoints, bundle):
    loaded = load_bundle(bundle)
    worst = 0.0
    for kind, ckpt in checkpoints.items():
        for key, t in ckpt.state_dict.items():
            if t.is_floating_point():
                got = loaded[kind].state_dict[key]
                assert got.dtype == torch.float32, key
                # float16 rounding: relative 2^-11, absolute 2^-25 for subnormals
                torch.testing.assert_close(got, t, rtol=2 ** -11, atol=2 ** -24, msg=lambda m: f"{kind}.{key}: {m}")
                worst = max(worst, float((got - t).abs().max()))
    assert 0 < worst < 1e-2


def test_shared_tensors_are_stored_once(checkpoints, bundle, tmp_path):
    ref = checkpoints["ref_occ"].state_dict
    encoder = {k: v for k, v in ref.items() if k.startswith("image_encoder.")}
    torch.testing.assert_close(encoder, {k: ref[f"init_occ.{k}"] for k in encoder})   # the premise
    half = sum(t.numel() * (2 if t.is_floating_point() else t.element_size()) for t in encoder.values())
    alone = tmp_path / "ref_only.pt"
    save_bundle(alone, {"ref_occ": checkpoints["ref_occ"]})
    every = [c.state_dict for c in checkpoints.values()]
    # the file holds each distinct tensor once, plus a small container overhead per stored tensor
    for path, sds in ((alone, [ref]), (bundle, every)):
        expected = _stored_bytes(sds)
        n = len(torch.load(path, weights_only=True)["tensors"])
        size = path.stat().st_size
        assert expected <= size <= expected + 1024 * n + 65536, (path.name, size, expected, n)
    # the shared encoder costs once: RefOcc's own copy and KptsRef's add (almost) nothing
    all_fp16 = sum(t.numel() * (2 if t.is_floating_point() else t.element_size()) for sd in every for t in sd.values())
    assert bundle.stat().st_size < all_fp16 - 1.9 * half


def test_networks_from_a_bundle_match_the_float32_ones(checkpoints, bundle, sample):
    """Im2Hands.from_checkpoint takes a bundle; its InitOcc occupancy equals the float32 one to 2e-3."""
    from im2hands.data.dataset import normalise_image
    from im2hands.hand.camera import Camera

    model = Im2Hands.from_checkpoint(bundle, device="cpu", lattice=Lattice(8, 1))
    assert model.kpts_ref is not None and model.ref_occ is not None
    reference = build_model("ref_occ", checkpoints["ref_occ"].config)
    reference.load_state_dict(checkpoints["ref_occ"].state_dict)
    reference = reference.init_occ.eval()
    cam = Camera(K=torch.tensor(sample["camera_K"], dtype=torch.float32)[None], R=torch.eye(3)[None],
                 T=torch.zeros(1, 3))
    image = normalise_image(sample["image"])[None]
    hands = model._hand_inputs({s: sample[f"{s}_joints"] for s in ("right", "left")})
    points = (torch.rand(1, 2000, 3, generator=torch.Generator().manual_seed(0)) - 0.5) * 1.1
    with torch.no_grad():
        for side in ("right", "left"):
            a = reference.decode(reference.encode(image, cam), hands[side], points, side).occupancy
            b = model.init_occ.decode(model.init_occ.encode(image, cam), hands[side], points, side).occupancy
            torch.testing.assert_close(b, a, rtol=0, atol=2e-3)


def test_read_networks_takes_checkpoints_and_bundles(checkpoints, bundle, tmp_path):
    path = tmp_path / "kpts_ref.pt"
    save_checkpoint(path, model="kpts_ref", config=checkpoints["kpts_ref"].config,
                    state_dict=checkpoints["kpts_ref"].state_dict)
    one = read_networks(path)
    assert list(one) == ["kpts_ref"]
    torch.testing.assert_close(one["kpts_ref"].state_dict, load_checkpoint(path).state_dict, rtol=0, atol=0)
    assert sorted(read_networks(bundle)) == ["kpts_ref", "ref_occ"]


def test_a_value_outside_float16_range_stays_float32(tmp_path):
    big = torch.tensor([1.0e6, -3.0, 0.5])
    save_bundle(tmp_path / "b.pt", {"kpts_ref": Checkpoint("kpts_ref", {}, {"w": big, "v": torch.ones(3)})})
    state = load_bundle(tmp_path / "b.pt")["kpts_ref"].state_dict
    torch.testing.assert_close(state["w"], big, rtol=0, atol=0)


# ------------------------------------------------------------------------------------------------- errors
def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="model bundle not found: .*nothing.pt"):
        load_bundle(tmp_path / "nothing.pt")


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_corrupt_file_is_a_clear_error(bundle, tmp_path, damage):
    path = tmp_path / "bad.pt"
    data = bundle.read_bytes()
    path.write_bytes(data[: len(data) // 2] if damage == "truncated" else b"not a bundle at all" * 100)
    with pytest.raises(ValueError, match=f"{path}: not a readable im2hands bundle"):
        load_bundle(path)


def test_inconsistent_bundle_is_a_clear_error(tmp_path):
    path = tmp_path / "bad.pt"
    torch.save({"format": BUNDLE_FORMAT, "dtype": "float16", "tensors": [torch.zeros(2)],
                "networks": {"kpts_ref": {"config": {}, "entries": {"w": 0, "v": 5}}}}, path)
    with pytest.raises(ValueError, match=r"corrupt bundle \(kpts_ref.v points at tensor 5 of 1\)"):
        load_bundle(path)


def test_a_checkpoint_is_not_a_bundle(tmp_path, checkpoints):
    path = tmp_path / "kpts.pt"
    save_checkpoint(path, model="kpts_ref", config={}, state_dict={"w": torch.zeros(2)})
    with pytest.raises(ValueError, match="a single checkpoint, not a bundle"):
        load_bundle(path)


def test_missing_network_names_what_the_bundle_holds(tmp_path):
    path = tmp_path / "b.pt"
    save_bundle(path, {"kpts_ref": Checkpoint("kpts_ref", {}, {"w": torch.zeros(2)})})
    with pytest.raises(ValueError, match=r"lacks the \['ref_occ'\] network\(s\); it holds \['kpts_ref'\]"):
        load_bundle(path, networks=("ref_occ", "kpts_ref"))


def test_save_checks_its_arguments(tmp_path):
    ok = Checkpoint("kpts_ref", {}, {"w": torch.zeros(2)})
    with pytest.raises(ValueError, match="holds a 'kpts_ref' checkpoint"):
        save_bundle(tmp_path / "b.pt", {"ref_occ": ok})
    with pytest.raises(ValueError, match="unknown network kind 'halo'"):
        save_bundle(tmp_path / "b.pt", {"halo": ok})
    with pytest.raises(ValueError, match="dtype"):
        save_bundle(tmp_path / "b.pt", {"kpts_ref": ok}, dtype=torch.int8)
    assert not (tmp_path / "b.pt").exists()


def test_pretrained_without_the_shipped_file_says_how_to_make_it(tmp_path, monkeypatch):
    import im2hands.api

    monkeypatch.setattr(im2hands.api, "SHIPPED_BUNDLE", tmp_path / "absent.pt")
    with pytest.raises(FileNotFoundError, match="absent.pt is not in this installation.*ship_model.py"):
        Im2Hands.pretrained()


def test_pretrained_loads_the_shipped_file(checkpoints, bundle, monkeypatch):
    import im2hands.api

    monkeypatch.setattr(im2hands.api, "SHIPPED_BUNDLE", bundle)
    model = Im2Hands.pretrained("cpu", lattice=Lattice(8, 1))
    assert model.lattice == Lattice(8, 1) and model.kpts_ref is not None and model.ref_occ is not None
    key = "trans_dec.fc_out.bias"
    torch.testing.assert_close(model.ref_occ.state_dict()[key], checkpoints["ref_occ"].state_dict[key],
                               rtol=2 ** -11, atol=2 ** -24)
