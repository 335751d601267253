"""Golden check of the keypoint refinement network (official mode) against ``kpts_ref.npz``.

Inputs: ``joints_halo_rootrel_*`` (kpts_ref.npz), ``image``, ``cam_R``, ``cam_T``, ``*_root_xyz`` (inputs.npz);
weights: the golden rule's kpts_ref state dict. Tolerances: :mod:`im2hands.official.tolerance`.
"""

from __future__ import annotations

import torch

from im2hands.official.check import Comparison, Golden
from im2hands.official.tolerance import tolerance_for

NETWORK = "kpts_ref"
GOLDEN_FILES = ("kpts_ref",)
INPUT_ARRAYS = frozenset({"joints_halo_rootrel_left", "joints_halo_rootrel_right"})
"""The dataset-level keypoints the check feeds to the model."""


def golden_model(golden: Golden, device: torch.device):
    """KptsRef in official mode with the golden rule weights, eval mode, on `device`."""
    from im2hands.models.kpts_ref import KptsRef, KptsRefConfig

    model = KptsRef(KptsRefConfig(official_quirks=True))
    model.load_state_dict(golden.state_dict("kpts_ref"))
    return model.to(device).eval()


def golden_inputs(golden: Golden, device: torch.device) -> dict[str, torch.Tensor]:
    """The golden inputs of :func:`~im2hands.official.inputs.normalise_keypoints` and the image."""
    g, i = golden["kpts_ref"], golden.inputs
    t = lambda a: torch.from_numpy(a).to(device)  # noqa: E731
    return {"joints_left": t(g["joints_halo_rootrel_left"]), "joints_right": t(g["joints_halo_rootrel_right"]),
            "cam_R": t(i["cam_R"]), "cam_T": t(i["cam_T"]), "left_root_xyz": t(i["left_root_xyz"]),
            "right_root_xyz": t(i["right_root_xyz"]), "image": t(i["image"])}


def run(model, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Normalise the golden-style inputs, run `model`; every array named as in ``kpts_ref.npz``."""
    from im2hands.official.inputs import normalise_keypoints

    kin = normalise_keypoints(inputs["joints_left"], inputs["joints_right"], cam_R=inputs["cam_R"],
                              cam_T=inputs["cam_T"], left_root_xyz=inputs["left_root_xyz"],
                              right_root_xyz=inputs["right_root_xyz"])
    with torch.no_grad():
        out = model(inputs["image"], kin.left_mm, kin.right_mm)
    arrays = {"joints_halo_rootrel_left": inputs["joints_left"], "joints_halo_rootrel_right": inputs["joints_right"],
              "kpts_in_left": kin.left_mm, "kpts_in_right": kin.right_mm, "left_mid_joint": kin.left_mid_joint,
              "kpts_out_left": out.left, "kpts_out_right": out.right, "img_proj": out.img_proj}
    for i, (fl, fr) in enumerate(zip(out.stage_feats_left, out.stage_feats_right)):
        arrays[f"gcn{i}_feat_left"], arrays[f"gcn{i}_feat_right"] = fl, fr
    return arrays


def comparisons(golden: Golden, device: torch.device) -> list[Comparison]:
    """Run KptsRef on the golden inputs; one comparison per result array of ``kpts_ref.npz``."""
    actual = run(golden_model(golden, device), golden_inputs(golden, device))
    return [Comparison("kpts_ref", name, actual[name], tolerance_for(name))
            for name in golden.listed("kpts_ref") if name in actual and name not in INPUT_ARRAYS]


def check(golden: Golden, device: torch.device):
    """Every KptsRef result, with the coverage rules (see :func:`im2hands.official.check.check_network`)."""
    from im2hands.official.check import check_network

    return check_network(golden, NETWORK, device)
