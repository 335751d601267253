"""ManoLayer vs smplx's MANO on the same MANO-format file: agreement and forward time.

Run: PYTHONPATH=src:. /work/venv/bin/python benchmarks/bm_mano.py
Uses the random MANO-format fixture of the tests (778 vertices, like MANO); smplx is the baseline.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import torch

import smplx
from im2hands.hand.mano import ManoLayer
from tests.hand.mano_fixture import write_fixture


def _time(fn, reps: int = 40) -> float:
    """Best of `reps` calls, ms (the minimum is the least disturbed by other processes)."""
    fn()
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best * 1e3


def main() -> None:
    torch.set_num_threads(2)
    folder = write_fixture(Path(tempfile.mkdtemp()) / "mano")
    worst_v = worst_j = 0.0
    for side in ("right", "left"):
        for use_pca, n in ((False, 45), (True, 1), (True, 6), (True, 30)):
            for flat in (False, True):
                ours = ManoLayer(folder, side, use_pca=use_pca, num_pca_comps=n, flat_hand_mean=flat,
                                 fix_left_shapedirs=False)
                ref = smplx.MANO(str(folder / f"MANO_{side.upper()}.pkl"), is_rhand=side == "right",
                                 use_pca=use_pca, num_pca_comps=n, flat_hand_mean=flat)
                g = torch.Generator().manual_seed(n)
                p = dict(global_orient=torch.randn(8, 3, generator=g),
                         hand_pose=0.6 * torch.randn(8, ours.hand_pose_dim, generator=g),
                         betas=1.5 * torch.randn(8, 10, generator=g), transl=0.2 * torch.randn(8, 3, generator=g))
                with torch.no_grad():
                    o, r = ours(**p), ref(**p)
                worst_v = max(worst_v, (o.vertices - r.vertices).abs().max().item())
                worst_j = max(worst_j, (o.kinematic_joints - r.joints).abs().max().item())
    print(f"agreement with smplx, float32, 16 configurations x 8 hands: max |dv| {worst_v:.2e} m, "
          f"max |dJ| {worst_j:.2e} m")

    ours = ManoLayer(folder, "right")
    ref = smplx.MANO(str(folder / "MANO_RIGHT.pkl"), is_rhand=True, use_pca=False)
    for batch in (1, 64):
        p = dict(global_orient=torch.randn(batch, 3), hand_pose=torch.randn(batch, 45),
                 betas=torch.randn(batch, 10), transl=torch.randn(batch, 3))
        with torch.no_grad():
            t_ours, t_ref = _time(lambda: ours(**p)), _time(lambda: ref(**p))
        print(f"forward B={batch:3d}: ours {t_ours:7.2f} ms, smplx {t_ref:7.2f} ms, ratio smplx/ours "
              f"{t_ref / t_ours:.2f}")


if __name__ == "__main__":
    main()
