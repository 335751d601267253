"""Keypoint canonicalisation: 21 keypoints of one hand -> 16 unposing bone transforms, bone lengths, root rotation.

This is the preprocessing that feeds the occupancy networks (HALO's pose converter as used by the official
Im2Hands ``preprocess_joints``). For one hand it computes

- the **root rotation** ``root_rot_mat`` (4x4): rotates wrist-relative world points (left hands x-mirrored)
  into the hand's canonical frame (the wrist->middle-MCP bone along -y before HALO's axis swap, the palm
  normal along +z; then the axes are permuted (x, y, z) -> (y, z, x));
- the **unposing transforms** ``unpose`` (16 x 4x4, float64): for each of the 16 parts (palm, index1-3,
  middle1-3, pinky1-3, ring1-3, thumb1-3; :data:`im2hands.hand.skeleton.PART_NAMES`) the transform that
  maps a query point ``p`` (as ``[p / 0.4, 1]``) into that bone's straightened canonical pose;
- the **bone lengths** (16, metres) of those parts, palm = wrist -> middle MCP.

Query space (see ``docs/CONVENTIONS.md``): ``p = R0 (x - wrist) / 0.4`` with ``R0 = root_rot_mat[:3, :3]``
and the left hand mirrored in x first; :func:`points_to_query` and :func:`query_to_points` convert (defined in :mod:`im2hands.hand.frames`,
re-exported here).

``official_quirks=True`` reproduces the official dtype sequence (several float32 casts inside a float64
computation), so results equal the official numbers to float64 round-off (unpose) and bit for bit (float32
outputs). ``official_quirks=False`` runs everything in float64: differentiable, and within 2.3e-5 of the
official unpose entries on the golden hands (the official float32 casts are the difference).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from im2hands._checks import check_shape, check_tensor
from im2hands.hand import skeleton
from im2hands.hand.frames import QUERY_SCALE, SideArg, points_to_query, query_to_points, side_mask, side_mirror

__all__ = ["QUERY_SCALE", "Canonical", "CanonicalDetailed", "canonicalise", "canonicalise_detailed",
           "points_to_query", "query_to_points"]

# --- index tables (all derived from skeleton.py's joint orders) ----------------------------------------
_HALO_FROM_INTERNAL = list(skeleton.HALO_FROM_INTERNAL)
_BIOMECH_FROM_HALO = list(skeleton.BIOMECH_FROM_HALO)
_HALO_FROM_BIOMECH = list(skeleton.HALO_FROM_BIOMECH)
# The 16 parts (PART_NAMES = ("palm",) + MANO[1:16]): part b starts at HALO joint b, ends at its child.
_PART_START_HALO = list(range(16))
_PART_CHILD_HALO = [skeleton.HALO.index("middle1")] + [
    next(c for c, p in enumerate(skeleton.HALO_PARENTS) if p == j) for j in _PART_START_HALO[1:]
]
"""Bone-length pairs (HALO indices): palm = wrist -> middle1, then each phalanx from its joint to its child."""
# A bone's posed -> canonical transform is stored at its child joint (the wrist's is the palm's identity).
_PART_TF_HALO = [0] + _PART_CHILD_HALO[1:]
# HALO's pose converter: bone i (0..19, biomech order) goes from joint _BONE_PARENT[i] to joint i + 1.
_BONE_PARENT = [0] * 5 + list(range(1, 16))
_ROOT_PLANE_ANGLES = (0.8, 0.2, 0.2)
"""Canonical angles between the root-bone planes (thumb|index, middle|ring, ring|pinky), radians."""
_ROOT_BONE_ANGLES = (0.4, 0.2, 0.2, 0.2)
"""Canonical angles between adjacent root bones (thumb-index, index-middle, middle-ring, ring-pinky)."""

MIN_BONE_LENGTH = 1e-6
"""Bones shorter than this (metres) are degenerate input."""
MIN_PALM_SINE = 1e-5
"""Sine of the angle between two root bones (wrist -> MCP) below which they count as collinear."""


class Canonical(NamedTuple):
    """Canonicalisation of a batch of hands (B hands)."""

    unpose: Tensor
    """(B, 16, 4, 4) float64: part b's transform; the canonical coordinates of a query point ``p`` for bone b
    are ``(unpose[b] @ [p / 0.4, 1])[:3]`` (the 0.4 scalings are inside). Parts in
    ``skeleton.PART_NAMES`` order."""
    bone_lengths: Tensor
    """(B, 16) metres, parts in ``skeleton.PART_NAMES`` order (palm = wrist -> middle MCP). float32 with
    official dtypes, else float64."""
    root_rot_mat: Tensor
    """(B, 4, 4) rotation (zero translation): ``R0 = root_rot_mat[:3, :3]`` maps wrist-relative world
    vectors (left hands x-mirrored) to the canonical query frame (column vectors, ``q = R0 v``); the
    official model applies it to row vectors, ``[0.4 p, 1] @ root_rot_mat``, which is the inverse. float32
    with official dtypes, else float64."""
    wrist: Tensor
    """(B, 3) wrist position in the input frame and dtype (not mirrored), metres."""


class CanonicalDetailed(NamedTuple):
    """:class:`Canonical` plus the intermediate stages of the official computation (for golden checks)."""

    canonical: Canonical
    joints_halo: Tensor
    """(B, 21, 3) wrist-relative joints in HALO order, left hands x-mirrored; float32 with official dtypes."""
    glo_rot: Tensor
    """(B, 4, 4) float64: global normalisation (before the axis swap), root-relative world -> canonical."""
    canon_joints_biomech: Tensor
    """(B, 21, 3) float64: joints in the canonical frame (after the axis swap), biomech order."""
    posed_to_canonical_21: Tensor
    """(B, 21, 4, 4) float64: per-joint posed -> straightened-canonical transforms (HALO order, metres,
    before part selection and the 0.4 scalings; joint 0 is the identity)."""


# --- input handling ------------------------------------------------------------------------------------

def _side_name(is_right: Tensor, b: int) -> str:
    return "right" if bool(is_right[b]) else "left"


def _check_degenerate(joints: Tensor, is_right: Tensor) -> None:
    """Raise ``ValueError`` naming the hand and joint(s) if the keypoints cannot be canonicalised."""
    with torch.no_grad():
        j = joints.detach().to(torch.float64)
        bad = ~torch.isfinite(j).all(-1)  # (B, 21)
        if bool(bad.any()):
            b, k = (int(i) for i in bad.nonzero()[0])
            raise ValueError(f"joints: hand {b} ({_side_name(is_right, b)}) joint {skeleton.INTERNAL[k]!r} "
                             f"is not finite: {j[b, k].tolist()}")
        par = torch.tensor([p for p, _ in skeleton.BONES_INTERNAL], device=j.device)
        chi = torch.tensor([c for _, c in skeleton.BONES_INTERNAL], device=j.device)
        length = (j[:, chi] - j[:, par]).norm(dim=-1)  # (B, 20)
        short = length < MIN_BONE_LENGTH
        if bool(short.any()):
            b, i = (int(x) for x in short.nonzero()[0])
            p, c = skeleton.BONES_INTERNAL[i]
            raise ValueError(
                f"joints: hand {b} ({_side_name(is_right, b)}) has a zero-length bone: joint "
                f"{skeleton.INTERNAL[c]!r} coincides with {skeleton.INTERNAL[p]!r} (length {length[b, i]:.3g} m "
                f"< {MIN_BONE_LENGTH:g} m)")
        # Root bones wrist -> MCP; HALO builds planes from adjacent pairs and the palm frame from
        # index/middle, so each adjacent pair must span a plane.
        mcp = [skeleton.INTERNAL.index(f"{f}1") for f in skeleton.FINGERS]
        root = j[:, mcp] - j[:, :1]  # (B, 5, 3) thumb..pinky
        root = root / root.norm(dim=-1, keepdim=True)
        pairs = [(1, 2), (0, 1), (2, 3), (3, 4)]  # index/middle first: the palm plane
        first = torch.tensor([a for a, _ in pairs], device=j.device)
        second = torch.tensor([c for _, c in pairs], device=j.device)
        sine = torch.linalg.cross(root[:, first], root[:, second], dim=-1).norm(dim=-1)  # (B, 4)
        flat = sine < MIN_PALM_SINE
        if bool(flat.any()):
            b, k = (int(x) for x in flat.nonzero()[0])
            a, c = pairs[k]
            what = "the palm is degenerate" if k == 0 else "root bones are collinear"
            raise ValueError(
                f"joints: hand {b} ({_side_name(is_right, b)}): {what}: 'wrist', "
                f"{skeleton.INTERNAL[mcp[a]]!r} and {skeleton.INTERNAL[mcp[c]]!r} are collinear "
                f"(sine {sine[b, k]:.3g} < {MIN_PALM_SINE:g})")


# --- HALO's vector helpers (same operations and dtype promotions as the official code) --------------

class _Ctx:
    """Working dtypes: ``lo`` is float32 where the official code casts to float32, else float64."""

    def __init__(self, lo: torch.dtype, device):
        self.lo = lo
        self.device = device
        self.eps6 = torch.tensor(1e-6, dtype=lo, device=device)  # converter.eps
        self.eps9 = torch.tensor(1e-9, dtype=lo, device=device)  # PoseConverter.eps_mat
        self.eps8 = torch.tensor(1e-8, dtype=lo, device=device)  # normalize()
        self.eps10 = torch.tensor([1e-10], dtype=lo, device=device)  # angle2()
        one = torch.ones(1, dtype=lo, device=device)
        self.clip_lo = -one + self.eps6
        self.clip_hi = one - self.eps6
        self.eye3 = torch.eye(3, dtype=lo, device=device)


def _cross64(a: Tensor, b: Tensor) -> Tensor:
    return torch.linalg.cross(a.double(), b.double(), dim=-1)


def _normalize(v: Tensor, c: _Ctx) -> Tensor:
    return v / torch.max(torch.norm(v, dim=-1, keepdim=True), c.eps8)


def _angle2(v1: Tensor, v2: Tensor, c: _Ctx) -> Tensor:
    n1 = v1 / torch.max(torch.norm(v1, dim=-1, keepdim=True), c.eps10)
    n2 = v2 / torch.max(torch.norm(v2, dim=-1, keepdim=True), c.eps10)
    return 2 * torch.atan2(torch.norm(n1 - n2, dim=-1), torch.norm(n1 + n2, dim=-1))


def _signed_angle(v1: Tensor, v2: Tensor, ref: Tensor, c: _Ctx) -> Tensor:
    ang = _angle2(v1, v2, c)
    neg = (ref * _cross64(v1, v2)).sum(-1) < 0
    return torch.where(neg, -ang, ang)


def _rotation_matrix(angles: Tensor, axis: Tensor, c: _Ctx) -> Tensor:
    """Rodrigues: (n,) or (n, 1) angles, (n, 3) unit axes -> (n, 3, 3); dtype promotes like the official."""
    n = angles.shape[0]
    sina = torch.sin(angles).view(n, 1, 1)
    cos1 = (1 - torch.cos(angles)).view(n, 1, 1)
    a = axis.view(n, 3)
    o = torch.zeros((n, 1), dtype=c.lo, device=a.device)
    a0, a1, a2 = a[:, 0:1], a[:, 1:2], a[:, 2:3]
    cprod = torch.cat((o, -a2, a1, a2, o, -a0, -a1, a0, o), 1).view(n, 3, 3)
    return c.eye3.view(1, 3, 3) + cprod * sina + cprod.bmm(cprod) * cos1


def _alignment_mat(v1: Tensor, v2: Tensor, c: _Ctx) -> Tensor:
    """Rotation R (n, 3, 3) with R v1 along v2."""
    axis = _normalize(_cross64(v1, v2), c)
    return _rotation_matrix(_angle2(v1, v2, c), axis, c)


def _rotate_axis_angle(v: Tensor, k: Tensor, theta: Tensor, c: _Ctx) -> Tensor:
    """Rodrigues on vectors with the official casts: cross in ``lo``, the rest promoted."""
    cos = torch.cos(theta)
    return (v * cos + torch.linalg.cross(k, v.to(c.lo), dim=-1) * torch.sin(theta)
            + k * (k * v).sum(-1, keepdim=True) * (1 - cos))


def _rotate(v: Tensor, ax: Tensor, rad: Tensor) -> Tensor:
    """Rodrigues on vectors with a float64 cross product (HALO's ``rotate``)."""
    return (v * torch.cos(rad) + _cross64(ax, v) * torch.sin(rad)
            + ax * (ax * v).sum(-1, keepdim=True) * (1 - torch.cos(rad)))


def _clip(x: Tensor, c: _Ctx) -> Tensor:
    return torch.min(torch.max(x, c.clip_lo), c.clip_hi)


def _flexion_abduction(v: Tensor, c: _Ctx, y_sign_positive: bool) -> tuple[Tensor, Tensor]:
    """Angles of vectors v (..., 3) (float ``lo``): flexion in the xz plane from +z, abduction out of it."""
    proj = torch.stack([v[..., 0], torch.zeros_like(v[..., 1]), v[..., 2]], -1)  # xz_mat @ v (exact)
    norm_xz = torch.max(torch.norm(proj, dim=-1), c.eps9)
    dot = proj[..., 2]  # proj @ z_axis (exact)
    dot = torch.where(torch.abs(dot) < 1e-6, torch.zeros_like(dot), dot)
    ang_xz = torch.acos(_clip(dot / norm_xz, c))
    ang_xz = torch.where((proj[..., 0] + 1e-6) < 0, -ang_xz, ang_xz)
    dot_yz = (proj * v).sum(-1) / norm_xz
    ang_yz = torch.acos(_clip(dot_yz, c))
    if y_sign_positive:  # compute_rot_angles: negative when the bone is on the +y side
        cond = (v[..., 1] + 1e-6) > 0
    else:  # compute_local_coordinate_system: negative when on the -y side
        cond = (v[..., 1] + 1e-6) < 0
    return ang_xz, torch.where(cond, -ang_yz, ang_yz)


# --- the stages ---------------------------------------------------------------------------------------

def _global_transform(kp: Tensor, c: _Ctx) -> Tensor:
    """(B, 21, 3) float64 biomech joints -> (B, 3, 4) float64 canonical transform (HALO's
    ``compute_canonical_transform`` for right hands)."""
    bs = kp.shape[0]
    dev = kp.device
    t_t = torch.zeros((bs, 3, 4), dtype=c.lo, device=dev)
    t_t[:, :, 3] = -kp[:, 0]
    t_t[:, 0, 0] = 1
    t_t[:, 1, 1] = 1
    t_t[:, 2, 2] = 1
    y_axis = torch.tensor([[0.0, -1.0, 0.0]], dtype=c.lo, device=dev).expand(bs, 3)
    z_axis = torch.tensor([[0.0, 0.0, 1.0]], dtype=c.lo, device=dev).expand(bs, 3)
    v_mrb = _normalize(kp[:, 3] - kp[:, 0], c)
    r_1 = _alignment_mat(v_mrb, y_axis, c)
    v_irb = _normalize(kp[:, 2] - kp[:, 0], c)
    normal = _cross64(v_mrb, v_irb).view(-1, 1, 3)
    normal_rot = torch.matmul(normal, r_1.transpose(1, 2)).view(-1, 3)
    r_2 = _alignment_mat(normal_rot, z_axis, c)
    return torch.bmm(r_2.double(), torch.bmm(r_1.double(), t_t.double()))


def _xyz1(x: Tensor, c: _Ctx) -> Tensor:
    return torch.cat([x, torch.ones((*x.shape[:-1], 1), dtype=c.lo, device=x.device)], dim=-1)


def _pad44(m: Tensor, c: _Ctx) -> Tensor:
    """(..., 3, 3) or (..., 3, 4) -> (..., 4, 4) with last row [0, 0, 0, 1] (and zero last column)."""
    if m.shape[-1] == 3:
        m = torch.cat([m, torch.zeros((*m.shape[:-1], 1), dtype=c.lo, device=m.device)], dim=-1)
    row = torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=c.lo, device=m.device).expand(*m.shape[:-2], 1, 4)
    return torch.cat([m, row], dim=-2)


