"""RefOcc: the two-hand occupancy refinement network of Im2Hands (official ``ArticulatedHandNetRefOcc``).

Once per image (:meth:`RefOcc.encode`)::

    image --image_encoder (own, trainable ResNetSimple)--> hms_fmaps, dp_fmaps
        hms/dp_fmaps[-1] (128@64²) --bilinear x4--> 256@256² --image_final_layer (1x1)--> img_feat 32@256²
        hms/dp_fmaps[0] (128@8²) --hms/dp_global_layer (8x8 conv)--> img_global (256 = 2 fmap_dim)
    anchors (512 per hand, hand's query frame) --camera, project, sample img_feat-->
        anchor feature = 32 sampled channels ‖ hand one-hot (left [1,0], right [0,1])
    both hands' anchors in the flipped camera frame, centred on the bbox centre of all 1024 anchors
        --trans_enc (same encoder for both hands)--> z (256), 128 anchors, 128 local latents per hand
    context: z'_L = context_enc(z_L ‖ z_R ‖ img_global), z'_R = context_enc(z_R ‖ z_L ‖ img_global)

Per batch of query points (:meth:`RefOcc.decode`, any number of times)::

    points (hand's query frame, 0.4·p = metres) --camera, project--> sampled image feature (32)
    frozen init_occ --> initial occupancy o (no gradients, eval mode)
    trans_dec(centred flipped camera xyz; [image feature ‖ o repeated 32x]; z', anchors, latents) --> logit
    refined occupancy = sigmoid(logit) (a full occupancy, not a residual)
    (``RefOccConfig.residual``: sigmoid(InitOcc's max part logit + trans_dec output) instead)
    (``RefOccConfig.contact_cue``, residual only: + contact_head(this hand's and the other hand's frozen
    InitOcc max part logits at the point, each clipped to ±CUE_CLIP))

With ``pen=True`` each hand's network is also evaluated at the *other* hand's query points (its latents
and decoder, the other points' image features, this hand's initial occupancy there): the inputs of the
penetration loss. With the contact cue each evaluation also reads the frozen InitOcc of the hand it is not
for at the same points (the head's second input): computed per chunk without the pen pass; with it, each
frozen InitOcc runs once per point set and both passes share the values (the pen pass needs them anyway).

Frames: the *flipped camera frame* is the OpenCV camera frame times [1, -1, -1] (metres); the transformer
works in it minus ``center`` (the bbox centre of both hands' anchors). Hand frames as in
:mod:`im2hands.models.init_occ`.

``RefOccConfig.official_quirks=True`` reproduces the official forward including its quirks; the default mode
fixes them. Each is listed in ``docs/OFFICIAL_QUIRKS.md`` (section RefOcc):

1. Pen pass context: officially ``decode`` overwrites the encoding in place, so the pen pass applies
   ``context_enc`` a second time to the already contextualised latents. Default: applied once.
2. Pixel sampling: officially ``grid_sample(align_corners=True)`` at ``(uv - 128) / 128``, which maps pixel
   coordinate u to map column ``u * 255 / 256`` (up to a 1 px shift at the border). Default: the
   pixel-centre convention ``(u + 0.5) / 128 - 1`` with ``align_corners=False``.
3. FPS skip rule: the official CUDA FPS never selects anchors within 3.16 cm (squared norm <= 1e-3 m²)
   of the two-hand bbox centre, so sampling depends on where the other hand is. Default: no skip.
4. Pen initial occupancy: officially the frozen init_occ reads the other hand's points in the other
   hand's query frame with this hand's bone transforms; default: the same physical points in this
   hand's frame (fixed inside :class:`~im2hands.models.init_occ.InitOcc`).

Speed: the 256² map is computed as ``upsample(image_final_layer(maps))`` (a 1x1 conv commutes with
bilinear resampling whose weights sum to 1; 8x fewer channels to upsample); the decoder precomputes all
per-anchor terms in ``encode`` (:class:`~im2hands.models.point_transformer.DecoderCache`); ``decode`` runs
the frozen InitOcc, image sampling and the decoder in chunks of ``RefOccConfig.chunk_points`` (memory
bounded at any point count; results independent of the chunk size in both modes). A caller that already
evaluated the frozen InitOcc (a reconstruction's initial stage, at the lattice points both stages visit) passes
its encoding to ``encode`` (``init_encoding``) and its values to ``decode`` (``known_left``/``known_right``,
:class:`InitialValues`); the frozen InitOcc then runs only where they are unknown.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from im2hands._checks import check_finite, check_shape, check_tensor
from im2hands.models.encoder import ImageEncoder, ImageEncoderConfig
from im2hands.hand.camera import Camera
from im2hands.hand.skeleton import SIDES, Side, other_side
from im2hands.models.init_occ import HandInputs, InitOcc, InitOccConfig, InitOccEncoding
from im2hands.models.point_transformer import (FPS_SKIP_SQ_NORM, DecoderCache, PointEncoding,
                                               PointTransformerDecoderOcc, PointTransformerEncoder)

N_ANCHORS = 512
"""Anchors per hand read by the encoder (official: 512 surface samples of the initial mesh)."""
MAP_SIZE = 256
"""Side of the image feature map, pixels (= the input crop size)."""
FLIP = (1.0, -1.0, -1.0)
"""Camera frame -> the transformer's flipped camera frame (y and z negated)."""
HAND_LABEL = {"left": (1.0, 0.0), "right": (0.0, 1.0)}
"""One-hot hand label appended to each anchor feature."""


