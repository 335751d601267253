"""The ``im2hands demo`` command: the shipped model on the shipped samples, or on your image.

For each input (``docs/RECONSTRUCT.md``, section "The demo"): keypoint refinement (KptsRef) -> initial occupancy
(InitOcc) -> refinement (RefOcc) -> meshes of both hands, through :meth:`im2hands.api.Im2Hands.reconstruct`
(the full image, its camera and both hands' keypoints; the two-hand crop is made there). ``OUT/<name>/``
gets:

- ``<stage>_<side>.ply`` and ``result.json`` (:func:`~im2hands.api.save_reconstruction`), and
  ``ground_truth_<side>.ply`` when the input has a ground truth;
- ``overlay.png``: the refined meshes over the input image, drawn with the input's camera (right hand red,
  left hand blue, :data:`im2hands.viz.overlay.COLOURS`);
- ``figure.png``: one labelled row on the two-hand crop: input (with its keypoints) | initial | refined |
  ground truth (the last only with a ground truth);
- ``metrics.json`` (with a ground truth): per stage IoU, Chamfer-L1 (mm), MPJPE and the interpenetration of
  the two hands (:func:`im2hands.eval.metrics.evaluate_sample`), and the keypoints' MPJPE before and after
  the refinement;
- ``viewer.html``: the meshes and keypoints in an interactive 3D page (:mod:`im2hands.viz.viewer`).

The shipped samples (``src/im2hands/assets/demo/<name>/``, made by ``docs/scripts/make_demo_samples.py``) are
synthetic test frames of a seed no training run uses: ``image.png``, ``keypoints.json`` (noisy keypoints,
camera frame), ``camera.json``, ``ground_truth.npz`` (per hand ``vertices``, ``faces``, ``joints``, camera
frame, metres) and ``info.json`` (source, kind, occlusion).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from im2hands.eval.metrics import (EvalConfig, HandGeometry, Mesh, SampleMetrics, TwoHands, as_mesh, evaluate_sample)
from im2hands.eval.metrics import keypoint_errors as metric_keypoint_errors
from im2hands.eval.report import json_floats
from im2hands.mesh.lattice import Lattice

DEMO_DIR = Path(__file__).resolve().parent / "assets" / "demo"
"""The shipped samples, one folder each."""
SIDES = ("right", "left")


# ------------------------------------------------------------------------------------------------- inputs
@dataclass(frozen=True)
class DemoInput:
    """One input of the demo: an image, its camera, both hands' keypoints and optionally the ground truth."""

    name: str
    """Name of the output folder."""
    image: np.ndarray
    """(H, W, 3) uint8 RGB, the full image."""
    keypoints: Any
    """Both hands' keypoints as :func:`~im2hands.api.load_keypoints_json` returns them (metres)."""
    keypoint_order: str
    """``"internal"`` or ``"interhand"``."""
    camera: dict[str, np.ndarray]
    """``K`` (3, 3) of `image`, pixels; ``R`` (3, 3), ``T`` (3,) metres when the file gives them."""
    ground_truth: TwoHands | None = field(default=None, repr=False)
    """Both hands' meshes and joints, camera frame, metres; None for an input without one."""


