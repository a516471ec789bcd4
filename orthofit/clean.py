"""Cleaning a raw scan with Open3D: downsample, floor, outliers, clutter, normals.

This module owns the steps that turn a raw scan's points into the limb's
points with outward normals.  Open3D stays behind this boundary: every
public function takes and returns numpy arrays (mm); Open3D objects live only
inside a function.  It must not decide the device frame or find anatomy.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import open3d as o3d
import trimesh
from scipy import sparse
from scipy.sparse import csgraph
from scipy.spatial import cKDTree

from .params import CleaningParams

__all__ = [
    "Floor",
    "ransac_plane",
    "downsample",
    "estimate_normals",
    "find_floor",
    "outlier_mask",
    "limb_mask",
    "surface_points",
]

log = logging.getLogger(__name__)

# Each retry of downsampling grows the voxel a little beyond the square-root
# estimate, so one retry nearly always suffices.
_VOXEL_GROWTH = 1.05


# Open3D's verbosity would print to stdout from C++; orthofit reports through logging.
o3d.utility.set_verbosity_level(o3d.utility.VerbosityLevel.Error)


@dataclass(frozen=True)
class Floor:
    """A floor or platform plane found in a scan.

    Attributes
    ----------
    normal : (3,) float, unit; points from the floor towards the limb
    point : (3,) float, mm; a point on the plane
    inliers : (n,) bool; points within the inlier distance of the plane
    """

    normal: np.ndarray
    point: np.ndarray
    inliers: np.ndarray

    def height(self, points: np.ndarray) -> np.ndarray:
        """Signed height of ``points`` (n, 3) above the plane, mm."""
        return (points - self.point) @ self.normal


def _cloud(points: np.ndarray, normals: np.ndarray | None = None) -> o3d.geometry.PointCloud:
    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(np.ascontiguousarray(points)))
    if normals is not None:
        cloud.normals = o3d.utility.Vector3dVector(np.ascontiguousarray(normals))
    return cloud


def surface_points(vertices: np.ndarray, faces: np.ndarray, spacing_mm: float,
                   *, seed: int) -> np.ndarray:
    """Points on a scan mesh at about ``spacing_mm`` apart, vertices included.

    A coarse scan mesh has too few vertices to stand for its surface; seeded
    area-weighted samples (``trimesh.sample.sample_surface``) are added so
    that every triangle is represented.

    Parameters
    ----------
    vertices : (n, 3) float, mm
    faces : (m, 3) int
    spacing_mm : target distance between neighbouring points
    """
    mesh = trimesh.Trimesh(vertices, faces, process=False)
    # STL repeats each vertex once per triangle: count distinct positions.
    distinct = len(np.unique(vertices[np.unique(faces)], axis=0))
    count = int(mesh.area / spacing_mm**2) - distinct
    if count <= 0:
        return vertices
    samples, _ = trimesh.sample.sample_surface(mesh, count, seed=np.random.default_rng(seed))
    return np.vstack([vertices, samples])


def downsample(points: np.ndarray, params: CleaningParams) -> tuple[np.ndarray, float]:
    """Voxel-average ``points`` (n, 3) mm to at most ``params.max_points``.

    Returns the downsampled points and the voxel size used (mm).  The voxel
    grows from ``params.min_voxel_mm`` until the count fits, so every later
    step runs on a bounded number of points whatever the scanner's density.
    """
    voxel = params.min_voxel_mm
    cloud = _cloud(points)
    down = cloud.voxel_down_sample(voxel)
    while len(down.points) > params.max_points:
        # A scanned surface's point count falls with the square of the voxel.
        voxel *= _VOXEL_GROWTH * np.sqrt(len(down.points) / params.max_points)
        down = cloud.voxel_down_sample(voxel)
    out = np.asarray(down.points)
    # Open3D's output order follows its hash map; sort so results never depend on it.
    order = np.lexsort(out.T[::-1])
    return out[order], voxel


def estimate_normals(points: np.ndarray, params: CleaningParams) -> np.ndarray:
    """Unoriented unit normals (n, 3) of ``points`` by local plane fits."""
    cloud = _cloud(points)
    cloud.estimate_normals(o3d.geometry.KDTreeSearchParamKNN(params.normal_neighbors))
    return np.asarray(cloud.normals).copy()


#: RANSAC stops once a better plane would be missed with at most this chance.
_RANSAC_MISS = 1e-8
_RANSAC_BATCH = 64


def ransac_plane(points: np.ndarray, threshold: float, iterations: int, *,
                 seed: int) -> tuple[np.ndarray, float]:
    """The plane (unit normal, offset: n·p + offset = 0) with the most points within
    ``threshold``, by RANSAC on triples drawn by a seeded generator.

    Open3D's ``segment_plane`` scores its iterations in parallel and stops
    when a shared counter passes a limit, so which planes it scores depends
    on thread timing, and the same seed can give another floor under load.
    Here the triples are drawn up front, scored in batches in order, and
    the search stops after the first batch that makes a better plane
    unlikely (a rule on the data alone); ties go to the smaller error.
    """
    rng = np.random.default_rng(seed)
    triples = points[rng.integers(0, len(points), size=(iterations, 3))]
    normals = np.cross(triples[:, 1] - triples[:, 0], triples[:, 2] - triples[:, 0])
    lengths = np.linalg.norm(normals, axis=1)
    usable = lengths > 1e-9
    normals = normals[usable] / lengths[usable, None]
    offsets = -np.einsum("ij,ij->i", normals, triples[usable, 0])
    counts = np.zeros(len(normals), dtype=np.int64)
    errors = np.zeros(len(normals))
    scored = len(normals)
    for lo in range(0, len(normals), _RANSAC_BATCH):
        hi = min(lo + _RANSAC_BATCH, len(normals))
        distance = np.abs(points @ normals[lo:hi].T + offsets[lo:hi])
        inside = distance < threshold
        counts[lo:hi] = inside.sum(axis=0)
        errors[lo:hi] = np.where(inside, distance, 0.0).sum(axis=0)
        share = counts[:hi].max() / len(points)
        if share >= 1.0 or (share > 0 and hi >= np.log(_RANSAC_MISS) / np.log1p(-share ** 3)):
            scored = hi
            break
    best = np.lexsort((errors[:scored], -counts[:scored]))[0]
    return normals[best], float(offsets[best])


def find_floor(points: np.ndarray, normals: np.ndarray, up_candidates: np.ndarray,
               params: CleaningParams, *, seed: int) -> Floor | None:
    """Find the floor or platform top under the limb by seeded RANSAC.

    Each candidate up direction is tried on the points whose normal lies
    within ``params.floor_max_tilt_deg`` of it; a plane counts as a floor only
    if it holds enough points and nearly everything else lies above it.

    Parameters
    ----------
    points : (n, 3) float, mm
    normals : (n, 3) float, unit, unoriented
    up_candidates : (k, 3) float, unit directions the floor normal may have
    seed : seed of the RANSAC

    Returns
    -------
    The floor reaching furthest beyond the limb, or None when the scan has none.
    """
    cos_tilt = np.cos(np.radians(params.floor_max_tilt_deg))
    best: Floor | None = None
    best_beyond = 0.0
    for up in np.atleast_2d(up_candidates):
        facing = np.abs(normals @ up) >= cos_tilt
        if facing.sum() < params.floor_min_share * len(points):
            continue
        normal, offset = ransac_plane(points[facing], params.floor_distance_mm,
                                      params.ransac_iterations, seed=seed)
        if normal @ up < 0:
            normal, offset = -normal, -offset
        if normal @ up < cos_tilt:
            continue
        height = points @ normal + offset
        inliers = np.abs(height) <= params.floor_distance_mm
        # Refit on all inliers by least squares: steadier than the RANSAC sample.
        normal, point = _fit_plane(points[inliers], normal)
        height = (points - point) @ normal
        inliers = np.abs(height) <= params.floor_distance_mm
        rest = height[~inliers]
        if inliers.mean() < params.floor_min_share or rest.size == 0:
            continue
        if (rest > 0).mean() < params.floor_min_share_above:
            continue
        # A floor reaches beyond the limb standing on it; the flat cut rim of
        # an open scan, or the pads of a seen sole, do not.
        near = (height > params.floor_distance_mm) & (height < params.floor_limb_band_mm)
        beyond = _area_beyond(points[inliers], points[near], normal, params)
        if beyond < params.floor_min_beyond_mm2:
            continue
        # Of several planes, the floor reaches furthest beyond the limb (a
        # plane along the shin holds many points, all of them beside the leg).
        if best is None or beyond > best_beyond:
            best, best_beyond = Floor(normal=normal, point=point, inliers=inliers), beyond
    return best


def _area_beyond(plane_points: np.ndarray, limb_points: np.ndarray, normal: np.ndarray,
                 params: CleaningParams) -> float:
    """Area (mm²) of a plane's points that lies beyond the limb's footprint on it.

    Points are snapped to cells of ``params.floor_cell_mm`` on the plane; the
    limb's footprint (the limb's points just above the plane) is widened by
    ``params.floor_beyond_mm``.  Other feet or objects standing on the floor
    widen the footprint but leave the floor around them.
    """
    if len(plane_points) == 0:
        return 0.0
    basis = np.linalg.svd(normal[None, :])[2][1:]
    cell = params.floor_cell_mm

    def cells(points: np.ndarray) -> np.ndarray:
        return np.floor(points @ basis.T / cell).astype(np.int64)

    floor = np.unique(cells(plane_points), axis=0)
    if len(limb_points) == 0:
        return float(len(floor) * cell * cell)
    limb = np.unique(cells(limb_points), axis=0)
    reach = int(np.ceil(params.floor_beyond_mm / cell))
    near = cKDTree(limb).query(floor, distance_upper_bound=reach + 0.5)[0]
    return float(np.isinf(near).sum() * cell * cell)


def _fit_plane(points: np.ndarray, towards: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    centre = points.mean(axis=0)
    _, _, vt = np.linalg.svd(points - centre, full_matrices=False)
    normal = vt[2] if vt[2] @ towards > 0 else -vt[2]
    return normal, centre


def outlier_mask(points: np.ndarray, params: CleaningParams) -> np.ndarray:
    """True for points kept by Open3D's statistical outlier removal."""
    _, kept = _cloud(points).remove_statistical_outlier(
        nb_neighbors=params.outlier_neighbors, std_ratio=params.outlier_std_ratio)
    mask = np.zeros(len(points), dtype=bool)
    mask[np.asarray(kept, dtype=np.int64)] = True
    return mask


