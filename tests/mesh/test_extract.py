"""Multi-resolution extraction against dense evaluation + marching cubes and a slow MISE reference."""

from __future__ import annotations

import pytest
import torch

from im2hands.mesh import Lattice, extract_meshes, extract_meshes_dense, extract_meshes_seeded
from tests.mesh.fields import blob_field, finger_field, hand_field, slow_mise, solo, sphere_sdf_field

SMALL = Lattice(16, 2)
FIELDS = {"blob": blob_field, "finger": finger_field, "hand": hand_field}


def assert_same_mesh(a, b):
    """Faces identical; vertices equal up to float rounding of the crop offset (<= 1e-6 query units)."""
    assert a.faces.shape == b.faces.shape, f"faces {tuple(a.faces.shape)} vs {tuple(b.faces.shape)}"
    assert torch.equal(a.faces, b.faces), "faces differ"
    diff = (a.vertices - b.vertices).abs()
    assert diff.max() <= 1e-6, f"max vertex diff {diff.max():.3g} at {divmod(int(diff.argmax()), 3)}"


@pytest.mark.parametrize("name", sorted(FIELDS))
def test_equals_dense_and_mise(name):
    f = FIELDS[name]()
    got = extract_meshes(solo([f]), 1, lattice=SMALL)[0]
    dense = extract_meshes_dense(solo([f]), 1, lattice=SMALL)[0]
    assert got.unresolved_edges == 0
    assert len(got.faces) > 100
    assert_same_mesh(got, dense)
    v, faces, mise_evals = slow_mise(f, SMALL, 0.5)
    assert torch.equal(faces, got.faces)
    assert got.num_evaluations <= sum(mise_evals), (got.evaluations, mise_evals)
    assert got.num_evaluations < dense.num_evaluations / 10


def test_sphere_radius_and_lattice_mapping():
    r = 0.3
    got = extract_meshes(solo([sphere_sdf_field(r)]), 1, lattice=SMALL)[0]
    dist = got.vertices.double().norm(dim=1)
    # linear field: marching cubes puts vertices on the sphere up to the chord error of a 0.017 cell
    assert (dist - r).abs().max() < 2e-3, (dist - r).abs().max()
    shifted = extract_meshes(solo([sphere_sdf_field(r)]), 1, lattice=SMALL, official_vertex_shift=True)[0]
    half = 0.5 * 1.1 / SMALL.resolution
    torch.testing.assert_close(shifted.vertices, got.vertices - half, atol=1e-6, rtol=0)
    # lattice points map to query points as in Occupancy Networks: 1.1 * (i / R - 0.5)
    idx = torch.tensor([[0, 0, 0], [SMALL.resolution] * 3, [32, 16, 48]])
    torch.testing.assert_close(SMALL.index_to_query(idx),
                               torch.tensor([[-0.55] * 3, [0.55] * 3, [0.0, -0.275, 0.275]]))


def test_query_to_index_inverts_index_to_query():
    from im2hands.mesh import Lattice

    lattice = Lattice(32, 3)
    r = lattice.resolution
    g = torch.Generator().manual_seed(0)
    idx = torch.cat([torch.randint(0, r + 1, (5000, 3), generator=g), torch.tensor([[0, 0, 0], [r, r, r]])])
    assert torch.equal(lattice.query_to_index(lattice.index_to_query(idx)), idx)
    keys = lattice.index_key(idx)
    assert keys.unique().numel() == torch.unique(idx, dim=0).shape[0]   # one key per lattice point
    assert int(lattice.index_key(torch.tensor([[r, r, r]]))) == (r + 1) ** 3 - 1


def test_outward_normals():
    got = extract_meshes(solo([blob_field()]), 1, lattice=SMALL)[0]
    v, f = got.vertices.double(), got.faces
    signed_volume = (v[f[:, 0]] * torch.cross(v[f[:, 1]], v[f[:, 2]], dim=1)).sum() / 6
    assert signed_volume > 0


def test_fields_in_one_call_equal_solo_and_once_per_level():
    fs = [blob_field(), finger_field(), sphere_sdf_field(0.2, (0.1, 0.1, 0.0))]
    fn = solo(fs)
    together = extract_meshes(fn, 3, lattice=SMALL)
    passes = together[0].closure_passes
    assert len(fn.calls) == SMALL.levels + passes
    assert all(t.closure_passes == passes for t in together)
    for i, f in enumerate(fs):
        alone = extract_meshes(solo([f]), 1, lattice=SMALL)[0]
        assert_same_mesh(together[i], alone)
        assert together[i].num_evaluations == alone.num_evaluations
        assert sum(c[i] for c in fn.calls) == together[i].num_evaluations


def test_once_per_level_without_closure():
    fn = solo([hand_field()])
    got = extract_meshes(fn, 1, lattice=SMALL)[0]
    assert got.closure_passes == 0
    assert len(fn.calls) == SMALL.levels


def test_empty_and_full_fields():
    outside = lambda p: torch.zeros(p.shape[0])  # noqa: E731
    inside = lambda p: torch.ones(p.shape[0])  # noqa: E731
    empty, full = extract_meshes(solo([outside, inside]), 2, lattice=SMALL)
    assert empty.vertices.shape == (0, 3) and empty.faces.shape == (0, 3)
    assert empty.evaluations == (17 ** 3, 0, 0)
    dense_full = extract_meshes_dense(solo([inside]), 1, lattice=SMALL)[0]
    assert full.num_evaluations == 17 ** 3
    assert_same_mesh(full, dense_full)
    assert full.vertices.abs().max() <= 0.55 + 1e-6


def test_seeded_equals_full_with_fewer_evaluations():
    lattice = Lattice(32, 3)
    before = extract_meshes(solo([hand_field()]), 1, lattice=lattice)[0]
    moved = hand_field(radius_delta=0.004)           # surface moves by ~1 finest cell
    seeded = extract_meshes_seeded(solo([moved]), [before], threshold=0.45)[0]
    full = extract_meshes(solo([moved]), 1, lattice=lattice, threshold=0.45)[0]
    assert seeded.unresolved_edges == 0
    assert_same_mesh(seeded, full)
    assert seeded.num_evaluations < 0.8 * full.num_evaluations, (seeded.evaluations, full.evaluations)


def test_seeded_finds_a_new_far_surface():
    before = extract_meshes(solo([finger_field()]), 1, lattice=SMALL)[0]
    both = lambda p: torch.maximum(finger_field()(p), sphere_sdf_field(0.1, (0.3, -0.3, 0.3))(p).clamp(0, 1))  # noqa: E731
    seeded = extract_meshes_seeded(solo([both]), [before], threshold=0.5, safety_cells=8)[0]
    dense = extract_meshes_dense(solo([both]), 1, lattice=SMALL)[0]
    assert_same_mesh(seeded, dense)


def test_bad_options():
    with pytest.raises(ValueError, match="num_fields"):
        extract_meshes(solo([]), 0)
    with pytest.raises(ValueError, match="resolution_0"):
        Lattice(0, 3)
    with pytest.raises(ValueError, match="occupancy_fn"):
        extract_meshes(lambda pts: [torch.zeros(3)], 1, lattice=SMALL)
    before = extract_meshes(solo([finger_field()]), 1, lattice=SMALL)[0]
    with pytest.raises(ValueError, match="safety_cells"):
        extract_meshes_seeded(solo([finger_field()]), [before], safety_cells=5)
