"""Training losses of the occupancy networks (official recipe: ``reference/official-im2hands.md`` §5).

- Occupancy: mean squared error between predicted occupancy *probabilities* and binary labels, per hand,
  summed over the two hands (``torch.nn.MSELoss`` with its default mean, as officially).
- Part labels (optional, ``part_loss_weight``): each inside point is given to the bone nearest to it (the
  palm for the wrist-to-MCP segments, else the phalanx it lies along), and each part's logit is trained with
  binary cross-entropy to be inside exactly where its bone's labels are. This is NASA's auxiliary
  part-occupancy loss (Deng et al. 2020, skinning weights as part labels) with the skeleton instead of
  skinning weights. The max over parts alone sends gradient to one part per point, so from scratch it
  learns slowly; with every part supervised the decoders learn their bone's shape at once.
- Penetration (RefOcc stage): ``0.001 * Σ_{b,n} (o_L(Q_L)·o_R(Q_L) + o_R(Q_R)·o_L(Q_R))`` where ``o_R(Q_L)`` is
  the right network's refined occupancy at the left hand's query points (``RefOccOutput.pen_right``). The
  official code takes a **sum** over batch rows and points (not a mean), so its weight relative to the MSE
  grows with the batch size and the number of points; we keep the sum to reproduce the recipe.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from im2hands._checks import check_shape, check_tensor
from im2hands.hand import skeleton

PEN_WEIGHT = 0.001
"""Official weight of the penetration term."""


def occupancy_mse(occupancy: Tensor, target: Tensor, name: str = "occupancy") -> Tensor:
    """Mean squared error between occupancy probabilities (B, N) and labels (B, N) in {0, 1} (or [0, 1])."""
    check_tensor(occupancy, name)
    check_tensor(target, f"{name} target")
    if occupancy.shape != target.shape:
        raise ValueError(f"{name} and its target: mismatched shapes {tuple(occupancy.shape)} vs "
                         f"{tuple(target.shape)}")
    return torch.mean((occupancy - target.to(occupancy.dtype)) ** 2)


def penetration_loss(occ_left: Tensor, occ_right: Tensor, pen_left: Tensor, pen_right: Tensor, *,
                     weight: float = PEN_WEIGHT) -> Tensor:
    """Official penetration term: ``weight * Σ(occ_left·pen_right + occ_right·pen_left)`` (a sum, not a mean).

    Args:
        occ_left: (B, N) left network at the left points, o_L(Q_L).
        occ_right: (B, N) right network at the right points, o_R(Q_R).
        pen_left: (B, N) left network at the right points, o_L(Q_R).
        pen_right: (B, N) right network at the left points, o_R(Q_L).
        weight: factor of the sum (official 0.001).
    Returns:
        () scalar. Both hands need the same N, as officially (the two products are added elementwise).
    """
    sizes = check_shape(occ_left, "B N", "occ_left")
    for name, t in (("occ_right", occ_right), ("pen_left", pen_left), ("pen_right", pen_right)):
        other = check_shape(t, "B N", name)
        if other != sizes:
            raise ValueError(f"occ_left and {name}: mismatched shapes {tuple(occ_left.shape)} vs {tuple(t.shape)}"
                             "; all four occupancies must be (B, N) with the same N")
    return weight * (occ_left * pen_right + occ_right * pen_left).sum()


def _part_segments() -> tuple[list[int], list[int], list[int]]:
    """(start joint, end joint, part) of the segments that label parts; joints in the internal order.

    Part b (HALO's bone order, as ``InitOccOutput.part_logits``) is the palm for b = 0 (the five
    wrist-to-MCP segments) and for b >= 1 the phalanx from HALO joint b to the next joint of its finger.
    """
    inner = skeleton.INTERNAL
    start, end, part = [], [], []
    for f in skeleton.FINGERS:
        start.append(inner.index("wrist"))
        end.append(inner.index(f"{f}1"))
        part.append(0)
    for b in range(1, 16):
        name = skeleton.HALO[b]
        finger, level = name[:-1], int(name[-1])
        start.append(inner.index(name))
        end.append(inner.index(f"{finger}{level + 1}"))
        part.append(b)
    return start, end, part


PART_SEGMENTS = _part_segments()
"""(start, end, part) index lists of the 20 labelling segments (internal joint order, HALO part order)."""


def nearest_part(points_cam: Tensor, joints: Tensor) -> Tensor:
    """Index of the part whose bone segment is nearest to each point.

    Args:
        points_cam: (B, N, 3) points, camera frame, metres.
        joints: (B, 21, 3) the hand's joints, internal order, same frame.
    Returns:
        (B, N) int64 part index in 0..15 (HALO bone order).
    """
    start, end, part = PART_SEGMENTS
    a = joints[:, start].to(points_cam.dtype)               # (B, S, 3)
    d = joints[:, end].to(points_cam.dtype) - a
    rel = points_cam[:, :, None] - a[:, None]               # (B, N, S, 3)
    t = ((rel * d[:, None]).sum(-1) / (d * d).sum(-1).clamp(min=1e-12)[:, None]).clamp(0, 1)
    dist = (rel - t[..., None] * d[:, None]).square().sum(-1)
    seg = dist.argmin(-1)
    return torch.as_tensor(part, device=points_cam.device)[seg]


def part_bce(part_logits: Tensor, occupancy: Tensor, parts: Tensor) -> Tensor:
    """Mean binary cross-entropy of every part's logit against "inside and nearest to this part".

    Args:
        part_logits: (B, N, P) per-part logits.
        occupancy: (B, N) labels in {0, 1}.
        parts: (B, N) int64 nearest part of each point (:func:`nearest_part`).
    """
    check_tensor(part_logits, "part_logits")
    target = F.one_hot(parts, part_logits.shape[-1]).to(part_logits.dtype) * occupancy[..., None].to(part_logits.dtype)
    return F.binary_cross_entropy_with_logits(part_logits, target)


def occupancy_bce(part_logits: Tensor, occupancy: Tensor) -> Tensor:
    """Binary cross-entropy of the occupancy (the sigmoid of the max part logit) against labels (B, N)."""
    return F.binary_cross_entropy_with_logits(part_logits.max(-1).values, occupancy.to(part_logits.dtype))


@dataclass(frozen=True)
class RefOccLoss:
    """The RefOcc training loss and its parts (scalars)."""

    total: Tensor
    """``occupancy + penetration``."""
    occupancy: Tensor
    """``MSE_L + MSE_R`` (or the two BCEs)."""
    penetration: Tensor
    """The weighted penetration term (zero when the output has no pen pass)."""


def ref_occ_loss(output, target_left: Tensor, target_right: Tensor, *, pen_weight: float = PEN_WEIGHT,
                 occupancy_loss: str = "mse") -> RefOccLoss:
    """Official RefOcc loss from a :class:`~im2hands.models.ref_occ.RefOccOutput` (decoded with ``pen=True``).

    Args:
        output: the model output; ``pen_*`` must hold the pen pass unless `pen_weight` is 0.
        target_left, target_right: (B, N) occupancy labels of the left / right query points.
        occupancy_loss: ``"mse"`` on the refined probabilities (official) or ``"bce"``, binary cross-entropy
            on the refined logits; summed over the two hands either way.
    """
    if occupancy_loss == "mse":
        occ = (occupancy_mse(output.left.occupancy, target_left, "left occupancy")
               + occupancy_mse(output.right.occupancy, target_right, "right occupancy"))
    elif occupancy_loss == "bce":
        for name, out, target in (("left", output.left, target_left), ("right", output.right, target_right)):
            if tuple(out.logit.shape) != tuple(target.shape):
                raise ValueError(f"{name} occupancy: prediction {tuple(out.logit.shape)} and target "
                                 f"{tuple(target.shape)} differ in shape")
        occ = sum(F.binary_cross_entropy_with_logits(out.logit, target.to(out.logit.dtype))
                  for out, target in ((output.left, target_left), (output.right, target_right)))
    else:
        raise ValueError(f"occupancy_loss: expected 'mse' or 'bce', got {occupancy_loss!r}")
    if pen_weight == 0:
        pen = occ.new_zeros(())
    else:
        if output.pen_left.occupancy.shape[1] == 0 and output.left.occupancy.shape[1] > 0:
            raise ValueError("output: no penetration pass; decode with pen=True or set pen_weight=0")
        pen = penetration_loss(output.left.occupancy, output.right.occupancy, output.pen_left.occupancy,
                               output.pen_right.occupancy, weight=pen_weight)
    return RefOccLoss(total=occ + pen, occupancy=occ, penetration=pen)


# ------------------------------------------------------------------------------ image supervision

HEATMAP_SIGMA = 2.0
"""Standard deviation of a joint's target heat map, in heat-map cells (4 image pixels at the 256 x 256 crop)."""


