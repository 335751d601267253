"""The training loop shared by every stage: devices, DDP, exact resume, validation, logs, checkpoints.

``train(config)`` runs one :class:`~im2hands.train.config.TrainConfig`. Under ``torchrun --nproc-per-node N``
(environment ``WORLD_SIZE`` > 1) the same call runs PyTorch DDP: process ``r`` reads the ``r``-th slice of
each global batch (:class:`~im2hands.train.data.StepBatches`), gradients are averaged, and only rank 0
validates and writes files. Backend: NCCL on CUDA, gloo on the CPU.

Exact resume. Nothing random depends on a process's RNG history: step ``s`` reseeds torch (dropout) with
``(seed, s, rank)``, and the data order and point draws are functions of ``(seed, epoch)``. The learning
rate is a pure function of the step. So ``last.pt`` (weights, Adam state, step, best figure, counters) is
the whole state: a run killed at any moment and resumed ends with the same weights as an uninterrupted run.

Checkpoints (``RUN/last.pt``, ``RUN/best.pt``) are the network checkpoint format of
:mod:`im2hands.models.checkpoint` plus a ``training`` entry; written atomically (temporary file + rename),
read with ``torch.load(weights_only=True)``, so loading never runs pickled code; ``im2hands`` commands load
them as networks directly.
"""

from __future__ import annotations

import json
import math
import os
import time
from contextlib import nullcontext
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader

from im2hands.data.dataset import HandsDataset
from im2hands.models.checkpoint import (Checkpoint, check_state_dict, config_from_dict,
                                        expected_shapes, load_checkpoint, save_checkpoint)
from im2hands.models.init_occ import InitOccConfig
from im2hands.models.part_decoder import HIDDEN
from im2hands.train.config import TrainConfig, config_from_json, config_to_json
from im2hands.train.data import StepBatches, TrainItems, collate_skipping, to_device
from im2hands.train.stages import (MODEL_KIND, STAGE_SPECS, build_network, fit_linear_path, model_config,
                                   set_training_mode, summarise_validation)

RESUME_FREE = ("resume", "progress", "stop_after", "steps", "val_every", "checkpoint_every", "log_every",
               "num_workers", "threads", "device")
"""Fields a resumed run may change (they do not change the result of the steps)."""


@dataclass(frozen=True)
class TrainResult:
    """What a run ended with."""

    step: int
    """Steps done."""
    last: Path
    """The last checkpoint."""
    best: Path | None
    """The best checkpoint by the stage's validation figure (None without validation)."""
    validation: dict
    """The last validation figures (empty if none ran)."""
    history: list
    """Every validation: dicts with ``step`` and the figures (rank 0)."""
    skipped: int
    """Samples skipped because their file could not be read."""
    seconds: float
    """Wall time of the steps in this process (validation excluded)."""
    samples_per_s: float
    """Training samples per second of this process's steps, all processes together."""


# ------------------------------------------------------------------------------------------------ helpers


