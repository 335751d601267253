"""The golden weight rule rebuilds exactly the tensors the official set was made with."""

import json

import pytest

from im2hands.official.weights import fingerprint

from ..conftest import GOLDEN_DIR


@pytest.mark.parametrize("model", ["init_occ", "ref_occ", "kpts_ref"])
def test_rule_weights_match_fingerprints(golden, model):
    expected = json.loads((GOLDEN_DIR / "weights_check.json").read_text())[model]
    state = golden.state_dict(model)
    assert set(state) == set(expected)
    bad = [k for k, t in state.items() if fingerprint(t)["sha256_16"] != expected[k]["sha256_16"]]
    assert not bad, f"{len(bad)} keys differ, e.g. {bad[:3]}"
