"""How fast the compact image encoder learns the 2D labels alone (``train.losses.image_supervision``: hand
masks + joint heat maps), without any occupancy training: the learning curve a 2D pretraining stage would
follow on this data (docs/TRAINING.md, "Does InitOcc read its image?").

Run::

    PYTHONPATH=src python docs/scripts/encoder_2d_curve.py data/synth --minutes 25 [--lr 1e-3] [--threads 2]
    PYTHONPATH=src python docs/scripts/encoder_2d_curve.py data/synth --references

Adam on the compact encoder (ResNet-18 at half width, 64-channel decoders), batches of 8 training samples
drawn with a fixed seed; prints the mean mask BCE and heat-map loss of every 100 steps and, at the end, the
same on the first 32 validation samples. ``--references`` prints what fixed predictions score on those
samples instead: each hand's mean share everywhere, the union of both hands in both channels (halved),
the true masks at 4 x 4 / 8 x 8 / 16 x 16 upsampled (an all-zero heat map scores 1.0 by construction).
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.utils.data import default_collate

from im2hands.data.dataset import HandsDataset
from im2hands.models.encoder import ImageEncoder, ImageEncoderConfig
from im2hands.train.stages import image_loss


def losses(encoder: ImageEncoder, batch: dict):
    return image_loss(encoder(batch["image"]), batch)


def references(val: HandsDataset) -> None:
    """Mask BCE of fixed predictions on the first 32 validation samples."""
    import torch.nn.functional as F

    from im2hands.train.losses import hand_mask_targets

    target = hand_mask_targets(default_collate([val[i] for i in range(32)])["mask"], 64)
    bce = lambda p: F.binary_cross_entropy(p.clamp(1e-4, 1 - 1e-4), target).item()  # noqa: E731
    print(f"mean share everywhere: {bce(target.mean((0, 2, 3), keepdim=True).expand_as(target)):.3f}")
    print(f"union of both hands, halved, in both channels: {bce((target.sum(1, keepdim=True) / 2).expand_as(target)):.3f}")
    for r in (4, 8, 16):
        coarse = F.interpolate(F.adaptive_avg_pool2d(target, r), size=64, mode="bilinear", align_corners=True)
        print(f"true masks at {r} x {r}, upsampled: {bce(coarse):.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data")
    parser.add_argument("--minutes", type=float, default=25.0)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--references", action="store_true", help="print fixed predictions' scores and stop")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    train = HandsDataset(args.data, "train", points_per_hand=1)
    val = HandsDataset(args.data, "val", points_per_hand=1)
    if args.references:
        references(val)
        return
    encoder = ImageEncoder(ImageEncoderConfig(depth=18, width=32, fmap_dim=64))
    opt = torch.optim.Adam(encoder.parameters(), lr=args.lr)
    order = torch.Generator().manual_seed(0)
    start, step, window = time.time(), 0, []
    print("| step | minutes | mask BCE | heat-map loss |\n|---|---|---|---|", flush=True)
    while time.time() - start < 60 * args.minutes:
        idx = torch.randint(0, len(train), (args.batch_size,), generator=order).tolist()
        sup = losses(encoder, default_collate([train[i] for i in idx]))
        opt.zero_grad()
        sup.total.backward()
        opt.step()
        step += 1
        window.append((sup.mask.item(), sup.heatmap.item()))
        if step % 100 == 0:
            m = torch.tensor(window).mean(0)
            print(f"| {step} | {(time.time() - start) / 60:.1f} | {m[0]:.3f} | {m[1]:.3f} |", flush=True)
            window = []
    encoder.eval()
    with torch.no_grad():
        sups = [losses(encoder, default_collate([val[i] for i in range(lo, lo + 8)])) for lo in range(0, 32, 8)]
    print(f"validation (32 samples) after {step} steps: mask BCE {sum(s.mask.item() for s in sups) / 4:.3f}, "
          f"heat-map loss {sum(s.heatmap.item() for s in sups) / 4:.3f}")


if __name__ == "__main__":
    main()
