"""Training speed: steps/s and samples/s of every stage and preset, a same-run baseline, and a profiler breakdown.

For each (preset, stage) it measures, in this process, on the same synthetic data:

- ``project``: :func:`im2hands.train.loop.train` itself (``--stop-after`` steps, step times read back from
  ``metrics.jsonl``: a step's time includes loading its batch; validation and checkpoints are excluded);
- ``baseline``: a straightforward loop over the same networks, batch size and points: a shuffling
  ``DataLoader`` over the same dataset, plain forward + stage loss + backward + ``Adam.step`` (no per-step
  reseeding, skipping, logging or checkpoints).

Figures are medians of the steps after the first (warm-up). The ratio is baseline s/step over project
s/step (> 1: the project loop is faster). The ref-occ stage starts from a freshly initialised init-occ
checkpoint and uses GT-surface anchors (``--anchors gt``: the same tensors as precomputed anchors, read from
the sample), with the penetration pass on, as in the presets.

``--profile STAGE`` instead runs the torch profiler (CPU) over ``--steps`` steps of the compact preset of one
stage and prints (1) the share of each phase of the step (record_function labels: data, encode, decode,
loss, backward, optimizer) and (2) the operators sorted by self CPU time. ``--batches 1 2 4`` with
``--profile ref-occ`` repeats it per batch size at fixed points (the RefOcc batch scaling).

Usage (OMP_WAIT_POLICY=PASSIVE is set here before torch loads):
    PYTHONPATH=src python benchmarks/bm_train.py --data /tmp/syn_train [--presets compact smoke] [--stages halo]
    PYTHONPATH=src python benchmarks/bm_train.py --data /tmp/syn_train --profile ref-occ --batches 1 2 4
Without ``--data`` a small synthetic set is made in a temporary folder (``im2hands synth``).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

from im2hands.data.dataset import HandsDataset  # noqa: E402
from im2hands.models.checkpoint import save_checkpoint  # noqa: E402
from im2hands.models.encoder import ImageEncoderConfig  # noqa: E402
from im2hands.models.init_occ import InitOcc, InitOccConfig  # noqa: E402
from im2hands.train.config import STAGES, preset  # noqa: E402
from im2hands.train.loop import _LossModule, train  # noqa: E402
from im2hands.train.stages import build_network, model_config  # noqa: E402


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def make_data(folder: Path) -> Path:
    cmd = [sys.executable, "-m", "im2hands", "synth", "--out", str(folder), "--split", "train", "val",
           "--num", "16", "2", "--points", "20000"]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return folder


def init_checkpoint(folder: Path, depth: int, width: int = 64, fmap_dim: int = 128) -> Path:
    """A freshly initialised init-occ checkpoint (what the ref-occ and kpts-ref stages start from)."""
    path = folder / f"init_occ_r{depth}_w{width}_f{fmap_dim}.pt"
    if not path.is_file():
        torch.manual_seed(0)
        cfg = InitOccConfig(image_encoder=ImageEncoderConfig(depth=depth, width=width, fmap_dim=fmap_dim))
        save_checkpoint(path, model="init_occ", config=cfg, state_dict=InitOcc(cfg).state_dict())
    return path


def stage_config(name: str, stage: str, data: Path, out: Path, work: Path, **over):
    cfg = preset(name, stage)
    extra = dict(data=data, out=out, val_samples=1, val_points=256, val_every=0, checkpoint_every=0,
                 log_every=1, progress=False)
    init = init_checkpoint(work, cfg.encoder_depth, cfg.encoder_width, cfg.encoder_fmap_dim)
    if stage == "ref-occ":
        extra |= dict(anchors="gt", init_from=init)
    if stage == "kpts-ref" and cfg.freeze_encoder:
        extra |= dict(init_from=init)
    return dataclasses.replace(cfg, **(extra | over))


def project_step_times(cfg, steps: int) -> list[float]:
    """Seconds per step of ``train`` (after the first)."""
    train(dataclasses.replace(cfg, stop_after=steps))
    rows = [json.loads(line) for line in (Path(cfg.out) / "metrics.jsonl").read_text().splitlines()]
    sps = [r["samples_per_s"] for r in rows if "samples_per_s" in r]
    return [cfg.batch_size / s for s in sps[1:]]


def baseline_step_times(cfg, steps: int) -> list[float]:
    """Seconds per step of a straightforward loop over the same network, loss, batch and points."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    from im2hands.train.loop import _init_occ_config_of, initialise
    net_config = model_config(cfg, _init_occ_config_of(cfg))
    model = build_network(cfg, net_config)
    initialise(model, cfg)
    model.train()
    loss_fn = _LossModule(model, cfg, 1)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=cfg.optim.lr,
                           weight_decay=cfg.optim.weight_decay)
    ds = HandsDataset(cfg.data, cfg.train_split, points_per_hand=cfg.points_per_hand, anchors_per_hand=512)
    loader = DataLoader(ds, batch_size=cfg.batch_size, shuffle=True, drop_last=True)
    times = []
    it = iter(loader)
    for _ in range(steps):
        t = time.perf_counter()
        try:
            batch = next(it)
        except StopIteration:
            it = iter(loader)
            batch = next(it)
        opt.zero_grad()
        loss, _ = loss_fn(batch)
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t)
    return times[1:]


