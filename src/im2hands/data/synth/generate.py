"""The synthetic-data job: scenes -> rendered images, occupancy samples and keypoints, one ``.npz`` each.

Layout of the output folder::

    OUT/<split>/000000.npz ...   one sample per file (format: im2hands.data.sample, docs/DATA.md)
    OUT/<split>/job.json         the arguments that fix the content of the samples (checked on resume)
    OUT/summary.json             figures of each split generated into OUT
    OUT/gallery.png              the first samples of the split (`im2hands synth`: of the first split named)

Determinism: sample ``i`` of ``split`` is drawn from ``SeedSequence(seed, spawn_key=(split code, i))``
alone, so its bytes do not depend on the number of workers, on the order samples are made in, or on
whether the job was interrupted. Resume: finished samples are validated cheaply (zip CRCs, all arrays
present) and kept; missing or corrupt ones are made again; files are written atomically.
"""

from __future__ import annotations

import importlib
import json
import multiprocessing as mp
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from im2hands._io import atomic_write
from im2hands.data.sample import (
    FORMAT_VERSION,
    SIDES,
    SampleFileError,
    atomic_save_npz,
    encode_sample,
    validate_sample_file,
)
from im2hands.data.synth.occupancy import OccupancyConfig, check_closed, sample_occupancy

SPLITS = ("train", "val", "test")
SPLIT_CODE = {"train": 0, "val": 1, "test": 2}


@dataclass(frozen=True)
class SynthConfig:
    """One synthetic-data job (one split)."""

    out: Path
    """Output folder; samples go to ``out/<split>/``."""
    num: int
    """Number of samples in the split (indices 0 .. num-1)."""
    split: Literal["train", "val", "test"] = "train"
    """Split name; part of every sample's seed."""
    seed: int = 0
    """Job seed."""
    workers: int = 1
    """Processes making samples (each has its own renderer); the result does not depend on it."""
    mano_dir: Path | None = None
    """Folder with MANO_RIGHT.pkl / MANO_LEFT.pkl; None uses the built-in open hand model."""
    occupancy: OccupancyConfig = field(default_factory=OccupancyConfig)
    """Point counts and distributions per hand."""
    start_method: Literal["auto", "fork", "spawn"] = "auto"
    """How worker processes start. ``auto``: ``fork`` (no start-up imports) when this process has never
    opened a rendering context, else ``spawn`` (fresh interpreters; slower to start, always safe)."""
    gallery: int = 8
    """Samples shown in ``gallery.png`` (0: no gallery)."""
    progress: bool = True
    """Show a tqdm progress bar."""
    scene_module: str = "im2hands.data.synth.scene"
    """Module providing ``load_hand_models(mano_dir)`` and ``sample_scene(rng, hands)`` (tests use a small
    stand-in); ``noisy_keypoints`` comes from the same module if it has one, else from ``...synth.noise``."""

    def __post_init__(self):
        if self.split not in SPLITS:
            raise ValueError(f"split: expected one of {SPLITS}, got {self.split!r}")
        if not isinstance(self.num, int) or self.num < 0:
            raise ValueError(f"num: expected an int >= 0, got {self.num!r}")
        if not isinstance(self.workers, int) or self.workers < 1:
            raise ValueError(f"workers: expected an int >= 1, got {self.workers!r}")
        if self.start_method not in ("auto", "fork", "spawn"):
            raise ValueError(f"start_method: expected 'auto', 'fork' or 'spawn', got {self.start_method!r}")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed: expected an int >= 0, got {self.seed!r}")
        if not isinstance(self.gallery, int) or self.gallery < 0:
            raise ValueError(f"gallery: expected an int >= 0 (0: no gallery), got {self.gallery!r}")
        if self.mano_dir is not None and not Path(self.mano_dir).is_dir():
            raise ValueError(f"mano_dir: {self.mano_dir} is not a folder (it should hold MANO_RIGHT.pkl and "
                             "MANO_LEFT.pkl)")

    def content_args(self) -> dict[str, Any]:
        """The arguments that decide what a sample contains (everything but num, workers, display)."""
        return {
            "format_version": FORMAT_VERSION,
            "split": self.split,
            "seed": self.seed,
            "mano_dir": None if self.mano_dir is None else str(Path(self.mano_dir).resolve()),
            "occupancy": asdict(self.occupancy),
            "scene_module": self.scene_module,
        }


