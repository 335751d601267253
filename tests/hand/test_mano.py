"""The MANO-format layer: chumpy-free loading, agreement with smplx's MANO, options, errors."""

from __future__ import annotations

import pickle
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse
import smplx  # a test extra (pyproject.toml): the agreement tests never skip
import torch

from im2hands.hand import mano as M
from im2hands.hand import skeleton as sk
from im2hands.hand.rotations import batch_rodrigues
from im2hands.hand.frames import mirror_x
from tests.hand.mano_fixture import AA_MIRROR, MIRROR, mirror_to_left, random_right, write_fixture


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return write_fixture(tmp_path_factory.mktemp("mano_fixture"))


def _smplx_mano(model_dir: Path, side: str, **kw):
    return smplx.MANO(str(model_dir / M.MANO_FILENAMES[side]), is_rhand=side == "right", **kw)


def _params(batch: int, pose_dim: int, seed: int, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return dict(
        global_orient=torch.randn(batch, 3, generator=g).to(dtype),
        hand_pose=(0.6 * torch.randn(batch, pose_dim, generator=g)).to(dtype),
        betas=(1.5 * torch.randn(batch, 10, generator=g)).to(dtype),
        transl=(0.2 * torch.randn(batch, 3, generator=g)).to(dtype),
    )


def _assert_agrees(ours: M.ManoOutput, ref, atol: float = 2e-6) -> None:
    for name, a, b in (("vertices", ours.vertices, ref.vertices), ("joints", ours.kinematic_joints, ref.joints)):
        err = (a - b).abs()
        assert err.max() <= atol, f"{name}: max |ours - smplx| {err.max().item():.3e} at {np.unravel_index(int(err.argmax()), err.shape)}, shape {tuple(a.shape)}"


# ---------------------------------------------------------------------------------------------------
# Agreement with smplx


@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("flat_hand_mean", [False, True])
@pytest.mark.parametrize("use_pca,ncomps", [(False, 45), (True, 6), (True, 1), (True, 30)])
def test_agrees_with_smplx(model_dir, side, flat_hand_mean, use_pca, ncomps):
    ours = M.ManoLayer(model_dir, side, use_pca=use_pca, num_pca_comps=ncomps, flat_hand_mean=flat_hand_mean,
                       fix_left_shapedirs=False, joint_order="mano")
    ref = _smplx_mano(model_dir, side, use_pca=use_pca, num_pca_comps=ncomps, flat_hand_mean=flat_hand_mean)
    # a fixed seed per case (str hashes change with PYTHONHASHSEED: a failure could not be reproduced)
    seed = 100 * ("right", "left").index(side) + 10 * int(flat_hand_mean) + (45, 6, 1, 30).index(ncomps)
    p = _params(5, ours.hand_pose_dim, seed=seed)
    out = ours(**p)
    _assert_agrees(out, ref(**p))
    assert out.vertices.abs().max() > 0.1  # the poses are far from trivial
    # the 16 kinematic joints lead the 21 MANO-order joints
    assert torch.equal(out.joints[:, :16], out.kinematic_joints)


@pytest.mark.parametrize("side", ["right", "left"])
def test_pca_with_45_components_uses_the_basis(model_dir, side):
    # smplx switches PCA off at 45 components; ours keeps the basis (as manopth): equal to smplx's full
    # pose given the expanded coefficients
    ours = M.ManoLayer(model_dir, side, use_pca=True, num_pca_comps=45, fix_left_shapedirs=False)
    ref = _smplx_mano(model_dir, side, use_pca=False)
    p = _params(3, 45, seed=7)
    out = ours(**p)
    full = dict(p, hand_pose=p["hand_pose"] @ ours.pca_components)
    _assert_agrees(out, ref(**full))


@pytest.mark.parametrize("dtype,atol", [(torch.float64, 1e-8)])
def test_double_agrees_with_smplx_double(model_dir, dtype, atol):
    # atol: smplx's Rodrigues takes the angle as |v + 1e-8|, a ~1e-8 relative bias (~2e-9 m here)
    cast = M.ManoLayer(model_dir, "right").double()
    assert all(b.dtype == torch.float64 for n, b in cast.named_buffers() if b.is_floating_point())
    assert cast.faces.dtype == torch.int64 and cast.tip_vertex_ids.dtype == torch.int64
    assert cast(global_orient=torch.zeros(2, 3, dtype=dtype)).vertices.dtype == torch.float64
    ours = M.ManoLayer(model_dir, "right", dtype=dtype)
    ref = _smplx_mano(model_dir, "right", use_pca=False, dtype=dtype)
    p = _params(4, 45, seed=3, dtype=dtype)
    out = ours(**p)
    assert out.vertices.dtype == torch.float64
    _assert_agrees(out, ref(**p), atol=atol)
    # float32 and float64 layers agree to float32 precision
    out32 = M.ManoLayer(model_dir, "right")(**{k: v.float() for k, v in p.items()})
    assert (out32.vertices.double() - out.vertices).abs().max() < 2e-6


def test_left_shapedirs_fix_matches_smplx_with_the_fix(model_dir):
    ours = M.ManoLayer(model_dir, "left", joint_order="mano")  # auto: the fixture has the official bug
    assert ours.left_shapedirs_fixed
    ref = _smplx_mano(model_dir, "left", use_pca=False)
    with torch.no_grad():
        ref.shapedirs[:, 0, :] *= -1  # the fix as smplx issue #48 / InterHand2.6M apply it
    p = _params(4, 45, seed=11)
    _assert_agrees(ours(**p), ref(**p))
    unfixed = M.ManoLayer(model_dir, "left", fix_left_shapedirs=False)
    assert (unfixed(**p).vertices - ours(**p).vertices).abs().max() > 1e-3
    # the right hand ignores the flag
    r1 = M.ManoLayer(model_dir, "right", fix_left_shapedirs=True)(**p).vertices
    r2 = M.ManoLayer(model_dir, "right", fix_left_shapedirs=False)(**p).vertices
    assert torch.equal(r1, r2)


@pytest.mark.parametrize("use_pca", [False, True])
def test_fixed_left_hand_is_the_mirrored_right_hand(model_dir, use_pca):
    # the fixture's left model mirrors the right one except for the (official) unmirrored shapedirs:
    # with the fix, mirrored parameters and equal betas give exactly the mirrored hand
    kw = dict(use_pca=use_pca, num_pca_comps=9, joint_order="internal")
    right = M.ManoLayer(model_dir, "right", **kw).double()
    left = M.ManoLayer(model_dir, "left", fix_left_shapedirs=True, **kw).double()
    p = _params(4, right.hand_pose_dim, seed=5, dtype=torch.float64)
    pm = dict(p, global_orient=p["global_orient"] * torch.from_numpy(AA_MIRROR),
              transl=p["transl"] * torch.from_numpy(MIRROR))
    if not use_pca:
        pm["hand_pose"] = p["hand_pose"] * torch.from_numpy(np.tile(AA_MIRROR, 15))
    r, l = right(**p), left(**pm)
    torch.testing.assert_close(l.vertices, mirror_x(r.vertices), atol=1e-12, rtol=0)
    # fingertip vertices differ only by manopth's 444/445 middle-tip choice
    torch.testing.assert_close(l.joints[:, :12], mirror_x(r.joints[:, :12]), atol=1e-12, rtol=0)
    unfixed = M.ManoLayer(model_dir, "left", fix_left_shapedirs=False, **kw).double()
    assert (unfixed(**pm).vertices - mirror_x(r.vertices)).abs().max() > 1e-3


def test_left_shapedirs_fix_is_decided_from_the_files(tmp_path):
    right = random_right(seed=6)
    buggy = mirror_to_left(right)  # official layout: left shapedirs == right shapedirs
    good = dict(buggy, shapedirs=right["shapedirs"] * MIRROR[None, :, None])

    def folder(name, files):
        d = tmp_path / name
        d.mkdir()
        for fname, data in files.items():
            (d / fname).write_bytes(pickle.dumps(data, protocol=2))
        return d

    cases = {
        "official_pair": ({"MANO_RIGHT.pkl": right, "MANO_LEFT.pkl": buggy}, False, True),
        "mirrored_pair": ({"MANO_RIGHT.pkl": right, "MANO_LEFT.pkl": good}, True, False),
        "left_alone": ({"MANO_LEFT.pkl": buggy}, None, True),
        "openhand_alone": ({"MANO_LEFT.pkl": dict(good, openhand_version="1")}, True, False),
    }
    for name, (files, mirrored, fixed) in cases.items():
        d = folder(name, files)
        assert M.load_mano_model(d, "left").shapedirs_mirrored is mirrored, name
        assert M.ManoLayer(d, "left").left_shapedirs_fixed is fixed, name
        assert M.ManoLayer(d, "left", fix_left_shapedirs=not fixed).left_shapedirs_fixed is (not fixed), name
    assert M.load_mano_model(tmp_path / "official_pair", "right").shapedirs_mirrored is None
    assert not M.ManoLayer(tmp_path / "official_pair", "right", fix_left_shapedirs=True).left_shapedirs_fixed
    # whichever way the files come, the default gives the same (correct) left hand
    p = _params(2, 45, seed=8, dtype=torch.float64)
    a = M.ManoLayer(tmp_path / "official_pair", "left", dtype=torch.float64)(**p).vertices
    b = M.ManoLayer(tmp_path / "mirrored_pair", "left", dtype=torch.float64)(**p).vertices
    torch.testing.assert_close(a, b, atol=1e-15, rtol=0)
    with pytest.raises(TypeError, match="fix_left_shapedirs"):
        M.ManoLayer(tmp_path / "official_pair", "left", fix_left_shapedirs="yes")


# ---------------------------------------------------------------------------------------------------
# Outputs


def test_outputs_are_consistent(model_dir):
    layer = M.ManoLayer(model_dir, "right", use_pca=True, num_pca_comps=10, dtype=torch.float64)
    p = _params(3, 10, seed=21, dtype=torch.float64)
    out = layer(**p)
    b = 3
    assert out.vertices.shape == (b, 778, 3) and out.joints.shape == (b, 21, 3)
    assert out.joint_transforms.shape == (b, 16, 4, 4) and out.skinning_transforms.shape == (b, 16, 4, 4)
    assert out.full_pose.shape == (b, 48) and out.rest_joints.shape == (b, 16, 3)
    # full pose = global orientation + PCA expansion + mean
    expected_pose = torch.cat([p["global_orient"], p["hand_pose"] @ layer.pca_components + layer.hands_mean], 1)
    torch.testing.assert_close(out.full_pose, expected_pose)
    assert torch.equal(out.hand_pose, out.full_pose[:, 3:]) and out.hand_pose.shape == (b, 45)
    torch.testing.assert_close(layer.hands_mean, torch.from_numpy(random_right()["hands_mean"]))
    # rest joints: J_regressor @ (template + shape blend shapes)
    model = M.load_mano_model(model_dir, "right")
    shaped = model.v_template + np.einsum("bs,vcs->bvc", p["betas"].numpy(), model.shapedirs)
    np.testing.assert_allclose(out.rest_joints.numpy(), np.einsum("kv,bvc->bkc", model.j_regressor, shaped),
                               atol=1e-12)
    # joint transforms: rotation = product of relative rotations along the chain, translation = joint
    rot = batch_rodrigues(out.full_pose.reshape(b, 16, 3))
    for k in range(16):
        chain, j = torch.eye(3, dtype=torch.float64).expand(b, 3, 3), k
        while j >= 0:
            chain = rot[:, j] @ chain
            j = sk.MANO_KINTREE_PARENTS[j]
        torch.testing.assert_close(out.joint_transforms[:, k, :3, :3], chain)
    torch.testing.assert_close(out.joint_transforms[..., :3, 3], out.kinematic_joints)
    homog = torch.cat([out.rest_joints, torch.ones(b, 16, 1, dtype=torch.float64)], -1)
    torch.testing.assert_close((out.skinning_transforms @ homog[..., None])[..., :3, 0], out.kinematic_joints)
    assert torch.equal(out.joint_transforms[..., 3, :], torch.tensor([0, 0, 0, 1.0], dtype=torch.float64).expand(b, 16, 4))
    # internal order: reorder of the MANO order (16 joints + manopth tips)
    mano_order = torch.cat([out.kinematic_joints, out.vertices[:, list(M.TIP_VERTEX_IDS["manopth"]["right"])]], 1)
    torch.testing.assert_close(out.joints, sk.reorder(mano_order, "mano", "internal"), atol=0, rtol=0)
    # transl moves every point and transform
    shifted = layer(**dict(p, transl=p["transl"] + 1.0))
    torch.testing.assert_close(shifted.vertices, out.vertices + 1.0)
    torch.testing.assert_close(shifted.joint_transforms[..., :3, 3], out.joint_transforms[..., :3, 3] + 1.0)
    torch.testing.assert_close(shifted.rest_joints, out.rest_joints)


def test_model_data_stays_out_of_state_dict(model_dir):
    layer = M.ManoLayer(model_dir, "right")
    assert layer.state_dict() == {}
    holder = torch.nn.Sequential(torch.nn.Linear(2, 2), layer)
    assert set(holder.state_dict()) == {"0.weight", "0.bias"}


def test_missing_arguments_default_to_zeros(model_dir):
    layer = M.ManoLayer(model_dir, "right", flat_hand_mean=True, dtype=torch.float64)
    out = layer()
    assert out.vertices.shape == (1, 778, 3)
    # zero pose, flat mean, zero betas: the template itself
    torch.testing.assert_close(out.vertices[0], layer.v_template, atol=1e-15, rtol=0)
    betas = torch.randn(3, 10, dtype=torch.float64)
    out = layer(betas=betas)
    assert out.vertices.shape == (3, 778, 3) and torch.equal(out.betas, betas)
    assert torch.equal(out.full_pose, torch.zeros(3, 48, dtype=torch.float64))
    full = layer(global_orient=torch.zeros(3, 3, dtype=torch.float64), hand_pose=torch.zeros(3, 45, dtype=torch.float64),
                 betas=betas, transl=torch.zeros(3, 3, dtype=torch.float64))
    torch.testing.assert_close(out.vertices, full.vertices, atol=1e-15, rtol=0)


def test_gradients_flow_to_every_input(model_dir):
    layer = M.ManoLayer(model_dir, "left", use_pca=True, num_pca_comps=4).double()
    p = {k: v.requires_grad_() for k, v in _params(2, 4, seed=9, dtype=torch.float64).items()}
    out = layer(**p)
    (out.vertices.square().sum() + out.joints.sum()).backward()
    for k, v in p.items():
        assert v.grad is not None and torch.isfinite(v.grad).all() and v.grad.abs().sum() > 0, k
    # exact first derivatives of the joints w.r.t. the global orientation (small batch)
    go = p["global_orient"].detach()[:1].requires_grad_()
    rest = {k: v.detach()[:1] for k, v in p.items() if k != "global_orient"}
    assert torch.autograd.gradcheck(lambda g: layer(global_orient=g, **rest).joints, (go,))


# ---------------------------------------------------------------------------------------------------
# Fingertips


def test_tip_conventions(model_dir):
    p = _params(2, 45, seed=1)
    for side in ("right", "left"):
        for conv in ("manopth", "smplx"):
            layer = M.ManoLayer(model_dir, side, tips=conv, joint_order="mano")
            out = layer(**p)
            ids = M.TIP_VERTEX_IDS[conv][side]
            assert torch.equal(out.joints[:, 16:], out.vertices[:, list(ids)])
    assert M.TIP_VERTEX_IDS["manopth"]["left"][2] == 445 and M.TIP_VERTEX_IDS["manopth"]["right"][2] == 444
    assert M.ManoLayer(model_dir, "right").tip_ids == (745, 317, 444, 556, 673)  # default: manopth
    assert M.ManoLayer(model_dir, "left").tip_ids == (745, 317, 445, 556, 673)
    assert M.ManoLayer(model_dir, "right", tips=(1, 2, 3, 4, 5)).tip_ids == (1, 2, 3, 4, 5)
    with pytest.raises(ValueError, match="tips"):
        M.ManoLayer(model_dir, "right", tips="openpose")
    with pytest.raises(ValueError, match="5 vertex ids"):
        M.ManoLayer(model_dir, "right", tips=(1, 2, 3))


def test_file_tip_ids_are_used_unless_tips_is_given(tmp_path):
    folder = write_fixture(tmp_path / "withtips", extra={"tip_vertex_ids": np.array([10, 20, 30, 40, 50])})
    layer = M.ManoLayer(folder, "right", joint_order="mano")
    assert layer.tip_ids == (10, 20, 30, 40, 50)
    out = layer()
    assert torch.equal(out.joints[0, 16:], out.vertices[0, [10, 20, 30, 40, 50]])
    assert M.ManoLayer(folder, "right", tips="smplx").tip_ids == M.TIP_VERTEX_IDS["smplx"]["right"]
    # internal order puts the tips last in each finger: thumb4 is joint 4, pinky4 joint 20
    internal = M.ManoLayer(folder, "right")()
    assert torch.equal(internal.joints[0, 4], out.vertices[0, 10]) and torch.equal(internal.joints[0, 20], out.vertices[0, 50])


def test_tips_out_of_range_for_a_small_model(tmp_path):
    small = random_right(num_verts=100)
    model = M.mano_model_from_dict(small, "right")
    with pytest.raises(ValueError, match="out of range for a model with 100 vertices"):
        M.ManoLayer(model, "right")
    assert M.ManoLayer(model, "right", tips=(0, 1, 2, 3, 99)).num_vertices == 100


# ---------------------------------------------------------------------------------------------------
# Loading without chumpy


class _FakeCh:
    """Pickles like chumpy's ``Ch``: default object protocol, state = instance dict minus caches."""

    def __init__(self, x):
        self.x = np.asarray(x, dtype=np.float64)
        self._dirty_vars = {"x"}
        self._itr = None
        self._depends_on_deps = {}
        self._make_dense = False
        self._make_sparse = False

    def __getstate__(self):
        return dict(self.__dict__)


class _FakeSelect(_FakeCh):
    """Pickles like ``chumpy.reordering.Select``: terms ``a``, ``idxs``, ``preferred_shape``."""

    def __init__(self, a, idxs, preferred_shape):
        self.a, self.idxs, self.preferred_shape = a, idxs, preferred_shape
        self._dirty_vars = {"a", "idxs"}
        self._itr = None
        self._depends_on_deps = {}


class _FakeAdd(_FakeCh):
    def __init__(self, a, b):
        self.a, self.b = a, b


def _pickle_with_fake_chumpy(data: dict, protocol: int) -> bytes:
    """Pickle `data` while fake ``chumpy.ch`` / ``chumpy.reordering`` modules exist, then remove them."""
    names = {"chumpy": None, "chumpy.ch": {"Ch": _FakeCh}, "chumpy.reordering": {"Select": _FakeSelect},
             "chumpy.ch_ops": {"add": _FakeAdd}}
    saved = {n: sys.modules.get(n) for n in names}
    saved_cls = {c: (c.__module__, c.__qualname__) for c in (_FakeCh, _FakeSelect, _FakeAdd)}
    try:
        for name, classes in names.items():
            mod = types.ModuleType(name)
            for cname, cls in (classes or {}).items():
                cls.__module__, cls.__qualname__ = name, cname
                setattr(mod, cname, cls)
            sys.modules[name] = mod
        return pickle.dumps(data, protocol=protocol)
    finally:
        for c, (mod, qual) in saved_cls.items():
            c.__module__, c.__qualname__ = mod, qual
        for name, old in saved.items():
            if old is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = old


def _as_official(plain: dict) -> dict:
    """The plain fixture dict dressed like an official file: chumpy shapedirs (a Select over a wider
    Ch, as in MANO v1.2), chumpy weights and template, sparse J_regressor."""
    v = plain["shapedirs"].shape[0]
    wide = np.concatenate([plain["shapedirs"], np.random.default_rng(3).normal(size=(v, 3, 10))], axis=2)
    idxs = np.arange(wide.size).reshape(wide.shape)[:, :, :10].ravel()
    out = dict(plain)
    out["shapedirs"] = _FakeSelect(_FakeCh(wide), idxs, (v, 3, 10))
    out["v_template"] = _FakeCh(plain["v_template"])
    out["weights"] = _FakeCh(plain["weights"])
    return out


@pytest.mark.parametrize("protocol", [0, 2])
@pytest.mark.parametrize("old_numpy_names", [False, True])
def test_loads_chumpy_pickles_without_chumpy(tmp_path, protocol, old_numpy_names):
    plain = random_right(seed=4)
    blob = _pickle_with_fake_chumpy(_as_official(plain), protocol)
    assert b"chumpy.reordering" in blob and b"chumpy.ch" in blob and b"scipy.sparse" in blob
    # Python-2 global names, as in the official files: __builtin__.set (chumpy's _dirty_vars), and
    # copy_reg._reconstructor for protocol 0
    assert b"__builtin__" in blob and (protocol > 0 or b"copy_reg" in blob)
    if old_numpy_names:  # as written by NumPy 1.x / Python 2: numpy.core.multiarray
        blob = blob.replace(b"numpy._core.", b"numpy.core.")
        assert b"numpy.core.multiarray" in blob
    assert "chumpy" not in sys.modules
    (tmp_path / "MANO_RIGHT.pkl").write_bytes(blob)
    loaded = M.load_mano_pickle(tmp_path / "MANO_RIGHT.pkl")
    assert "chumpy" not in sys.modules
    for key in ("shapedirs", "v_template", "weights", "posedirs", "hands_components", "hands_mean", "f"):
        assert isinstance(loaded[key], np.ndarray), key
        np.testing.assert_array_equal(loaded[key], plain[key], err_msg=key)
    assert scipy.sparse.issparse(loaded["J_regressor"])
    np.testing.assert_array_equal(loaded["J_regressor"].toarray(), plain["J_regressor"].toarray())
    assert loaded["bs_type"] == "lrotmin"
    # and the layer built from it equals the one built from the plain file
    write_fixture(tmp_path / "plain", seed=4)
    p = _params(2, 45, seed=2)
    a = M.ManoLayer(tmp_path, "right")(**p)
    b = M.ManoLayer(tmp_path / "plain", "right")(**p)
    assert torch.equal(a.vertices, b.vertices)


def test_unsupported_chumpy_expression_is_named(tmp_path):
    plain = random_right()
    data = dict(plain, shapedirs=_FakeAdd(_FakeCh(plain["shapedirs"]), _FakeCh(plain["shapedirs"])))
    (tmp_path / "MANO_RIGHT.pkl").write_bytes(_pickle_with_fake_chumpy(data, 2))
    with pytest.raises(ValueError, match=r"'shapedirs'.*unsupported chumpy expression chumpy.ch_ops.add"):
        M.load_mano_pickle(tmp_path / "MANO_RIGHT.pkl")


# ---------------------------------------------------------------------------------------------------
# Paths and errors


def test_model_path_forms(tmp_path):
    for sub in ("", "models", "mano"):
        root = tmp_path / f"root_{sub or 'flat'}"
        write_fixture(root / sub if sub else root)
        assert M.find_mano_file(root, "left") == (root / sub if sub else root) / "MANO_LEFT.pkl"
        assert M.ManoLayer(root, "left").model_file.name == "MANO_LEFT.pkl"
    file = tmp_path / "root_flat" / "MANO_RIGHT.pkl"
    assert M.ManoLayer(file, "right").model_file == file
    with pytest.raises(ValueError, match="left-hand model but side='right'"):
        M.ManoLayer(tmp_path / "root_flat" / "MANO_LEFT.pkl", "right")
    model = M.load_mano_model(tmp_path / "root_flat", "right")
    with pytest.raises(ValueError, match="ManoModel is a right hand"):
        M.ManoLayer(model, "left")


def test_missing_folder_and_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        M.ManoLayer(tmp_path / "nowhere", "right")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no MANO_LEFT.pkl for side='left'"):
        M.ManoLayer(tmp_path / "empty", "left")
    with pytest.raises(ValueError, match="side"):
        M.find_mano_file(tmp_path, "both")


def test_bad_file_errors(tmp_path):
    bad = tmp_path / "MANO_RIGHT.pkl"
    bad.write_text("v 0 0 0\nf 1 2 3\n")
    with pytest.raises(ValueError, match="not a readable MANO model pickle"):
        M.load_mano_model(bad)
    bad.write_bytes(pickle.dumps([1, 2, 3]))
    with pytest.raises(ValueError, match="expected a pickled dict, got list"):
        M.load_mano_model(bad)
    data = random_right()
    del data["posedirs"], data["hands_mean"]
    bad.write_bytes(pickle.dumps(data))
    with pytest.raises(ValueError, match=r"missing keys \['posedirs', 'hands_mean'\]"):
        M.load_mano_model(bad)
    data = random_right()
    data["posedirs"] = data["posedirs"][..., :100]
    bad.write_bytes(pickle.dumps(data))
    with pytest.raises(ValueError, match=r"'posedirs': expected \(778, 3, 135\)"):
        M.load_mano_model(bad)
    data = random_right()
    data["kintree_table"] = data["kintree_table"][:, ::-1].copy()
    bad.write_bytes(pickle.dumps(data))
    with pytest.raises(ValueError, match="kintree_table"):
        M.load_mano_model(bad)


def test_pickles_cannot_run_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("this must never run",))

    path = tmp_path / "MANO_RIGHT.pkl"
    path.write_bytes(pickle.dumps({"v_template": Evil()}))
    with pytest.raises(ValueError, match="refusing to load the global builtins.print"):
        M.load_mano_pickle(path)


