"""Validate a training checkpoint again with the current validation code (its own run's settings: data,
validation samples and points, threshold rule), e.g. a run validated before a figure was added.

Run::

    PYTHONPATH=src python docs/scripts/validate_checkpoint.py RUN/last.pt [--threads 1]

Prints the checkpoint's step and the stage's validation figures (for ref-occ: IoU, the frozen InitOcc's IoU,
``pen_share``, ``init_pen_share``). Reads the data folder recorded in the checkpoint's config.
"""

from __future__ import annotations

import argparse

import torch

from im2hands.models.checkpoint import build_model
from im2hands.train import loop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    payload = torch.load(args.checkpoint, map_location="cpu", weights_only=True)
    config = loop.training_config(payload)
    if config is None:
        raise SystemExit(f"{args.checkpoint}: no training state (a network-only checkpoint or a bundle)")
    model = build_model(payload["model"], payload["config"])
    model.load_state_dict(payload["state_dict"])
    figures = loop.validate(model, config, loop.validation_items(config), torch.device("cpu"))
    print(f"{args.checkpoint}: step {payload['training']['step']}")
    for k, v in figures.items():
        print(f"  {k}: {v:.6g}")


if __name__ == "__main__":
    main()
