"""The orthosis shell: a wall at a set clearance from the limb, cut to its trimlines.

This module owns the solid of the device.  The limb's signed distance d
(Open3D ray casting; positive outside) gives the wall as the field
``max(c - d, d - (c + t))`` (negative inside the wall) for clearance c and
thickness t.  The trimlines (``orthofit.trimlines``) are a second field,
negative where the device exists; their rounded intersection with the wall,
with the clearance flared open near the edges, is polygonised by marching
cubes on a grid evaluated only in a narrow band around the wall.  Every length
is in mm in the device frame.  It must not read files or decide trimlines.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import manifold3d
import numpy as np
import open3d as o3d
import open3d.core as o3c
import trimesh
from scipy import ndimage
from scipy.spatial import cKDTree
from skimage.measure import marching_cubes

from .crossings import crossing_points
from .errors import CannotServeError

__all__ = ["ShellParams", "LimbDistance", "build_shell", "edge_opening", "smoothstep",
           "raycasting_scene"]

log = logging.getLogger(__name__)

# Bodies under this share of the largest one's triangles are marching-cubes specks.
_SPECK_SHARE = 0.01
# The fine grid's z planes sit this share of a step above round heights.
_OFF_ROUND = 1.0 / 3.0

#: A field over points (n, 3) mm: negative where the device exists.
Field = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class ShellParams:
    """Grid and blending of the shell (mm)."""

    # Marching-cubes step: a 3-4 mm wall spans 3-4 cells, which keeps the
    # measured thickness within 0.1-0.2 mm of the field's [eng].
    grid_mm: float = 1.0
    # The band of grid nodes evaluated around the wall, beyond its faces and flare.
    band_margin_mm: float = 2.5
    # Edges round with a blend of this share of the thickness [eng].
    edge_round_share: float = 0.5
    # The clearance opens by the flare over this distance from a trim edge.
    flare_reach_mm: float = 12.0
    # Taubin smoothing passes over the marching-cubes surface [eng], then this
    # many Newton steps back onto the field's zero level, moving a vertex at
    # most this far [eng].
    smoothing_iterations: int = 6
    level_rounds: int = 2
    level_move_most_mm: float = 0.5
    # Decimation keeps every vertex within this of the smoothed surface [eng]:
    # a twentieth of a millimetre is below any printer's resolution and
    # halves the triangles of a 1 mm grid.
    simplify_tolerance_mm: float = 0.05
    # Where smoothing folds the surface through itself, the marching-cubes
    # surface comes back within this radius, in at most this many rounds [eng].
    repair_radius_mm: float = 4.0
    repair_rounds: int = 3
    # The band is found on a grid this many fine steps a cell first [eng]...
    coarse_cells: int = 4
    # ...and the limb's distance computed on every this-many-th node of it,
    # interpolated between [eng].
    distance_every: int = 2
    # ...where the trim field changes by at most this many mm per mm (a
    # distance, but for blends and rounded corners) [eng].
    trim_lipschitz: float = 1.5


def _simplify_without_crossings(smooth: trimesh.Trimesh, raw: np.ndarray,
                                params: ShellParams) -> trimesh.Trimesh:
    """Decimate the smoothed surface; where it passes through itself, unsmooth it.

    Marching cubes does not cross itself, but smoothing can fold a tight
    crease (between toes, where a plate meets a wall) through its neighbour.
    Around each crossing the marching-cubes positions come back, blended into
    the smoothed surface over ``repair_radius_mm``, and the surface is
    decimated again.
    """
    mesh = _simplify(smooth, params.simplify_tolerance_mm)
    for _ in range(params.repair_rounds):
        points = crossing_points(mesh)
        if len(points) == 0:
            break
        log.info("shell: unsmoothing around %d crossings", len(points))
        near, _ = cKDTree(points).query(smooth.vertices)
        keep = smoothstep(near / params.repair_radius_mm)[:, None]
        smooth = trimesh.Trimesh(raw + keep * (smooth.vertices - raw), smooth.faces,
                                 process=False)
        mesh = _simplify(smooth, params.simplify_tolerance_mm)
    return mesh


def smoothstep(t: np.ndarray) -> np.ndarray:
    """0 below 0, 1 above 1, and a smooth cubic with level ends between.

    >>> smoothstep(np.array([-1.0, 0.5, 2.0])).tolist()
    [0.0, 0.5, 1.0]
    """
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3 - 2 * t)


def raycasting_scene(*meshes: trimesh.Trimesh) -> tuple[o3d.t.geometry.RaycastingScene,
                                                         list[int]]:
    """An Open3D ray-casting scene of ``meshes`` (float32) and their geometry ids."""
    scene = o3d.t.geometry.RaycastingScene()
    ids = [scene.add_triangles(o3c.Tensor(np.asarray(mesh.vertices, dtype=np.float32)),
                               o3c.Tensor(np.asarray(mesh.faces, dtype=np.uint32)))
           for mesh in meshes]
    return scene, ids


def _simplify(mesh: trimesh.Trimesh, tolerance: float) -> trimesh.Trimesh:
    """Fewer triangles, no vertex moved further than ``tolerance`` (manifold3d).

    manifold3d collapses only edges that keep the mesh a closed 2-manifold.
    """
    solid = manifold3d.Manifold(manifold3d.Mesh(
        vert_properties=np.asarray(mesh.vertices, dtype=np.float32),
        tri_verts=np.asarray(mesh.faces, dtype=np.uint32)))
    if solid.status() != manifold3d.Error.NoError:
        log.warning("shell: not decimated (%s)", solid.status())
        return mesh
    out = solid.simplify(tolerance).to_mesh()
    return trimesh.Trimesh(np.asarray(out.vert_properties[:, :3], dtype=np.float64),
                           np.asarray(out.tri_verts, dtype=np.int64), process=True)


@dataclass(frozen=True)
class Closest:
    """The nearest limb points to some queries: signed distance (mm, positive
    outside), the face each lies on, and the limb's unit normal there."""

    signed: np.ndarray
    face: np.ndarray
    normal: np.ndarray
    point: np.ndarray


