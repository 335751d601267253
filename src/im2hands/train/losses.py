"""Training losses of the occupancy networks (official recipe: ``reference/official-im2hands.md`` §5).

- Occupancy: mean squared error between predicted occupancy *probabilities* and binary labels, per hand,
  summed over the two hands (``torch.nn.MSELoss`` with its default mean, as officially).
- Penetration (RefOcc stage): ``0.001 * Σ_{b,n} (o_L(Q_L)·o_R(Q_L) + o_R(Q_R)·o_L(Q_R))`` where ``o_R(Q_L)`` is
  the right network's refined occupancy at the left hand's query points (``RefOccOutput.pen_right``). The
  official code takes a **sum** over batch rows and points (not a mean), so its weight relative to the MSE
  grows with the batch size and the number of points; we keep the sum to reproduce the recipe.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from im2hands._checks import check_shape, check_tensor

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


@dataclass(frozen=True)
class RefOccLoss:
    """The RefOcc training loss and its parts (scalars)."""

    total: Tensor
    """``occupancy + penetration``."""
    occupancy: Tensor
    """``MSE_L + MSE_R``."""
    penetration: Tensor
    """The weighted penetration term (zero when the output has no pen pass)."""


def ref_occ_loss(output, target_left: Tensor, target_right: Tensor, *, pen_weight: float = PEN_WEIGHT
                 ) -> RefOccLoss:
    """Official RefOcc loss from a :class:`~im2hands.models.ref_occ.RefOccOutput` (decoded with ``pen=True``).

    Args:
        output: the model output; ``pen_*`` must hold the pen pass unless `pen_weight` is 0.
        target_left, target_right: (B, N) occupancy labels of the left / right query points.
    """
    occ = (occupancy_mse(output.left.occupancy, target_left, "left occupancy")
           + occupancy_mse(output.right.occupancy, target_right, "right occupancy"))
    if pen_weight == 0:
        pen = occ.new_zeros(())
    else:
        if output.pen_left.occupancy.shape[1] == 0 and output.left.occupancy.shape[1] > 0:
            raise ValueError("output: no penetration pass; decode with pen=True or set pen_weight=0")
        pen = penetration_loss(output.left.occupancy, output.right.occupancy, output.pen_left.occupancy,
                               output.pen_right.occupancy, weight=pen_weight)
    return RefOccLoss(total=occ + pen, occupancy=occ, penetration=pen)
