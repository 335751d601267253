"""Linear blend skinning for MANO-format hand models, as pure functions of their tensors.

The model (Romero et al. 2017, "Embodied Hands"; the SMPL formulation):

1. shape:   ``v_shaped = v_template + shapedirs . betas``                   (:func:`blend_shapes`)
2. joints:  ``J = J_regressor @ v_shaped``                                   (:func:`vertices_to_joints`)
3. pose:    ``v_posed = v_shaped + posedirs . vec(R_1..R_{K-1} - I)``        (:func:`pose_blend_shapes`)
4. chain:   ``G_k = G_parent(k) @ [R_k | J_k - J_parent(k)]``                 (:func:`batch_rigid_transform`)
5. skin:    ``v = sum_k w_vk (G_k @ [v_posed - J_k; 1])``                     (:func:`skin_vertices`)

Letters: B batch, V vertices, K kinematic joints (16 for MANO), S shape coefficients, P = 9 (K - 1) pose
blend-shape features. Every point is in the model frame, metres (MANO's units), before any translation.
All functions follow the dtype and device of their inputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Sequence

import torch
from torch import Tensor

from im2hands._checks import check_shape


def blend_shapes(betas: Tensor, shapedirs: Tensor) -> Tensor:
    """Per-vertex displacements of the shape blend shapes.

    Args:
        betas: (B, S) shape coefficients (unitless).
        shapedirs: (V, 3, S) shape blend shapes, metres per unit coefficient.
    Returns:
        (B, V, 3) displacements, metres: ``out[b, v, c] = sum_s betas[b, s] * shapedirs[v, c, s]``.
    """
    sb = check_shape(betas, "B S", "betas")
    ss = check_shape(shapedirs, "V 3 S", "shapedirs")
    if sb["S"] != ss["S"]:
        raise ValueError(f"betas: expected {ss['S']} coefficients (shapedirs has {ss['S']}), got {sb['S']}")
    # one GEMM against a transposed view: (B, S) @ (S, V*3)
    return (betas @ shapedirs.reshape(-1, ss["S"]).T).reshape(sb["B"], ss["V"], 3)


def vertices_to_joints(j_regressor: Tensor, vertices: Tensor) -> Tensor:
    """Joint locations regressed from vertices.

    Args:
        j_regressor: (K, V) regression weights (each row usually sums to 1).
        vertices: (B, V, 3) vertices, metres.
    Returns:
        (B, K, 3) joints, metres.
    """
    sj = check_shape(j_regressor, "K V", "j_regressor")
    sv = check_shape(vertices, "B V 3", "vertices")
    if sj["V"] != sv["V"]:
        raise ValueError(f"vertices: expected {sj['V']} vertices (j_regressor has {sj['V']}), got {sv['V']}")
    return torch.einsum("kv,bvc->bkc", j_regressor, vertices)


def pose_features(rot_mats: Tensor) -> Tensor:
    """MANO's pose blend-shape features: the non-root rotations minus identity, flattened row-major.

    Args:
        rot_mats: (B, K, 3, 3) rotation of each joint relative to its parent (joint 0 = root).
    Returns:
        (B, 9 (K - 1)) features ``vec(R_1 - I, ..., R_{K-1} - I)``.
    """
    s = check_shape(rot_mats, "B K 3 3", "rot_mats")
    eye = torch.eye(3, dtype=rot_mats.dtype, device=rot_mats.device)
    return (rot_mats[:, 1:] - eye).reshape(s["B"], -1)


def pose_blend_shapes(rot_mats: Tensor, posedirs: Tensor) -> Tensor:
    """Per-vertex displacements of the pose blend shapes.

    Args:
        rot_mats: (B, K, 3, 3) relative joint rotations (joint 0 = root, which has no blend shape).
        posedirs: (V, 3, P) pose blend shapes with P = 9 (K - 1), metres per unit feature.
    Returns:
        (B, V, 3) displacements, metres.
    """
    feats = pose_features(rot_mats)  # (B, P)
    sp = check_shape(posedirs, "V 3 P", "posedirs")
    if sp["P"] != feats.shape[1]:
        raise ValueError(f"posedirs: expected (V, 3, {feats.shape[1]}) for {rot_mats.shape[1]} joints, "
                         f"got {tuple(posedirs.shape)}")
    return (feats @ posedirs.reshape(-1, sp["P"]).T).reshape(feats.shape[0], sp["V"], 3)


@lru_cache(maxsize=32)
def _levels(parents: tuple[int, ...]) -> tuple[tuple[tuple[int, ...], tuple[int, ...]], ...]:
    """Group non-root joints by depth: ((children, their parents), ...) from the root outwards."""
    depth = [0] * len(parents)
    for k in range(1, len(parents)):
        depth[k] = depth[parents[k]] + 1
    out = []
    for d in range(1, max(depth, default=0) + 1):
        kids = tuple(k for k in range(len(parents)) if depth[k] == d)
        out.append((kids, tuple(parents[k] for k in kids)))
    return tuple(out)


def check_parents(parents: Sequence[int], name: str = "parents") -> tuple[int, ...]:
    """Validate a kinematic tree: ``parents[0] == -1`` and ``0 <= parents[k] < k`` for k >= 1.

    Returns the parents as a tuple of Python ints.
    """
    if isinstance(parents, Tensor):
        parents = parents.tolist()
    par = tuple(int(p) for p in parents)
    if not par or par[0] != -1:
        raise ValueError(f"{name}: joint 0 must be the root (parent -1), got {par[:1]}")
    bad = [k for k in range(1, len(par)) if not 0 <= par[k] < k]
    if bad:
        raise ValueError(f"{name}: every joint k >= 1 needs a parent in [0, k); joint {bad[0]} has "
                         f"parent {par[bad[0]]} (joints must be sorted parents-first)")
    return par


@dataclass(frozen=True)
class RigidTransforms:
    """Result of :func:`batch_rigid_transform`."""

    joint_transforms: Tensor
    """(B, K, 4, 4) posed frame of each joint: maps joint-local coordinates (axes of the rest-pose model
    frame, origin at the joint) to the model frame, metres. Its translation is the posed joint."""
    skinning_transforms: Tensor
    """(B, K, 4, 4) maps rest-pose model-frame points rigidly attached to joint k to their posed place:
    ``joint_transforms[k] @ translate(-rest_joints[k])``."""


def batch_rigid_transform(rot_mats: Tensor, rest_joints: Tensor, parents: Sequence[int]) -> RigidTransforms:
    """Compose the relative joint rotations along the kinematic tree.

    ``G_0 = [R_0 | J_0]``, ``G_k = G_parent(k) @ [R_k | J_k - J_parent(k)]``; the joints of one tree depth
    are composed together (3 batched products for MANO instead of 15).

    Args:
        rot_mats: (B, K, 3, 3) rotation of each joint relative to its parent (joint 0: global).
        rest_joints: (B, K, 3) joint locations in the rest pose, model frame, metres.
        parents: K parent indices (``parents[0] == -1``, ``parents[k] < k``), ints or a tensor.
    Returns:
        :class:`RigidTransforms` with (B, K, 4, 4) joint and skinning transforms.
    """
    sr = check_shape(rot_mats, "B K 3 3", "rot_mats")
    sj = check_shape(rest_joints, "B K 3", "rest_joints")
    if (sr["B"], sr["K"]) != (sj["B"], sj["K"]):
        raise ValueError(f"rot_mats {tuple(rot_mats.shape)} and rest_joints {tuple(rest_joints.shape)}: "
                         "batch size and joint count must agree")
    par = check_parents(parents)
    if len(par) != sr["K"]:
        raise ValueError(f"parents: expected {sr['K']} entries (one per joint), got {len(par)}")

    rel = rest_joints.clone()
    rel[:, 1:] = rest_joints[:, 1:] - rest_joints[:, list(par[1:])]
    bottom = rot_mats.new_tensor([0.0, 0.0, 0.0, 1.0]).expand(sr["B"], sr["K"], 1, 4)
    local = torch.cat([torch.cat([rot_mats, rel[..., None]], dim=-1), bottom], dim=-2)  # (B, K, 4, 4)

    frames: list[Tensor | None] = [None] * len(par)
    frames[0] = local[:, 0]
    for kids, kid_parents in _levels(par):
        parent_tf = torch.stack([frames[p] for p in kid_parents], dim=1)  # (B, n, 4, 4)
        composed = parent_tf @ local[:, list(kids)]
        for i, k in enumerate(kids):
            frames[k] = composed[:, i]
    joint_tf = torch.stack(frames, dim=1)  # (B, K, 4, 4)

    # skinning transform: same rotation, translation t - R J_rest
    rot = joint_tf[..., :3, :3]
    trans = joint_tf[..., :3, 3] - (rot @ rest_joints[..., None])[..., 0]
    skin_tf = torch.cat([torch.cat([rot, trans[..., None]], dim=-1), joint_tf[..., 3:, :]], dim=-2)
    return RigidTransforms(joint_transforms=joint_tf, skinning_transforms=skin_tf)


def skin_vertices(vertices: Tensor, weights: Tensor, skinning_transforms: Tensor) -> Tensor:
    """Linear blend skinning: blend the per-joint rigid transforms with per-vertex weights.

    Args:
        vertices: (B, V, 3) rest-pose vertices (with shape and pose blend shapes), model frame, metres.
        weights: (V, K) skinning weights (rows sum to 1 for MANO).
        skinning_transforms: (B, K, 4, 4) rest-pose -> posed transforms (see :class:`RigidTransforms`).
    Returns:
        (B, V, 3) posed vertices, model frame, metres.
    """
    sv = check_shape(vertices, "B V 3", "vertices")
    sw = check_shape(weights, "V K", "weights")
    st = check_shape(skinning_transforms, "B K 4 4", "skinning_transforms")
    if sv["V"] != sw["V"] or sw["K"] != st["K"] or sv["B"] != st["B"]:
        raise ValueError(f"vertices {tuple(vertices.shape)}, weights {tuple(weights.shape)} and "
                         f"skinning_transforms {tuple(skinning_transforms.shape)} disagree on B, V or K")
    top = skinning_transforms[:, :, :3, :].reshape(st["B"], st["K"], 12)  # (B, K, 12)
    blended = torch.matmul(weights, top).reshape(sv["B"], sv["V"], 3, 4)  # (B, V, 3, 4)
    # R v + t per vertex as three multiply-adds of (B, V, 3) columns (faster on CPU than a (B V)-batch of
    # 3x3 matmuls or a (B, V, 3, 3) broadcast product)
    out = torch.addcmul(blended[..., 3], blended[..., 0], vertices[..., 0:1])
    out = torch.addcmul(out, blended[..., 1], vertices[..., 1:2])
    return torch.addcmul(out, blended[..., 2], vertices[..., 2:3])


@dataclass(frozen=True)
class LbsResult:
    """Result of :func:`lbs`; every point in the model frame, metres (no translation applied)."""

    vertices: Tensor
    """(B, V, 3) posed vertices."""
    rest_joints: Tensor
    """(B, K, 3) joints of the shaped rest pose (regressed from ``v_template + shape blend shapes``)."""
    joint_transforms: Tensor
    """(B, K, 4, 4) posed joint frames (translation = posed joint); see :class:`RigidTransforms`."""
    skinning_transforms: Tensor
    """(B, K, 4, 4) rest-pose -> posed rigid transforms of each joint."""


def lbs(
    betas: Tensor,
    rot_mats: Tensor,
    v_template: Tensor,
    shapedirs: Tensor,
    posedirs: Tensor,
    j_regressor: Tensor,
    parents: Sequence[int],
    weights: Tensor,
) -> LbsResult:
    """The full MANO/SMPL forward: shape and pose blend shapes, joint regression, chain, skinning.

    Args:
        betas: (B, S) shape coefficients.
        rot_mats: (B, K, 3, 3) relative joint rotations (joint 0: global orientation), e.g. from
            :func:`~im2hands.hand.rotations.batch_rodrigues` of the (B, K, 3) axis-angle pose.
        v_template: (V, 3) template vertices, metres.
        shapedirs: (V, 3, S) shape blend shapes.
        posedirs: (V, 3, 9 (K - 1)) pose blend shapes.
        j_regressor: (K, V) joint regressor.
        parents: K parent indices (root first, parents before children).
        weights: (V, K) skinning weights.
    Returns:
        :class:`LbsResult`.
    """
    check_shape(v_template, "V 3", "v_template")
    v_shaped = v_template + blend_shapes(betas, shapedirs)  # (B, V, 3)
    rest_joints = vertices_to_joints(j_regressor, v_shaped)  # (B, K, 3)
    if rot_mats.shape[0] != betas.shape[0]:
        raise ValueError(f"rot_mats and betas: batch sizes differ ({rot_mats.shape[0]} vs {betas.shape[0]})")
    v_posed = v_shaped + pose_blend_shapes(rot_mats, posedirs)
    tfs = batch_rigid_transform(rot_mats, rest_joints, parents)
    vertices = skin_vertices(v_posed, weights, tfs.skinning_transforms)
    return LbsResult(vertices=vertices, rest_joints=rest_joints, joint_transforms=tfs.joint_transforms,
                     skinning_transforms=tfs.skinning_transforms)
