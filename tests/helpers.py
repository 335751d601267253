"""Shared test helpers: a tiny synthetic data set, small networks, and oracle networks whose occupancy is a
known mesh (so that the whole reconstruction pipeline has a known answer)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from im2hands.models.encoder import ImageEncoderConfig
from im2hands.models.init_occ import InitOcc, InitOccConfig, InitOccOutput
from im2hands.models.kpts_ref import KptsRef, KptsRefConfig
from im2hands.models.ref_occ import HandOutput, RefOcc, RefOccConfig, RefOccOutput

SMALL_ENCODER = ImageEncoderConfig(depth=18)


def make_synth(out: Path, num: int = 2, split: str = "test", seed: int = 3) -> Path:
    """A few synthetic samples with small point counts (seconds to make)."""
    from im2hands.data.synth.generate import SynthConfig, generate
    from im2hands.data.synth.occupancy import OccupancyConfig

    generate(SynthConfig(out=out, num=num, split=split, seed=seed, workers=1, gallery=0, progress=False,
                         occupancy=OccupancyConfig(num_points=2000, num_iou_points=1000, num_surface_points=1000)))
    return out


def small_networks(sample: dict, seed: int = 0, *, inside: float = 0.1,
                   shared_encoder: bool = False) -> tuple[InitOcc, RefOcc, KptsRef]:
    """Random small networks (ResNet-18 encoders) for `sample`. Random decoders give fields that barely vary
    (inside everywhere or nowhere), so their output biases are shifted until a share `inside` of the box is
    inside for each hand and stage: each field then has a surface to extract. With `shared_encoder`, RefOcc's
    and KptsRef's image encoders are copies of InitOcc's (as in trained checkpoints)."""
    from im2hands.api import Im2Hands
    from im2hands.data.dataset import normalise_image
    from im2hands.hand.camera import Camera

    torch.manual_seed(seed)
    ic = InitOccConfig(image_encoder=SMALL_ENCODER)
    init = InitOcc(ic).eval()
    ref = RefOcc(RefOccConfig(image_encoder=SMALL_ENCODER, init_occ=ic)).eval()
    kpts = KptsRef(KptsRefConfig(encoder=SMALL_ENCODER)).eval()
    if shared_encoder:
        ref.image_encoder.load_state_dict(init.image_encoder.state_dict())
        kpts.image_encoder.load_state_dict(init.image_encoder.state_dict())
    hands = Im2Hands(init_occ=init)._hand_inputs({s: np.asarray(sample[f"{s}_joints"], np.float64)
                                                  for s in ("right", "left")})
    cam = Camera(K=torch.tensor(np.asarray(sample["camera_K"]), dtype=torch.float32)[None], R=torch.eye(3)[None],
                 T=torch.zeros(1, 3))
    image = normalise_image(np.asarray(sample["image"]))[None]
    g = torch.Generator().manual_seed(seed)
    points = (torch.rand(1, 4000, 3, generator=g) - 0.5) * 1.1
    q = 1.0 - inside
    with torch.no_grad():
        enc = init.encode(image, cam)
        for side in ("right", "left"):
            top = init.decode(enc, hands[side], points, side).part_logits.max(-1).values
            shift = -float(torch.quantile(top, q))
            for name, p in init.decoder(side).named_parameters():
                if name.startswith("lin") and name.endswith("_4.bias"):
                    p.add_(shift)
        ref.init_occ.load_state_dict(init.state_dict())
        # the refined field, with the anchors the pipeline would give it (on the initial meshes)
        from im2hands.data.crop import Crop
        from im2hands.mesh import Lattice, sample_anchors

        crop = Crop(image=np.asarray(sample["image"]), K=np.asarray(sample["camera_K"], np.float64), box=(0, 0, 256))
        rec = Im2Hands(init_occ=init, lattice=Lattice(8, 2)).reconstruct_crop(
            crop, {s: np.asarray(sample[f"{s}_joints"], np.float64) for s in ("right", "left")}, stages=("initial",))
        ext = dict(zip(("right", "left"), rec.stages["initial"].extractions))
        anchors = {s: sample_anchors(ext[s].vertices, ext[s].faces, 512, seed=0)[None] for s in ("right", "left")}
        renc = ref.encode(image, cam, hands["left"], hands["right"], anchors["left"], anchors["right"])
        out = ref.decode(renc, points, points)
        # One decoder for both hands: put the refined threshold (logit(0.45) = -0.2) where both hands have
        # points on either side (between the higher 10 % quantile and the lower 90 % quantile).
        lo = max(float(torch.quantile(o.logit, 0.1)) for o in (out.left, out.right))
        hi = min(float(torch.quantile(o.logit, 0.9)) for o in (out.left, out.right))
        shift = (lo + hi) / 2
        ref.trans_dec.fc_out.bias.add_(-shift - 0.2007)
    return init, ref, kpts


def _signed_distance(points: torch.Tensor, vertices: np.ndarray, faces: np.ndarray) -> torch.Tensor:
    import igl

    p = points.detach().double().cpu().numpy().reshape(-1, 3)
    out = igl.signed_distance(p, np.asarray(vertices, np.float64), np.asarray(faces, np.int64))
    sd = out[0] if isinstance(out, tuple) else out
    return torch.from_numpy(np.asarray(sd)).reshape(points.shape[:-1]).to(points.device)


def oracle_occupancy(points_cam: torch.Tensor, mesh: tuple[np.ndarray, np.ndarray], width: float = 0.002,
                     offset: float = 0.0) -> torch.Tensor:
    """A smooth occupancy whose 0.5 level set is `mesh` grown by `offset` metres: sigmoid(-(sd - offset) / width)."""
    sd = _signed_distance(points_cam, *mesh)
    return torch.sigmoid(-(sd - offset) / width).float()


class OracleInitOcc(InitOcc):
    """InitOcc whose occupancy at a query point is the known mesh's (camera frame): a known answer."""

    def __init__(self, meshes: dict[str, tuple[np.ndarray, np.ndarray]]):
        super().__init__(InitOccConfig(image_encoder=SMALL_ENCODER))
        self.meshes = meshes

    def decode(self, encoding, hand, points, side, *, pen=False, other=None, points_cam=None):
        cam = hand.to_camera(points, side, encoding.camera) if points_cam is None else points_cam
        occ = oracle_occupancy(cam, self.meshes[side])
        return InitOccOutput(occupancy=occ, part_logits=occ.new_zeros(*occ.shape, 16))


