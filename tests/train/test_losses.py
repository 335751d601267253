"""Losses: occupancy MSE and the official penetration sum on known values."""

from types import SimpleNamespace

import pytest
import torch

from im2hands.train.losses import occupancy_mse, penetration_loss, ref_occ_loss


def test_penetration_loss_known_values():
    occ_l = torch.tensor([[0.5, 1.0], [0.0, 0.2]])
    occ_r = torch.tensor([[1.0, 0.1], [0.3, 0.0]])
    pen_l = torch.tensor([[0.4, 0.0], [1.0, 1.0]])          # left net at the right points
    pen_r = torch.tensor([[0.2, 0.5], [0.9, 1.0]])          # right net at the left points
    # sum over rows and points: L·pen_r = 0.1 + 0.5 + 0 + 0.2 = 0.8; R·pen_l = 0.4 + 0 + 0.3 + 0 = 0.7
    got = penetration_loss(occ_l, occ_r, pen_l, pen_r)
    torch.testing.assert_close(got, torch.tensor(0.001 * 1.5))
    # a sum, not a mean: doubling the points doubles the term
    twice = penetration_loss(*(t.repeat(1, 2) for t in (occ_l, occ_r, pen_l, pen_r)))
    torch.testing.assert_close(twice, 2 * got)
    assert penetration_loss(occ_l, occ_r, pen_l, pen_r, weight=1.0).item() == pytest.approx(1.5)


def test_occupancy_mse_and_ref_occ_loss():
    occ_l, occ_r = torch.tensor([[0.5, 1.0]]), torch.tensor([[0.25, 0.0]])
    gt_l, gt_r = torch.tensor([[1.0, 1.0]]), torch.tensor([[0.0, 1.0]])
    assert occupancy_mse(occ_l, gt_l).item() == pytest.approx(0.125)
    h = lambda o: SimpleNamespace(occupancy=o)  # noqa: E731
    out = SimpleNamespace(left=h(occ_l), right=h(occ_r), pen_left=h(torch.tensor([[1.0, 1.0]])),
                          pen_right=h(torch.tensor([[0.0, 0.5]])))
    loss = ref_occ_loss(out, gt_l, gt_r)
    mse = 0.125 + (0.25 ** 2 + 1.0) / 2
    pen = 0.001 * (0.5 * 0.0 + 1.0 * 0.5 + 0.25 * 1.0 + 0.0 * 1.0)
    assert loss.occupancy.item() == pytest.approx(mse)
    assert loss.penetration.item() == pytest.approx(pen)
    assert loss.total.item() == pytest.approx(mse + pen)
    assert ref_occ_loss(out, gt_l, gt_r, pen_weight=0).penetration.item() == 0


def test_loss_errors():
    a = torch.zeros(1, 3)
    with pytest.raises(ValueError, match="pen_right"):
        penetration_loss(a, a, a, torch.zeros(1, 4))
    with pytest.raises(ValueError, match="occ_left"):
        penetration_loss(torch.zeros(3), a, a, a)
    with pytest.raises(ValueError, match="mismatched shapes"):
        occupancy_mse(a, torch.zeros(1, 2))
    h = lambda o: SimpleNamespace(occupancy=o)  # noqa: E731
    no_pen = SimpleNamespace(left=h(a), right=h(a), pen_left=h(torch.zeros(1, 0)), pen_right=h(torch.zeros(1, 0)))
    with pytest.raises(ValueError, match="pen=True"):
        ref_occ_loss(no_pen, a, a)
