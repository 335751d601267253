"""Multi-head self-attention and IntagHand's query-image attention (``img_ex``), split for reuse.

Official source of facts: IntagHand ``models/model_attn/self_attn.py`` (``SelfAttn``, ``MLP_res_block``) and
``img_attn.py`` (``img_feat_to_grid``, ``img_attn``, ``img_ex``), as used by Im2Hands' init_occ (one per hand)
and kpts_ref (one per hand and GCN stage). Module and parameter names are the official ones.

How the official ``img_ex`` works, for a feature map ``img`` (B, C, S, S) and query tokens (B, N, D):

1. **Grid encoder** (``encoder``): a Conv2d with kernel = stride = S/G patchifies the map into G² tokens,
   then ReLU, + a learned positional embedding, + one :class:`SelfAttn` over the G² tokens -> (B, G², F).
2. **Query attention** (``attn``): ``attn.fc`` maps the grid tokens F -> D; each query token is put in
   front of the G² grid tokens (a sequence of 1 + G²), the sequence goes through ``attn.Attn`` (a
   :class:`SelfAttn` of width D) and the output at position 0 is the query's new feature.

Only position 0 of that sequence is ever read, and it depends on the grid tokens only through their keys
and values. This module therefore splits the computation: :meth:`ImageAttention.prepare` computes the grid
tokens and their per-head keys and values **once per image** (a :class:`GridContext`), and
:meth:`ImageAttention.attend` evaluates any number of query batches against it, each query attending to
itself and the G² grid tokens (softmax over 1 + G² scores), with no (N, 1 + G², 1 + G²) attention matrix
and no copy of the grid per query. The result is the official function (golden-tested).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from im2hands._checks import check_shape, check_tensor


def _xavier(module: nn.Module) -> None:
    """Official initialisation of the attention modules: Xavier-uniform Linear/Conv2d, zero Linear bias."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.xavier_uniform_(m.weight)
        elif isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class MLPResBlock(nn.Module):
    """Pre-LayerNorm feed-forward block with a residual: ``x + fc2(relu(fc1(LN(x))))`` (``MLP_res_block``)."""

    def __init__(self, dim: int, hidden_dim: int, dropout: float = 0.0):
        super().__init__()
        self.layer_norm = nn.LayerNorm(dim, eps=1e-6)
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.fc2 = nn.Linear(hidden_dim, dim)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        """(..., dim) -> (..., dim)."""
        h = self.fc2(self.dropout1(F.relu(self.fc1(self.layer_norm(x)))))
        return x + self.dropout2(h)