class OracleRefOcc(RefOcc):
    """RefOcc whose refined occupancy is the known mesh grown by `offset` metres (the refined surface moves)."""

    def __init__(self, meshes: dict[str, tuple[np.ndarray, np.ndarray]], offset: float = 0.0):
        ic = InitOccConfig(image_encoder=SMALL_ENCODER)
        super().__init__(RefOccConfig(image_encoder=SMALL_ENCODER, init_occ=ic))
        self.meshes, self.offset = meshes, offset

    def decode(self, encoding, points_left, points_right, *, pen=False):
        out = {}
        for side, pts in (("left", points_left), ("right", points_right)):
            cam = encoding.inputs(side).to_camera(pts, side, encoding.camera)
            # the 0.45 level set of the oracle is the mesh grown by offset (width * logit(0.45) ~ 0.2 mm more)
            occ = oracle_occupancy(cam, self.meshes[side], offset=self.offset)
            out[side] = HandOutput(occupancy=occ, logit=torch.logit(occ.clamp(1e-6, 1 - 1e-6)), init_occupancy=occ)
        empty = HandOutput(*(torch.zeros(points_left.shape[0], 0),) * 3)
        return RefOccOutput(left=out["left"], right=out["right"], pen_left=empty, pen_right=empty)


def sample_meshes(sample: dict) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    return {s: (np.asarray(sample[f"{s}_vertices"], np.float64), np.asarray(sample[f"{s}_faces"], np.int64))
            for s in ("right", "left")}


def demo_sample(folder: Path) -> dict:
    """A shipped demo sample (``src/im2hands/assets/demo/<name>``) as the keys :func:`small_networks` reads:
    ``image``, ``camera_K`` and each hand's ``joints`` (the sample's input keypoints)."""
    from PIL import Image

    from im2hands.api import load_camera_json, load_keypoints_json, parse_keypoints

    kp, order = load_keypoints_json(folder / "keypoints.json")
    joints = parse_keypoints(kp, order)
    return {"image": np.array(Image.open(folder / "image.png").convert("RGB")),
            "camera_K": load_camera_json(folder / "camera.json")["K"],
            **{f"{s}_joints": joints[s] for s in ("right", "left")}}


def small_checkpoints(folder: Path, sample: dict, seed: int = 0) -> dict[str, Path]:
    """:func:`small_networks` for `sample` (one image encoder shared as in trained checkpoints) saved as
    ``folder/ref_occ.pt`` (with its InitOcc) and ``folder/kpts_ref.pt``: a stand-in for trained checkpoints."""
    from im2hands.models.checkpoint import save_checkpoint

    _, ref, kpts = small_networks(sample, seed, shared_encoder=True)
    paths = {}
    for kind, net in (("ref_occ", ref), ("kpts_ref", kpts)):
        paths[kind] = folder / f"{kind}.pt"
        save_checkpoint(paths[kind], model=kind, config=net.config, state_dict=net.state_dict())
    return paths