GRAD_CHUNK_POINTS = 4096
"""Decoder chunk (query points summed over batch rows) when autograd is on (training). Each chunk's largest
activations are (chunk x 9 neighbours x 200) float32 = 29.5 MB at 4,096, below glibc's largest mmap threshold
(32 MB): bigger blocks are mmap-ed and unmapped at every allocation, so each touch of them page-faults afresh.
With one chunk of 8,192 (batch 4, 2,048 points) a training step took 10x the page faults and 25 % more CPU
per sample than at batch 1-2 (``docs/TRAINING.md``, "Where the time goes"); results do not depend on it."""
CUE_CLIP = 8.0
"""The contact cue's inputs (frozen InitOcc max part logits) are clipped to ±CUE_CLIP: far from a hand its
logit only says "outside", and the cue should not extrapolate on how far."""
CUE_HIDDEN = 32
"""Width of the contact head's two hidden layers."""
DECODER_CHUNK_POINTS = 4096
"""Queries (summed over batch rows) the refinement decoder evaluates at once without autograd, inside each
``RefOccConfig.chunk_points`` chunk: its three (chunk x 9 x 200) scratch buffers then stay below 30 MB each,
and it decoded as fast in float32 and 1.12x faster with bf16 products as in chunks of 16,384 on a 2-core AMD
EPYC, with a quarter of the scratch memory (``docs/PERFORMANCE.md``); results do not depend on it."""


@dataclass(frozen=True)
class RefOccConfig:
    """Refinement network: own image encoder, point-transformer encoder/decoder, frozen InitOcc."""

    official_quirks: bool = False
    """Reproduce the official forward exactly, quirks included (official checkpoints' numbers); False fixes
    the quirks listed in the module docstring and ``docs/OFFICIAL_QUIRKS.md``. Also sets the frozen
    InitOcc's mode. The same flag name as the other networks' configs, so ``convert-official`` sets it."""
    chunk_points: int = 16384
    """Query points (summed over batch rows) the refinement decoder evaluates at once; bounds its scratch
    memory to about ``chunk_points * 22 kB`` (350 MB at the default); results do not depend on it."""
    image_encoder: ImageEncoderConfig = field(default_factory=ImageEncoderConfig)
    """RefOcc's own image encoder (official: ResNet-50)."""
    init_occ: InitOccConfig = field(default_factory=InitOccConfig)
    """The frozen InitOcc's configuration (its ``official_quirks`` is replaced by this config's)."""
    residual: bool = False
    """False (official): the decoder's output is the refined occupancy's logit. True: it is added to the
    frozen InitOcc's logit (its max part logit), and a new network's last decoder layer starts at zero, so an
    untrained refinement returns the initial occupancy exactly and training only learns the correction.
    The parameters are the official ones either way; only the meaning of the output differs."""

    contact_cue: bool = False
    """Residual refinement only (``residual=True``, default mode): the correction also reads the *other*
    hand's frozen InitOcc at each query point. A small MLP (``contact_head``: 2 -> 32 -> 32 -> 1, last layer
    starting at zero) maps (this hand's, the other hand's) InitOcc max part logit at the point to a logit
    correction added to the refined logit. Where the two initial hands overlap, which one yields is then a
    function of both hands' evidence at that point that training learns from the occupancy and
    penetration losses, instead of something the query-anchor attention has to discover from 512 anchors
    per hand. Adds ``contact_head.*`` parameters (not in official checkpoints) and, without the pen pass
    (reconstruction), one frozen InitOcc evaluation of the other hand per query; with it (training) none, as
    the pen pass evaluates those values anyway. Off by default and in the official preset."""

    bf16_decoder: bool = False
    """Inference (no autograd) only: run the refinement decoder's three per-neighbour matrix products in
    bfloat16 with float32 accumulation (:meth:`PointTransformerDecoderOcc.forward`, ``bf16``): the decoder
    takes most of a refined reconstruction's time, and the refined stage measured 1.17x faster on a CPU with
    AVX512-BF16 (``docs/PERFORMANCE.md``); logits stay within 2 % of their spread on the golden weights. Off by
    default (results then match float32 everywhere)."""
    bf16_encoder: bool = False
    """Inference (no autograd) only: run the anchors' point-transformer encoder under bfloat16 autocast (its
    linear layers, above all the per-pair products of the three full self-attention blocks, take bfloat16
    inputs; positions, nearest neighbours and furthest-point sampling stay float32; the outputs are returned
    in float32). Part of the bfloat16 fast mode (``Im2Hands(bf16=True)``, 1.37-1.60x per image on a CPU with
    AVX512-BF16, ``docs/PERFORMANCE.md``); the golden network's latents move by up to 5.3 % of their spread
    (``tests/models/test_ref_occ.py``). Off by default."""

    def __post_init__(self):
        if not isinstance(self.chunk_points, int) or self.chunk_points < 1:
            raise ValueError(f"chunk_points: expected a positive int, got {self.chunk_points!r}")
        for name in ("bf16_decoder", "bf16_encoder"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name}: expected a bool, got {getattr(self, name)!r}")
        if not isinstance(self.residual, bool):
            raise TypeError(f"residual: expected a bool, got {self.residual!r}")
        if not isinstance(self.contact_cue, bool):
            raise TypeError(f"contact_cue: expected a bool, got {self.contact_cue!r}")
        if self.contact_cue and (not self.residual or self.official_quirks):
            raise ValueError("contact_cue: needs residual=True and official_quirks=False (it adds a correction "
                             "to the frozen InitOcc's logit)")


