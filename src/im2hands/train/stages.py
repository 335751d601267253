"""The four training stages: which network, how it is built and initialised, its loss and its validation.

Each stage is a :class:`StageSpec` of pure functions over a collated :class:`~im2hands.data.dataset.HandsDataset`
batch (official recipe: ``reference/official-im2hands.md`` §5-6):

- ``halo``: InitOcc with the query-image attention off (``InitOccConfig.query_image_attention=False``);
  occupancy MSE of both hands. The HALO baseline, and the decoders InitOcc starts from.
- ``init-occ``: InitOcc; occupancy MSE of both hands; decoders initialised from a HALO checkpoint.
- ``ref-occ``: RefOcc with the InitOcc of an init-occ checkpoint frozen (its image encoder also initialises
  RefOcc's own); occupancy MSE + the penetration loss; anchors on the InitOcc meshes (or GT, ablation).
- ``kpts-ref``: KptsRef; MSE of the keypoints relative to each hand's middle MCP, mm, from the noisy
  keypoints to the GT.

Validation is cheap: occupancy stages decode each validation sample's stored uniform IoU points and
threshold them (0.5 InitOcc and a residual RefOcc, 0.45 RefOcc), no meshes; KptsRef reports the refined
and the input keypoints' error (mean per-joint, relative to each hand's middle MCP, mm).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

import torch
from torch import Tensor, nn

from im2hands.api import refined_threshold
from im2hands.hand.camera import Camera
from im2hands.hand.skeleton import SIDES
from im2hands.models.encoder import ImageEncoderConfig, ImageFeatures
from im2hands.models.init_occ import HandInputs, InitOcc, InitOccConfig
from im2hands.models.kpts_ref import MID_MCP_HALO, KptsRef, KptsRefConfig, network_keypoints, to_network_frame
from im2hands.models.part_decoder import NUM_BONES
from im2hands.models.ref_occ import RefOcc, RefOccConfig
from im2hands.train.config import TrainConfig
from im2hands.train.losses import (ImageSupervision, image_supervision, nearest_part, occupancy_bce, occupancy_mse, part_bce,
                                   ref_occ_loss)

MODEL_KIND = {"halo": "init_occ", "init-occ": "init_occ", "ref-occ": "ref_occ", "kpts-ref": "kpts_ref"}
"""Stage -> network kind of the checkpoint format (:mod:`im2hands.models.checkpoint`)."""

IOU_THRESHOLD = {"halo": 0.5, "init-occ": 0.5}
"""Occupancy threshold of the InitOcc stages' validation IoU (the official generation threshold); ref-occ
uses the reconstruction's refined iso-value, :func:`im2hands.api.refined_threshold`."""



def camera_of(batch: dict) -> Camera:
    return Camera(K=batch["camera_K"], R=batch["camera_R"], T=batch["camera_T"])


def hands_of(batch: dict) -> dict[str, HandInputs]:
    return {s: HandInputs(unpose=batch[s]["unpose"], bone_lengths=batch[s]["bone_lengths"],
                          root_rot_mat=batch[s]["root_rot_mat"], root=batch[s]["root"]) for s in SIDES}


def model_config(config: TrainConfig, init_config: InitOccConfig | None = None):
    """The network config of a run (RefOcc's frozen InitOcc config comes from the init-occ checkpoint)."""
    enc = ImageEncoderConfig(depth=config.encoder_depth, width=config.encoder_width,
                             fmap_dim=config.encoder_fmap_dim)
    if config.stage in ("halo", "init-occ"):
        return InitOccConfig(official_quirks=config.official_quirks, image_encoder=enc,
                             query_image_attention=config.stage == "init-occ")
    if config.stage == "ref-occ":
        if init_config is None:
            raise ValueError("init_from: the ref-occ stage needs an init-occ checkpoint (--init-from RUN/best.pt)")
        return RefOccConfig(official_quirks=config.official_quirks, image_encoder=enc, residual=config.refine_residual,
                            contact_cue=config.contact_cue, init_occ=replace(init_config, official_quirks=config.official_quirks))
    return KptsRefConfig(encoder=enc, official_quirks=config.official_quirks, img_dim=config.kpts_img_dim,
                         hand_centred=config.kpts_hand_centred, linear_path=config.kpts_linear_path)


def set_training_mode(model: nn.Module, config: TrainConfig, training: bool) -> None:
    """``model.train(training)``, keeping a frozen image encoder in eval mode (its batch norm then uses and
    keeps its running statistics, so it stays the encoder it was initialised with)."""
    model.train(training)
    if config.freeze_encoder and config.stage in ("ref-occ", "kpts-ref"):
        model.image_encoder.eval()


