"""Keypoint refinement network (Im2Hands' ``ArticulatedHandNetKptsRef``): GCN + image attention per hand.

Facts from the official ``artihand/nasa/models/core_kpts_ref.py``, IntagHand's ``model_attn/gcn.py`` and
``artihand/nasa/kpts_ref_training.py`` (input normalisation). Parameter names are the official ones, so an
official state dict loads unchanged (``KptsRef(KptsRefConfig(official_quirks=True))``).

Data flow, per hand (``left_*`` / ``right_*`` modules are separate and the hands never exchange features):

1. **Input**: 21 keypoints in HALO order, millimetres, camera axes, minus the *left* hand's middle MCP
   (:func:`network_keypoints` builds them from camera-frame keypoints;
   :func:`im2hands.official.inputs.normalise_keypoints` from the official storage).
2. **Keypoint embedding**: ``{side}_id_emb`` (a learned 16-vector per joint) ‖ ``{side}_pt_emb`` (per-joint
   MLP 3 -> 32 -> 32 of the coordinates) = 48 features per joint.
3. **Image**: the encoder's finest maps ``cat(img_fmaps[-1], hms_fmaps[-1], dp_fmaps[-1])`` (512 channels
   for ResNet-50) -> ``img_proj_layer`` 1x1 -> 256 x 64 x 64.
4. **Four** :class:`DualGraphLayer` stages (in 48/64/80/96 -> out 64/80/96/112 features per joint): a GCN
   (:class:`GraphLayer`, two Chebyshev residual blocks with 16 outputs) whose output is appended to the
   joint features, then :class:`~im2hands.models.attention.ImageAttention` (8 x 8 grid of the 64 x 64 map,
   grid widths 64/82/96/112, 4 heads) refines each joint token against the image.
5. **Regressor** ``{side}_reg``: per-joint MLP 112 -> 32 -> 3, giving **absolute** refined coordinates
   in the input frame (mm) officially; the default mode adds it to the input keypoints (an offset).

Official quirks reproduced with ``official_quirks=True`` (each listed in ``docs/OFFICIAL_QUIRKS.md``):
the raw directed adjacency as the Chebyshev operator, ``norm1`` computed but discarded, the right hand
regressed through ``left_reg``, and absolute coordinates regressed despite the yaml's
``offset_prediction: true``. The default mode fixes all four (it regresses an offset added to the input
keypoints, so an untrained network starts near the identity); weights have the same names and shapes
in both modes. ``KptsRefConfig.hand_centred`` (default mode only) embeds each hand relative to its own middle
MCP in decimetres instead (step 2) and regresses the offsets in decimetres from a zero start (step 5).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from im2hands._checks import check_finite, check_same_size, check_shape, check_tensor
from im2hands.hand.skeleton import HALO_PARENTS, reorder
from im2hands.models.attention import ImageAttention
from im2hands.models.encoder import ImageEncoder, ImageEncoderConfig, ImageFeatures

NUM_JOINTS = 21


# ----------------------------------------------------------------------------------------------------------
# Input frame (kpts_ref_training.preprocess_joints)


@dataclass(frozen=True)
class KeypointInput:
    """Keypoints as the network reads them (float64, as the official preprocessing computes them)."""

    left_mm: Tensor
    """(B, 21, 3) left hand, HALO order, camera axes, millimetres, minus ``left_mid_joint``."""
    right_mm: Tensor
    """(B, 21, 3) right hand, same frame as ``left_mm`` (also relative to the *left* middle MCP)."""
    left_mid_joint: Tensor
    """(B, 1, 3) the left hand's middle MCP (HALO joint 4) in the camera frame, metres."""


MID_MCP_HALO = 4
"""HALO index of the middle MCP; the left hand's is the origin of the network frame."""


def to_network_frame(joints_cam: Tensor, left_mid_joint: Tensor) -> Tensor:
    """One hand's camera-frame keypoints -> the network frame, in float64 as the official preprocessing.

    Args:
        joints_cam: (B, 21, 3) keypoints, **internal** joint order, camera frame, metres, true axes (the left
            hand not mirrored).
        left_mid_joint: (B, 1, 3) the origin: the left hand's middle MCP, camera frame, metres.
    Returns:
        (B, 21, 3) float64 keypoints, HALO order, millimetres, minus `left_mid_joint`.
    """
    check_shape(joints_cam, f"B {NUM_JOINTS} 3", "joints_cam")
    check_shape(left_mid_joint, "B 1 3", "left_mid_joint")
    halo = reorder(joints_cam.to(torch.float64), "internal", "halo")
    return (halo - left_mid_joint.to(torch.float64)) * 1000


