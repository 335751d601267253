"""Part occupancy decoder of the initial occupancy network: one MLP per bone, evaluated as batched matmuls.

This is the official ``PiecewiseDeformableDecoderPIFu`` (HALO's piecewise decoder with an image feature
added before layer 2), with the settings Im2Hands uses: 16 bones, ``projection='x'``,
``global_projection='o'``, 8-dim global pose projection, 16-dim bone-length latent, 4 hidden layers of
width 64, image feature of 19 dims concatenated before layer 2, LeakyReLU(0.1), no norm, no dropout.

Per bone ``b`` and decoder point ``q = p / 0.4`` (``p`` in the hand's query space, ``0.4 p`` = metres):

- ``x_b = (unpose_b @ [q, 1])[:3]``: the point in bone b's canonical frame;
- layer-0 input (28): ``[x_b (3), len_b (1), bone_latent (16), global_proj_b (8)]`` with
  ``bone_latent = bone_encoder(bone_lengths)`` (16 -> 40, clamp >= 0, -> 16) and
  ``global_proj_b = Linear_b(translation columns of the 16 unpose matrices (48))``;
- ``a0 = lrelu(L0(in))``, ``a1 = lrelu(L1(a0) + a0)``, ``a2 = lrelu(L2([a1, f]) + a1)``,
  ``a3 = lrelu(L3(a2) + a2)``, ``logit_b = L4(a3)``, with ``f`` the 19-dim image feature of the point.

Speed: nothing here loops over bones per point. The per-bone weights are stacked once per call into
(16, in, out) tensors and every layer is one batched GEMM over all bones; the residual is folded into the
weights (``W + I``); the biases of layers 0-2 are weight rows of constant-1 input columns (see ``forward``);
everything constant over the points of a row (bone length, bone latent, global projection, and in default
mode the bone transform itself) is folded into a per-(row, bone) layer-0 bias.
The state dict keeps the official names (``global_proj{b}``, ``bone_encoder.linear{1,2}``, ``lin{b}_{i}``)
so official checkpoints load by name.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

NUM_BONES = 16
HIDDEN = 64
NUM_LAYERS = 5  # lin{b}_0 .. lin{b}_4
IMG_FEAT_DIM = 19
GLOBAL_PROJ_DIM = 8
BONE_LATENT_DIM = 16
BONE_ENCODER_HIDDEN = 40
LEAKY_SLOPE = 0.1
QUERY_SCALE = 0.4
"""Query space: ``0.4 * p`` is metres. The decoder reads ``p / 0.4`` (official ``sub_p``)."""


class BoneLengthEncoder(nn.Module):
    """The official ``TwoLayerNet``: Linear(16, 40), clamp(min=0), Linear(40, 16)."""

    def __init__(self, num_bones: int = NUM_BONES, hidden: int = BONE_ENCODER_HIDDEN,
                 out_dim: int = BONE_LATENT_DIM):
        super().__init__()
        self.linear1 = nn.Linear(num_bones, hidden)
        self.linear2 = nn.Linear(hidden, out_dim)

    def forward(self, bone_lengths: Tensor) -> Tensor:
        """(B, 16) bone lengths in metres -> (B, 16) bone-length latent."""
        return self.linear2(self.linear1(bone_lengths).clamp(min=0))


@dataclass(frozen=True)
class HandCode:
    """Everything the decoder needs that is constant over the points of a batch row.

    ``bone_latent`` and ``global_proj`` are the official intermediates; ``layer0_bias`` folds them (and the
    bone length) through the last 25 input columns of each bone's first layer.
    """

    bone_latent: Tensor
    """(B, 16) ``bone_encoder(bone_lengths)``, float32."""
    global_proj: Tensor
    """(B, 16, 8) per-bone projection of the 16x3 unpose translation columns, float32."""
    layer0_bias: Tensor
    """(B, 16, 64) ``b0_b + W0_b[:, 3:] @ [len_b, bone_latent, global_proj_b]``, float32."""
    unpose: Tensor
    """(B, 16, 4, 4) the unposing transforms cast to float32 (canonical query frame / 0.4 -> bone frame)."""


@dataclass(frozen=True)
class StackedWeights:
    """The 16 part-MLPs' weights stacked over bones, laid out for ``x @ W`` (input dim first)."""

    w0_xyz: Tensor
    """(16, 3, 64) first-layer columns that multiply the bone-frame coordinates."""
    w0_rest: Tensor
    """(16, 25, 64) first-layer columns that multiply [len_b, bone_latent, global_proj_b]."""
    b0: Tensor
    """(16, 64)."""
    w1: Tensor
    """(16, 64, 64) ``W1^T + I`` (residual folded in)."""
    b1: Tensor
    """(16, 1, 64)."""
    w2_hidden: Tensor
    """(16, 64, 64) ``W2[:, :64]^T + I``."""
    w2_img: Tensor
    """(16, 19, 64) ``W2[:, 64:]^T``: the image-feature columns of layer 2."""
    b2: Tensor
    """(16, 1, 64)."""
    w3: Tensor
    """(16, 64, 64) ``W3^T + I``."""
    b3: Tensor
    """(16, 1, 64)."""
    w4: Tensor
    """(16, 64, 1)."""
    b4: Tensor
    """(16, 1, 1)."""
    global_proj_w: Tensor
    """(16, 48, 8) the per-bone global projections, transposed."""
    global_proj_b: Tensor
    """(16, 1, 8)."""
    w1_aug: Tensor
    """(16, 65, 64) ``[w1; b1]``: layer 1 on ``[a0, 1]`` (the bias as the weight row of a constant-1 input)."""
    w2_img_aug: Tensor
    """(16, 20, 64) ``[w2_img; b2]``: the image term of layer 2 on ``[f, 1]``, bias included."""