@dataclass(frozen=True)
class HandEncoding:
    """One hand's share of :class:`RefOccEncoding`."""

    anchor_img_feat: Tensor
    """(B, 512, 32) image feature sampled at each input anchor."""
    anchors_flip: Tensor
    """(B, 512, 3) input anchors in the flipped camera frame, metres, *before* centring."""
    points: PointEncoding
    """``trans_enc`` output: z (B, 256) before context, 128 anchors (centred frame), latents, FPS indices."""
    z_context: Tensor
    """(B, 256) latent after ``context_enc``: used by the main decode."""
    z_pen: Tensor
    """(B, 256) latent used by the pen decode: ``context_enc`` applied again (official) or ``z_context``."""
    cache: DecoderCache
    """Decoder terms precomputed from ``z_context``."""
    cache_pen: DecoderCache
    """Decoder terms precomputed from ``z_pen`` (the same object as ``cache`` in the default mode)."""


@dataclass(frozen=True)
class RefOccEncoding:
    """Everything :meth:`RefOcc.decode` needs from a batch of images; compute once with :meth:`RefOcc.encode`."""

    img_feat: Tensor
    """(B, 32, 256, 256) pixel-aligned image feature map."""
    img_global: Tensor
    """(B, 256) global image vector ``hms_global ‖ dp_global``."""
    center: Tensor
    """(B, 3) bbox centre of both hands' anchors, flipped camera frame, metres."""
    left: HandEncoding
    right: HandEncoding
    init_occ: InitOccEncoding
    """The frozen InitOcc's image encoding."""
    camera: Camera
    intrinsics: Tensor
    """(B, 3, 3) intrinsics of the 256x256 crop, pixels (float32)."""
    hand_left: HandInputs
    hand_right: HandInputs

    def hand(self, side: Side) -> HandEncoding:
        return self.left if side == "left" else self.right

    def inputs(self, side: Side) -> HandInputs:
        return self.hand_left if side == "left" else self.hand_right

    @property
    def batch_size(self) -> int:
        return self.img_feat.shape[0]


@dataclass(frozen=True)
class HandOutput:
    """Refined occupancy of one hand's network at a batch of points."""

    occupancy: Tensor
    """(B, N) refined occupancy probability = sigmoid(logit)."""
    logit: Tensor
    """(B, N) refined logit: ``trans_dec`` output (plus the initial logit when ``RefOccConfig.residual``)."""
    init_occupancy: Tensor
    """(B, N) the frozen InitOcc's occupancy fed to the decoder."""


@dataclass(frozen=True)
class InitialValues:
    """The frozen InitOcc's output at one hand's query points, where the caller already computed it (the
    initial stage of a reconstruction evaluates the same network at most of the refined stage's points)."""

    occupancy: Tensor
    """(B, N) float32 occupancy probability; NaN where unknown (the frozen InitOcc computes those)."""
    max_logit: Tensor
    """(B, N) float32 largest part logit (the residual refinement's base); any value where unknown."""


@dataclass(frozen=True)
class RefOccOutput:
    """:meth:`RefOcc.decode` result. ``pen_*`` are empty (B, 0) outputs unless ``pen=True``."""

    left: HandOutput
    """Left network at the left points."""
    right: HandOutput
    """Right network at the right points."""
    pen_left: HandOutput
    """Left network at the *right* points (official ``pen_ref_occ_left``)."""
    pen_right: HandOutput
    """Right network at the *left* points."""