def network_keypoints(joints_cam_left: Tensor, joints_cam_right: Tensor) -> KeypointInput:
    """KptsRef's input from both hands' camera-frame keypoints (public types: metres, true axes).

    Reorders to HALO, subtracts the **left** hand's middle MCP from **both** hands and converts to mm, in
    float64 (the official preprocessing is float64). Equals the official normalisation of the same hands
    (:func:`im2hands.official.inputs.normalise_keypoints`, which reads the official storage).

    Args:
        joints_cam_left: (B, 21, 3) left keypoints, internal joint order, camera frame, metres, not mirrored.
        joints_cam_right: (B, 21, 3) right keypoints, same order and frame.
    Returns:
        :class:`KeypointInput`; :func:`network_to_camera` maps network outputs back.
    """
    b = check_shape(joints_cam_left, f"B {NUM_JOINTS} 3", "joints_cam_left")
    check_same_size(b, check_shape(joints_cam_right, f"B {NUM_JOINTS} 3", "joints_cam_right"), "B",
                    ("joints_cam_left", "joints_cam_right"))
    check_finite(joints_cam_left, "joints_cam_left")
    check_finite(joints_cam_right, "joints_cam_right")
    mid = reorder(joints_cam_left.to(torch.float64), "internal", "halo")[:, MID_MCP_HALO:MID_MCP_HALO + 1]
    return KeypointInput(left_mm=to_network_frame(joints_cam_left, mid),
                         right_mm=to_network_frame(joints_cam_right, mid), left_mid_joint=mid)


def network_to_camera(kpts_mm: Tensor, left_mid_joint: Tensor) -> Tensor:
    """Inverse of :func:`to_network_frame`: (B, 21, 3) network-frame keypoints (HALO order, mm) -> camera
    frame, metres, internal joint order, in `left_mid_joint`'s dtype."""
    return reorder(keypoints_to_camera(kpts_mm, left_mid_joint), "halo", "internal")


def keypoints_to_camera(kpts_mm: Tensor, left_mid_joint: Tensor) -> Tensor:
    """Inverse of the normalisation's translation and scale: (B, 21, 3) mm -> camera frame, metres.

    Args:
        kpts_mm: (B, 21, 3) keypoints in the network frame (e.g. :class:`KptsRefOutput` ``left``), mm.
        left_mid_joint: (B, 1, 3) from :class:`KeypointInput`, metres.
    """
    check_shape(kpts_mm, f"B {NUM_JOINTS} 3", "kpts_mm")
    check_shape(left_mid_joint, "B 1 3", "left_mid_joint")
    return kpts_mm.to(left_mid_joint.dtype) / 1000 + left_mid_joint


# ----------------------------------------------------------------------------------------------------------
# Graph convolution


def hand_graph(*, official_quirks: bool, dtype: torch.dtype = torch.float32) -> Tensor:
    """The (21, 21) operator of the Chebyshev graph convolution on the HALO-order hand skeleton.

    Official (``official_quirks=True``): the raw directed adjacency ``A[parent, child] = 1``, so ``A @ x``
    gives each joint the sum of its children's features. Default: the rescaled normalised Laplacian of
    the undirected skeleton with λ_max = 2, ``-D^-1/2 (A + Aᵀ) D^-1/2`` (ChebNet's operator).
    """
    adj = torch.zeros(NUM_JOINTS, NUM_JOINTS, dtype=torch.float64)
    for child, parent in enumerate(HALO_PARENTS):
        if parent >= 0:
            adj[parent, child] = 1.0
    if not official_quirks:
        sym = adj + adj.T
        d = sym.sum(1).rsqrt()
        adj = -(d[:, None] * sym * d[None, :])
    return adj.to(dtype)


