"""Build the shipped model bundle from trained checkpoints and check it against them.

Run::

    PYTHONPATH=src python docs/scripts/ship_model.py --ref-occ RUN_REF/best.pt --kpts-ref RUN_KPTS/best.pt \\
        --out src/im2hands/assets/model/im2hands_compact.pt

The RefOcc checkpoint holds the frozen InitOcc, so the bundle has all three networks (``--kpts-ref`` may be
left out: the model then uses the keypoints as given). It prints the bundle's size, the largest
|float32 - stored| weight change per network, then checks on a shipped demo sample (``--sample``) that the
bundle's networks give the float32 networks' outputs: InitOcc and RefOcc occupancy at points uniform in each
hand's box, within :data:`OCCUPANCY_TOL`, and KptsRef's keypoints within :data:`KEYPOINTS_TOL_MM`. Exit 1 if a
check fails.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from im2hands.api import Im2Hands
from im2hands.data.crop import Crop
from im2hands.data.dataset import normalise_image
from im2hands.demo import DEMO_DIR, load_input
from im2hands.hand.camera import Camera
from im2hands.hand.canonical import canonicalise
from im2hands.mesh import Lattice, sample_anchors
from im2hands.models.bundle import SHIPPED_BUNDLE, load_bundle, save_bundle
from im2hands.models.checkpoint import load_checkpoint
from im2hands.models.init_occ import HandInputs

OCCUPANCY_TOL = 0.01
"""Largest allowed |occupancy probability (float32 weights) - occupancy probability (bundle)|."""
KEYPOINTS_TOL_MM = 0.5
"""Largest allowed difference of KptsRef's refined keypoints, mm."""
POINTS = 4096
"""Points per hand of the occupancy check, uniform in the +-0.55 query box."""


def max_weight_change(a: dict, b: dict) -> float:
    """Largest |a - b| over the floating tensors of two state dicts with the same keys."""
    return max((float((a[k].float() - b[k].float()).abs().max()) for k in a if a[k].is_floating_point()
                and a[k].numel()), default=0.0)


def outputs(model: Im2Hands, crop: Crop, joints_cam: dict, anchors: dict, points: torch.Tensor) -> dict:
    """The networks' outputs on one input: KptsRef keypoints (mm), InitOcc and RefOcc occupancy per hand."""
    img = normalise_image(crop.image)[None]
    cam = Camera(K=torch.tensor(crop.K, dtype=torch.float32)[None], R=torch.eye(3)[None], T=torch.zeros(1, 3))
    hands = {s: HandInputs.from_canonical(canonicalise(torch.tensor(joints_cam[s])[None], s))
             for s in ("right", "left")}
    out = {}
    with torch.inference_mode():
        if model.kpts_ref is not None:
            refined = model.refine_keypoints(img, joints_cam)
            out["kpts_ref keypoints (mm)"] = np.concatenate([refined["right"], refined["left"]]) * 1000
        enc = model.init_occ.encode(img, cam)
        for s in ("right", "left"):
            out[f"init_occ occupancy ({s})"] = model.init_occ.decode(enc, hands[s], points, s).occupancy.numpy()
        if model.ref_occ is not None:
            renc = model.ref_occ.encode(img, cam, hands["left"], hands["right"], anchors["left"], anchors["right"])
            dec = model.ref_occ.decode(renc, points, points)
            out["ref_occ occupancy (right)"] = dec.right.occupancy.numpy()
            out["ref_occ occupancy (left)"] = dec.left.occupancy.numpy()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ref-occ", type=Path, required=True, help="RefOcc checkpoint (holds the frozen InitOcc)")
    ap.add_argument("--kpts-ref", type=Path, default=None, help="KptsRef checkpoint")
    ap.add_argument("--out", type=Path, default=SHIPPED_BUNDLE, help=f"bundle to write (default: {SHIPPED_BUNDLE})")
    ap.add_argument("--sample", type=Path, default=DEMO_DIR / "clasp", help="demo sample folder of the check")
    args = ap.parse_args()
    torch.manual_seed(0)

    sources = {"ref_occ": args.ref_occ, "kpts_ref": args.kpts_ref}
    checkpoints = {}
    for kind, path in sources.items():
        if path is None:
            continue
        ckpt = load_checkpoint(path)
        if ckpt.kind != kind:
            sys.exit(f"--{kind.replace('_', '-')} {path}: a {ckpt.kind} checkpoint, expected {kind}")
        checkpoints[kind] = ckpt
    save_bundle(args.out, checkpoints)
    loaded = load_bundle(args.out)
    n_f32 = sum(t.numel() * t.element_size() for c in checkpoints.values() for t in c.state_dict.values())
    print(f"wrote {args.out}: {args.out.stat().st_size / 1e6:.2f} MB (the float32 checkpoints' tensors: "
          f"{n_f32 / 1e6:.2f} MB)")
    for kind, ckpt in checkpoints.items():
        print(f"  {kind}: {len(ckpt.state_dict)} tensors, max |float32 - float16| = "
              f"{max_weight_change(ckpt.state_dict, loaded[kind].state_dict):.3g}")

    inp = load_input(args.sample / "image.png", args.sample / "keypoints.json", args.sample / "camera.json")
    files = [p for p in sources.values() if p is not None]
    ref = Im2Hands.from_checkpoint(*files, device="cpu", lattice=Lattice(16, 2))
    new = Im2Hands.from_checkpoint(args.out, device="cpu", lattice=Lattice(16, 2))
    # the same input for both: the float32 model's crop, keypoints and anchors (on its initial meshes)
    rec = ref.reconstruct(inp.image, inp.keypoints, inp.camera, keypoint_order=inp.keypoint_order,
                          stages=("initial",))
    anchors = {}
    for k, (s, ext) in enumerate(zip(("right", "left"), rec.stages["initial"].extractions)):
        if len(ext.faces) == 0:
            sys.exit(f"{args.sample}: the initial {s} mesh is empty, no anchors for the RefOcc check")
        anchors[s] = torch.as_tensor(sample_anchors(ext.vertices, ext.faces, 512, seed=k), dtype=torch.float32)[None]
    joints = {s: np.asarray(v, np.float64) for s, v in rec.keypoints.items()}
    points = (torch.rand(1, POINTS, 3) - 0.5) * 1.1
    a = outputs(ref, rec.crop, joints, anchors, points)
    b = outputs(new, rec.crop, joints, anchors, points)
    failed = 0
    print(f"check on {args.sample.name} ({POINTS} points per hand):")
    for name in a:
        err = float(np.abs(a[name] - b[name]).max())
        tol = KEYPOINTS_TOL_MM if "keypoints" in name else OCCUPANCY_TOL
        ok = err <= tol
        failed += not ok
        print(f"  {name}: max |float32 - bundle| = {err:.3g} (tolerance {tol}) {'ok' if ok else 'FAILED'}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
