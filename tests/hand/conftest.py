"""Fixtures of the open hand model's tests (``test_openhand.py``, ``test_openhand_build.py``)."""

from __future__ import annotations

import pytest

from im2hands.hand import openhand as oh
from im2hands.hand.mano import ManoLayer

from ._openhand import layer as _layer


@pytest.fixture(scope="module")
def right() -> dict:
    return oh.load_model(oh.openhand_dir() / "MANO_RIGHT.pkl")


@pytest.fixture(scope="module")
def left() -> dict:
    return oh.load_model(oh.openhand_dir() / "MANO_LEFT.pkl")


@pytest.fixture(scope="module")
def skel() -> oh.RestSkeleton:
    return oh.rest_skeleton()


@pytest.fixture(scope="module")
def layer_r() -> ManoLayer:
    return _layer("right", flat_hand_mean=True)