class LimbDistance:
    """Signed distance (mm, positive outside) to a closed limb surface.

    The distance is Open3D's closest-point query; its sign is decided by the
    angle-weighted pseudonormal at the closest point (Bærentzen & Aanæs 2005,
    as libigl's ``signed_distance`` names it): the face's normal inside a
    face, the sum of the two faces' normals on an edge, the angle-weighted
    sum round a vertex.  For a watertight, consistently wound mesh that sign
    is exact, needs no rays (which can graze the flat sole and miscount), and
    each query is independent, so results never depend on thread scheduling.
    """

    def __init__(self, limb: trimesh.Trimesh):
        self._scene, _ = raycasting_scene(limb)
        faces = np.asarray(limb.faces)
        normals = np.asarray(limb.face_normals, dtype=np.float64)
        self._face_normals = normals
        vertex = np.zeros((len(limb.vertices), 3))
        angles = np.asarray(limb.face_angles)
        for corner in range(3):
            np.add.at(vertex, faces[:, corner], angles[:, corner, None] * normals)
        self._vertex_normals = vertex
        edges = np.asarray(limb.faces_unique_edges)
        edge = np.zeros((len(limb.edges_unique), 3))
        for k in range(3):
            np.add.at(edge, edges[:, k], normals)
        # Per face and corner: the pseudonormal of the edge opposite that corner
        # (faces_unique_edges lists edges (0, 1), (1, 2), (2, 0)).
        self._opposite_edge = edge[edges[:, [1, 2, 0]]]
        self._faces = faces

    @property
    def faces(self) -> np.ndarray:
        """The limb's faces (m, 3), as :meth:`closest` numbers them."""
        return self._faces

    def __call__(self, points: np.ndarray) -> np.ndarray:
        return self.closest(points).signed

    def closest(self, points: np.ndarray) -> "Closest":
        """The nearest point of the limb to each of ``points`` (n, 3): its face, the
        limb's (pseudo)normal there and the signed distance."""
        q = o3c.Tensor(np.ascontiguousarray(points, dtype=np.float32))
        found = self._scene.compute_closest_points(q)
        closest = found["points"].numpy().astype(np.float64)
        face = found["primitive_ids"].numpy().astype(np.int64)
        uv = found["primitive_uvs"].numpy().astype(np.float64)
        weights = np.stack([1.0 - uv[:, 0] - uv[:, 1], uv[:, 0], uv[:, 1]], axis=1)
        small = weights < _ON_BOUNDARY
        normal = self._face_normals[face]
        on_edge = small.sum(axis=1) == 1
        if on_edge.any():
            corner = np.argmax(small[on_edge], axis=1)
            normal[on_edge] = self._opposite_edge[face[on_edge], corner]
        on_vertex = small.sum(axis=1) >= 2
        if on_vertex.any():
            corner = np.argmax(weights[on_vertex], axis=1)
            normal[on_vertex] = self._vertex_normals[self._faces[face[on_vertex], corner]]
        normal /= np.maximum(np.linalg.norm(normal, axis=1, keepdims=True), 1e-12)
        offset = np.asarray(points, dtype=np.float64) - closest
        dist = np.linalg.norm(offset, axis=1)
        outside = np.einsum("ij,ij->i", offset, normal) >= 0.0
        return Closest(signed=np.where(outside, dist, -dist), face=face, normal=normal,
                       point=closest)

    def unsigned(self, points: np.ndarray) -> np.ndarray:
        """Distance (mm) to the limb's surface, without the sign."""
        q = o3c.Tensor(np.ascontiguousarray(points, dtype=np.float32))
        return self._scene.compute_distance(q).numpy().astype(np.float64)


