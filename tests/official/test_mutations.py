"""The golden tolerances still catch real bugs: one network weight moved by 1e-3, or one keypoint moved by
0.1 mm, fails the check.

The weights are one early, one middle and one late layer of each network (element 0 of each tensor). A
weight only shows in the outputs when what it multiplies is alive: some single weights (an entry of a
softmax-gated attention MLP in the point transformer, the regressor the official forward never uses for the
right hand) move every output by less than float32 rounding, and no check of float32 results can see them
(``docs/GOLDEN_TOLERANCES.md`` lists the sweep).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from im2hands.official.check import Golden, GoldenFile, check_network
from tests.conftest import GOLDEN_DIR

CPU = torch.device("cpu")

WEIGHTS = {
    # network checked: (state dict holding the weight, [weights])
    "image_encoder": ("kpts_ref", ["image_encoder.resnet.conv1.weight",
                                   "image_encoder.resnet.layer3.0.downsample.0.weight",
                                   "image_encoder.dp_decoder.final_layer.weight"]),
    "init_occ": ("init_occ", ["image_final_layer.weight", "img_ex_right.attn.Attn.fc.weight",
                              "right_decoder.lin15_4.weight"]),
    "ref_occ": ("ref_occ", ["image_final_layer.weight", "trans_enc.transition_downs.0.sa.fc_delta1.2.weight",
                            "context_enc.0.weight"]),
    "kpts_ref": ("kpts_ref", ["img_proj_layer.weight", "gcn_layers.0.graph_left.GCN_blocks.1.shortcut.weight",
                              "left_reg.3.weight"]),
}


class _PerturbedGolden(Golden):
    """The golden folder with one weight of one model's state dict moved by `delta`."""

    def __init__(self, folder, model: str, key: str, delta: float):
        super().__init__(folder)
        self._model, self._key, self._delta = model, key, delta

    def state_dict(self, model: str):
        state = super().state_dict(model)
        if model == self._model:
            if self._key not in state:
                raise KeyError(f"{self._key} is not a weight of {model}")
            w = state[self._key].clone()
            w.view(-1)[0] += self._delta
            state[self._key] = w
        return state


@pytest.mark.parametrize("network, key", [(n, k) for n, (_, keys) in WEIGHTS.items() for k in keys])
def test_one_weight_moved_by_1e3_fails(network, key):
    model = WEIGHTS[network][0]
    results = check_network(_PerturbedGolden(GOLDEN_DIR, model, key, 1e-3), network, CPU)
    failed = [r for r in results if not r.passed]
    assert failed, f"moving {key}[0] by 1e-3 went unnoticed; closest: " + max(results, key=lambda r: r.ratio).line()
    assert all(not r.problem for r in failed)   # real value differences, not structural failures


def test_unperturbed_check_passes():
    """Control for the test above: the same path with a zero move passes."""
    results = check_network(_PerturbedGolden(GOLDEN_DIR, "init_occ", "right_decoder.lin15_4.weight", 0.0),
                            "init_occ", CPU)
    assert all(r.passed for r in results)


@pytest.mark.parametrize("side", ["left", "right"])
def test_any_keypoint_moved_by_0_1_mm_fails(side):
    """Each of the 21 keypoints, moved by 0.1 mm along x, fails the canonicalisation check."""
    base = Golden(GOLDEN_DIR)
    inputs = dict(base.inputs)
    missed = []
    for joint in range(21):
        golden = Golden(GOLDEN_DIR)
        moved = {k: v.copy() for k, v in inputs.items()}
        moved[f"joints_world_{side}"][0, joint, 0] += 1e-4   # metres
        golden.__dict__["inputs"] = GoldenFile(base.inputs.path, moved)
        if all(r.passed for r in check_network(golden, "canonicalisation", CPU)):
            missed.append(joint)
    assert not missed, f"{side} joints {missed}: a 0.1 mm move went unnoticed"
    assert np.array_equal(inputs[f"joints_world_{side}"], base.inputs[f"joints_world_{side}"])
