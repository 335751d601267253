"""Point-transformer encoder and query decoder of the refinement network (AIR-Nets layout).

The encoder turns a hand's 512 anchors (positions + per-anchor features) into a global latent and 128
local anchor latents; the decoder evaluates an occupancy logit at query points by vector attention over
each query's 9 nearest encoder anchors plus one global token.

Frames and units: every position here is in the *centred flipped camera frame* of the refinement network
(camera coordinates x [1, -1, -1] minus the centre of both hands' anchor bounding box), in metres.

Discrete choices follow the official code exactly:

- FPS (:func:`furthest_point_sample`) has the semantics of the ``pointnet2_ops`` CUDA kernel: index 0 first,
  running minimum squared distance starting at 1e10, float32 ``(dx*dx + dy*dy) + dz*dz`` distances, and
  points with squared norm <= 1e-3 are skipped (never selected, never updated).
- kNN (:func:`knn_indices`) ranks float32 squared distances computed from coordinate differences (never the
  expanded ``|a|^2 + |b|^2 - 2ab`` form, whose rounding can reorder near-ties); a point is its own neighbour.

Module attribute names equal the official ones so that official checkpoints load under the same keys.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from im2hands._checks import check_shape

FPS_SKIP_SQ_NORM = 1e-3
"""Squared norm (m^2) at or below which the official FPS kernel skips a point (a 3.16 cm ball)."""


# ----------------------------------------------------------------------------------------------------
# Pure functions: sampling, neighbours, gathering
# ----------------------------------------------------------------------------------------------------


def squared_distances(query: Tensor, points: Tensor) -> Tensor:
    """Squared Euclidean distances from coordinate differences, ``(dx*dx + dy*dy) + dz*dz`` in float32.

    Args:
        query: (B, Q, 3) positions.
        points: (B, P, 3) positions, same frame and units.
    Returns:
        (B, Q, P) squared distances; ``out[b, i, j] = |query[b, i] - points[b, j]|^2``.
    """
    d = query[:, :, None, :] - points[:, None, :, :]  # (B, Q, P, 3)
    d = d * d
    return d[..., 0] + d[..., 1] + d[..., 2]


def knn_indices(query: Tensor, points: Tensor, k: int) -> Tensor:
    """Indices of the `k` nearest `points` of every query point, nearest first.

    Args:
        query: (B, Q, 3) positions.
        points: (B, P, 3) positions, P >= k.
        k: number of neighbours.
    Returns:
        (B, Q, k) int64; if ``idx[b, i, r] = j`` then ``points[b, j]`` is the r-th nearest point to
        ``query[b, i]`` (a query that is itself in `points` is its own 0-th neighbour).
    """
    if k > points.shape[1]:
        raise ValueError(f"knn_indices: k={k} exceeds the number of points {points.shape[1]}")
    with torch.no_grad():
        dist = squared_distances(query, points)
        return dist.topk(k, dim=-1, largest=False, sorted=True).indices


def gather_points(values: Tensor, idx: Tensor) -> Tensor:
    """Rows of `values` picked per batch element.

    Args:
        values: (B, P, C).
        idx: (B, ...) int64 indices into P.
    Returns:
        (B, ..., C) with ``out[b, ...] = values[b, idx[b, ...]]``.
    """
    b = values.shape[0]
    flat = idx.reshape(b, -1)
    out = torch.gather(values, 1, flat[..., None].expand(-1, -1, values.shape[-1]))
    return out.reshape(*idx.shape, values.shape[-1])


def furthest_point_sample(xyz: Tensor, n_samples: int, *,
                          skip_sq_norm: float | None = FPS_SKIP_SQ_NORM) -> Tensor:
    """Furthest point sampling with the semantics of the official ``pointnet2_ops`` CUDA kernel.

    Index 0 is always taken first. Each further step takes the point with the largest running minimum
    squared distance to the points taken so far (the minimum starts at 1e10). Points whose squared norm
    is ``<= skip_sq_norm`` are skipped: never taken (except index 0) and never updated. If every point is
    skipped, the kernel's default index 0 is taken. Ties go to the lowest index (the kernel's rule within
    one CUDA thread; across threads its tree reduction may differ, which needs an exact float tie).

    Batched over B; the loop runs over the `n_samples` steps only.

    Args:
        xyz: (B, N, 3) float32 positions (centred frame: the skip ball is around the origin).
        n_samples: number of indices to draw (may exceed N: points repeat as in the kernel).
        skip_sq_norm: squared-norm threshold of the skip rule, in the units of `xyz` squared; None
            disables the rule (a plain FPS starting at index 0).
    Returns:
        (B, n_samples) int64 indices into N.
    """
    check_shape(xyz, "B N 3", "xyz")
    b, n, _ = xyz.shape
    if n_samples < 1:
        raise ValueError(f"furthest_point_sample: n_samples must be >= 1, got {n_samples}")
    with torch.no_grad():
        x, y, z = xyz[..., 0], xyz[..., 1], xyz[..., 2]
        mag = x * x + y * y + z * z
        skipped = mag <= skip_sq_norm if skip_sq_norm is not None else torch.zeros_like(mag, dtype=torch.bool)
        temp = torch.full((b, n), 1e10, dtype=xyz.dtype, device=xyz.device)
        out = torch.zeros((b, n_samples), dtype=torch.long, device=xyz.device)
        rows = torch.arange(b, device=xyz.device)
        old = out[:, 0]
        for j in range(1, n_samples):
            last = xyz[rows, old]  # (B, 3)
            dx = x - last[:, 0:1]
            dy = y - last[:, 1:2]
            dz = z - last[:, 2:3]
            d = dx * dx + dy * dy + dz * dz
            temp = torch.where(skipped, temp, torch.minimum(d, temp))
            score = temp.masked_fill(skipped, -1.0)  # the kernel's `best = -1` start
            old = score.argmax(dim=1)  # first maximum = lowest index
            out[:, j] = old
        return out


# ----------------------------------------------------------------------------------------------------
# Building blocks (official attribute names)
# ----------------------------------------------------------------------------------------------------


def _mlp2(d_in: int, d: int) -> nn.Sequential:
    """Linear(d_in, d) -> ReLU -> Linear(d, d): the positional-encoding and attention MLPs."""
    return nn.Sequential(nn.Linear(d_in, d), nn.ReLU(), nn.Linear(d, d))


def _bn(bn: nn.BatchNorm1d, x: Tensor) -> Tensor:
    """BatchNorm1d over the channel (last) dimension of a (..., C) tensor."""
    shape = x.shape
    return bn(x.reshape(-1, shape[-1])).reshape(shape)


def _conv1x1(conv: nn.Conv1d, x: Tensor) -> Tensor:
    """A kernel-1 Conv1d applied to a (..., C) tensor as a linear map."""
    return F.linear(x, conv.weight[:, :, 0], conv.bias)


class ElementwiseMLP(nn.Module):
    """Per-point MLP with residual: ``bn3(x + relu(bn2(conv2(relu(bn1(conv1(x)))))))``."""

    def __init__(self, dim: int):
        super().__init__()
        self.conv1 = nn.Conv1d(dim, dim, 1)
        self.bn1 = nn.BatchNorm1d(dim)
        self.conv2 = nn.Conv1d(dim, dim, 1)
        self.bn2 = nn.BatchNorm1d(dim)
        self.bn3 = nn.BatchNorm1d(dim)

    def forward(self, x: Tensor) -> Tensor:
        """(B, N, C) features -> (B, N, C)."""
        h = F.relu(_bn(self.bn1, _conv1x1(self.conv1, x)))
        h = F.relu(_bn(self.bn2, _conv1x1(self.conv2, h)))
        return _bn(self.bn3, x + h)


def _vector_attention(q: Tensor, k: Tensor, v: Tensor, pos: Tensor, gamma: nn.Sequential) -> Tensor:
    """Point-transformer vector attention: per-channel softmax over neighbours of gamma(q - k + pos).

    Args:
        q: (B, M, C) queries; k, v, pos: (B, M, K, C) neighbour keys, values, positional encodings.
    Returns:
        (B, M, C) = sum_k softmax_k(gamma(q - k + pos)) * (v + pos).
    """
    attn = torch.softmax(gamma(q[:, :, None] - k + pos), dim=-2)
    return (attn * (v + pos)).sum(dim=-2)


class TransformerBlock(nn.Module):
    """Point-transformer self-attention block over the k nearest points (or all points).

    ``out = bn(x + sum_k softmax_k(fc_gamma(w_qs x_i - w_ks x_k + d_ik)) * (w_vs x_k + d_ik))`` with
    ``d_ik = fc_delta(p_i - p_k)``.
    """

    def __init__(self, d_model: int, k: int, *, group_all: bool = False):
        super().__init__()
        self.bn = nn.BatchNorm1d(d_model)
        self.fc_delta = _mlp2(3, d_model)
        self.fc_gamma = _mlp2(d_model, d_model)
        self.w_qs = nn.Linear(d_model, d_model, bias=False)
        self.w_ks = nn.Linear(d_model, d_model, bias=False)
        self.w_vs = nn.Linear(d_model, d_model, bias=False)
        self.k = k
        self.group_all = group_all

    def forward(self, xyz: Tensor, feats: Tensor) -> Tensor:
        """xyz (B, N, 3) m, centred frame; feats (B, N, C) -> (B, N, C)."""
        if self.group_all:
            nb_xyz = xyz[:, None, :, :]  # (B, 1, N, 3): every point attends to all points
            k_all = self.w_ks(feats)[:, None]
            v_all = self.w_vs(feats)[:, None]
            pos = self.fc_delta(xyz[:, :, None] - nb_xyz)  # (B, N, N, C)
            res = _vector_attention(self.w_qs(feats), k_all, v_all, pos, self.fc_gamma)
        else:
            idx = knn_indices(xyz, xyz, self.k)  # (B, N, k)
            pos = self.fc_delta(xyz[:, :, None] - gather_points(xyz, idx))
            res = _vector_attention(self.w_qs(feats), gather_points(self.w_ks(feats), idx),
                                    gather_points(self.w_vs(feats), idx), pos, self.fc_gamma)
        return _bn(self.bn, res + feats)


class TransformerSetAbstraction(nn.Module):
    """Attentive set abstraction: FPS centres, two rounds of cross attention from each centre to its kNN.

    Note the positional encoding here is of ``neighbour - centre`` (the self-attention blocks use
    ``centre - neighbour``), as in the official code.
    """

    def __init__(self, npoint: int, nneigh: int, dim: int):
        super().__init__()
        self.npoint = npoint
        self.nneigh = nneigh
        self.bnorm0 = nn.BatchNorm1d(dim)
        self.bnorm1 = nn.BatchNorm1d(dim)
        self.bnorm2 = nn.BatchNorm1d(dim)
        self.bn1 = nn.BatchNorm1d(dim)
        self.conv1 = nn.Conv1d(dim, dim, 1)
        self.conv2 = nn.Conv1d(dim, dim, 1)
        self.fc_delta1 = _mlp2(3, dim)
        self.fc_gamma1 = _mlp2(dim, dim)
        self.fc_gamma2 = _mlp2(dim, dim)
        self.w_qs = nn.Linear(dim, dim, bias=False)
        self.w_ks = nn.Linear(dim, dim, bias=False)
        self.w_vs = nn.Linear(dim, dim, bias=False)
        self.w_qs2 = nn.Linear(dim, dim, bias=False)
        self.w_ks2 = nn.Linear(dim, dim, bias=False)
        self.w_vs2 = nn.Linear(dim, dim, bias=False)

    def forward(self, xyz: Tensor, feats: Tensor, *, fps_skip_sq_norm: float | None = FPS_SKIP_SQ_NORM
                ) -> tuple[Tensor, Tensor, Tensor]:
        """xyz (B, N, 3), feats (B, N, C) -> centres (B, S, 3), features (B, S, C), FPS indices (B, S).

        `fps_skip_sq_norm`: the FPS skip rule's threshold (None: no skip), see :func:`furthest_point_sample`.
        """
        fps_idx = furthest_point_sample(xyz, self.npoint, skip_sq_norm=fps_skip_sq_norm)
        new_xyz = gather_points(xyz, fps_idx)
        idx = knn_indices(new_xyz, xyz, self.nneigh)  # (B, S, K)
        pos = self.fc_delta1(gather_points(xyz, idx) - new_xyz[:, :, None])
        res1 = _vector_attention(gather_points(self.w_qs(feats), fps_idx), gather_points(self.w_ks(feats), idx),
                                 gather_points(self.w_vs(feats), idx), pos, self.fc_gamma1)
        res1 = res1 + _conv1x1(self.conv2, F.relu(_bn(self.bn1, _conv1x1(self.conv1, res1))))
        res1 = _bn(self.bnorm0, res1)
        res2 = _vector_attention(self.w_qs2(res1), gather_points(self.w_ks2(feats), idx),
                                 gather_points(self.w_vs2(feats), idx), pos, self.fc_gamma2)
        new_feats = _bn(self.bnorm1, res1 + res2) + gather_points(feats, fps_idx)
        return new_xyz, _bn(self.bnorm2, new_feats), fps_idx


class TransitionDown(nn.Module):
    """Holder of one set-abstraction stage (kept for the official ``transition_downs.{i}.sa.*`` keys)."""

    def __init__(self, npoint: int, nneigh: int, dim: int):
        super().__init__()
        self.sa = TransformerSetAbstraction(npoint, nneigh, dim)

    def forward(self, xyz: Tensor, feats: Tensor, *, fps_skip_sq_norm: float | None = FPS_SKIP_SQ_NORM
                ) -> tuple[Tensor, Tensor, Tensor]:
        return self.sa(xyz, feats, fps_skip_sq_norm=fps_skip_sq_norm)


# ----------------------------------------------------------------------------------------------------
# Encoder
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PointEncoding:
    """Output of :class:`PointTransformerEncoder` for one hand."""

    z: Tensor
    """(B, D) global latent (D = 256), before the two-hand context layer."""
    anchors: Tensor
    """(B, S, 3) encoder anchor positions (S = 128), metres, centred flipped camera frame."""
    anchor_feats: Tensor
    """(B, S, D) local latents of the encoder anchors."""
    fps_indices: tuple[Tensor, ...]
    """Per set-abstraction stage, (B, S_i) int64 FPS indices into that stage's input points."""


