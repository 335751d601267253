"""Does an InitOcc read its image? Validation IoU with each sample's own image, with another sample's image
(the batch rolled by one) and with a blank (all-zero) image; everything else (keypoints, points) unchanged.

Run::

    PYTHONPATH=src python docs/scripts/image_reliance.py RUN/best.pt [RUN2/best.pt ...] [--samples 64]
        [--keypoints run|gt|noisy]

An init-occ (or halo) training checkpoint; its run's data folder, validation split and points. ``--keypoints``
takes the bone transforms from the run's setting (default), the GT keypoints, or the noisy ones (with the
points moved into the noisy keypoints' frame: ``points_frame=input``). A network that ignores the image scores
the same in all three columns (docs/TRAINING.md, "Does InitOcc read its image?").
"""

from __future__ import annotations

import argparse
from dataclasses import replace

import torch

from im2hands.models.checkpoint import build_model
from im2hands.train import loop, stages
from im2hands.train.data import collate_skipping

IMAGES = ("own", "another sample's", "blank")


def reliance(path: str, samples: int, keypoints: str = "run", batch_size: int = 8) -> dict[str, float]:
    payload = torch.load(path, map_location="cpu", weights_only=True)
    config = loop.training_config(payload)
    if config is None:
        raise SystemExit(f"{path}: no training state (a network-only checkpoint or a bundle)")
    if keypoints != "run":
        config = replace(config, transforms_from=keypoints, points_frame="input" if keypoints == "noisy" else "gt")
    if config.stage not in ("halo", "init-occ"):
        raise SystemExit(f"{path}: a {config.stage} checkpoint; this compares InitOcc (or HALO) runs")
    model = build_model(payload["model"], payload["config"])
    model.load_state_dict(payload["state_dict"])
    model.eval()
    items = loop.validation_items(config, limit=samples)
    ious: dict[str, list[torch.Tensor]] = {k: [] for k in IMAGES}
    for lo in range(0, len(items), batch_size):
        batch = collate_skipping([items.item(i, 0) for i in range(lo, min(len(items), lo + batch_size))]).data
        for kind in IMAGES:
            image = batch["image"]
            image = image if kind == "own" else image.roll(1, 0) if kind == IMAGES[1] else torch.zeros_like(image)
            figures = stages.validate_occupancy(model, batch | {"image": image}, config, False)
            ious[kind].append(torch.cat([figures["iou_left"], figures["iou_right"]]))
    return {k: torch.cat(v).mean().item() for k, v in ious.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoints", nargs="+")
    parser.add_argument("--samples", type=int, default=64, help="validation samples (the split's first)")
    parser.add_argument("--keypoints", choices=("run", "gt", "noisy"), default="run",
                        help="bone transforms from the run's setting, the GT or the noisy keypoints")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print("| checkpoint | IoU, own image | another sample's image | blank image |")
    print("|---|---|---|---|")
    for path in args.checkpoints:
        r = reliance(path, args.samples, args.keypoints)
        print(f"| {path} | {r['own']:.4f} | {r[IMAGES[1]]:.4f} | {r['blank']:.4f} |")


if __name__ == "__main__":
    main()
