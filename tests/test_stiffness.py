"""Stiffness: the finite-element pipeline against closed form, then on designed devices.

At Poisson's ratio 0 a wall bent through its thickness by a pure moment is a
beam: a strip clamped at one end turns by M·L/(E·I), a quarter ring by
M·(π/2)·R/(E·I) with R its mid-surface radius.  The walls go through the
same steps as a device (inner face, remeshing, prism layers, quadratic
tetrahedra, clamp on the plantar faces, rigid cuff).
"""

from __future__ import annotations

import numpy as np
import pytest

from orthofit.elasticity import assemble_stiffness, rigid_body_stiffness
from orthofit.femesh import FEMeshParams, shell_fe_mesh, tet_volumes
from orthofit.stiffness import (NMM_PER_RAD_TO_NM_PER_DEG, Rig, at_axis_point, nodes_where,
                                plantar_faces, solve_stiffness)

from tests.beams import quarter_ring, strip

E = 1000.0
CLAMP, FREE, CUFF = 15.0, 100.0, 15.0
AXES = {"sagittal": np.array([0.0, 1.0, 0.0]), "frontal": np.array([1.0, 0.0, 0.0]),
        "transverse": np.array([0.0, 0.0, 1.0])}


def _strip_rig(point=(CLAMP + FREE / 2, 15.0, -1.5)) -> Rig:
    return Rig(clamped=plantar_faces(region=lambda p: p[:, 0] < CLAMP),
               tied=nodes_where(lambda p: p[:, 0] > CLAMP + FREE),
               axis_point=np.array(point), axes=AXES, slide=np.array([1.0, 0.0, 0.0]))


def _ring_rig() -> Rig:
    return Rig(clamped=plantar_faces(region=lambda p: p[:, 0] < 0.0),
               tied=nodes_where(lambda p: p[:, 2] > 0.0),
               axis_point=np.zeros(3), axes=AXES, slide=np.array([0.0, 0.0, 1.0]))


def _beam(width: float, thickness: float, length: float) -> float:
    """E·I/L in N·m/deg."""
    return E * width * thickness ** 3 / 12.0 / length * NMM_PER_RAD_TO_NM_PER_DEG


@pytest.fixture(scope="module")
def flat():
    return strip(CLAMP + FREE + CUFF, 30.0, 3.0)


@pytest.fixture(scope="module")
def flat_result(flat):
    return solve_stiffness(flat.shell, flat.limb, flat.thickness, E, 0.0, _strip_rig())


def test_elements_fill_the_wall_with_its_thickness(flat, flat_result):
    mesh = flat_result.mesh
    volumes = tet_volumes(mesh.nodes, mesh.tets)
    assert (volumes > 0).all()
    # Prisms on the inner face, as thick as the wall: the strip's volume.
    assert volumes.sum() == pytest.approx(flat.shell.volume, rel=0.01)
    assert mesh.thickness == pytest.approx(np.full(len(mesh.thickness), 3.0), abs=1e-3)
    # Element edges near min(4 mm, thickness) = 3 mm.
    edges = mesh.surface.edges_unique_length
    assert 2.2 < np.median(edges) < 4.0


def test_cantilever_strip_matches_beam_theory(flat, flat_result):
    exact = _beam(flat.width, flat.thickness, FREE)
    assert flat_result.k_free["sagittal"] == pytest.approx(exact, rel=0.03)
    assert flat_result.k_axis["sagittal"] == pytest.approx(exact, rel=0.03)


def test_refining_the_mesh_changes_the_strip_by_under_one_percent(flat, flat_result):
    for params in (FEMeshParams(element_mm=2.0), FEMeshParams(layers=2)):
        finer = solve_stiffness(flat.shell, flat.limb, flat.thickness, E, 0.0, _strip_rig(),
                                params)
        assert len(finer.mesh.tets) > 1.5 * len(flat_result.mesh.tets)
        assert finer.k_free["sagittal"] == pytest.approx(flat_result.k_free["sagittal"],
                                                         rel=0.01)


