"""Tolerances of the golden comparison: one rule per array class, portable across x86-64 CPUs.

An array passes when ``max |ours - golden| <= abs + rel * max |golden|``: an absolute floor plus a bound
that scales with the array's magnitude. Float32 kernels round differently on different CPUs (Intel vs AMD,
``ATEN_CPU_CAPABILITY=default|avx2|avx512``, thread counts), so "bit-identical" holds on one machine only.
Each class's bound is at least 3x the largest spread measured across those settings
(``docs/GOLDEN_TOLERANCES.md``, made by ``docs/scripts/golden_spread.py``), and still orders of magnitude
below what a real bug does: one network weight moved by 1e-3, or one keypoint by 0.1 mm, fails the check
(``tests/official/test_mutations.py``).

Every golden array belongs to exactly one class; :func:`tolerance_for` is the table.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Tolerance:
    """``allowed = abs + rel * max |golden|`` for one class of arrays (0 and 0: exact, for integers)."""

    name: str
    """The array class, printed beside each result."""
    abs: float
    """Absolute floor, in the array's units."""
    rel: float
    """Bound per unit of the golden array's largest magnitude."""

    def allowed(self, expected: np.ndarray) -> float:
        """The largest absolute error `expected`'s array may show."""
        scale = float(np.abs(expected).max()) if expected.size else 0.0
        return self.abs + self.rel * scale

    @property
    def exact(self) -> bool:
        return self.abs == 0.0 and self.rel == 0.0


EXACT = Tolerance("exact", 0.0, 0.0)
"""Integer arrays (FPS indices): must match exactly."""

COORDINATES = Tolerance("coordinates", 1e-6, 1e-6)
"""Points, bone lengths, rotations and other short float32 geometry chains (metres, query units, mm for
KptsRef inputs). Measured spread: 0 to 2 float32 ulp (<= 2.4e-7 at magnitudes <= 2)."""

CANONICAL_TRANSFORMS = Tolerance("canonical transforms", 0.0, 1.5e-4)
"""``unpose`` and ``posed_to_canonical_21``: a long chain of float32 ops (stored float64) with matrix
inverses. Measured spread: 4.3e-5 (``ATEN_CPU_CAPABILITY=default`` on an AMD EPYC, magnitudes ~1)."""

FEATURES = Tolerance("features", 0.0, 5e-6)
"""Network activations: encoder maps, attention outputs, latents, GCN features, KptsRef outputs.
Measured spread: 1.1e-6 of the array's magnitude."""

GRAPH_FEATURES = Tolerance("graph features", 0.0, 3e-7)
"""KptsRef's GCN joint features (magnitudes up to ~180, dominated by a few large entries). Measured
spread: 7.9e-8 of the magnitude (1.1e-5 absolute at magnitude 182 in the thread test)."""

SAMPLED_FEATURES = Tolerance("sampled features", 0.0, 1.5e-4)
"""Image features bilinearly sampled at projected query points: a 1-ulp camera coordinate moves the
sample by ~1e-4 pixel, times the feature map's gradient. Measured spread: 3.1e-5 of the magnitude."""

PROBABILITIES = Tolerance("probabilities", 2e-6, 5e-6)
"""Occupancy probabilities in [0, 1]. Measured spread: 6.3e-7."""

PART_LOGITS = Tolerance("part logits", 1e-6, 2e-6)
"""InitOcc's per-part logits (shallow MLPs). Measured spread: 4.2e-7 at magnitude 0.76."""

LOGITS = Tolerance("logits", 2e-6, 1e-5)
"""RefOcc's logits (after the point transformer). Measured spread: 4.7e-6 at magnitude 2."""

FLOAT64_PORT_UNPOSE = Tolerance("float64 port", 0.0, 1e-4)
"""Our float64 canonicalisation against the float32 golden: the golden's own float32 rounding
(measured 2.3e-5; independent of our CPU)."""
FLOAT64_PORT_ROTATION = Tolerance("float64 port", 5e-7, 0.0)
"""As above for ``root_rot_mat`` (measured 1.1e-7)."""
FLOAT64_PORT_LENGTHS = Tolerance("float64 port", 1e-7, 0.0)
"""As above for bone lengths in metres (measured 1.8e-8)."""

