"""The Python API: two interacting hand meshes from one RGB image, both hands' 3D keypoints and the camera.

Example::

    from im2hands import Im2Hands

    model = Im2Hands.from_checkpoint("runs/compact")           # a folder of checkpoints, or files
    result = model.reconstruct("image.jpg", keypoints, {"K": K})  # keypoints: {"right": (21, 3), "left": (21, 3)}
    result.stages["refined"].right.vertices                       # (V, 3) camera frame, metres

Pipeline (``docs/ARCHITECTURE.md``): the two-hand 256 x 256 crop (IntagHand's rule) -> optional keypoint
refinement (KptsRef) -> canonicalisation -> InitOcc encoded once -> multi-resolution extraction of both
hands in the same network calls -> 512 anchors on each initial mesh -> RefOcc encoded once -> refined
extraction seeded from the initial surface. Meshes are in the camera frame, metres, outward normals.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from im2hands.data.crop import Crop, crop_two_hands
from im2hands.data.dataset import normalise_image
from im2hands.hand import skeleton
from im2hands.hand.camera import Camera
from im2hands.hand.canonical import canonicalise
from im2hands.hand.frames import world_to_query_matrix
from im2hands.hand.skeleton import SIDES, Side
from im2hands.mesh import Extraction, Lattice, extract_meshes, extract_meshes_seeded, mesh_to_camera, sample_anchors
from im2hands.models.bundle import SHIPPED_BUNDLE, read_networks
from im2hands.models.checkpoint import build_model, check_state_dict, expected_shapes
from im2hands.models.init_occ import HandInputs, InitOcc
from im2hands.models.kpts_ref import KptsRef, network_keypoints, network_to_camera
from im2hands.models.ref_occ import InitialValues, RefOcc

Stage = Literal["initial", "refined"]
STAGES: tuple[Stage, ...] = ("initial", "refined")
THRESHOLDS: dict[Stage, float] = {"initial": 0.5, "refined": 0.45}
"""Iso-values of the two stages' occupancy probabilities (the official generator's)."""
RESIDUAL_REFINED_THRESHOLD = 0.5
"""Iso-value of a residual RefOcc's refined occupancy (``RefOccConfig.residual``, :func:`refined_threshold`)."""
NUM_ANCHORS = 512


def refined_threshold(ref_occ: RefOcc) -> float:
    """The refined stage's iso-value for `ref_occ`: 0.45 (official) for a RefOcc that predicts the occupancy
    itself; 0.5 for a residual one, whose logit is InitOcc's plus a correction that starts at zero and is
    trained with cross-entropy: it keeps InitOcc's calibration, and at 0.45 its surface would lie outside
    InitOcc's (both hands thicker, more overlap) even where the correction is zero."""
    return RESIDUAL_REFINED_THRESHOLD if ref_occ.config.residual else THRESHOLDS["refined"]


@dataclass(frozen=True)
class HandMesh:
    """A triangle mesh in the camera frame (OpenCV axes), metres; faces counter-clockwise seen from outside."""

    vertices: np.ndarray
    """(V, 3) float64."""
    faces: np.ndarray
    """(F, 3) int64."""

    def to_trimesh(self):
        import trimesh

        return trimesh.Trimesh(self.vertices, self.faces, process=False)


@dataclass(frozen=True)
class StageResult:
    """Both hands' meshes of one stage and what they cost."""

    right: HandMesh
    left: HandMesh
    seconds: float
    """Wall time of the stage: encoding, extraction (network calls + marching cubes), camera mapping."""
    encode_seconds: float
    """Part of `seconds` spent encoding the image (and anchors) once."""
    evaluations: dict[str, int]
    """Occupancy evaluations per hand (``"right"``, ``"left"``)."""
    extractions: tuple[Extraction, Extraction] = field(repr=False)
    """The query-space extractions (right, left), e.g. to seed a later extraction."""

    def hand(self, side: Side) -> HandMesh:
        return self.right if side == "right" else self.left


