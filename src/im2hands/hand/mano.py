"""MANO-format hand models: loading the official pickles without chumpy, and a skinning layer.

Files. The official MANO v1.2 download (https://mano.is.tue.mpg.de, MANO licence, never redistributed)
holds ``models/MANO_RIGHT.pkl`` and ``models/MANO_LEFT.pkl``: Python-2 pickles of a dict whose
``shapedirs`` is a ``chumpy`` expression and whose ``J_regressor`` is a ``scipy.sparse`` matrix.
:func:`load_mano_pickle` reads them with a restricted unpickler that evaluates the chumpy nodes to numpy
arrays itself, so chumpy is never imported (it is unmaintained and breaks on current NumPy), and that
refuses every global outside numpy, scipy.sparse and a few builtins, so a pickle cannot run code.
The open hand model of this project is stored in the same format (plus ``tip_vertex_ids``).

Layer. :class:`ManoLayer` turns (global orientation, hand pose, shape, translation) into vertices,
21 joints (16 kinematic joints + 5 fingertip vertices) and the 16 posed joint transforms. All outputs are
in the model's frame plus ``transl``, in metres. Maths: :mod:`im2hands.hand.lbs`.

Pose layout (MANO's, smplx's, manopth's): ``full_pose`` (B, 48) = global orientation (3) then 15 joints
x 3 axis-angle in MANO's kinematic order (index1-3, middle1-3, pinky1-3, ring1-3, thumb1-3), radians,
each relative to its parent joint.
"""

from __future__ import annotations

import _compat_pickle
import dataclasses
import importlib
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Sequence, Union

import numpy as np
import torch
from torch import Tensor, nn

from im2hands._checks import check_finite, check_shape, check_tensor
from im2hands.hand import skeleton as sk
from im2hands.hand.lbs import check_parents, lbs
from im2hands.hand.rotations import batch_rodrigues

Side = Literal["right", "left"]
TipConvention = Literal["manopth", "smplx"]

MANO_FILENAMES: dict[str, str] = {"right": "MANO_RIGHT.pkl", "left": "MANO_LEFT.pkl"}
"""File name of each side's model, as in the official download."""

MODEL_SUBFOLDERS: tuple[str, ...] = ("", "models", "mano")
"""Where :func:`find_mano_file` looks inside a folder, in this order."""

NUM_JOINTS = 16
"""MANO's kinematic joints: wrist + 5 fingers x 3."""

NUM_HAND_POSE = 45
"""Axis-angle dimensions of the 15 non-root joints."""

REQUIRED_KEYS: tuple[str, ...] = (
    "v_template", "f", "weights", "J_regressor", "kintree_table", "shapedirs", "posedirs",
    "hands_components", "hands_mean",
)
"""Keys every MANO-format pickle must hold (the ones the layer reads). Official files also hold ``J``,
``hands_coeffs``, ``bs_style`` and ``bs_type``, which are not used."""

TIP_VERTEX_IDS: dict[str, dict[str, tuple[int, ...]]] = {
    "manopth": {"right": (745, 317, 444, 556, 673), "left": (745, 317, 445, 556, 673)},
    "smplx": {"right": (744, 320, 443, 554, 671), "left": (744, 320, 443, 554, 671)},
}
"""Customary fingertip vertices of the official MANO mesh (thumb, index, middle, ring, pinky).
manopth (``manolayer.py``) takes 444 for the right middle tip and 445 for the left one; smplx
(``vertex_ids.py``, ``VERTEX_IDS['mano']``) uses one list for both sides."""

OPENHAND_KEY = "openhand_version"
"""Key present in the files of this project's open hand model, whose left model is an exact mirror of the
right one (its ``shapedirs`` included, so the left-hand fix must not be applied)."""



# --------------------------------------------------------------------------------------------------
# Loading


class _ChumpyNode:
    """Stand-in for a chumpy object met while unpickling: keeps its class name and pickled state.

    chumpy's ``Ch`` pickles through the default object protocol: ``Ch.__getstate__`` returns the
    instance ``__dict__`` (minus caches), so the state is a dict of its terms, e.g. ``{'x': ndarray}`` for
    a plain ``Ch`` or ``{'a': Ch, 'idxs': ndarray, 'preferred_shape': tuple}`` for ``reordering.Select``.
    """

    kind = "chumpy"

    def __setstate__(self, state: Any) -> None:
        self.state = state