def load_ground_truth(path: str | Path) -> TwoHands:
    """Read a ``ground_truth.npz``: per hand ``{side}_vertices`` (V, 3), ``{side}_faces`` (F, 3), ``{side}_joints``
    (21, 3), camera frame, metres."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ground truth not found: {path}")
    try:
        with np.load(path) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError) as e:
        raise ValueError(f"ground truth {path}: cannot read ({e})") from None
    hands = {}
    for side in SIDES:
        keys = [f"{side}_vertices", f"{side}_faces", f"{side}_joints"]
        missing = [k for k in keys if k not in arrays]
        if missing:
            raise ValueError(f"ground truth {path}: missing key(s) {missing}")
        try:
            hands[side] = HandGeometry(Mesh(arrays[keys[0]], arrays[keys[1]]), arrays[keys[2]])
        except ValueError as e:
            raise ValueError(f"ground truth {path}: {side} hand: {e}") from None
    return TwoHands(**hands)


def load_input(image: str | Path, keypoints: str | Path, camera: str | Path, *, name: str | None = None,
               ground_truth: str | Path | None = None) -> DemoInput:
    """Read an input from files, every file checked before any work.

    Args:
        image: the image (PNG or JPEG, any size; converted to RGB).
        keypoints: the keypoints file (``docs/RECONSTRUCT.md``: both hands, metres).
        camera: the camera file (``K`` of the image; optional ``R``, ``T``).
        name: output folder name (default: the image's file name without its suffix).
        ground_truth: an optional ``ground_truth.npz`` (:func:`load_ground_truth`).
    """
    from PIL import Image, UnidentifiedImageError

    from im2hands.api import load_camera_json, load_keypoints_json

    for what, path in (("image", image), ("keypoints file", keypoints), ("camera file", camera)):
        if not Path(path).is_file():
            raise FileNotFoundError(f"{what} not found: {path}")
    try:
        with Image.open(image) as im:
            rgb = np.array(im.convert("RGB"))
    except (OSError, UnidentifiedImageError) as e:
        raise ValueError(f"image {image}: cannot read ({e})") from None
    kp, order = load_keypoints_json(keypoints)
    cam = load_camera_json(camera)
    gt = load_ground_truth(ground_truth) if ground_truth is not None else None
    return DemoInput(name=name or Path(image).stem, image=rgb, keypoints=kp, keypoint_order=order, camera=cam,
                     ground_truth=gt)


def shipped_inputs(folder: str | Path = DEMO_DIR) -> list[DemoInput]:
    """The shipped samples: every sub-folder of `folder` with ``image.png``, ``keypoints.json``,
    ``camera.json`` and ``ground_truth.npz``, by name."""
    folder = Path(folder)
    dirs = sorted(d for d in folder.iterdir() if d.is_dir()) if folder.is_dir() else []
    if not dirs:
        raise FileNotFoundError(f"no demo samples in {folder} (make them with docs/scripts/make_demo_samples.py)")
    return [load_input(d / "image.png", d / "keypoints.json", d / "camera.json", name=d.name,
                       ground_truth=d / "ground_truth.npz") for d in dirs]


# ------------------------------------------------------------------------------------------------- pictures
def overlay_on_image(image: np.ndarray, K: np.ndarray, meshes: dict[str, tuple[np.ndarray, np.ndarray]], *,
                     max_side: int = 1024) -> np.ndarray:
    """(H, W, 3) uint8: `image` of any aspect with both hands' meshes drawn over it with its intrinsics.

    The square renderer of :func:`~im2hands.viz.overlay.overlay_meshes` gets the image padded at the right or
    bottom (pixel coordinates unchanged, so `K` still holds) and, above `max_side` pixels, scaled down with K.

    Args:
        image: (H, W, 3) uint8 RGB.
        K: (3, 3) intrinsics of `image`, pixels.
        meshes: {"right", "left"}: (vertices (V, 3) camera frame metres, faces (F, 3)).
    """
    from PIL import Image

    from im2hands.viz.overlay import overlay_meshes

    h, w = image.shape[:2]
    side = max(h, w)
    scale = min(1.0, max_side / side)
    K = np.asarray(K, np.float64).copy()
    if scale < 1.0:
        h, w = max(1, round(h * scale)), max(1, round(w * scale))
        image = np.asarray(Image.fromarray(image).resize((w, h), Image.BILINEAR))
        # pixel centres at integers: u' = s (u + 0.5) - 0.5
        K[:2] *= scale
        K[:2, 2] += 0.5 * scale - 0.5
        side = max(h, w)
    square = np.zeros((side, side, 3), np.uint8)
    square[:h, :w] = image
    return overlay_meshes(square, K, meshes)[:h, :w]


def label_tile(tile: np.ndarray, text: str) -> np.ndarray:
    """`tile` with `text` written at its top left on a dark band."""
    from PIL import Image, ImageDraw, ImageFont

    img = Image.fromarray(np.ascontiguousarray(tile))
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default(size=max(12, tile.shape[0] // 16))
    x0, y0, x1, y1 = draw.textbbox((6, 4), text, font=font)
    draw.rectangle((0, 0, x1 + 6, y1 + 4), fill=(20, 20, 20))
    draw.text((6, 4), text, fill=(255, 255, 255), font=font)
    return np.asarray(img)


def draw_keypoints(image: np.ndarray, K: np.ndarray, keypoints: dict[str, np.ndarray]) -> np.ndarray:
    """`image` with each hand's (21, 3) camera-frame keypoints drawn as dots in the hand's colour."""
    from PIL import Image, ImageDraw

    from im2hands.data.crop import project
    from im2hands.viz.overlay import COLOURS

    img = Image.fromarray(np.ascontiguousarray(image))
    draw = ImageDraw.Draw(img)
    r = max(2, image.shape[0] // 100)
    for side, joints in keypoints.items():
        colour = tuple(int(255 * c) for c in COLOURS[side])
        for u, v in project(np.asarray(joints, np.float64), K):
            draw.ellipse((u - r, v - r, u + r, v + r), fill=colour, outline=(255, 255, 255))
    return np.asarray(img)


def _meshes(stage) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    return {s: (stage.hand(s).vertices, stage.hand(s).faces) for s in SIDES}


def _gt_meshes(gt: TwoHands) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    return {s: (getattr(gt, s).mesh.vertices, getattr(gt, s).mesh.faces) for s in SIDES}


def figure(rec, ground_truth: TwoHands | None) -> np.ndarray:
    """One labelled row on the two-hand crop: input (its keypoints drawn) | initial | refined | ground truth."""
    from im2hands.viz.overlay import contact_sheet, overlay_meshes

    crop = rec.crop
    tiles = [label_tile(draw_keypoints(crop.image, crop.K, rec.keypoints_input), "input")]
    for stage, res in rec.stages.items():
        tiles.append(label_tile(overlay_meshes(crop.image, crop.K, _meshes(res)), stage))
    if ground_truth is not None:
        tiles.append(label_tile(overlay_meshes(crop.image, crop.K, _gt_meshes(ground_truth)), "ground truth"))
    return contact_sheet([tiles])[:-4, :-4]   # no trailing white gap


# ------------------------------------------------------------------------------------------------- metrics
def keypoint_errors(joints: dict[str, np.ndarray], gt: TwoHands) -> dict[str, float]:
    """MPJPE (mm) of both hands' keypoints, IntagHand protocol and wrist-rooted (``docs/EVALUATION.md``;
    :func:`im2hands.eval.metrics.keypoint_errors`), plus the hands' mean of the IntagHand figure."""
    out = metric_keypoint_errors(joints, gt)
    out["mean_mpjpe_mm"] = 0.5 * (out["right_mpjpe_mm"] + out["left_mpjpe_mm"])
    return out


