"""The sample format on disk: one ``.npz`` per frame, written atomically, read with clear errors.

A sample is a flat ``dict`` of numpy arrays. :data:`GLOBAL_KEYS` lists the keys of the whole frame and
:data:`HAND_KEYS` the keys that exist once per hand with the prefix ``right_`` or ``left_`` (for example
``right_joints``). ``docs/DATA.md`` documents every key with its units and frame.

In memory (what :func:`read_sample` returns and :func:`write_sample` takes) arrays are in their natural
form: the image as (H, W, 3) uint8, occupancy labels as bool, point sets as float32. On disk the image and
the mask are PNG-encoded, labels are bit-packed (``np.packbits``) and point sets are float16 (the writer
rounds them; values are stored exactly if they are already float16-representable).
"""

from __future__ import annotations

import io
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from im2hands._io import atomic_write
from im2hands.hand.skeleton import SIDES

FORMAT_VERSION = 1


@dataclass(frozen=True)
class Key:
    """One entry of the format.

    Attributes:
        name: key in the dict (hand keys without their ``right_``/``left_`` prefix).
        shape: dims; an int is fixed, a letter is free but must agree wherever it appears in one hand.
        dtype: dtype in memory.
        storage: ``"raw"`` (as is), ``"f16"`` (float16 on disk), ``"bits"`` (packbits of a bool vector),
            ``"png"`` (PNG-encoded uint8 image).
        doc: meaning, units and frame.
    """

    name: str
    shape: tuple
    dtype: str
    storage: str
    doc: str


GLOBAL_KEYS: tuple[Key, ...] = (
    Key("image", ("H", "W", 3), "uint8", "png", "RGB image of both hands, the normalised crop"),
    Key("mask", ("H", "W"), "uint8", "png", "visible hand per pixel: 0 background, 1 right, 2 left"),
    Key("camera_K", (3, 3), "float64", "raw", "intrinsics of the crop, pixels; pixel = K (R X + T) / z"),
    Key("camera_R", (3, 3), "float64", "raw", "world -> camera rotation (OpenCV camera)"),
    Key("camera_T", (3,), "float64", "raw", "world -> camera translation, metres"),
    Key("kind", (), "str", "raw", "interaction category (clasp, touch, cross, near; InterHand2.6M: its hand_type)"),
    Key("contact", (), "bool", "raw", "the two surfaces are closer than 2 mm or overlap"),
    Key("penetration_volume", (), "float64", "raw", "volume inside both hands, m^3"),
    Key("min_distance", (), "float64", "raw", "minimum distance between the surfaces, metres (0 in contact)"),
    Key("split", (), "str", "raw", "train, val or test"),
    Key("index", (), "int64", "raw", "index of the sample in its split"),
    Key("seed", (), "int64", "raw", "job seed; the sample's own seed is SeedSequence(seed, (split, index))"),
    Key("format_version", (), "int64", "raw", "version of this format"),
)

HAND_KEYS: tuple[Key, ...] = (
    Key("vertices", ("V", 3), "float32", "raw", "posed closed mesh, camera frame, metres"),
    Key("faces", ("F", 3), "int32", "raw", "triangles of the closed mesh, outward-oriented"),
    Key("joints", (21, 3), "float32", "raw", "ground-truth joints, internal order, camera frame, metres"),
    Key("joints_2d", (21, 2), "float32", "raw", "ground-truth joints projected with K, pixels (u right, v down)"),
    Key("global_orient", (3,), "float64", "raw", "MANO global orientation, axis-angle, world frame"),
    Key("hand_pose", (45,), "float64", "raw", "MANO finger pose, full axis-angle (no PCA)"),
    Key("betas", (10,), "float64", "raw", "MANO shape coefficients"),
    Key("transl", (3,), "float64", "raw", "MANO translation, world frame, metres"),
    Key("unpose", (16, 4, 4), "float64", "raw", "unposing bone transforms from the GT joints (query units)"),
    Key("bone_lengths", (16,), "float32", "raw", "bone lengths from the GT joints, metres"),
    Key("root_rot_mat", (4, 4), "float32", "raw", "root rotation from the GT joints (world -> canonical axes)"),
    Key("root_xyz", (3,), "float32", "raw", "wrist position, world frame, metres; left hand stored x-mirrored"),
    Key("query_to_cam", (4, 4), "float64", "raw", "affine map query space -> camera frame metres: X = M [p; 1]"),
    Key("noisy_joints", (21, 3), "float32", "raw", "input keypoints (noisy, or predicted by another method), internal order, camera frame, metres"),
    Key("noisy_mpjpe", (), "float64", "raw", "mean per-joint error of noisy_joints, metres"),
    Key("noisy_unpose", (16, 4, 4), "float64", "raw", "as unpose, from the noisy joints"),
    Key("noisy_bone_lengths", (16,), "float32", "raw", "as bone_lengths, from the noisy joints"),
    Key("noisy_root_rot_mat", (4, 4), "float32", "raw", "as root_rot_mat, from the noisy joints"),
    Key("noisy_root_xyz", (3,), "float32", "raw", "as root_xyz, from the noisy joints"),
    Key("points", ("N", 3), "float32", "f16", "occupancy points, query space (first half uniform in the box)"),
    Key("occupancy", ("N",), "bool", "bits", "True where points are inside the mesh"),
    Key("points_iou", ("M", 3), "float32", "f16", "uniform points in the +-0.55 box, query space"),
    Key("occupancy_iou", ("M",), "bool", "bits", "True where points_iou are inside the mesh"),
    Key("surface_points", ("S", 3), "float32", "f16", "points on the surface, query space"),
    Key("surface_normals", ("S", 3), "float32", "f16", "outward unit normals at surface_points, query space axes"),
    Key("mask_share", (), "float64", "raw", "share of the image's pixels where this hand is visible"),
    Key("occluded_fraction", (), "float64", "raw", "share of this hand's silhouette hidden by the other hand"),
)


