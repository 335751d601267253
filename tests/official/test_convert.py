"""Official checkpoint conversion: name map, merging, key-set errors, round trip through our format."""

import json

import numpy as np
import pytest
import torch

from im2hands.cli import main
from im2hands.official import kpts_ref as golden_kpts
from im2hands.official.check import compare
from im2hands.official.tolerance import tolerance_for
from im2hands.models.checkpoint import (
    FORMAT, StateDictMismatch, build_model, load_checkpoint, load_model, save_checkpoint,
)
from im2hands.models.kpts_ref import KptsRefConfig
from im2hands.official.convert import (
    convert_official, convert_state_dicts, expected_from_manifest, official_to_ours, read_official,
)

from ..conftest import GOLDEN_DIR


@pytest.fixture(scope="module")
def kpts_state(golden):
    return golden.state_dict("kpts_ref")


def _save_official(path, state):
    """An official-format training checkpoint (artihand/checkpoints.py layout)."""
    torch.save({"model": state, "optimizer": {}, "epoch_it": 3, "it": 0, "loss_val_best": np.float64(1.5)}, path)
    return path


def test_round_trip_kpts_ref_reproduces_golden(golden, kpts_state, tmp_path):
    src = _save_official(tmp_path / "model_best.pt", kpts_state)
    dst = tmp_path / "kpts_ref.ckpt"
    assert main(["convert-official", str(src), str(dst), "--model", "kpts_ref"]) == 0
    kind, config, state = load_checkpoint(dst)
    assert kind == "kpts_ref" and config["official_quirks"] is True and config["encoder"]["depth"] == 50
    assert set(state) == set(kpts_state)
    model = load_model(dst)
    assert model.config == KptsRefConfig(official_quirks=True)
    actual = golden_kpts.run(model, golden_kpts.golden_inputs(golden, torch.device("cpu")))
    expected = golden["kpts_ref"]
    for name in ("kpts_out_left", "kpts_out_right", "gcn3_feat_left", "gcn3_feat_right"):
        r = compare("kpts_ref", name, actual[name], expected[name], tolerance_for(name))
        assert r.passed, r.line()


def test_no_official_quirks_flag_is_stored(kpts_state, tmp_path):
    src = _save_official(tmp_path / "k.pt", kpts_state)
    dst = tmp_path / "k.ckpt"
    assert main(["convert-official", str(src), str(dst), "--model", "kpts_ref", "--no-official-quirks"]) == 0
    assert load_checkpoint(dst).config["official_quirks"] is False


def test_corrupted_key_set_lists_every_problem(kpts_state, tmp_path, capsys):
    state = dict(kpts_state)
    del state["left_reg.0.weight"]
    state["left_reg.9.weight"] = state.pop("left_reg.3.weight")
    state["img_proj_layer.weight"] = torch.zeros(256, 500, 1, 1)
    src = _save_official(tmp_path / "bad.pt", state)
    with pytest.raises(StateDictMismatch) as err:
        convert_official([src], tmp_path / "out.ckpt", model="kpts_ref")
    msg = str(err.value)
    assert "2 missing, 1 unexpected, 1 mis-shaped" in msg
    assert "left_reg.0.weight" in msg and "left_reg.3.weight" in msg and "left_reg.9.weight" in msg
    assert "img_proj_layer.weight: (256, 512, 1, 1) vs (256, 500, 1, 1)" in msg
    assert not (tmp_path / "out.ckpt").exists()
    assert main(["convert-official", str(src), str(tmp_path / "out.ckpt"), "--model", "kpts_ref"]) == 2
    assert "mis-shaped" in capsys.readouterr().err


def test_name_map():
    t = torch.arange(3.0)
    intag = official_to_ours({"module.encoder.resnet.conv1.weight": t, "module.decoder.x": t, "module.mid_model.y": t})
    assert list(intag) == ["image_encoder.resnet.conv1.weight"]
    out = official_to_ours({"decoder.lin0_2.weight": t, "img_ex_left.attn.fc.bias": t})
    assert set(out) == {"left_decoder.lin0_2.weight", "right_decoder.lin0_2.weight", "img_ex_left.attn.fc.bias"}
    assert torch.equal(out["right_decoder.lin0_2.weight"], t) and torch.equal(out["left_decoder.lin0_2.weight"], t)
    wrapped = official_to_ours({"module.left_decoder.a": t, "module.image_encoder.b": t})
    assert set(wrapped) == {"left_decoder.a", "image_encoder.b"}


