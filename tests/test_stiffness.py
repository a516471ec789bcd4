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


def _with_hinge_and_flat_element(mesh, *, flat_element: bool = True):
    """The mesh with a tetrahedron hanging from one element's edge in the free span (it
    can turn about that edge: a mechanism) and, optionally, an element of no volume."""
    from orthofit.femesh import TET_EDGES, ShellFEMesh

    centre = mesh.nodes[mesh.tets[:, :4]].mean(axis=1)
    host = mesh.tets[np.argmin(np.abs(centre[:, 0] - (CLAMP + FREE / 2)))]
    a, b, mid_ab = host[0], host[1], host[4]           # TET_EDGES[0] joins corners 0 and 1
    along = mesh.nodes[b] - mesh.nodes[a]
    across = np.cross(along, [0.0, 0.0, 1.0])
    across /= np.linalg.norm(across)
    base = 0.5 * (mesh.nodes[a] + mesh.nodes[b])
    c = base + 3.0 * across + np.array([0.0, 0.0, -4.0])
    d = base - 3.0 * across + np.array([0.0, 0.0, -5.0])
    nodes = [mesh.nodes, c[None], d[None]]
    n = len(mesh.nodes)
    corners = [a, b, n, n + 1]
    if tet_volumes(np.vstack(nodes), np.array([corners]))[0] < 0:
        corners = [b, a, n, n + 1]
    tets = [mesh.tets]
    extra = n + 2

    def element(corner_ids, known=None):
        nonlocal extra
        mids = []
        for i, j in TET_EDGES:
            pair = {corner_ids[i], corner_ids[j]}
            if known is not None and pair == known[0]:
                mids.append(known[1])
                continue
            nodes.append(0.5 * (np.vstack(nodes)[corner_ids[i]]
                                + np.vstack(nodes)[corner_ids[j]])[None])
            mids.append(extra)
            extra += 1
        tets.append(np.array([corner_ids + mids]))

    element(corners, known=({a, b}, mid_ab))
    if flat_element:
        # Four corners in one plane: three of the host's and one more on their plane.
        p, q, r = host[0], host[1], host[2]
        nodes.append((np.vstack(nodes)[p] + np.vstack(nodes)[q] - np.vstack(nodes)[r])[None])
        extra += 1
        element([p, q, r, extra - 1])
    all_nodes = np.vstack(nodes)
    grow = len(all_nodes) - n
    return ShellFEMesh(nodes=all_nodes, tets=np.vstack(tets),
                       level=np.r_[mesh.level, np.full(grow, 0.5)],
                       normal=np.vstack([mesh.normal, np.zeros((grow, 3))]),
                       surface=mesh.surface, thickness=mesh.thickness,
                       element_mm=mesh.element_mm, layers=mesh.layers)


def test_a_part_hanging_by_an_edge_makes_the_matrix_singular_and_is_left_out(flat, flat_result):
    """Issue #14: the causes of a singular stiffness matrix are found before factorising."""
    from orthofit.stiffness import held_parts

    plain = shell_fe_mesh(flat.shell, flat.limb, flat.thickness)
    rig = _strip_rig()
    hinged = _with_hinge_and_flat_element(plain, flat_element=False)
    # The cause is real: turning the hanging tetrahedron about its edge strains nothing,
    # so the matrix has that turn as a null vector (whether the factorisation then meets
    # a zero or negative pivot or a rounding error's worth of one depends on the last bits).
    k = assemble_stiffness(hinged.nodes, hinged.tets, E, 0.0)
    hinge = hinged.tets[-1]
    a, b = hinged.nodes[hinge[0]], hinged.nodes[hinge[1]]
    axis = (b - a) / np.linalg.norm(b - a)
    moving = np.setdiff1d(hinge, plain.tets.ravel())
    turn = np.zeros_like(hinged.nodes)
    turn[moving] = np.cross(axis, hinged.nodes[moving] - a)
    u = turn.ravel()
    assert np.linalg.norm(k @ u) < 1e-9 * abs(k).max() * np.linalg.norm(u)
    # Found and left out, with an element of no volume beside it.
    broken = _with_hinge_and_flat_element(plain)
    assert abs(tet_volumes(broken.nodes, broken.tets[-1:]))[0] < 1e-9
    clamped, tied = rig.clamped(broken), rig.tied(broken)
    held = held_parts(broken, clamped, tied, FEMeshParams())
    assert held.loose_parts == 1 and held.degenerate_elements == 1
    assert 0 < held.loose_volume_share < 0.01
    assert np.array_equal(held.mesh.nodes, flat_result.mesh.nodes)
    assert np.array_equal(held.mesh.tets, flat_result.mesh.tets)


def test_a_floating_island_in_the_shell_is_left_out_and_reported(flat, flat_result):
    """A separate body in the shell (joined to neither clamp nor cuff) carries no load: the
    solve leaves it out, says how much, and gives the strip's own stiffness."""
    import trimesh

    island = trimesh.creation.box(extents=(12.0, 12.0, 3.0))
    island.apply_translation([CLAMP + FREE / 2, 15.0, -6.5])
    shell = trimesh.util.concatenate([flat.shell, island])
    result = solve_stiffness(shell, flat.limb, flat.thickness, E, 0.0, _strip_rig())
    assert result.loose_parts >= 1
    assert result.loose_volume_share == pytest.approx(
        island.volume / shell.volume, rel=0.2)
    for plane in ("sagittal", "frontal"):
        assert result.k_free[plane] == pytest.approx(flat_result.k_free[plane], rel=1e-3)


def test_a_mechanism_the_model_cannot_hold_is_refused_with_its_cause(flat, monkeypatch):
    """Should a mechanism get past the search for loose parts, the solve refuses (exit 4)
    naming it, instead of ending in an internal error."""
    from orthofit import CannotServeError, stiffness
    from orthofit.stiffness import HeldModel

    def keep_everything(mesh, clamped, tied, params):
        hinged = _with_hinge_and_flat_element(mesh, flat_element=False)
        grow = len(hinged.nodes) - len(mesh.nodes)
        pad = np.zeros(grow, dtype=bool)
        return HeldModel(hinged, np.r_[clamped, pad], np.r_[tied, pad], 0.0, 0, 0)

    monkeypatch.setattr(stiffness, "held_parts", keep_everything)
    with pytest.raises(CannotServeError, match="can move with no load") as caught:
        solve_stiffness(flat.shell, flat.limb, flat.thickness, E, 0.0, _strip_rig())
    assert caught.value.exit_code == 4


def test_the_same_mesh_gives_the_same_bits_on_one_blas_thread_or_two(flat):
    """Threaded BLAS sums in another order; the solve keeps to one thread, so the
    numbers do not depend on how many the machine has."""
    from threadpoolctl import threadpool_limits

    bodies = []
    for threads in (1, 2):
        with threadpool_limits(limits=threads):
            bodies.append(solve_stiffness(flat.shell, flat.limb, flat.thickness, E, 0.0,
                                          _strip_rig()).body)
    assert np.array_equal(bodies[0], bodies[1])
