"""Shared fixtures: the repo's copy of the official golden set, seeded generators."""

from pathlib import Path

import pytest

GOLDEN_DIR = Path(__file__).parent / "fixtures" / "golden" / "official"


@pytest.fixture(scope="session")
def golden():
    from im2hands.official.check import Golden

    return Golden(GOLDEN_DIR)