def chebyshev_basis(x: Tensor, graph: Tensor, order: int) -> Tensor:
    """Chebyshev features ``[T_0 x, ..., T_{K-1} x]`` interleaved per input feature.

    ``T_0 = x``, ``T_1 = L x``, ``T_k = 2 L T_{k-1} - T_{k-2}``. The output channel ``f * K + k`` holds
    ``(T_k x)[..., f]`` — the layout of IntagHand's ``graph_conv_cheby``, which official weights assume.

    Args:
        x: (B, V, F) vertex features.
        graph: (V, V) operator L.
        order: K >= 1.
    Returns:
        (B, V, F * K).
    """
    terms = [x]
    if order > 1:
        terms.append(torch.einsum("vw,bwf->bvf", graph, x))
    for _ in range(2, order):
        terms.append(2 * torch.einsum("vw,bwf->bvf", graph, terms[-1]) - terms[-2])
    return torch.stack(terms, dim=-1).flatten(-2)


class GCNResBlock(nn.Module):
    """``GCN_ResBlock``: Chebyshev conv -> LN -> ReLU -> Chebyshev conv -> dropout, + Linear shortcut, -> LN.

    Official quirk: ``norm1`` (+ ReLU) is computed on the input but its result is discarded, so the first
    Chebyshev conv reads the raw input; the default mode feeds it ``relu(norm1(x))`` as intended.
    """

    def __init__(self, in_dim: int, out_dim: int, *, order: int = 2, dropout: float = 0.01,
                 official_quirks: bool = False):
        super().__init__()
        self.order = order
        self.official_quirks = official_quirks
        self.norm1 = nn.LayerNorm(in_dim, eps=1e-6)
        self.fc1 = nn.Linear(in_dim * order, out_dim)
        self.norm2 = nn.LayerNorm(out_dim, eps=1e-6)
        self.fc2 = nn.Linear(out_dim * order, out_dim)
        self.dropout = nn.Dropout(dropout)
        self.shortcut = nn.Linear(in_dim, out_dim)
        self.norm3 = nn.LayerNorm(out_dim, eps=1e-6)

    def forward(self, x: Tensor, graph: Tensor) -> Tensor:
        """(B, V, in_dim) -> (B, V, out_dim)."""
        h = x if self.official_quirks else F.relu(self.norm1(x))
        h = F.relu(self.norm2(self.fc1(chebyshev_basis(h, graph, self.order))))
        h = self.dropout(self.fc2(chebyshev_basis(h, graph, self.order)))
        return self.norm3(h + self.shortcut(x))


class GraphLayer(nn.Module):
    """``GraphLayer``: ``n_blocks`` :class:`GCNResBlock` with ReLU between them (not after the last)."""

    def __init__(self, in_dim: int, out_dim: int, *, n_blocks: int = 2, order: int = 2, dropout: float = 0.01,
                 official_quirks: bool = False):
        super().__init__()
        self.GCN_blocks = nn.ModuleList(
            GCNResBlock(in_dim if i == 0 else out_dim, out_dim, order=order, dropout=dropout,
                        official_quirks=official_quirks) for i in range(n_blocks))
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor, graph: Tensor) -> Tensor:
        """(B, V, in_dim) -> (B, V, out_dim)."""
        for i, block in enumerate(self.GCN_blocks):
            x = block(x, graph)
            if i < len(self.GCN_blocks) - 1:
                x = F.relu(x)
        return x


class DualGraphLayer(nn.Module):
    """One refinement stage for both hands: per hand, GCN features appended, then image attention.

    ``x' = img_ex(img, [x ‖ GCN(x)])``: (B, 21, in_dim) -> (B, 21, in_dim + gcn_dim), independently per hand.
    """

    def __init__(self, *, in_dim: int, gcn_dim: int, img_size: int, img_dim: int, grid_size: int, grid_dim: int,
                 n_heads: int, order: int, dropout: float, official_quirks: bool):
        super().__init__()
        self.in_dim = in_dim
        self.graph_left = GraphLayer(in_dim, gcn_dim, order=order, dropout=dropout, official_quirks=official_quirks)
        self.graph_right = GraphLayer(in_dim, gcn_dim, order=order, dropout=dropout, official_quirks=official_quirks)
        kw = dict(img_size=img_size, img_dim=img_dim, grid_size=grid_size, grid_dim=grid_dim,
                  query_dim=in_dim + gcn_dim, n_heads=n_heads, dropout=dropout)
        self.img_ex_left = ImageAttention(**kw)
        self.img_ex_right = ImageAttention(**kw)

    def forward(self, left: Tensor, right: Tensor, img: Tensor, graph: Tensor) -> tuple[Tensor, Tensor]:
        """(B, 21, in_dim) x 2, (B, img_dim, S, S) image map -> (B, 21, in_dim + gcn_dim) x 2."""
        left = self.img_ex_left(img, torch.cat([left, self.graph_left(left, graph)], dim=2))
        right = self.img_ex_right(img, torch.cat([right, self.graph_right(right, graph)], dim=2))
        return left, right