def project_and_sample(img_feat: Tensor, cam: Tensor, intrinsics: Tensor, *, official_quirks: bool) -> Tensor:
    """Sample the pixel-aligned feature map at the projections of camera-frame points.

    Args:
        img_feat: (B, C, H, W) feature map of the crop (H = W = 256).
        cam: (B, N, 3) points, OpenCV camera frame, metres.
        intrinsics: (B, 3, 3) crop intrinsics, pixels.
        official_quirks: official pixel mapping ``(uv - 128) / 128`` with ``align_corners=True``; otherwise the
            pixel-centre mapping ``(uv + 0.5) / (W / 2) - 1`` with ``align_corners=False``.
    Returns:
        (B, N, C) bilinearly sampled features (zero outside the map).
    """
    pix = torch.bmm(cam * 1000, intrinsics.float().transpose(1, 2))  # official scales to mm first
    uv = pix[..., :2] / pix[..., 2:]
    size = torch.tensor(img_feat.shape[-1:-3:-1], dtype=uv.dtype, device=uv.device)  # (W, H)
    if official_quirks:
        grid = (uv - 128) / 128
    else:
        grid = (uv + 0.5) / (size / 2) - 1
    out = F.grid_sample(img_feat, grid.unsqueeze(2), mode="bilinear", padding_mode="zeros",
                        align_corners=official_quirks)
    return out[..., 0].transpose(1, 2)


