"""Precompute RefOcc's anchors: 512 points on each hand's InitOcc mesh, per sample, cached beside the samples.

Officially the anchors are resampled every step from InitOcc meshes generated beforehand
(``reference/official-im2hands.md`` §3). Here one command extracts both hands' InitOcc meshes of every
sample (:func:`im2hands.mesh.extract_meshes`, both hands in the same calls) with a trained InitOcc and
keeps 512 evenly spread surface points per hand (:func:`im2hands.mesh.sample_anchors`, seeded by the
sample index). Output: ``DATA/anchors/<name>/<split>/<stem>.npz`` holding ``left`` and ``right`` (512, 3)
float32 anchors in each hand's query frame (what ``RefOcc.encode`` reads) plus ``job.json`` (the
checkpoint, lattice, threshold). Files are written atomically; a rerun skips samples already done and
refuses a different job in the same folder.

Anchors only need to lie on the surface to within a fraction of the anchor spacing (~1 cm), so a coarse
lattice is enough: the default ``Lattice(32, 1)`` (64³ cells, 1.7 cm -> 3.4 mm cells) costs a fraction of the
official 257³ extraction (``docs/TRAINING.md`` gives the measured difference).
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from im2hands._io import file_sha256
from im2hands.data.dataset import HandsDataset
from im2hands.hand.camera import Camera
from im2hands.hand.skeleton import SIDES
from im2hands.mesh import Lattice, extract_meshes, sample_anchors
from im2hands.models.checkpoint import load_model
from im2hands.models.init_occ import HandInputs, InitOcc


@dataclass(frozen=True)
class AnchorsConfig:
    """Precompute RefOcc anchors on the InitOcc meshes of every sample of some splits."""

    checkpoint: Path
    """A trained InitOcc checkpoint (``RUN/best.pt`` of an init-occ run)."""
    data: Path
    """The samples' folder (``DATA/<split>/*.npz``)."""
    splits: tuple[str, ...] = ("train", "val")
    """Splits to process."""
    name: str = "default"
    """Anchor set name: files go to ``DATA/anchors/<name>/<split>/``."""
    count: int = 512
    """Anchors per hand (official 512)."""
    resolution_0: int = 32
    """Coarsest lattice cells per axis."""
    upsampling_steps: int = 1
    """Lattice refinements (official meshes: 3, i.e. 256³ cells; anchors need far less)."""
    threshold: float = 0.5
    """Iso-value of the InitOcc meshes (official 0.5)."""
    transforms_from: str = "gt"
    """Keypoints the bone transforms come from (must match the RefOcc run's ``transforms_from``)."""
    limit: int = 0
    """Only the first this many samples of each split (sorted file order); 0: all. Matches ``TrainConfig``'s
    ``train_samples`` / ``val_samples`` when a run uses part of a split; rerun with a larger limit to add more."""
    device: str = "cpu"
    """Torch device of the network."""
    progress: bool = True
    """Show a progress bar."""


@dataclass(frozen=True)
class AnchorsSummary:
    done: int
    """Samples processed now."""
    cached: int
    """Samples already done before."""
    fallback: int
    """Hands whose InitOcc mesh was empty: their anchors are the GT surface points instead."""
    folder: Path


def _write_npz(path: Path, **arrays) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def anchors_for_batch(model: InitOcc, item: dict, *, lattice: Lattice, threshold: float, count: int, seed: int,
                      device: torch.device) -> tuple[dict[str, np.ndarray], int]:
    """Both hands' anchors of one dataset item (query frames): ({side: (count, 3)}, hands that fell back)."""
    image = item["image"][None].to(device)
    camera = Camera(K=item["camera_K"][None].to(device), R=item["camera_R"][None].to(device),
                    T=item["camera_T"][None].to(device))
    hands = {s: HandInputs(unpose=item[s]["unpose"][None].to(device),
                           bone_lengths=item[s]["bone_lengths"][None].to(device),
                           root_rot_mat=item[s]["root_rot_mat"][None].to(device),
                           root=item[s]["root"][None].to(device)) for s in SIDES}
    with torch.no_grad():
        enc = model.encode(image, camera)

        def occupancy(points: list[torch.Tensor]) -> list[torch.Tensor]:
            return [model.decode(enc, hands[s], p[None], s).occupancy[0] if len(p) else p.new_zeros(0)
                    for s, p in zip(SIDES, points)]

        meshes = extract_meshes(occupancy, 2, lattice=lattice, threshold=threshold, device=device)
    out, fallback = {}, 0
    for s, m in zip(SIDES, meshes):
        try:
            out[s] = sample_anchors(m.vertices.double(), m.faces, count, seed=seed).float().numpy()
        except ValueError:   # empty mesh (an untrained or collapsed network): GT surface points instead
            fallback += 1
            surf = item[s]["surface_points"].numpy()
            idx = np.random.default_rng(seed).choice(len(surf), count, replace=len(surf) < count)
            out[s] = surf[idx].astype(np.float32)
    return out, fallback


def precompute_anchors(config: AnchorsConfig) -> AnchorsSummary:
    """Run the job (resumable); see the module docstring."""
    if not isinstance(config.limit, int) or config.limit < 0:
        raise ValueError(f"limit: expected an int >= 0 (0: every sample), got {config.limit!r}")
    device = torch.device(config.device)
    model = load_model(config.checkpoint, map_location=device)
    if not isinstance(model, InitOcc):
        raise ValueError(f"checkpoint: {config.checkpoint} holds a {type(model).__name__}; anchors need an "
                         "InitOcc (init-occ run) checkpoint")
    lattice = Lattice(config.resolution_0, config.upsampling_steps)
    root = Path(config.data) / "anchors" / config.name
    job = {"checkpoint_sha256_16": file_sha256(config.checkpoint)[:16], "resolution_0": config.resolution_0,
           "upsampling_steps": config.upsampling_steps, "threshold": config.threshold, "count": config.count,
           "transforms_from": config.transforms_from}
    root.mkdir(parents=True, exist_ok=True)
    job_file = root / "job.json"
    if job_file.is_file():
        old = json.loads(job_file.read_text())
        diff = sorted(k for k in set(old) | set(job) if old.get(k) != job.get(k))
        if diff:
            raise ValueError(f"{root}: holds anchors of another job (differs in {diff}); choose another --name "
                             "or delete the folder")
    else:
        job_file.write_text(json.dumps(job, indent=1))
    done = cached = fallback = 0
    todo = []
    for split in config.splits:
        ds = HandsDataset(config.data, split, points_per_hand=1, anchors_per_hand=1,
                          transforms_from=config.transforms_from, seed=0)
        folder = root / split
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.glob(".*.tmp"):
            stale.unlink()
        files = ds.files[:config.limit] if config.limit else ds.files
        for i, f in enumerate(files):
            target = folder / f"{f.stem}.npz"
            if target.is_file():
                cached += 1
            else:
                todo.append((ds, i, target))
    bar = None
    if config.progress:
        from tqdm import tqdm
        bar = tqdm(total=len(todo), desc="anchors", unit="sample")
    for ds, i, target in todo:
        item = ds[i]
        anchors, fb = anchors_for_batch(model, item, lattice=lattice, threshold=config.threshold,
                                        count=config.count, seed=int(item["index"]), device=device)
        _write_npz(target, **anchors)
        done += 1
        fallback += fb
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return AnchorsSummary(done=done, cached=cached, fallback=fallback, folder=root)