def _dist_info() -> tuple[int, int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    return rank, world, local


def _device(config: TrainConfig, local_rank: int) -> torch.device:
    if config.device == "cuda" or (config.device == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise ValueError("device: 'cuda' asked but CUDA is not available; use --device cpu or auto")
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def _autocast(config: TrainConfig, device: torch.device):
    bf16 = config.precision == "bf16" or (config.precision == "auto" and device.type == "cuda")
    return torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else nullcontext()


def learning_rate(config: TrainConfig, step: int) -> float:
    """The learning rate of step `step` (0-based): warm-up, then StepLR, a pure function of the step."""
    o = config.optim
    lr = o.lr
    if o.warmup_steps and step < o.warmup_steps:
        lr *= (step + 1) / o.warmup_steps
    if o.step_size:
        lr *= o.gamma ** (step // o.step_size)
    return lr


def step_seed(seed: int, step: int, rank: int) -> int:
    return int(np.random.SeedSequence((seed, step, rank, 7)).generate_state(1, dtype=np.uint32)[0])


def _no_dropout(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.Dropout):
            m.p = 0.0


def _check_init(ckpt: Checkpoint, path: Path, expected_kind: str, what: str) -> None:
    if ckpt.kind != expected_kind:
        raise ValueError(f"init_from: {path} is a {ckpt.kind} checkpoint; the {what} needs a {expected_kind} "
                         "checkpoint")


def training_config(payload: dict) -> TrainConfig | None:
    """The run config a training checkpoint (a ``torch.load``-ed ``last.pt`` / ``best.pt``) was written with;
    None for a checkpoint without training state (a converted or network-only file, a bundle)."""
    training = payload.get("training")
    if not training or "config_json" not in training:
        return None
    return config_from_json(json.loads(training["config_json"]))


def _halo_trained_its_encoder(path: Path) -> bool:
    """Whether the halo training checkpoint at `path` trained its image encoder (``image_loss_weight`` > 0)."""
    run = training_config(torch.load(path, map_location="cpu", weights_only=True))
    return run is not None and run.image_loss_weight > 0


def initialise(model: nn.Module, config: TrainConfig) -> None:
    """Load the stage's starting weights (``config.init_from``) into a fresh network."""
    if config.init_from is None:
        if config.freeze_encoder and config.stage in ("ref-occ", "kpts-ref"):
            raise ValueError("freeze_encoder: needs --init-from, the init-occ checkpoint whose image encoder to keep")
        return
    path = Path(config.init_from)
    ckpt = load_checkpoint(path)
    src_stage = ckpt.config.get("query_image_attention", True)
    if config.stage == "init-occ":
        _check_init(ckpt, path, "init_occ", "init-occ stage (decoders from HALO)")
        if src_stage:
            raise ValueError(f"init_from: {path} is an init-occ checkpoint; init-occ starts from a halo one")
        taken = ("left_decoder.", "right_decoder.")
        if _halo_trained_its_encoder(path):   # image_loss_weight > 0 in the halo run: start from its encoder
            taken += ("image_encoder.",)
        state = {k: v for k, v in ckpt.state_dict.items() if k.startswith(taken)}
        own = model.state_dict()
        check_state_dict(state, {k: tuple(own[k].shape) for k in state},
                         f"{path} (HALO {'decoders and image encoder' if len(taken) > 2 else 'decoders'})")
        model.load_state_dict(state, strict=False)
        # the image columns of layer 2 start at zero, so the untrained attention cannot perturb HALO's
        # occupancy: InitOcc starts as the HALO model and learns to use the image
        with torch.no_grad():
            for name, p in model.named_parameters():
                if name.startswith(("left_decoder.", "right_decoder.")) and name.endswith("_2.weight"):
                    p[:, HIDDEN:] = 0
    elif config.stage == "ref-occ":
        _check_init(ckpt, path, "init_occ", "ref-occ stage (the frozen InitOcc)")
        if not src_stage:
            raise ValueError(f"init_from: {path} is a halo checkpoint; ref-occ needs an init-occ one")
        own = expected_shapes(model.init_occ)
        check_state_dict(ckpt.state_dict, own, f"{path} (frozen InitOcc)")
        model.init_occ.load_state_dict(ckpt.state_dict)
        # official: init_occ.pt also initialises RefOcc's own image encoder and image_final_layer by name
        mine = model.state_dict()
        shared = {k: v for k, v in ckpt.state_dict.items()
                  if k.startswith(("image_encoder.", "image_final_layer.")) and k in mine
                  and tuple(mine[k].shape) == tuple(v.shape)}
        model.load_state_dict(shared, strict=False)
    elif config.stage == "kpts-ref":
        _check_init(ckpt, path, "init_occ", "kpts-ref stage (its image encoder)")
        if not src_stage:
            raise ValueError(f"init_from: {path} is a halo checkpoint (no trained image encoder); kpts-ref "
                             "takes an init-occ one")
        state = {k[len("image_encoder."):]: v for k, v in ckpt.state_dict.items() if k.startswith("image_encoder.")}
        check_state_dict(state, expected_shapes(model.image_encoder), f"{path} (image encoder)")
        model.image_encoder.load_state_dict(state)
    elif config.stage == "halo":
        # a HALO continued under a new schedule: e.g. the baseline given InitOcc's extra steps without the image
        _check_init(ckpt, path, "init_occ", "halo stage (a HALO to continue)")
        if src_stage:
            raise ValueError(f"init_from: {path} is an init-occ checkpoint; the halo stage continues a halo one")
        check_state_dict(ckpt.state_dict, expected_shapes(model), f"{path} (HALO)")
        model.load_state_dict(ckpt.state_dict)
    else:
        raise ValueError(f"init_from: the {config.stage} stage starts from scratch; drop --init-from")


def _init_occ_config_of(config: TrainConfig) -> InitOccConfig | None:
    if config.stage != "ref-occ" or config.init_from is None:
        return None
    ckpt = load_checkpoint(config.init_from)
    if ckpt.kind != "init_occ":
        raise ValueError(f"init_from: {config.init_from} is a {ckpt.kind} checkpoint; ref-occ needs init_occ")
    return config_from_dict(InitOccConfig, ckpt.config)


def _check_resume(saved: TrainConfig, config: TrainConfig, path: Path) -> None:
    diff = [f.name for f in fields(TrainConfig)
            if f.name not in RESUME_FREE and getattr(saved, f.name) != getattr(config, f.name)]
    if diff:
        detail = ", ".join(f"{k}: {getattr(saved, k)!r} vs {getattr(config, k)!r}" for k in diff)
        raise ValueError(f"resume: {path} was written by a run with other settings ({detail}); resume with the "
                         "same stage, preset and settings, or start a new --out")


def _anchors_folder(config: TrainConfig, split: str) -> Path | None:
    if config.stage != "ref-occ" or config.anchors == "gt":
        return None
    base = Path(config.anchors_dir) if config.anchors_dir is not None else Path(config.data) / "anchors" / "default"
    folder = base / split
    if not folder.is_dir():
        raise ValueError(f"anchors_dir: no anchors for split {split!r} in {base}; precompute them with "
                         f"`im2hands train anchors --checkpoint INIT_OCC.pt --data {config.data}` or use "
                         "--anchors gt")
    return folder


def validation_items(config: TrainConfig, limit: int | None = None) -> TrainItems:
    """The run's validation items: the first ``limit`` (default ``config.val_samples``; 0: all) samples of the
    validation split, with the run's seeded point draws and (ref-occ) anchors."""
    return TrainItems(_dataset(config, config.val_split, seed=config.seed, points=config.val_points,
                               limit=config.val_samples if limit is None else limit),
                      _anchors_folder(config, config.val_split))


def _dataset(config: TrainConfig, split: str, *, seed: int | None, points: int, limit: int = 0) -> HandsDataset:
    ds = HandsDataset(config.data, split, points_per_hand=points, anchors_per_hand=512,
                      transforms_from=config.transforms_from,
                      points_frame=config.points_frame, seed=seed)
    if limit:
        ds.files = ds.files[:limit]
    return ds


# ------------------------------------------------------------------------------------------------ the loop


class _LossModule(nn.Module):
    """The network and its stage loss as one module, so that DDP sees one forward per step."""

    def __init__(self, model: nn.Module, config: TrainConfig, world: int):
        super().__init__()
        self.model = model
        self.config = config
        self.world = world
        self.loss = STAGE_SPECS[config.stage].loss

    def forward(self, batch: dict):
        out = self.loss(self.model, batch, self.config, self.world)
        return out.total, out.parts


def validate(model: nn.Module, config: TrainConfig, items: TrainItems, device: torch.device) -> dict[str, float]:
    """The stage's validation figures over `items` (the split's first ``config.val_samples`` samples: the
    loop builds them so)."""
    spec = STAGE_SPECS[config.stage]
    n = len(items)
    was_training = model.training
    set_training_mode(model, config, False)
    per: dict[str, list] = {}
    bs = max(1, min(config.batch_size, 8))
    try:
        for lo in range(0, n, bs):
            raw = [items.item(i, 0) for i in range(lo, min(n, lo + bs))]
            batch = collate_skipping(raw)
            if batch.data is None:
                continue
            for k, v in spec.validate(model, to_device(batch.data, device), config, True).items():
                per.setdefault(k, []).append(v.cpu())
    finally:
        set_training_mode(model, config, was_training)
    if not per:
        raise ValueError(f"val_split: no readable validation sample in {items.dataset.root / items.dataset.split}")
    return summarise_validation(per)


def _save(path: Path, model: nn.Module, config: TrainConfig, net_config, optimizer, step: int, best: float | None,
          skipped: int, history: list) -> None:
    training = {"config_json": json.dumps(config_to_json(config)), "step": step, "optimizer": optimizer.state_dict(),
                "best": best if best is not None else float("nan"), "skipped": skipped,
                "history_json": json.dumps(history)}
    save_checkpoint(path, model=MODEL_KIND[config.stage], config=net_config, state_dict=model.state_dict(),
                    training=training)


def train(config: TrainConfig) -> TrainResult:
    """Run (or resume) one training run; see the module docstring."""
    rank, world, local_rank = _dist_info()
    distributed = world > 1
    device = _device(config, local_rank)
    if distributed and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if config.threads:
        torch.set_num_threads(config.threads)
    out = Path(config.out)
    spec = STAGE_SPECS[config.stage]
    last_path, best_path = out / "last.pt", out / "best.pt"

    # ---- data (errors name the folder before anything is written)
    train_items = TrainItems(_dataset(config, config.train_split, seed=None, points=config.points_per_hand,
                                      limit=config.train_samples), _anchors_folder(config, config.train_split),
                             resample_noise=config.resample_noise)
    val_items = validation_items(config)

    # ---- network, optimiser, state
    torch.manual_seed(config.seed)
    net_config = model_config(config, _init_occ_config_of(config))
    model = build_network(config, net_config)
    start, best, skipped, history = 0, None, 0, []
    optimizer_state = None
    if config.resume:
        if not last_path.is_file():
            raise ValueError(f"resume: no checkpoint {last_path} to resume from (drop --resume to start)")
        payload = torch.load(last_path, map_location="cpu", weights_only=True)
        saved = training_config(payload)
        if saved is None:
            raise ValueError(f"resume: {last_path} holds no training state")
        tr = payload["training"]
        _check_resume(saved, config, last_path)
        check_state_dict(payload["state_dict"], expected_shapes(model), str(last_path))
        model.load_state_dict(payload["state_dict"])
        start, skipped = int(tr["step"]), int(tr["skipped"])
        best = None if math.isnan(tr["best"]) else float(tr["best"])
        history = json.loads(tr["history_json"])
        optimizer_state = tr["optimizer"]
    else:
        initialise(model, config)
        if config.stage == "kpts-ref" and config.kpts_linear_fit_draws:
            fit = fit_linear_path(model, train_items.dataset.files, draws=config.kpts_linear_fit_draws,
                                  resample_noise=config.resample_noise, seed=config.seed)
            if rank == 0:
                print("kpts-ref linear path fitted: " + ", ".join(f"{k} {v:.2f}" for k, v in fit.items()),
                      flush=True)
    if config.disable_dropout:
        _no_dropout(model)
    model.to(device)
    set_training_mode(model, config, True)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=config.optim.lr, weight_decay=config.optim.weight_decay)
    if optimizer_state is not None:
        optimizer.load_state_dict(optimizer_state)

    loss_module = _LossModule(model, config, world)
    runner: nn.Module = loss_module
    if distributed:
        runner = nn.parallel.DistributedDataParallel(
            loss_module, device_ids=[local_rank] if device.type == "cuda" else None, find_unused_parameters=True)

    # ---- outputs (rank 0)
    writer = None
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(config_to_json(config), indent=1))
        from torch.utils.tensorboard import SummaryWriter
        writer = SummaryWriter(str(out / "tb"), purge_step=start if config.resume else None)

    sampler = StepBatches(len(train_items), config.batch_size, rank=rank, world_size=world, seed=config.seed,
                          start_step=start, steps=config.steps)
    loader = DataLoader(train_items, batch_sampler=sampler, collate_fn=collate_skipping,
                        num_workers=config.num_workers, persistent_workers=False)
    bar = None
    if rank == 0 and config.progress:
        from tqdm import tqdm
        bar = tqdm(total=config.steps, initial=start, desc=f"train {config.stage}", unit="step", dynamic_ncols=True)

    validation: dict = history[-1] if history else {}

    def run_validation(step: int) -> None:
        nonlocal best, validation
        if rank == 0:
            figures = validate(model, config, val_items, device)
            figures = {"step": step, **figures}
            history.append(figures)
            validation = figures
            for k, v in figures.items():
                if k != "step":
                    writer.add_scalar(f"val/{k}", v, step)
            value = figures[spec.metric]
            if best is None or (value > best if spec.higher_is_better else value < best):
                best = value
                _save(best_path, model, config, net_config, optimizer, step, best, skipped, history)
            with open(out / "metrics.jsonl", "a") as f:
                f.write(json.dumps({"val": figures}) + "\n")
        if distributed:
            dist.barrier()

    if start == 0 and rank == 0:
        run_validation(0)   # the untrained model's figures: the baseline learning is measured against
    elif start == 0 and distributed:
        dist.barrier()

    step = start
    t_steps, n_samples = 0.0, 0
    ran = 0
    metrics_file = open(out / "metrics.jsonl", "a") if rank == 0 else None
    try:
        t0 = time.perf_counter()   # step time includes loading the batch; validation and checkpoints excluded
        for batch in loader:
            lr = learning_rate(config, step)
            for g in optimizer.param_groups:
                g["lr"] = lr
            torch.manual_seed(step_seed(config.seed, step, rank))
            have = torch.tensor([0.0 if batch.data is None else 1.0])
            if distributed:
                dist.all_reduce(have, op=dist.ReduceOp.MIN)
            n_skip = torch.tensor([float(len(batch.skipped))])
            if distributed:
                dist.all_reduce(n_skip)
            skipped += int(n_skip.item())
            if rank == 0:
                for s in batch.skipped:
                    msg = f"skipped unreadable sample {s.path}: {s.error}"
                    (bar.write if bar else print)(msg)
            parts = {}
            loss_value = float("nan")
            if have.item() > 0:
                data = to_device(batch.data, device)
                optimizer.zero_grad(set_to_none=True)
                with _autocast(config, device):
                    loss, parts = runner(data)
                loss.backward()
                if config.optim.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(params, config.optim.grad_clip)
                optimizer.step()
                loss_value = float(loss.detach())
            step += 1
            ran += 1
            dt = time.perf_counter() - t0
            t_steps += dt
            n_samples += config.batch_size
            if rank == 0:
                if bar is not None:
                    bar.set_postfix(loss=f"{loss_value:.4g}", sps=f"{n_samples / max(t_steps, 1e-9):.2f}")
                    bar.update(1)
                if config.log_every and step % config.log_every == 0:
                    writer.add_scalar("train/loss", loss_value, step)
                    for k, v in parts.items():
                        writer.add_scalar(f"train/{k}", float(v.detach()), step)
                    writer.add_scalar("train/lr", lr, step)
                    writer.add_scalar("train/samples_per_s", config.batch_size / max(dt, 1e-9), step)
                    writer.add_scalar("train/skipped", skipped, step)
                    metrics_file.write(json.dumps({"step": step, "loss": loss_value, "lr": lr,
                                                   "samples_per_s": config.batch_size / max(dt, 1e-9),
                                                   **{k: float(v.detach()) for k, v in parts.items()}}) + "\n")
                    metrics_file.flush()
            final = step == config.steps
            stopping = bool(config.stop_after) and ran >= config.stop_after
            if (config.val_every and step % config.val_every == 0) or final:
                run_validation(step)
            if rank == 0 and (final or stopping or (config.checkpoint_every and step % config.checkpoint_every == 0)):
                _save(last_path, model, config, net_config, optimizer, step, best, skipped, history)
            if stopping:
                break
            t0 = time.perf_counter()
    finally:
        if bar is not None:
            bar.close()
        if metrics_file is not None:
            metrics_file.close()
        if writer is not None:
            writer.close()
    if distributed:
        dist.barrier()
    if start == step and rank == 0 and not last_path.is_file():
        _save(last_path, model, config, net_config, optimizer, step, best, skipped, history)
    return TrainResult(step=step, last=last_path, best=best_path if best_path.is_file() else None,
                       validation=validation, history=history, skipped=skipped, seconds=t_steps,
                       samples_per_s=n_samples / t_steps if t_steps > 0 else 0.0)