def hand_mask_targets(mask: Tensor, size: int) -> Tensor:
    """Each hand's share of every heat-map cell.

    Args:
        mask: (B, H, W) integer labels of the visible hand per pixel (0 background, 1 right, 2 left: the
            samples' ``mask``); H and W multiples of ``size``.
        size: side of the target grid (the encoder's mask resolution, H / 4).
    Returns:
        (B, 2, size, size) float32 in [0, 1], channel i the share of hand ``skeleton.SIDES[i]``
        (right, left) in the cell.
    """
    check_tensor(mask, "mask")
    b, h, w = check_shape(mask, "B H W", "mask").values()
    if h % size or w % size:
        raise ValueError(f"mask: {h}x{w} is not a multiple of the target grid {size}")
    onehot = torch.stack([mask == i + 1 for i in range(len(skeleton.SIDES))], dim=1).float()
    return F.adaptive_avg_pool2d(onehot, size)


def joint_heatmaps(joints_px: Tensor, size: int, stride: float, sigma: float = HEATMAP_SIGMA) -> Tensor:
    """Gaussian heat maps (peak 1) centred on each joint's projection.

    Args:
        joints_px: (B, J, 2) joint positions in image pixels (x right, y down; pixel (0, 0)'s centre at
            (0.5, 0.5)).
        size: heat-map side in cells; a cell is ``stride`` x ``stride`` image pixels.
        sigma: Gaussian standard deviation in cells.
    Returns:
        (B, J, size, size) float32; a joint outside the image gives the part of its Gaussian that falls inside.
    """
    check_tensor(joints_px, "joints_px")
    check_shape(joints_px, "B J 2", "joints_px")
    centre = joints_px.float() / stride - 0.5          # in cell units, cell c's centre at c
    grid = torch.arange(size, dtype=torch.float32, device=joints_px.device)
    gx = torch.exp(-((grid - centre[..., 0:1]) ** 2) / (2 * sigma ** 2))   # (B, J, size)
    gy = torch.exp(-((grid - centre[..., 1:2]) ** 2) / (2 * sigma ** 2))
    return gy[..., :, None] * gx[..., None, :]