@dataclass(frozen=True)
class Reconstruction:
    """What :meth:`Im2Hands.reconstruct` returns."""

    keypoints_input: dict[str, np.ndarray]
    """Per hand, (21, 3) the input keypoints in the camera frame, metres, internal joint order."""
    keypoints: dict[str, np.ndarray]
    """Per hand, (21, 3) the keypoints the occupancy networks used (refined when KptsRef ran)."""
    stages: dict[str, StageResult]
    """``"initial"`` and/or ``"refined"``."""
    crop: Crop
    """The 256 x 256 network input and its intrinsics (camera frame as the meshes)."""
    timings: dict[str, float]
    """Seconds per phase: ``crop``, ``keypoints`` (refinement), ``canonicalise``, ``initial``, ``anchors``,
    ``refined``, ``total``."""

    def mesh(self, stage: Stage, side: Side) -> HandMesh:
        return self.stages[stage].hand(side)


# ------------------------------------------------------------------------------------------------- inputs
def parse_keypoints(keypoints, order: Literal["internal", "interhand"] = "internal") -> dict[str, np.ndarray]:
    """Both hands' keypoints -> {"right": (21, 3), "left": (21, 3)} float64 in the internal joint order.

    Args:
        keypoints: a mapping with "right" and "left" (21, 3) arrays in `order`; or an array (2, 21, 3)
            (right, left) in the internal order; or (42, 3) in InterHand2.6M's order (right 0-20, left
            21-41), with ``order="interhand"``.
        order: the joint order of the input (``docs/CONVENTIONS.md``).
    """
    if order not in ("internal", "interhand"):
        raise ValueError(f"keypoint_order: expected 'internal' or 'interhand', got {order!r}")
    if isinstance(keypoints, Mapping):
        missing = [s for s in SIDES if s not in keypoints]
        if missing:
            raise ValueError(f"keypoints: missing hand(s) {missing}; both hands are needed")
        hands = {s: np.asarray(keypoints[s], np.float64) for s in SIDES}
        if order == "interhand":
            hands = {s: np.asarray(skeleton.reorder(h, "interhand", "internal")) for s, h in hands.items()}
    else:
        arr = np.asarray(keypoints, np.float64)
        if order == "interhand" or arr.shape == (42, 3):
            if arr.shape != (42, 3):
                raise ValueError(f"keypoints: expected shape (42, 3) in the InterHand2.6M order, got {arr.shape}")
            right, left = skeleton.interhand_to_internal(arr)
            hands = {"right": np.asarray(right, np.float64), "left": np.asarray(left, np.float64)}
        else:
            if arr.shape != (2, 21, 3):
                raise ValueError(f"keypoints: expected shape (2, 21, 3) (right, left) or a mapping, got {arr.shape}")
            hands = {"right": arr[0], "left": arr[1]}
    for s, h in hands.items():
        if h.shape != (21, 3):
            raise ValueError(f"keypoints[{s!r}]: expected shape (21, 3), got {h.shape}")
        if not np.all(np.isfinite(h)):
            j = int(np.nonzero(~np.isfinite(h).all(-1))[0][0])
            raise ValueError(f"keypoints[{s!r}]: joint {j} is NaN or inf (is the {s} hand missing?)")
    return hands