def build_network(config: TrainConfig, net_config) -> nn.Module:
    """A freshly initialised network; parameters the stage does not train are frozen."""
    if config.stage in ("halo", "init-occ"):
        model = InitOcc(net_config)
        if config.stage == "halo":   # no image side: only the part decoders train (and, with its 2D loss, the
            # image encoder that init-occ will start from; the decoders never see it)
            frozen = ("image_final_layer", "left_pt_embeddings", "right_pt_embeddings", "img_ex_left", "img_ex_right")
            for name in frozen + (() if config.image_loss_weight > 0 else ("image_encoder",)):
                getattr(model, name).requires_grad_(False)
            if config.coord_init_scale != 1.0:
                with torch.no_grad():
                    for decoder in (model.left_decoder, model.right_decoder):
                        for b in range(NUM_BONES):
                            getattr(decoder, f"lin{b}_0").weight[:, :3] *= config.coord_init_scale
        return model
    if config.stage == "ref-occ":
        model = RefOcc(net_config)
        if config.freeze_encoder:
            model.image_encoder.requires_grad_(False)
        return model
    model = KptsRef(net_config)
    model.img_final_layer.requires_grad_(False)   # unused, as officially
    if config.freeze_encoder:
        model.image_encoder.requires_grad_(False)
    return model


# ------------------------------------------------------------------------------------------------ losses


@dataclass(frozen=True)
class LossParts:
    """A training loss: ``total`` is minimised; ``parts`` are logged."""

    total: Tensor
    parts: dict[str, Tensor]


def image_loss(feats: ImageFeatures, batch: dict) -> ImageSupervision:
    """The image encoder's 2D loss on a batch (``losses.image_supervision``): its mask logits against the
    samples' masks, its heat maps against the GT joints projected with the crop intrinsics."""
    joints = torch.cat([batch[s]["joints"] for s in SIDES], dim=1).float()   # (B, 42, 3) camera frame
    uvw = joints @ batch["camera_K"].float().transpose(1, 2)
    return image_supervision(feats.mask, feats.hms, batch["mask"], uvw[..., :2] / uvw[..., 2:3])


def init_occ_loss(model: InitOcc, batch: dict, config: TrainConfig, world_size: int) -> LossParts:
    """InitOcc loss, summed over the two hands: the official MSE(occ, gt) on probabilities (or BCE on the max
    part logit, ``config.occupancy_loss``), plus ``config.part_loss_weight`` times the per-part BCE, plus
    ``config.image_loss_weight`` times the image encoder's 2D loss (``losses.image_supervision``)."""
    parts: dict[str, Tensor] = {}
    total = 0.0
    enc = None
    if config.image_loss_weight > 0:
        # the encoder's own 2D heads (hand masks, joint heat maps) are supervised beside the occupancy; in the
        # halo stage the decoders never read the image, so there this only pretrains the encoder for init-occ
        feats = model.image_encoder(batch["image"])
        if model.config.query_image_attention:
            enc = model.encode_features(model.img_feat_of(feats), camera_of(batch))
        sup = image_loss(feats, batch)
        parts |= {"image_mask_bce": sup.mask, "image_heatmap": sup.heatmap}
        total = total + config.image_loss_weight * sup.total
    if enc is None:
        enc = model.encode(batch["image"], camera_of(batch))
    hands = hands_of(batch)
    for s in SIDES:
        labels = batch[s]["occupancy"]
        out = model.decode(enc, hands[s], batch[s]["points"], s)
        if config.occupancy_loss == "bce":
            occ = occupancy_bce(out.part_logits, labels)
            parts[f"bce_{s}"] = occ
        else:
            occ = occupancy_mse(out.occupancy, labels, f"{s} occupancy")
            parts[f"mse_{s}"] = occ
        total = total + occ
        if config.part_loss_weight > 0:
            with torch.no_grad():
                pts = batch[s]["points"]
                q2c = batch[s]["query_to_cam"].to(pts.dtype)
                cam = pts @ q2c[:, :3, :3].transpose(1, 2) + q2c[:, None, :3, 3]
                nearest = nearest_part(cam, batch[s]["joints"])
            pb = part_bce(out.part_logits, labels, nearest)
            parts[f"part_bce_{s}"] = pb
            total = total + config.part_loss_weight * pb
    return LossParts(total=total, parts=parts)