# ----------------------------------------------------------------------------------------------------------
# The network


@dataclass(frozen=True)
class KptsRefConfig:
    """Keypoint refinement network; the defaults are the official architecture."""

    encoder: ImageEncoderConfig = field(default_factory=ImageEncoderConfig)
    """Image encoder (official: ResNet-50, 128-channel decoders)."""
    official_quirks: bool = False
    """Reproduce the official forward exactly (directed raw adjacency, ``norm1`` discarded, right hand
    through ``left_reg``); needed to run official checkpoints as trained."""
    image_size: int = 256
    """Input image height = width (pixels); the attention reads the image_size/4 map."""
    id_dim: int = 16
    """Learned per-joint identity embedding width."""
    pt_dim: int = 32
    """Per-joint coordinate embedding width."""
    gcn_dim: int = 16
    """Features each stage's GCN appends per joint."""
    grid_dims: tuple[int, ...] = (64, 82, 96, 112)
    """Grid-token width of each stage's image attention (the number of stages is its length)."""
    img_dim: int = 256
    """Channels of ``img_proj_layer``'s output, the map every stage attends to."""
    grid_size: int = 8
    """The attention grid is grid_size x grid_size patches of the image map."""
    n_heads: int = 4
    """Attention heads."""
    cheb_order: int = 2
    """Chebyshev order K of the graph convolutions."""
    dropout: float = 0.01
    """Dropout probability in embeddings, GCN, attention and regressor (training only)."""
    hand_centred: bool = False
    """False (official): both hands' coordinates enter the embedding as given, in mm relative to the *left*
    middle MCP, so the right hand's joints carry the hands' 10-20 cm offset and the embedding must resolve
    millimetres on top of it. True (needs the offset regression of the default mode): each hand is embedded
    relative to its own middle MCP in units of ``coord_unit_mm``, the regressed offsets are in the same unit
    and sum to zero over the joints (each hand keeps its input mean joint position: the training loss is
    middle-MCP-relative, so it never learns a hand's translation), and a new network's last regression layers
    start at zero (it returns its input until trained). The refined keypoints stay in the input frame either
    way; parameter names and shapes are unchanged."""
    coord_unit_mm: float = 100.0
    """With ``hand_centred``: the unit of the embedded coordinates and regressed offsets (100 mm: a hand
    spans about +-1)."""
    linear_path: bool = False
    """With ``hand_centred``: add a linear map of all 63 centred coordinates of the hand to the regressed
    offsets (``{side}_linear``, starting at zero; not in official checkpoints). A keypoint error that is
    mostly Gaussian is largely removed by a linear estimate from the whole hand (the best linear denoiser
    of the synthetic error model cuts its error by a third, ``docs/TRAINING.md``); this path learns it in
    few steps while the GCN and the image attention learn the rest."""

    def __post_init__(self):
        if self.hand_centred and self.official_quirks:
            raise ValueError("hand_centred: needs the default mode's offset regression (official_quirks=False)")
        if self.linear_path and not self.hand_centred:
            raise ValueError("linear_path: needs hand_centred=True (it reads each hand's centred coordinates)")
        if not (isinstance(self.coord_unit_mm, (int, float)) and 0 < self.coord_unit_mm < float("inf")):
            raise ValueError(f"coord_unit_mm: expected a finite number > 0, got {self.coord_unit_mm!r}")

    @property
    def stage_dims(self) -> tuple[int, ...]:
        """Per-joint feature width entering each stage, then the final width (official 48/64/80/96/112)."""
        d0 = self.id_dim + self.pt_dim
        return tuple(d0 + i * self.gcn_dim for i in range(len(self.grid_dims) + 1))