def stage_metrics(rec, gt: TwoHands, *, config: EvalConfig, seed: int = 0) -> dict[str, SampleMetrics | str]:
    """Stage -> :class:`~im2hands.eval.metrics.SampleMetrics` of the reconstruction against `gt`, or the
    reason there are none (an empty mesh); the joints scored are the keypoints the occupancy networks used."""
    out: dict[str, SampleMetrics | str] = {}
    for k, (stage, res) in enumerate(rec.stages.items()):
        try:
            pred = TwoHands(**{s: HandGeometry(as_mesh((res.hand(s).vertices, res.hand(s).faces), f"{s} mesh"),
                                               rec.keypoints[s]) for s in SIDES})
        except ValueError as e:
            out[stage] = f"no metrics: {e}"
            continue
        out[stage] = evaluate_sample(pred, gt, config=config, seed=np.random.SeedSequence([seed, k]))
    return out


def metrics_json(rec, gt: TwoHands, stages: dict[str, SampleMetrics | str], *, refined_keypoints: bool,
                 config: EvalConfig) -> dict:
    """The content of ``metrics.json``: per stage the metrics of each hand, their mean and the pair's
    interpenetration (or ``{"error": reason}``), and the keypoints' MPJPE as input and refined."""
    keypoints = {"input": keypoint_errors(rec.keypoints_input, gt)}
    if refined_keypoints:
        keypoints["refined"] = keypoint_errors(rec.keypoints, gt)

    def entry(m: SampleMetrics | str) -> dict:
        if isinstance(m, str):
            return {"error": m}
        # NaN (a figure with no meaning for this sample, e.g. the contact IoU of hands that do not meet) -> null
        return {"right": asdict(m.right), "left": asdict(m.left), "mean": asdict(m.mean),
                "pair": json_floats(asdict(m.pair))}

    return {
        "units": "IoU a ratio; *_mm millimetres; *_mm3 cubic millimetres (camera frame)",
        "stages": {stage: entry(m) for stage, m in stages.items()},
        "keypoints": keypoints,
        "protocol": {"mpjpe_mm": "IntagHand: middle-MCP rooted, scaled to the GT palm length",
                     "mpjpe_wrist_mm": "wrist rooted, no scaling", "joints_scored": "the keypoints the "
                     "occupancy networks used (refined when KptsRef ran)", "points": asdict(config)},
    }