_CHUMPY_CLASSES: dict[str, type] = {}


def _chumpy_class(module: str, name: str) -> type:
    kind = f"{module}.{name}"
    if kind not in _CHUMPY_CLASSES:
        _CHUMPY_CLASSES[kind] = type(name, (_ChumpyNode,), {"kind": kind, "__module__": __name__})
    return _CHUMPY_CLASSES[kind]


def _numpy_attr(submodule: str, name: str) -> Any:
    """``numpy.core.<submodule>.<name>``, via ``numpy._core`` on NumPy >= 2 (no deprecation warning)."""
    for base in ("numpy._core", "numpy.core"):
        try:
            return getattr(importlib.import_module(f"{base}.{submodule}"), name)
        except (ImportError, AttributeError):
            continue
    raise pickle.UnpicklingError(f"numpy has no {submodule}.{name}")


_BUILTINS = {"object", "set", "frozenset", "slice", "complex", "bytearray", "list", "dict", "tuple",
             "int", "float", "bool", "str", "bytes"}


class _MANOUnpickler(pickle.Unpickler):
    """Unpickler for MANO-format files: chumpy classes become :class:`_ChumpyNode` stand-ins; only
    numpy arrays/dtypes/scalars, scipy.sparse matrices and plain builtins are otherwise allowed."""

    def find_class(self, module: str, name: str) -> Any:
        # Python 2 names (copy_reg, __builtin__, ...), as pickle.Unpickler.find_class maps them itself
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        else:
            module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        if module == "chumpy" or module.startswith("chumpy."):
            return _chumpy_class(module, name)
        if module in ("numpy.core.multiarray", "numpy._core.multiarray") and name in ("_reconstruct", "scalar"):
            return _numpy_attr("multiarray", name)
        if module in ("numpy.core.numeric", "numpy._core.numeric") and name == "_frombuffer":
            return _numpy_attr("numeric", name)
        if module == "numpy" and name in ("ndarray", "dtype"):
            return getattr(np, name)
        if module == "numpy.dtypes" and name.endswith("DType"):
            import numpy.dtypes

            return getattr(numpy.dtypes, name)
        if module == "scipy.sparse" or module.startswith("scipy.sparse."):
            import scipy.sparse

            cls = getattr(scipy.sparse, name, None)
            if isinstance(cls, type) and (name.endswith("_matrix") or name.endswith("_array")):
                return cls
        if module == "copyreg" and name == "_reconstructor":
            import copyreg

            return copyreg._reconstructor
        if module == "_codecs" and name == "encode":
            import _codecs

            return _codecs.encode
        if module == "builtins" and name in _BUILTINS:
            import builtins

            return getattr(builtins, name)
        raise pickle.UnpicklingError(f"refusing to load the global {module}.{name}")


def _evaluate_chumpy(value: Any, where: str, depth: int = 0) -> Any:
    """Evaluate a chumpy stand-in to a numpy array (the value chumpy's ``.r`` would give)."""
    if not isinstance(value, _ChumpyNode):
        return value
    if depth > 16:
        raise ValueError(f"{where}: chumpy expression nested too deeply")
    state = getattr(value, "state", None)
    if not isinstance(state, dict):
        raise ValueError(f"{where}: chumpy {value.kind} object without a state dict")

    def term(name: str) -> Any:
        if name not in state:
            raise ValueError(f"{where}: chumpy {value.kind} object lacks its {name!r} term")
        return _evaluate_chumpy(state[name], where, depth + 1)

    kind = value.kind
    if kind in ("chumpy.ch.Ch", "chumpy.Ch"):
        return np.asarray(term("x"))
    if kind == "chumpy.reordering.Select":
        out = np.asarray(term("a")).ravel()[np.asarray(term("idxs"))]
        return out.reshape(state["preferred_shape"]) if "preferred_shape" in state else out
    if kind == "chumpy.reordering.Reshape":
        return np.asarray(term("a")).reshape(term("newshape"))
    if kind == "chumpy.reordering.transpose":
        return np.transpose(np.asarray(term("a")), axes=state.get("axes"))
    raise ValueError(f"{where}: unsupported chumpy expression {kind} (supported: chumpy.ch.Ch, "
                     "chumpy.reordering.Select, Reshape, transpose)")


