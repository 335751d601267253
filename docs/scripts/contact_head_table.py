"""Print what a RefOcc's contact head learnt: its logit correction over a grid of (this hand's, the other
hand's) frozen InitOcc max part logit (``RefOccConfig.contact_cue``; docs/TRAINING.md).

Run::

    PYTHONPATH=src python docs/scripts/contact_head_table.py RUN/best.pt

A checkpoint of a ref-occ run or the shipped bundle (``src/im2hands/assets/model/im2hands_compact.pt``).
"""

from __future__ import annotations

import argparse
import sys

import torch

from im2hands.models.bundle import read_networks
from im2hands.models.checkpoint import build_model

GRID = (-8.0, -4.0, -2.0, 0.0, 2.0, 4.0, 8.0)
"""Logits tabulated (the head's inputs are clipped to ±8)."""


def load_ref_occ(path: str):
    networks = read_networks(path)   # a checkpoint or a bundle
    if "ref_occ" not in networks:
        sys.exit(f"{path}: no ref_occ network (it holds {sorted(networks)})")
    kind, config, state = networks["ref_occ"]
    if not config.get("contact_cue"):
        sys.exit(f"{path}: this RefOcc has no contact cue (config contact_cue is off)")
    model = build_model(kind, config)
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint")
    args = parser.parse_args()
    head = load_ref_occ(args.checkpoint).contact_head.eval()
    own, other = torch.meshgrid(torch.tensor(GRID), torch.tensor(GRID), indexing="ij")
    with torch.no_grad():
        corr = head(torch.stack([own, other], -1))[..., 0]
    print("logit correction; rows: this hand's InitOcc logit, columns: the other hand's\n")
    print("| own \\ other | " + " | ".join(f"{g:+.0f}" for g in GRID) + " |")
    print("|---" * (len(GRID) + 1) + "|")
    for i, g in enumerate(GRID):
        print(f"| {g:+.0f} | " + " | ".join(f"{float(c):+.2f}" for c in corr[i]) + " |")


if __name__ == "__main__":
    main()
