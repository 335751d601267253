"""Golden check of the keypoint canonicalisation (``canonicalisation.npz`` and ``canon_extra.npz``).

Tolerances (golden README §6): with the official dtype sequence, 1e-12 for float64 arrays and one float32
ulp (at the array's largest magnitude) for float32 arrays. The float64 path (``official_quirks=False``) is
checked too, against the "full float64 port" tolerances: unpose 1e-4, root_rot_mat 5e-7, bone lengths
1e-7.
"""

from __future__ import annotations

import numpy as np
import torch

from im2hands.official.check import ArrayResult, Golden, compare
from im2hands.hand.canonical import canonicalise_detailed

NETWORK = "canonicalisation"
ATOL_F64 = 1e-12
FLOAT64_PATH_ATOL = {"unpose": 1e-4, "root_rot_mat": 5e-7, "bone_lengths": 1e-7}
"""Tolerances of a computation done entirely in float64 (measured max: 2.3e-5 / 1.3e-7 / 2.3e-8)."""
_OFFICIAL_NAMES = ("unpose", "bone_lengths", "root_rot_mat", "joints_halo_f32", "canon_joints_biomech", "glo_rot",
                   "posed_to_canonical_21")
"""Arrays of ``canonicalisation.npz`` (per side) that the official-dtype path reproduces."""


def _atol(expected: np.ndarray) -> float:
    """1e-12 for float64 arrays; one float32 ulp at the largest magnitude for float32 arrays."""
    if expected.dtype == np.float32:
        return float(np.spacing(np.abs(expected).max().astype(np.float32)))
    return ATOL_F64


def _official_arrays(d) -> dict[str, torch.Tensor]:
    values = (d.canonical.unpose, d.canonical.bone_lengths, d.canonical.root_rot_mat, d.joints_halo,
              d.canon_joints_biomech, d.glo_rot, d.posed_to_canonical_21)
    return dict(zip(_OFFICIAL_NAMES, values))


def array_names() -> list[str]:
    """Names of the results :func:`check` returns, in order."""
    names = []
    for side in ("left", "right"):
        names += [f"{n}_{side}" for n in _OFFICIAL_NAMES]
        names += [f"{n}_{side} [f64 path]" for n in FLOAT64_PATH_ATOL]
    for n in FLOAT64_PATH_ATOL:
        names += [f"extra/{n}", f"extra/{n} [f64 path]"]
    return names


def check(golden: Golden, device: torch.device) -> list[ArrayResult]:
    """Canonicalise the golden keypoints on `device` and compare every canonicalisation array."""
    results: list[ArrayResult] = []
    canon = golden["canonicalisation"]
    for side in ("left", "right"):
        joints = torch.from_numpy(golden.inputs[f"joints_world_{side}"]).to(device)
        ours = _official_arrays(canonicalise_detailed(joints, side))
        for name, value in ours.items():
            key = f"{name}_{side}"
            results.append(compare(NETWORK, key, value, canon[key], _atol(canon[key])))
        f64 = canonicalise_detailed(joints, side, official_quirks=False).canonical
        for name, atol in FLOAT64_PATH_ATOL.items():
            key = f"{name}_{side}"
            results.append(compare(NETWORK, f"{key} [f64 path]", getattr(f64, name), canon[key], atol))

    extra = golden["canon_extra"]
    joints = torch.from_numpy(extra["joints_world"]).to(device)
    is_right = torch.from_numpy(extra["is_right"] != 0).to(device)
    ours = canonicalise_detailed(joints, is_right).canonical
    f64 = canonicalise_detailed(joints, is_right, official_quirks=False).canonical
    for name, atol in FLOAT64_PATH_ATOL.items():
        results.append(compare(NETWORK, f"extra/{name}", getattr(ours, name), extra[name], _atol(extra[name])))
        results.append(compare(NETWORK, f"extra/{name} [f64 path]", getattr(f64, name), extra[name], atol))
    return results