def parse_camera(camera) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A :class:`~im2hands.hand.camera.Camera` or a mapping with ``K`` and optional ``R``, ``T`` ->
    (K (3, 3), R (3, 3), T (3,)) float64; R and T default to the identity (keypoints in the camera frame)."""
    if isinstance(camera, Camera):
        K, R, T = camera.K, camera.R, camera.T
    elif isinstance(camera, Mapping):
        if "K" not in camera:
            raise ValueError("camera: missing 'K' (3x3 intrinsics of the image, pixels)")
        K, R, T = camera["K"], camera.get("R", np.eye(3)), camera.get("T", np.zeros(3))
    else:
        raise TypeError(f"camera: expected a Camera or a mapping with 'K' (and optionally 'R', 'T'), got "
                        f"{type(camera).__name__}")
    K, R, T = (np.asarray(x.detach().cpu() if isinstance(x, Tensor) else x, np.float64) for x in (K, R, T))
    for name, x, shape in (("K", K, (3, 3)), ("R", R, (3, 3)), ("T", T, (3,))):
        if x.shape != shape:
            raise ValueError(f"camera.{name}: expected shape {shape}, got {x.shape}")
        if not np.all(np.isfinite(x)):
            raise ValueError(f"camera.{name}: contains NaN or inf")
    if abs(np.linalg.det(R) - 1) > 1e-4 or np.abs(R @ R.T - np.eye(3)).max() > 1e-4:
        raise ValueError("camera.R: expected a rotation matrix (orthonormal, determinant 1)")
    return K, R, T


def _read_json_object(path: Path, what: str) -> dict:
    """The JSON object in `path`; a ValueError naming `what` and the file if it is unreadable or not an object."""
    import json

    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{what} {path}: cannot read ({e})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{what} {path}: expected a JSON object")
    return data


def load_keypoints_json(path: str | Path) -> tuple[dict[str, np.ndarray], str]:
    """Read a keypoints file (format: ``docs/RECONSTRUCT.md``): ``{"order": "internal", "right": [[x, y, z] x 21],
    "left": [...]}`` or ``{"order": "interhand", "joints": [[x, y, z] x 42]}``; metres, optional ``"units": "mm"``.

    Returns:
        (keypoints for :func:`parse_keypoints`, their order).
    """
    path = Path(path)
    data = _read_json_object(path, "keypoints file")
    order = data.get("order", "internal")
    units = data.get("units", "m")
    if units not in ("m", "mm"):
        raise ValueError(f"keypoints file {path}: 'units' must be 'm' or 'mm', got {units!r}")
    scale = 0.001 if units == "mm" else 1.0
    try:
        if "joints" in data:
            kp = np.asarray(data["joints"], np.float64) * scale
        else:
            kp = {s: np.asarray(data[s], np.float64) * scale for s in SIDES}
    except KeyError as e:
        raise ValueError(f"keypoints file {path}: missing key {e} (expected 'right' and 'left', or 'joints')") from None
    except (TypeError, ValueError) as e:
        raise ValueError(f"keypoints file {path}: not numeric arrays ({e})") from None
    try:
        parse_keypoints(kp, order)
    except ValueError as e:
        raise ValueError(f"keypoints file {path}: {e}") from None
    return kp, order


def load_camera_json(path: str | Path) -> dict[str, np.ndarray]:
    """Read a camera file (``docs/RECONSTRUCT.md``): ``{"K": 3x3, "R": 3x3 (optional), "T": 3 (optional,
    metres)}``."""
    path = Path(path)
    data = _read_json_object(path, "camera file")
    try:
        cam = {k: np.asarray(v, np.float64) for k, v in data.items() if k in ("K", "R", "T")}
        parse_camera(cam)
    except (TypeError, ValueError) as e:
        raise ValueError(f"camera file {path}: {e}") from None
    return cam


def save_keypoints_json(path: str | Path, keypoints) -> None:
    """Write both hands' keypoints in the file format :func:`load_keypoints_json` reads (``"order":
    "internal"``, metres), atomically.

    Args:
        path: the file to write.
        keypoints: both hands' (21, 3) keypoints, metres, internal order (anything :func:`parse_keypoints`
            takes in that order).
    """
    import json

    from im2hands._io import atomic_write

    hands = parse_keypoints(keypoints)
    text = json.dumps({"order": "internal", "units": "m", **{s: hands[s].tolist() for s in SIDES}})
    atomic_write(Path(path), lambda f: f.write(text.encode()))


def save_camera_json(path: str | Path, camera) -> None:
    """Write a camera (see :func:`parse_camera`) in the file format :func:`load_camera_json` reads: ``K``,
    ``R``, ``T``, atomically."""
    import json

    from im2hands._io import atomic_write

    K, R, T = parse_camera(camera)
    text = json.dumps({"K": K.tolist(), "R": R.tolist(), "T": T.tolist()})
    atomic_write(Path(path), lambda f: f.write(text.encode()))


def save_reconstruction(result: Reconstruction, out: str | Path, *, mesh_format: str = "ply") -> list[Path]:
    """Write ``<stage>_<side>.<mesh_format>`` per stage and hand and ``result.json`` (keypoints, timings,
    evaluation counts) into `out`; every file atomically. Returns the paths written."""
    import json

    from im2hands._io import atomic_write
    from im2hands.mesh import export_mesh

    if mesh_format not in ("ply", "obj"):
        raise ValueError(f"mesh_format: expected 'ply' or 'obj', got {mesh_format!r}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for stage, res in result.stages.items():
        for side in SIDES:
            m = res.hand(side)
            path = out / f"{stage}_{side}.{mesh_format}"
            export_mesh(path, torch.from_numpy(m.vertices), torch.from_numpy(m.faces))
            written.append(path)
    info = {
        "units": "metres, camera frame (OpenCV: x right, y down, z forward)",
        "keypoints_input": {s: result.keypoints_input[s].tolist() for s in SIDES},
        "keypoints": {s: result.keypoints[s].tolist() for s in SIDES},
        "crop": {"K": result.crop.K.tolist(), "box_u0_v0_side": list(result.crop.box)},
        "timings_s": result.timings,
        "stages": {stage: {"seconds": r.seconds, "encode_seconds": r.encode_seconds, "evaluations": r.evaluations,
                           "vertices": {s: int(len(r.hand(s).vertices)) for s in SIDES},
                           "faces": {s: int(len(r.hand(s).faces)) for s in SIDES}}
                   for stage, r in result.stages.items()},
    }
    text = json.dumps(info, indent=1)
    atomic_write(out / "result.json", lambda f: f.write(text.encode()))
    written.append(out / "result.json")
    return written


# ------------------------------------------------------------------------------------------------- model
def _same_network(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    """Whether two networks compute the same function: the same module, or the same class and configuration
    with equal weights and buffers."""
    if a is b:
        return True
    if type(a) is not type(b) or getattr(a, "config", None) != getattr(b, "config", None):
        return False
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(
        sa[k].shape == sb[k].shape and sa[k].dtype == sb[k].dtype and torch.equal(sa[k], sb[k].to(sa[k].device))
        for k in sa)


class _InitialCache:
    """The initial stage's InitOcc values of one hand, by lattice point, for the refined stage to reuse."""

    def __init__(self, lattice: Lattice):
        self.lattice = lattice
        self._parts: list[tuple[Tensor, Tensor, Tensor]] = []
        self._table: tuple[Tensor, Tensor, Tensor] | None = None

    def add(self, points: Tensor, occupancy: Tensor, max_logit: Tensor) -> None:
        """(N, 3) lattice points (query units) and their (N,) occupancy and max part logit."""
        keys = self.lattice.index_key(self.lattice.query_to_index(points))
        self._parts.append((keys, occupancy.float(), max_logit.float()))
        self._table = None

    def lookup(self, points: Tensor) -> InitialValues:
        """(1, N) :class:`InitialValues` of (N, 3) lattice points: NaN occupancy where not seen."""
        if self._table is None:
            if self._parts:
                keys, occ, logit = (torch.cat(t) for t in zip(*self._parts))
            else:
                keys = torch.zeros(0, dtype=torch.long, device=points.device)
                occ = logit = torch.zeros(0, device=points.device)
            order = torch.argsort(keys)
            self._table = (keys[order], occ[order], logit[order])
        keys, occ, logit = self._table
        nan = torch.full((1, len(points)), float("nan"), device=points.device)
        if not len(keys):
            return InitialValues(occupancy=nan, max_logit=nan)
        want = self.lattice.index_key(self.lattice.query_to_index(points))
        at = torch.searchsorted(keys, want).clamp(max=len(keys) - 1)
        hit = keys[at] == want
        return InitialValues(occupancy=torch.where(hit, occ[at], nan), max_logit=torch.where(hit, logit[at], nan))


