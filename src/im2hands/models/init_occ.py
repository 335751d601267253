"""InitOcc: the initial per-hand occupancy network of Im2Hands (official ``ArticulatedHandNetInitOcc``).

Pipeline per image (``encode``, once) and per hand and query batch (``decode``, any number of times)::

    image (B,3,256,256) --ImageEncoder--> hms_fmaps[-1] ‖ dp_fmaps[-1] (256@64²)
        --image_final_layer (1x1, 256->32)--> img_feat (B,32,64,64)
        --img_ex_{left,right}.prepare--> 16 grid tokens + their attention keys/values per hand

    query points p (B,N,3), hand's query frame (0.4·p = metres)
        --hand.frames.query_to_camera--> camera coords (metres)
        --z minus a reference z--> [x, y, z_rel] ‖ pt_embeddings(x, y, z_rel) = 19-dim query token
        --img_ex attention over [token, 16 grid tokens]--> 19-dim local image feature
        --PartDecoder(p / 0.4, feature, unpose, bone lengths)--> 16 part logits
        --max over parts of sigmoid--> occupancy (B,N)

Usage::

    model = InitOcc(InitOccConfig(official_quirks=True)).eval()      # + load_state_dict(official weights)
    hand = HandInputs.from_canonical(canonicalise(joints_right, "right"))
    with torch.no_grad():
        enc = model.encode(image, Camera(K=cam_K, R=cam_R, T=cam_T))     # once per image
        occ = model.decode(enc, hand, points_query, "right").occupancy   # (B, N), any number of calls

Frames and units (:mod:`im2hands.hand.frames`, :class:`HandInputs`, :class:`~im2hands.hand.camera.Camera`):

- *query frame* of a hand: the canonical frame of ``hand.root_rot_mat`` scaled so that ``0.4 * p`` is in
  metres, root (wrist) at the origin. For the **left** hand it is the frame of the x-mirrored world: the left
  hand is processed as a right hand.
- *world*: metres, true axes; ``hand.root`` is the wrist in the world.
- *camera*: OpenCV, metres, ``x_cam = R x_world + T``.

Official mode (``InitOccConfig.official_quirks=True``) reproduces the official forward, including its quirks; the
default mode fixes them. Each quirk and its fix is listed in ``docs/OFFICIAL_QUIRKS.md`` (section InitOcc):

1. The token's z is relative to the camera z of **query 0 of each batch row** (official), so a point's
   occupancy depends on which point comes first. Default: relative to the camera z of the hand's root
   (the wrist), so outputs do not depend on point order or chunking.
2. Bone-frame coordinates are a float64 product of float32 operands rounded to float32 (official);
   default: float32 throughout, with the bone transform folded into the first layer.
3. ``pen=True``: the official code gives this hand's decoder the *other* hand's points ``p_other / 0.4``
   in the other hand's query frame. Default: the points are first mapped into this hand's query frame, so
   the result is this hand's occupancy at those physical points.

Chunking: ``decode`` evaluates at most ``InitOccConfig.chunk_points`` points (all rows together) at a time
to bound memory. The reference z of official mode is taken from the query 0 of the **points passed to
decode**, so internal chunking never changes a result in either mode; a caller that splits its points into
several ``decode`` calls (as official MISE does with its 1,000,000-point batches) changes official-mode
results exactly as the official code would.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from im2hands._checks import check_finite, check_shape, check_tensor
from im2hands.hand.camera import Camera
from im2hands.hand.canonical import Canonical
from im2hands.hand.frames import query_to_camera, query_to_query, root_to_camera_z
from im2hands.hand.skeleton import SIDES, Side, other_side
from im2hands.models.attention import GridContext, ImageAttention
from im2hands.models.encoder import ImageEncoder, ImageEncoderConfig, ImageFeatures
from im2hands.models.part_decoder import (
    NUM_BONES,
    QUERY_SCALE,
    PartDecoder,
    StackedWeights,
    Workspace,
    bone_coords,
)

IMG_FEAT_DIM = 32
"""Channels of the map the query attention reads (``image_final_layer`` output)."""
TOKEN_DIM = 19
"""Query token: 3 camera coordinates + 16 point-embedding channels."""


CHUNK_POINTS_PER_THREAD = 2048
"""Default decode chunk per torch thread: (16 bones x 2,048 points x 64) float32 activations per thread."""

TOKEN_CHUNKS = 16
"""Query tokens and the query-image attention run on blocks of this many decoder chunks at once: their
tensors are small (a few hundred bytes per point), so on one 4,096-point chunk most of their time is
per-op overhead and thread wake-ups; blocks of 16 chunks (65,536 points on 2 threads, some 50 MB of
transient attention tensors) cut that 16-fold (2 threads: ~290k vs ~240k points/s, ``docs/PERFORMANCE.md``).
Each token depends only on its own point, so results do not depend on it."""


@dataclass(frozen=True)
class InitOccConfig:
    """Initial occupancy network: image encoder, query-image attention and 16 part-MLPs per hand."""

    official_quirks: bool = False
    """Reproduce the official forward exactly, quirks included (needed to match official checkpoints'
    numbers); False fixes the quirks (see the module docstring and ``docs/OFFICIAL_QUIRKS.md``). The same
    flag name as the other networks' configs, so ``convert-official`` sets it."""
    chunk_points: int | None = None
    """Points (summed over batch rows) evaluated at once inside ``decode``; bounds memory to about
    ``chunk_points * 12 kB`` (plus the attention of ``TOKEN_CHUNKS`` chunks); results do not depend on it.
    None: 2,048 per torch thread, so that each thread's share of the activations stays cache-sized
    (measured fastest on 1 and 2 threads, ``docs/PERFORMANCE.md``)."""
    image_encoder: ImageEncoderConfig = field(default_factory=ImageEncoderConfig)
    """Backbone of the image encoder (official: ResNet-50)."""
    query_image_attention: bool = True
    """Feed the query-image attention feature to the part decoders (Im2Hands). False is the HALO baseline:
    the image is not encoded and the decoders get a zero feature, so the 19 image columns of layer 2 are
    unused; a HALO checkpoint's decoders initialise InitOcc's (official ``halo_baseline.pt``)."""

    bf16_decoder: bool = False
    """Inference (no autograd) only: run layers 1-4 of the part decoders on bfloat16 activations and weights
    (layer 0, which reads the coordinates, and the query-image attention stay float32): the part decoders
    take most of InitOcc's decode time; the initial stage of a reconstruction ran 1.29x faster on a CPU with
    AVX512-BF16 (``docs/PERFORMANCE.md``); the golden network's part logits move by under 3 % of their
    spread (``tests/models/test_init_occ.py``). Off by default."""

    def __post_init__(self):
        if self.chunk_points is not None and (not isinstance(self.chunk_points, int) or self.chunk_points < 1):
            raise ValueError(f"chunk_points: expected a positive int, got {self.chunk_points!r}")
        if not isinstance(self.bf16_decoder, bool):
            raise TypeError(f"bf16_decoder: expected a bool, got {self.bf16_decoder!r}")


