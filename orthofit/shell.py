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

__all__ = ["ShellParams", "LimbDistance", "build_shell", "smoothstep", "raycasting_scene"]

log = logging.getLogger(__name__)

# Bodies under this share of the largest one's triangles are marching-cubes specks.
_SPECK_SHARE = 0.01

# Rays voting on inside or outside: one ray can graze an edge of the flat
# sole and miscount (Open3D's documented failure); a majority of 5 does not.
_OCCUPANCY_RAYS = 5

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
    # Taubin smoothing passes over the marching-cubes surface [eng].
    smoothing_iterations: int = 6
    # Decimation keeps every vertex within this of the smoothed surface [eng]:
    # a twentieth of a millimetre is below any printer's resolution and
    # halves the triangles of a 1 mm grid.
    simplify_tolerance_mm: float = 0.05
    # Where smoothing folds the surface through itself, the marching-cubes
    # surface comes back within this radius, in at most this many rounds [eng].
    repair_radius_mm: float = 4.0
    repair_rounds: int = 3
    # Probe steps per grid cell along each normal, so every cell of the band
    # is reached [eng].
    band_probes_per_cell: float = 2.0


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


class LimbDistance:
    """Signed distance (mm, positive outside) to a closed limb surface.

    Unsigned distance comes from Open3D's closest-point queries, the sign from
    its ray-parity occupancy; both are exact for a watertight mesh and
    independent per query, so results do not depend on thread scheduling.
    """

    def __init__(self, limb: trimesh.Trimesh):
        self._scene, _ = raycasting_scene(limb)

    def __call__(self, points: np.ndarray) -> np.ndarray:
        q = o3c.Tensor(np.ascontiguousarray(points, dtype=np.float32))
        dist = self._scene.compute_distance(q).numpy().astype(np.float64)
        inside = self._scene.compute_occupancy(q, nsamples=_OCCUPANCY_RAYS).numpy() > 0.5
        return np.where(inside, -dist, dist)


def _smooth_max(a: np.ndarray, b: np.ndarray, radius: float) -> np.ndarray:
    """Intersection of two distance fields with edges rounded by ``radius`` (mm)."""
    if radius <= 0:
        return np.maximum(a, b)
    ua = np.maximum(a + radius, 0.0)
    ub = np.maximum(b + radius, 0.0)
    return np.minimum(-radius, np.maximum(a, b)) + np.hypot(ua, ub)


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
    reach = clearance + thickness + flare + params.band_margin_mm
    distance = LimbDistance(limb)
    # Nodes near the wall: the limb's vertices and face centres stepped out
    # along their normals through the wall's depth, voxelised, dilated.
    # Supports press the wall's inner face into the limb.
    inner = min(max(clearance - params.band_margin_mm, 0.0),
                clearance - press_most - params.band_margin_mm)
    seeds = np.vstack([limb.vertices, limb.triangles_center])
    normals = np.vstack([limb.vertex_normals, limb.face_normals])
    offsets = np.arange(inner, reach + extra_most + step / 2, step / params.band_probes_per_cell)
    probes = seeds[:, None, :] + normals[:, None, :] * offsets[None, :, None]
    if extra is not None or press is not None:
        # Only where the corrections add clearance does the wall reach further
        # out, and only where supports press in does it reach into the limb.
        further = extra(seeds)[:, None] if extra is not None else 0.0
        pressed = press(seeds)[:, None] if press is not None else 0.0
        near = ((offsets[None, :] <= reach + further + step)
                & (offsets[None, :] >= clearance - pressed - params.band_margin_mm - step))
        probes = probes[near]
    probes = probes.reshape(-1, 3)
    plates = getattr(trim, "plates", [])
    for _, (lo_p, hi_p) in plates:
        lo_p, hi_p = lo_p - params.band_margin_mm, hi_p + params.band_margin_mm
        axes = [np.arange(lo_p[i], hi_p[i] + step, step) for i in range(3)]
        probes = np.vstack([probes, np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)])
    probes = probes[trim(probes) < params.band_margin_mm + params.flare_reach_mm]
    if len(probes) == 0:
        raise CannotServeError("the trimlines leave no shell on this limb; check the "
                               "prescription's trimlines against the landmarks")
    lo = probes.min(axis=0) - 4 * step
    hi = probes.max(axis=0) + 4 * step
    shape = np.ceil((hi - lo) / step).astype(int) + 1
    band = np.zeros(shape, dtype=bool)
    band[tuple(np.round((probes - lo) / step).astype(np.int64).T)] = True
    band = ndimage.binary_dilation(band, iterations=1)
    nodes = lo + step * np.argwhere(band)
    d = distance(nodes)
    t = trim(nodes)
    # Clearance opens towards the trim edges (edge flare).
    opening = flare * np.clip(1.0 + t / params.flare_reach_mm, 0.0, 1.0) ** 2
    inner = clearance + opening
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
    labels = trimesh.graph.connected_component_labels(mesh.face_adjacency,
                                                      node_count=len(mesh.faces))
    sizes = np.bincount(labels)
    if len(sizes) > 1:
        # Specks of marching cubes go; a second real body stays, for the
        # single-body check to report.
        mesh.update_faces(sizes[labels] >= _SPECK_SHARE * sizes.max())
        mesh.remove_unreferenced_vertices()
    if mesh.volume < 0:
        mesh.invert()
    # Marching cubes leaves a grid's roughness on the faces; Taubin smoothing
    # takes it off without shrinking the wall.
    raw = mesh.vertices.copy()
    trimesh.smoothing.filter_taubin(mesh, iterations=params.smoothing_iterations)
    mesh = _simplify_without_crossings(mesh, raw, params)
    # Checks run on exactly what the files hold: STL stores float32.
    mesh.vertices = np.asarray(mesh.vertices, dtype=np.float32).astype(np.float64)
    log.info("shell: %d triangles, volume %.0f mm³", len(mesh.faces), mesh.volume)
    return mesh