class Im2Hands:
    """Im2Hands inference: networks, extraction settings, and :meth:`reconstruct`.

    Args:
        init_occ: the initial occupancy network (None: the frozen copy inside `ref_occ`).
        ref_occ: the refinement network (None: only the initial stage is available).
        kpts_ref: the keypoint refinement network (None: keypoints are used as given).
        device: where the networks run (default: where their weights are).
        lattice: extraction lattice (default 32^3 start, 3 upsampling steps: 257^3, box +-0.55).
        seed: seed of the anchor sampling.
        bf16: bfloat16 fast mode: InitOcc's part decoders (``InitOccConfig.bf16_decoder``), RefOcc's decoder
            products and its anchor encoder (``RefOccConfig.bf16_decoder``, ``bf16_encoder``) in bfloat16:
            faster on CPUs with native bfloat16, slightly different logits (docs/PERFORMANCE.md); None keeps
            the networks' settings (off unless set).
    """

    def __init__(self, *, init_occ: InitOcc | None = None, ref_occ: RefOcc | None = None,
                 kpts_ref: KptsRef | None = None, device: torch.device | str | None = None,
                 lattice: Lattice = Lattice(), seed: int = 0, bf16: bool | None = None):
        if init_occ is None and ref_occ is None:
            raise ValueError("init_occ, ref_occ: at least one occupancy network is needed")
        if init_occ is None:
            init_occ = ref_occ.init_occ
        self.device = torch.device(device) if device is not None else next(init_occ.parameters()).device
        self.init_occ = init_occ.to(self.device).eval()
        self.ref_occ = ref_occ.to(self.device).eval() if ref_occ is not None else None
        if bf16 is not None:
            frozen = self.ref_occ.init_occ if self.ref_occ is not None else None
            for net in {id(n): n for n in (self.init_occ, frozen) if n is not None}.values():
                net.config = replace(net.config, bf16_decoder=bool(bf16))
            if self.ref_occ is not None:
                self.ref_occ.config = replace(self.ref_occ.config, bf16_decoder=bool(bf16), bf16_encoder=bool(bf16),
                                              init_occ=self.ref_occ.init_occ.config)
        self.kpts_ref = kpts_ref.to(self.device).eval() if kpts_ref is not None else None
        self.lattice = lattice
        self.seed = seed
        self.reuse_initial = self.ref_occ is not None and _same_network(self.init_occ, self.ref_occ.init_occ) \
            and not self.ref_occ.config.official_quirks
        """Whether the refined stage reuses the initial stage's image encoding and its InitOcc values at the
        lattice points both stages evaluate, instead of running RefOcc's frozen InitOcc again there: only when
        that frozen InitOcc is the initial network (the same module, or the same class, configuration and
        weights at construction) and in the default mode (officially a query's initial value depends on the
        first query of its call)."""

    @classmethod
    def from_checkpoint(cls, *paths: str | Path, device: torch.device | str | None = None,
                        lattice: Lattice = Lattice(), seed: int = 0, bf16: bool | None = None) -> Im2Hands:
        """Load our checkpoints (and converted official ones; ``official_quirks`` follows each checkpoint).

        Args:
            paths: checkpoint or bundle files (:mod:`im2hands.models.bundle`), or folders whose ``*.ckpt`` /
                ``*.pt`` files are such files; together they give ``init_occ``, ``ref_occ`` and ``kpts_ref``
                networks, at most one of each.
            device: where to run (default: CUDA if available, else the CPU).
        """
        if not paths:
            raise ValueError("paths: give at least one checkpoint file or folder")
        files: list[Path] = []
        for p in map(Path, paths):
            if p.is_dir():
                found = sorted([*p.glob("*.ckpt"), *p.glob("*.pt")])
                if not found:
                    raise FileNotFoundError(f"checkpoint folder {p}: no *.ckpt or *.pt file")
                files += found
            elif p.is_file():
                files.append(p)
            else:
                raise FileNotFoundError(f"checkpoint not found: {p}")
        nets: dict[str, torch.nn.Module] = {}
        for f in files:
            for kind, ckpt in read_networks(f).items():
                if kind in nets:
                    raise ValueError(f"{f}: a second {kind} network (the first from another file); give one of each")
                model = build_model(kind, ckpt.config)
                check_state_dict(ckpt.state_dict, expected_shapes(model), f"{f} ({kind})")
                model.load_state_dict(ckpt.state_dict)
                nets[kind] = model
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        return cls(init_occ=nets.get("init_occ"), ref_occ=nets.get("ref_occ"), kpts_ref=nets.get("kpts_ref"),
                   device=device, lattice=lattice, seed=seed, bf16=bf16)

    @classmethod
    def pretrained(cls, device: torch.device | str | None = None, *, lattice: Lattice = Lattice(),
                   seed: int = 0, bf16: bool | None = None) -> Im2Hands:
        """The model shipped with the package (:data:`~im2hands.models.bundle.SHIPPED_BUNDLE`: InitOcc, RefOcc
        and KptsRef of the ``compact`` preset, ``docs/RECONSTRUCT.md``); arguments as :meth:`from_checkpoint`."""
        if not SHIPPED_BUNDLE.is_file():
            raise FileNotFoundError(
                f"the shipped model {SHIPPED_BUNDLE} is not in this installation; build it from trained checkpoints "
                "with docs/scripts/ship_model.py, or load checkpoints with Im2Hands.from_checkpoint(...)")
        return cls.from_checkpoint(SHIPPED_BUNDLE, device=device, lattice=lattice, seed=seed,
                                   bf16=bf16)

    # --------------------------------------------------------------------------------------------- helpers
    def _tensor(self, x, dtype=torch.float32) -> Tensor:
        return torch.as_tensor(np.asarray(x), dtype=dtype, device=self.device)

    def refine_keypoints(self, image: Tensor, joints_cam: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """KptsRef on (1, 3, 256, 256) `image`: camera-frame keypoints -> refined ones (both internal order)."""
        if self.kpts_ref is None:
            raise ValueError("refine_keypoints: no kpts_ref network was loaded")
        kin = network_keypoints(self._tensor(joints_cam["left"], torch.float64)[None],
                                self._tensor(joints_cam["right"], torch.float64)[None])
        out = self.kpts_ref(image, kin.left_mm, kin.right_mm)
        refined = {"left": out.left, "right": out.right}
        return {s: network_to_camera(refined[s], kin.left_mid_joint)[0].double().cpu().numpy() for s in SIDES}

    def _hand_inputs(self, joints_cam: dict[str, np.ndarray]) -> dict[str, HandInputs]:
        return {s: HandInputs.from_canonical(canonicalise(self._tensor(joints_cam[s], torch.float64)[None], s))
                for s in SIDES}

    @staticmethod
    def _query_to_camera(hand: HandInputs, side: Side) -> Tensor:
        """(4, 4) float64 query frame -> camera frame (world = camera inside :meth:`reconstruct`)."""
        m = world_to_query_matrix(hand.root.double(), hand.root_rot_mat.double(), side)[0]
        return torch.linalg.inv(m)

    def _meshes(self, extractions: Sequence[Extraction], hands: dict[str, HandInputs]) -> dict[str, HandMesh]:
        out = {}
        for side, ext in zip(SIDES, extractions):
            v, f = mesh_to_camera(ext.vertices.double().cpu(), ext.faces.cpu(), self._query_to_camera(hands[side], side).cpu())
            out[side] = HandMesh(v.numpy(), f.numpy().astype(np.int64))
        return out

    # --------------------------------------------------------------------------------------------- main
    @torch.inference_mode()
    def reconstruct(self, image, keypoints, camera, *, keypoint_order: Literal["internal", "interhand"] = "internal",
                    refine_keypoints: bool | None = None, stages: Sequence[Stage] = STAGES,
                    lattice: Lattice | None = None, seeded_refinement: bool = True) -> Reconstruction:
        """Reconstruct both hands.

        Args:
            image: the full-size RGB image: a path, a PIL image or an (H, W, 3) array (uint8, or float in
                [0, 1]). The crop around both hands is made here (IntagHand's rule, ratio 0.8).
            keypoints: both hands' 21 keypoints, metres, in the frame of `camera`'s extrinsics (the camera
                frame with the default identity), see :func:`parse_keypoints`.
            camera: intrinsics ``K`` (3, 3) of `image`, pixels, and optionally ``R`` (3, 3), ``T`` (3,)
                (world -> camera), as a mapping or a :class:`~im2hands.hand.camera.Camera`.
            keypoint_order: ``"internal"`` or ``"interhand"`` (InterHand2.6M's 42-joint order).
            refine_keypoints: run KptsRef first (default: when a kpts_ref network was loaded).
            stages: ``"initial"`` and/or ``"refined"`` (``"refined"`` needs the initial meshes, computed in any
                case, and a ref_occ network).
            lattice: extraction lattice (default: this model's).
            seeded_refinement: extract the refined surface around the initial one (fewer RefOcc
                evaluations, the same mesh when the surfaces are near: ``docs/MESH.md``); False runs a full
                multi-resolution extraction.
        Returns:
            :class:`Reconstruction`.
        """
        t_start = time.perf_counter()
        joints = parse_keypoints(keypoints, keypoint_order)
        K, R, T = parse_camera(camera)
        joints_cam = {s: joints[s] @ R.T + T for s in SIDES}
        t = time.perf_counter()
        crop = crop_two_hands(image, K, np.concatenate([joints_cam["right"], joints_cam["left"]]))
        t_crop = time.perf_counter() - t
        out = self.reconstruct_crop(crop, joints_cam, refine_keypoints=refine_keypoints, stages=stages,
                                    lattice=lattice, seeded_refinement=seeded_refinement)
        out.timings["crop"] = t_crop
        out.timings["total"] = time.perf_counter() - t_start
        return out

    @torch.inference_mode()
    def reconstruct_crop(self, crop: Crop, joints_cam: Mapping[str, np.ndarray], *,
                         refine_keypoints: bool | None = None, stages: Sequence[Stage] = STAGES,
                         lattice: Lattice | None = None, seeded_refinement: bool = True) -> Reconstruction:
        """:meth:`reconstruct` from an already made crop (e.g. a prepared sample's image and intrinsics).

        Args:
            crop: the 256 x 256 image and its intrinsics (:class:`~im2hands.data.crop.Crop`; ``box`` unused).
            joints_cam: {"right", "left"}: (21, 3) keypoints in the camera frame, metres, internal order.
            refine_keypoints, stages, lattice, seeded_refinement: as in :meth:`reconstruct`.
        """
        t_start = time.perf_counter()
        stages = tuple(stages)
        unknown = [s for s in stages if s not in STAGES]
        if unknown or not stages:
            raise ValueError(f"stages: expected a non-empty subset of {STAGES}, got {stages}")
        if "refined" in stages and self.ref_occ is None:
            raise ValueError("stages: 'refined' needs a ref_occ network (load a ref_occ checkpoint)")
        if refine_keypoints is None:
            refine_keypoints = self.kpts_ref is not None
        if refine_keypoints and self.kpts_ref is None:
            raise ValueError("refine_keypoints: no kpts_ref network was loaded")
        if crop.image.shape != (256, 256, 3):
            raise ValueError(f"crop.image: expected shape (256, 256, 3), got {crop.image.shape}")
        lattice = lattice or self.lattice
        joints_cam = parse_keypoints(dict(joints_cam))
        timings: dict[str, float] = {"crop": 0.0}
        img = normalise_image(crop.image)[None].to(self.device)
        cam = Camera(K=self._tensor(crop.K)[None], R=torch.eye(3, device=self.device)[None],
                     T=torch.zeros(1, 3, device=self.device))

        t = time.perf_counter()
        used = self.refine_keypoints(img, joints_cam) if refine_keypoints else joints_cam
        timings["keypoints"] = time.perf_counter() - t

        t = time.perf_counter()
        hands = self._hand_inputs(used)
        timings["canonicalise"] = time.perf_counter() - t

        results: dict[str, StageResult] = {}
        t = time.perf_counter()
        enc = self.init_occ.encode(img, cam)
        t_enc = time.perf_counter() - t

        reuse = self.reuse_initial and "refined" in stages
        seen: dict[Side, _InitialCache] = {s: _InitialCache(lattice) for s in SIDES}

        def initial_fn(points: list[Tensor]) -> list[Tensor]:
            values = []
            for s, p in zip(SIDES, points):
                if not len(p):
                    values.append(p.new_zeros(0))
                    continue
                out = self.init_occ.decode(enc, hands[s], p[None], s)
                if reuse:
                    seen[s].add(p, out.occupancy[0], out.part_logits[0].amax(dim=-1))
                values.append(out.occupancy[0])
            return values

        initial = extract_meshes(initial_fn, 2, lattice=lattice, threshold=THRESHOLDS["initial"], device=self.device)
        timings["initial"] = time.perf_counter() - t
        if "initial" in stages:
            results["initial"] = StageResult(**self._meshes(initial, hands), seconds=timings["initial"],
                                             encode_seconds=t_enc,
                                             evaluations={s: e.num_evaluations for s, e in zip(SIDES, initial)},
                                             extractions=tuple(initial))
        if "refined" in stages:
            t = time.perf_counter()
            anchors = {}
            for k, (side, ext) in enumerate(zip(SIDES, initial)):
                if len(ext.faces) == 0:
                    raise ValueError(f"the initial {side} hand mesh is empty: no anchors for the refinement "
                                     "(check the keypoints, or reconstruct with stages=('initial',))")
                anchors[side] = self._tensor(sample_anchors(ext.vertices.cpu(), ext.faces.cpu(), NUM_ANCHORS,
                                                            seed=self.seed + k))[None]
            timings["anchors"] = time.perf_counter() - t
            t = time.perf_counter()
            ref_enc = self.ref_occ.encode(img, cam, hands["left"], hands["right"], anchors["left"], anchors["right"],
                                          **({"init_encoding": enc} if reuse else {}))
            t_ref_enc = time.perf_counter() - t

            def refined_fn(points: list[Tensor]) -> list[Tensor]:
                known = {f"known_{s}": seen[s].lookup(p) for s, p in zip(SIDES, points)} if reuse else {}
                out = self.ref_occ.decode(ref_enc, points[1][None], points[0][None], **known)
                return [out.right.occupancy[0], out.left.occupancy[0]]

            if seeded_refinement:
                # Only the finest cells the initial surface crosses (band 0): where the refined surface leaves
                # them, closure passes follow it (same mesh, 19 % fewer evaluations than a 1-cell band on a
                # hand field moved by a cell, docs/PERFORMANCE.md); the safety check runs on the start
                # lattice halved (16^3 for 32^3).
                n0 = lattice.cells(0)
                refined = extract_meshes_seeded(refined_fn, initial, threshold=refined_threshold(self.ref_occ),
                                                band_cells=0, safety_cells=max(1, n0 // 2), device=self.device)
            else:
                refined = extract_meshes(refined_fn, 2, lattice=lattice, threshold=refined_threshold(self.ref_occ),
                                         device=self.device)
            timings["refined"] = time.perf_counter() - t
            results["refined"] = StageResult(**self._meshes(refined, hands), seconds=timings["refined"],
                                             encode_seconds=t_ref_enc,
                                             evaluations={s: e.num_evaluations for s, e in zip(SIDES, refined)},
                                             extractions=tuple(refined))
        timings["total"] = time.perf_counter() - t_start
        return Reconstruction(keypoints_input=joints_cam, keypoints={s: np.asarray(used[s]) for s in SIDES},
                              stages=results, crop=crop, timings=timings)