# ------------------------------------------------------------------------------------------------- the run
@dataclass(frozen=True)
class DemoResult:
    """What the demo did with one input."""

    name: str
    out_dir: Path
    reconstruction: Any = field(repr=False)
    """The :class:`~im2hands.api.Reconstruction`."""
    metrics: dict
    """The content of ``metrics.json``; empty for an input without a ground truth."""
    timings: dict[str, float]
    """Seconds: ``keypoints``, ``initial``, ``refined`` (the reconstruction's, :class:`~im2hands.api.Reconstruction`),
    ``reconstruction`` (all of it), ``files`` (meshes, viewer), ``pictures``, ``metrics``, ``total``."""
    files: list[Path]
    """Every file written."""


def run_input(model, inp: DemoInput, out_dir: str | Path, *, metrics: EvalConfig = EvalConfig(),
              seed: int = 0) -> DemoResult:
    """Reconstruct one input with `model` (an :class:`~im2hands.api.Im2Hands`; the refined stage when it has
    a RefOcc, the keypoint refinement when it has a KptsRef) and write its files into `out_dir` (see the module
    docstring)."""
    import torch

    from im2hands._io import atomic_write
    from im2hands.api import save_reconstruction
    from im2hands.mesh import export_mesh
    from im2hands.viz.overlay import save_png

    out_dir = Path(out_dir)
    t0 = time.perf_counter()
    stages = ("initial", "refined") if model.ref_occ is not None else ("initial",)
    rec = model.reconstruct(inp.image, inp.keypoints, inp.camera, keypoint_order=inp.keypoint_order, stages=stages)
    timings = {k: rec.timings[k] for k in ("keypoints", "initial", "refined") if k in rec.timings}
    timings["reconstruction"] = time.perf_counter() - t0
    refined_keypoints = model.kpts_ref is not None

    t = time.perf_counter()
    files = save_reconstruction(rec, out_dir)
    if inp.ground_truth is not None:
        for side in SIDES:
            m = getattr(inp.ground_truth, side).mesh
            files.append(out_dir / f"ground_truth_{side}.ply")
            export_mesh(files[-1], torch.from_numpy(m.vertices), torch.from_numpy(m.faces))
    viewer = _write_viewer(out_dir / "viewer.html", rec, inp, refined_keypoints=refined_keypoints)
    files += [viewer] if viewer is not None else []
    timings["files"] = time.perf_counter() - t

    t = time.perf_counter()
    final = rec.stages["refined" if "refined" in rec.stages else "initial"]
    save_png(out_dir / "overlay.png", overlay_on_image(inp.image, inp.camera["K"], _meshes(final)))
    save_png(out_dir / "figure.png", figure(rec, inp.ground_truth))
    files += [out_dir / "overlay.png", out_dir / "figure.png"]
    timings["pictures"] = time.perf_counter() - t

    t = time.perf_counter()
    result = {}
    if inp.ground_truth is not None:
        result = metrics_json(rec, inp.ground_truth, stage_metrics(rec, inp.ground_truth, config=metrics, seed=seed),
                              refined_keypoints=refined_keypoints, config=metrics)
        text = json.dumps(result, indent=1)
        atomic_write(out_dir / "metrics.json", lambda f: f.write(text.encode()))
        files.append(out_dir / "metrics.json")
    timings["metrics"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - t0
    return DemoResult(inp.name, out_dir, rec, result, timings, files)


def viewer_available() -> bool:
    """Whether :mod:`im2hands.viz.viewer` (``viewer.html``) is part of this installation."""
    import importlib.util

    return importlib.util.find_spec("im2hands.viz.viewer") is not None


def _write_viewer(path: Path, rec, inp: DemoInput, *, refined_keypoints: bool) -> Path | None:
    """``viewer.html`` through :func:`im2hands.viz.viewer.write_viewer`; None where that module is not
    available (:func:`viewer_available`)."""
    if not viewer_available():
        return None
    from im2hands.viz.viewer import write_viewer

    meshes = {stage: _meshes(res) for stage, res in rec.stages.items()}
    if inp.ground_truth is not None:
        meshes["ground truth"] = _gt_meshes(inp.ground_truth)
    keypoints = {"input": rec.keypoints_input}
    if refined_keypoints:
        keypoints["refined"] = rec.keypoints
    write_viewer(path, meshes, keypoints=keypoints, title=f"im2hands demo: {inp.name}")
    return path


def metrics_table(metrics: dict) -> list[str]:
    """A small text table of one input's ``metrics.json`` content: the keypoints' MPJPE (input, refined), then
    each stage's IoU and Chamfer-L1 (mean of the hands) and the volume inside both hands."""
    lines = [f"  {'':16} {'IoU':>6} {'Chamfer-L1 mm':>14} {'penetration mm3':>16} {'MPJPE mm':>9} {'contact IoU':>12}"]
    for name, kp in metrics["keypoints"].items():
        lines.append(f"  {name + ' keypoints':16} {'':>6} {'':>14} {'':>16} {kp['mean_mpjpe_mm']:9.2f}")
    for stage, m in metrics["stages"].items():
        if "error" in m:
            lines.append(f"  {stage + ' meshes':16} {m['error']}")
            continue
        contact = m["pair"].get("contact_iou")
        lines.append(f"  {stage + ' meshes':16} {m['mean']['iou']:6.3f} {m['mean']['chamfer_l1_mm']:14.2f} "
                     f"{m['pair']['penetration_volume_mm3']:16.1f} {'':>9} "
                     f"{'-' if contact is None else f'{contact:.3f}':>12}")
    return lines


class DemoRun(NamedTuple):
    """What :func:`run_demo` did."""

    results: list[DemoResult]
    """One per input that went through."""
    failures: dict[str, str]
    """Input name -> why it failed (an input fails alone when there are several)."""


def run_demo(out_dir: str | Path, *, inputs: Sequence[DemoInput] | None = None,
             model: Sequence[str | Path] | None = None, device: str | None = None, lattice: Lattice = Lattice(),
             metrics: EvalConfig = EvalConfig(), seed: int = 0, bf16: bool | None = None) -> DemoRun:
    """Run the demo and print what it did: the model, per input its timings and, with a ground truth, a
    metrics table.

    Args:
        out_dir: each input goes to ``out_dir/<name>/``.
        inputs: what to reconstruct (default: :func:`shipped_inputs`).
        model: checkpoint or bundle files/folders (:meth:`~im2hands.api.Im2Hands.from_checkpoint`); default:
            the shipped model (:meth:`~im2hands.api.Im2Hands.pretrained`).
        device: torch device (default: CUDA if available, else the CPU).
        lattice: extraction lattice (default 257^3).
        metrics: point counts of the metrics.
        seed: seed of the anchors and of the metrics' sampling.
        bf16: the bfloat16 fast mode (:class:`~im2hands.api.Im2Hands`); None: as stored.
    """
    from im2hands.api import Im2Hands

    out_dir = Path(out_dir)
    inputs = shipped_inputs() if inputs is None else list(inputs)
    names = [i.name for i in inputs]
    if len(set(names)) != len(names):
        raise ValueError(f"inputs: names must differ (they name the output folders), got {names}")
    t = time.perf_counter()
    if model is None:
        model = Im2Hands.pretrained(device, lattice=lattice, seed=seed, bf16=bf16)
    else:
        model = Im2Hands.from_checkpoint(*model, device=device, lattice=lattice, seed=seed,
                                         bf16=bf16)
    nets = ", ".join(n for n in ("kpts_ref", "init_occ", "ref_occ") if getattr(model, n) is not None)
    print(f"model: {nets} on {model.device}, lattice {model.lattice.resolution + 1}^3 "
          f"(loaded in {time.perf_counter() - t:.1f} s)")
    if not viewer_available():
        print("no viewer.html: im2hands.viz.viewer is not available")
    results, failures = [], {}
    start = time.perf_counter()
    for inp in inputs:
        try:
            res = run_input(model, inp, out_dir / inp.name, metrics=metrics, seed=seed)
        except ValueError as e:
            if len(inputs) == 1:
                raise
            failures[inp.name] = str(e)
            print(f"{inp.name}: failed: {e}", file=sys.stderr)
            continue
        tm = res.timings
        steps = [f"{k} {tm[k]:.1f} s" for k in ("keypoints", "initial", "refined", "files", "pictures", "metrics")
                 if k in tm]
        print(f"{inp.name}: {', '.join(steps)}; total {tm['total']:.1f} s -> {res.out_dir}")
        if res.metrics:
            print("\n".join(metrics_table(res.metrics)))
        results.append(res)
    print(f"demo: {len(results)} input(s) in {time.perf_counter() - start:.1f} s"
          f"{f', {len(failures)} failed' if failures else ''}; files in {out_dir}")
    return DemoRun(results, failures)