CLASSES: tuple[Tolerance, ...] = (EXACT, COORDINATES, CANONICAL_TRANSFORMS, FEATURES, GRAPH_FEATURES, SAMPLED_FEATURES,
                                  PROBABILITIES, PART_LOGITS, LOGITS, FLOAT64_PORT_UNPOSE, FLOAT64_PORT_ROTATION,
                                  FLOAT64_PORT_LENGTHS)

_FAMILIES: dict[str, Tolerance] = {
    # canonicalisation (also canon_extra's unpose / bone_lengths / root_rot_mat)
    "unpose": CANONICAL_TRANSFORMS, "posed_to_canonical_21": CANONICAL_TRANSFORMS,
    "bone_lengths": COORDINATES, "root_rot_mat": COORDINATES, "joints_halo_f32": COORDINATES,
    "canon_joints_biomech": COORDINATES, "glo_rot": COORDINATES,
    # image encoder
    "hms": FEATURES, "mask": FEATURES, "dp": FEATURES,
    **{f"{m}_fmap{i}": FEATURES for m in ("img", "hms", "dp") for i in range(4)},
    # init_occ
    "occ": PROBABILITIES, "img_feat": FEATURES, "query_token": COORDINATES, "local_img_feat": FEATURES,
    "grid_tokens": FEATURES, "part_logits": PART_LOGITS, "bone_latent": COORDINATES, "global_proj": COORDINATES,
    "bone_coords": COORDINATES, "pen_init_occ": PROBABILITIES,
    # ref_occ
    "ref_occ": PROBABILITIES, "pen_ref_occ": PROBABILITIES, "init_occ": PROBABILITIES,
    "img_global": FEATURES, "query_img_feat": SAMPLED_FEATURES, "anchor_img_feat": FEATURES,
    "query_xyz_flip": COORDINATES, "anchor_xyz_flip": COORDINATES, "center_xyz": COORDINATES,
    "enc_anchors": COORDINATES, "enc_z": FEATURES, "enc_anchor_feats": FEATURES, "ctx_z": FEATURES,
    "pen_ctx_z": FEATURES, "ref_logit": LOGITS, "pen_ref_logit": LOGITS,
    "fps_idx_stage1": EXACT, "fps_idx_stage2": EXACT,
    # kpts_ref
    "kpts_in": COORDINATES, "left_mid_joint": COORDINATES, "kpts_out": FEATURES, "img_proj": FEATURES,
    **{f"gcn{i}_feat": GRAPH_FEATURES for i in range(4)},
}

_FLOAT64_PORT = {"unpose": FLOAT64_PORT_UNPOSE, "root_rot_mat": FLOAT64_PORT_ROTATION,
                 "bone_lengths": FLOAT64_PORT_LENGTHS}


def family(name: str) -> str:
    """The array family of golden array `name`: without ``extra/`` and the ``_left``/``_right`` suffix."""
    return name.removeprefix("extra/").removesuffix("_left").removesuffix("_right")


def tolerance_for(name: str, *, float64_port: bool = False) -> Tolerance:
    """The tolerance of golden array `name` (e.g. ``"ref_logit_left"``, ``"extra/unpose"``).

    Args:
        name: the array's name in its golden ``.npz`` (``extra/`` prefix for ``canon_extra.npz``).
        float64_port: compare our float64 canonicalisation (not the official dtype sequence) with it.

    Raises:
        KeyError: no class is defined for the array (a new golden array needs a class here).
    """
    fam = family(name)
    table = _FLOAT64_PORT if float64_port else _FAMILIES
    if fam not in table:
        raise KeyError(f"no tolerance class for golden array {name!r}"
                       + (" on the float64 path" if float64_port else ""))
    return table[fam]