class PointTransformerEncoder(nn.Module):
    """AIR-Nets encoder (official ``PointTransformerEncoderV2`` with ``full_SA=True, has_features=True``).

    ``enc_sdf`` lifts the per-anchor features, a kNN transformer block mixes them, two attentive
    set-abstraction stages (512 -> 256 -> 128 points) each followed by element-wise MLPs and a kNN
    transformer block (``fc1`` widens 120 -> 256 after the first), three full self-attention blocks, then
    max-pool + ``fc_middle`` give the global latent.
    """

    def __init__(self, *, d_feat_in: int = 34, npoints: tuple[int, ...] = (512, 256, 128), nneighbor: int = 16,
                 nneighbor_reduced: int = 16, nfinal_transformers: int = 3, d_transformer: int = 256,
                 d_reduced: int = 120):
        super().__init__()
        self.npoints = tuple(npoints)
        self.fc_middle = _mlp2(d_transformer, d_transformer)
        self.enc_sdf = nn.Linear(d_feat_in, d_reduced)
        self.transformer_begin = TransformerBlock(d_reduced, nneighbor_reduced)
        self.transition_downs = nn.ModuleList()
        self.transformer_downs = nn.ModuleList()
        self.elementwise = nn.ModuleList()
        self.elementwise_extras = nn.ModuleList()
        if d_reduced != d_transformer:
            self.fc1 = nn.Linear(d_reduced, d_transformer)
        else:
            self.fc1 = None
        for i in range(len(npoints) - 1):
            dim = d_reduced if i == 0 else d_transformer
            self.transition_downs.append(TransitionDown(npoints[i + 1], min(nneighbor, npoints[i]), dim))
            self.elementwise_extras.append(ElementwiseMLP(dim))
            self.transformer_downs.append(TransformerBlock(dim, min(nneighbor, npoints[i + 1])))
            self.elementwise.append(ElementwiseMLP(d_transformer))
        self.final_transformers = nn.ModuleList(
            TransformerBlock(d_transformer, 2 * nneighbor, group_all=True) for _ in range(nfinal_transformers))
        self.final_elementwise = nn.ModuleList(ElementwiseMLP(d_transformer) for _ in range(nfinal_transformers))

    def forward(self, xyz: Tensor, feats: Tensor, *,
                fps_skip_sq_norm: float | None = FPS_SKIP_SQ_NORM) -> PointEncoding:
        """Encode one hand's anchors.

        Args:
            xyz: (B, A, 3) anchor positions, metres, centred flipped camera frame (A = 512 officially).
            feats: (B, A, d_feat_in) per-anchor input features (32 sampled image channels + hand one-hot).
            fps_skip_sq_norm: FPS skip-rule threshold, m² (official 1e-3; None disables the rule).
        Returns:
            :class:`PointEncoding`.
        """
        dims = check_shape(xyz, "B A 3", "xyz")
        fdims = check_shape(feats, f"B A {self.enc_sdf.in_features}", "feats")
        if dims != {k: fdims[k] for k in dims}:
            raise ValueError(f"xyz and feats: mismatched shapes {tuple(xyz.shape)} vs {tuple(feats.shape)}")
        if xyz.shape[1] < self.transformer_begin.k:
            raise ValueError(f"xyz: need at least {self.transformer_begin.k} anchors, got {xyz.shape[1]}")
        x = self.transformer_begin(xyz, self.enc_sdf(feats))
        fps = []
        for i, down in enumerate(self.transition_downs):
            xyz, x, idx = down(xyz, x, fps_skip_sq_norm=fps_skip_sq_norm)
            fps.append(idx)
            x = self.elementwise_extras[i](x)
            x = self.transformer_downs[i](xyz, x)
            if i == 0 and self.fc1 is not None:
                x = self.fc1(x)
            x = self.elementwise[i](x)
        for block, mlp in zip(self.final_transformers, self.final_elementwise):
            x = mlp(block(xyz, x))
        z = self.fc_middle(x.max(dim=1).values)
        return PointEncoding(z=z, anchors=xyz, anchor_feats=x, fps_indices=tuple(fps))