def test_official_init_occ_initialisation_from_halo_and_intaghand_files(golden, tmp_path):
    """HALO decoder + IntagHand DataParallel encoder + the remaining keys -> the full init_occ key set."""
    full = golden.state_dict("init_occ")
    halo = {"decoder." + k[len("left_decoder."):]: v for k, v in full.items() if k.startswith("left_decoder.")}
    intag = {"module.encoder." + k[len("image_encoder."):]: v for k, v in full.items() if k.startswith("image_encoder.")}
    intag["module.decoder.unused.weight"] = torch.zeros(2)
    rest = {k: v for k, v in full.items() if not k.startswith(("left_decoder.", "right_decoder.", "image_encoder."))}
    _save_official(tmp_path / "halo_baseline.pt", halo)
    torch.save(intag, tmp_path / "intaghand_baseline.pth")  # a bare DataParallel state dict
    _save_official(tmp_path / "rest.pt", rest)
    expected = expected_from_manifest(GOLDEN_DIR / "keys_init_occ.json")
    state = convert_state_dicts([tmp_path / "halo_baseline.pt", tmp_path / "intaghand_baseline.pth",
                                 tmp_path / "rest.pt"], expected)
    assert set(state) == set(full)
    for k, v in full.items():
        src = "left_decoder." + k[len("right_decoder."):] if k.startswith("right_decoder.") else k
        assert torch.equal(state[k], full[src]), k
    with pytest.raises(StateDictMismatch, match=r"\d+ missing, 0 unexpected"):
        convert_state_dicts([tmp_path / "halo_baseline.pt"], expected)
    with pytest.raises(ValueError, match="is also provided by"):
        convert_state_dicts([tmp_path / "rest.pt", tmp_path / "rest.pt"], expected)


def test_manifest_path_writes_checkpoint_without_the_network(tmp_path):
    manifest = [{"key": "trans_dec.fc_out.weight", "shape": [1, 32], "dtype": "torch.float32", "kind": "parameter"},
                {"key": "left_decoder.lin0_0.weight", "shape": [64, 28], "dtype": "torch.float32", "kind": "parameter"},
                {"key": "right_decoder.lin0_0.weight", "shape": [64, 28], "dtype": "torch.float32", "kind": "parameter"}]
    (tmp_path / "keys.json").write_text(json.dumps(manifest))
    w = torch.randn(64, 28)
    src = _save_official(tmp_path / "ref_occ.pt", {"trans_dec.fc_out.weight": torch.ones(1, 32), "decoder.lin0_0.weight": w})
    dst = tmp_path / "ref.ckpt"
    assert main(["convert-official", str(src), str(dst), "--model", "ref_occ",
                 "--keys-manifest", str(tmp_path / "keys.json")]) == 0
    kind, config, state = load_checkpoint(dst)
    assert kind == "ref_occ" and config == {"official_quirks": True} and len(state) == 3
    assert torch.equal(state["right_decoder.lin0_0.weight"], w)
    assert expected_from_manifest(GOLDEN_DIR / "keys_ref_occ.json")["trans_dec.fc_out.weight"] == (1, 32)
    with pytest.raises(ValueError, match="fill_missing needs the network"):
        convert_official([src], dst, model="ref_occ", keys_manifest=tmp_path / "keys.json", fill_missing=True)


def test_fill_missing_takes_fresh_weights_for_absent_keys(kpts_state, tmp_path):
    full = kpts_state
    intag = {"module.encoder." + k[len("image_encoder."):]: v for k, v in full.items() if k.startswith("image_encoder.")}
    torch.save(intag, tmp_path / "intaghand_baseline.pth")
    summary = convert_official([tmp_path / "intaghand_baseline.pth"], tmp_path / "k.ckpt", model="kpts_ref",
                               fill_missing=True)
    state = load_checkpoint(tmp_path / "k.ckpt").state_dict
    assert summary.n_keys == len(full) and summary.n_filled == len(full) - len(intag)
    assert torch.equal(state["image_encoder.resnet.conv1.weight"], full["image_encoder.resnet.conv1.weight"])
    assert not torch.equal(state["left_reg.0.weight"], full["left_reg.0.weight"])


