"""Evaluate a model on a folder of samples (synthetic or prepared InterHand2.6M): ``im2hands evaluate``.

Every sample of the split is reconstructed from its stored 256 x 256 crop, its intrinsics and the chosen
keypoints (ground truth or the stored noisy / predicted ones), and each stage's meshes are scored against
the sample's ground-truth meshes and joints (:mod:`im2hands.eval.metrics`). A sample that fails is reported
and counted, never fatal. Each sample's metric seed is derived from (seed, sample index), so results do not
depend on the number of workers or the order of the samples.

Outputs in ``OUT``: ``metrics_<stage>.json`` / ``.md`` per stage (:mod:`im2hands.eval.report`),
``keypoints.json`` (MPJPE of the input and of the used keypoints), ``evaluation.json`` (the configuration,
per-stage timings and evaluation counts) and ``evaluation.md`` (all tables).
"""

from __future__ import annotations

import json
import multiprocessing as mp
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal, Sequence

import numpy as np

from im2hands.eval.metrics import (EvalConfig, HandGeometry, Mesh, TwoHands, evaluate_sample, gt_from_sample,
                                   keypoint_errors)
from im2hands.eval.report import aggregate, report_to_json, report_to_markdown, write_report

KEYPOINT_SOURCES = {"gt": "joints", "noisy": "noisy_joints", "predicted": "noisy_joints"}
"""``--keypoints`` choice -> per-hand sample key (``{side}_<key>``) of the keypoints fed to the model. The
samples keep input keypoints in ``noisy_joints``: synthetic noise, or for prepared InterHand2.6M data another
method's predictions (``im2hands prepare interhand --pred-keypoints``); ``predicted`` names the latter."""


@dataclass(frozen=True)
class EvaluationConfig:
    """What to evaluate and how."""

    data: Path
    """Folder of samples (``DATA/<split>/*.npz``)."""
    split: str = "test"
    """Split folder to evaluate."""
    stages: tuple[str, ...] = ("initial", "refined")
    """Stages to score (``refined`` needs a ref_occ checkpoint)."""
    keypoints: Literal["gt", "noisy", "predicted"] = "gt"
    """Keypoints fed to the model: ground truth, the samples' noisy ones, or another method's predictions."""
    refine_keypoints: bool | None = None
    """Run KptsRef on the keypoints first. Default: when a kpts_ref network is loaded and the keypoints are
    not the ground truth (refining exact keypoints only adds the refinement's own error)."""
    limit: int | None = None
    """Evaluate only the first `limit` samples (sorted by file name)."""
    workers: int = 1
    """Processes; results are identical for any count (at the same `threads`)."""
    threads: int | None = None
    """Torch threads of every process (default: this process's). Float32 reductions round differently with
    the thread count, so the count is the same in every worker whatever `workers` is."""
    resolution_0: int = 32
    """Extraction lattice: start resolution (official 32)."""
    upsampling_steps: int = 3
    """Extraction lattice: upsampling steps (official 3: 257^3)."""
    metrics: EvalConfig = field(default_factory=EvalConfig)
    """Point counts of the metrics."""
    seed: int = 0
    """Seed of the metrics' sampling and the anchors."""
    bf16: bool = False
    """Reconstruct in the bfloat16 fast mode (``Im2Hands(bf16=True)``: faster on CPUs with native bfloat16)."""
    progress: bool = True

    def __post_init__(self):
        if self.keypoints not in KEYPOINT_SOURCES:
            raise ValueError(f"keypoints: expected one of {list(KEYPOINT_SOURCES)}, got {self.keypoints!r}")
        if not self.stages or any(s not in ("initial", "refined") for s in self.stages):
            raise ValueError(f"stages: expected a non-empty subset of ('initial', 'refined'), got {self.stages}")
        if not isinstance(self.workers, int) or self.workers < 1:
            raise ValueError(f"workers: expected an int >= 1, got {self.workers!r}")
        if self.limit is not None and (not isinstance(self.limit, int) or self.limit < 1):
            raise ValueError(f"limit: expected an int >= 1, got {self.limit!r}")


def sample_files(data: Path, split: str, limit: int | None = None) -> list[Path]:
    folder = Path(data) / split
    if not Path(data).is_dir():
        raise FileNotFoundError(f"data: folder not found: {data}")
    if not folder.is_dir():
        splits = sorted(p.name for p in Path(data).iterdir() if p.is_dir())
        raise FileNotFoundError(f"split: {folder} does not exist (splits in {data}: {splits})")
    files = sorted(folder.glob("*.npz"))
    if not files:
        raise FileNotFoundError(f"split: no samples (*.npz) in {folder}")
    return files[:limit] if limit else files


# -------------------------------------------------------------------------------------------- one sample
_WORKER: dict = {}