# ----------------------------------------------------------------------------------------------------
# Decoder
# ----------------------------------------------------------------------------------------------------


class CrossTransformerBlock(nn.Module):
    """Query -> anchor vector attention (official ``CrossTransformerBlock``, ``reduce_dim=True``).

    The attention query is ``w_qs(z)`` for every query point; keys/values are the ``nneigh`` nearest
    anchors' ``w_ks``/``w_vs`` latents plus one global token ``w_k_global(z)``/``w_v_global(z)`` whose
    positional encoding is zero; ``fc_delta(x_q - x_anchor)`` is the positional encoding.
    """

    def __init__(self, dim_inp: int, dim: int, nneigh: int):
        super().__init__()
        self.dim = dim
        self.nneigh = nneigh
        self.fc_delta = _mlp2(3, dim)
        self.fc_gamma = _mlp2(dim, dim)
        self.w_k_global = nn.Linear(dim_inp, dim, bias=False)
        self.w_v_global = nn.Linear(dim_inp, dim, bias=False)
        self.w_qs = nn.Linear(dim_inp, dim, bias=False)
        self.w_ks = nn.Linear(dim_inp, dim, bias=False)
        self.w_vs = nn.Linear(dim_inp, dim, bias=False)


class ResnetBlockFC(nn.Module):
    """``x + fc_1(relu(fc_0(relu(x))))`` (equal in/out size, no shortcut layer)."""

    def __init__(self, size: int):
        super().__init__()
        self.fc_0 = nn.Linear(size, size)
        self.fc_1 = nn.Linear(size, size)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.fc_1(F.relu(self.fc_0(F.relu(x))))


