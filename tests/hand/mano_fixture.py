"""A small random model in MANO's file format, written by the tests (no MANO data is ever shipped).

It has the keys, shapes and dtypes of the official ``MANO_RIGHT.pkl`` / ``MANO_LEFT.pkl`` (v1.2):
``v_template`` (778, 3), ``f`` (F, 3) uint32, ``weights`` (778, 16), ``J_regressor`` scipy.sparse CSC
(16, 778), ``kintree_table`` (2, 16) with the root's parent stored as 2**32 - 1, ``shapedirs``
(778, 3, 10), ``posedirs`` (778, 3, 135), ``hands_components`` (45, 45), ``hands_mean`` (45,), plus the
unused ``J``, ``hands_coeffs``, ``bs_style``, ``bs_type``. The geometry is random (not a hand).

The left model is the exact mirror (x -> -x) of the right one, except that, like the official files,
it carries the right hand's ``shapedirs`` unmirrored (smplx issue #48).
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import scipy.sparse

from im2hands.hand.skeleton import MANO_KINTREE_PARENTS

NUM_VERTS = 778
NUM_FACES = 300
MIRROR = np.array([-1.0, 1.0, 1.0])
AA_MIRROR = np.array([1.0, -1.0, -1.0])
"""Axis-angle of a mirrored rotation: M R(a) M = R(a * AA_MIRROR) for M = diag(-1, 1, 1)."""


def random_right(seed: int = 0, num_verts: int = NUM_VERTS) -> dict:
    rng = np.random.default_rng(seed)
    k = 16
    v_template = rng.normal(scale=0.04, size=(num_verts, 3))
    faces = rng.integers(0, num_verts, size=(NUM_FACES, 3)).astype(np.uint32)
    weights = rng.random((num_verts, k)) ** 4
    weights /= weights.sum(1, keepdims=True)
    rows, cols, vals = [], [], []
    for j in range(k):
        ids = rng.choice(num_verts, size=12, replace=False)
        w = rng.random(12)
        rows += [j] * 12
        cols += list(ids)
        vals += list(w / w.sum())
    j_regressor = scipy.sparse.csc_matrix((vals, (rows, cols)), shape=(k, num_verts))
    kintree = np.array([[2**32 - 1] + list(MANO_KINTREE_PARENTS[1:]), list(range(k))], dtype=np.int64)
    comps, _ = np.linalg.qr(rng.normal(size=(45, 45)))
    return {
        "v_template": v_template,
        "f": faces,
        "weights": weights,
        "J_regressor": j_regressor,
        "kintree_table": kintree,
        "shapedirs": rng.normal(scale=0.004, size=(num_verts, 3, 10)),
        "posedirs": rng.normal(scale=0.004, size=(num_verts, 3, 135)),
        "hands_components": comps.T.copy(),
        "hands_mean": rng.normal(scale=0.2, size=45),
        "hands_coeffs": rng.normal(size=(20, 45)),
        "J": j_regressor @ v_template,
        "bs_style": "lbs",
        "bs_type": "lrotmin",
    }


def mirror_to_left(right: dict) -> dict:
    """The left model: the right one mirrored in x, with the official files' unmirrored shapedirs."""
    left = dict(right)
    left["v_template"] = right["v_template"] * MIRROR
    left["J"] = right["J"] * MIRROR
    left["f"] = right["f"][:, ::-1].copy()
    # pose feature (R - I)[i, j] of a mirrored rotation is m_i m_j (R - I)[i, j]; output x flips with m_c
    m_ij = np.outer(MIRROR, MIRROR).reshape(9)
    left["posedirs"] = right["posedirs"] * MIRROR[None, :, None] * np.tile(m_ij, 15)[None, None, :]
    left["hands_components"] = right["hands_components"] * np.tile(AA_MIRROR, 15)[None, :]
    left["hands_mean"] = right["hands_mean"] * np.tile(AA_MIRROR, 15)
    left["hands_coeffs"] = right["hands_coeffs"] * np.tile(AA_MIRROR, 15)[None, :]
    left["shapedirs"] = right["shapedirs"]  # the official left file's bug, kept on purpose
    return left


def write_fixture(folder: Path, seed: int = 0, extra: dict | None = None) -> Path:
    """Write ``MANO_RIGHT.pkl`` and ``MANO_LEFT.pkl`` (plain numpy/scipy, protocol 2) into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    right = random_right(seed)
    right.update(extra or {})
    left = mirror_to_left(right)
    for name, data in (("MANO_RIGHT.pkl", right), ("MANO_LEFT.pkl", left)):
        with open(folder / name, "wb") as fh:
            pickle.dump(data, fh, protocol=2)
    return folder
