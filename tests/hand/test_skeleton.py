import numpy as np
import pytest
import torch

from im2hands.hand import skeleton as sk


@pytest.mark.parametrize("order", ["mano", "halo", "biomech", "interhand", "internal"])
def test_reorder_round_trip(order):
    joints = torch.randn(4, 21, 3, dtype=torch.float64)
    there = sk.reorder(joints, "internal", order)
    back = sk.reorder(there, order, "internal")
    torch.testing.assert_close(back, joints, rtol=0, atol=0)


def test_halo_permutation_is_the_official_one():
    # preprocess_joints in the official datasets permutes manopth joints to HALO with this list
    assert sk.HALO_FROM_INTERNAL == (0, 5, 6, 7, 9, 10, 11, 17, 18, 19, 13, 14, 15, 1, 2, 3, 4, 8, 12, 16, 20)


def test_orders_name_the_joints():
    assert sk.INTERNAL[4] == "thumb4" and sk.INTERNAL[9] == "middle1"
    assert sk.MANO[:4] == ("wrist", "index1", "index2", "index3") and sk.MANO[16] == "thumb4"
    assert sk.BIOMECH[1:6] == tuple(f"{f}1" for f in sk.FINGERS)
    assert sk.INTERHAND[0] == "right_thumb4" and sk.INTERHAND[20] == "right_wrist"
    assert sk.INTERHAND[sk.INTERHAND_ROOT["left"]] == "left_wrist"


def test_interhand_split_and_join_round_trip():
    j42 = np.random.default_rng(0).normal(size=(2, 42, 3))
    right, left = sk.interhand_to_internal(j42)
    assert np.array_equal(right[:, 0], j42[:, 20]) and np.array_equal(left[:, 0], j42[:, 41])
    assert np.array_equal(right[:, 4], j42[:, 0])  # thumb tip is InterHand's joint 0
    np.testing.assert_array_equal(sk.internal_to_interhand(right, left), j42)


def test_parents_are_consistent_with_bones():
    for p, c in sk.BONES_INTERNAL:
        assert sk.PARENTS_INTERNAL[c] == p
    # in every order, a parent's name maps to the same parent joint
    for c, p in enumerate(sk.HALO_PARENTS):
        if p < 0:
            continue
        ci, pi = sk.INTERNAL.index(sk.HALO[c]), sk.INTERNAL.index(sk.HALO[p])
        assert sk.PARENTS_INTERNAL[ci] == pi


def test_sides_have_one_order():
    assert sk.SIDES == ("right", "left")
    assert [sk.other_side(s) for s in sk.SIDES] == ["left", "right"]


def test_bad_shapes_raise_clear_errors():
    with pytest.raises(ValueError, match=r"joints: expected shape \(\.\.\., 21, 3\)"):
        sk.reorder(torch.zeros(20, 3), "internal", "mano")
    with pytest.raises(ValueError, match="unknown joint order"):
        sk.reorder(torch.zeros(21, 3), "internal", "openpose")