class PartDecoder(nn.Module):
    """16 part-MLPs with the official parameter names; see the module docstring for the maths."""

    def __init__(self):
        super().__init__()
        in0 = 3 + 1 + BONE_LATENT_DIM + GLOBAL_PROJ_DIM  # 28
        for b in range(NUM_BONES):
            setattr(self, f"global_proj{b}", nn.Linear(3 * NUM_BONES, GLOBAL_PROJ_DIM))
        self.bone_encoder = BoneLengthEncoder()
        dims_in = [in0, HIDDEN, HIDDEN + IMG_FEAT_DIM, HIDDEN, HIDDEN]
        dims_out = [HIDDEN, HIDDEN, HIDDEN, HIDDEN, 1]
        for b in range(NUM_BONES):
            for i in range(NUM_LAYERS):
                setattr(self, f"lin{b}_{i}", nn.Linear(dims_in[i], dims_out[i]))
        self._cache_key: tuple | None = None
        self._cache: StackedWeights | None = None

    # ------------------------------------------------------------------ weights
    def _param_key(self) -> tuple:
        return tuple((p.data_ptr(), p._version, p.device, p.dtype) for p in self.parameters())

    def stacked_weights(self) -> StackedWeights:
        """The per-bone weights stacked over bones (differentiable).

        When autograd is off (or no parameter requires grad) the result is cached and reused until a
        parameter changes (detected by storage pointer and version counter), so repeated small decodes do
        not re-stack.
        """
        needs_grad = torch.is_grad_enabled() and any(p.requires_grad for p in self.parameters())
        if not needs_grad:
            key = self._param_key()
            if self._cache_key == key and self._cache is not None:
                return self._cache
        stacked = self._stack()
        if not needs_grad:
            self._cache_key, self._cache = key, stacked
        else:
            self._cache_key, self._cache = None, None
        return stacked

    def bf16_weights(self, weights: StackedWeights) -> StackedWeights:
        """`weights` with the layer 1-4 tensors in bfloat16 (the bfloat16 path of :meth:`forward`; layer 0's
        stay float32), cached for the float32 stack it was made from."""
        cached = getattr(self, "_bf16_cache", None)
        if cached is not None and cached[0] is weights:
            return cached[1]
        out = replace(weights, **{name: getattr(weights, name).to(torch.bfloat16).contiguous()
                                  for name in ("w1_aug", "w2_img_aug", "w2_hidden", "b3", "w3", "b4", "w4")})
        self._bf16_cache = (weights, out)
        return out

    def _stack(self) -> StackedWeights:
        def w(i: int) -> Tensor:  # (16, out, in)
            return torch.stack([getattr(self, f"lin{b}_{i}").weight for b in range(NUM_BONES)])

        def bias(i: int) -> Tensor:  # (16, out)
            return torch.stack([getattr(self, f"lin{b}_{i}").bias for b in range(NUM_BONES)])

        w0, w1, w2, w3, w4 = (w(i) for i in range(NUM_LAYERS))
        eye = torch.eye(HIDDEN, dtype=w1.dtype, device=w1.device)
        w0t = w0.transpose(1, 2)                                   # (16, 28, 64)
        gp_w = torch.stack([getattr(self, f"global_proj{b}").weight for b in range(NUM_BONES)])
        gp_b = torch.stack([getattr(self, f"global_proj{b}").bias for b in range(NUM_BONES)])
        return StackedWeights(
            w0_xyz=w0t[:, :3].contiguous(),
            w0_rest=w0t[:, 3:].contiguous(),
            b0=bias(0),
            w1=w1.transpose(1, 2) + eye,
            b1=bias(1).unsqueeze(1),
            w2_hidden=w2[:, :, :HIDDEN].transpose(1, 2) + eye,
            w2_img=w2[:, :, HIDDEN:].transpose(1, 2).contiguous(),
            b2=bias(2).unsqueeze(1),
            w3=w3.transpose(1, 2) + eye,
            b3=bias(3).unsqueeze(1),
            w4=w4.transpose(1, 2).contiguous(),
            b4=bias(4).unsqueeze(1),
            global_proj_w=gp_w.transpose(1, 2).contiguous(),
            global_proj_b=gp_b.unsqueeze(1),
            w1_aug=torch.cat([w1.transpose(1, 2) + eye, bias(1).unsqueeze(1)], dim=1),
            w2_img_aug=torch.cat([w2[:, :, HIDDEN:].transpose(1, 2), bias(2).unsqueeze(1)], dim=1),
        )

    # ------------------------------------------------------------------ per-row code
    def hand_code(self, unpose: Tensor, bone_lengths: Tensor, weights: StackedWeights | None = None) -> HandCode:
        """Per-row constants: bone latent, global projections and the folded layer-0 bias.

        Args:
            unpose: (B, 16, 4, 4) unposing transforms (any float dtype; cast to float32 as officially),
                canonical query frame / 0.4 -> bone frame.
            bone_lengths: (B, 16) bone lengths, metres.
        """
        sw = self.stacked_weights() if weights is None else weights
        unpose32 = unpose.float()
        lengths = bone_lengths.float()
        bone_latent = self.bone_encoder(lengths)                                  # (B, 16)
        global_latent = unpose32[:, :, :3, 3].reshape(unpose.shape[0], 3 * NUM_BONES)  # (B, 48)
        # (16, B, 48) @ (16, 48, 8) + (16, 1, 8) -> (16, B, 8)
        gproj = torch.baddbmm(sw.global_proj_b, global_latent.unsqueeze(0).expand(NUM_BONES, -1, -1),
                              sw.global_proj_w).transpose(0, 1)                 # (B, 16, 8)
        rest = torch.cat([lengths.unsqueeze(-1),
                          bone_latent.unsqueeze(1).expand(-1, NUM_BONES, -1),
                          gproj], dim=-1)                                          # (B, 16, 25)
        bias0 = torch.einsum("bkr,kro->bko", rest, sw.w0_rest) + sw.b0            # (B, 16, 64)
        return HandCode(bone_latent=bone_latent, global_proj=gproj, layer0_bias=bias0, unpose=unpose32)

    # ------------------------------------------------------------------ per-point
    def forward(self, points_dec: Tensor, img_feat: Tensor, code: HandCode, *, official_quirks: bool,
                weights: StackedWeights | None = None, workspace: Workspace | None = None,
                bf16_workspace: Workspace | None = None) -> Tensor:
        """Part logits of one chunk of points.

        Args:
            points_dec: (B, n, 3) float32 decoder input points ``p / 0.4`` (p = query space).
            img_feat: (B, n, 19) float32 local image features.
            code: the rows' :class:`HandCode`.
            official_quirks: compute the bone-frame coordinates as the official code does (float64 product of the
                float32 operands, rounded to float32); otherwise fold the bone transform into layer 0.
            weights: :meth:`stacked_weights` (computed here if omitted).
            workspace: reusable activation buffers for inference (autograd off); None allocates per call.
            bf16_workspace: inference only (with `workspace`): run layers 1-4 on bfloat16 activations and
                weights (bfloat16 buffers from this workspace); layer 0, which reads the coordinates, stays
                float32 (``InitOccConfig.bf16_decoder``).
        Returns:
            (B, n, 16) part logits (before the sigmoid), float32.
        """
        sw = self.stacked_weights() if weights is None else weights
        B, n, _ = points_dec.shape
        K, m = NUM_BONES, B * n
        if workspace is not None and torch.is_grad_enabled() and any(p.requires_grad for p in self.parameters()):
            workspace = None  # out= buffers do not support autograd
        # Bias folding (measured: ~1 ms less per 4,096-point chunk on 2 threads). ``baddbmm(bias, x, w)``
        # first broadcasts the bias into the whole (16, m, 64) output, one extra memory pass per layer.
        # Instead a bias is the weight row of a constant-1 input column, so the GEMM writes the output once:
        # layer 0 reads [x, 1] and also emits a constant-1 column 64 (weight column [0, 0, 0, 1]; LeakyReLU
        # keeps 1), which layer 1 uses for its bias; the image term of layer 2 reads [f, 1]. Layers 2 and 3
        # keep baddbmm: a 65-wide GEMM output (to carry the 1 on) costs more than the bias pass it saves.
        buf_0 = workspace.get(0, (K, m, HIDDEN + 1)) if workspace is not None else None
        buf_a = workspace.get(0, (K, m, HIDDEN)) if workspace is not None else None   # a0 is dead by then
        buf_b = workspace.get(1, (K, m, HIDDEN)) if workspace is not None else None

        def layer(bias: Tensor | None, x: Tensor, w: Tensor, out: Tensor | None) -> Tensor:
            if bias is None:
                return torch.bmm(x, w) if out is None else torch.bmm(x, w, out=out)
            return torch.baddbmm(bias, x, w) if out is None else torch.baddbmm(bias, x, w, out=out)

        bias0 = code.layer0_bias.transpose(0, 1).reshape(K * B, 1, HIDDEN)       # (16B, 1, 64)
        if official_quirks:
            xb = bone_coords(points_dec, code.unpose, official_quirks=True).float()       # (B, n, 16, 3)
            xb = xb.permute(2, 0, 1, 3).reshape(K * B, n, 3)
            w0 = sw.w0_xyz.unsqueeze(1).expand(-1, B, -1, -1).reshape(K * B, 3, HIDDEN)
            x1 = torch.cat([xb, xb.new_ones(K * B, n, 1)], dim=-1)                 # (16B, n, 4)
        else:
            # layer 0 on x_b = A_b q + t_b  ==  q @ (A_b^T W0x_b) + (t_b @ W0x_b)
            rot = code.unpose[:, :, :3, :3]                                         # (B, 16, 3, 3)
            trans = code.unpose[:, :, :3, 3]                                        # (B, 16, 3)
            w0 = torch.einsum("bkij,kio->kbjo", rot, sw.w0_xyz).reshape(K * B, 3, HIDDEN)
            bias0 = bias0 + torch.einsum("bki,kio->kbo", trans, sw.w0_xyz).reshape(K * B, 1, HIDDEN)
            q1 = torch.cat([points_dec, points_dec.new_ones(B, n, 1)], dim=-1)     # (B, n, 4)
            x1 = q1.unsqueeze(0).expand(K, -1, -1, -1).reshape(K * B, n, 4)
        # (16B, 4, 65): [[W0, 0], [bias, 1]] -> output [layer-0 pre-activation, 1]
        w0_aug = torch.cat([torch.cat([w0, bias0], dim=1),
                            F.pad(w0.new_ones(K * B, 1, 1), (0, 0, 3, 0))], dim=2)
        a0 = buf_0.view(K * B, n, HIDDEN + 1) if buf_0 is not None else None
        h = F.leaky_relu_(layer(None, x1, w0_aug, a0).view(K, m, HIDDEN + 1), LEAKY_SLOPE)  # [a0, 1]
        bf16 = bf16_workspace is not None and workspace is not None
        if bf16:   # layers 1-4 on bfloat16 activations, weights and buffers; the same operations as below
            sw = self.bf16_weights(sw)
            h = bf16_workspace.get(0, (K, m, HIDDEN + 1)).copy_(h)
            img_feat = img_feat.to(torch.bfloat16)
            buf_a, buf_b = bf16_workspace.get(2, (K, m, HIDDEN)), bf16_workspace.get(1, (K, m, HIDDEN))
        h = F.leaky_relu_(layer(None, h, sw.w1_aug, buf_b), LEAKY_SLOPE)           # a1 (a0 + L1 folded)
        f1 = torch.cat([img_feat.reshape(m, IMG_FEAT_DIM), img_feat.new_ones(m, 1)], dim=-1)
        g = layer(None, f1.unsqueeze(0).expand(K, -1, -1), sw.w2_img_aug, buf_a)  # image term + b2
        g = g.baddbmm_(h, sw.w2_hidden) if buf_a is not None else torch.baddbmm(g, h, sw.w2_hidden)
        h = F.leaky_relu_(g, LEAKY_SLOPE)                                           # a2
        h = F.leaky_relu_(layer(sw.b3, h, sw.w3, buf_b), LEAKY_SLOPE)               # a3
        logits = torch.baddbmm(sw.b4, h, sw.w4)                                    # (16, m, 1)
        if bf16:
            logits = logits.float()
        return logits.view(K, B, n).permute(1, 2, 0)