def _expand20(mats5: list[Tensor]) -> Tensor:
    """Five per-finger (B, 3, 3) matrices -> (B, 20, 3, 3), bone i uses finger i % 5."""
    m = torch.stack(mats5, dim=1)
    return m[:, [i % 5 for i in range(20)]]


def _normalize_root_planes(bones: Tensor, c: _Ctx) -> tuple[Tensor, Tensor]:
    b0, b1, b2, b3, b4 = (bones[:, i] for i in range(5))
    eye = c.eye3.expand(bones.shape[0], 3, 3)
    n1 = torch.linalg.cross(b2, b1, dim=-1)
    n0 = torch.linalg.cross(b1, b0, dim=-1)
    thumb = _rotation_matrix(_signed_angle(n0, n1, b1, c) - _ROOT_PLANE_ANGLES[0], b1, c)
    n2 = torch.linalg.cross(b3, b2, dim=-1)
    ring = _rotation_matrix(_signed_angle(n2, n1, b2, c) + _ROOT_PLANE_ANGLES[1], b2, c)
    b3 = torch.matmul(ring, b3.unsqueeze(-1)).squeeze(-1)
    b4 = torch.matmul(ring, b4.unsqueeze(-1)).squeeze(-1)
    n3 = torch.linalg.cross(b4, b3, dim=-1)
    n2 = torch.linalg.cross(b3, b2, dim=-1)
    pinky = _rotation_matrix(_signed_angle(n3, n2, b3, c) + _ROOT_PLANE_ANGLES[2], b3, c)
    mats = _expand20([thumb.to(c.lo), eye, eye, ring.to(c.lo), torch.matmul(pinky, ring).to(c.lo)])
    new_bones = torch.matmul(mats.double(), bones.unsqueeze(-1).double()).squeeze(-1)
    return new_bones, mats


