"""Typed training configs and the named presets of every stage.

A run is one :class:`TrainConfig`: the stage, the data and output folders, the network size, the optimiser
and schedule, validation and checkpoint cadence. Presets are derived from the official recipe with
``dataclasses.replace`` (facts: ``reference/official-im2hands.md`` §5-6):

- ``official``: the paper's sizes and recipe (ResNet-50, batch 8 / 2 / 32, Adam 1e-5 / 1e-4 / 1e-4,
  4,096 / 2,048 points per hand, RefOcc StepLR(5000, 0.2), penetration weight 0.001).
- ``compact``: a size that trains on two CPU threads in hours (ResNet-18, fewer points per step, larger
  learning rates, a HALO stage first); ``docs/TRAINING.md`` gives the reasons and the measured rates.
- ``smoke``: a few CPU steps on a handful of tiny samples (CI); it still shows learning.

The stages: ``halo`` (InitOcc without the query-image attention: the HALO baseline and InitOcc's
initialisation), ``init-occ``, ``ref-occ`` (InitOcc frozen, anchors on the InitOcc meshes), ``kpts-ref``.
Every field can be overridden on the command line (``--optim.lr 3e-4``; tyro builds the flags from this
module's dataclasses and their docstrings).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

Stage = Literal["halo", "init-occ", "ref-occ", "kpts-ref"]
STAGES: tuple[str, ...] = ("halo", "init-occ", "ref-occ", "kpts-ref")
PresetName = Literal["official", "compact", "smoke"]


@dataclass(frozen=True)
class OptimConfig:
    """Adam with an optional step schedule (stepped per iteration, as officially)."""

    lr: float = 1e-5
    """Learning rate."""
    weight_decay: float = 0.0
    """Adam's L2 weight decay (official RefOcc: 1e-5)."""
    step_size: int = 0
    """StepLR period in iterations; 0 keeps the learning rate constant."""
    gamma: float = 0.2
    """StepLR factor applied every ``step_size`` iterations."""
    warmup_steps: int = 0
    """Linear warm-up from 0 over this many iterations (0: none)."""
    grad_clip: float = 0.0
    """Clip the global gradient norm to this value; 0 disables clipping."""


