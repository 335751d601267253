"""InterHand2.6M -> samples in our format (``docs/DATA.md``), the same files the synthetic generator writes.

One selected image (:mod:`im2hands.data.interhand.select`) becomes one sample:

1. both hands are posed from their NeuralAnnot fits in the world frame (float64 ``ManoLayer``,
   ``flat_hand_mean=False``, the left ``shapedirs`` fix detected from the files or forced) and sealed at the
   wrist (MANO's 16 rim vertices for a 778-vertex model, else the mesh's one boundary loop);
2. everything is moved to the camera: ``X_cam = R X_world + T`` with ``R = camrot`` and ``T = -R campos / 1000``
   (InterHand2.6M's ``cam = R (world_mm - campos_mm)``, in metres);
3. the IntagHand crop: the square box around both hands' projected vertices, hands filling 80 % of it,
   resampled to 256 x 256 (black beyond the image edge), with the crop's intrinsics;
4. joints (the MANO joints, internal order, manopth fingertips), their canonicalisation, occupancy / IoU /
   surface samples labelled by winding number in each hand's query space, the rendered visible-hand mask, the
   contact measurements, and the input keypoints (``noisy_*`` keys: another method's predictions when given,
   else a copy of the ground truth).

Layout::

    OUT/<split>/0000000.npz ...          sample i = selected image i (gaps where an image was skipped)
    OUT/<split>/job.json                 arguments that fix the content (checked on resume)
    OUT/<split>/frames.csv               index -> image_id, annot_id, capture, cam, frame_idx, file_name
    OUT/<split>/skipped-K-of-N.jsonl     images skipped while preparing (last run of shard K of N)
    OUT/<split>/summary-K-of-N.json      selection counts, skip counts, timings, sizes, checks

Resumable (atomic writes; on restart every existing file is validated and only missing or corrupt samples are
made), parallel (worker processes, each with its own hand models and renderer), shardable (shard K of N makes
the indices ``i % N == K``), deterministic (a sample's random points come from its image id and the seed).
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import resource
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from im2hands.data.interhand.predicted import PredictedKeypointsError, predicted_path, read_predicted
from im2hands.data.interhand.select import FrameRecord, Selection, SelectionConfig, select_frames
from im2hands.data.sample import FORMAT_VERSION, SampleFileError, atomic_save_npz, encode_sample, validate_sample_file
from im2hands.data.synth.occupancy import OccupancyConfig, check_closed, sample_occupancy
from im2hands.hand.skeleton import INTERNAL_FROM_INTERHAND_HAND, SIDES

SPLIT_CODE = {"train": 0, "val": 1, "test": 2}
DARK_MEAN = 10.0
"""IntagHand drops images whose mean pixel value is below 10 (out of 255)."""


@dataclass(frozen=True)
class PrepareConfig:
    """One preparation job: one split (or one shard of it) of InterHand2.6M."""

    root: Path
    """InterHand2.6M v1.0 folder holding ``annotations/`` and ``images/``."""
    mano_dir: Path
    """Folder with ``MANO_RIGHT.pkl`` and ``MANO_LEFT.pkl`` (or ``models/``/``mano/`` below it)."""
    split: Literal["train", "val", "test"]
    """Split to prepare."""
    out: Path
    """Output folder; samples go to ``out/<split>/``."""
    selection: SelectionConfig = field(default_factory=SelectionConfig)
    """Which annotations are prepared."""
    occupancy: OccupancyConfig = field(default_factory=OccupancyConfig)
    """Point counts per hand."""
    pred_keypoints: Path | None = None
    """Folder of predicted keypoints (``predicted.py``); stored as the ``noisy_*`` keys. None: a copy of the GT."""
    fix_left_shapedirs: Literal["auto", "yes", "no"] = "auto"
    """The left-hand shapedirs fix: ``auto`` detects it from the two files (``docs/MANO.md``)."""
    min_brightness: float = DARK_MEAN
    """Images whose mean pixel value (0-255) is below this are skipped (IntagHand: 10); 0 keeps all."""
    seed: int = 0
    """Job seed of the random points (a sample's points depend only on it and the image id)."""
    workers: int = 1
    """Worker processes."""
    shard: tuple[int, int] = (0, 1)
    """(K, N): make the selected indices i with ``i % N == K``."""
    limit: int | None = None
    """Prepare only the first ``limit`` selected images (a trial run); None: all."""
    verify: bool = False
    """On resume, check every CRC of the existing samples (reads them all); default: their zip directories only."""
    progress: bool = True
    """Show a progress bar."""
    start_method: Literal["auto", "fork", "spawn"] = "auto"
    """Worker start method (as ``SynthConfig.start_method``)."""

    def __post_init__(self):
        if self.split not in SPLIT_CODE:
            raise ValueError(f"split: expected one of {tuple(SPLIT_CODE)}, got {self.split!r}")
        if self.fix_left_shapedirs not in ("auto", "yes", "no"):
            raise ValueError(f"fix_left_shapedirs: expected 'auto', 'yes' or 'no', got {self.fix_left_shapedirs!r}")
        k, n = self.shard
        if not (isinstance(k, int) and isinstance(n, int) and n >= 1 and 0 <= k < n):
            raise ValueError(f"shard: expected (K, N) with 0 <= K < N, got {self.shard!r}")
        if not isinstance(self.workers, int) or self.workers < 1:
            raise ValueError(f"workers: expected an int >= 1, got {self.workers!r}")
        if self.limit is not None and (not isinstance(self.limit, int) or self.limit < 0):
            raise ValueError(f"limit: expected an int >= 0 or None, got {self.limit!r}")
        if not 0 <= self.min_brightness <= 255:
            raise ValueError(f"min_brightness: expected a value in [0, 255], got {self.min_brightness}")
        if self.start_method not in ("auto", "fork", "spawn"):
            raise ValueError(f"start_method: expected 'auto', 'fork' or 'spawn', got {self.start_method!r}")
        if not Path(self.mano_dir).exists():
            raise ValueError(f"mano_dir: {self.mano_dir} does not exist (it should hold MANO_RIGHT.pkl and MANO_LEFT.pkl)")
        if self.pred_keypoints is not None and not Path(self.pred_keypoints).is_dir():
            raise ValueError(f"pred_keypoints: {self.pred_keypoints} is not a folder")

    @property
    def shard_name(self) -> str:
        return f"{self.shard[0]}-of-{self.shard[1]}"

    def content_args(self) -> dict[str, Any]:
        """The arguments that decide what the samples contain (not workers, shard, limit or display)."""
        sel = asdict(self.selection)
        sel["human_annot_ids"] = None if self.selection.human_annot_ids is None else str(Path(self.selection.human_annot_ids).resolve())
        return {
            "format_version": FORMAT_VERSION, "source": "InterHand2.6M", "split": self.split,
            "root": str(Path(self.root).resolve()), "mano_dir": str(Path(self.mano_dir).resolve()),
            "fix_left_shapedirs": self.fix_left_shapedirs, "selection": sel, "occupancy": asdict(self.occupancy),
            "pred_keypoints": None if self.pred_keypoints is None else str(Path(self.pred_keypoints).resolve()),
            "min_brightness": self.min_brightness, "seed": self.seed,
        }


# ---------------------------------------------------------------------------------------------------------
# Hand models
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PosableHand:
    """One side's MANO-format model, posable in float64, with the faces of its sealed (closed) mesh."""

    side: str
    layer: Any
    """``ManoLayer`` in float64, ``flat_hand_mean=False``."""
    faces: np.ndarray
    """(F', 3) int64 faces of the closed mesh."""
    rim: np.ndarray
    """(R,) int64 wrist rim closed by the centre vertex (appended last), or (0,) if the model is closed."""

    def pose(self, mano: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pose from one NeuralAnnot fit.

        Args:
            mano: (61,) pose (48 axis-angle, root first; finger values relative to the model's hands_mean),
                shape (10), trans (3, metres).
        Returns:
            ``(vertices (V', 3) closed mesh, joints (21, 3) internal order)``, float64, world frame, metres.
        """
        import torch

        from im2hands.data.synth.seal import seal_vertices

        m = torch.from_numpy(np.asarray(mano, dtype=np.float64).reshape(1, 61).copy())
        with torch.no_grad():
            out = self.layer(global_orient=m[:, :3], hand_pose=m[:, 3:48], betas=m[:, 48:58], transl=m[:, 58:61])
        v = out.vertices[0].numpy()
        if len(self.rim):
            v = seal_vertices(v, self.rim)
        return v, out.joints[0].numpy()


def load_posable_hands(mano_dir: str | os.PathLike, fix_left_shapedirs: str = "auto") -> dict[str, PosableHand]:
    """Both hands of a MANO-format folder, sealed as the synthetic data's (``data/synth/seal.py``)."""
    import torch

    from im2hands.data.synth.seal import MANO_WRIST_RIM, boundary_loops, seal_topology
    from im2hands.hand.mano import ManoLayer, find_mano_file, load_mano_model

    fix = {"auto": None, "yes": True, "no": False}[fix_left_shapedirs]
    hands = {}
    for side in SIDES:
        path = find_mano_file(mano_dir, side)
        model = load_mano_model(path, side)
        layer = ManoLayer(path, side, flat_hand_mean=False, fix_left_shapedirs=fix if side == "left" else None,
                          dtype=torch.float64)
        loops = boundary_loops(model.faces)
        if not loops:
            faces, rim = np.asarray(model.faces, dtype=np.int64), np.zeros(0, dtype=np.int64)
        else:
            topo = seal_topology(model.faces, model.num_vertices, MANO_WRIST_RIM if model.num_vertices == 778 else None)
            faces, rim = topo.faces, topo.rim
        hands[side] = PosableHand(side=side, layer=layer, faces=np.ascontiguousarray(faces), rim=rim)
    return hands


# ---------------------------------------------------------------------------------------------------------
# One sample
# ---------------------------------------------------------------------------------------------------------


class FrameSkipped(Exception):
    """An image that cannot become a sample; ``reason`` is one of the documented skip reasons."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


def read_image(root: Path, split: str, file_name: str) -> np.ndarray:
    """(H, W, 3) uint8 RGB of ``ROOT/images/<split>/<file_name>``; raises :class:`FrameSkipped` if absent or broken."""
    from PIL import Image

    path = Path(root) / "images" / split / file_name
    if not path.is_file():
        raise FrameSkipped("image missing", str(path))
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except (OSError, ValueError) as e:
        raise FrameSkipped("image unreadable", f"{path}: {e}") from None


def _neutral_appearance(size: int):
    from im2hands.viz.render import Appearance, Light

    light = Light(direction=np.array([0.0, 0.0, 1.0]), color=np.ones(3), intensity=2.0)
    return Appearance(skin_right=np.full(3, 0.8), skin_left=np.full(3, 0.8), roughness=0.8, lights=(light,),
                      ambient=np.full(3, 0.3), background=np.zeros((size, size, 3), dtype=np.uint8))


@dataclass(frozen=True)
class FrameStats:
    """Checks of one prepared image, aggregated in the summary."""

    index: int
    annotated_joint_error: float
    """Mean distance between the MANO joints and the valid annotated joints, metres (NaN if none valid)."""
    input_mpjpe: float
    """Mean over both hands of the input keypoints' MPJPE against the GT joints, metres (0 for the GT copy)."""
    bytes: int


def make_interhand_sample(rec: FrameRecord, image: np.ndarray, *, hands: dict[str, PosableHand], renderer,
                          occupancy: OccupancyConfig, split: str, seed: int, pred_dir: Path | None
                          ) -> tuple[dict[str, np.ndarray], float, float]:
    """Make the sample of one selected image.

    Args:
        rec: the image's record.
        image: (H, W, 3) uint8 RGB full image.
        hands: :func:`load_posable_hands`.
        renderer: a ``HandRenderer(256)`` (the visible-hand mask).
        occupancy, split, seed: as :class:`PrepareConfig`.
        pred_dir: folder of predicted keypoints, or None.
    Returns:
        ``(sample dict in the format of im2hands.data.sample, annotated-joint error m, input MPJPE m)``.
    Raises:
        FrameSkipped: ``hand behind camera``, ``no predicted keypoints``, ``bad predicted keypoints``,
            ``degenerate keypoints``.
    """
    from im2hands.data.crop import CROP_SIZE, crop_two_hands, project
    from im2hands.data.synth.generate import hand_frames
    from im2hands.data.synth.scene import measure_pair

    rng_occ, rng_pair = (np.random.default_rng(s) for s in
                         np.random.SeedSequence(seed, spawn_key=(SPLIT_CODE[split], rec.image_id)).spawn(2))
    R = np.asarray(rec.camrot, dtype=np.float64)
    T = -R @ np.asarray(rec.campos, dtype=np.float64) / 1000.0  # world mm -> camera metres
    verts_w, joints_w, verts_c, joints_c = {}, {}, {}, {}
    for k, side in enumerate(SIDES):
        verts_w[side], joints_w[side] = hands[side].pose(rec.mano[k])
        verts_c[side], joints_c[side] = verts_w[side] @ R.T + T, joints_w[side] @ R.T + T
        if (verts_c[side][:, 2] <= 1e-3).any():
            raise FrameSkipped("hand behind camera", f"{side} hand of image {rec.image_id}")

    # Input keypoints: another method's predictions, or a copy of the GT.
    if pred_dir is not None:
        try:
            pred = read_predicted(predicted_path(pred_dir, rec.file_name), joints_c)
        except PredictedKeypointsError as e:
            raise FrameSkipped("bad predicted keypoints", str(e)) from None
        if pred is None:
            raise FrameSkipped("no predicted keypoints", str(predicted_path(pred_dir, rec.file_name)))
    else:
        pred = {s: joints_c[s].copy() for s in SIDES}
    pred_w = {s: (pred[s] - T) @ R for s in SIDES}  # camera -> world: R^T (x - T)

    crop = crop_two_hands(image, rec.K, np.concatenate([verts_c[s] for s in SIDES]), require_inside=False)
    K = crop.K
    try:
        frames = hand_frames(np.stack([joints_w[s] for s in SIDES] + [pred_w[s] for s in SIDES]), SIDES + SIDES)
    except ValueError as e:
        raise FrameSkipped("degenerate keypoints", str(e)) from None

    out: dict[str, np.ndarray] = {}
    for k, side in enumerate(SIDES):
        faces = hands[side].faces
        check_closed(faces, f"{side} hand mesh")
        gt, noisy = frames[k], frames[len(SIDES) + k]
        p = f"{side}_"
        mano = np.asarray(rec.mano[k], dtype=np.float64)
        out |= {
            p + "vertices": verts_c[side], p + "faces": faces, p + "joints": joints_c[side],
            p + "joints_2d": project(joints_c[side], K),
            p + "global_orient": mano[:3], p + "hand_pose": mano[3:48], p + "betas": mano[48:58],
            p + "transl": mano[58:61],
            p + "unpose": gt.unpose, p + "bone_lengths": gt.bone_lengths, p + "root_rot_mat": gt.root_rot_mat,
            p + "root_xyz": gt.root_xyz,
            p + "query_to_cam": _cam_from_world(R, T) @ np.linalg.inv(gt.world_to_query),
            p + "noisy_joints": pred[side],
            p + "noisy_mpjpe": np.linalg.norm(pred[side] - joints_c[side], axis=-1).mean(),
            p + "noisy_unpose": noisy.unpose, p + "noisy_bone_lengths": noisy.bone_lengths,
            p + "noisy_root_rot_mat": noisy.root_rot_mat, p + "noisy_root_xyz": noisy.root_xyz,
        }
        w2q = gt.world_to_query
        verts_q = verts_w[side] @ w2q[:3, :3].T + w2q[:3, 3]
        faces_q = faces[:, ::-1] if np.linalg.det(w2q[:3, :3]) < 0 else faces  # a mirror turns faces inside out
        occ = sample_occupancy(rng_occ, verts_q, faces_q, occupancy)
        out |= {
            p + "points": occ.points, p + "occupancy": occ.occupancy,
            p + "points_iou": occ.points_iou, p + "occupancy_iou": occ.occupancy_iou,
            p + "surface_points": occ.surface_points, p + "surface_normals": occ.surface_normals,
        }

    res = renderer.render({s: (verts_c[s], hands[s].faces) for s in SIDES}, K, _neutral_appearance(CROP_SIZE))
    for side, value, sil in (("right", 1, res.silhouette_right), ("left", 2, res.silhouette_left)):
        visible = int((res.labels == value).sum())
        out[f"{side}_mask_share"] = visible / res.labels.size
        out[f"{side}_occluded_fraction"] = 1.0 - visible / max(int(sil.sum()), 1)
    pair = measure_pair(verts_c["right"], hands["right"].faces, verts_c["left"], hands["left"].faces, rng_pair)
    out |= {
        "image": crop.image, "mask": res.labels, "camera_K": K, "camera_R": R, "camera_T": T,
        "kind": np.array(rec.hand_type), "contact": np.array(bool(pair.contact)),
        "penetration_volume": float(pair.penetration_volume), "min_distance": float(pair.min_distance),
        "split": np.array(split), "index": rec.index, "seed": seed, "format_version": FORMAT_VERSION,
    }
    # MANO joints against the annotated ones (valid joints only; invalid ones hold placeholders such as [1, 1, 1])
    errors = []
    for k, side in enumerate(SIDES):
        ann = np.asarray(rec.joints_world_mm[21 * k:21 * (k + 1)], dtype=np.float64)[list(INTERNAL_FROM_INTERHAND_HAND)]
        valid = np.asarray(rec.joint_valid[21 * k:21 * (k + 1)])[list(INTERNAL_FROM_INTERHAND_HAND)]
        valid &= np.isfinite(ann).all(axis=1)
        if valid.any():
            errors.append(np.linalg.norm(ann[valid] / 1000.0 - joints_w[side][valid], axis=1))
    ann_err = float(np.concatenate(errors).mean()) if errors else float("nan")
    input_err = float(np.mean([out[f"{s}_noisy_mpjpe"] for s in SIDES]))
    return out, ann_err, input_err


def _cam_from_world(R: np.ndarray, T: np.ndarray) -> np.ndarray:
    m = np.eye(4)
    m[:3, :3], m[:3, 3] = R, T
    return m


# ---------------------------------------------------------------------------------------------------------
# The job
# ---------------------------------------------------------------------------------------------------------

_STATE: dict[str, Any] = {}


class PrepareWorkerError(RuntimeError):
    """A worker process could not start; the message is the worker's."""


def _init_worker(config: PrepareConfig) -> None:
    """Set up one worker (never raises: the error is reported by the first task, see the synthetic job)."""
    try:
        os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
        import torch

        from im2hands.viz.render import HandRenderer

        torch.set_num_threads(1)
        _STATE.update(config=config, hands=load_posable_hands(config.mano_dir, config.fix_left_shapedirs),
                      renderer=HandRenderer(256))
    except Exception as e:  # noqa: BLE001 -- reported by _work
        _STATE["init_error"] = f"worker {os.getpid()} could not start: {type(e).__name__}: {e}"


def sample_path(out: Path, split: str, index: int) -> Path:
    """Where sample ``index`` of ``split`` lives."""
    return Path(out) / split / f"{index:07d}.npz"


def _work(rec: FrameRecord) -> tuple[int, str | None, str, float, float, int]:
    """Prepare one image: ``(index, skip reason or None, detail, annotated-joint error, input MPJPE, bytes)``."""
    if "init_error" in _STATE:
        raise PrepareWorkerError(_STATE["init_error"])
    c: PrepareConfig = _STATE["config"]
    try:
        image = read_image(c.root, c.split, rec.file_name)
        if c.min_brightness > 0 and float(image.mean()) < c.min_brightness:
            raise FrameSkipped("dark image", f"mean {float(image.mean()):.1f} < {c.min_brightness}")
        sample, ann_err, input_err = make_interhand_sample(
            rec, image, hands=_STATE["hands"], renderer=_STATE["renderer"], occupancy=c.occupancy, split=c.split,
            seed=c.seed, pred_dir=c.pred_keypoints)
        path = sample_path(c.out, c.split, rec.index)
        atomic_save_npz(path, encode_sample(sample))
        return rec.index, None, "", ann_err, input_err, path.stat().st_size
    except FrameSkipped as e:
        return rec.index, e.reason, e.detail, float("nan"), float("nan"), 0
    except Exception as e:  # noqa: BLE001 -- one bad frame must not end a multi-day run; counted and reported
        return rec.index, "error", f"{type(e).__name__}: {e}", float("nan"), float("nan"), 0


def _check_job_file(config: PrepareConfig) -> None:
    split_dir = Path(config.out) / config.split
    split_dir.mkdir(parents=True, exist_ok=True)
    job_file = split_dir / "job.json"
    args = json.loads(json.dumps(config.content_args()))
    if job_file.exists():
        try:
            old = json.loads(job_file.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"{job_file}: unreadable ({e}); delete it to start the split again") from e
        if old != args:
            diff = sorted(k for k in set(old) | set(args) if old.get(k) != args.get(k))
            raise ValueError(f"out: {split_dir} holds samples prepared with other arguments (differs in {diff}); use "
                             "the same arguments to continue that run, or another --out")
    else:
        _atomic_text(job_file, json.dumps(args, indent=2))


def _atomic_text(path: Path, text: str) -> None:
    from im2hands._io import atomic_write

    atomic_write(path, lambda f: f.write(text.encode()))


_TMP = re.compile(r"^\.(\d+)\.npz\..*\.tmp$")


def pending_indices(config: PrepareConfig, indices: list[int]) -> tuple[list[int], list[str]]:
    """Indices of this shard still to make (missing or failing :func:`validate_sample_file`) and the corrupt
    files found. Removes this shard's temporary files left by an interrupted run (other shards' are kept: they
    may be writing into the same folder right now)."""
    split_dir = Path(config.out) / config.split
    k, n = config.shard
    for tmp in split_dir.glob(".*.tmp"):
        m = _TMP.match(tmp.name)
        if m and int(m.group(1)) % n == k:
            tmp.unlink(missing_ok=True)
    todo, corrupt = [], []
    for i in indices:
        path = sample_path(config.out, config.split, i)
        if not path.exists():
            todo.append(i)
            continue
        try:
            if config.verify:
                validate_sample_file(path)
            else:
                _check_members(path)
        except SampleFileError as e:
            corrupt.append(str(e))
            todo.append(i)
    return todo, corrupt


def _check_members(path: Path) -> None:
    """Cheap check of a sample file: its zip directory (at the end of the file) is readable and lists every array.
    Files are written atomically, so a file that exists is complete unless the disk corrupted it later
    (``verify`` also checks every CRC, reading the whole file)."""
    import zipfile

    from im2hands.data.sample import stored_names

    try:
        with zipfile.ZipFile(path) as z:
            names = {n[:-4] for n in z.namelist() if n.endswith(".npy")}
    except Exception as e:  # noqa: BLE001 -- any failure to open means redo
        raise SampleFileError(f"{path}: corrupt or truncated sample file ({type(e).__name__}: {e})") from e
    missing = [n for n in stored_names() if n not in names]
    if missing:
        raise SampleFileError(f"{path}: not a complete sample file, missing arrays {missing}")


def write_frames_csv(path: Path, selection: Selection) -> None:
    """The index of every selected image: ``index,image_id,annot_id,capture,cam,frame_idx,hand_type,file_name``."""
    from im2hands.data.interhand.select import HAND_TYPES

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["index", "image_id", "annot_id", "capture", "cam", "frame_idx", "hand_type", "file_name"])
    for i in range(len(selection)):
        w.writerow([i, int(selection.image_id[i]), int(selection.annot_id[i]), int(selection.capture[i]),
                    int(selection.cam[i]), int(selection.frame_idx[i]), HAND_TYPES[int(selection.hand_type[i])],
                    selection.file_name[i]])
    _atomic_text(path, buf.getvalue())


@dataclass(frozen=True)
class PrepareSummary:
    """Figures of one run of one shard, as written to ``summary-K-of-N.json``."""

    split: str
    shard: str
    annotations_read: int
    selected: int
    """Images selected in the whole split (all shards)."""
    selection_skipped: dict[str, int]
    """Annotations dropped by the selection, by reason."""
    shard_images: int
    """Selected images of this shard (after ``limit``)."""
    made_now: int
    reused: int
    redone_corrupt: int
    prepare_skipped: dict[str, int]
    """Images of this shard skipped while preparing, by reason (details in ``skipped-K-of-N.jsonl``)."""
    samples: int
    """Valid sample files of this shard now on disk."""
    selection_seconds: float
    seconds: float
    """Wall time of the preparation (after the selection)."""
    seconds_per_sample: float
    mean_file_bytes: float
    peak_rss_mb: float
    """Peak resident memory of the main process (the selection), MB."""
    peak_rss_workers_mb: float
    """Peak resident memory of the largest worker process, MB (0 with one worker: it is the main process)."""
    annotated_joint_error_mm: float
    """Mean distance between the MANO joints and the valid annotated joints over the samples made now, mm."""
    input_mpjpe_mm: float
    """Mean MPJPE of the input keypoints over the samples made now, mm (0 without predictions)."""
    first_errors: list[str]

    def lines(self) -> list[str]:
        out = [
            f"split {self.split} shard {self.shard}: {self.annotations_read} annotations read, {self.selected} images "
            f"selected in {self.selection_seconds:.1f} s (peak memory {self.peak_rss_mb:.0f} MB)",
            "  selection skipped: " + (", ".join(f"{k} {v}" for k, v in self.selection_skipped.items()) or "none"),
            f"  shard: {self.shard_images} images, {self.made_now} made now, {self.reused} reused, "
            f"{self.redone_corrupt} corrupt redone, {self.samples} samples on disk, in {self.seconds:.1f} s "
            f"({self.seconds_per_sample:.2f} s/sample, {self.mean_file_bytes / 1e6:.2f} MB/sample)",
            "  preparation skipped: " + (", ".join(f"{k} {v}" for k, v in self.prepare_skipped.items()) or "none"),
            f"  MANO joints vs annotated joints: {self.annotated_joint_error_mm:.2f} mm; input keypoints MPJPE "
            f"{self.input_mpjpe_mm:.2f} mm",
        ]
        out += [f"  error: {e}" for e in self.first_errors]
        return out


def _start_method(config: PrepareConfig) -> str:
    from im2hands.viz.render import pool_start_method

    return pool_start_method(config.start_method)


def prepare(config: PrepareConfig) -> PrepareSummary:
    """Run the job: select, then make every missing or corrupt sample of this shard; write the summary.

    Inputs (annotation layout, skeleton, MANO files) are checked before anything is written. An image that
    cannot be prepared (missing, unreadable, dark, no predictions, any error) is counted and logged, never
    ends the run.
    """
    from tqdm import tqdm

    t0 = time.perf_counter()
    load_posable_hands(config.mano_dir, config.fix_left_shapedirs)  # fails early on bad MANO files
    selection = select_frames(config.root, config.split, config.selection)
    selection_seconds = time.perf_counter() - t0
    peak_main = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    _check_job_file(config)
    split_dir = Path(config.out) / config.split
    write_frames_csv(split_dir / "frames.csv", selection)
    k, n = config.shard
    count = len(selection) if config.limit is None else min(config.limit, len(selection))
    indices = list(range(k, count, n))
    todo, corrupt = pending_indices(config, indices)
    for msg in corrupt:
        print(f"redoing corrupt sample: {msg}")

    skip_log = split_dir / f"skipped-{config.shard_name}.jsonl"
    skips: Counter[str] = Counter()
    ann_errs, input_errs, sizes, errors = [], [], [], []
    start = time.perf_counter()
    bar = tqdm(total=len(todo), desc=f"interhand {config.split}", unit="image", disable=not config.progress)
    with open(skip_log, "w") as log:
        def done(result) -> None:
            index, reason, detail, ann_err, input_err, size = result
            if reason is None:
                sizes.append(size)
                if np.isfinite(ann_err):
                    ann_errs.append(ann_err)
                input_errs.append(input_err)
            else:
                skips[reason] += 1
                rec_line = {"index": index, "image_id": int(selection.image_id[index]),
                            "file_name": selection.file_name[index], "reason": reason, "detail": detail}
                log.write(json.dumps(rec_line) + "\n")
                log.flush()
                if reason == "error" and len(errors) < 5:
                    errors.append(f"image {selection.file_name[index]}: {detail}")
            bar.update()

        block = 64 * config.workers  # records are built per block: memory does not grow with the split
        if todo and config.workers == 1:
            import torch

            threads = torch.get_num_threads()
            _init_worker(config)
            try:
                for i in todo:
                    done(_work(selection.record(i)))
            finally:
                if "renderer" in _STATE:
                    _STATE["renderer"].close()
                _STATE.clear()
                torch.set_num_threads(threads)
        elif todo:
            import multiprocessing as mp

            ctx = mp.get_context(_start_method(config))
            with ctx.Pool(min(config.workers, len(todo)), initializer=_init_worker, initargs=(config,)) as pool:
                try:
                    for s in range(0, len(todo), block):
                        recs = [selection.record(i) for i in todo[s:s + block]]
                        for result in pool.imap_unordered(_work, recs, chunksize=1):
                            done(result)
                except PrepareWorkerError:
                    bar.close()
                    raise
    bar.close()
    seconds = time.perf_counter() - start
    on_disk = [sample_path(config.out, config.split, i) for i in indices if sample_path(config.out, config.split, i).exists()]
    all_sizes = [p.stat().st_size for p in on_disk]
    made = len(todo) - sum(skips.values())
    summary = PrepareSummary(
        split=config.split, shard=config.shard_name, annotations_read=selection.annotations_read,
        selected=len(selection), selection_skipped=selection.skipped, shard_images=len(indices), made_now=made,
        reused=len(indices) - len(todo), redone_corrupt=len(corrupt), prepare_skipped=dict(sorted(skips.items())),
        samples=len(on_disk), selection_seconds=round(selection_seconds, 3), seconds=round(seconds, 3),
        seconds_per_sample=round(seconds / made, 4) if made else 0.0,
        mean_file_bytes=float(np.mean(all_sizes)) if all_sizes else 0.0,
        peak_rss_mb=round(peak_main, 1),
        peak_rss_workers_mb=round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1)
        if config.workers > 1 else 0.0,
        annotated_joint_error_mm=float(np.mean(ann_errs) * 1e3) if ann_errs else float("nan"),
        input_mpjpe_mm=float(np.mean(input_errs) * 1e3) if input_errs else float("nan"),
        first_errors=errors,
    )
    _atomic_text(split_dir / f"summary-{config.shard_name}.json", json.dumps(asdict(summary), indent=2))
    return summary