def test_quarter_ring_matches_curved_beam_theory():
    radius, width, thickness = 50.0, 30.0, 3.0
    ring = quarter_ring(radius, width, thickness, straight=15.0)
    result = solve_stiffness(ring.shell, ring.limb, thickness, E, 0.0, _ring_rig())
    exact = _beam(width, thickness, 0.5 * np.pi * (radius + 0.5 * thickness))
    assert result.k_free["sagittal"] == pytest.approx(exact, rel=0.03)


def test_stiffness_scales_exactly_with_the_modulus(flat, flat_result):
    stiffer = solve_stiffness(flat.shell, flat.limb, flat.thickness, 2.5 * E, 0.0, _strip_rig())
    for plane in AXES:
        assert stiffer.k_free[plane] == pytest.approx(2.5 * flat_result.k_free[plane], rel=1e-9)
        assert stiffer.k_axis[plane] == pytest.approx(2.5 * flat_result.k_axis[plane], rel=1e-9)


def test_k_free_does_not_depend_on_the_axis_point(flat, flat_result):
    elsewhere = solve_stiffness(flat.shell, flat.limb, flat.thickness, E, 0.0,
                                _strip_rig(point=(40.0, -30.0, 25.0)))
    for plane in AXES:
        assert elsewhere.k_free[plane] == pytest.approx(flat_result.k_free[plane], rel=1e-9)
    # The hinge's place does matter to k_axis: a hinge off the strip's line
    # makes the cuff swing, not just turn.
    assert elsewhere.k_axis["sagittal"] > 1.5 * flat_result.k_axis["sagittal"]
    # Moving the hinge after the solve gives what solving with it there gives.
    moved = at_axis_point(flat_result, _strip_rig(), np.array([40.0, -30.0, 25.0]))
    assert moved["sagittal"] == pytest.approx(elsewhere.k_axis["sagittal"], rel=1e-6)


def test_the_condensed_cuff_matches_a_direct_solve(flat_result):
    """The 6 × 6 from the reordered factorisation turns the cuff as one plain solve does."""
    from scipy import sparse
    from scipy.sparse.linalg import spsolve

    from orthofit.elasticity import _rigid_map

    mesh, rig = flat_result.mesh, _strip_rig()
    clamped, tied = rig.clamped(mesh), rig.tied(mesh)
    k = assemble_stiffness(mesh.nodes, mesh.tets, E, 0.0)
    body = rigid_body_stiffness(k, mesh.nodes, clamped, tied, rig.axis_point)
    free = ~(clamped | tied)
    f = (3 * np.flatnonzero(free)[:, None] + np.arange(3)).ravel()
    s = (3 * np.flatnonzero(tied)[:, None] + np.arange(3)).ravel()
    t = _rigid_map(mesh.nodes[tied], rig.axis_point)
    whole = sparse.bmat([[k[f][:, f], k[f][:, s] @ t],
                         [t.T @ k[s][:, f], t.T @ k[s][:, s] @ t]]).tocsc()
    load = np.zeros(whole.shape[0])
    load[-2] = 1000.0                              # N·mm about y
    turned = spsolve(whole, load)[-6:]
    assert turned == pytest.approx(np.linalg.solve(body, load[-6:]), rel=1e-6, abs=1e-12)


def test_elements_do_not_depend_on_the_shells_vertex_order(flat):
    import trimesh

    perm = np.random.default_rng(3).permutation(len(flat.shell.vertices))
    shuffled = trimesh.Trimesh(flat.shell.vertices[perm], np.argsort(perm)[flat.shell.faces],
                               process=False)
    a = shell_fe_mesh(flat.shell, flat.limb, flat.thickness)
    b = shell_fe_mesh(shuffled, flat.limb, flat.thickness)
    assert np.array_equal(a.nodes, b.nodes) and np.array_equal(a.tets, b.tets)