def test_layer_argument_errors(model_dir):
    with pytest.raises(ValueError, match="num_pca_comps"):
        M.ManoLayer(model_dir, "right", use_pca=True, num_pca_comps=0)
    with pytest.raises(ValueError, match="num_pca_comps"):
        M.ManoLayer(model_dir, "right", use_pca=True, num_pca_comps=46)
    with pytest.raises(ValueError, match="joint_order"):
        M.ManoLayer(model_dir, "right", joint_order="openpose")
    with pytest.raises(ValueError, match="side"):
        M.ManoLayer(model_dir, "middle")
    layer = M.ManoLayer(model_dir, "right", use_pca=True, num_pca_comps=6)
    with pytest.raises(ValueError, match=r"hand_pose: expected shape \(B, 6\), got \(2, 45\)"):
        layer(hand_pose=torch.zeros(2, 45))
    with pytest.raises(ValueError, match="betas: batch size 3 differs from global_orient's 2"):
        layer(global_orient=torch.zeros(2, 3), betas=torch.zeros(3, 10))
    with pytest.raises(ValueError, match=r"betas: expected shape \(B, 10\)"):
        layer(betas=torch.zeros(2, 16))
    with pytest.raises(TypeError, match="transl: dtype torch.float64"):
        layer(transl=torch.zeros(1, 3, dtype=torch.float64))
    with pytest.raises(TypeError, match="global_orient: expected a torch.Tensor"):
        layer(global_orient=np.zeros((1, 3)))
    with pytest.raises(ValueError, match="global_orient: contains NaN"):
        layer(global_orient=torch.tensor([[0.0, float("nan"), 0.0]]))