def _normalize_root_bone_angles(bones: Tensor, c: _Ctx) -> tuple[Tensor, Tensor]:
    b0, b1, b2, b3, b4 = (bones[:, i] for i in range(5))
    eye = c.eye3.expand(bones.shape[0], 3, 3)
    ang = _ROOT_BONE_ANGLES
    n1 = _normalize(_cross64(b2, b1), c)
    index = _rotation_matrix(ang[1] - _signed_angle(b2, b1, n1, c), n1, c)
    b1 = torch.matmul(index, b1.unsqueeze(-1)).squeeze(-1)
    b0 = torch.matmul(index, b0.unsqueeze(-1)).squeeze(-1)
    n0 = _normalize(_cross64(b1, b0), c)
    thumb = _rotation_matrix(ang[0] - _signed_angle(b1, b0, n0, c), n0, c)
    n2 = _normalize(_cross64(b3, b2), c)
    ring = _rotation_matrix(_signed_angle(b3, b2, n2, c) - ang[2], n2, c)
    b3 = torch.matmul(ring, b3.unsqueeze(-1)).squeeze(-1)
    b4 = torch.matmul(ring, b4.unsqueeze(-1)).squeeze(-1)
    n3 = _normalize(_cross64(b4, b3), c)
    pinky = _rotation_matrix(_signed_angle(b4, b3, n3, c) - ang[3], n3, c)
    mats = _expand20([torch.matmul(thumb, index).to(c.lo), index.to(c.lo), eye, ring.to(c.lo),
                      torch.matmul(pinky, ring).to(c.lo)])
    new_bones = torch.matmul(mats.double(), bones.unsqueeze(-1).double()).squeeze(-1)
    return new_bones, mats