@dataclass(frozen=True)
class TrainConfig:
    """One training run of one stage."""

    stage: Stage = "init-occ"
    """Which network and loss: halo, init-occ, ref-occ or kpts-ref."""
    preset: str = "official"
    """Name of the preset the run started from (recorded; checked on resume and when chaining stages)."""
    data: Path = Path("data/synth")
    """Folder with ``train/`` and ``val/`` sample folders (``im2hands synth`` layout)."""
    out: Path = Path("runs/run")
    """Run folder: config.json, checkpoints, TensorBoard events, metrics.jsonl."""
    train_split: str = "train"
    """Sub-folder of ``data`` with the training samples."""
    val_split: str = "val"
    """Sub-folder of ``data`` with the validation samples."""
    encoder_depth: Literal[18, 34, 50] = 50
    """ResNet depth of the image encoder (official 50)."""
    encoder_width: int = 64
    """Base channels of the image encoder's ResNet (official 64; ``ImageEncoderConfig.width``)."""
    encoder_fmap_dim: int = 128
    """Channels of the encoder's heat-map / dense-pose decoders (official 128)."""
    kpts_img_dim: int = 256
    """kpts-ref: channels of the image map the keypoint attention reads (official 256)."""
    kpts_hand_centred: bool = False
    """kpts-ref: embed each hand relative to its own middle MCP in decimetres and regress offsets from a zero
    start (``KptsRefConfig.hand_centred``); False: the official input (mm, relative to the left middle MCP)."""
    kpts_linear_path: bool = False
    """kpts-ref: add the linear path beside the GCN (``KptsRefConfig.linear_path``; needs kpts_hand_centred)."""
    kpts_linear_fit_draws: int = 0
    """kpts-ref with the linear path: before the first step, fit it in closed form (ridge least squares) on
    this many keypoint-error draws per training sample (``resample_noise``; else the one stored draw); 0:
    no fit, it starts at zero."""
    resample_noise: bool = False
    """kpts-ref: draw new keypoint errors for every training item from the synthetic error model
    (``im2hands.data.synth.noise``) instead of the stored noisy keypoints, so the refinement never sees the
    same error twice (the stored ones are one draw per sample). Synthetic data only."""
    kpts_loss: Literal["mse", "mpjpe"] = "mse"
    """kpts-ref loss: MSE of middle-MCP-relative keypoints (official) or their mean joint distance, the
    MPJPE itself (mm; less dominated by the error model's outlier joints)."""
    official_quirks: bool = False
    """Train the official forward with its quirks (False: the fixed forward, ``docs/OFFICIAL_QUIRKS.md``)."""
    batch_size: int = 8
    """Global batch size (all processes together; each of N processes reads batch_size / N)."""
    points_per_hand: int = 4096
    """Occupancy query points per hand and sample per step (drawn with replacement)."""
    steps: int = 100_000
    """Optimisation steps of the run (the official loops have no limit)."""
    optim: OptimConfig = field(default_factory=OptimConfig)
    """Optimiser and learning-rate schedule."""
    init_from: Path | None = None
    """Checkpoint to start from: halo -> init-occ (decoders copied to both hands), init-occ -> ref-occ (the
    frozen InitOcc, and RefOcc's image encoder), init-occ -> kpts-ref (its image encoder; optional, the
    official KptsRef starts from IntagHand's); halo -> halo continues a HALO under this run's schedule (all
    its weights; e.g. the HALO baseline given InitOcc's extra steps without the image), none: from scratch."""
    freeze_encoder: bool = False
    """ref-occ, kpts-ref: keep the image encoder as initialised from ``init_from`` (fixed, in eval mode), so
    all three networks share one encoder. For kpts-ref its features are then a function of the sample
    alone: they are computed once per sample and kept in memory (float16) and every later step trains only
    the graph, attention and regression layers."""
    anchors: Literal["init-occ", "gt"] = "init-occ"
    """RefOcc anchors: 512 points on the InitOcc meshes (official; precompute with ``im2hands train
    anchors``) or 512 points of the GT surface (ablation: the refinement then never sees InitOcc's errors
    in its anchors, so it learns less to correct them)."""
    anchors_dir: Path | None = None
    """Folder of precomputed anchors (``DATA/anchors/<name>``); None: ``DATA/anchors/default``."""
    occupancy_loss: Literal["mse", "bce"] = "mse"
    """Occupancy loss of halo, init-occ and ref-occ: MSE on probabilities (official) or binary cross-entropy
    on the logit (InitOcc's max part logit, RefOcc's refined logit; does not saturate: learns faster)."""
    part_loss_weight: float = 0.0
    """Weight of the auxiliary per-part BCE of InitOcc/HALO (``train.losses.part_bce``; 0: off, official)."""
    image_loss_weight: float = 0.0
    """halo, init-occ: weight of the 2D supervision of the image encoder (``train.losses.image_supervision``:
    the encoder's hand-mask logits against the samples' masks, its joint heat maps against Gaussians at the
    GT joints' projections). The official InitOcc starts from IntagHand's encoder, trained with such 2D
    labels; trained from scratch on occupancy alone, the compact InitOcc learnt to ignore the image
    (docs/TRAINING.md). In the halo stage it trains the encoder beside the part decoders, which never read
    it (their training is unchanged), and init-occ starts from that encoder. 0: off (official)."""
    coord_init_scale: float = 1.0
    """halo: multiply the initial first-layer weights that read the bone-frame coordinates by this factor.
    Inside a bone's frame the hand spans only ~0.01-0.1 units (the official input scale), so with the
    default initialisation every part MLP starts nearly constant over its bone and learns its shape slowly;
    a larger start resolves the shape at once (the forward is unchanged: only the initial weights)."""
    pen_weight: float = 0.001
    """Penetration loss weight (official 0.001; a sum over points, scaled to the global batch)."""
    pen_pass: bool = True
    """Decode each hand's RefOcc at the other hand's points (needed when pen_weight > 0)."""
    refine_residual: bool = False
    """ref-occ: the refinement predicts a correction of InitOcc's logit, starting from zero
    (``RefOccConfig.residual``), instead of the occupancy itself (official). It then starts where InitOcc is
    and cannot end up below it for lack of training."""
    contact_cue: bool = False
    """ref-occ, with refine_residual: the correction also reads the other hand's frozen InitOcc logit at each
    query (``RefOccConfig.contact_cue``), so where the initial hands overlap the refinement learns which
    one yields."""
    transforms_from: Literal["gt", "noisy"] = "gt"
    """Keypoints the bone transforms come from during training (official: predicted keypoints)."""
    points_frame: Literal["gt", "input"] = "gt"
    """Query frame of the training and validation points: the GT keypoints' (official, even with
    ``transforms_from=noisy``: the network then reads each point up to centimetres away from where its label
    was taken) or the frame of the keypoints the transforms come from (``HandsDataset(points_frame=...)``: the
    same physical points, so the labels stay true)."""
    train_samples: int = 0
    """Train on the first this many samples of the training split (sorted file order); 0: all of them."""
    val_every: int = 1000
    """Validate every this many steps (and at the end); 0 only at the end."""
    val_samples: int = 64
    """Validation samples used (the first ones of the split); 0: all."""
    val_points: int = 4096
    """IoU points per hand and validation sample (a fixed seeded draw)."""
    val_points_from: Literal["mixed", "uniform"] = "mixed"
    """Validation IoU points: the mixed occupancy points (half uniform, half near the surface; official:
    ``points_iou_folder: points``) or the uniform IoU points (the evaluation's, dominated by empty space)."""
    checkpoint_every: int = 1000
    """Write ``last.pt`` every this many steps (and at the end)."""
    log_every: int = 10
    """Write TensorBoard scalars and metrics.jsonl every this many steps."""
    seed: int = 0
    """Seed of the initial weights, the data order, the point draws and dropout."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """auto: CUDA when available (one GPU per process under torchrun), else the CPU."""
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    """bf16 autocast: auto uses it on CUDA only. On this project's AMD EPYC CPUs (AVX512-BF16) it measured
    faster (init-occ 1.4x, ref-occ 2.1x, kpts-ref 1.0x samples/s, docs/TRAINING.md) but its effect on the
    accuracy reached is not measured, so the CPU default stays float32."""
    num_workers: int = 0
    """DataLoader worker processes (draws are seeded per sample, so results do not depend on it)."""
    threads: int = 0
    """torch CPU threads per process; 0 keeps torch's default."""
    disable_dropout: bool = False
    """Set every dropout to p = 0 (the networks' 0.01 dropouts); makes runs with different process counts
    comparable exactly."""
    resume: bool = False
    """Continue the run in ``out`` from its ``last.pt`` exactly (model, optimiser, schedule, data order, step)."""
    progress: bool = True
    """Show a progress bar with the loss and samples/s."""
    stop_after: int = 0
    """Stop (after checkpointing) once this many steps ran in this process; 0: run to ``steps``. For tests
    and time-sliced jobs; the run continues with ``--resume``."""

    def __post_init__(self):
        for name in ("batch_size", "points_per_hand", "steps", "encoder_width", "encoder_fmap_dim", "kpts_img_dim"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name}: expected a positive int, got {v!r}")
        for name in ("kpts_linear_fit_draws", "train_samples", "val_every", "val_samples", "checkpoint_every", "log_every", "num_workers", "threads",
                     "stop_after"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 0:
                raise ValueError(f"{name}: expected an int >= 0, got {v!r}")
        for name in ("part_loss_weight", "pen_weight", "image_loss_weight"):
            v = getattr(self, name)
            if not math.isfinite(v) or v < 0:
                raise ValueError(f"{name}: expected a finite number >= 0, got {v!r}")
        if not math.isfinite(self.coord_init_scale) or self.coord_init_scale <= 0:
            raise ValueError(f"coord_init_scale: expected a finite number > 0, got {self.coord_init_scale!r}")
        if self.stage not in STAGES:
            raise ValueError(f"stage: expected one of {STAGES}, got {self.stage!r}")
        if self.kpts_linear_fit_draws and not self.kpts_linear_path:
            raise ValueError("kpts_linear_fit_draws: fits the linear path; set kpts_linear_path too")
        if self.resample_noise and self.stage != "kpts-ref":
            raise ValueError(f"resample_noise: only the kpts-ref stage reads the noisy keypoints alone "
                             f"(stage {self.stage!r} takes its bone transforms from the stored ones)")
        if self.image_loss_weight > 0 and self.stage not in ("halo", "init-occ"):
            raise ValueError(f"image_loss_weight: trains the image encoder in the halo and init-occ stages only "
                             f"(stage {self.stage!r} starts from init-occ's encoder)")
        if self.contact_cue and (self.stage != "ref-occ" or not self.refine_residual or self.official_quirks):
            raise ValueError("contact_cue: a ref-occ option that needs refine_residual and not official_quirks "
                             f"(stage {self.stage!r}, refine_residual {self.refine_residual}, "
                             f"official_quirks {self.official_quirks})")


_OFFICIAL = {
    "halo": TrainConfig(stage="halo", batch_size=8, points_per_hand=4096, optim=OptimConfig(lr=1e-4),
                        val_every=1000),
    "init-occ": TrainConfig(stage="init-occ", batch_size=8, points_per_hand=4096, optim=OptimConfig(lr=1e-5),
                            val_every=1000),
    "ref-occ": TrainConfig(stage="ref-occ", batch_size=2, points_per_hand=2048,
                           optim=OptimConfig(lr=1e-4, weight_decay=1e-5, step_size=5000, gamma=0.2),
                           val_every=2000),
    "kpts-ref": TrainConfig(stage="kpts-ref", batch_size=32, optim=OptimConfig(lr=1e-4), val_every=1000),
}
"""The official recipe per stage (HALO's own lr 1e-4: its paper's rate; Im2Hands does not state it)."""


def _compact(stage: str) -> TrainConfig:
    # One small image encoder (ResNet-18 at half width, 64-channel decoders) trained in init-occ and shared,
    # frozen, by ref-occ and kpts-ref: 3x fewer weights to train and ship, no encoder backward after init-occ,
    # and KptsRef reads cached features. HALO and InitOcc learn with BCE + the per-part loss from a scaled
    # initialisation (docs/TRAINING.md, "The compact preset").
    base = replace(_OFFICIAL[stage], preset="compact", encoder_depth=18, encoder_width=32, encoder_fmap_dim=64,
                   kpts_img_dim=32, val_samples=32, val_points=4096, checkpoint_every=200, val_every=200,
                   threads=0)
    occ = dict(occupancy_loss="bce", part_loss_weight=1.0)
    if stage == "halo":
        return replace(base, batch_size=8, points_per_hand=1024, steps=2400, coord_init_scale=30.0,
                       optim=OptimConfig(lr=3e-3, step_size=800, gamma=0.5), **occ)
    if stage == "init-occ":
        return replace(base, batch_size=8, points_per_hand=1024, steps=900,
                       optim=OptimConfig(lr=3e-4, step_size=400, gamma=0.5), **occ)
    if stage == "ref-occ":
        # the refinement starts as InitOcc (refine_residual) and learns its correction with BCE on the refined
        # logit, on the GT keypoints' bone transforms with anchors on InitOcc's meshes from them
        # (`train anchors --transforms-from gt --name gt`); on the noisy keypoints' transforms (official) the
        # correction it learnt in 200 steps lowered the validation IoU (docs/TRAINING.md, "The compact preset").
        # The contact cue gives it both initial hands at each point: where they overlap it learns which yields.
        # 600 samples: their anchors take ~8 min to precompute on 2 cores; a step takes ~4.3 s idle in float32
        # (the anchors' point transformer), ~2.2 s with --precision bf16 on a CPU with AVX512-BF16
        return replace(base, batch_size=2, points_per_hand=1024, steps=1200, freeze_encoder=True,
                       transforms_from="gt", train_samples=600, refine_residual=True, contact_cue=True,
                       occupancy_loss="bce", optim=OptimConfig(lr=3e-4, weight_decay=1e-5, step_size=800, gamma=0.3))
    return replace(base, batch_size=16, steps=1500, freeze_encoder=True, kpts_hand_centred=True, kpts_linear_path=True,
                   resample_noise=True, kpts_loss="mpjpe", kpts_linear_fit_draws=8,
                   optim=OptimConfig(lr=1e-3, step_size=1000, gamma=0.3))


def _smoke(stage: str) -> TrainConfig:
    base = replace(_OFFICIAL[stage], preset="smoke", encoder_depth=18, batch_size=2, points_per_hand=256,
                   val_every=0, val_samples=0, val_points=2048, checkpoint_every=5, log_every=1,
                   device="cpu", progress=False, threads=1)
    if stage == "halo":   # from scratch the max over parts first collapses to "all outside", then learns
        return replace(base, steps=200, points_per_hand=1024, checkpoint_every=50, optim=OptimConfig(lr=1e-3))
    if stage == "init-occ":
        return replace(base, steps=20, points_per_hand=512, optim=OptimConfig(lr=1e-4))
    if stage == "ref-occ":
        return replace(base, steps=6, points_per_hand=256, val_samples=2, val_points=1024,
                       optim=OptimConfig(lr=1e-4, weight_decay=1e-5))
    return replace(base, steps=20, optim=OptimConfig(lr=1e-3))


PRESETS: dict[str, str] = {
    "official": "the paper's sizes and recipe (ResNet-50; GPU scale)",
    "compact": "one shared half-width ResNet-18, fewer points, faster learning, for 2 CPU threads (docs/TRAINING.md)",
    "smoke": "a few CPU steps on tiny data (CI); still shows learning",
}
"""Preset name -> one-line description."""


def preset(name: str, stage: str) -> TrainConfig:
    """The named preset's config of `stage`."""
    if stage not in STAGES:
        raise ValueError(f"stage: expected one of {STAGES}, got {stage!r}")
    if name == "official":
        return replace(_OFFICIAL[stage], preset="official")
    if name == "compact":
        return _compact(stage)
    if name == "smoke":
        return _smoke(stage)
    raise ValueError(f"--preset: unknown preset {name!r}; choose from {sorted(PRESETS)}")


def config_to_json(config: TrainConfig) -> dict:
    """A config as JSON-ready data (paths as strings)."""
    def plain(v):
        if isinstance(v, Path):
            return str(v)
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        return v
    return plain(dataclasses.asdict(config))


def config_from_json(data: dict) -> TrainConfig:
    """Inverse of :func:`config_to_json`."""
    data = dict(data)
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"train config: unknown field(s) {unknown}")
    data["optim"] = OptimConfig(**data.get("optim", {}))
    for key in ("data", "out"):
        if key in data:
            data[key] = Path(data[key])
    for key in ("init_from", "anchors_dir"):
        if data.get(key) is not None:
            data[key] = Path(data[key])
    return TrainConfig(**data)