def _init_worker(checkpoints: Sequence[str], config: EvaluationConfig, threads: int | None) -> None:
    """Load the model once per process. Never raises (a raising pool initializer re-spawns workers without
    end): the error is raised by the worker's first sample instead."""
    try:
        import torch

        from im2hands.api import Im2Hands
        from im2hands.mesh import Lattice

        if threads:
            torch.set_num_threads(threads)
        lattice = Lattice(config.resolution_0, config.upsampling_steps)
        _WORKER.update(model=Im2Hands.from_checkpoint(*checkpoints, lattice=lattice, seed=config.seed,
                                                      bf16=True if config.bf16 else None),
                       config=config)
    except Exception as e:  # noqa: BLE001
        _WORKER["error"] = f"{type(e).__name__}: {e}"


def _evaluate_one(path: str) -> dict:
    """Reconstruct and score one sample; returns plain data (picklable) with per-stage metrics or an error."""
    from im2hands.data import read_sample
    from im2hands.data.crop import Crop

    if "error" in _WORKER:
        return {"name": Path(path).stem, "error": f"the model could not be loaded: {_WORKER['error']}"}
    model, config = _WORKER["model"], _WORKER["config"]
    name = Path(path).stem
    try:
        s = read_sample(path)
        key = KEYPOINT_SOURCES[config.keypoints]
        missing = [f"{side}_{key}" for side in ("right", "left") if f"{side}_{key}" not in s]
        if missing:
            raise ValueError(f"{path}: no {missing} (--keypoints {config.keypoints})")
        joints_in = {side: np.asarray(s[f"{side}_{key}"], np.float64) for side in ("right", "left")}
        crop = Crop(image=np.asarray(s["image"]), K=np.asarray(s["camera_K"], np.float64), box=(0.0, 0.0, 256.0))
        refine = config.refine_keypoints
        if refine is None and config.keypoints == "gt":
            refine = False
        rec = model.reconstruct_crop(crop, joints_in, refine_keypoints=refine, stages=config.stages)
        gt = gt_from_sample(s)
        index = int(s["index"]) if "index" in s else 0
        out = {"name": name, "stages": {}, "timings": rec.timings,
               "keypoints": {"input": keypoint_errors(joints_in, gt), "used": keypoint_errors(rec.keypoints, gt)}}
        for stage, res in rec.stages.items():
            pred = TwoHands(right=HandGeometry(Mesh(res.right.vertices, res.right.faces), rec.keypoints["right"]),
                            left=HandGeometry(Mesh(res.left.vertices, res.left.faces), rec.keypoints["left"]))
            seed = np.random.SeedSequence([config.seed, index, 0 if stage == "initial" else 1])
            out["stages"][stage] = {"metrics": evaluate_sample(pred, gt, config=config.metrics, seed=seed),
                                    "evaluations": res.evaluations, "seconds": res.seconds}
        return out
    except Exception as e:  # noqa: BLE001 -- a failed sample is reported and counted
        return {"name": name, "error": f"{type(e).__name__}: {e}"}


# -------------------------------------------------------------------------------------------- the job
@dataclass(frozen=True)
class EvaluationResult:
    reports: dict
    """Stage -> :class:`~im2hands.eval.report.Report`."""
    keypoints: dict
    """Mean MPJPE (mm) of the input and the used keypoints, per hand and protocol."""
    failed: list[tuple[str, str]]
    """(sample, message) of every sample that failed."""
    seconds: float


def evaluate_folder(checkpoints: Sequence[str | Path], config: EvaluationConfig, out: str | Path) -> EvaluationResult:
    """Evaluate `checkpoints` (files or folders, :meth:`im2hands.api.Im2Hands.from_checkpoint`) on a split.

    Inputs are checked (the model loads, the split has samples) before anything is written.
    """
    from tqdm import tqdm

    from im2hands.api import Im2Hands

    files = sample_files(config.data, config.split, config.limit)
    Im2Hands.from_checkpoint(*checkpoints, device="cpu")  # fails here, naming the file, before any work
    out = Path(out)
    start = time.perf_counter()
    ckpts = [str(c) for c in checkpoints]
    results: list[dict] = []
    bar = tqdm(total=len(files), desc=f"evaluate {config.split}", unit="sample", disable=not config.progress)
    import torch

    threads = config.threads or torch.get_num_threads()
    # Every sample is evaluated in a fresh worker process, also with one worker: results then do not depend
    # on the worker count or on what the calling process ran before (measured: in-process results after
    # other work differed in the 7th digit from fresh processes, which all agree).
    ctx = mp.get_context("spawn")
    with ctx.Pool(config.workers, initializer=_init_worker, initargs=(ckpts, config, threads)) as pool:
        for r in pool.imap_unordered(_evaluate_one, [str(f) for f in files]):
            results.append(r)
            bar.update()
    bar.close()
    results.sort(key=lambda r: r["name"])
    failed = [(r["name"], r["error"]) for r in results if "error" in r]
    reports = {}
    for stage in config.stages:
        outcomes = []
        for r in results:
            if "error" in r:
                outcomes.append((r["name"], r["error"]))
            else:
                outcomes.append((r["name"], r["stages"][stage]["metrics"]))
        reports[stage] = aggregate(outcomes)
    ok = [r for r in results if "error" not in r]
    keypoints = {which: {k: float(np.mean([r["keypoints"][which][k] for r in ok])) if ok else float("nan")
                         for k in (ok[0]["keypoints"][which] if ok else {})} for which in ("input", "used")}
    seconds = time.perf_counter() - start
    _write_outputs(out, config, reports, keypoints, results, seconds, checkpoints=ckpts)
    return EvaluationResult(reports=reports, keypoints=keypoints, failed=failed, seconds=seconds)