def throughput(args, data: Path, work: Path) -> None:
    print(f"# torch {torch.__version__}, {torch.get_num_threads()} threads by default; load average at start "
          f"{load_average()}")
    print("| stage | preset | batch | points/hand | threads | project steps/s | project samples/s | "
          "baseline steps/s | baseline samples/s | ratio | load avg (1/5/15 min) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name in args.presets:
        for stage in args.stages:
            out = work / f"run_{name}_{stage}"
            cfg = stage_config(name, stage, data, out, work)
            steps = args.steps_official if name == "official" else args.steps
            default_threads = torch.get_num_threads()
            proj = statistics.median(project_step_times(cfg, steps))
            base = statistics.median(baseline_step_times(cfg, steps))
            threads = cfg.threads or default_threads
            torch.set_num_threads(default_threads)
            pts = "–" if stage == "kpts-ref" else str(cfg.points_per_hand)
            print(f"| {stage} | {name} | {cfg.batch_size} | {pts} | {threads} | {1 / proj:.3g} | "
                  f"{cfg.batch_size / proj:.3g} | {1 / base:.3g} | {cfg.batch_size / base:.3g} | "
                  f"{base / proj:.2f} | {load_average()} |", flush=True)


# ------------------------------------------------------------------------------------------------ profile

PHASES = ("data", "encode", "decode", "loss", "backward", "optimizer")


def _instrument(stage: str):
    """Wrap the networks' encode / decode in record_function labels (undone by the returned function)."""
    from torch.profiler import record_function

    from im2hands.models import init_occ, kpts_ref, ref_occ
    patched = []

    def wrap(cls, meth, label):
        orig = getattr(cls, meth)

        def inner(*a, **k):
            with record_function(label):
                return orig(*a, **k)
        setattr(cls, meth, inner)
        patched.append((cls, meth, orig))

    if stage == "ref-occ":
        wrap(ref_occ.RefOcc, "encode", "encode")
        wrap(ref_occ.RefOcc, "decode", "decode")
    elif stage == "kpts-ref":
        wrap(kpts_ref.KptsRef, "forward", "encode")
    else:
        wrap(init_occ.InitOcc, "encode", "encode")
        wrap(init_occ.InitOcc, "decode", "decode")

    def undo():
        for cls, meth, orig in patched:
            setattr(cls, meth, orig)
    return undo


def profile(args, data: Path, work: Path) -> None:
    from torch.profiler import ProfilerActivity, record_function
    from torch.profiler import profile as tprofile

    from im2hands.train.data import StepBatches, TrainItems, collate_skipping
    stage = args.profile
    batches = args.batches or [None]
    for b in batches:
        over = {} if b is None else {"batch_size": b}
        if args.points:
            over["points_per_hand"] = args.points
        cfg = stage_config("compact", stage, data, work / "prof", work, **over)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        torch.manual_seed(0)
        from im2hands.train.loop import _init_occ_config_of, initialise
        model = build_network(cfg, model_config(cfg, _init_occ_config_of(cfg)))
        initialise(model, cfg)
        model.train()
        loss_fn = _LossModule(model, cfg, 1)
        opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=cfg.optim.lr)
        items = TrainItems(HandsDataset(cfg.data, cfg.train_split, points_per_hand=cfg.points_per_hand,
                                        anchors_per_hand=512))
        sampler = StepBatches(len(items), cfg.batch_size, rank=0, world_size=1, seed=0, start_step=0,
                              steps=args.steps + 1)

        def step(s: int) -> None:
            with record_function("data"):
                batch = collate_skipping([items[k] for k in sampler.batch(s)]).data
            opt.zero_grad(set_to_none=True)
            loss, _ = loss_fn(batch)
            with record_function("backward"):
                loss.backward()
            with record_function("optimizer"):
                opt.step()

        undo = _instrument(stage)
        try:
            step(0)   # warm-up
            t = time.perf_counter()
            cpu0 = time.process_time()
            with tprofile(activities=[ProfilerActivity.CPU], record_shapes=False) as prof:
                for s in range(1, args.steps + 1):
                    step(s)
            wall = (time.perf_counter() - t) / args.steps
            cpu = (time.process_time() - cpu0) / args.steps
        finally:
            undo()
        ev = {e.key: e for e in prof.key_averages()}
        total = sum(e.self_cpu_time_total for e in ev.values())
        pts = "" if stage == "kpts-ref" else f", {cfg.points_per_hand} points/hand"
        print(f"\n## {stage}, compact, batch {cfg.batch_size}{pts}, "
              f"{torch.get_num_threads()} threads: {wall:.2f} s/step wall (profiled), {cpu:.2f} s CPU/step; "
              f"load average {load_average()}")
        # phases: CPU time inside each label (children included; backward is its own label)
        shares = []
        for label in PHASES:
            e = ev.get(label)
            if e is not None:
                shares.append(f"{label} {e.cpu_time_total / args.steps / 1e6:.3f} s")
        print("phases (CPU time incl. children, per step): " + ", ".join(shares))
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows))
        print(f"(self CPU total {total / args.steps / 1e6:.2f} s per step)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, help="synthetic data folder with train/ and val/ (default: make one)")
    ap.add_argument("--presets", nargs="+", default=["official", "compact", "smoke"])
    ap.add_argument("--stages", nargs="+", default=list(STAGES))
    ap.add_argument("--steps", type=int, default=4, help="steps per measurement (first one is warm-up)")
    ap.add_argument("--steps-official", type=int, default=3)
    ap.add_argument("--profile", choices=STAGES, help="profile this stage of the compact preset instead")
    ap.add_argument("--batches", type=int, nargs="+", help="with --profile: batch sizes to profile")
    ap.add_argument("--points", type=int, help="with --profile: points per hand (default: the preset's)")
    ap.add_argument("--rows", type=int, default=15)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data = args.data or make_data(work / "data")
        if args.profile:
            if args.steps == 4:
                args.steps = 2
            profile(args, data, work)
        else:
            throughput(args, data, work)


if __name__ == "__main__":
    main()