def _split_heads(x: Tensor, n_heads: int) -> Tensor:
    """(B, T, h*d) -> (B, h, T, d)."""
    b, t, hd = x.shape
    return x.view(b, t, n_heads, hd // n_heads).transpose(1, 2)


def _merge_heads(x: Tensor) -> Tensor:
    """(B, h, T, d) -> (B, T, h*d)."""
    b, h, t, d = x.shape
    return x.transpose(1, 2).reshape(b, t, h * d)


class SelfAttn(nn.Module):
    """Pre-LayerNorm multi-head self-attention + residual, then an :class:`MLPResBlock` (``SelfAttn``).

    ``y = x + fc(MHA(LN(x)))``; ``out = y + FFN(LN'(y))``. Heads have ``d_q = d_v = dim // n_heads``
    channels unless given; scores are divided by ``sqrt(d_q)``; LayerNorm eps is 1e-6.
    """

    def __init__(self, dim: int, *, n_heads: int, d_q: int | None = None, d_v: int | None = None,
                 hidden_dim: int | None = None, dropout: float = 0.0):
        super().__init__()
        if n_heads < 1 or dim < n_heads:
            raise ValueError(f"n_heads: expected 1 <= n_heads <= dim ({dim}), got {n_heads}")
        self.dim = dim
        self.n_heads = n_heads
        self.d_q = d_q or dim // n_heads
        self.d_v = d_v or dim // n_heads
        self.scale = self.d_q ** 0.5
        self.w_qs = nn.Linear(dim, n_heads * self.d_q)
        self.w_ks = nn.Linear(dim, n_heads * self.d_q)
        self.w_vs = nn.Linear(dim, n_heads * self.d_v)
        self.layer_norm = nn.LayerNorm(dim, eps=1e-6)
        self.fc = nn.Linear(n_heads * self.d_v, dim)
        self.ff = MLPResBlock(dim, hidden_dim or dim, dropout)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        """Full self-attention over a sequence: (B, T, dim) -> (B, T, dim)."""
        xn = self.layer_norm(x)
        q = _split_heads(self.w_qs(xn), self.n_heads)            # (B, h, T, d_q)
        k = _split_heads(self.w_ks(xn), self.n_heads)
        v = _split_heads(self.w_vs(xn), self.n_heads)            # (B, h, T, d_v)
        attn = self.dropout1(F.softmax(torch.matmul(q, k.transpose(-1, -2)) / self.scale, dim=-1))
        out = _merge_heads(torch.matmul(attn, v))                # (B, T, h*d_v)
        x = x + self.dropout2(self.fc(out))
        return self.ff(x)

    def keys_values(self, context: Tensor) -> tuple[Tensor, Tensor]:
        """Per-head keys (B, h, T, d_q) and values (B, h, T, d_v) of context tokens (B, T, dim)."""
        cn = self.layer_norm(context)
        return _split_heads(self.w_ks(cn), self.n_heads), _split_heads(self.w_vs(cn), self.n_heads)

    def first_position(self, x: Tensor, keys: Tensor, values: Tensor) -> Tensor:
        """Output at position 0 of ``forward(cat([x_i, context]))`` for every query ``x_i``.

        Args:
            x: (B, N, dim) query tokens; each one is the first element of its own sequence.
            keys, values: (B, h, T, d) from :meth:`keys_values` of the T context tokens that follow it.
        Returns:
            (B, N, dim) — equal to ``forward(cat([x[:, i:i+1], context], 1))[:, 0]`` for each i.
        """
        xn = self.layer_norm(x)
        q = _split_heads(self.w_qs(xn), self.n_heads)            # (B, h, N, d_q)
        k0 = _split_heads(self.w_ks(xn), self.n_heads)
        v0 = _split_heads(self.w_vs(xn), self.n_heads)           # (B, h, N, d_v)
        s_self = (q * k0).sum(-1, keepdim=True) / self.scale     # (B, h, N, 1): the query with itself
        s_ctx = torch.matmul(q, keys.transpose(-1, -2)) / self.scale  # (B, h, N, T)
        attn = self.dropout1(F.softmax(torch.cat([s_self, s_ctx], dim=-1), dim=-1))
        out = attn[..., :1] * v0 + torch.matmul(attn[..., 1:], values)  # (B, h, N, d_v)
        x = x + self.dropout2(self.fc(_merge_heads(out)))
        return self.ff(x)


class GridEncoder(nn.Module):
    """``img_feat_to_grid``: patchify conv (kernel = stride = S/G) -> ReLU -> + position embedding -> SelfAttn."""

    def __init__(self, *, img_size: int, img_dim: int, grid_size: int, grid_dim: int, n_heads: int,
                 dropout: float = 0.0):
        super().__init__()
        if img_size % grid_size:
            raise ValueError(f"grid_size: must divide img_size ({img_size}), got {grid_size}")
        self.img_size, self.img_dim, self.grid_size, self.grid_dim = img_size, img_dim, grid_size, grid_dim
        self.position_embeddings = nn.Embedding(grid_size * grid_size, grid_dim)
        patch = img_size // grid_size
        self.proj = nn.Conv2d(img_dim, grid_dim, kernel_size=patch, stride=patch)
        self.self_attn = SelfAttn(grid_dim, n_heads=n_heads, hidden_dim=grid_dim, dropout=dropout)

    def forward(self, img: Tensor) -> Tensor:
        """(B, img_dim, S, S) feature map -> (B, G², grid_dim) grid tokens, row-major over the G x G grid."""
        check_shape(img, f"B {self.img_dim} {self.img_size} {self.img_size}", "img_feat")
        tokens = F.relu(self.proj(img)).flatten(2).transpose(1, 2)   # (B, G², F)
        return self.self_attn(tokens + self.position_embeddings.weight)


class QueryImageAttention(nn.Module):
    """``img_attn``: each query token attends to itself and the grid tokens (projected by ``fc``)."""

    def __init__(self, *, query_dim: int, grid_dim: int, n_heads: int, dropout: float = 0.0):
        super().__init__()
        self.query_dim, self.grid_dim = query_dim, grid_dim
        self.fc = nn.Linear(grid_dim, query_dim)
        self.Attn = SelfAttn(query_dim, n_heads=n_heads, hidden_dim=query_dim, dropout=dropout)

    def forward(self, queries: Tensor, keys: Tensor, values: Tensor) -> Tensor:
        """(B, N, query_dim) queries + grid keys/values (B, h, G², d) -> (B, N, query_dim)."""
        return self.Attn.first_position(queries, keys, values)


@dataclass(frozen=True)
class GridContext:
    """What one image contributes to the query-image attention; compute once, reuse for every query batch."""

    tokens: Tensor
    """(B, G², grid_dim) grid tokens after the grid self-attention (row-major over the G x G grid)."""
    keys: Tensor
    """(B, h, G², d_q) per-head keys of the grid tokens in ``attn.Attn``."""
    values: Tensor
    """(B, h, G², d_v) per-head values of the grid tokens in ``attn.Attn``."""


class ImageAttention(nn.Module):
    """IntagHand's ``img_ex``: grid encoder (``encoder.*``) + query attention (``attn.*``).

    Use ``ctx = m.prepare(img_feat)`` once per image and ``m.attend(ctx, queries)`` for each query batch;
    ``m(img_feat, queries)`` does both.
    """

    def __init__(self, *, img_size: int, img_dim: int, grid_size: int, grid_dim: int, query_dim: int,
                 n_heads: int, dropout: float = 0.01):
        super().__init__()
        self.query_dim = query_dim
        self.encoder = GridEncoder(img_size=img_size, img_dim=img_dim, grid_size=grid_size, grid_dim=grid_dim,
                                   n_heads=n_heads, dropout=dropout)
        self.attn = QueryImageAttention(query_dim=query_dim, grid_dim=grid_dim, n_heads=n_heads, dropout=dropout)
        _xavier(self)

    def prepare(self, img_feat: Tensor) -> GridContext:
        """Grid tokens and their keys/values for a feature map.

        Args:
            img_feat: (B, img_dim, img_size, img_size) image feature map.
        Returns:
            :class:`GridContext` for those B images.
        """
        check_tensor(img_feat, "img_feat")
        tokens = self.encoder(img_feat)
        keys, values = self.attn.Attn.keys_values(self.attn.fc(tokens))
        return GridContext(tokens=tokens, keys=keys, values=values)

    def attend(self, ctx: GridContext, queries: Tensor) -> Tensor:
        """Query tokens (B, N, query_dim) attend to the grid of their own image -> (B, N, query_dim)."""
        check_tensor(queries, "queries")
        size = check_shape(queries, f"B N {self.query_dim}", "queries")
        if size["B"] != ctx.keys.shape[0]:
            raise ValueError(f"queries and ctx: mismatched batch size ({size['B']} vs {ctx.keys.shape[0]}); "
                             "each query row must come with its own image's GridContext")
        return self.attn(queries, ctx.keys, ctx.values)

    def forward(self, img_feat: Tensor, queries: Tensor) -> Tensor:
        """``attend(prepare(img_feat), queries)``: (B, img_dim, S, S), (B, N, query_dim) -> (B, N, query_dim)."""
        return self.attend(self.prepare(img_feat), queries)