class Workspace:
    """Reusable activation buffers for inference decodes (one per ``decode`` call, reused across chunks).

    Each slot is a flat tensor grown on demand; :meth:`get` returns a contiguous view of the asked shape.
    Reusing the buffers avoids a fresh allocation (and its page faults) for every layer of every chunk.
    """

    def __init__(self, device: torch.device, dtype: torch.dtype = torch.float32):
        self.device, self.dtype = device, dtype
        self._slots: dict[int, Tensor] = {}

    def get(self, slot: int, shape: tuple[int, ...]) -> Tensor:
        numel = 1
        for s in shape:
            numel *= s
        buf = self._slots.get(slot)
        if buf is None or buf.numel() < numel:
            buf = torch.empty(numel, device=self.device, dtype=self.dtype)
            self._slots[slot] = buf
        return buf[:numel].view(shape)


def bone_coords(points_dec: Tensor, unpose: Tensor, *, official_quirks: bool) -> Tensor:
    """Express decoder points in each bone's canonical frame: ``(unpose_b @ [q, 1])[:3]``.

    Args:
        points_dec: (B, N, 3) decoder input points ``q = p / 0.4`` (p = query space), float32.
        unpose: (B, 16, 4, 4) unposing transforms, canonical query frame / 0.4 -> bone frame.
        official_quirks: True: cast unpose to float32 then compute the product in float64 (the official decoder
            does ``latent.double() @ xyz.double()`` on float32 operands), returning float64. False: float32.
    Returns:
        (B, N, 16, 3) bone-frame coordinates (float64 if ``official_quirks`` else float32).
    """
    u = unpose.float()
    if official_quirks:
        u = u.double()
        q = points_dec.float().double()
    else:
        q = points_dec.float()
    rot, trans = u[:, :, :3, :3], u[:, :, :3, 3]
    return torch.einsum("bkij,bnj->bnki", rot, q) + trans.unsqueeze(1)