@dataclass(frozen=True)
class ImageSupervision:
    """The 2D losses of the image encoder: ``mask`` (BCE of both hands' mask logits against each cell's hand
    share) and ``heatmap`` (each joint map's summed squared error over a whole target's energy: 1 for an
    all-zero prediction of a joint inside the image, 0 for a perfect one), both means over the batch."""

    mask: Tensor
    heatmap: Tensor

    @property
    def total(self) -> Tensor:
        return self.mask + self.heatmap


def image_supervision(mask_logits: Tensor, heatmaps: Tensor, mask: Tensor, joints_px: Tensor) -> ImageSupervision:
    """IntagHand's 2D supervision of its encoder (hand masks + joint heat maps; the official InitOcc starts
    from that trained encoder), without the dense-pose term (no such labels here).

    Args:
        mask_logits: (B, 2, h, w) the encoder's ``mask`` (channels right, left).
        heatmaps: (B, 2 * J, h, w) the encoder's ``hms`` (the right hand's J joints, then the left's).
        mask: (B, H, W) the samples' visible-hand labels (0 background, 1 right, 2 left).
        joints_px: (B, 2 * J, 2) the joints' image positions in pixels, in the order of ``heatmaps``.
    """
    size = mask_logits.shape[-1]
    target_mask = hand_mask_targets(mask, size).to(mask_logits.device)
    bce = F.binary_cross_entropy_with_logits(mask_logits.float(), target_mask)
    stride = mask.shape[-1] / size
    target = joint_heatmaps(joints_px, heatmaps.shape[-1], stride)
    if target.shape != heatmaps.shape:
        raise ValueError(f"heatmaps: expected shape {tuple(target.shape)} for {joints_px.shape[1]} joints, "
                         f"got {tuple(heatmaps.shape)}")
    # relative to a whole target's energy (the integral of the squared Gaussian, pi sigma^2 cells): a joint
    # near or outside the border has less, and must not weigh more
    err = ((heatmaps.float() - target) ** 2).sum((-1, -2))
    return ImageSupervision(mask=bce, heatmap=(err / (math.pi * HEATMAP_SIGMA ** 2)).mean())