def all_keys() -> tuple[str, ...]:
    """Every key of a sample, hand keys expanded with both prefixes."""
    return tuple(k.name for k in GLOBAL_KEYS) + tuple(f"{s}_{k.name}" for s in SIDES for k in HAND_KEYS)


def _specs() -> list[tuple[str, Key, str]]:
    out = [(k.name, k, "") for k in GLOBAL_KEYS]
    out += [(f"{s}_{k.name}", k, s) for s in SIDES for k in HAND_KEYS]
    return out


class SampleFileError(ValueError):
    """A sample file is missing, truncated, corrupt or not in this format. The message names the file."""


def _check_value(name: str, value: np.ndarray, key: Key, sizes: dict[str, int]) -> None:
    if key.dtype == "str":
        if value.dtype.kind != "U" or value.shape != ():
            raise ValueError(f"{name}: expected a string scalar, got dtype {value.dtype} shape {value.shape}")
        return
    if value.ndim != len(key.shape):
        raise ValueError(f"{name}: expected shape {key.shape}, got {value.shape}")
    for d, s in zip(key.shape, value.shape):
        if isinstance(d, int):
            if d != s:
                raise ValueError(f"{name}: expected shape {key.shape}, got {value.shape}")
        elif sizes.setdefault(d, s) != s:
            raise ValueError(f"{name}: dimension {d} is {s} here but {sizes[d]} in another key of the same hand")


def _encode_png(array: np.ndarray) -> np.ndarray:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG", compress_level=1)
    return np.frombuffer(buf.getvalue(), dtype=np.uint8)


def _decode_png(data: np.ndarray) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(data.tobytes())) as img:
        return np.asarray(img).copy()