def sample_seed(seed: int, split: str, index: int) -> np.random.SeedSequence:
    """The seed sequence of one sample: ``SeedSequence(seed, spawn_key=(SPLIT_CODE[split], index))``."""
    if split not in SPLIT_CODE:
        raise ValueError(f"split: expected one of {SPLITS}, got {split!r}")
    return np.random.SeedSequence(int(seed), spawn_key=(SPLIT_CODE[split], int(index)))


# ---------------------------------------------------------------------------------------------------------
# Hand frames: canonicalisation of keypoints and the map into query space
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HandFrame:
    """Canonicalisation of one hand's keypoints (world frame) in the official convention.

    Attributes:
        unpose: (16, 4, 4) unposing bone transforms (query units).
        bone_lengths: (16,) metres.
        root_rot_mat: (4, 4) root rotation.
        root_xyz: (3,) wrist, world frame, metres; x-mirrored for the left hand.
        world_to_query: (4, 4) affine map world metres -> query space (includes the mirror of the left hand).
    """

    unpose: np.ndarray
    bone_lengths: np.ndarray
    root_rot_mat: np.ndarray
    root_xyz: np.ndarray
    world_to_query: np.ndarray


def hand_frames(joints_world: np.ndarray, sides: tuple[str, ...]) -> list[HandFrame]:
    """Canonicalise a batch of hands' keypoints in one call.

    Uses :func:`im2hands.hand.canonical.canonicalise` with the official dtypes (the numbers the official
    networks were trained on). The query map is :func:`im2hands.hand.frames.world_to_query_matrix`.

    Args:
        joints_world: (B, 21, 3) keypoints, internal order, world frame, metres.
        sides: B entries, ``"right"`` or ``"left"``.
    Returns:
        B :class:`HandFrame`.
    """
    import torch

    from im2hands.hand.canonical import canonicalise
    from im2hands.hand.frames import mirror_x, world_to_query_matrix

    joints_world = np.asarray(joints_world, dtype=np.float64)
    if joints_world.ndim != 3 or joints_world.shape[1:] != (21, 3) or len(sides) != len(joints_world):
        raise ValueError(f"joints_world: expected shape ({len(sides)}, 21, 3), got {joints_world.shape}")
    bad = [s for s in sides if s not in SIDES]
    if bad:
        raise ValueError(f"sides: expected 'right' or 'left', got {bad}")
    is_right = torch.tensor([s == "right" for s in sides])
    c = canonicalise(torch.from_numpy(joints_world), is_right)
    wrist = c.wrist.numpy().astype(np.float64)
    w2q = world_to_query_matrix(c.wrist, c.root_rot_mat.double(), is_right).numpy()
    frames = []
    for b, side in enumerate(sides):
        frames.append(HandFrame(
            unpose=c.unpose[b].numpy(),
            bone_lengths=c.bone_lengths[b].numpy(),
            root_rot_mat=c.root_rot_mat[b].numpy().astype(np.float64),
            # the sample format stores the left hand's root x-mirrored (docs/DATA.md, official storage)
            root_xyz=mirror_x(wrist[b]) if side == "left" else wrist[b],
            world_to_query=w2q[b],
        ))
    return frames