def limb_mask(points: np.ndarray, normals: np.ndarray, voxel_mm: float,
              params: CleaningParams) -> tuple[np.ndarray, int]:
    """True for the points of the limb: the largest piece of connected surface.

    Clutter is what is not connected to the limb.  Two points are joined
    when they lie close along one surface: within ``params.link_voxels``
    voxels (or that many times the scan's own spacing, where it is sparser),
    and with the chord between them lying in both points' tangent planes
    (within ``params.link_tangent_cos``).  Sparse stripes of a sweep across
    the forefoot stay joined to the limb, and a hand or the other foot a few
    millimetres off the skin, facing it across the gap, does not.  Points
    nearer than ``params.link_always_voxels`` voxels always join.

    Returns the mask and the number of pieces found (the limb, clutter
    objects, stray groups).

    Parameters
    ----------
    points : (n, 3) float, mm
    normals : (n, 3) float, unit, unoriented
    """
    if len(points) == 0:
        return np.zeros(0, dtype=bool), 0
    tree = cKDTree(points)
    spacing = np.percentile(tree.query(points, k=2)[0][:, 1], params.cluster_spacing_percentile)
    reach = params.link_voxels * max(voxel_mm, float(spacing))
    dist, idx = tree.query(points, k=params.link_neighbors + 1, distance_upper_bound=reach)
    rows = np.repeat(np.arange(len(points)), params.link_neighbors)
    dist, idx = dist[:, 1:].ravel(), idx[:, 1:].ravel()
    found = np.isfinite(dist)
    rows, idx, dist = rows[found], idx[found], dist[found]
    chord = (points[idx] - points[rows]) / np.maximum(dist, 1e-12)[:, None]
    along = ((np.abs(np.einsum("ij,ij->i", chord, normals[rows])) < params.link_tangent_cos)
             & (np.abs(np.einsum("ij,ij->i", chord, normals[idx])) < params.link_tangent_cos))
    joined = along | (dist < params.link_always_voxels * voxel_mm)
    graph = sparse.coo_matrix((np.ones(int(joined.sum())), (rows[joined], idx[joined])),
                              shape=(len(points), len(points)))
    count, labels = csgraph.connected_components(graph, directed=False)
    sizes = np.bincount(labels)
    return labels == int(np.argmax(sizes)), int(count)