def test_mirror_fixture_is_a_valid_mano_dict():
    # the fixture's left model passes the same validation (guards the mirror helper itself)
    left = M.mano_model_from_dict(mirror_to_left(random_right()), "left")
    assert left.num_vertices == 778 and left.num_betas == 10 and left.parents == sk.MANO_KINTREE_PARENTS


# ---------------------------------------------------------------------------------------------------
# The shipped open hand model (MANO format)


def _openhand_dir() -> Path:
    from im2hands.hand.openhand import openhand_dir

    return openhand_dir()


@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("use_pca,ncomps,flat_hand_mean", [(False, 45, False), (False, 45, True), (True, 6, False),
                                                           (True, 20, True)])
def test_openhand_agrees_with_smplx(side, use_pca, ncomps, flat_hand_mean):
    d = _openhand_dir()
    ours = M.ManoLayer(d, side, use_pca=use_pca, num_pca_comps=ncomps, flat_hand_mean=flat_hand_mean,
                       joint_order="mano")
    assert not ours.left_shapedirs_fixed  # its left model is an exact mirror: no fix
    ref = _smplx_mano(d, side, use_pca=use_pca, num_pca_comps=ncomps, flat_hand_mean=flat_hand_mean)
    p = _params(4, ours.hand_pose_dim, seed=31)
    out = ours(**p)
    _assert_agrees(out, ref(**p))
    # fingertips come from the file's tip_vertex_ids
    ids = M.load_mano_model(d, side).tip_vertex_ids
    assert ids is not None and ours.tip_ids == ids
    assert torch.equal(out.joints[:, 16:], out.vertices[:, list(ids)])


def test_openhand_left_is_the_mirrored_right():
    d = _openhand_dir()
    right = M.ManoLayer(d, "right", dtype=torch.float64)
    left = M.ManoLayer(d, "left", dtype=torch.float64)
    p = _params(3, 45, seed=12, dtype=torch.float64)
    pm = dict(p, global_orient=p["global_orient"] * torch.from_numpy(AA_MIRROR),
              hand_pose=p["hand_pose"] * torch.from_numpy(np.tile(AA_MIRROR, 15)),
              transl=p["transl"] * torch.from_numpy(MIRROR))
    r, l = right(**p), left(**pm)
    # the files are exact mirrors (sign flips only), and so are the posed hands (measured: 0 difference)
    torch.testing.assert_close(l.vertices, mirror_x(r.vertices), atol=1e-12, rtol=0)
    torch.testing.assert_close(l.joints, mirror_x(r.joints), atol=1e-12, rtol=0)