# A barycentric weight under this puts the closest point on an edge or corner.
_ON_BOUNDARY = 1e-5


def edge_opening(trim_values: np.ndarray, flare: float,
                 params: ShellParams = ShellParams()) -> np.ndarray:
    """Extra clearance (mm) the edge flare gives at points with these trim values:
    ``flare`` at a trim edge, easing to nothing ``params.flare_reach_mm`` inside it."""
    return flare * np.clip(1.0 + trim_values / params.flare_reach_mm, 0.0, 1.0) ** 2


def _onto_level(vertices: np.ndarray, volume: np.ndarray, lo: np.ndarray, step: float,
                params: ShellParams) -> np.ndarray:
    """Vertices moved along the field's gradient onto its zero level (Newton steps).

    The field is the grid's, trilinearly interpolated; a vertex moves at most
    ``params.level_move_most_mm`` in all (the smoothing's own shift is a few
    tenths of a millimetre), so a crease's vertex is never thrown across it.
    """
    out = vertices.copy()
    for _ in range(params.level_rounds):
        at = ((out - lo) / step).T
        value = ndimage.map_coordinates(volume, at, order=1, mode="nearest")
        grad = np.stack([ndimage.map_coordinates(
            volume, at + np.eye(3)[axis][:, None] * 0.5, order=1, mode="nearest")
            - ndimage.map_coordinates(volume, at - np.eye(3)[axis][:, None] * 0.5, order=1,
                                      mode="nearest") for axis in range(3)], axis=1) / step
        norm2 = np.maximum((grad ** 2).sum(axis=1), 1e-12)
        move = -(value / norm2)[:, None] * grad
        length = np.linalg.norm(move, axis=1)
        move *= np.minimum(1.0, params.level_move_most_mm / np.maximum(length, 1e-12))[:, None]
        out = out + move
    shift = np.linalg.norm(out - vertices, axis=1)
    keep = shift <= params.level_move_most_mm
    return np.where(keep[:, None], out, vertices)


def _smooth_max(a: np.ndarray, b: np.ndarray, radius: float) -> np.ndarray:
    """Intersection of two distance fields with edges rounded by ``radius`` (mm)."""
    if radius <= 0:
        return np.maximum(a, b)
    ua = np.maximum(a + radius, 0.0)
    ub = np.maximum(b + radius, 0.0)
    return np.minimum(-radius, np.maximum(a, b)) + np.hypot(ua, ub)