def _local_coordinate_systems(bones: Tensor, c: _Ctx) -> Tensor:
    """(B, 20, 3) float64 unit bones -> (B, 20, 3, 3) per-bone frames (rows x, y, z), dtype ``lo``."""
    bs = bones.shape[0]
    root = bones[:, :5]
    normals = torch.linalg.cross(root[:, :-1], root[:, 1:], dim=-1)
    normals = normals / torch.max(torch.norm(normals, dim=-1, keepdim=True), c.eps9)
    finger_normals = torch.stack([
        normals[:, 0], normals[:, 1], (normals[:, 1] + normals[:, 2]) / 2,
        (normals[:, 2] + normals[:, 3]) / 2, normals[:, 3]], dim=1).to(c.lo)
    z = root
    y = torch.linalg.cross(root.double(), finger_normals.double(), dim=-1)
    x = torch.linalg.cross(y, z, dim=-1)
    x = x / torch.max(torch.norm(x, dim=-1, keepdim=True), c.eps9)
    y = y / torch.max(torch.norm(y, dim=-1, keepdim=True), c.eps9)
    levels = [c.eye3.expand(bs, 5, 3, 3), torch.stack([x.to(c.lo), y.to(c.lo), z.to(c.lo)], dim=2)]
    y_axis = torch.tensor([0.0, 1.0, 0.0], dtype=c.lo, device=bones.device).expand(bs, 5, 3)
    x_axis = torch.tensor([1.0, 0.0, 0.0], dtype=c.lo, device=bones.device).expand(bs, 5, 3)
    for lev in (2, 3):
        parent = bones[:, (lev - 1) * 5:lev * 5]
        p_coord = levels[-1]  # (B, 5, 3, 3)
        lbv = torch.matmul(p_coord.to(c.lo), parent.unsqueeze(-1).to(c.lo)).squeeze(-1)
        ang_xz, ang_yz = _flexion_abduction(lbv, c, y_sign_positive=False)
        ang_xz = ang_xz.unsqueeze(-1)
        ang_yz = ang_yz.unsqueeze(-1)
        axis_xz = p_coord[..., 1, :]  # p_coord^T @ y_axis (exact)
        axis_y = _rotate_axis_angle(x_axis, y_axis, ang_xz, c)
        axis_y = torch.matmul(p_coord.transpose(2, 3), axis_y.unsqueeze(-1)).squeeze(-1)
        keep = torch.abs(ang_xz) < c.eps6
        x = torch.where(keep, x, _rotate_axis_angle(x, axis_xz, ang_xz, c))
        y = torch.where(keep, y, _rotate_axis_angle(y, axis_xz, ang_xz, c))
        z = torch.where(keep, z, _rotate_axis_angle(z, axis_xz, ang_xz, c))
        keep = torch.abs(ang_yz) < c.eps6
        x = torch.where(keep, x, _rotate_axis_angle(x, axis_y, -ang_yz, c))
        y = torch.where(keep, y, _rotate_axis_angle(y, axis_y, -ang_yz, c))
        z = torch.where(keep, z, _rotate_axis_angle(z, axis_y, -ang_yz, c))
        levels.append(torch.stack([x.to(c.lo), y.to(c.lo), z.to(c.lo)], dim=2))
    return torch.cat(levels, dim=1)