def _transform(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ matrix[:3, :3].T + matrix[:3, 3]


# ---------------------------------------------------------------------------------------------------------
# One sample
# ---------------------------------------------------------------------------------------------------------


@dataclass
class _SceneAPI:
    load_hand_models: Any
    sample_scene: Any
    noisy_keypoints: Any


def _scene_api(module_name: str) -> _SceneAPI:
    mod = importlib.import_module(module_name)
    noisy = getattr(mod, "noisy_keypoints", None)
    if noisy is None:
        noisy = importlib.import_module("im2hands.data.synth.noise").noisy_keypoints
    return _SceneAPI(mod.load_hand_models, mod.sample_scene, noisy)


def make_sample(
    seed: int, split: str, index: int, *, hands: Any, api: _SceneAPI, renderer, occupancy: OccupancyConfig
) -> dict[str, np.ndarray]:
    """Make sample ``index`` of ``split``: a dict in the format of :mod:`im2hands.data.sample`."""
    from im2hands.viz.render import random_appearance

    rng_scene, rng_noise, rng_look, rng_occ = (np.random.default_rng(s) for s in sample_seed(seed, split, index).spawn(4))
    scene = api.sample_scene(rng_scene, hands)
    cam = scene.camera
    K, R, T = (np.asarray(a, dtype=np.float64) for a in (cam.K, cam.R, cam.T))
    cam_from_world = np.eye(4)
    cam_from_world[:3, :3], cam_from_world[:3, 3] = R, T
    world_from_cam = np.linalg.inv(cam_from_world)
    size = int(getattr(cam, "size", 256))

    out: dict[str, np.ndarray] = {}
    meshes = {}
    joints_cam = {s: _transform(cam_from_world, np.asarray(getattr(scene, s).joints, dtype=np.float64)) for s in SIDES}
    noisy_cams = {s: np.asarray(api.noisy_keypoints(rng_noise, joints_cam[s], s), dtype=np.float64) for s in SIDES}
    frames = hand_frames(
        np.stack([getattr(scene, s).joints for s in SIDES] + [_transform(world_from_cam, noisy_cams[s]) for s in SIDES]),
        SIDES + SIDES,
    )
    for k, side in enumerate(SIDES):
        h = getattr(scene, side)
        verts_cam = _transform(cam_from_world, np.asarray(h.vertices, dtype=np.float64))
        faces = np.asarray(h.faces, dtype=np.int64)
        check_closed(faces, f"scene.{side}.faces")
        meshes[side] = (verts_cam, faces)
        uvw = joints_cam[side] @ K.T
        noisy_cam = noisy_cams[side]
        gt, noisy = frames[k], frames[len(SIDES) + k]
        p = f"{side}_"
        out |= {
            p + "vertices": verts_cam, p + "faces": faces, p + "joints": joints_cam[side],
            p + "joints_2d": uvw[:, :2] / uvw[:, 2:3],
            p + "global_orient": h.global_orient, p + "hand_pose": h.hand_pose, p + "betas": h.betas,
            p + "transl": h.transl,
            p + "unpose": gt.unpose, p + "bone_lengths": gt.bone_lengths, p + "root_rot_mat": gt.root_rot_mat,
            p + "root_xyz": gt.root_xyz,
            p + "query_to_cam": cam_from_world @ np.linalg.inv(gt.world_to_query),
            p + "noisy_joints": noisy_cam,
            p + "noisy_mpjpe": np.linalg.norm(noisy_cam - joints_cam[side], axis=-1).mean(),
            p + "noisy_unpose": noisy.unpose, p + "noisy_bone_lengths": noisy.bone_lengths,
            p + "noisy_root_rot_mat": noisy.root_rot_mat, p + "noisy_root_xyz": noisy.root_xyz,
        }
        # Occupancy in query space; a mirroring map (left hand) turns the faces inside out: flip them back.
        verts_query = _transform(gt.world_to_query, np.asarray(h.vertices, dtype=np.float64))
        faces_query = faces[:, ::-1] if np.linalg.det(gt.world_to_query[:3, :3]) < 0 else faces
        occ = sample_occupancy(rng_occ, verts_query, faces_query, occupancy)
        out |= {
            p + "points": occ.points, p + "occupancy": occ.occupancy,
            p + "points_iou": occ.points_iou, p + "occupancy_iou": occ.occupancy_iou,
            p + "surface_points": occ.surface_points, p + "surface_normals": occ.surface_normals,
        }

    look = random_appearance(rng_look, size)
    res = renderer.render(meshes, K, look)
    for side, value, sil in (("right", 1, res.silhouette_right), ("left", 2, res.silhouette_left)):
        visible = int((res.labels == value).sum())
        out[f"{side}_mask_share"] = visible / res.labels.size
        out[f"{side}_occluded_fraction"] = 1.0 - visible / max(int(sil.sum()), 1)
    out |= {
        "image": res.rgb, "mask": res.labels, "camera_K": K, "camera_R": R, "camera_T": T,
        "kind": np.array(str(scene.kind)), "contact": np.array(bool(scene.contact)),
        "penetration_volume": float(scene.penetration_volume), "min_distance": float(scene.min_distance),
        "split": np.array(split), "index": index, "seed": seed, "format_version": FORMAT_VERSION,
    }
    return out


# ---------------------------------------------------------------------------------------------------------
# The job
# ---------------------------------------------------------------------------------------------------------

_STATE: dict[str, Any] = {}


class SynthWorkerError(RuntimeError):
    """A worker process could not start or make a sample; the message is the worker's."""


def _init_worker(config: SynthConfig) -> None:
    """Set up one worker. Never raises: a pool whose initializer raises re-spawns workers without end, so
    the error is kept and raised by the worker's first task instead, which ends the job."""
    try:
        os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
        from im2hands.viz.render import HandRenderer

        import torch

        torch.set_num_threads(1)  # one thread per process: parallelism comes from the processes
        api = _scene_api(config.scene_module)
        _STATE.update(config=config, api=api, hands=api.load_hand_models(config.mano_dir), renderer=HandRenderer())
    except Exception as e:  # noqa: BLE001 -- reported by _work with its type and message
        _STATE["init_error"] = f"worker {os.getpid()} could not start: {type(e).__name__}: {e}"


def sample_path(out: Path, split: str, index: int) -> Path:
    """Where sample ``index`` of ``split`` lives."""
    return Path(out) / split / f"{index:06d}.npz"


def _work(index: int) -> int:
    if "init_error" in _STATE:
        raise SynthWorkerError(_STATE["init_error"])
    c: SynthConfig = _STATE["config"]
    sample = make_sample(
        c.seed, c.split, index, hands=_STATE["hands"], api=_STATE["api"], renderer=_STATE["renderer"],
        occupancy=c.occupancy,
    )
    atomic_save_npz(sample_path(c.out, c.split, index), encode_sample(sample))
    return index


def _check_job_file(config: SynthConfig) -> None:
    split_dir = Path(config.out) / config.split
    split_dir.mkdir(parents=True, exist_ok=True)
    job_file = split_dir / "job.json"
    args = config.content_args()
    if job_file.exists():
        try:
            old = json.loads(job_file.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"{job_file}: unreadable ({e}); delete it to start the split again") from e
        if old != json.loads(json.dumps(args)):
            diff = sorted(k for k in set(old) | set(args) if old.get(k) != json.loads(json.dumps(args)).get(k))
            raise ValueError(
                f"out: {split_dir} holds samples made with other arguments (differs in {diff}); use the same "
                "arguments to continue that run, or another --out"
            )
    else:
        text = json.dumps(args, indent=2)
        atomic_write(job_file, lambda f: f.write(text.encode()))


def pending_indices(config: SynthConfig) -> tuple[list[int], list[str]]:
    """Indices still to make: missing or failing :func:`validate_sample_file`; and the corrupt files found.

    Also removes temporary files left by an interrupted run.
    """
    split_dir = Path(config.out) / config.split
    for tmp in split_dir.glob(".*.tmp"):
        tmp.unlink(missing_ok=True)
    todo, corrupt = [], []
    for i in range(config.num):
        path = sample_path(config.out, config.split, i)
        if not path.exists():
            todo.append(i)
            continue
        try:
            validate_sample_file(path)
        except SampleFileError as e:
            corrupt.append(str(e))
            todo.append(i)
    return todo, corrupt


@dataclass(frozen=True)
class SynthSummary:
    """Figures of one split, as written to ``summary.json``."""

    split: str
    num_samples: int
    made_now: int
    reused: int
    redone_corrupt: int
    seconds: float
    """Wall time of this run, worker start-up included."""
    samples_per_second: float
    """Samples made now / seconds."""
    first_sample_seconds: float
    """Wall time until the first sample was written (start-up: imports, hand models, EGL contexts)."""
    steady_samples_per_second: float
    """Rate after the first sample: (made now - 1) / (seconds - first_sample_seconds)."""
    contact_share: float
    mean_penetration_cm3: float
    kinds: dict[str, int]
    mask_share: dict[str, float]
    occluded_fraction: dict[str, float]
    noisy_mpjpe_mm: dict[str, float]
    mean_file_bytes: float

    def lines(self) -> list[str]:
        return [
            f"split {self.split}: {self.num_samples} samples ({self.made_now} made now, {self.reused} reused, "
            f"{self.redone_corrupt} corrupt redone) in {self.seconds:.1f} s = {self.samples_per_second:.2f} samples/s "
            f"(first sample after {self.first_sample_seconds:.1f} s, then {self.steady_samples_per_second:.2f} samples/s)",
            f"  contact share {self.contact_share:.2f}, mean penetration {self.mean_penetration_cm3:.3f} cm^3, "
            f"kinds {self.kinds}",
            "  visible mask share " + ", ".join(f"{s} {v:.3f}" for s, v in self.mask_share.items())
            + "; occluded fraction " + ", ".join(f"{s} {v:.3f}" for s, v in self.occluded_fraction.items()),
            "  noisy-input MPJPE " + ", ".join(f"{s} {v:.2f} mm" for s, v in self.noisy_mpjpe_mm.items())
            + f"; mean file size {self.mean_file_bytes / 1e6:.3f} MB",
        ]


_STAT_KEYS = ("contact", "penetration_volume", "kind") + tuple(
    f"{s}_{k}" for s in SIDES for k in ("mask_share", "occluded_fraction", "noisy_mpjpe")
)


def summarise(
    config: SynthConfig, made_now: int, reused: int, corrupt: int, seconds: float, first: float
) -> SynthSummary:
    """Read the scalar figures of every sample of the split and aggregate them."""
    stats: dict[str, list] = {k: [] for k in _STAT_KEYS}
    sizes = []
    for i in range(config.num):
        path = sample_path(config.out, config.split, i)
        sizes.append(path.stat().st_size)
        with np.load(path, allow_pickle=False) as d:  # lazy: reads only the small members below
            for k in _STAT_KEYS:
                stats[k].append(d[k][()])
    n = max(config.num, 1)

    def mean(k: str) -> float:
        return float(np.mean(stats[k])) if stats[k] else float("nan")

    kinds: dict[str, int] = {}
    for k in stats["kind"]:
        kinds[str(k)] = kinds.get(str(k), 0) + 1
    return SynthSummary(
        split=config.split, num_samples=config.num, made_now=made_now, reused=reused, redone_corrupt=corrupt,
        seconds=round(seconds, 3), samples_per_second=round(made_now / seconds, 3) if seconds > 0 else 0.0,
        first_sample_seconds=round(first, 3),
        steady_samples_per_second=round((made_now - 1) / (seconds - first), 3) if made_now > 1 and seconds > first else 0.0,
        contact_share=float(np.sum(stats["contact"]) / n), mean_penetration_cm3=mean("penetration_volume") * 1e6,
        kinds=dict(sorted(kinds.items())),
        mask_share={s: mean(f"{s}_mask_share") for s in SIDES},
        occluded_fraction={s: mean(f"{s}_occluded_fraction") for s in SIDES},
        noisy_mpjpe_mm={s: mean(f"{s}_noisy_mpjpe") * 1e3 for s in SIDES},
        mean_file_bytes=float(np.mean(sizes)) if sizes else 0.0,
    )


def _write_summary(out: Path, summary: SynthSummary) -> None:
    path = Path(out) / "summary.json"
    data = {}
    if path.exists():
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            data = {}
    data[summary.split] = asdict(summary)
    text = json.dumps(data, indent=2)
    atomic_write(path, lambda f: f.write(text.encode()))


def _start_method(config: SynthConfig) -> str:
    """``fork`` or ``spawn`` for the worker pool (see :attr:`SynthConfig.start_method`)."""
    from im2hands.viz.render import pool_start_method

    return pool_start_method(config.start_method, preload=lambda: _scene_api(config.scene_module))


def check_inputs(config: SynthConfig) -> None:
    """Open everything the job reads (the hand models) before anything is written.

    Raises:
        ValueError: naming ``mano_dir`` (or ``scene_module``) and the cause.
    """
    try:
        api = _scene_api(config.scene_module)
    except ImportError as e:
        raise ValueError(f"scene_module: cannot import {config.scene_module!r} ({e})") from None
    try:
        api.load_hand_models(config.mano_dir)
    except (OSError, ValueError, KeyError, TypeError) as e:
        where = "the built-in open hand model" if config.mano_dir is None else str(config.mano_dir)
        raise ValueError(f"mano_dir: cannot load the hand models from {where}: {e}") from None


def generate(config: SynthConfig) -> SynthSummary:
    """Run the job: make every missing or corrupt sample of the split, then write summary and gallery.

    Inputs are checked before anything is written (:func:`check_inputs`). A worker that fails ends the job
    with :class:`SynthWorkerError` carrying the worker's message; samples already written stay valid and a
    rerun continues from them.
    """
    from tqdm import tqdm

    check_inputs(config)
    _check_job_file(config)
    todo, corrupt = pending_indices(config)
    for msg in corrupt:
        print(f"redoing corrupt sample: {msg}")
    start = time.perf_counter()
    bar = tqdm(total=len(todo), desc=f"synth {config.split}", unit="sample", disable=not config.progress)
    first = 0.0

    def done() -> None:
        nonlocal first
        if not first:
            first = time.perf_counter() - start
        bar.update()

    if todo and config.workers == 1:
        import torch

        threads = torch.get_num_threads()
        _init_worker(config)
        try:
            for i in todo:
                _work(i)
                done()
        finally:
            if "renderer" in _STATE:
                _STATE["renderer"].close()
            _STATE.clear()
            torch.set_num_threads(threads)  # leave the calling process as it was
    elif todo:
        ctx = mp.get_context(_start_method(config))
        with ctx.Pool(min(config.workers, len(todo)), initializer=_init_worker, initargs=(config,)) as pool:
            try:
                for _ in pool.imap_unordered(_work, todo, chunksize=1):
                    done()
            except SynthWorkerError:
                bar.close()
                raise
            except Exception as e:  # a sample failed inside a worker: end the job with the worker's message
                bar.close()
                raise SynthWorkerError(f"a worker failed: {type(e).__name__}: {e}") from e
    bar.close()
    seconds = time.perf_counter() - start
    summary = summarise(config, len(todo), config.num - len(todo), len(corrupt), seconds, first)
    _write_summary(config.out, summary)
    if config.gallery and config.num:
        from im2hands.viz.gallery import save_gallery

        paths = [sample_path(config.out, config.split, i) for i in range(min(config.gallery, config.num))]
        save_gallery(paths, Path(config.out) / "gallery.png")
    return summary