def _band(limb: trimesh.Trimesh, distance: "LimbDistance", trim: Field, plates: list,
          nearest: float, furthest: float, step: float, params: ShellParams
          ) -> tuple[np.ndarray, np.ndarray]:
    """The grid nodes where the wall may be: coarse cells first, then their fine nodes.

    A coarse grid (``params.coarse_cells`` fine steps a cell) covers the limb
    grown by the wall's reach.  Since the limb's distance changes by no more
    than the distance moved, a cell whose corners all lie further than its
    diagonal outside the wall's depth (``nearest`` to ``furthest`` mm from the
    skin), or outside the trimlines' reach, holds no wall; every other cell's
    fine nodes make the band.  So the band is complete: no gap in it can
    punch a hole through the wall, whatever the limb's normals do.

    Returns the fine grid's origin (3,) and the band (bool, the fine grid's shape).
    """
    n = params.coarse_cells
    cell = n * step
    lo = np.asarray(limb.bounds[0], float) - furthest - cell
    hi = np.asarray(limb.bounds[1], float) + furthest + cell
    for _, (lo_p, hi_p) in plates:
        lo = np.minimum(lo, np.asarray(lo_p) - params.band_margin_mm - cell)
        hi = np.maximum(hi, np.asarray(hi_p) + params.band_margin_mm + cell)
    # Grid planes a third of a step off the floor's round heights: the closed
    # sole is flat on z = 0, and a plane of nodes exactly at the clearance
    # below it would put the field's zero on the nodes (degenerate faces).
    lo[2] = (np.floor(lo[2] / step) + _OFF_ROUND) * step
    cshape = np.ceil((hi - lo) / cell).astype(int) + 1
    axes = [lo[i] + cell * np.arange(cshape[i]) for i in range(3)]
    cnodes = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    cd = distance(cnodes)
    slack = cell * np.sqrt(3.0)
    near = (cd >= nearest - slack) & (cd <= furthest + slack)
    near &= trim(cnodes) <= (params.band_margin_mm + params.flare_reach_mm
                             + params.trim_lipschitz * slack)
    for plate, _ in plates:
        near |= plate(cnodes) <= params.band_margin_mm + params.trim_lipschitz * slack
    near = near.reshape(cshape)
    cells = np.zeros(cshape - 1, dtype=bool)
    for di in (0, 1):
        for dj in (0, 1):
            for dk in (0, 1):
                cells |= near[di:di + cshape[0] - 1, dj:dj + cshape[1] - 1,
                              dk:dk + cshape[2] - 1]
    band = np.zeros((cshape - 1) * n + 1, dtype=bool)
    band[:-1, :-1, :-1] = cells.repeat(n, 0).repeat(n, 1).repeat(n, 2)
    # Nodes on a kept cell's far faces belong to it too.
    for axis in range(3):
        shifted = np.zeros_like(band)
        np.moveaxis(shifted, axis, 0)[1:] = np.moveaxis(band, axis, 0)[:-1]
        band |= shifted
    return lo, band


def _drop_specks(mesh: trimesh.Trimesh) -> None:
    """Drop, in place, the bodies under ``_SPECK_SHARE`` of the largest one's
    triangles: specks of marching cubes.  A second real body stays, for the
    single-body check to report."""
    labels = trimesh.graph.connected_component_labels(mesh.face_adjacency,
                                                      node_count=len(mesh.faces))
    sizes = np.bincount(labels)
    if len(sizes) > 1:
        mesh.update_faces(sizes[labels] >= _SPECK_SHARE * sizes.max())
        mesh.remove_unreferenced_vertices()


def _band_distance(distance: "LimbDistance", band: np.ndarray, lo: np.ndarray,
                   step: float, params: ShellParams) -> np.ndarray:
    """Signed distance (mm) to the limb at the band's nodes, in the band's order.

    The limb's distance is smooth where the wall is (a few mm off the skin),
    so it is computed on every ``params.distance_every``-th node and
    interpolated trilinearly between them [eng: within 0.05 mm on skin
    curved to a 10 mm radius].
    """
    k = params.distance_every
    # The sparse nodes around every band node.
    sparse = ndimage.binary_dilation(band[::k, ::k, ::k], iterations=1)
    where = np.argwhere(sparse)
    grid = np.zeros(sparse.shape, dtype=np.float64)
    grid[tuple(where.T)] = distance(lo + step * k * where)
    return ndimage.map_coordinates(grid, (np.argwhere(band) / k).T, order=1, mode="nearest")


