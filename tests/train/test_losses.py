"""Losses: occupancy MSE and the official penetration sum on known values."""

import math
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


def test_ref_occ_loss_bce_on_the_refined_logits():
    # logits 0 and ln 3 (p = 0.5, 0.75); BCE = mean of -log p for label 1 / -log(1 - p) for label 0
    g = lambda logit: SimpleNamespace(logit=torch.tensor(logit), occupancy=torch.sigmoid(torch.tensor(logit)))  # noqa: E731
    ln3 = math.log(3.0)
    out = SimpleNamespace(left=g([[0.0, ln3]]), right=g([[ln3, 0.0]]), pen_left=g([[0.0, 0.0]]),
                          pen_right=g([[0.0, 0.0]]))
    gt_l, gt_r = torch.tensor([[1.0, 1.0]]), torch.tensor([[0.0, 1.0]])
    loss = ref_occ_loss(out, gt_l, gt_r, pen_weight=0, occupancy_loss="bce")
    want = (-math.log(0.5) - math.log(0.75)) / 2 + (-math.log(0.25) - math.log(0.5)) / 2
    assert loss.occupancy.item() == pytest.approx(want, rel=1e-6)
    with pytest.raises(ValueError, match="occupancy_loss"):
        ref_occ_loss(out, gt_l, gt_r, pen_weight=0, occupancy_loss="l1")
    with pytest.raises(ValueError, match="right occupancy.*shape"):
        ref_occ_loss(out, gt_l, torch.zeros(1, 3), pen_weight=0, occupancy_loss="bce")


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


def _straight_hand() -> torch.Tensor:
    """(1, 21, 3) a flat hand in the internal order: fingers along +y from MCPs spread along x, metres."""
    from im2hands.hand import skeleton

    joints = torch.zeros(21, 3)
    for k, finger in enumerate(skeleton.FINGERS):
        for level in range(1, 5):
            joints[skeleton.INTERNAL.index(f"{finger}{level}")] = torch.tensor(
                [0.02 * (k - 2), 0.08 + 0.03 * (level - 1), 0.0])
    return joints[None]


def test_nearest_part_labels_points_along_each_bone():
    from im2hands.hand import skeleton
    from im2hands.train.losses import PART_SEGMENTS, nearest_part

    joints = _straight_hand()
    start, end, part = PART_SEGMENTS
    assert len(start) == 20 and sorted(set(part)) == list(range(16))
    # the midpoint of every segment, nudged 1 mm off its axis, belongs to that segment's part
    mids = (joints[0, start] + joints[0, end]) / 2 + torch.tensor([0.0, 0.0, 0.001])
    got = nearest_part(mids[None], joints)[0]
    assert got.tolist() == part
    # part b >= 1 is the phalanx that starts at HALO joint b (part order of the decoders)
    for b in range(1, 16):
        name = skeleton.HALO[b]
        assert start[part.index(b)] == skeleton.INTERNAL.index(name)
    # beyond a fingertip, the tip phalanx
    tip = joints[0, skeleton.INTERNAL.index("middle4")] + torch.tensor([0.0, 0.01, 0.0])
    assert skeleton.HALO[nearest_part(tip[None, None], joints)[0, 0]] == "middle3"


def test_part_bce_and_occupancy_bce_known_values():
    import math

    from im2hands.train.losses import occupancy_bce, part_bce

    logits = torch.full((1, 2, 16), -30.0)
    logits[0, 0, 3] = 30.0            # point 0 inside, owned by part 3; point 1 outside
    occ = torch.tensor([[1.0, 0.0]])
    parts = torch.tensor([[3, 5]])
    assert part_bce(logits, occ, parts).item() < 1e-9
    assert occupancy_bce(logits, occ).item() < 1e-9
    # the right answer from the wrong part costs log(1 + e^30) / 32 for each of the two wrong entries
    wrong = part_bce(logits, occ, torch.tensor([[4, 5]]))
    assert wrong.item() == pytest.approx(2 * math.log1p(math.exp(30.0)) / 32, rel=1e-6)
    # zero logits: the occupancy BCE is log 2 whatever the labels
    assert occupancy_bce(torch.zeros(1, 2, 16), occ).item() == pytest.approx(math.log(2.0))


def test_image_supervision_targets_and_known_values():
    from im2hands.hand.skeleton import SIDES
    from im2hands.train.losses import HEATMAP_SIGMA, hand_mask_targets, image_supervision, joint_heatmaps

    # masks: a 4x4 block of right-hand pixels fills one cell; a half-filled cell of left-hand pixels
    mask = torch.zeros(1, 16, 16, dtype=torch.int64)
    mask[0, 0:4, 4:8] = SIDES.index("right") + 1
    mask[0, 8:10, 8:12] = SIDES.index("left") + 1
    t = hand_mask_targets(mask, 4)
    assert t.shape == (1, 2, 4, 4)
    right, left = SIDES.index("right"), SIDES.index("left")
    assert t[0, right, 0, 1] == 1 and t[0, left, 2, 2] == 0.5 and t.sum() == 1.5
    with pytest.raises(ValueError, match="multiple"):
        hand_mask_targets(torch.zeros(1, 10, 10, dtype=torch.int64), 4)

    # heat maps: pixel (0.5, 0.5)'s centre -> cell 0 at stride 1; a joint at image pixel x = 4 c + 2 peaks in cell c
    px = torch.tensor([[[4 * 5 + 2.0, 4 * 9 + 2.0], [0.5, 0.5]]])
    h = joint_heatmaps(px, 16, 4.0)
    assert h.shape == (1, 2, 16, 16)
    assert h[0, 0, 9, 5] == pytest.approx(1.0) and h[0, 0].flatten().argmax() == 9 * 16 + 5
    assert h[0, 0, 9, 6] == pytest.approx(math.exp(-1 / (2 * HEATMAP_SIGMA ** 2)))
    assert joint_heatmaps(torch.tensor([[[0.5, 0.5]]]), 4, 1.0)[0, 0, 0, 0] == pytest.approx(1.0)

    # known losses: zero logits cost log 2; a zero heat map costs its target's share of a whole Gaussian's
    # energy (a joint in the middle: ~1); the exact targets cost 0 and a perfect mask logit ~0
    big = torch.tensor([[[32.0, 32.0]]])
    mask64 = torch.zeros(1, 256, 256, dtype=torch.int64)
    zero = image_supervision(torch.zeros(1, 2, 64, 64), torch.zeros(1, 1, 64, 64), mask64, big)
    assert zero.mask.item() == pytest.approx(math.log(2.0)) and zero.heatmap.item() == pytest.approx(1.0, abs=1e-3)
    exact = image_supervision(torch.full((1, 2, 64, 64), -40.0), joint_heatmaps(big, 64, 4.0), mask64, big)
    assert exact.total.item() < 1e-12
    with pytest.raises(ValueError, match="heatmaps"):
        image_supervision(torch.zeros(1, 2, 64, 64), torch.zeros(1, 3, 64, 64), mask64, big)