def _rotation_to_straight(local_coords: Tensor, c: _Ctx) -> Tensor:
    """(B, 20, 3) bone directions in their local frames -> (B, 20, 3, 3) rotations that straighten them
    (identity for the 5 root bones); dtype ``lo``."""
    bs = local_coords.shape[0]
    ang_xz, ang_yz = _flexion_abduction(local_coords, c, y_sign_positive=True)
    flex = ang_xz.reshape(bs * 20, 1)
    abd = ang_yz.reshape(bs * 20, 1)
    x = torch.zeros((bs * 20, 3), dtype=c.lo, device=local_coords.device)
    x[:, 0] = 1.0
    y = torch.zeros_like(x)
    y[:, 1] = 1.0
    rotated_x = _rotate(x, y, flex)
    r_1 = _rotation_matrix(-abd, rotated_x, c)
    r_2 = _rotation_matrix(-flex, y, c)
    r = torch.bmm(r_2.to(c.lo), r_1.to(c.lo)).reshape(bs, 20, 3, 3)
    return torch.cat([c.eye3.expand(bs, 5, 3, 3), r[:, 5:]], dim=1)


def _pose_converter(kp: Tensor, c: _Ctx) -> Tensor:
    """HALO's PoseConverter (straight hand, right hands): (B, 21, 3) float64 canonical joints (biomech
    order, metres) -> (B, 21, 4, 4) float64 posed -> canonical transforms (biomech order)."""
    bs = kp.shape[0]
    parent = kp[:, _BONE_PARENT]
    bones = kp[:, 1:] - parent
    lengths = torch.max(torch.norm(bones, dim=2, keepdim=True), c.eps9)  # (B, 20, 1) float64
    bones = bones / lengths
    # kp_to_bone = diag(1/len) @ translate(-parent): the exact entries of that product.
    inv_len = 1.0 / lengths
    kp_to_bone = torch.zeros((bs, 20, 4, 4), dtype=torch.float64, device=kp.device)
    idx = torch.arange(3, device=kp.device)
    kp_to_bone[:, :, idx, idx] = inv_len.expand(bs, 20, 3)
    kp_to_bone[:, :, :3, 3] = inv_len * (-parent).to(c.lo)
    kp_to_bone[:, :, 3, 3] = 1.0

    bones, plane_mats = _normalize_root_planes(bones, c)
    bones, angle_mats = _normalize_root_bone_angles(bones, c)
    root_norm = torch.matmul(angle_mats, plane_mats)  # (B, 20, 3, 3) lo

    local_cs = _local_coordinate_systems(bones.double(), c)
    bones_lo = bones.to(c.lo).unsqueeze(-1)
    local_coords = torch.matmul(local_cs.to(c.lo), bones_lo).squeeze(-1)
    rot = _rotation_to_straight(local_coords, c)

    # compute_adjusted_transpose
    lev2_rot = rot[:, 5:10]
    lev3_rot = torch.matmul(rot[:, 10:15], lev2_rot)
    cs_t = local_cs.transpose(-2, -1)
    cs_t = torch.cat([cs_t[:, :10], torch.matmul(cs_t[:, 10:15], lev2_rot),
                      torch.matmul(cs_t[:, 15:20], lev3_rot)], dim=1)
    unpose_rot = torch.matmul(cs_t, torch.matmul(rot, local_cs))  # (B, 20, 3, 3) lo
    after = torch.matmul(unpose_rot.to(c.lo), bones_lo).squeeze(-1)  # (B, 20, 3) lo

    # compute_bone_to_kp_mat: scale back by the bone lengths, translate along the kinematic chain.
    scaled = after * lengths  # float64
    lev2 = scaled[:, 0:5]
    lev3 = scaled[:, 5:10] + lev2
    lev4 = scaled[:, 10:15] + lev3
    trans = torch.cat([torch.zeros((bs, 5, 3), dtype=c.lo, device=kp.device), lev2, lev3, lev4], dim=1)
    bone_to_kp = torch.zeros((bs, 20, 4, 4), dtype=torch.float64, device=kp.device)
    bone_to_kp[:, :, idx, idx] = lengths.expand(bs, 20, 3)
    bone_to_kp[:, :, :3, 3] = trans
    bone_to_kp[:, :, 3, 3] = 1.0

    m = torch.matmul(_pad44(root_norm.to(c.lo), c), kp_to_bone.to(c.lo))
    m = torch.matmul(_pad44(unpose_rot, c), m)
    m = torch.matmul(bone_to_kp, m.double())
    root = torch.eye(4, dtype=torch.float64, device=kp.device).expand(bs, 1, 4, 4)
    return torch.cat([root, m], dim=1)