@dataclass(frozen=True)
class HandInputs:
    """One hand's canonicalisation and root (:func:`im2hands.hand.canonical.canonicalise` computes it).

    Metres, true world axes: the left hand's root is not mirrored. The official storage (left root x-mirrored)
    is converted at the official edge (:mod:`im2hands.official.inputs`).
    """

    unpose: Tensor
    """(B, 16, 4, 4) per-bone unposing transforms (``Canonical.unpose``, float64 officially) mapping a point
    ``p / 0.4`` of the query frame to the bone's canonical frame, in the same units. Bone order:
    palm, index1-3, middle1-3, pinky1-3, ring1-3, thumb1-3."""
    bone_lengths: Tensor
    """(B, 16) bone lengths in metres, same bone order."""
    root_rot_mat: Tensor
    """(B, 4, 4) ``Canonical.root_rot_mat``: the hand's canonical rotation (query frame axes); see
    :mod:`im2hands.hand.frames` for the maps it defines."""
    root: Tensor
    """(B, 3) the hand's root (wrist) in world metres, true axes (the origin of its query frame)."""

    def __post_init__(self):
        b = check_shape(self.unpose, "B 16 4 4", "hand.unpose")["B"]
        for name, spec in (("bone_lengths", "B 16"), ("root_rot_mat", "B 4 4"), ("root", "B 3")):
            t = getattr(self, name)
            bb = check_shape(t, spec, f"hand.{name}")["B"]
            if bb != b:
                raise ValueError(f"hand.{name} and hand.unpose: mismatched batch size ({bb} vs {b})")
        for name in ("unpose", "bone_lengths", "root_rot_mat", "root"):
            check_finite(getattr(self, name), f"hand.{name}")

    @property
    def batch_size(self) -> int:
        return self.unpose.shape[0]

    @classmethod
    def from_canonical(cls, canon: Canonical, *, root: Tensor | None = None) -> HandInputs:
        """Build from :func:`im2hands.hand.canonical.canonicalise` output.

        Args:
            canon: the hand's canonicalisation (B hands).
            root: (B, 3) the hand's root in world metres, true axes; default the wrist of the keypoints
                (``canon.wrist``). Officially it is the ground-truth MANO root.
        """
        root = canon.wrist if root is None else root
        check_shape(root, "B 3", "root")
        return cls(unpose=canon.unpose, bone_lengths=canon.bone_lengths, root_rot_mat=canon.root_rot_mat,
                   root=root.float())

    def to_camera(self, points: Tensor, side: Side, camera: Camera) -> Tensor:
        """(B, N, 3) points of this hand's query frame -> (B, N, 3) float32 camera frame, metres
        (:func:`im2hands.hand.frames.query_to_camera`)."""
        return query_to_camera(points, self.root, self.root_rot_mat, side, camera.R, camera.T)


