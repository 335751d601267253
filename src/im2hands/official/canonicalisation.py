"""Golden check of the keypoint canonicalisation (``canonicalisation.npz`` and ``canon_extra.npz``).

The official dtype sequence (float32 ops, some results stored float64) is compared with the tolerance
classes of :mod:`im2hands.official.tolerance`; our float64 path (``official_quirks=False``) is compared too,
against the "float64 port" classes (the golden's own float32 rounding).
"""

from __future__ import annotations

import torch

from im2hands.official.check import Comparison, Golden
from im2hands.official.tolerance import tolerance_for
from im2hands.hand.canonical import canonicalise_detailed

NETWORK = "canonicalisation"
GOLDEN_FILES = ("canonicalisation", "canon_extra")
INPUT_ARRAYS = frozenset({"joints_world", "is_right"})
"""``canon_extra.npz`` arrays that are inputs (the keypoints of ``canonicalisation.npz`` are in
``inputs.npz``)."""
FLOAT64_PATH = ("unpose", "root_rot_mat", "bone_lengths")
"""Arrays our float64 path is compared on."""
_OFFICIAL_NAMES = ("unpose", "bone_lengths", "root_rot_mat", "joints_halo_f32", "canon_joints_biomech", "glo_rot",
                   "posed_to_canonical_21")
"""Arrays of ``canonicalisation.npz`` (per side) that the official-dtype path reproduces."""


def _official_arrays(d) -> dict[str, torch.Tensor]:
    values = (d.canonical.unpose, d.canonical.bone_lengths, d.canonical.root_rot_mat, d.joints_halo,
              d.canon_joints_biomech, d.glo_rot, d.posed_to_canonical_21)
    return dict(zip(_OFFICIAL_NAMES, values))


def array_names() -> list[str]:
    """Names of the results :func:`comparisons` returns, in order."""
    names = []
    for side in ("left", "right"):
        names += [f"{n}_{side}" for n in _OFFICIAL_NAMES]
        names += [f"{n}_{side} [f64 path]" for n in FLOAT64_PATH]
    for n in FLOAT64_PATH:
        names += [f"extra/{n}", f"extra/{n} [f64 path]"]
    return names


def comparisons(golden: Golden, device: torch.device, *, joints_world: dict[str, torch.Tensor] | None = None
                ) -> list[Comparison]:
    """Canonicalise the golden keypoints on `device`; one comparison per canonicalisation array.

    `joints_world`: per side, keypoints to use instead of the golden ones (to prove that a changed
    keypoint fails the check).
    """
    out: list[Comparison] = []
    for side in ("left", "right"):
        joints = torch.from_numpy(golden.inputs[f"joints_world_{side}"]).to(device)
        if joints_world is not None and side in joints_world:
            joints = joints_world[side].to(device)
        ours = _official_arrays(canonicalise_detailed(joints, side))
        for name, value in ours.items():
            key = f"{name}_{side}"
            out.append(Comparison("canonicalisation", key, value, tolerance_for(key)))
        f64 = canonicalise_detailed(joints, side, official_quirks=False).canonical
        for name in FLOAT64_PATH:
            key = f"{name}_{side}"
            out.append(Comparison("canonicalisation", key, getattr(f64, name),
                                  tolerance_for(key, float64_port=True), label=f"{key} [f64 path]"))

    extra = golden["canon_extra"]
    joints = torch.from_numpy(extra["joints_world"]).to(device)
    is_right = torch.from_numpy(extra["is_right"] != 0).to(device)
    ours = canonicalise_detailed(joints, is_right).canonical
    f64 = canonicalise_detailed(joints, is_right, official_quirks=False).canonical
    for name in FLOAT64_PATH:
        out.append(Comparison("canon_extra", name, getattr(ours, name), tolerance_for(name)))
        out.append(Comparison("canon_extra", name, getattr(f64, name), tolerance_for(name, float64_port=True),
                              label=f"extra/{name} [f64 path]"))
    return out


def check(golden: Golden, device: torch.device):
    """Every canonicalisation result, with the coverage rules (see :func:`im2hands.official.check.check_network`)."""
    from im2hands.official.check import check_network

    return check_network(golden, NETWORK, device)