@dataclass(frozen=True)
class DecoderCache:
    """Everything of the decoder that depends only on one hand's encoding, computed once per encoding.

    All (B, S, C) tensors are per encoder anchor (S = 128, C = decoder width 200).
    """

    anchors: Tensor
    """(B, S, 3) encoder anchor positions, metres, centred flipped camera frame."""
    anchor_delta: Tensor
    """(B, S, C) ``fc_delta[0].weight @ anchor``: the anchor's share of the first positional layer."""
    values: Tensor
    """(B, S, C) ``w_vs(anchor latent) + fc_delta[2].bias`` (the positional bias folded in)."""
    gamma_pre: Tensor
    """(B, S, C) ``fc_gamma[0](w_qs(z) - w_ks(anchor latent) + fc_delta[2].bias)``: the first attention
    layer without the query-dependent part of the positional term."""
    global_logit: Tensor
    """(B, C) attention logit of the global token, ``fc_gamma(w_qs(z) - w_k_global(z))`` minus
    ``fc_gamma[2].bias`` (a shift common to all logits of a channel, which the softmax cancels)."""
    global_value: Tensor
    """(B, C) value of the global token, ``w_v_global(z)``."""


class PointTransformerDecoderOcc(nn.Module):
    """AIR-Nets occupancy decoder (official ``PointTransformerDecoderOcc``, ``return_feature=True``).

    Per query: cross attention over its 9 nearest encoder anchors + the global token (``ct1``), then
    ``init_enc`` on [attention output (200) | query features (64)], five ResNet blocks each preceded by
    ``+ fc_c[i](attention output)``, and ``fc_out`` -> one logit (no tanh).

    Two evaluation paths compute the same function: :meth:`forward_reference` follows the official order
    of operations step by step; :meth:`forward` precomputes the per-anchor terms once
    (:meth:`precompute`), shares the anchor part of the first positional layer (linear in ``q - a``),
    evaluates the constant global token once, and runs the rest as large matrix products in chunks.
    """

    def __init__(self, dim_inp: int = 256, dim: int = 200, nneigh: int = 9, hidden_dim: int = 32,
                 n_blocks: int = 5, d_query_feat: int = 64):
        super().__init__()
        self.dim = dim
        self.n_blocks = n_blocks
        self.d_query_feat = d_query_feat
        self.ct1 = CrossTransformerBlock(dim_inp, dim, nneigh)
        self.init_enc = nn.Linear(dim + d_query_feat, hidden_dim)
        self.blocks = nn.ModuleList(ResnetBlockFC(hidden_dim) for _ in range(n_blocks))
        self.fc_c = nn.ModuleList(nn.Linear(dim, hidden_dim) for _ in range(n_blocks))
        self.fc_out = nn.Linear(hidden_dim, 1)

    # -- checks ------------------------------------------------------------------------------------

    def _check(self, xyz_q: Tensor, query_feat: Tensor, z: Tensor, anchors: Tensor, z_dim: int) -> None:
        q = check_shape(xyz_q, "B N 3", "xyz_q")
        f = check_shape(query_feat, f"B N {self.d_query_feat}", "query_feat")
        zz = check_shape(z, f"B {z_dim}", "z")
        a = check_shape(anchors, "B S 3", "anchors")
        if not (q["B"] == f["B"] == zz["B"] == a["B"]) or q["N"] != f["N"]:
            raise ValueError(f"decoder inputs disagree: xyz_q {tuple(xyz_q.shape)}, query_feat "
                             f"{tuple(query_feat.shape)}, z {tuple(z.shape)}, anchors {tuple(anchors.shape)}")
        if a["S"] < self.ct1.nneigh:
            raise ValueError(f"anchors: need at least {self.ct1.nneigh} anchors, got {a['S']}")

    # -- reference path ----------------------------------------------------------------------------

    def forward_reference(self, xyz_q: Tensor, query_feat: Tensor, z: Tensor, anchors: Tensor,
                          anchor_feats: Tensor) -> Tensor:
        """Logits in the official order of operations (the straightforward implementation).

        Args:
            xyz_q: (B, N, 3) query positions, metres, centred flipped camera frame.
            query_feat: (B, N, 64) per-query features (sampled image feature | initial occupancy x32).
            z: (B, 256) global latent after the context layer.
            anchors: (B, S, 3) encoder anchors; anchor_feats: (B, S, 256) their latents.
        Returns:
            (B, N) occupancy logits.
        """
        self._check(xyz_q, query_feat, z, anchors, self.ct1.w_qs.in_features)
        ct = self.ct1
        b, n, _ = xyz_q.shape
        idx = knn_indices(xyz_q, anchors, ct.nneigh)  # (B, N, k)
        q = ct.w_qs(z)[:, None].expand(b, n, -1)
        k_glob = ct.w_k_global(z)[:, None, None].expand(b, n, 1, -1)
        v_glob = ct.w_v_global(z)[:, None, None].expand(b, n, 1, -1)
        k = torch.cat([gather_points(ct.w_ks(anchor_feats), idx), k_glob], dim=2)
        v = torch.cat([gather_points(ct.w_vs(anchor_feats), idx), v_glob], dim=2)
        pos = ct.fc_delta(xyz_q[:, :, None] - gather_points(anchors, idx))
        pos = torch.cat([pos, pos.new_zeros(b, n, 1, self.dim)], dim=2)
        lat = _vector_attention(q, k, v, pos, ct.fc_gamma)  # (B, N, C)
        net = self.init_enc(torch.cat([lat, query_feat], dim=2))
        for fc_c, block in zip(self.fc_c, self.blocks):
            net = block(net + fc_c(lat))
        return self.fc_out(net)[..., 0]

    # -- fast path ---------------------------------------------------------------------------------

    def precompute(self, z: Tensor, anchors: Tensor, anchor_feats: Tensor) -> DecoderCache:
        """Per-anchor and global terms of one hand's encoding (see :class:`DecoderCache`).

        Args:
            z: (B, 256) global latent after the context layer.
            anchors: (B, S, 3) encoder anchors, metres, centred flipped camera frame.
            anchor_feats: (B, S, 256) encoder anchor latents.
        """
        ct = self.ct1
        q = ct.w_qs(z)  # (B, C)
        b_pos = ct.fc_delta[2].bias  # the positional encoding's bias, folded into the anchor tables
        gamma_pre = ct.fc_gamma[0](q[:, None] - ct.w_ks(anchor_feats) + b_pos)
        # fc_gamma's output bias is common to all k + 1 attention logits: the softmax cancels it
        global_logit = ct.fc_gamma[2](F.relu(ct.fc_gamma[0](q - ct.w_k_global(z)))) - ct.fc_gamma[2].bias
        return DecoderCache(anchors=anchors, anchor_delta=anchors @ ct.fc_delta[0].weight.T,
                            values=ct.w_vs(anchor_feats) + b_pos, gamma_pre=gamma_pre,
                            global_logit=global_logit, global_value=ct.w_v_global(z))

    def scratch(self, n_queries: int, like: Tensor) -> Tensor:
        """Scratch memory for :meth:`forward` without autograd: (3, n_queries * nneigh, C), dtype/device of
        `like`. Pass it to several ``forward`` calls (each with at most `n_queries` queries per chunk) to
        allocate it once."""
        return like.new_empty(3, n_queries * self.ct1.nneigh, self.dim)

    def forward(self, xyz_q: Tensor, query_feat: Tensor, cache: DecoderCache, *,
                chunk_size: int = 16384, scratch: Tensor | None = None, bf16: bool = False) -> Tensor:
        """Logits from a precomputed :class:`DecoderCache`; same function as :meth:`forward_reference`.

        Args:
            xyz_q: (B, N, 3) query positions, metres, centred flipped camera frame.
            query_feat: (B, N, 64) per-query features.
            cache: :meth:`precompute` of the hand's encoding.
            chunk_size: queries evaluated at once, summed over batch rows (bounds memory: three
                scratch buffers of ``chunk_size * 9 * 200 * 4`` bytes, about 22 kB per query).
            scratch: optional :meth:`scratch` buffer for at least ``chunk_size`` queries, reused instead of
                allocating one per call (used only when autograd is off).
            bf16: without autograd, run the three per-neighbour 200x200 matrix products (positional encoding,
                both attention layers) on bfloat16 inputs with float32 accumulation; everything else (the
                differences to the anchors, the softmax, the head) stays float32. The refined stage measured
                1.17x faster on an AVX512-BF16 CPU; logits stay within 2 % of their spread on the golden
                weights (``docs/PERFORMANCE.md``). Ignored when autograd is on or the scratch is not float32.
        Returns:
            (B, N) occupancy logits.
        """
        self._check(xyz_q, query_feat, cache.global_value, cache.anchors, self.dim)
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        b, n, _ = xyz_q.shape
        work = None
        step = max(1, chunk_size // max(b, 1))  # queries per batch row and chunk
        # reuse three scratch buffers across chunks (no autograd; not under autocast, whose products would not
        # match the float32 buffers)
        if not torch.is_grad_enabled() and not torch.is_autocast_enabled(xyz_q.device.type):
            rows = b * min(n, step) * self.ct1.nneigh
            if scratch is not None and scratch.shape[0] == 3 and scratch.shape[1] >= rows \
                    and scratch.shape[2] == self.dim:
                work = scratch
            else:
                work = xyz_q.new_empty(3, rows, self.dim)
        if bf16 and work is not None and work.dtype == torch.float32:
            tables = self._bf16_tables(cache)
            outs = [self._forward_chunk_bf16(xyz_q[:, s:s + step], query_feat[:, s:s + step], cache, tables, work)
                    for s in range(0, n, step)]
        else:
            outs = [self._forward_chunk(xyz_q[:, s:s + step], query_feat[:, s:s + step], cache, work)
                    for s in range(0, n, step)]
        return torch.cat(outs, dim=1) if outs else xyz_q.new_zeros(b, 0)

    def _forward_chunk(self, xyz_q: Tensor, query_feat: Tensor, cache: DecoderCache,
                       work: Tensor | None) -> Tensor:
        """One chunk of :meth:`forward`; `work` is (3, >= B*n*k, C) scratch for the no-grad path."""
        ct = self.ct1
        b, n, _ = xyz_q.shape
        s = cache.anchors.shape[1]
        c = self.dim
        k = ct.nneigh
        rows, q_delta, g_glob, v_glob = self._chunk_terms(xyz_q, cache)
        w_d2 = ct.fc_delta[2].weight
        w_g1, w_g2 = ct.fc_gamma[0].weight, ct.fc_gamma[2].weight

        def table(t: Tensor, out: Tensor | None = None) -> Tensor:  # (B, S, C) -> (B*n*k, C)
            return torch.index_select(t.reshape(b * s, c), 0, rows, out=out)

        if work is None:  # autograd-friendly, out of place
            h = torch.relu(q_delta - table(cache.anchor_delta).view(b * n, k, c)).view(-1, c)
            pos = h @ w_d2.T  # (B*n*k, C) positional encoding minus its bias (folded into the tables)
            g = torch.relu(table(cache.gamma_pre) + pos @ w_g1.T)
            g = (g @ w_g2.T).view(b * n, k, c)  # attention logits minus their common bias
            vals = table(cache.values).view(b * n, k, c) + pos.view(b * n, k, c)
            m = torch.maximum(g.amax(dim=1), g_glob)  # (B*n, C)
            e = torch.exp(g - m[:, None])
            num = (e * vals).sum(dim=1)
        else:  # same operations in place in the scratch buffers
            nk = b * n * k
            buf_a, buf_b, buf_c = work[0, :nk], work[1, :nk], work[2, :nk]
            h = table(cache.anchor_delta, buf_a).view(b * n, k, c)
            h = torch.sub(q_delta, h, out=h).relu_().view(-1, c)
            pos = torch.mm(h, w_d2.T, out=buf_b)
            g = table(cache.gamma_pre, buf_a).addmm_(pos, w_g1.T).relu_()
            g = torch.mm(g, w_g2.T, out=buf_c).view(b * n, k, c)
            vals = table(cache.values, buf_a).view(b * n, k, c).add_(pos.view(b * n, k, c))
            m = torch.maximum(g.amax(dim=1), g_glob)
            e = g.sub_(m[:, None]).exp_()
            num = vals.mul_(e).sum(dim=1)
        return self._attend_and_head(num, e, m, g_glob, v_glob, query_feat, b, n)

    def _chunk_terms(self, xyz_q: Tensor, cache: DecoderCache) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Per chunk: (rows (B*n*k,) into the (B*S, C) per-anchor tables, one per (query, neighbour); the
        query's share of the first positional layer (B*n, 1, C); the global token's logit and value
        (B*n, C) each)."""
        ct = self.ct1
        b, n, _ = xyz_q.shape
        idx = knn_indices(xyz_q, cache.anchors, ct.nneigh)  # (B, n, k)
        rows = (idx + torch.arange(b, device=idx.device).view(b, 1, 1) * cache.anchors.shape[1]).view(-1)
        # first positional layer, linear in (q - a): (W q + b) - (W a)
        q_delta = torch.addmm(ct.fc_delta[0].bias, xyz_q.reshape(-1, 3), ct.fc_delta[0].weight.T)
        return (rows, q_delta.view(b * n, 1, self.dim), cache.global_logit.repeat_interleave(n, dim=0),
                cache.global_value.repeat_interleave(n, dim=0))

    def _attend_and_head(self, num: Tensor, e: Tensor, m: Tensor, g_glob: Tensor, v_glob: Tensor,
                         query_feat: Tensor, b: int, n: int) -> Tensor:
        """Finish the softmax over the k neighbours (numerator `num`, weights `e`, both shifted by the max
        `m`) and the global token (logit g_glob, value v_glob), then the head."""
        e_glob = torch.exp(g_glob - m)
        lat = (num + e_glob * v_glob) / (e.sum(dim=1) + e_glob)  # (B*n, C)
        return self._head(lat.view(b, n, self.dim), query_feat)

    def _bf16_tables(self, cache: DecoderCache) -> dict[str, Tensor]:
        """bfloat16 copies of the three product weights (transposed) and of the attention table."""
        ct = self.ct1
        bf = torch.bfloat16
        return {"d2": ct.fc_delta[2].weight.T.to(bf).contiguous(), "g1": ct.fc_gamma[0].weight.T.to(bf).contiguous(),
                "g2": ct.fc_gamma[2].weight.T.to(bf).contiguous(), "gamma_pre": cache.gamma_pre.to(bf)}

    def _forward_chunk_bf16(self, xyz_q: Tensor, query_feat: Tensor, cache: DecoderCache,
                            tables: dict[str, Tensor], work: Tensor) -> Tensor:
        """:meth:`_forward_chunk` (no-grad path) with the three (B*n*k, C) x (C, C) products in bfloat16.

        Buffers: work[0] float32 (anchor differences, then values), work[1] float32 (logits), work[2] as two
        bfloat16 halves (positional encoding / product inputs and outputs)."""
        b, n, _ = xyz_q.shape
        s = cache.anchors.shape[1]
        c = self.dim
        k = self.ct1.nneigh
        nk = b * n * k
        rows, q_delta, g_glob, v_glob = self._chunk_terms(xyz_q, cache)
        f32_a, f32_b = work[0, :nk], work[1, :nk]
        halves = work[2].view(-1)[:2 * nk * c].view(torch.bfloat16)   # 2 * nk * c bfloat16 in nk * c floats
        bf_a, bf_b = halves[:nk * c].view(nk, c), halves[nk * c:2 * nk * c].view(nk, c)
        # the difference to the anchors in float32 (it cancels), rounded to bfloat16 for the product
        h = torch.index_select(cache.anchor_delta.reshape(b * s, c), 0, rows, out=f32_a).view(b * n, k, c)
        h = torch.sub(q_delta, h, out=h).relu_().view(-1, c)
        bf_a.copy_(h)
        pos = torch.mm(bf_a, tables["d2"], out=bf_b)
        g = torch.index_select(tables["gamma_pre"].reshape(b * s, c), 0, rows, out=bf_a)
        g = g.addmm_(pos, tables["g1"]).relu_()
        vals = torch.index_select(cache.values.reshape(b * s, c), 0, rows, out=f32_a).add_(pos)
        g = f32_b.copy_(torch.mm(g, tables["g2"], out=bf_b)).view(b * n, k, c)   # pos is no longer needed
        vals = vals.view(b * n, k, c)
        m = torch.maximum(g.amax(dim=1), g_glob)
        e = g.sub_(m[:, None]).exp_()
        num = vals.mul_(e).sum(dim=1)
        return self._attend_and_head(num, e, m, g_glob, v_glob, query_feat, b, n)

    def _head(self, lat: Tensor, query_feat: Tensor) -> Tensor:
        """init_enc + ResNet blocks + fc_out on (B, n, C) attention outputs; the five fc_c and the
        attention part of init_enc are one stacked matrix product."""
        b, n, c = lat.shape
        hidden = self.init_enc.out_features
        w_lat = torch.cat([self.init_enc.weight[:, :c]] + [f.weight for f in self.fc_c], dim=0)
        b_lat = torch.cat([self.init_enc.bias] + [f.bias for f in self.fc_c], dim=0)
        proj = torch.addmm(b_lat, lat.reshape(-1, c), w_lat.T)  # (B*n, 6*hidden)
        net = torch.addmm(proj[:, :hidden], query_feat.reshape(-1, self.d_query_feat),
                          self.init_enc.weight[:, c:].T)
        for i, block in enumerate(self.blocks):
            net = block(net + proj[:, hidden * (i + 1):hidden * (i + 2)])
        return self.fc_out(net).view(b, n)