def ref_occ_train_loss(model: RefOcc, batch: dict, config: TrainConfig, world_size: int) -> LossParts:
    """Official RefOcc loss: MSE_L + MSE_R + pen_weight * Σ penetration products.

    The penetration term is a sum over the global batch; each of the ``world_size`` processes sums its share,
    and the gradients are averaged over processes, so the local sum is multiplied by ``world_size``.
    """
    hands = hands_of(batch)
    pen = config.pen_pass and config.pen_weight > 0
    out = model(batch["image"], camera_of(batch), hands["left"], hands["right"], batch["left"]["anchors"],
                batch["right"]["anchors"], batch["left"]["points"], batch["right"]["points"], pen=pen)
    loss = ref_occ_loss(out, batch["left"]["occupancy"], batch["right"]["occupancy"],
                        pen_weight=config.pen_weight * world_size if pen else 0.0,
                        occupancy_loss=config.occupancy_loss)
    return LossParts(total=loss.total, parts={config.occupancy_loss: loss.occupancy,
                                              "penetration": loss.penetration / world_size})


def kpts_inputs(batch: dict) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(noisy left, noisy right, GT left, GT right) keypoints as KptsRef reads them: HALO order, camera axes,
    mm, minus the noisy left middle MCP (``kpts_ref.network_keypoints``, the official normalisation)."""
    noisy = network_keypoints(batch["left"]["noisy_joints"], batch["right"]["noisy_joints"])
    gt = {s: to_network_frame(batch[s]["joints"], noisy.left_mid_joint).float() for s in SIDES}
    return noisy.left_mm.float(), noisy.right_mm.float(), gt["left"], gt["right"]


def _mid_relative(x: Tensor) -> Tensor:
    return x - x[:, MID_MCP_HALO:MID_MCP_HALO + 1]


class FeatureCache:
    """Encoder features of a frozen image encoder, computed once per (split, sample) and kept as float16.

    Valid only while the encoder does not change (``TrainConfig.freeze_encoder``); the encoder runs in eval
    mode, so batch norm uses its running statistics and the features depend on the image alone.
    """

    def __init__(self):
        self.store: dict[tuple[str, int], tuple[Tensor, Tensor, Tensor]] = {}

    def features(self, encoder: nn.Module, images: Tensor, indices: Tensor, split: str) -> ImageFeatures:
        keys = [(split, int(i)) for i in indices]
        missing = [j for j, k in enumerate(keys) if k not in self.store]
        if missing:
            was_training = encoder.training
            encoder.eval()
            try:
                with torch.no_grad():
                    f = encoder(images[missing])
            finally:
                encoder.train(was_training)
            for n, j in enumerate(missing):
                self.store[keys[j]] = tuple(x[n].to("cpu", torch.float16) for x in
                                            (f.img_fmaps[-1], f.hms_fmaps[-1], f.dp_fmaps[-1]))
        with torch.autocast(images.device.type, enabled=False):   # stored float16; autocast would refuse it
            maps = [torch.stack([self.store[k][m] for k in keys]).to(images.device, images.dtype) for m in range(3)]
        return ImageFeatures(img_fmaps=(maps[0],), hms_fmaps=(maps[1],), dp_fmaps=(maps[2],), hms=None, mask=None, dp=None)


def _kpts_forward(model: KptsRef, batch: dict, config: TrainConfig, in_l: Tensor, in_r: Tensor, split: str):
    if not config.freeze_encoder:
        return model(batch["image"], in_l, in_r)
    cache = model.__dict__.setdefault("_feature_cache", FeatureCache())
    return model.refine(cache.features(model.image_encoder, batch["image"], batch["index"], split), in_l, in_r)


def kpts_ref_loss(model: KptsRef, batch: dict, config: TrainConfig, world_size: int) -> LossParts:
    """Official KptsRef loss: MSE of middle-MCP-relative keypoints (mm), summed over the two hands; or, with
    ``config.kpts_loss == "mpjpe"``, their mean joint distance (mm), summed over the two hands."""
    in_l, in_r, gt_l, gt_r = kpts_inputs(batch)
    out = _kpts_forward(model, batch, config, in_l, in_r, "train")
    d_l = _mid_relative(out.left) - _mid_relative(gt_l)
    d_r = _mid_relative(out.right) - _mid_relative(gt_r)
    if config.kpts_loss == "mpjpe":
        # the middle MCP's residual is exactly 0; the epsilon (mm²) keeps the gradient of the root finite
        e_l, e_r = ((d.pow(2).sum(-1) + 1e-8).sqrt().mean() for d in (d_l, d_r))
        return LossParts(total=e_l + e_r, parts={"mpjpe_left_mm": e_l, "mpjpe_right_mm": e_r})
    mse_l, mse_r = torch.mean(d_l ** 2), torch.mean(d_r ** 2)
    return LossParts(total=mse_l + mse_r, parts={"mse_left_mm2": mse_l, "mse_right_mm2": mse_r})


def fit_linear_path(model: KptsRef, files: list, *, draws: int, resample_noise: bool, seed: int,
                    ridge: float = 1e-3) -> dict[str, float]:
    """Set KptsRef's linear path (``KptsRefConfig.linear_path``) to the ridge least-squares map from each
    hand's noisy centred keypoints to its keypoint error, fitted on the training samples.

    Rows: per sample `draws` keypoint-error draws of the synthetic error model from its GT joints
    (`resample_noise`), or its one stored noisy draw. Frame and units as the network reads them: HALO
    order, camera axes, each hand minus its middle MCP, in ``coord_unit_mm``. The GCN's regressed offsets
    start at zero, so the network then starts as this linear estimate.

    Args:
        files: the training sample files (``<side>_joints`` / ``<side>_noisy_joints``: (21, 3), internal
            order, camera frame, metres).
        ridge: Tikhonov weight, relative to the number of rows.
    Returns:
        per hand the mean joint error (mm, middle-MCP-relative) of the input and of the fit on its rows.
    """
    import numpy as np

    from im2hands.data.synth.noise import noisy_keypoints

    cfg = model.config
    if not cfg.linear_path:
        raise ValueError("fit_linear_path: the network has no linear path (KptsRefConfig.linear_path)")
    if draws < 1 or not files:
        raise ValueError(f"fit_linear_path: need samples and draws >= 1 (got {len(files)} samples, {draws} draws)")
    rng = np.random.default_rng((seed, 0x6C696E))
    gt = {s: [] for s in SIDES}
    noisy = {s: [] for s in SIDES}
    for f in files:
        with np.load(f) as z:
            joints = {s: np.asarray(z[f"{s}_joints"], np.float64) for s in SIDES}
            stored = {s: np.asarray(z[f"{s}_noisy_joints"], np.float64) for s in SIDES}
        for _ in range(draws if resample_noise else 1):
            for s in SIDES:
                gt[s].append(joints[s])
                noisy[s].append(noisy_keypoints(rng, joints[s], s) if resample_noise else stored[s])
    t = {k: {s: torch.from_numpy(np.stack(v[s])) for s in SIDES} for k, v in (("gt", gt), ("noisy", noisy))}
    kin = network_keypoints(t["noisy"]["left"], t["noisy"]["right"])
    x_mm = {"left": kin.left_mm, "right": kin.right_mm}
    report = {}
    for s in SIDES:
        g = _mid_relative(to_network_frame(t["gt"][s], kin.left_mid_joint))
        x = _mid_relative(x_mm[s])
        a = torch.cat([(x / cfg.coord_unit_mm).flatten(1), x.new_ones(len(x), 1)], dim=1)   # (M, 64)
        y = ((g - x) / cfg.coord_unit_mm).flatten(1)                                       # (M, 63)
        # ridge as extra rows; the middle MCP's own (always zero) columns make the plain system rank-deficient,
        # so solve it by SVD (minimum-norm)
        reg = (ridge * len(a)) ** 0.5 * torch.eye(a.shape[1], dtype=a.dtype)
        w = torch.linalg.lstsq(torch.cat([a, reg]), torch.cat([y, y.new_zeros(a.shape[1], y.shape[1])]),
                               driver="gelsd").solution                                     # (64, 63)
        lin = getattr(model, f"{s}_linear")
        with torch.no_grad():
            lin.weight.copy_(w[:-1].T)
            lin.bias.copy_(w[-1])
        fit = x + (a @ w).view_as(x) * cfg.coord_unit_mm
        report[f"input_mpjpe_{s}_mm"] = float((x - g).norm(dim=-1).mean())
        report[f"fit_mpjpe_{s}_mm"] = float((_mid_relative(fit) - g).norm(dim=-1).mean())
    return report


# ------------------------------------------------------------------------------------------------ validation


def _iou_sums(occ: Tensor, labels: Tensor, threshold: float) -> Tensor:
    """(B,) per-row IoU of occupancy > threshold against labels > 0.5 (1 when both are empty)."""
    pred = occ > threshold
    gt = labels > 0.5
    inter = (pred & gt).sum(1).double()
    union = (pred | gt).sum(1).double()
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))


@torch.no_grad()
def validate_occupancy(model: nn.Module, batch: dict, config: TrainConfig, anchors: bool) -> dict[str, Tensor]:
    """Per-sample IoU of each hand at the validation points (``config.val_points_from``): {"iou_left": (B,),
    "iou_right": (B,)}; ref-occ adds the frozen InitOcc's IoU (``init_iou_*``) and the share of both hands'
    points that both hands' refined (``pen_share``) or initial (``init_pen_share``) occupancy calls inside."""
    n = config.val_points
    key, label = ("points", "occupancy") if config.val_points_from == "mixed" else ("points_iou", "occupancy_iou")
    points = {s: batch[s][key][:, :n] for s in SIDES}
    labels = {s: batch[s][label][:, :n] for s in SIDES}
    hands = hands_of(batch)
    cam = camera_of(batch)
    # RefOcc: the reconstruction's refined iso-value (a residual refinement keeps InitOcc's)
    thr = refined_threshold(model) if config.stage == "ref-occ" else IOU_THRESHOLD[config.stage]
    if config.stage == "ref-occ":
        enc = model.encode(batch["image"], cam, hands["left"], hands["right"], batch["left"]["anchors"],
                           batch["right"]["anchors"])
        out = model.decode(enc, points["left"], points["right"], pen=True)
        occ = {"left": out.left.occupancy, "right": out.right.occupancy}
        init = {"left": out.left.init_occupancy, "right": out.right.init_occupancy}
        res = {f"iou_{s}": _iou_sums(occ[s], labels[s], thr) for s in SIDES}
        res |= {f"init_iou_{s}": _iou_sums(init[s], labels[s], IOU_THRESHOLD["init-occ"]) for s in SIDES}
        # penetration: the share of both hands' validation points that both networks call inside
        both = torch.cat([(occ["left"] > thr) & (out.pen_right.occupancy > thr),
                          (occ["right"] > thr) & (out.pen_left.occupancy > thr)], dim=1)
        init_thr = IOU_THRESHOLD["init-occ"]
        init_both = torch.cat([(init["left"] > init_thr) & (out.pen_right.init_occupancy > init_thr),
                               (init["right"] > init_thr) & (out.pen_left.init_occupancy > init_thr)], dim=1)
        res["pen_share"] = both.double().mean(1)
        res["init_pen_share"] = init_both.double().mean(1)
        return res
    enc = model.encode(batch["image"], cam)
    return {f"iou_{s}": _iou_sums(model.decode(enc, hands[s], points[s], s).occupancy, labels[s], thr)
            for s in SIDES}