def load_mano_pickle(path: str | os.PathLike) -> dict[str, Any]:
    """Read a MANO-format pickle without chumpy; every chumpy value becomes a numpy array.

    Args:
        path: a ``MANO_RIGHT.pkl`` / ``MANO_LEFT.pkl`` file (official, or a plain dict written by Python 3).
    Returns:
        The pickled dict; chumpy values evaluated to ``np.ndarray``, sparse matrices left sparse.
    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is not a pickle, references classes other than numpy/scipy.sparse/chumpy,
            holds an unsupported chumpy expression, or is not a dict.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"MANO model file {path} does not exist")
    try:
        with open(path, "rb") as fh:
            data = _MANOUnpickler(fh, encoding="latin1").load()
    except Exception as exc:  # malformed or foreign byte streams: UnpicklingError, EOFError, KeyError, ...
        raise ValueError(f"{path}: not a readable MANO model pickle ({type(exc).__name__}: {exc})") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a MANO model file: expected a pickled dict, got {type(data).__name__}")
    return {key: _evaluate_chumpy(val, f"{path}: key {key!r}") for key, val in data.items()}


def find_mano_file(model_path: str | os.PathLike, side: Side = "right") -> Path:
    """Locate one side's model file.

    Args:
        model_path: a folder holding ``MANO_RIGHT.pkl`` / ``MANO_LEFT.pkl`` directly or in a ``models/`` or
            ``mano/`` subfolder (the unpacked official download ``mano_v1_2/`` works), or one ``.pkl`` file.
        side: ``"right"`` or ``"left"``.
    Returns:
        The path of the file. A file given directly must not name the other side (``MANO_LEFT`` for a
        right hand).
    """
    sk.other_side(side)  # validates side
    path = Path(model_path).expanduser()
    if not path.exists():
        raise FileNotFoundError(
            f"model_path: {path} does not exist; pass the folder holding {MANO_FILENAMES['right']} and "
            f"{MANO_FILENAMES['left']} (from https://mano.is.tue.mpg.de) or one of those files")
    if path.is_file():
        name = path.name.upper()
        other = sk.other_side(side).upper()
        if other in name and side.upper() not in name:
            raise ValueError(f"model_path: {path} is a {other.lower()}-hand model but side={side!r}; "
                             f"pass side={other.lower()!r} or the {MANO_FILENAMES[side]} file")
        return path
    tried = [path / sub / MANO_FILENAMES[side] if sub else path / MANO_FILENAMES[side] for sub in MODEL_SUBFOLDERS]
    for candidate in tried:
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"model_path: no {MANO_FILENAMES[side]} for side={side!r} in {path}; looked for "
                            + ", ".join(str(t) for t in tried))


@dataclass(frozen=True)
class ManoModel:
    """The arrays of one MANO-format model file, validated, as numpy (float64 / int64)."""

    side: Side
    path: Path | None
    """Where the model was read from (None if built in memory)."""
    v_template: np.ndarray
    """(V, 3) rest-pose template vertices, model frame, metres."""
    faces: np.ndarray
    """(F, 3) int64 triangle vertex indices."""
    weights: np.ndarray
    """(V, 16) skinning weights."""
    j_regressor: np.ndarray
    """(16, V) dense joint regressor."""
    parents: tuple[int, ...]
    """16 parent indices (root -1), from ``kintree_table[0]``."""
    shapedirs: np.ndarray
    """(V, 3, S) shape blend shapes (as stored; no left-hand fix applied)."""
    posedirs: np.ndarray
    """(V, 3, 135) pose blend shapes."""
    hands_components: np.ndarray
    """(N, 45) pose PCA components (rows), N <= 45."""
    hands_mean: np.ndarray
    """(45,) mean hand pose, axis-angle, radians."""
    tip_vertex_ids: tuple[int, ...] | None
    """Fingertip vertices (thumb, index, middle, ring, pinky) stored in the file, or None."""
    shapedirs_mirrored: bool | None = None
    """Left models only: True if ``shapedirs`` already are the x-mirror of the right model's (no fix
    needed), False if they equal the right model's unmirrored (the official files' bug, smplx #48), None if
    unknown (right models, or no right model to compare with). See :func:`left_shapedirs_mirrored`."""

    @property
    def num_vertices(self) -> int:
        return self.v_template.shape[0]

    @property
    def num_betas(self) -> int:
        return self.shapedirs.shape[-1]


def _as_dense(value: Any, key: str, path: Path) -> np.ndarray:
    if hasattr(value, "toarray"):  # scipy.sparse
        value = value.toarray()
    try:
        arr = np.asarray(value)
    except Exception as exc:
        raise ValueError(f"{path}: key {key!r} is not an array ({type(value).__name__})") from exc
    if arr.dtype == object:
        raise ValueError(f"{path}: key {key!r} is not a numeric array ({type(value).__name__})")
    return arr


def mano_model_from_dict(data: dict[str, Any], side: Side, path: Path | None = None) -> ManoModel:
    """Validate a MANO-format dict (as returned by :func:`load_mano_pickle`) into a :class:`ManoModel`."""
    where = path if path is not None else "MANO model dict"
    missing = [k for k in REQUIRED_KEYS if k not in data]
    if missing:
        raise ValueError(f"{where}: not a MANO model file: missing keys {missing} "
                         f"(has {sorted(map(str, data))})")
    arr = {k: _as_dense(data[k], k, where) for k in REQUIRED_KEYS}

    def need(key: str, ok: bool, expected: str) -> None:
        if not ok:
            raise ValueError(f"{where}: key {key!r}: expected {expected}, got shape {arr[key].shape} "
                             f"dtype {arr[key].dtype}")

    v = arr["v_template"]
    need("v_template", v.ndim == 2 and v.shape[1] == 3 and v.shape[0] > 0, "(V, 3)")
    nv = v.shape[0]
    f = arr["f"]
    need("f", f.ndim == 2 and f.shape[1] == 3 and np.issubdtype(f.dtype, np.integer), "(F, 3) integers")
    need("f", f.size == 0 or (int(f.min()) >= 0 and int(f.max()) < nv), f"indices in [0, {nv})")
    kt = arr["kintree_table"]
    need("kintree_table", kt.ndim == 2 and kt.shape == (2, NUM_JOINTS), f"(2, {NUM_JOINTS})")
    parents = (-1,) + tuple(int(p) for p in kt[0, 1:])
    parents = check_parents(parents, f"{where}: kintree_table[0]")
    k = NUM_JOINTS
    need("weights", arr["weights"].shape == (nv, k), f"({nv}, {k})")
    need("J_regressor", arr["J_regressor"].shape == (k, nv), f"({k}, {nv})")
    sd = arr["shapedirs"]
    need("shapedirs", sd.ndim == 3 and sd.shape[:2] == (nv, 3) and sd.shape[2] >= 1, f"({nv}, 3, S)")
    need("posedirs", arr["posedirs"].shape == (nv, 3, 9 * (k - 1)), f"({nv}, 3, {9 * (k - 1)})")
    hc = arr["hands_components"]
    need("hands_components", hc.ndim == 2 and hc.shape[1] == NUM_HAND_POSE and 1 <= hc.shape[0] <= NUM_HAND_POSE,
         f"(N <= {NUM_HAND_POSE}, {NUM_HAND_POSE})")
    need("hands_mean", arr["hands_mean"].reshape(-1).shape == (NUM_HAND_POSE,), f"({NUM_HAND_POSE},)")

    tips = None
    if "tip_vertex_ids" in data:
        t = np.asarray(data["tip_vertex_ids"]).reshape(-1)
        if t.shape != (5,) or not np.issubdtype(t.dtype, np.integer) or t.min() < 0 or t.max() >= nv:
            raise ValueError(f"{where}: key 'tip_vertex_ids': expected 5 vertex indices in [0, {nv}), got {t}")
        tips = tuple(int(i) for i in t)

    for key in ("v_template", "weights", "J_regressor", "shapedirs", "posedirs", "hands_components", "hands_mean"):
        if not np.all(np.isfinite(arr[key].astype(np.float64))):
            raise ValueError(f"{where}: key {key!r} contains NaN or inf")
    f64 = {key: np.ascontiguousarray(arr[key], dtype=np.float64) for key in arr if key not in ("f", "kintree_table")}
    return ManoModel(
        side=side, path=path, v_template=f64["v_template"], faces=np.ascontiguousarray(f, dtype=np.int64),
        weights=f64["weights"], j_regressor=f64["J_regressor"], parents=parents, shapedirs=f64["shapedirs"],
        posedirs=f64["posedirs"], hands_components=f64["hands_components"],
        hands_mean=f64["hands_mean"].reshape(NUM_HAND_POSE), tip_vertex_ids=tips,
        shapedirs_mirrored=True if side == "left" and OPENHAND_KEY in data else None)


def left_shapedirs_mirrored(left_shapedirs: np.ndarray, right_shapedirs: np.ndarray) -> bool | None:
    """Whether a left model's shape blend shapes are the x-mirror of the right model's.

    The official ``MANO_LEFT.pkl`` holds the right hand's ``shapedirs`` unmirrored (smplx issue #48); a
    correct left model holds them with the x component negated. Returns True (mirrored: correct), False
    (equal: the official bug) or None (shapes differ, or neither is closer), comparing which of
    ``|L - R|`` and ``|L - mirror(R)|`` is smaller.
    """
    if left_shapedirs.shape != right_shapedirs.shape:
        return None
    mirrored = right_shapedirs.copy()
    mirrored[:, 0, :] *= -1.0
    d_same = float(np.abs(left_shapedirs - right_shapedirs).max())
    d_mirror = float(np.abs(left_shapedirs - mirrored).max())
    if d_same == d_mirror:
        return None
    return d_mirror < d_same


def load_mano_model(model_path: str | os.PathLike, side: Side = "right") -> ManoModel:
    """Find, read (without chumpy) and validate one side's MANO-format model.

    Args:
        model_path: folder or file, see :func:`find_mano_file`.
        side: ``"right"`` or ``"left"``.

    For a left model with a ``MANO_RIGHT.pkl`` beside it, ``shapedirs_mirrored`` is decided by comparing
    the two files' ``shapedirs`` (:func:`left_shapedirs_mirrored`); for a file of this project's open hand
    model (key ``openhand_version``) it is True.
    """
    path = find_mano_file(model_path, side)
    model = mano_model_from_dict(load_mano_pickle(path), side, path)
    right_path = path.with_name(MANO_FILENAMES["right"])
    if side == "left" and right_path.is_file() and right_path != path:
        right = load_mano_pickle(right_path)
        if "shapedirs" in right:
            state = left_shapedirs_mirrored(model.shapedirs, _as_dense(right["shapedirs"], "shapedirs", right_path))
            if state is not None:
                model = dataclasses.replace(model, shapedirs_mirrored=state)
    return model


def resolve_tip_vertex_ids(tips: TipConvention | Sequence[int] | None, model: ManoModel) -> tuple[int, ...]:
    """The 5 fingertip vertices (thumb, index, middle, ring, pinky) used as joints 17-21.

    ``tips=None`` takes the file's ``tip_vertex_ids`` when it has them, else the ``"manopth"`` ids (the
    convention of the internal joint order and of HALO's/Im2Hands' data). ``"manopth"`` / ``"smplx"`` pick
    those conventions (:data:`TIP_VERTEX_IDS`); 5 ints give the vertices directly.
    """
    if tips is None:
        ids = model.tip_vertex_ids if model.tip_vertex_ids is not None else TIP_VERTEX_IDS["manopth"][model.side]
    elif isinstance(tips, str):
        if tips not in TIP_VERTEX_IDS:
            raise ValueError(f"tips: expected None, {sorted(TIP_VERTEX_IDS)} or 5 vertex ids, got {tips!r}")
        ids = TIP_VERTEX_IDS[tips][model.side]
    else:
        ids = tuple(int(i) for i in tips)
        if len(ids) != 5:
            raise ValueError(f"tips: expected 5 vertex ids (thumb, index, middle, ring, pinky), got {len(ids)}")
    bad = [i for i in ids if not 0 <= i < model.num_vertices]
    if bad:
        raise ValueError(f"tips: vertex ids {bad} out of range for a model with {model.num_vertices} vertices "
                         f"({model.path}); pass tips as 5 valid ids or use a model file with 'tip_vertex_ids'")
    return tuple(ids)


# --------------------------------------------------------------------------------------------------
# Layer


@dataclass(frozen=True)
class ManoOutput:
    """Result of :class:`ManoLayer`; points in the model frame plus ``transl``, metres."""

    vertices: Tensor
    """(B, V, 3) posed mesh vertices."""
    joints: Tensor
    """(B, 21, 3) the 16 kinematic joints and 5 fingertip vertices, in the layer's ``joint_order``
    (default: the internal order, wrist, thumb1-4, index1-4, middle1-4, ring1-4, pinky1-4)."""
    kinematic_joints: Tensor
    """(B, 16, 3) the posed kinematic joints in MANO's order (wrist, index1-3, middle1-3, pinky1-3,
    ring1-3, thumb1-3)."""
    joint_transforms: Tensor
    """(B, 16, 4, 4) posed frame of each kinematic joint (MANO order): maps joint-local coordinates (axes
    of the rest-pose model frame, origin at the joint) to the output frame; translation = posed joint."""
    skinning_transforms: Tensor
    """(B, 16, 4, 4) rigid map of each joint from the shaped rest pose (model frame) to the output frame,
    ``joint_transforms @ translate(-rest_joints)``."""
    rest_joints: Tensor
    """(B, 16, 3) kinematic joints of the shaped, unposed hand (model frame, no ``transl``)."""
    full_pose: Tensor
    """(B, 48) the axis-angle pose actually used: global orientation, then the 45 hand-pose values after
    PCA expansion and after adding ``hands_mean`` (unless ``flat_hand_mean``), radians."""
    betas: Tensor
    """(B, S) the shape coefficients used."""

    @property
    def hand_pose(self) -> Tensor:
        """(B, 45) the hand pose actually used (``full_pose[:, 3:]``): axis-angle of the 15 finger joints in
        MANO's order, after PCA expansion and ``hands_mean``, radians."""
        return self.full_pose[:, 3:]


