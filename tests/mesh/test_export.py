"""Camera-frame mapping (winding under mirrors), atomic export and RefOcc anchors."""

from __future__ import annotations

import pytest
import torch
import trimesh

from im2hands.mesh import Lattice, export_mesh, extract_meshes, mesh_to_camera, sample_anchors
from tests.mesh.fields import blob_field, solo


@pytest.fixture(scope="module")
def blob():
    return extract_meshes(solo([blob_field()]), 1, lattice=Lattice(16, 2))[0]


def signed_volume(v, f):
    v = v.double()
    return float((v[f[:, 0]] * torch.cross(v[f[:, 1]], v[f[:, 2]], dim=1)).sum() / 6)


@pytest.mark.parametrize("mirror", [False, True])
def test_mesh_to_camera_keeps_normals_outward(blob, mirror):
    tf = torch.eye(4)
    tf[:3, :3] = 0.4 * torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(0)))[0]
    if torch.linalg.det(tf[:3, :3]) < 0:
        tf[:3, 0] *= -1
    if mirror:
        tf[0, :3] *= -1                                   # left hand: x-mirror after the rotation
    tf[:3, 3] = torch.tensor([0.05, -0.02, 0.6])
    v, f = mesh_to_camera(blob.vertices, blob.faces, tf)
    assert signed_volume(v, f) > 0
    torch.testing.assert_close(v, blob.vertices @ tf[:3, :3].T + tf[:3, 3])
    assert torch.equal(f, blob.faces[:, [0, 2, 1]] if mirror else blob.faces)


def test_mesh_to_camera_errors(blob):
    with pytest.raises(ValueError, match="query_to_camera"):
        mesh_to_camera(blob.vertices, blob.faces, torch.eye(3))
    with pytest.raises(ValueError, match="query_to_camera"):
        mesh_to_camera(blob.vertices, blob.faces, torch.zeros(4, 4))


@pytest.mark.parametrize("suffix", [".ply", ".obj"])
def test_export_round_trip(blob, tmp_path, suffix):
    path = export_mesh(tmp_path / f"hand{suffix}", blob.vertices, blob.faces)
    back = trimesh.load(path, process=False)
    assert back.faces.shape == tuple(blob.faces.shape)
    assert abs(back.vertices - blob.vertices.numpy()).max() < 1e-6
    assert [p.name for p in tmp_path.iterdir()] == [f"hand{suffix}"]
    with pytest.raises(ValueError, match="path"):
        export_mesh(tmp_path / "hand.stl", blob.vertices, blob.faces)


def test_anchors_deterministic_on_surface(blob):
    a = sample_anchors(blob.vertices, blob.faces, 512, seed=7)
    b = sample_anchors(blob.vertices, blob.faces, 512, seed=7)
    c = sample_anchors(blob.vertices, blob.faces, 512, seed=8)
    assert a.shape == (512, 3) and torch.equal(a, b) and not torch.equal(a, c)
    mesh = trimesh.Trimesh(blob.vertices.numpy(), blob.faces.numpy(), process=False)
    _, dist, _ = trimesh.proximity.closest_point(mesh, a.double().numpy())
    assert dist.max() < 1e-6


def test_anchors_top_up_and_empty(blob):
    tri = torch.tensor([[0.0, 0, 0], [1e-3, 0, 0], [0, 1e-3, 0]])
    a = sample_anchors(tri, torch.tensor([[0, 1, 2]]), 512, seed=0)     # even sampling returns far fewer
    assert a.shape == (512, 3)
    assert torch.equal(a, sample_anchors(tri, torch.tensor([[0, 1, 2]]), 512, seed=0))
    with pytest.raises(ValueError, match="empty"):
        sample_anchors(torch.zeros((0, 3)), torch.zeros((0, 3), dtype=torch.long))