@torch.no_grad()
def validate_keypoints(model: KptsRef, batch: dict, config: TrainConfig, anchors: bool) -> dict[str, Tensor]:
    """Per-sample mean joint error (mm, middle-MCP-relative) of the refined and of the input keypoints."""
    in_l, in_r, gt_l, gt_r = kpts_inputs(batch)
    out = _kpts_forward(model, batch, config, in_l, in_r, "val")

    def err(p: Tensor, g: Tensor) -> Tensor:
        return (_mid_relative(p) - _mid_relative(g)).norm(dim=-1).mean(-1).double()

    return {"mpjpe_mm": (err(out.left, gt_l) + err(out.right, gt_r)) / 2,
            "input_mpjpe_mm": (err(in_l, gt_l) + err(in_r, gt_r)) / 2}


@dataclass(frozen=True)
class StageSpec:
    """What differs between stages."""

    loss: Callable[[nn.Module, dict, TrainConfig, int], LossParts]
    validate: Callable[[nn.Module, dict, TrainConfig, bool], dict[str, Tensor]]
    metric: str
    """The validation figure that selects the best model."""
    higher_is_better: bool


STAGE_SPECS: dict[str, StageSpec] = {
    "halo": StageSpec(init_occ_loss, validate_occupancy, "iou", True),
    "init-occ": StageSpec(init_occ_loss, validate_occupancy, "iou", True),
    "ref-occ": StageSpec(ref_occ_train_loss, validate_occupancy, "iou", True),
    "kpts-ref": StageSpec(kpts_ref_loss, validate_keypoints, "mpjpe_mm", False),
}


def summarise_validation(per_sample: dict[str, list[Tensor]]) -> dict[str, float]:
    """Means over validation samples; ``iou`` is the mean of both hands' IoU."""
    cat = {k: torch.cat(v) for k, v in per_sample.items()}
    out = {k: float(v.mean()) for k, v in cat.items()}
    if "iou_left" in out:
        out["iou"] = (out["iou_left"] + out["iou_right"]) / 2
    if "init_iou_left" in out:
        out["init_iou"] = (out["init_iou_left"] + out["init_iou_right"]) / 2
    return out