class ManoLayer(nn.Module):
    """MANO-format hand: ``layer(global_orient, hand_pose, betas, transl)`` -> :class:`ManoOutput`.

    Args:
        model_path: folder holding ``MANO_RIGHT.pkl`` / ``MANO_LEFT.pkl`` (or a ``models/`` or ``mano/``
            subfolder with them), one such file, or an already loaded :class:`ManoModel`.
        side: ``"right"`` or ``"left"``.
        use_pca: if True, ``hand_pose`` is (B, num_pca_comps) coefficients of the file's pose PCA; else
            (B, 45) axis-angle. Default False (InterHand2.6M's MANO parameters are full axis-angle poses).
        num_pca_comps: number of PCA components, 1..45 (used only with ``use_pca``). Unlike smplx, 45
            components still go through the PCA basis (as manopth does).
        flat_hand_mean: if False (default, as smplx and MANO), ``hands_mean`` is added to the 45 hand
            pose values, so a zero pose is the mean (relaxed) hand; if True a zero pose is the flat hand
            (manopth's default). InterHand2.6M's parameters need False.
        fix_left_shapedirs: for ``side="left"``, negate the x component of ``shapedirs``
            (``shapedirs[:, 0, :] *= -1``). The official left file ships the right hand's shape blend
            shapes unmirrored (smplx issue #48), so equal betas give mirror-asymmetric hands;
            InterHand2.6M's rendering code applies this fix. None (default): apply it unless the model's
            left ``shapedirs`` are known to be mirrored already (``ManoModel.shapedirs_mirrored``: decided
            from the ``MANO_RIGHT.pkl`` beside the left file, or True for the open hand model); so official
            files get the fix and correctly mirrored files do not. True / False force it. Ignored for the
            right hand; ``layer.left_shapedirs_fixed`` tells whether it was applied.
        tips: fingertip vertices for joints 17-21. None (default): the file's ``tip_vertex_ids`` if it
            has them, else manopth's ids (745, 317, 444 right / 445 left, 556, 673). ``"manopth"`` or
            ``"smplx"`` (744, 320, 443, 554, 671) force a convention; 5 ints give them directly.
        joint_order: ``"internal"`` (default; see :mod:`im2hands.hand.skeleton`) or ``"mano"`` (16
            kinematic joints in MANO's order, then the tips of thumb, index, middle, ring, pinky).
        dtype: floating dtype of the buffers, converted from the file's float64. ``.double()`` / ``.to()``
            also work but cast the already rounded buffers: build with ``dtype=torch.float64`` for full
            float64 precision.

    Buffers: ``v_template`` (V, 3), ``shapedirs`` (V, 3, S), ``posedirs`` (V, 3, 135), ``j_regressor``
    (16, V), ``lbs_weights`` (V, 16), ``hands_mean`` (45,) (zeros if ``flat_hand_mean``),
    ``pca_components`` (num_pca_comps, 45) (0 rows without ``use_pca``), ``faces`` (F, 3) int64,
    ``parents`` (16,) int64, ``tip_vertex_ids`` (5,) int64. They follow ``.to()`` / ``.double()`` but are
    not in ``state_dict()``: the model data stays in the user's MANO file, never in a checkpoint.
    """

    def __init__(
        self,
        model_path: Union[str, os.PathLike, ManoModel],
        side: Side = "right",
        *,
        use_pca: bool = False,
        num_pca_comps: int = 6,
        flat_hand_mean: bool = False,
        fix_left_shapedirs: bool | None = None,
        tips: TipConvention | Sequence[int] | None = None,
        joint_order: Literal["internal", "mano"] = "internal",
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        sk.other_side(side)  # validates side
        if isinstance(model_path, ManoModel):
            model = model_path
            if model.side != side:
                raise ValueError(f"model_path: the given ManoModel is a {model.side} hand but side={side!r}")
        else:
            model = load_mano_model(model_path, side)
        if not isinstance(use_pca, bool):
            raise TypeError(f"use_pca: expected a bool, got {type(use_pca).__name__}")
        n_avail = model.hands_components.shape[0]
        if use_pca and (isinstance(num_pca_comps, bool) or not isinstance(num_pca_comps, (int, np.integer))
                        or not 1 <= num_pca_comps <= n_avail):
            raise ValueError(f"num_pca_comps: expected an int in [1, {n_avail}], got {num_pca_comps!r}")
        if joint_order not in ("internal", "mano"):
            raise ValueError(f"joint_order: expected 'internal' or 'mano', got {joint_order!r}")
        if not dtype.is_floating_point:
            raise TypeError(f"dtype: expected a floating dtype, got {dtype}")

        self.side: Side = side
        self.use_pca = use_pca
        self.num_pca_comps = int(num_pca_comps) if use_pca else NUM_HAND_POSE
        self.flat_hand_mean = bool(flat_hand_mean)
        if fix_left_shapedirs is None:
            fix_left_shapedirs = model.shapedirs_mirrored is not True
        if not isinstance(fix_left_shapedirs, bool):
            raise TypeError(f"fix_left_shapedirs: expected None or a bool, got {fix_left_shapedirs!r}")
        self.left_shapedirs_fixed = side == "left" and fix_left_shapedirs
        self.joint_order = joint_order
        self.model_file = model.path
        self._parents = model.parents
        self.tip_ids = resolve_tip_vertex_ids(tips, model)

        shapedirs = model.shapedirs.copy()
        if self.left_shapedirs_fixed:
            shapedirs[:, 0, :] *= -1.0
        comps = model.hands_components[: self.num_pca_comps] if use_pca else np.zeros((0, NUM_HAND_POSE))
        mean = np.zeros(NUM_HAND_POSE) if flat_hand_mean else model.hands_mean
        perm = sk.INTERNAL_FROM_MANO if joint_order == "internal" else tuple(range(21))

        def buf(name: str, array: np.ndarray, float_: bool = True) -> None:
            t = torch.from_numpy(np.ascontiguousarray(array))
            # not persistent: checkpoints of networks holding this layer never carry the (licensed) model
            self.register_buffer(name, t.to(dtype) if float_ else t.long(), persistent=False)

        buf("v_template", model.v_template)
        buf("shapedirs", shapedirs)
        buf("posedirs", model.posedirs)
        buf("j_regressor", model.j_regressor)
        buf("lbs_weights", model.weights)
        buf("hands_mean", mean)
        buf("pca_components", comps)
        buf("faces", model.faces, float_=False)
        buf("parents", np.asarray(model.parents), float_=False)
        buf("tip_vertex_ids", np.asarray(self.tip_ids), float_=False)
        buf("_joint_perm", np.asarray(perm), float_=False)

    @property
    def num_betas(self) -> int:
        return self.shapedirs.shape[-1]

    @property
    def num_vertices(self) -> int:
        return self.v_template.shape[0]

    @property
    def hand_pose_dim(self) -> int:
        """Width of ``hand_pose``: ``num_pca_comps`` with ``use_pca``, else 45."""
        return self.num_pca_comps

    def extra_repr(self) -> str:
        return (f"side={self.side!r}, use_pca={self.use_pca}, hand_pose_dim={self.hand_pose_dim}, "
                f"flat_hand_mean={self.flat_hand_mean}, left_shapedirs_fixed={self.left_shapedirs_fixed}, "
                f"tips={self.tip_ids}, joint_order={self.joint_order!r}, vertices={self.num_vertices}")

    def _inputs(self, **named: Tensor | None) -> dict[str, Tensor]:
        widths = {"global_orient": 3, "hand_pose": self.hand_pose_dim, "betas": self.num_betas, "transl": 3}
        ref = self.v_template
        batch, batch_from = None, None
        for name, value in named.items():
            if value is None:
                continue
            check_tensor(value, name)
            check_shape(value, f"B {widths[name]}", name)
            if value.dtype != ref.dtype:
                raise TypeError(f"{name}: dtype {value.dtype} differs from the layer's {ref.dtype}; convert the "
                                f"input or the layer (layer.to({value.dtype}))")
            if value.device != ref.device:
                raise ValueError(f"{name}: on {value.device} but the layer is on {ref.device}; move one of them")
            check_finite(value, name)
            if batch is None:
                batch, batch_from = value.shape[0], name
            elif value.shape[0] != batch:
                raise ValueError(f"{name}: batch size {value.shape[0]} differs from {batch_from}'s {batch}")
        batch = 1 if batch is None else batch
        return {name: value if value is not None else ref.new_zeros(batch, widths[name])
                for name, value in named.items()}

    def forward(
        self,
        global_orient: Tensor | None = None,
        hand_pose: Tensor | None = None,
        betas: Tensor | None = None,
        transl: Tensor | None = None,
    ) -> ManoOutput:
        """Pose and shape the hand.

        Args:
            global_orient: (B, 3) axis-angle rotation of the wrist (root), radians.
            hand_pose: (B, 45) axis-angle of the 15 finger joints in MANO's order, radians, or
                (B, num_pca_comps) PCA coefficients with ``use_pca``.
            betas: (B, S) shape coefficients (S = 10 for MANO).
            transl: (B, 3) translation added to every output point, metres.
            Missing arguments are zeros; B is taken from the given ones (1 if none is given).
        Returns:
            :class:`ManoOutput`.
        """
        x = self._inputs(global_orient=global_orient, hand_pose=hand_pose, betas=betas, transl=transl)
        pose45 = x["hand_pose"] @ self.pca_components if self.use_pca else x["hand_pose"]
        full_pose = torch.cat([x["global_orient"], pose45 + self.hands_mean], dim=1)  # (B, 48)
        batch = full_pose.shape[0]
        rot_mats = batch_rodrigues(full_pose.reshape(batch, NUM_JOINTS, 3))  # (B, 16, 3, 3)
        res = lbs(x["betas"], rot_mats, self.v_template, self.shapedirs, self.posedirs, self.j_regressor,
                  self._parents, self.lbs_weights)

        t = x["transl"]
        vertices = res.vertices + t[:, None, :]
        shift = torch.zeros(batch, 1, 4, 4, dtype=t.dtype, device=t.device)
        shift[:, 0, :3, 3] = t
        joint_tf = res.joint_transforms + shift
        skin_tf = res.skinning_transforms + shift
        kin = joint_tf[..., :3, 3]  # (B, 16, 3)
        joints_mano = torch.cat([kin, vertices[:, self.tip_vertex_ids]], dim=1)  # (B, 21, 3)
        return ManoOutput(
            vertices=vertices, joints=joints_mano[:, self._joint_perm], kinematic_joints=kin,
            joint_transforms=joint_tf, skinning_transforms=skin_tf, rest_joints=res.rest_joints,
            full_pose=full_pose, betas=x["betas"])