# --- public API ----------------------------------------------------------------------------------------

def canonicalise_detailed(joints: Tensor, side: SideArg, *, official_quirks: bool = True) -> CanonicalDetailed:
    """:func:`canonicalise` plus the intermediate stages (see :class:`CanonicalDetailed`)."""
    check_tensor(joints, "joints")
    check_shape(joints, "B 21 3", "joints")
    if not joints.dtype.is_floating_point:
        raise TypeError(f"joints: expected a floating-point tensor, got {joints.dtype}")
    bs = joints.shape[0]
    is_right = side_mask(side, bs, joints.device)
    if bs == 0:
        raise ValueError("joints: empty batch (B = 0)")
    _check_degenerate(joints, is_right)

    lo = torch.float32 if official_quirks else torch.float64
    c = _Ctx(lo, joints.device)
    j64 = joints.to(torch.float64)
    rel = (j64 - j64[:, :1])[:, _HALO_FROM_INTERNAL]  # wrist-relative, HALO order (float64)
    mirror = side_mirror(is_right, bs, dtype=torch.float64, device=joints.device)
    joints_halo = (rel * mirror).to(lo)  # left hands mirrored; the official float32 cast

    kp = joints_halo[:, _BIOMECH_FROM_HALO].double()
    t = _global_transform(kp, c)  # (B, 3, 4) float64
    kp_canon = torch.matmul(t.unsqueeze(1), _xyz1(kp, c).unsqueeze(-1)).squeeze(-1)
    glo_rot = _pad44(t, c)  # (B, 4, 4) float64
    canon = kp_canon[..., [1, 2, 0]]  # change_axes: (x, y, z) <- (y, z, x)
    swap = torch.zeros((4, 4), dtype=lo, device=joints.device)
    swap[0, 1] = swap[1, 2] = swap[2, 0] = swap[3, 3] = 1.0
    root_rot_mat = torch.matmul(swap.unsqueeze(0), glo_rot.to(lo))  # (B, 4, 4) lo

    posed_to_canon = _pose_converter(canon, c)[:, _HALO_FROM_BIOMECH]  # (B, 21, 4, 4) float64, HALO order
    part_tf = posed_to_canon[:, _PART_TF_HALO]  # (B, 16, 4, 4)
    # unpose = S^-1 T S S with S = diag(s, s, s, 1): the official products with diagonal matrices,
    # entry by entry in the same order. The official s is float32(0.4).
    s = torch.tensor([QUERY_SCALE] * 3 + [1.0], dtype=lo, device=joints.device).double()
    inv = torch.tensor([1.0 / QUERY_SCALE] * 3 + [1.0], dtype=lo, device=joints.device).double()
    unpose = ((part_tf * s) * inv.unsqueeze(-1)) * s

    # Bone lengths from the float32 joints rotated by the float32 root_rot_mat (as official).
    org = torch.matmul(root_rot_mat.unsqueeze(1), _xyz1(joints_halo, c).unsqueeze(-1))[..., :3, 0]
    d = org[:, _PART_START_HALO] - org[:, _PART_CHILD_HALO]
    sq = d * d
    # numpy's norm (official): sum in order, correctly rounded sqrt; torch's float32 sqrt is not correctly
    # rounded on CPU, while a float64 sqrt rounded to float32 is.
    bone_lengths = torch.sqrt(((sq[..., 0] + sq[..., 1]) + sq[..., 2]).double()).to(lo)

    out = Canonical(unpose=unpose, bone_lengths=bone_lengths, root_rot_mat=root_rot_mat,
                    wrist=joints[:, 0])
    with torch.no_grad():
        bad = ~(torch.isfinite(unpose).flatten(1).all(1) & torch.isfinite(bone_lengths).all(1))
    if bool(bad.any()):
        b = int(bad.nonzero()[0, 0])
        raise ValueError(f"joints: hand {b} ({_side_name(is_right, b)}) is degenerate: its canonicalisation "
                         "is not finite (check for coincident or collinear joints)")
    return CanonicalDetailed(out, joints_halo, glo_rot, canon, posed_to_canon)