@dataclass(frozen=True)
class InitOccEncoding:
    """Everything ``decode`` needs from one batch of images; compute once with :meth:`InitOcc.encode`."""

    img_feat: Tensor
    """(B, 32, 64, 64) ``image_final_layer(cat(hms_fmaps[-1], dp_fmaps[-1]))``."""
    grid_left: GridContext
    """Left hand's ``img_ex_left`` grid tokens (B, 16, 32) and their attention keys/values."""
    grid_right: GridContext
    """Right hand's ``img_ex_right`` grid tokens and keys/values."""
    camera: Camera
    """The images' camera extrinsics."""

    def grid(self, side: Side) -> GridContext:
        return self.grid_left if side == "left" else self.grid_right

    @property
    def batch_size(self) -> int:
        return self.img_feat.shape[0]


@dataclass(frozen=True)
class InitOccOutput:
    """Initial occupancy of one hand at a batch of query points."""

    occupancy: Tensor
    """(B, N) occupancy probability = max over the 16 parts of sigmoid(part logit)."""
    part_logits: Tensor
    """(B, N, 16) per-part logits (before the sigmoid), bone order as ``HandInputs.unpose``."""


def _check_side(side: object, name: str = "side") -> Side:
    if side not in SIDES:
        raise ValueError(f"{name}: expected 'left' or 'right', got {side!r}")
    return side  # type: ignore[return-value]


