"""The sample format: round trip, atomic writes, corrupt/truncated files named in the error."""

import zipfile

import numpy as np
import pytest

from im2hands.data import SampleFileError, read_sample, write_sample
from im2hands.data.sample import FORMAT_VERSION, GLOBAL_KEYS, HAND_KEYS, SIDES, all_keys, validate_sample_file


def make_fake_sample(seed: int = 0, n: int = 203, v: int = 40) -> dict:
    """A sample with random content of the right shapes and dtypes (n not a multiple of 8 on purpose)."""
    rng = np.random.default_rng(seed)
    sizes = {"N": n, "M": 37, "S": 50, "V": v, "F": 76, "H": 32, "W": 48}
    out = {}
    for prefix, keys in [("", GLOBAL_KEYS)] + [(f"{s}_", HAND_KEYS) for s in SIDES]:
        for k in keys:
            shape = tuple(sizes[d] if isinstance(d, str) else d for d in k.shape)
            if k.dtype == "str":
                val = np.array({"kind": "clasp", "split": "train"}[k.name])
            elif k.dtype == "bool":
                val = rng.random(shape) < 0.5
            elif k.dtype == "uint8":
                val = rng.integers(0, 3 if k.name == "mask" else 256, shape).astype(np.uint8)
            elif k.dtype.startswith("int"):
                val = rng.integers(0, v, shape).astype(k.dtype)
            else:
                val = rng.normal(size=shape).astype(k.dtype)
            out[prefix + k.name] = val
    out["format_version"] = np.int64(FORMAT_VERSION)
    return out


def test_round_trip(tmp_path):
    s = make_fake_sample()
    p = tmp_path / "a.npz"
    write_sample(p, s)
    r = read_sample(p)
    assert set(r) == set(all_keys())
    for k in all_keys():
        want = s[k]
        if k.endswith(("points", "points_iou", "normals")) and not k.endswith("_joints"):
            want = want.astype(np.float16).astype(np.float32)  # stored as float16
        np.testing.assert_array_equal(r[k], want, err_msg=k)
        assert r[k].shape == np.shape(s[k]), k
    assert r["image"].dtype == np.uint8 and r["right_occupancy"].dtype == bool
    assert not list(tmp_path.glob(".*tmp")), "temporary file left behind"


def test_same_content_gives_same_bytes(tmp_path):
    s = make_fake_sample(3)
    write_sample(tmp_path / "a.npz", s)
    write_sample(tmp_path / "b.npz", s)
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()


def test_read_subset_of_keys(tmp_path):
    write_sample(tmp_path / "a.npz", make_fake_sample())
    r = read_sample(tmp_path / "a.npz", keys=("image", "left_occupancy"))
    assert set(r) == {"image", "left_occupancy"} and r["left_occupancy"].shape == (203,)
    with pytest.raises(ValueError, match="unknown sample keys"):
        read_sample(tmp_path / "a.npz", keys=("nope",))


@pytest.mark.parametrize("damage", ["truncate", "garbage", "flip_byte", "missing"])
def test_corrupt_file_error_names_file(tmp_path, damage):
    p = tmp_path / "000007.npz"
    write_sample(p, make_fake_sample())
    data = bytearray(p.read_bytes())
    if damage == "truncate":
        p.write_bytes(bytes(data[: len(data) // 2]))
    elif damage == "garbage":
        p.write_bytes(b"not a zip file at all")
    elif damage == "flip_byte":
        # corrupt the payload of the image member (zip CRC then fails)
        with zipfile.ZipFile(p) as z:
            info = z.getinfo("image_png.npy")
        pos = info.header_offset + 30 + len(info.filename) + 200
        data[pos] ^= 0xFF
        p.write_bytes(bytes(data))
    else:
        p.unlink()
    with pytest.raises(SampleFileError, match="000007.npz"):
        validate_sample_file(p)
    with pytest.raises(SampleFileError, match="000007.npz"):
        read_sample(p)


def test_incomplete_file_is_rejected(tmp_path):
    p = tmp_path / "x.npz"
    s = make_fake_sample()
    write_sample(p, s)
    with zipfile.ZipFile(p) as z:
        members = {n: z.read(n) for n in z.namelist() if n != "right_points.npy"}
    with zipfile.ZipFile(p, "w") as z:
        for n, b in members.items():
            z.writestr(n, b)
    with pytest.raises(SampleFileError, match=r"x.npz.*right_points"):
        validate_sample_file(p)
    with pytest.raises(SampleFileError, match="x.npz"):
        read_sample(p)


def test_writer_rejects_bad_samples(tmp_path):
    s = make_fake_sample()
    del s["left_joints"]
    with pytest.raises(ValueError, match="left_joints"):
        write_sample(tmp_path / "a.npz", s)
    s = make_fake_sample()
    s["right_joints"] = np.zeros((20, 3))
    with pytest.raises(ValueError, match=r"right_joints: expected shape \(21, 3\)"):
        write_sample(tmp_path / "a.npz", s)
    s = make_fake_sample()
    s["left_occupancy"] = s["left_occupancy"][:-1]
    with pytest.raises(ValueError, match="left_occupancy: dimension N"):
        write_sample(tmp_path / "a.npz", s)
    s = make_fake_sample()
    s["right_vertices"][0, 0] = np.nan
    with pytest.raises(ValueError, match="right_vertices: contains NaN"):
        write_sample(tmp_path / "a.npz", s)
    assert not (tmp_path / "a.npz").exists()


def test_every_key_is_documented():
    from pathlib import Path

    doc = (Path(__file__).parents[2] / "docs" / "DATA.md").read_text()
    missing = [k.name for k in GLOBAL_KEYS + HAND_KEYS if f"`{k.name}`" not in doc]
    assert not missing, f"keys not documented in docs/DATA.md: {missing}"