def build_shell(limb: trimesh.Trimesh, trim: Field, *, clearance: float, thickness: float,
                flare: float, extra: Field | None = None, extra_most: float = 0.0,
                press: Field | None = None, press_most: float = 0.0,
                cuts: Field | None = None,
                params: ShellParams = ShellParams()) -> trimesh.Trimesh:
    """The device's solid: one watertight, consistently wound mesh in mm.

    Parameters
    ----------
    limb : closed limb, device frame, mm
    trim : field over points, negative where the device exists (trimlines);
        its optional ``plates`` (fields with their boxes) add solids to the
        footplate: a toe plate, a forefoot wedge
    clearance : gap between skin and the wall's inner face, mm
    thickness : wall thickness, mm
    flare : extra clearance reached at a trim edge, mm
    extra : field of extra clearance (reliefs, growth), mm, at most ``extra_most``:
        both faces of the wall move out
    press : field of how far supports press the inner face in, mm, at most
        ``press_most``: the outer face stays, the wall thickens
    cuts : field negative inside strap slots and vent holes, cut through the
        wall with their edges rounded like the trim edges

    Raises
    ------
    CannotServeError
        When the trimlines leave no shell.
    """
    step = params.grid_mm
    distance = LimbDistance(limb)
    plates = getattr(trim, "plates", [])
    # The wall's faces lie this far from the skin at most (corrections and the
    # edge flare included); supports press its inner face into the limb.
    nearest = min(clearance - press_most, clearance) - params.band_margin_mm
    furthest = clearance + thickness + flare + extra_most + params.band_margin_mm
    lo, band = _band(limb, distance, trim, plates, nearest, furthest, step, params)
    if not band.any():
        raise CannotServeError("the trimlines leave no shell on this limb; check the "
                               "prescription's trimlines against the landmarks")
    shape = np.array(band.shape)
    nodes = lo + step * np.argwhere(band)
    d = _band_distance(distance, band, lo, step, params)
    t = trim(nodes)
    inner = clearance + edge_opening(t, flare, params)
    if extra is not None:
        inner = inner + extra(nodes)
    outer = inner + thickness
    if press is not None:
        inner = inner - press(nodes)
    wall = np.maximum(inner - d, d - outer)
    for plate, _ in plates:
        # A plate stays outside the clearance, like the wall it joins.
        wall = np.minimum(wall, np.maximum(plate(nodes), inner - d))
    value = _smooth_max(wall, t, params.edge_round_share * thickness)
    if cuts is not None:
        value = _smooth_max(value, -cuts(nodes), params.edge_round_share * thickness)
    volume = np.full(shape, step * 2, dtype=np.float32)
    volume[band] = value
    volume[volume == 0] = np.float32(1e-6)
    if volume.min() >= 0:
        raise CannotServeError("the trimlines leave no shell on this limb; check the "
                               "prescription's trimlines against the landmarks")
    verts, faces, _, _ = marching_cubes(volume, level=0.0, spacing=(step, step, step))
    mesh = trimesh.Trimesh(verts + lo, faces, process=True)
    mesh.remove_unreferenced_vertices()
    _drop_specks(mesh)
    if mesh.volume < 0:
        mesh.invert()
    # Marching cubes leaves a grid's roughness on the faces; Taubin smoothing
    # takes it off, and each vertex then goes back onto the field's zero
    # level along the field's gradient, so smoothing neither thins nor
    # thickens the wall (it did, by ~0.1 mm where the wall curves).
    raw = mesh.vertices.copy()
    trimesh.smoothing.filter_taubin(mesh, iterations=params.smoothing_iterations)
    mesh.vertices = _onto_level(np.asarray(mesh.vertices), volume, lo, step, params)
    mesh = _simplify_without_crossings(mesh, raw, params)
    # A sliver of marching cubes hanging by a thread at a trim edge can come
    # loose in the smoothing or the decimation: it goes too.
    _drop_specks(mesh)
    # Checks run on exactly what the files hold: STL stores float32.
    mesh.vertices = np.asarray(mesh.vertices, dtype=np.float32).astype(np.float64)
    log.info("shell: %d triangles, volume %.0f mm³", len(mesh.faces), mesh.volume)
    return mesh