class InitOcc(nn.Module):
    """The initial occupancy network with the official module and parameter names.

    ``state_dict`` keys are exactly those of the official ``ArticulatedHandNetInitOcc`` (848 entries:
    ``image_encoder.*``, ``image_final_layer``, ``{left,right}_pt_embeddings``, ``img_ex_{left,right}``,
    ``{left,right}_decoder`` with ``global_proj{b}``, ``bone_encoder`` and ``lin{b}_{i}``), so an official
    checkpoint's ``model`` dict loads with ``load_state_dict``.
    """

    def __init__(self, config: InitOccConfig | None = None):
        super().__init__()
        self.config = config = config or InitOccConfig()
        self.image_encoder = ImageEncoder(config.image_encoder)
        self.image_final_layer = nn.Conv2d(2 * config.image_encoder.fmap_dim, IMG_FEAT_DIM, 1)
        self.left_pt_embeddings = self._pt_embeddings()
        self.right_pt_embeddings = self._pt_embeddings()
        self.img_ex_left = self._img_ex()
        self.img_ex_right = self._img_ex()
        self.left_decoder = PartDecoder()
        self.right_decoder = PartDecoder()

    @staticmethod
    def _pt_embeddings() -> nn.Sequential:
        return nn.Sequential(nn.Conv1d(3, 32, 1), nn.ReLU(), nn.Dropout(0.01), nn.Conv1d(32, TOKEN_DIM - 3, 1))

    @staticmethod
    def _img_ex() -> ImageAttention:
        return ImageAttention(img_size=64, img_dim=IMG_FEAT_DIM, grid_size=4, grid_dim=32, query_dim=TOKEN_DIM,
                              n_heads=2, dropout=0.01)

    def pt_embeddings(self, side: Side) -> nn.Sequential:
        return self.left_pt_embeddings if side == "left" else self.right_pt_embeddings

    def img_ex(self, side: Side) -> ImageAttention:
        return self.img_ex_left if side == "left" else self.img_ex_right

    def decoder(self, side: Side) -> PartDecoder:
        return self.left_decoder if side == "left" else self.right_decoder

    # ------------------------------------------------------------------ encode
    def image_features(self, image: Tensor) -> Tensor:
        """(B, 3, 256, 256) normalised RGB -> (B, 32, 64, 64) ``img_feat``."""
        return self.img_feat_of(self.image_encoder(image))

    def img_feat_of(self, feats: ImageFeatures) -> Tensor:
        """``img_feat`` (B, 32, 64, 64) from the encoder's output: its two finest decoder maps, concatenated
        and projected (official)."""
        return self.image_final_layer(torch.cat([feats.hms_fmaps[-1], feats.dp_fmaps[-1]], dim=1))

    def encode(self, image: Tensor, camera: Camera) -> InitOccEncoding:
        """Run the image side once per image.

        Args:
            image: (B, 3, 256, 256) RGB normalised with the ImageNet mean/std.
            camera: the images' extrinsics (batch size B).
        """
        check_tensor(image, "image")
        # img_feat is read on a 64 x 64 grid: the network takes the 256 x 256 crop
        b = check_shape(image, "B 3 256 256", "image")["B"]
        if not image.dtype.is_floating_point:
            raise TypeError(f"image: expected a float tensor (normalised RGB), got {image.dtype}")
        check_finite(image, "image")
        if not isinstance(camera, Camera):
            raise TypeError(f"camera: expected a Camera, got {type(camera).__name__}")
        if camera.batch_size != b:
            raise ValueError(f"image and camera: mismatched batch size ({b} vs {camera.batch_size})")
        if not self.config.query_image_attention:   # HALO: the decoders never read the image
            return self.encode_features(image.new_zeros(b, IMG_FEAT_DIM, 64, 64), camera)
        return self.encode_features(self.image_features(image), camera)

    def encode_features(self, img_feat: Tensor, camera: Camera) -> InitOccEncoding:
        """Like :meth:`encode` from an already computed (B, 32, 64, 64) ``img_feat``."""
        b = check_shape(img_feat, f"B {IMG_FEAT_DIM} 64 64", "img_feat")["B"]
        if camera.batch_size != b:
            raise ValueError(f"img_feat and camera: mismatched batch size ({b} vs {camera.batch_size})")
        return InitOccEncoding(img_feat=img_feat, grid_left=self.img_ex_left.prepare(img_feat),
                               grid_right=self.img_ex_right.prepare(img_feat), camera=camera)

    # ------------------------------------------------------------------ decode
    def _check_decode_args(self, encoding, hand, points, side, pen, other) -> tuple[int, int]:
        if not isinstance(encoding, InitOccEncoding):
            raise TypeError(f"encoding: expected an InitOccEncoding, got {type(encoding).__name__}")
        if not isinstance(hand, HandInputs):
            raise TypeError(f"hand: expected a HandInputs, got {type(hand).__name__}")
        _check_side(side)
        check_tensor(points, "points")
        sizes = check_shape(points, "B N 3", "points")
        if not points.dtype.is_floating_point:
            raise TypeError(f"points: expected a float tensor, got {points.dtype}")
        check_finite(points, "points")
        b = sizes["B"]
        if hand.batch_size != b:
            raise ValueError(f"points and hand: mismatched batch size ({b} vs {hand.batch_size})")
        if encoding.batch_size != b:
            raise ValueError(f"points and encoding: mismatched batch size ({b} vs {encoding.batch_size})")
        if pen:
            if not isinstance(other, HandInputs):
                raise TypeError("other: pen=True needs the other hand's HandInputs, got "
                                f"{type(other).__name__}")
            if other.batch_size != b:
                raise ValueError(f"points and other: mismatched batch size ({b} vs {other.batch_size})")
        elif other is not None:
            raise ValueError("other: only used with pen=True; pass other=None or set pen=True")
        return b, sizes["N"]

    def _frames(self, hand, points, side, pen, other) -> tuple[HandInputs, Side, Tensor]:
        """(hand whose frame `points` are in, its side, decoder points p/0.4 in this hand's frame)."""
        if not pen:
            return hand, side, points.float() / QUERY_SCALE
        src_side = other_side(side)
        if self.config.official_quirks:
            return other, src_side, points.float() / QUERY_SCALE
        local = query_to_query(points, other.root, other.root_rot_mat, src_side, hand.root, hand.root_rot_mat, side)
        return other, src_side, local / QUERY_SCALE

    def query_tokens(self, encoding: InitOccEncoding, hand: HandInputs, points: Tensor, side: Side, *,
                     pen: bool = False, other: HandInputs | None = None) -> Tensor:
        """The 19-dim query tokens ``[x, y, z - z_ref, pt_embeddings(x, y, z - z_ref)]`` (camera metres).

        Args and frames as :meth:`decode`. Returns (B, N, 19) float32.
        """
        self._check_decode_args(encoding, hand, points, side, pen, other)
        frame_hand, frame_side, _ = self._frames(hand, points, side, pen, other)
        cam = frame_hand.to_camera(points, frame_side, encoding.camera)
        z_ref = self._z_ref(cam, hand, side, encoding.camera)
        return self._tokens(cam, z_ref, side)

    def _z_ref(self, cam: Tensor, hand: HandInputs, side: Side, camera: Camera) -> Tensor:
        if self.config.official_quirks:
            return cam[:, 0, 2].clone()            # quirk 1: z of query 0 of each row
        return root_to_camera_z(hand.root, camera.R, camera.T)   # fix: z of this hand's root

    def _tokens(self, cam: Tensor, z_ref: Tensor, side: Side) -> Tensor:
        rel = torch.cat([cam[..., :2], cam[..., 2:] - z_ref.view(-1, 1, 1)], dim=-1)      # (B, n, 3)
        emb = self.pt_embeddings(side)
        h = F.linear(rel, emb[0].weight.squeeze(-1), emb[0].bias)
        h = emb[2](emb[1](h))
        h = F.linear(h, emb[3].weight.squeeze(-1), emb[3].bias)
        return torch.cat([rel, h], dim=-1)

    def local_image_features(self, encoding: InitOccEncoding, hand: HandInputs, points: Tensor, side: Side, *,
                             pen: bool = False, other: HandInputs | None = None) -> Tensor:
        """(B, N, 19) ``img_ex`` output per query (the feature concatenated before decoder layer 2)."""
        tokens = self.query_tokens(encoding, hand, points, side, pen=pen, other=other)
        return self.img_ex(side).attend(encoding.grid(side), tokens)

    def decode(self, encoding: InitOccEncoding, hand: HandInputs, points: Tensor, side: Side, *,
               pen: bool = False, other: HandInputs | None = None,
               points_cam: Tensor | None = None) -> InitOccOutput:
        """Occupancy of one hand at query points.

        Args:
            encoding: from :meth:`encode` for the same B images.
            hand: this hand's canonicalisation (:class:`HandInputs`).
            points: (B, N, 3) query points, float; in this hand's query frame (0.4·p = metres, root at the
                origin, mirrored world for the left hand). With ``pen=True`` they are in the **other**
                hand's query frame instead.
            side: which hand ``hand`` is, "left" or "right"; selects that hand's networks.
            pen: evaluate this hand's network at the other hand's points (the official penetration pass
                inside ref_occ); needs ``other``.
            other: the other hand's :class:`HandInputs` (only with ``pen=True``).
            points_cam: (B, N, 3) float32 camera-frame coordinates of `points`, metres, as
                :meth:`HandInputs.to_camera` computes them (of the hand whose frame `points` are in), when
                the caller already has them; None computes them.
        Returns:
            :class:`InitOccOutput` with occupancy (B, N) and part logits (B, N, 16), float32.
        """
        b, n = self._check_decode_args(encoding, hand, points, side, pen, other)
        if points_cam is not None and tuple(points_cam.shape) != tuple(points.shape):
            raise ValueError(f"points_cam: expected the shape of points {tuple(points.shape)}, "
                             f"got {tuple(points_cam.shape)}")
        frame_hand, frame_side, points_dec = self._frames(hand, points, side, pen, other)
        decoder = self.decoder(side)
        weights = decoder.stacked_weights()
        code = decoder.hand_code(hand.unpose, hand.bone_lengths, weights)
        ctx = encoding.grid(side)
        img_ex = self.img_ex(side)
        z_ref = None
        chunk = self.config.chunk_points or CHUNK_POINTS_PER_THREAD * torch.get_num_threads()
        step = max(1, chunk // max(b, 1))
        keep_graph = torch.is_grad_enabled()
        workspace = None if keep_graph else Workspace(points.device)   # buffers do not support autograd
        bf16_workspace = Workspace(points.device, torch.bfloat16) \
            if self.config.bf16_decoder and workspace is not None else None
        logits: list[Tensor] = []
        # without autograd, write each chunk into preallocated outputs (no concatenation copy)
        part_logits = points.new_empty((b, 0 if keep_graph else n, NUM_BONES), dtype=torch.float32)
        occupancy = points.new_empty((b, 0 if keep_graph else n), dtype=torch.float32)
        official = self.config.official_quirks
        for block in range(0, n, step * TOKEN_CHUNKS):
            bl = slice(block, min(n, block + step * TOKEN_CHUNKS))
            if points_cam is None:
                cam = frame_hand.to_camera(points[:, bl], frame_side, encoding.camera)
            else:
                cam = points_cam[:, bl].float()
            if z_ref is None:
                z_ref = self._z_ref(cam, hand, side, encoding.camera)
            if self.config.query_image_attention:
                feats = img_ex.attend(ctx, self._tokens(cam, z_ref, side))      # (B, block, 19)
            else:   # HALO baseline: no image feature
                feats = cam.new_zeros(b, bl.stop - bl.start, TOKEN_DIM)
            for start in range(bl.start, bl.stop, step):
                sl = slice(start, min(bl.stop, start + step))
                feat = feats[:, sl.start - bl.start:sl.stop - bl.start]
                chunk = decoder(points_dec[:, sl], feat, code, official_quirks=official, weights=weights,
                                workspace=workspace, bf16_workspace=bf16_workspace)
                if keep_graph:
                    logits.append(chunk)
                else:
                    part_logits[:, sl] = chunk
                    occupancy[:, sl] = torch.sigmoid(chunk).amax(dim=-1)
        if keep_graph and logits:
            part_logits = torch.cat(logits, dim=1)
            occupancy = torch.sigmoid(part_logits).amax(dim=-1)
        return InitOccOutput(occupancy=occupancy, part_logits=part_logits)

    def bone_coords(self, hand: HandInputs, points: Tensor) -> Tensor:
        """(B, N, 16, 3) decoder points ``p / 0.4`` in each bone's frame (float64 in official mode)."""
        check_shape(points, "B N 3", "points")
        return bone_coords(points.float() / QUERY_SCALE, hand.unpose, official_quirks=self.config.official_quirks)

    def stacked_weights(self, side: Side) -> StackedWeights:
        return self.decoder(_check_side(side)).stacked_weights()

    def forward(self, image: Tensor, camera: Camera, left: HandInputs, right: HandInputs, points_left: Tensor,
                points_right: Tensor) -> tuple[InitOccOutput, InitOccOutput]:
        """Encode the images and decode both hands (training entry point): (left output, right output)."""
        enc = self.encode(image, camera)
        return (self.decode(enc, left, points_left, "left"), self.decode(enc, right, points_right, "right"))