def encode_sample(sample: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Check a sample against the format and convert it to its on-disk arrays.

    Raises ``ValueError`` naming the first missing, unexpected or malformed key.
    """
    if not isinstance(sample, dict):
        raise TypeError(f"sample: expected a dict of numpy arrays, got {type(sample).__name__}")
    missing = [k for k in all_keys() if k not in sample]
    extra = [k for k in sample if k not in set(all_keys())]
    if missing or extra:
        raise ValueError(f"sample: missing keys {missing}, unexpected keys {extra}")
    out: dict[str, np.ndarray] = {}
    sizes: dict[str, dict[str, int]] = {"": {}, "right": {}, "left": {}}
    for name, key, side in _specs():
        value = np.asarray(sample[name])
        if key.dtype != "str":
            if key.dtype == "bool" and value.dtype != np.bool_:
                raise ValueError(f"{name}: expected a bool array, got {value.dtype}")
            if key.dtype != "bool" and not np.issubdtype(value.dtype, np.number):
                raise ValueError(f"{name}: expected a numeric array, got {value.dtype}")
            if np.issubdtype(value.dtype, np.floating) and not np.isfinite(value).all():
                raise ValueError(f"{name}: contains NaN or inf")
            value = value.astype(key.dtype)
        _check_value(name, value, key, sizes[side])
        if key.storage == "png":
            out[name + "_png"] = _encode_png(value)
        elif key.storage == "f16":
            out[name] = value.astype(np.float16)
        elif key.storage == "bits":
            out[name] = np.packbits(value)
        else:
            out[name] = value
    if int(out["format_version"]) != FORMAT_VERSION:
        raise ValueError(f"format_version: expected {FORMAT_VERSION}, got {int(out['format_version'])}")
    return out


def stored_names() -> tuple[str, ...]:
    """Names of the arrays inside the ``.npz`` file (PNG keys carry a ``_png`` suffix)."""
    return tuple(name + "_png" if key.storage == "png" else name for name, key, _ in _specs())


def atomic_save_npz(path: str | os.PathLike, arrays: dict[str, np.ndarray]) -> None:
    """Write an uncompressed ``.npz`` via a temporary file in the same folder and ``os.replace``.

    Readers never see a partial file: the target either does not exist, holds the old content or the new.
    Zip members carry a fixed timestamp, so equal arrays give byte-identical files.
    """
    def write(f) -> None:
        with zipfile.ZipFile(f, mode="w", compression=zipfile.ZIP_STORED, allowZip64=True) as z:
            for name, value in arrays.items():
                info = zipfile.ZipInfo(name + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
                info.external_attr = 0o644 << 16
                with z.open(info, "w", force_zip64=True) as member:
                    np.lib.format.write_array(member, np.asanyarray(value), allow_pickle=False)

    atomic_write(path, write)


def write_sample(path: str | os.PathLike, sample: dict[str, np.ndarray]) -> None:
    """Check, encode and atomically write one sample to ``path`` (an ``.npz``)."""
    atomic_save_npz(path, encode_sample(sample))


def _open(path: Path) -> np.lib.npyio.NpzFile:
    if not path.is_file():
        raise SampleFileError(f"{path}: sample file not found")
    try:
        return np.load(path, allow_pickle=False)
    except Exception as e:  # zipfile.BadZipFile, EOFError, OSError, ValueError ...
        raise SampleFileError(f"{path}: corrupt or truncated sample file ({type(e).__name__}: {e})") from e


def validate_sample_file(path: str | os.PathLike) -> None:
    """Cheap integrity check: the zip's CRCs match and every array of the format is present.

    Raises :class:`SampleFileError` naming the file otherwise. Used to decide which samples to redo.
    """
    path = Path(path)
    if not path.is_file():
        raise SampleFileError(f"{path}: sample file not found")
    try:
        with zipfile.ZipFile(path) as z:
            bad = z.testzip()
            names = {n[:-4] if n.endswith(".npy") else n for n in z.namelist()}
    except Exception as e:
        raise SampleFileError(f"{path}: corrupt or truncated sample file ({type(e).__name__}: {e})") from e
    if bad is not None:
        raise SampleFileError(f"{path}: corrupt sample file (bad CRC in member {bad!r})")
    missing = [n for n in stored_names() if n not in names]
    if missing:
        raise SampleFileError(f"{path}: not a complete sample file, missing arrays {missing}")


def read_sample(path: str | os.PathLike, *, keys: tuple[str, ...] | None = None) -> dict[str, np.ndarray]:
    """Read one sample written by :func:`write_sample`.

    Args:
        path: the ``.npz`` file.
        keys: read only these keys (default: all of :func:`all_keys`).
    Returns:
        dict key -> numpy array in memory form (see the module docstring and ``docs/DATA.md``).
    Raises:
        SampleFileError (a ``ValueError``): the file is missing, truncated, corrupt or incomplete; the message
        names the file.
    """
    path = Path(path)
    specs = {name: key for name, key, _ in _specs()}
    wanted = all_keys() if keys is None else tuple(keys)
    unknown = [k for k in wanted if k not in specs]
    if unknown:
        raise ValueError(f"keys: unknown sample keys {unknown}; valid keys are listed in docs/DATA.md")
    out: dict[str, np.ndarray] = {}
    sizes: dict[str, dict[str, int]] = {"": {}, "right": {}, "left": {}}
    with _open(path) as data:
        try:
            version = int(data["format_version"])
            if version != FORMAT_VERSION:
                raise SampleFileError(f"{path}: sample format version {version}, this reader reads {FORMAT_VERSION}")
            for name in wanted:
                key = specs[name]
                if key.storage == "png":
                    value = _decode_png(data[name + "_png"])
                elif key.storage == "bits":
                    packed = data[name]
                    count = data[name.replace("occupancy", "points")].shape[0]
                    if packed.shape != ((count + 7) // 8,):
                        raise ValueError(f"{name} holds {packed.shape} packed bytes for {count} points")
                    value = np.unpackbits(packed, count=count).astype(bool)
                elif key.storage == "f16":
                    value = data[name].astype(np.float32)
                else:
                    value = data[name]
                side = name.split("_")[0] if name.split("_")[0] in SIDES else ""
                _check_value(name, value, key, sizes[side])
                out[name] = value
        except SampleFileError:
            raise
        except Exception as e:
            raise SampleFileError(f"{path}: corrupt or truncated sample file ({type(e).__name__}: {e})") from e
    return out
