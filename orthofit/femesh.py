"""The finite-element mesh of a shell: prism layers of quadratic tetrahedra.

This module owns turning a printed shell (a watertight mesh in mm) into
10-node tetrahedra without an external mesher:

1. the shell's **inner face** (the faces that look at the limb) is cut out;
2. it is **remeshed** to triangles of about the element size: seeds spread
   over it at least 0.8 of that apart (every boundary kept), each fine vertex joins its
   nearest seed along the surface (multi-source Dijkstra), and the regions'
   dual is the coarse surface (the idea of ACVD, Valette & Chassery 2004);
3. each coarse triangle is **extruded** by the wall's local thickness
   (measured by a ray through the shell at every vertex) into prism layers;
4. each prism is **split into three tetrahedra** with the diagonals chosen by
   the vertices' indices, so neighbours share faces, and every edge gets a
   mid-node (straight-sided quadratic tetrahedra).

The thickness stays what the shell has, and a linear-elastic solve on these
elements bends thin walls correctly (linear tetrahedra lock and read about
twice too stiff).  Lengths are mm in the frame of the input.  It must not
read files or know about devices.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import open3d.core as o3c
import trimesh
from scipy import sparse
from scipy.sparse import csgraph
from scipy.spatial import cKDTree

from .errors import CannotServeError
from .shell import raycasting_scene

__all__ = ["FEMeshParams", "ShellFEMesh", "inner_surface", "remesh_surface", "shell_fe_mesh",
           "tet_volumes", "face_components"]

log = logging.getLogger(__name__)

#: Mid-node order of a 10-node tetrahedron: the corners joined by each edge.
TET_EDGES = np.array([[0, 1], [1, 2], [0, 2], [0, 3], [1, 3], [2, 3]])


@dataclass(frozen=True)
class FEMeshParams:
    """How the shell is cut into elements (mm)."""

    # Target element edge: the min(4 mm, wall thickness) [eng].
    element_mm: float | None = None
    most_element_mm: float = 4.0
    # Element layers through the wall: quadratic tetrahedra represent the
    # linear strain of bending exactly, so one layer is enough [eng]; tests
    # compare with two.
    layers: int = 1
    # A face is on the inner face when its outward normal points at the limb
    # within this angle (cosine) [eng]: rounded edges and rims are left out.
    inner_cos: float = 0.6
    # The wall's local thickness comes from a ray; where it misses or runs
    # along a rim, it is clamped to this share of the nominal thickness [eng].
    thickness_clamp: tuple[float, float] = (0.6, 1.6)
    # Seeds closer than this share of the element size are not placed [eng]:
    # a maximal set with this spacing has a median edge about 1.15 times the
    # element size.  At 0.7 (edges of the element size) the adult AFO's solve
    # took a quarter longer for a result 0.05 % different.
    seed_spacing_share: float = 0.8
    # Lloyd rounds that move interior seeds to their regions' centres [eng].
    lloyd_rounds: int = 3
    # Triangles under this share of the element size squared, and elements
    # under it cubed, are slivers and left out [eng].
    sliver_share: float = 0.01


@dataclass
class ShellFEMesh:
    """Quadratic tetrahedra of a shell, with where each node sits in the wall."""

    nodes: np.ndarray          # (n, 3) mm
    tets: np.ndarray           # (m, 10) corner nodes then mid-nodes in TET_EDGES order
    level: np.ndarray          # (n,) 0 on the inner face, 1 on the outer face
    normal: np.ndarray         # (n,) x 3: the wall's outward direction (inner to outer face)
    surface: trimesh.Trimesh   # the remeshed inner face
    thickness: np.ndarray      # (surface vertices,) local wall thickness, mm
    element_mm: float
    layers: int


def tet_volumes(nodes: np.ndarray, tets: np.ndarray) -> np.ndarray:
    """Signed volumes of the tetrahedra (corner nodes only), mm³."""
    a, b, c, d = (nodes[tets[:, i]] for i in range(4))
    return np.einsum("ij,ij->i", np.cross(b - a, c - a), d - a) / 6.0


def face_components(tets: np.ndarray) -> np.ndarray:
    """Per tetrahedron, the label of its part: tetrahedra joined through shared faces.

    Two tetrahedra that share a triangle move together; a part joined to
    the rest only along an edge or at a node turns about it freely (a
    mechanism), so the stiffness matrix of the whole is singular.  Only the
    corner nodes (the first four columns of ``tets``) count.

    >>> face_components(np.array([[0, 1, 2, 3], [1, 2, 3, 4], [4, 5, 6, 7]])).tolist()
    [0, 0, 1]
    """
    corners = np.sort(np.asarray(tets)[:, :4], axis=1).astype(np.int64)
    if len(corners) == 0:
        return np.zeros(0, dtype=np.int64)
    triangles = np.concatenate([corners[:, [0, 1, 2]], corners[:, [0, 1, 3]],
                                corners[:, [0, 2, 3]], corners[:, [1, 2, 3]]])
    owner = np.tile(np.arange(len(corners)), 4)
    n = int(corners.max()) + 1
    if n ** 3 < 2 ** 62:
        # One integer per triangle: a sort of numbers, not of rows.
        key = (triangles[:, 0] * n + triangles[:, 1]) * n + triangles[:, 2]
    else:
        _, key = np.unique(triangles, axis=0, return_inverse=True)
    order = np.argsort(key.ravel(), kind="stable")
    shared = np.flatnonzero(key.ravel()[order][1:] == key.ravel()[order][:-1])
    a, b = owner[order][shared], owner[order][shared + 1]
    graph = sparse.coo_matrix((np.ones(len(a)), (a, b)), shape=(len(corners), len(corners)))
    _, labels = csgraph.connected_components(graph, directed=False)
    return labels.astype(np.int64)


def inner_surface(shell: trimesh.Trimesh, limb: trimesh.Trimesh,
                  params: FEMeshParams = FEMeshParams()) -> trimesh.Trimesh:
    """The shell's faces that look at the limb (its inner face), as an open mesh.

    A face belongs when its outward normal points against the limb's own
    outward normal at the nearest point of the limb, within
    ``params.inner_cos``.  That holds on either side of the skin, so a wall
    pressed into the limb (an arch support) is found too.
    """
    scene, _ = raycasting_scene(limb)
    closest = scene.compute_closest_points(
        o3c.Tensor(np.asarray(shell.triangles_center, dtype=np.float32)))
    facing = -np.einsum("ij,ij->i", shell.face_normals,
                        closest["primitive_normals"].numpy().astype(np.float64))
    keep = facing > params.inner_cos
    if not keep.any():
        raise CannotServeError("no face of the shell looks at the limb, so it has no inner "
                               "face to build elements on; check that the limb belongs to "
                               "this device")
    inner = shell.submesh([np.flatnonzero(keep)], append=True)
    inner.remove_unreferenced_vertices()
    return inner


def _boundary_loops_points(fine: trimesh.Trimesh, spacing: float) -> np.ndarray:
    """Indices of fine vertices along every boundary, evenly about ``spacing`` apart."""
    faces = np.asarray(fine.faces, dtype=np.int64)
    n = len(fine.vertices)
    directed = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    keys = np.sort(directed[:, 0] * n + directed[:, 1])
    reverse = directed[:, 1] * n + directed[:, 0]
    # A directed edge whose reverse no face has is on a boundary.
    found = keys[np.minimum(np.searchsorted(keys, reverse), len(keys) - 1)] == reverse
    boundary = directed[~found]
    if len(boundary) == 0:
        return np.zeros(0, dtype=np.int64)
    verts = np.array(fine.vertices, dtype=np.float64)
    following: dict[int, list[int]] = {}
    for a, b in sorted(boundary.tolist()):
        following.setdefault(a, []).append(b)
    keep: list[int] = []
    for start in sorted(following):
        if not following[start]:
            continue
        # Follow the boundary from its lowest unvisited vertex until it closes
        # (or, where it is not manifold, runs out).
        chain = [start]
        current = start
        while following.get(current):
            current = following[current].pop(0)
            chain.append(current)
            if current == start:
                break
        idx = np.asarray(chain)
        steps = np.linalg.norm(np.diff(verts[idx], axis=0), axis=1)
        along = np.r_[0.0, np.cumsum(steps)]
        pieces = max(3, int(round(along[-1] / spacing)))
        targets = np.linspace(0.0, along[-1], pieces, endpoint=idx[0] != idx[-1])
        at = np.clip(np.searchsorted(along, targets), 0, len(idx) - 1)
        keep.extend(idx[at].tolist())
    return np.unique(np.asarray(keep, dtype=np.int64))


def _poisson_seeds(points: np.ndarray, fixed: np.ndarray, radius: float,
                   trials: int = 6) -> np.ndarray:
    """Point indices at least ``radius`` apart, ``fixed`` ones first, covering ``points``.

    Grid cells a third of the radius across a diagonal hold at most one seed;
    cells are filled in 27 interleaved phases, each cell's candidates tried
    in a fixed order, so the set is the same on every run.
    """
    points = np.asarray(points, dtype=np.float64)
    cell = radius / np.sqrt(3.0)
    keys = np.floor(points / cell).astype(np.int64)
    keys -= keys.min(axis=0)
    phase = (keys % 3) @ np.array([9, 3, 1])
    dims = keys.max(axis=0) + 1
    cell_id = (keys[:, 0] * dims[1] + keys[:, 1]) * dims[2] + keys[:, 2]
    # Within a cell, candidates nearest its centre first.
    offset = np.linalg.norm(points / cell - (np.floor(points / cell) + 0.5), axis=1)
    _, cell_index = np.unique(cell_id, return_inverse=True)
    chosen = [np.asarray(fixed, dtype=np.int64)]
    taken = np.zeros(len(points), dtype=bool)
    taken[chosen[0]] = True
    filled = np.zeros(len(cell_id), dtype=bool)
    filled[cell_index[chosen[0]]] = True
    order = np.lexsort((np.arange(len(points)), offset, cell_id))
    rank = np.empty(len(points), dtype=np.int64)
    sorted_cells = cell_id[order]
    first = np.searchsorted(sorted_cells, sorted_cells)
    rank[order] = np.arange(len(points)) - first
    for p in range(27):
        # Cells of one phase lie over a radius apart, so this phase's seeds
        # need checking only against the earlier phases' (and the fixed) ones.
        earlier = np.concatenate(chosen)
        tree = cKDTree(points[earlier]) if len(earlier) else None
        in_phase = np.flatnonzero(phase == p)
        for trial in range(trials):
            cand = in_phase[(rank[in_phase] == trial) & ~taken[in_phase]]
            if len(cand) == 0:
                break
            cand = cand[~filled[cell_index[cand]]]
            if len(cand) == 0:
                continue
            if tree is not None:
                crowded = np.isfinite(tree.query(points[cand], distance_upper_bound=radius)[0])
                cand = cand[~crowded]
            chosen.append(cand)
            taken[cand] = True
            filled[cell_index[cand]] = True
    return np.concatenate(chosen).astype(np.int64)


def remesh_surface(fine: trimesh.Trimesh, element_mm: float,
                   params: FEMeshParams = FEMeshParams()) -> trimesh.Trimesh:
    """An open surface remeshed to triangles with edges of about ``element_mm``.

    Boundaries are kept (their vertices are seeds), and slots and holes stay
    open because regions grow along the surface, never across a gap.
    """
    fine = _canonical(trimesh.Trimesh(fine.vertices, fine.faces, process=True))
    fine = _subdivided(fine, 0.5 * element_mm)
    verts = np.array(fine.vertices, dtype=np.float64)
    n = len(verts)
    edges = np.array(fine.edges_unique)
    lengths = np.array(fine.edges_unique_length)
    graph = sparse.coo_matrix((np.r_[lengths, lengths],
                               (np.r_[edges[:, 0], edges[:, 1]], np.r_[edges[:, 1], edges[:, 0]])),
                              shape=(n, n)).tocsr()
    fixed = _boundary_loops_points(fine, element_mm)
    seeds = _poisson_seeds(verts, fixed, params.seed_spacing_share * element_mm)
    movable = np.ones(len(seeds), dtype=bool)
    movable[: len(fixed)] = False
    # Vertex areas weigh the regions' centres.
    area = np.zeros(n)
    np.add.at(area, fine.faces.ravel(), np.repeat(fine.area_faces / 3.0, 3))
    for _ in range(params.lloyd_rounds):
        label = _regions(graph, seeds)
        reached = label >= 0
        weight = np.bincount(label[reached], weights=area[reached], minlength=len(seeds))
        centre = np.stack([np.bincount(label[reached], weights=(area * verts[:, k])[reached],
                                       minlength=len(seeds)) for k in range(3)], axis=1)
        centre /= np.maximum(weight, 1e-12)[:, None]
        # Each movable seed goes to its region's vertex nearest that centre.
        members = np.flatnonzero(reached)
        gap = ((verts[members] - centre[label[members]]) ** 2).sum(axis=1)
        nearest = members[np.lexsort((members, gap, label[members]))]
        firsts = nearest[np.r_[True, np.diff(label[nearest]) != 0]]
        target = firsts[movable[label[firsts]]]
        moved = seeds.copy()
        moved[label[target]] = target
        if np.array_equal(moved, seeds):
            break
        seeds = moved
    label = _regions(graph, seeds)
    tri = label[fine.faces]
    distinct = ((tri[:, 0] != tri[:, 1]) & (tri[:, 1] != tri[:, 2]) & (tri[:, 0] != tri[:, 2])
                & (tri.min(axis=1) >= 0))
    tri = tri[distinct]
    # One coarse triangle per triple of regions, in the triples' order, wound as the
    # first fine face that spans it.
    ordered = np.sort(tri, axis=1).astype(np.int64)
    _, first = np.unique((ordered[:, 0] * len(seeds) + ordered[:, 1]) * len(seeds)
                         + ordered[:, 2], return_index=True)
    tri = tri[first]
    coarse = trimesh.Trimesh(verts[seeds], tri, process=False)
    # Three seeds in a line along a boundary make a sliver with no area; it
    # would give elements of no volume.
    coarse.update_faces(coarse.area_faces > params.sliver_share * element_mm ** 2)
    coarse.remove_unreferenced_vertices()
    return coarse


def _subdivided(mesh: trimesh.Trimesh, longest: float) -> trimesh.Trimesh:
    """The mesh with every edge split until none is longer than ``longest``.

    Regions must hold several fine vertices each.  The mesh's own vertices
    keep their order; the new ones follow.
    """
    if not len(mesh.faces):
        return mesh
    vertices, faces = _bisect_long_edges(np.asarray(mesh.vertices, dtype=np.float64),
                                         np.asarray(mesh.faces, dtype=np.int64), longest)
    if len(vertices) == len(mesh.vertices):
        return mesh
    return trimesh.Trimesh(vertices, faces, process=True)


def _bisect_long_edges(vertices: np.ndarray, faces: np.ndarray, longest: float,
                       rounds: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """Conforming refinement: each round, every edge over ``longest`` is cut at its middle.

    Both faces on an edge share its middle vertex, so no crack opens.  A
    face with one cut edge becomes two triangles, with all three four (the
    middles' triangle in the centre), with two a corner triangle and a quad
    split along its shorter diagonal.  Faces left whole drop out of the next
    rounds.  Winding is kept.
    """
    points = [vertices]
    n_points = len(vertices)
    finished = []
    for _ in range(rounds):
        if not len(faces):
            break
        xyz = np.concatenate(points) if len(points) > 1 else points[0]
        points = [xyz]
        # Edges (0, 1), (1, 2), (2, 0) of every face.
        edge = faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2)
        lo, hi = edge.min(axis=1), edge.max(axis=1)
        cut = np.linalg.norm(xyz[lo] - xyz[hi], axis=1) > longest
        if not cut.any():
            break
        key, which = np.unique(lo[cut] * n_points + hi[cut], return_inverse=True)
        middle = np.full(len(edge), -1, dtype=np.int64)
        middle[cut] = n_points + which
        points.append(0.5 * (xyz[key // n_points] + xyz[key % n_points]))
        n_points += len(key)
        middle = middle.reshape(-1, 3)
        count = (middle >= 0).sum(axis=1)
        finished.append(faces[count == 0])
        pieces = []
        f, m = faces[count == 3], middle[count == 3]
        pieces.append(np.stack([f[:, 0], m[:, 0], m[:, 2], m[:, 0], f[:, 1], m[:, 1],
                                m[:, 2], m[:, 1], f[:, 2], m[:, 0], m[:, 1], m[:, 2]],
                               axis=1).reshape(-1, 3))
        # One cut edge: turned so it is edge (a, b), opposite corner c.
        f, m = faces[count == 1], middle[count == 1]
        j = np.argmax(m >= 0, axis=1)
        r = np.arange(len(j))
        a, b, c, p = f[r, j], f[r, (j + 1) % 3], f[r, (j + 2) % 3], m[r, j]
        pieces.append(np.stack([a, p, c, p, b, c], axis=1).reshape(-1, 3))
        # Two cut edges: turned so they are (a, b) and (b, c), middles p and q.
        f, m = faces[count == 2], middle[count == 2]
        j = (np.argmin(m >= 0, axis=1) + 1) % 3
        r = np.arange(len(j))
        a, b, c = f[r, j], f[r, (j + 1) % 3], f[r, (j + 2) % 3]
        p, q = m[r, j], m[r, (j + 1) % 3]
        xyz = np.concatenate(points)
        short = (np.linalg.norm(xyz[a] - xyz[q], axis=1)
                 <= np.linalg.norm(xyz[p] - xyz[c], axis=1))[:, None]
        pieces.append(np.stack([p, b, q], axis=1))
        pieces.append(np.where(short, np.stack([a, p, q], axis=1), np.stack([a, p, c], axis=1)))
        pieces.append(np.where(short, np.stack([a, q, c], axis=1), np.stack([p, q, c], axis=1)))
        faces = np.concatenate(pieces)
    finished.append(faces)
    return np.concatenate(points), np.concatenate(finished)


def _canonical(mesh: trimesh.Trimesh) -> trimesh.Trimesh:
    """The same surface with vertices in coordinate order and faces sorted.

    A shell read back from an STL has its vertices in another order than
    the one designed in memory; ordered this way both give the same elements.
    """
    verts = np.asarray(mesh.vertices)
    order = np.lexsort((verts[:, 2], verts[:, 1], verts[:, 0]))
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    faces = rank[np.asarray(mesh.faces)]
    # Each face starts at its lowest vertex (winding kept), then faces in order.
    roll = np.argmin(faces, axis=1)
    faces = faces[np.arange(len(faces))[:, None], (roll[:, None] + np.arange(3)) % 3]
    faces = faces[np.lexsort((faces[:, 2], faces[:, 1], faces[:, 0]))]
    return trimesh.Trimesh(verts[order], faces, process=False)


def _regions(graph: sparse.csr_matrix, seeds: np.ndarray) -> np.ndarray:
    """Per vertex, the index (into ``seeds``) of the seed nearest along the surface; -1 if none."""
    _, _, source = csgraph.dijkstra(graph, directed=False, indices=seeds,
                                    return_predecessors=True, min_only=True)
    order = np.argsort(seeds)
    label = order[np.clip(np.searchsorted(seeds[order], source), 0, len(seeds) - 1)]
    label[source < 0] = -1
    return label


def _surface_normals(surface: trimesh.Trimesh) -> np.ndarray:
    """Area-weighted vertex normals of an open surface (unit)."""
    normals = np.zeros_like(surface.vertices)
    weighted = surface.face_normals * surface.area_faces[:, None]
    for k in range(3):
        np.add.at(normals, surface.faces[:, k], weighted)
    return normals / np.maximum(np.linalg.norm(normals, axis=1), 1e-12)[:, None]


def _wall_thickness(shell: trimesh.Trimesh, points: np.ndarray, inward: np.ndarray,
                    nominal: float, clamp: tuple[float, float]) -> np.ndarray:
    """Distance from each inner-face point along ``inward`` to where the ray leaves the shell."""
    scene, _ = raycasting_scene(shell)
    start = points + 0.05 * inward
    rays = np.hstack([start, inward]).astype(np.float32)
    hit = scene.cast_rays(o3c.Tensor(rays))["t_hit"].numpy().astype(np.float64) + 0.05
    hit[~np.isfinite(hit)] = nominal
    return np.clip(hit, clamp[0] * nominal, clamp[1] * nominal)


def shell_fe_mesh(shell: trimesh.Trimesh, limb: trimesh.Trimesh, thickness_mm: float,
                  params: FEMeshParams = FEMeshParams()) -> ShellFEMesh:
    """Quadratic tetrahedra filling ``shell`` (a watertight wall around ``limb``).

    Raises
    ------
    CannotServeError
        When the shell has no inner face.
    """
    element = params.element_mm or min(params.most_element_mm, thickness_mm)
    surface = remesh_surface(inner_surface(shell, limb, params), element, params)
    # The inner face's outward normals point at the limb; the wall runs the other way.
    outward = -_surface_normals(surface)
    thick = _wall_thickness(shell, surface.vertices, outward, thickness_mm,
                            params.thickness_clamp)
    layers = params.layers
    nv = len(surface.vertices)
    levels = np.linspace(0.0, 1.0, layers + 1)
    corner = np.concatenate([surface.vertices + outward * (thick * s)[:, None] for s in levels])
    tets = []
    faces = surface.faces
    for k in range(layers):
        bottom = faces + k * nv
        tets.append(_split_prisms(faces, bottom, bottom + nv))
    tets = np.concatenate(tets)
    vol = tet_volumes(corner, tets)
    flipped = vol < 0
    tets[flipped] = tets[flipped][:, [1, 0, 2, 3]]
    flat = np.abs(vol) < params.sliver_share * element ** 3
    if flat.any():
        # Where the wall's normals turn sharply (a crease), a prism can
        # flatten; such elements carry nothing and are left out.
        log.info("femesh: %d flat elements of %d left out", flat.sum(), len(tets))
        tets = tets[~flat]
    nodes, tets10 = _add_mid_nodes(corner, tets)
    level = np.concatenate([np.full(nv, s) for s in levels])
    normal = np.tile(outward, (layers + 1, 1))
    mids = tets10[:, 4:]
    ends = tets10[:, TET_EDGES]
    level = np.concatenate([level, np.zeros(len(nodes) - len(corner))])
    normal = np.vstack([normal, np.zeros((len(nodes) - len(corner), 3))])
    level[mids] = 0.5 * (level[ends[..., 0]] + level[ends[..., 1]])
    mid_normal = normal[ends[..., 0]] + normal[ends[..., 1]]
    normal[mids] = mid_normal / np.maximum(np.linalg.norm(mid_normal, axis=-1), 1e-12)[..., None]
    return ShellFEMesh(nodes=nodes, tets=tets10, level=level, normal=normal, surface=surface,
                       thickness=thick, element_mm=element, layers=layers)


def _split_prisms(faces: np.ndarray, bottom: np.ndarray, top: np.ndarray) -> np.ndarray:
    """Three tetrahedra per prism, the side diagonals set by the surface vertex indices.

    With a prism's vertices sorted a < b < c, every side quad is cut from
    its lower-index bottom corner to its higher-index top corner, so two
    prisms sharing a side cut it the same way.
    """
    order = np.argsort(faces, axis=1)
    rows = np.arange(len(faces))[:, None]
    a, b, c = (bottom[rows, order][:, i] for i in range(3))
    a2, b2, c2 = (top[rows, order][:, i] for i in range(3))
    return np.concatenate([np.stack([a, b, c, c2], 1), np.stack([a, b, b2, c2], 1),
                           np.stack([a, a2, b2, c2], 1)])


def _add_mid_nodes(corner: np.ndarray, tets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every tetrahedron edge gets one shared mid-node at its middle."""
    pairs = np.sort(tets[:, TET_EDGES].reshape(-1, 2), axis=1).astype(np.int64)
    keys, inverse = np.unique(pairs[:, 0] * len(corner) + pairs[:, 1], return_inverse=True)
    unique = np.c_[keys // len(corner), keys % len(corner)]
    mid = 0.5 * (corner[unique[:, 0]] + corner[unique[:, 1]])
    nodes = np.vstack([corner, mid])
    tets10 = np.hstack([tets, len(corner) + inverse.reshape(-1, 6)])
    return nodes, tets10