def canonicalise(joints: Tensor, side: SideArg, *, official_quirks: bool = True) -> Canonical:
    """Canonicalise a batch of hands: 21 keypoints -> unposing transforms, bone lengths, root rotation.

    Args:
        joints: (B, 21, 3) keypoints in the internal (manopth) order, metres, any frame (only the wrist-
            relative positions matter). float32 or float64; the official input is float64.
        side: ``"right"`` or ``"left"`` for the whole batch, or a (B,) bool tensor ``is_right``. Left hands
            are x-mirrored and handled as right hands, as officially.
        official_quirks: reproduce the official dtype sequence (float32 casts; matches the official
            numbers to float64 round-off). ``False`` computes everything in float64 (differentiable,
            within ~2.3e-5 of the official unpose entries) and returns float64 throughout. Gradients
            flow through every stage in both modes (the official converter detaches its per-bone frames,
            which changes no value; it never back-propagates through this preprocessing).
    Returns:
        :class:`Canonical` (unpose (B, 16, 4, 4) float64, bone_lengths (B, 16), root_rot_mat (B, 4, 4),
        wrist (B, 3)).
    Raises:
        ValueError: wrong shape, non-finite joints, a zero-length bone, or collinear root bones (e.g.
            wrist, index1 and middle1 on one line); the message names the hand (batch index, side) and
            the joint(s).
    """
    return canonicalise_detailed(joints, side, official_quirks=official_quirks).canonical