@dataclass(frozen=True)
class KptsRefOutput:
    """Refined keypoints plus the intermediates the golden data stores."""

    left: Tensor
    """(B, 21, 3) refined left keypoints, HALO order, same frame and units (mm) as the input (official mode:
    the regressor's output; default mode: the input plus the regressor's output)."""
    right: Tensor
    """(B, 21, 3) refined right keypoints, as ``left``."""
    img_proj: Tensor
    """(B, img_dim, S/4, S/4) the projected image map all stages attend to."""
    stage_feats_left: tuple[Tensor, ...]
    """Per stage, (B, 21, stage_dims[i+1]) left joint features after that stage."""
    stage_feats_right: tuple[Tensor, ...]
    """Per stage, right joint features."""


def _mlp1x1(cin: int, hidden: int, cout: int, dropout: float) -> nn.Sequential:
    """Per-joint MLP as official Conv1d(k=1) layers; indices 0 and 3 hold the weights."""
    return nn.Sequential(nn.Conv1d(cin, hidden, 1), nn.ReLU(), nn.Dropout(dropout), nn.Conv1d(hidden, cout, 1))


class KptsRef(nn.Module):
    """Im2Hands keypoint refinement: image + both hands' 21 keypoints (normalised, mm) -> refined keypoints."""

    def __init__(self, config: KptsRefConfig | None = None):
        super().__init__()
        self.config = c = config or KptsRefConfig()
        if c.image_size % 32:
            raise ValueError(f"config.image_size: must be a multiple of 32, got {c.image_size}")
        dims = c.stage_dims
        self.image_encoder = ImageEncoder(c.encoder)
        fine = self.image_encoder.img_channels[-1] + 2 * c.encoder.fmap_dim
        self.img_proj_layer = nn.Conv2d(fine, c.img_dim, 1)
        self.img_final_layer = nn.Conv2d(c.img_dim, 32, 1)  # unused, as officially; kept for the key set
        self.left_id_emb = nn.Embedding(NUM_JOINTS, c.id_dim)
        self.right_id_emb = nn.Embedding(NUM_JOINTS, c.id_dim)
        self.left_pt_emb = _mlp1x1(3, c.pt_dim, c.pt_dim, c.dropout)
        self.right_pt_emb = _mlp1x1(3, c.pt_dim, c.pt_dim, c.dropout)
        self.left_reg = _mlp1x1(dims[-1], 32, 3, c.dropout)
        self.right_reg = _mlp1x1(dims[-1], 32, 3, c.dropout)
        self.gcn_layers = nn.ModuleList(
            DualGraphLayer(in_dim=dims[i], gcn_dim=c.gcn_dim, img_size=c.image_size // 4, img_dim=c.img_dim,
                           grid_size=c.grid_size, grid_dim=g, n_heads=c.n_heads, order=c.cheb_order,
                           dropout=c.dropout, official_quirks=c.official_quirks)
            for i, g in enumerate(c.grid_dims))
        self.register_buffer("graph", hand_graph(official_quirks=c.official_quirks), persistent=False)
        if c.linear_path:
            self.left_linear = nn.Linear(3 * NUM_JOINTS, 3 * NUM_JOINTS)
            self.right_linear = nn.Linear(3 * NUM_JOINTS, 3 * NUM_JOINTS)
            for lin in (self.left_linear, self.right_linear):
                nn.init.zeros_(lin.weight)
                nn.init.zeros_(lin.bias)
        if c.hand_centred:   # start as the identity: zero offsets
            for reg in (self.left_reg, self.right_reg):
                nn.init.zeros_(reg[3].weight)
                nn.init.zeros_(reg[3].bias)

    def forward(self, image: Tensor, kpts_left: Tensor, kpts_right: Tensor) -> KptsRefOutput:
        """Refine both hands' keypoints.

        Args:
            image: (B, 3, S, S) ImageNet-normalised RGB, S = ``config.image_size``.
            kpts_left: (B, 21, 3) left keypoints, HALO order, mm, network frame (:func:`network_keypoints`).
            kpts_right: (B, 21, 3) right keypoints, same frame.
        Returns:
            :class:`KptsRefOutput`, in the image's dtype and device.
        """
        s = self.config.image_size
        check_shape(check_tensor(image, "image"), f"B 3 {s} {s}", "image")
        return self.refine(self.image_encoder(image), kpts_left, kpts_right)

    def refine(self, features: ImageFeatures, kpts_left: Tensor, kpts_right: Tensor) -> KptsRefOutput:
        """As :meth:`forward`, from precomputed encoder features of this network's ``image_encoder``."""
        fine, hms, dp = features.img_fmaps[-1], features.hms_fmaps[-1], features.dp_fmaps[-1]
        s = self.config.image_size // 4
        for x, c, name in ((fine, self.image_encoder.img_channels[-1], "features.img_fmaps[-1]"),
                           (hms, self.config.encoder.fmap_dim, "features.hms_fmaps[-1]"),
                           (dp, self.config.encoder.fmap_dim, "features.dp_fmaps[-1]")):
            check_same_size(check_shape(fine, "B C H W", "features.img_fmaps[-1]"),
                            check_shape(x, f"B {c} {s} {s}", name), "B", ("features.img_fmaps[-1]", name))
        self._check_keypoints(kpts_left, kpts_right, fine.shape[0])
        img = self.img_proj_layer(torch.cat([fine, hms, dp], dim=1))
        unit = self.config.coord_unit_mm if self.config.hand_centred else 1.0
        emb_left, emb_right = kpts_left.to(img.dtype), kpts_right.to(img.dtype)
        if self.config.hand_centred:
            emb_left = (emb_left - emb_left[:, MID_MCP_HALO:MID_MCP_HALO + 1]) / unit
            emb_right = (emb_right - emb_right[:, MID_MCP_HALO:MID_MCP_HALO + 1]) / unit
        left = self._embed(emb_left, self.left_id_emb, self.left_pt_emb)
        right = self._embed(emb_right, self.right_id_emb, self.right_pt_emb)
        graph = self.graph.to(img.dtype)
        feats_l, feats_r = [], []
        for stage in self.gcn_layers:
            left, right = stage(left, right, img, graph)
            feats_l.append(left)
            feats_r.append(right)
        right_reg = self.left_reg if self.config.official_quirks else self.right_reg
        out_left = self.left_reg(left.transpose(1, 2)).transpose(1, 2)
        out_right = right_reg(right.transpose(1, 2)).transpose(1, 2)
        if self.config.linear_path:
            out_left = out_left + self.left_linear(emb_left.flatten(1)).view_as(out_left)
            out_right = out_right + self.right_linear(emb_right.flatten(1)).view_as(out_right)
        if self.config.hand_centred:
            # the loss is middle-MCP-relative, so a hand's translation is never learnt: keep the input's mean
            # joint position, which averages the joints' independent errors (a better anchor than one joint)
            out_left = out_left - out_left.mean(dim=1, keepdim=True)
            out_right = out_right - out_right.mean(dim=1, keepdim=True)
        if not self.config.official_quirks:   # fix: an offset from the input (the yaml's offset_prediction)
            out_left = out_left * unit + kpts_left.to(out_left.dtype)
            out_right = out_right * unit + kpts_right.to(out_right.dtype)
        return KptsRefOutput(
            left=out_left,
            right=out_right,
            img_proj=img, stage_feats_left=tuple(feats_l), stage_feats_right=tuple(feats_r))

    @staticmethod
    def _embed(kpts: Tensor, id_emb: nn.Embedding, pt_emb: nn.Sequential) -> Tensor:
        """(B, 21, 3) -> (B, 21, id_dim + pt_dim): identity embedding ‖ coordinate embedding."""
        ids = id_emb.weight.expand(kpts.shape[0], -1, -1)
        return torch.cat([ids, pt_emb(kpts.transpose(1, 2)).transpose(1, 2)], dim=2)

    @staticmethod
    def _check_keypoints(kpts_left: Tensor, kpts_right: Tensor, batch: int) -> None:
        for x, name in ((kpts_left, "kpts_left"), (kpts_right, "kpts_right")):
            size = check_shape(check_tensor(x, name), f"B {NUM_JOINTS} 3", name)
            if size["B"] != batch:
                raise ValueError(f"{name} and image: mismatched batch size ({size['B']} vs {batch})")
            check_finite(x, name)