class RefOcc(nn.Module):
    """The refinement network with the official module and parameter names.

    ``state_dict`` keys equal the official ``ArticulatedHandNetRefOcc`` (1596 entries): the frozen
    ``init_occ.*`` copy, ``image_encoder.*``, ``image_final_layer``, ``hms_global_layer``,
    ``dp_global_layer``, ``trans_enc.*``, ``trans_dec.*``, ``context_enc.0``; with
    ``RefOccConfig.contact_cue`` also ``contact_head.*`` (ours).
    """

    def __init__(self, config: RefOccConfig | None = None):
        super().__init__()
        self.config = config = config or RefOccConfig()
        self.init_occ = InitOcc(replace(config.init_occ, official_quirks=config.official_quirks))
        self.init_occ.requires_grad_(False)
        self.image_encoder = ImageEncoder(config.image_encoder)
        fmap = config.image_encoder.fmap_dim
        self.image_final_layer = nn.Conv2d(2 * fmap, 32, 1)
        self.hms_global_layer = nn.Conv2d(fmap, fmap, 8)
        self.dp_global_layer = nn.Conv2d(fmap, fmap, 8)
        self.trans_enc = PointTransformerEncoder(d_feat_in=32 + 2)
        self.trans_dec = PointTransformerDecoderOcc(dim_inp=256, dim=200, nneigh=9, hidden_dim=32,
                                                    d_query_feat=32 + 32)
        # z_L ‖ z_R ‖ img_global: 256 + 256 + 2·fmap_dim (official 768)
        self.context_enc = nn.Sequential(nn.Linear(2 * 256 + 2 * fmap, 256))
        if config.residual:   # start as the identity on the initial occupancy
            nn.init.zeros_(self.trans_dec.fc_out.weight)
            nn.init.zeros_(self.trans_dec.fc_out.bias)
        if config.contact_cue:
            self.contact_head = nn.Sequential(nn.Linear(2, CUE_HIDDEN), nn.ReLU(), nn.Linear(CUE_HIDDEN, CUE_HIDDEN),
                                              nn.ReLU(), nn.Linear(CUE_HIDDEN, 1))
            nn.init.zeros_(self.contact_head[-1].weight)   # starts as no correction
            nn.init.zeros_(self.contact_head[-1].bias)
        self.init_occ.eval()

    def train(self, mode: bool = True) -> RefOcc:
        """Set training mode; the frozen InitOcc always stays in eval mode (as officially)."""
        super().train(mode)
        self.init_occ.eval()
        return self

    # ------------------------------------------------------------------ encode

    def image_maps(self, image: Tensor) -> tuple[Tensor, Tensor]:
        """(B, 3, 256, 256) normalised RGB -> (img_feat (B, 32, 256, 256), img_global (B, 256))."""
        feats = self.image_encoder(image)
        hms_global = self.hms_global_layer(feats.hms_fmaps[0]).flatten(1)
        dp_global = self.dp_global_layer(feats.dp_fmaps[0]).flatten(1)
        small = self.image_final_layer(torch.cat([feats.hms_fmaps[-1], feats.dp_fmaps[-1]], dim=1))
        # official: upsample both 128-channel maps (align_corners=False), then the 1x1 conv; the same
        # function computed with the conv first
        img_feat = F.interpolate(small, size=(MAP_SIZE, MAP_SIZE), mode="bilinear", align_corners=False)
        return img_feat, torch.cat([hms_global, dp_global], dim=1)

    def _check_encode(self, image, camera, left, right, anchors_left, anchors_right) -> int:
        check_tensor(image, "image")
        b = check_shape(image, f"B 3 {MAP_SIZE} {MAP_SIZE}", "image")["B"]
        if not isinstance(camera, Camera) or not isinstance(camera.R, Tensor):
            raise TypeError(f"camera: expected a Camera of tensors, got {type(camera).__name__}")
        for name, hand in (("left", left), ("right", right)):
            if not isinstance(hand, HandInputs):
                raise TypeError(f"{name}: expected a HandInputs, got {type(hand).__name__}")
            if hand.batch_size != b:
                raise ValueError(f"image and {name}: mismatched batch size ({b} vs {hand.batch_size})")
        if camera.batch_size != b:
            raise ValueError(f"image and camera: mismatched batch size ({b} vs {camera.batch_size})")
        for name, a in (("anchors_left", anchors_left), ("anchors_right", anchors_right)):
            check_tensor(a, name)
            if check_shape(a, f"B {N_ANCHORS} 3", name)["B"] != b:
                raise ValueError(f"image and {name}: mismatched batch size ({b} vs {a.shape[0]})")
            check_finite(a, name)
        check_finite(image, "image")
        return b

    def encode(self, image: Tensor, camera: Camera, left: HandInputs, right: HandInputs,
               anchors_left: Tensor, anchors_right: Tensor, *,
               init_encoding: InitOccEncoding | None = None) -> RefOccEncoding:
        """Everything that depends on the image and the anchors; run once per image.

        Args:
            image: (B, 3, 256, 256) RGB normalised with the ImageNet mean/std.
            camera: the images' cameras (:class:`~im2hands.hand.camera.Camera` of (B, ...) tensors; K is the
                256x256 crop's intrinsics, pixels).
            left, right: each hand's canonicalisation (:class:`~im2hands.models.init_occ.HandInputs`).
            anchors_left, anchors_right: (B, 512, 3) anchor points on each hand's initial surface, in **that
                hand's query frame** (query units, like the points of :meth:`decode`; the surface points of
                a :class:`~im2hands.data.dataset.HandsDataset` item).
            init_encoding: the frozen InitOcc's :meth:`InitOcc.encode` of the same images and cameras, when the
                caller already has it (a network with the same weights); None computes it.
        Returns:
            :class:`RefOccEncoding`.
        """
        self._check_encode(image, camera, left, right, anchors_left, anchors_right)
        return self.encode_camera(image, camera, left, right, left.to_camera(anchors_left, "left", camera),
                                  right.to_camera(anchors_right, "right", camera), init_encoding=init_encoding)

    def encode_camera(self, image: Tensor, camera: Camera, left: HandInputs, right: HandInputs,
                      anchors_cam_left: Tensor, anchors_cam_right: Tensor, *,
                      init_encoding: InitOccEncoding | None = None) -> RefOccEncoding:
        """:meth:`encode` with the anchors already in the camera frame: (B, 512, 3) each, metres, OpenCV."""
        self._check_encode(image, camera, left, right, anchors_cam_left, anchors_cam_right)
        official = self.config.official_quirks
        intrinsics = camera.K.float()
        if init_encoding is not None:
            if not isinstance(init_encoding, InitOccEncoding):
                raise TypeError(f"init_encoding: expected an InitOccEncoding, got {type(init_encoding).__name__}")
            init_enc = init_encoding
        else:
            with torch.no_grad(), torch.autocast(image.device.type, enabled=False):   # frozen: float32 (decode)
                init_enc = self.init_occ.encode(image.float(), camera)
        img_feat, img_global = self.image_maps(image)
        cams = {"left": anchors_cam_left.float(), "right": anchors_cam_right.float()}
        feat, flip = {}, {}
        f = torch.tensor(FLIP, device=image.device)
        for side in SIDES:
            feat[side] = project_and_sample(img_feat, cams[side], intrinsics, official_quirks=official)
            flip[side] = cams[side] * f
        both = torch.cat([flip["left"], flip["right"]], dim=1)
        center = (both.amax(dim=1) + both.amin(dim=1)) / 2  # (B, 3)
        skip = FPS_SKIP_SQ_NORM if official else None
        enc = {}
        for side in SIDES:
            label = torch.tensor(HAND_LABEL[side], device=image.device).expand(*feat[side].shape[:2], 2)
            enc[side] = self._encode_anchors(flip[side] - center[:, None], torch.cat([feat[side], label], dim=2),
                                             skip)
        z = {s: enc[s].z for s in SIDES}
        ctx = self._context(z, img_global)
        pen = self._context(ctx, img_global) if official else ctx
        out = {}
        for side in SIDES:
            e = enc[side]
            cache = self.trans_dec.precompute(ctx[side], e.anchors, e.anchor_feats)
            cache_pen = self.trans_dec.precompute(pen[side], e.anchors, e.anchor_feats) if official else cache
            out[side] = HandEncoding(anchor_img_feat=feat[side], anchors_flip=flip[side], points=e,
                                     z_context=ctx[side], z_pen=pen[side], cache=cache, cache_pen=cache_pen)
        return RefOccEncoding(img_feat=img_feat, img_global=img_global, center=center, left=out["left"],
                              right=out["right"], init_occ=init_enc, camera=camera,
                              intrinsics=intrinsics, hand_left=left, hand_right=right)

    def _encode_anchors(self, xyz: Tensor, feats: Tensor, skip: float | None) -> PointEncoding:
        """``trans_enc`` on one hand's anchors; under bfloat16 autocast with ``config.bf16_encoder`` and no
        autograd (outputs converted back to float32)."""
        if not (self.config.bf16_encoder and not torch.is_grad_enabled()):
            return self.trans_enc(xyz, feats, fps_skip_sq_norm=skip)
        with torch.autocast(xyz.device.type, dtype=torch.bfloat16):
            e = self.trans_enc(xyz, feats, fps_skip_sq_norm=skip)
        return replace(e, z=e.z.float(), anchors=e.anchors.float(), anchor_feats=e.anchor_feats.float())

    def _context(self, z: dict[Side, Tensor], img_global: Tensor) -> dict[Side, Tensor]:
        """Both hands' context layer, each reading the latents from before this call."""
        return {s: self.context_enc(torch.cat([z[s], z[other_side(s)], img_global], dim=1)) for s in SIDES}

    # ------------------------------------------------------------------ decode

    def query_features(self, encoding: RefOccEncoding, points: Tensor, side: Side) -> tuple[Tensor, Tensor]:
        """Image feature and transformer position of query points.

        Args:
            points: (B, N, 3) points in `side`'s query frame (0.4·p = metres).
        Returns:
            ((B, N, 32) sampled image feature, (B, N, 3) centred flipped camera coordinates, metres).
        """
        return self._camera_features(encoding, encoding.inputs(side).to_camera(points, side, encoding.camera))

    def _camera_features(self, encoding: RefOccEncoding, cam: Tensor) -> tuple[Tensor, Tensor]:
        feat = project_and_sample(encoding.img_feat, cam, encoding.intrinsics,
                                  official_quirks=self.config.official_quirks)
        flip = torch.tensor(FLIP, dtype=cam.dtype, device=cam.device)
        return feat, cam * flip - encoding.center[:, None]

    def _check_points(self, encoding: RefOccEncoding, points: Tensor, name: str) -> None:
        check_tensor(points, name)
        b = check_shape(points, "B N 3", name)["B"]
        if not points.dtype.is_floating_point:
            raise TypeError(f"{name}: expected a float tensor, got {points.dtype}")
        if b != encoding.batch_size:
            raise ValueError(f"{name} and encoding: mismatched batch size ({b} vs {encoding.batch_size})")
        check_finite(points, name)

    def _decode_hand(self, encoding: RefOccEncoding, side: Side, points: Tensor, *, pen: bool,
                     scratch: Tensor | None, known: InitialValues | None = None,
                     other_max: Tensor | None = None) -> HandOutput:
        """`side`'s network at points in `side`'s query frame (pen=False) or the other hand's (pen=True).

        Everything runs in chunks of ``config.chunk_points`` points so that memory stays bounded at any
        point count. In official mode the frozen InitOcc references the camera z of query 0 of the points
        passed to it (official quirk); each later chunk is therefore evaluated with query 0 prepended (its
        extra output dropped), which gives exactly the values of one call on all points. `known`: the frozen
        InitOcc's values where the caller has them (default mode only); it runs on the other points.
        `other_max`: (B, N) the contact cue's other-hand max part logit at the points when the caller has it
        (:meth:`decode` with the pen pass); None computes it per chunk.
        """
        hand = encoding.inputs(side)
        frame_side = other_side(side) if pen else side
        other = encoding.inputs(frame_side) if pen else None
        frame_hand = encoding.inputs(frame_side)
        henc = encoding.hand(side)
        cache = henc.cache_pen if pen else henc.cache
        b, n = points.shape[:2]
        chunk_size = self.config.chunk_points
        if torch.is_grad_enabled():   # training: keep each activation below malloc's mmap threshold
            chunk_size = min(chunk_size, GRAD_CHUNK_POINTS)
        step = max(1, chunk_size // max(b, 1))
        logits, inits = [], []
        cam0 = None   # camera coordinates of query 0 (official mode's later chunks prepend it)
        for s in range(0, n, step):
            chunk = points[:, s:s + step]
            with torch.autocast(points.device.type, enabled=False):   # positions in float32 even under autocast
                cam = frame_hand.to_camera(chunk, frame_side, encoding.camera)   # once per chunk, for both nets
            lead = 1 if (s > 0 and self.config.official_quirks) else 0
            # the frozen InitOcc runs in float32 even under autocast (its stacked part decoders write into
            # float32 buffers); it is not trained, so mixed precision would gain nothing there
            with torch.no_grad(), torch.autocast(points.device.type, enabled=False):
                if known is not None:
                    init, init_max = self._known_initial(encoding, hand, side, chunk, cam, known, s, s + step)
                else:
                    init_pts = torch.cat([points[:, :1], chunk], dim=1) if lead else chunk
                    init_cam = torch.cat([cam0, cam], dim=1) if lead else cam
                    init_out = self.init_occ.decode(encoding.init_occ, hand, init_pts, side, pen=pen, other=other,
                                                    points_cam=init_cam)
                    init = init_out.occupancy[:, lead:]
                    init_max = init_out.part_logits[:, lead:].amax(dim=-1) if self.config.residual else None
                if self.config.contact_cue:
                    cue_other = other_max[:, s:s + step] if other_max is not None else \
                        self._other_initial(encoding, side, frame_side, chunk, cam)
            if s == 0:
                cam0 = cam[:, :1]
            feat, xyz = self._camera_features(encoding, cam)
            qfeat = torch.cat([feat, init[..., None].expand(-1, -1, 32)], dim=2)
            logit = self.trans_dec(xyz, qfeat, cache, chunk_size=min(chunk_size, DECODER_CHUNK_POINTS),
                                   scratch=scratch, bf16=self.config.bf16_decoder)
            if self.config.residual:
                logit = logit + init_max
            if self.config.contact_cue:
                cue = torch.stack([init_max, cue_other], dim=-1).clamp(-CUE_CLIP, CUE_CLIP)
                logit = logit + self.contact_head(cue.to(logit.dtype))[..., 0].float()
            logits.append(logit)
            inits.append(init)
        empty = points.new_zeros(b, 0, dtype=torch.float32)
        logit = torch.cat(logits, dim=1) if logits else empty
        init = torch.cat(inits, dim=1) if inits else empty
        return HandOutput(occupancy=torch.sigmoid(logit), logit=logit, init_occupancy=init)

    def _other_initial(self, encoding: RefOccEncoding, side: Side, frame_side: Side, chunk: Tensor,
                       cam: Tensor) -> Tensor:
        """(B, n) max part logit of the frozen InitOcc of the hand that is *not* `side` at a chunk of points in
        `frame_side`'s query frame (camera coordinates `cam`): the contact cue's second input."""
        cue_side = other_side(side)
        if cue_side == frame_side:   # pen pass: the other hand at its own points
            out = self.init_occ.decode(encoding.init_occ, encoding.inputs(cue_side), chunk, cue_side, points_cam=cam)
        else:                        # main pass: the other hand at this hand's points
            out = self.init_occ.decode(encoding.init_occ, encoding.inputs(cue_side), chunk, cue_side, pen=True,
                                       other=encoding.inputs(frame_side), points_cam=cam)
        return out.part_logits.amax(dim=-1)

    def _known_initial(self, encoding: RefOccEncoding, hand: HandInputs, side: Side, chunk: Tensor, cam: Tensor,
                       known: InitialValues, lo: int, hi: int) -> tuple[Tensor, Tensor]:
        """(occupancy, max part logit) of the frozen InitOcc on one chunk: the known values, the network on
        the columns where any row's value is unknown."""
        occ = known.occupancy[:, lo:hi].float()
        max_logit = known.max_logit[:, lo:hi].float()
        missing = torch.isnan(occ).any(dim=0).nonzero()[:, 0]
        if missing.numel():
            out = self.init_occ.decode(encoding.init_occ, hand, chunk[:, missing], side, points_cam=cam[:, missing])
            occ, max_logit = occ.clone(), max_logit.clone()
            occ[:, missing] = out.occupancy
            max_logit[:, missing] = out.part_logits.amax(dim=-1)
        return occ, max_logit

    def decode(self, encoding: RefOccEncoding, points_left: Tensor, points_right: Tensor, *,
               pen: bool = False, known_left: InitialValues | None = None,
               known_right: InitialValues | None = None) -> RefOccOutput:
        """Refined occupancy of both hands at their query points.

        Args:
            encoding: from :meth:`encode` for the same B images.
            points_left: (B, N_L, 3) points in the left hand's query frame (0.4·p = metres, mirrored world).
            points_right: (B, N_R, 3) points in the right hand's query frame.
            pen: also evaluate each hand's network at the other hand's points (penetration loss inputs).
            known_left, known_right: the frozen InitOcc's values at some of that hand's points, when the caller
                has them (:class:`InitialValues`, (B, N_L) / (B, N_R)); the network runs on the others. Only in
                the default mode (officially a query's initial value depends on the first query of its call).
        Returns:
            :class:`RefOccOutput`; float32.
        """
        if not isinstance(encoding, RefOccEncoding):
            raise TypeError(f"encoding: expected a RefOccEncoding, got {type(encoding).__name__}")
        points = {"left": points_left, "right": points_right}
        known = {"left": known_left, "right": known_right}
        for side in SIDES:
            self._check_points(encoding, points[side], f"points_{side}")
            k = known[side]
            if k is None:
                continue
            if self.config.official_quirks:
                raise ValueError(f"known_{side}: known initial values need the default mode (official_quirks=False)")
            if not isinstance(k, InitialValues):
                raise TypeError(f"known_{side}: expected InitialValues, got {type(k).__name__}")
            for name in ("occupancy", "max_logit"):
                if tuple(getattr(k, name).shape) != tuple(points[side].shape[:2]):
                    raise ValueError(f"known_{side}.{name}: expected shape {tuple(points[side].shape[:2])}, "
                                     f"got {tuple(getattr(k, name).shape)}")
        scratch = None
        # one decoder scratch buffer for every chunk of this call (not under autocast: see the decoder)
        if not torch.is_grad_enabled() and not torch.is_autocast_enabled(points_left.device.type):
            most = max(points_left.shape[0] * points_left.shape[1], points_right.shape[0] * points_right.shape[1])
            scratch = self.trans_dec.scratch(min(most, self.config.chunk_points, DECODER_CHUNK_POINTS),
                                             encoding.img_feat)
        if pen and self.config.contact_cue:
            return self._decode_with_cue_and_pen(encoding, points, known, scratch)
        main = {s: self._decode_hand(encoding, s, points[s], pen=False, scratch=scratch, known=known[s])
                for s in SIDES}
        if pen:
            other = {s: self._decode_hand(encoding, s, points[other_side(s)], pen=True, scratch=scratch)
                     for s in SIDES}
        else:
            other = {s: self._empty(encoding) for s in SIDES}
        return RefOccOutput(left=main["left"], right=main["right"], pen_left=other["left"],
                            pen_right=other["right"])

    def _decode_with_cue_and_pen(self, encoding: RefOccEncoding, points: dict[Side, Tensor],
                                 known: dict[Side, InitialValues | None], scratch: Tensor | None) -> RefOccOutput:
        """:meth:`decode` with the pen pass and the contact cue. At one hand's points, its main pass reads
        (this hand's, the other hand's) frozen InitOcc and the other hand's pen pass reads the same two values
        the other way round, so each frozen InitOcc runs once per point set and both passes take its values."""
        own, cross = {}, {}
        with torch.no_grad(), torch.autocast(encoding.img_feat.device.type, enabled=False):
            for s in SIDES:
                hand = encoding.inputs(s)
                cam = hand.to_camera(points[s], s, encoding.camera)
                n = points[s].shape[1]
                if known[s] is not None:
                    occ, max_logit = self._known_initial(encoding, hand, s, points[s], cam, known[s], 0, n)
                else:
                    out = self.init_occ.decode(encoding.init_occ, hand, points[s], s, points_cam=cam)
                    occ, max_logit = out.occupancy, out.part_logits.amax(dim=-1)
                own[s] = InitialValues(occupancy=occ, max_logit=max_logit)
                o = other_side(s)
                out = self.init_occ.decode(encoding.init_occ, encoding.inputs(o), points[s], o, pen=True, other=hand,
                                           points_cam=cam)
                cross[s] = InitialValues(occupancy=out.occupancy, max_logit=out.part_logits.amax(dim=-1))
        main = {s: self._decode_hand(encoding, s, points[s], pen=False, scratch=scratch, known=own[s],
                                     other_max=cross[s].max_logit) for s in SIDES}
        # pen pass of hand o at hand s's points: o's InitOcc there is cross[s], the other (s's) is own[s]
        other = {other_side(s): self._decode_hand(encoding, other_side(s), points[s], pen=True, scratch=scratch,
                                                  known=cross[s], other_max=own[s].max_logit) for s in SIDES}
        return RefOccOutput(left=main["left"], right=main["right"], pen_left=other["left"],
                            pen_right=other["right"])

    @staticmethod
    def _empty(encoding: RefOccEncoding) -> HandOutput:
        z = encoding.img_feat.new_zeros(encoding.batch_size, 0)
        return HandOutput(occupancy=z, logit=z, init_occupancy=z)

    def forward(self, image: Tensor, camera: Camera, left: HandInputs, right: HandInputs,
                anchors_left: Tensor, anchors_right: Tensor, points_left: Tensor, points_right: Tensor, *,
                pen: bool = False) -> RefOccOutput:
        """Encode and decode in one call (training entry point)."""
        enc = self.encode(image, camera, left, right, anchors_left, anchors_right)
        return self.decode(enc, points_left, points_right, pen=pen)