def test_read_official_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="official checkpoint not found"):
        read_official(tmp_path / "nope.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="junk.pt: cannot read"):
        read_official(tmp_path / "junk.pt")
    torch.save({"model": {"a": 1}}, tmp_path / "notsd.pt")
    with pytest.raises(ValueError, match="notsd.pt: not a state dict"):
        read_official(tmp_path / "notsd.pt")


def test_checkpoint_format_round_trip_and_errors(tmp_path):
    model = build_model("kpts_ref", {"encoder": {"depth": 18, "fmap_dim": 8}, "image_size": 64, "img_dim": 16,
                                     "grid_dims": [8], "grid_size": 4})
    save_checkpoint(tmp_path / "a" / "m.ckpt", model="kpts_ref", config=model.config, state_dict=model.state_dict())
    raw = torch.load(tmp_path / "a" / "m.ckpt", weights_only=True)
    assert raw["format"] == FORMAT and raw["config"]["grid_dims"] == [8]
    loaded = load_model(tmp_path / "a" / "m.ckpt")
    assert loaded.config == model.config
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v)
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["m.ckpt"]  # no temporary file left behind
    torch.save({"model": {}}, tmp_path / "official.pt")
    with pytest.raises(ValueError, match="convert it with `im2hands convert-official`"):
        load_checkpoint(tmp_path / "official.pt")
    with pytest.raises(ValueError, match="unknown field\\(s\\) \\['depthh'\\]"):
        build_model("kpts_ref", {"encoder": {"depthh": 18}})
    with pytest.raises(ValueError, match="unknown network kind 'foo'"):
        save_checkpoint(tmp_path / "x.ckpt", model="foo", config={}, state_dict={})


def test_round_trip_init_occ_reproduces_golden(golden, tmp_path):
    from im2hands.official import init_occ as golden_init

    state = golden.state_dict("init_occ")
    src = _save_official(tmp_path / "init_occ.pt", state)
    dst = tmp_path / "init_occ.ckpt"
    assert main(["convert-official", str(src), str(dst), "--model", "init_occ"]) == 0
    model = load_model(dst).eval()
    assert model.config.official_quirks is True
    device = torch.device("cpu")
    expected = golden["init_occ"]
    with torch.no_grad():
        enc = model.encode(torch.from_numpy(golden.inputs["image"]), golden_init.golden_camera(golden, device))
        for side in ("left", "right"):
            hand = golden_init.golden_hand(golden, side, device)
            out = model.decode(enc, hand, torch.from_numpy(golden.inputs[f"p_{side}"]), side)
            for name, value in ((f"occ_{side}", out.occupancy), (f"part_logits_{side}", out.part_logits)):
                r = compare("init_occ", name, value, expected[name], tolerance_for(name))
                assert r.passed, r.line()


def test_round_trip_ref_occ_reproduces_golden(golden, tmp_path):
    from im2hands.official import ref_occ as golden_ref

    state = golden.state_dict("ref_occ")
    src = _save_official(tmp_path / "model_best.pt", state)
    dst = tmp_path / "ref_occ.ckpt"
    assert main(["convert-official", str(src), str(dst), "--model", "ref_occ"]) == 0
    model = load_model(dst).eval()
    assert model.config.official_quirks is True
    actual = golden_ref.golden_arrays(model, golden_ref.golden_inputs(golden, torch.device("cpu")))
    expected = golden["ref_occ"]
    for name in ("ref_occ_left", "ref_occ_right", "pen_ref_occ_left", "pen_ref_occ_right",
                 "ref_logit_left", "ref_logit_right"):
        r = compare("ref_occ", name, actual[name], expected[name], tolerance_for(name))
        assert r.passed, r.line()
