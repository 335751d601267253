"""Print the measured figures of the open hand model quoted in docs/OPENHAND.md.

Run: ``PYTHONPATH=src python docs/scripts/measure_openhand.py``
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch
import trimesh

from im2hands.hand import openhand as oh
from im2hands.hand import openhand_build as ohb
from im2hands.hand.mano import ManoLayer
from im2hands.hand.skeleton import MANO_KINTREE_PARENTS

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests" / "hand"))
from _mesh_quality import local_pairs, self_intersecting_pairs  # noqa: E402


def main() -> None:
    torch.set_num_threads(2)
    t0 = time.perf_counter()
    ohb.build_right()
    print(f"generation (right model, build_right): {time.perf_counter() - t0:.1f} s")
    d = oh.openhand_dir()
    right = oh.load_model(d / "MANO_RIGHT.pkl")
    sizes = [(d / f"MANO_{s}.pkl").stat().st_size for s in ("RIGHT", "LEFT")]
    print(f"files: {sizes[0] / 1e6:.2f} MB + {sizes[1] / 1e6:.2f} MB")
    v = np.asarray(right["v_template"], np.float64)
    f = right["f"].astype(np.int64)
    rest = trimesh.Trimesh(v, f, process=False)
    print(f"vertices {len(v)}, faces {len(f)}, watertight {rest.is_watertight}, bodies {rest.body_count}, "
          f"volume {rest.volume * 1e6:.0f} cm^3, rest self-intersecting pairs {len(self_intersecting_pairs(v, f))}")
    ang = np.degrees(rest.face_angles.min(1))
    print(f"smallest triangle angle: min {ang.min():.1f} deg, 1st percentile {np.percentile(ang, 1):.1f}, "
          f"median {np.median(ang):.1f}")
    skel = oh.rest_skeleton()
    print(f"J_regressor @ v_template - designed joints: max {np.abs(right['J_regressor'] @ v - skel.joints).max() * 1e3:.2e} mm")
    layer = ManoLayer(d, side="right", flat_hand_mean=True, joint_order="mano", dtype=torch.float64)

    def run(pose=None, betas=None):
        t = lambda a: None if a is None else torch.tensor(np.atleast_2d(a))  # noqa: E731
        with torch.no_grad():
            return layer(hand_pose=t(pose), betas=t(betas))

    r0 = run()
    j0, tip0, v0 = r0.kinematic_joints[0].numpy(), r0.joints[0, 16:].numpy(), r0.vertices[0].numpy()
    print(f"wrist -> middle fingertip at betas=0: {np.linalg.norm(tip0[2] - j0[0]) * 1e3:.1f} mm")
    b = np.random.default_rng(0).normal(0, 1, (1000, 10))
    out = run(betas=b)
    length = torch.linalg.norm(out.joints[:, 18] - out.joints[:, 0], dim=-1).numpy() * 1e3
    print(f"betas ~ N(0,1), 1000 samples: wrist -> middle tip min {length.min():.0f}, 5% {np.percentile(length, 5):.0f}, "
          f"median {np.median(length):.0f}, 95% {np.percentile(length, 95):.0f}, max {length.max():.0f} mm")
    w = np.asarray(right["weights"])
    axes = oh.bone_axes(skel)

    def girth(vv, bones):
        out = []
        for bb in bones:
            sel = w[:, bb] > 0.6
            rel = vv[sel] - skel.joints[bb]
            out.append(np.linalg.norm(rel - (rel @ axes[bb])[:, None] * axes[bb], axis=1).mean())
        return np.mean(out)

    fingers = [bb for n in ("index", "middle", "ring", "pinky") for bb in oh.FINGER_CHAINS[n]]
    thumb = list(oh.FINGER_CHAINS["thumb"])
    print("per unit beta: | mean vertex move | max joint move | girth change fingers / thumb | wrist->middle tip")
    for c, (name, _) in enumerate(oh.SHAPE_COMPONENTS):
        bb = np.zeros(10)
        bb[c] = 1
        o = run(betas=bb)
        vv, jj, tt = o.vertices[0].numpy(), o.kinematic_joints[0].numpy(), o.joints[0, 16:].numpy()
        print(f"  {c} {name:17s} {np.linalg.norm(vv - v0, axis=1).mean() * 1e3:5.2f} mm | "
              f"{np.abs(jj - j0).max() * 1e3:5.2f} mm | {(girth(vv, fingers) - girth(v0, fingers)) * 1e3:+.2f} / "
              f"{(girth(vv, thumb) - girth(v0, thumb)) * 1e3:+.2f} mm | "
              f"{(np.linalg.norm(tt[2] - jj[0]) - np.linalg.norm(tip0[2] - j0[0])) * 1e3:+.1f} mm")
    poses = ohb.sample_anatomical_poses(skel, 300, np.random.default_rng(0))
    out = run(pose=poses)
    verts = out.vertices.numpy()
    vol = np.array([trimesh.Trimesh(x, f, process=False).volume for x in verts]) / rest.volume
    tri = verts[:, f]
    area = 0.5 * np.linalg.norm(np.cross(tri[:, :, 1] - tri[:, :, 0], tri[:, :, 2] - tri[:, :, 0]), axis=-1)
    degen = (area < 0.05 * rest.area_faces).mean(1)
    face_bone = w[f].sum(1).argmax(1)
    rot = out.skinning_transforms[:, :, :3, :3].numpy()[:, face_bone]
    n_rest = np.einsum("pfij,fj->pfi", rot, rest.face_normals)
    n_pose = np.cross(tri[:, :, 1] - tri[:, :, 0], tri[:, :, 2] - tri[:, :, 0])
    flipped = (np.einsum("pfi,pfi->pf", n_pose, n_rest) < 0).mean(1)
    print(f"300 random anatomical poses: volume posed/rest min {vol.min():.3f} mean {vol.mean():.3f} max {vol.max():.3f}; "
          f"degenerate faces (area < 5% of rest) max {degen.max() * 100:.3f} %; flipped faces max {flipped.max() * 100:.3f} %")
    loc, allf = [], []
    for x in verts[:100]:
        pairs = self_intersecting_pairs(x, f)
        allf.append(len(np.unique(pairs)) / len(f))
        loc.append(len(np.unique(pairs[local_pairs(pairs, face_bone, MANO_KINTREE_PARENTS)])) / len(f))
    loc, allf = np.array(loc) * 100, np.array(allf) * 100
    print(f"100 poses: faces in local (same/adjacent bone) self-intersections mean {loc.mean():.2f} % max {loc.max():.2f} %; "
          f"all self-intersections incl. finger-finger contacts mean {allf.mean():.2f} % max {allf.max():.2f} %")
    comps = right["hands_components"]
    p = ohb.sample_anatomical_poses(skel, 5000, np.random.default_rng(3), correlated=True)
    var = ((p - p.mean(0)) @ comps.T).var(0)
    print(f"pose PCA: explained variance of the first 6 / 12 components {var[:6].sum() / var.sum():.2f} / "
          f"{var[:12].sum() / var.sum():.2f}")


if __name__ == "__main__":
    main()
