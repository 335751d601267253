"""Training data: a deterministic, resumable, rank-sharded batch order and a loader that skips corrupt samples.

Every random choice is a function of (seed, epoch, position), never of a process's RNG state:

- the order of epoch ``e`` is ``torch.randperm(n)`` of a generator seeded with ``(seed, e)``;
- sample ``i`` drawn in epoch ``e`` draws its query points with ``numpy.random.default_rng((draw_seed, i))``
  where ``draw_seed`` depends on ``(seed, e)`` (:class:`~im2hands.data.dataset.HandsDataset` ``seed``).

So the batches of step ``s`` are known from ``s`` alone: a resumed run reads exactly the batches the
uninterrupted run would, whatever the number of DataLoader workers, and process ``r`` of ``N`` reads the
``r``-th slice of each global batch (what a distributed sampler does, here without state).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler
from torch.utils.data._utils.collate import default_collate

from im2hands.data.dataset import HandsDataset
from im2hands.data.sample import SampleFileError
from im2hands.data.synth.noise import noisy_keypoints
from im2hands.hand.skeleton import SIDES


def epoch_seed(seed: int, epoch: int) -> int:
    """An int seed for epoch `epoch` of a run seeded `seed` (SeedSequence mixing, stable across versions)."""
    return int(np.random.SeedSequence((seed, epoch)).generate_state(1, dtype=np.uint32)[0])


class StepBatches(Sampler):
    """Local batches of ``(draw_seed, index)`` keys for steps ``start_step, start_step + 1, ...``.

    Args:
        n: samples in the split.
        global_batch: samples per step over all processes (drop-last epochs of ``n // global_batch`` steps).
        rank, world_size: this process's slice of each global batch.
        seed: run seed.
        start_step: first step to yield (resume).
        steps: last step (exclusive).
    """

    def __init__(self, n: int, global_batch: int, *, rank: int, world_size: int, seed: int, start_step: int,
                 steps: int):
        if n < global_batch:
            raise ValueError(f"batch_size: the training split holds {n} samples, fewer than one batch of "
                             f"{global_batch}; lower --batch-size or make more samples")
        if global_batch % world_size:
            raise ValueError(f"batch_size: {global_batch} is not divisible by the {world_size} processes")
        self.n, self.global_batch, self.rank, self.world = n, global_batch, rank, world_size
        self.local = global_batch // world_size
        self.seed, self.start, self.steps = seed, start_step, steps
        self.per_epoch = n // global_batch

    def __len__(self) -> int:
        return max(0, self.steps - self.start)

    def batch(self, step: int) -> list[tuple[int, int]]:
        epoch, k = divmod(step, self.per_epoch)
        g = torch.Generator().manual_seed(epoch_seed(self.seed, epoch))
        order = torch.randperm(self.n, generator=g)
        lo = k * self.global_batch + self.rank * self.local
        draw = epoch_seed(self.seed + 1_000_003, epoch)
        return [(draw, int(i)) for i in order[lo:lo + self.local]]

    def __iter__(self):
        for step in range(self.start, self.steps):
            yield self.batch(step)


@dataclass(frozen=True)
class Skipped:
    """A sample that could not be read; the loader drops it and counts it."""

    path: str
    error: str


NOISE_STREAM = 0x6E6F6973
"""Third seed word of the resampled keypoint errors, so they never share a stream with the point draws."""


class TrainItems(Dataset):
    """:class:`HandsDataset` items addressed by ``(draw_seed, index)``; unreadable samples become :class:`Skipped`.

    Args:
        dataset: the split's dataset (its ``seed`` is set per item from the key).
        anchors: optional folder of precomputed anchors (``<stem>.npz`` with ``left``/``right`` (A, 3) arrays,
            query frames) that replace the dataset's GT-surface anchors.
        resample_noise: replace each drawn item's ``noisy_joints`` by a fresh draw of the synthetic keypoint
            error model (:func:`im2hands.data.synth.noise.noisy_keypoints`, as the generator calls it) from its
            GT joints, seeded by the item's key: every epoch sees new keypoint errors. Only for keys with a
            draw seed (training); only the keypoints change (bone transforms stay the stored ones).
    """

    def __init__(self, dataset: HandsDataset, anchors: Path | None = None, *, resample_noise: bool = False):
        self.dataset = dataset
        self.anchors = anchors
        self.resample_noise = resample_noise
        if anchors is not None:
            missing = [f.stem for f in dataset.files if not (anchors / f"{f.stem}.npz").is_file()]
            if missing:
                raise ValueError(f"anchors_dir: {anchors} lacks the anchors of {len(missing)} sample(s) "
                                 f"(first: {missing[0]}); run `im2hands train anchors` for this split")

    def __len__(self) -> int:
        return len(self.dataset)

    def item(self, i: int, draw_seed: int | None) -> dict | Skipped:
        self.dataset.seed = draw_seed
        try:
            item = self.dataset[i]
            if self.anchors is not None:
                with np.load(self.anchors / f"{self.dataset.files[i].stem}.npz") as z:
                    for side in SIDES:
                        item[side]["anchors"] = torch.from_numpy(np.asarray(z[side], dtype=np.float32))
            if self.resample_noise and draw_seed is not None:
                rng = np.random.default_rng((draw_seed, i, NOISE_STREAM))
                for side in SIDES:
                    joints = item[side]["joints"].numpy().astype(np.float64)
                    item[side]["noisy_joints"] = torch.from_numpy(
                        noisy_keypoints(rng, joints, side).astype(np.float32))
            return item
        except (SampleFileError, OSError, KeyError, ValueError) as e:
            return Skipped(str(self.dataset.files[i]), f"{type(e).__name__}: {e}")

    def __getitem__(self, key: tuple[int, int]) -> dict | Skipped:
        draw_seed, i = key
        return self.item(i, draw_seed)


@dataclass
class Batch:
    """A collated batch (None when every sample was skipped) and the samples skipped."""

    data: dict | None
    skipped: list[Skipped]


def collate_skipping(items: list) -> Batch:
    good = [x for x in items if not isinstance(x, Skipped)]
    bad = [x for x in items if isinstance(x, Skipped)]
    return Batch(default_collate(good) if good else None, bad)


def to_device(x, device: torch.device):
    """Move a nested dict of tensors to `device`."""
    if isinstance(x, torch.Tensor):
        return x.to(device, non_blocking=True)
    if isinstance(x, dict):
        return {k: to_device(v, device) for k, v in x.items()}
    return x