def checkpoint_fingerprints(checkpoints: Sequence[str | Path]) -> list[dict]:
    """What was evaluated: each checkpoint argument's path and the SHA-256 of its file (of each file in it, for
    a folder), so that a result names the exact weights behind it."""
    from im2hands._io import file_sha256

    out = []
    for c in checkpoints:
        path = Path(c)
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix in (".pt", ".safetensors"))
            out.append({"path": str(path), "files": {p.name: file_sha256(p) for p in files}})
        else:
            out.append({"path": str(path), "sha256": file_sha256(path)})
    return out


def _write_outputs(out: Path, config: EvaluationConfig, reports: dict, keypoints: dict, results: list[dict],
                   seconds: float, *, checkpoints: Sequence[str] = ()) -> None:
    from im2hands._io import atomic_write

    out.mkdir(parents=True, exist_ok=True)
    for stage, report in reports.items():
        write_report(report, out, stem=f"metrics_{stage}")
    ok = [r for r in results if "error" not in r]
    timing = {stage: {"seconds_mean": float(np.mean([r["stages"][stage]["seconds"] for r in ok])) if ok else None,
                      "evaluations_mean": {s: float(np.mean([r["stages"][stage]["evaluations"][s] for r in ok]))
                                           for s in ("right", "left")} if ok else None}
              for stage in config.stages}
    summary = {"config": {**asdict(config), "data": str(config.data)},
               "checkpoints": checkpoint_fingerprints(checkpoints), "samples": len(results),
               "failed": sum("error" in r for r in results), "keypoints_mpjpe_mm": keypoints,
               "stages": timing, "seconds": seconds,
               "reports": {stage: report_to_json(r) for stage, r in reports.items()}}
    text = json.dumps(summary, indent=1, default=str)
    atomic_write(out / "evaluation.json", lambda f: f.write(text.encode()))
    atomic_write(out / "evaluation.md", lambda f: f.write(markdown(reports, keypoints, config).encode()))


def markdown(reports: dict, keypoints: dict, config: EvaluationConfig) -> str:
    lines = [f"# Evaluation: {config.data} / {config.split}, keypoints {config.keypoints}", ""]
    for stage, report in reports.items():
        lines += [f"## {stage}", "", report_to_markdown(report), ""]
    if keypoints.get("input"):
        lines += ["## keypoints (MPJPE, mm)", "", "| keypoints | right | left | right (wrist) | left (wrist) |",
                  "|---|---|---|---|---|"]
        for which in ("input", "used"):
            k = keypoints[which]
            lines.append(f"| {which} | {k['right_mpjpe_mm']:.2f} | {k['left_mpjpe_mm']:.2f} | "
                         f"{k['right_mpjpe_wrist_mm']:.2f} | {k['left_mpjpe_wrist_mm']:.2f} |")
    return "\n".join(lines) + "\n"


def summary_lines(result: EvaluationResult) -> list[str]:
    """A short table for the terminal: per stage IoU, Chamfer-L1, MPJPE, penetration, contact-zone IoU."""
    lines = []
    for stage, report in result.reports.items():
        hands = {row.metric: row for row in report.hands}
        pair = {row.metric: row for row in report.pair}

        def get(rows, k, attr="mean"):
            return getattr(rows[k], attr) if k in rows else float("nan")

        lines.append(f"{stage:8s} n={report.count:<4d} failed={report.failed:<3d} "
                     f"IoU {100 * get(hands, 'iou'):.1f} %  Chamfer-L1 {get(hands, 'chamfer_l1_mm'):.2f} mm  "
                     f"MPJPE {get(hands, 'mpjpe_mm'):.2f} mm  penetration {get(pair, 'penetration_volume_mm3'):.1f} mm3  "
                     f"contact IoU {100 * get(pair, 'contact_iou'):.1f} %")
    for name, msg in result.failed:
        lines.append(f"failed: {name}: {msg}")
    return lines
