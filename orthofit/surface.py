"""Closing the limb: outward normals and one watertight surface.

This module owns the limb's solid.  Normals point away from the limb's
centre line (foot and leg are tubes around it).  The scanned points with
outward normals define a signed distance (an implicit moving-least-squares
surface: the weighted mean distance to the neighbours' tangent planes).
Intersecting it with the half-space above the floor closes the sole flat on
z = 0, and with the half-space below the cut top closes the leg flat;
marching cubes (scikit-image) on a padded grid gives a closed surface with
consistent winding.  Vertices far from every scanned point are flagged as
filled in.  Everything is in the level frame (z up, z = 0 on the floor), mm.
It must not find anatomy or read files.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import trimesh
from scipy import ndimage
from scipy.spatial import cKDTree
from skimage.measure import marching_cubes

from .errors import CannotServeError
from .params import SurfaceParams

__all__ = ["ClosedLimb", "Skeleton", "cut_height", "limb_skeleton", "orient_normals",
           "implicit_distance", "close_limb"]

log = logging.getLogger(__name__)

# The implicit surface is evaluated on a grid this many times coarser first, then
# finely only near the surface: closing time follows the area, not the volume.
_COARSE_FACTOR = 3
# The coarse pass only needs the sign and a rough distance: few neighbours.
_COARSE_NEIGHBORS = 4
# Fine nodes are evaluated where the coarse field is within this many coarse
# cells of the surface (trilinear error of a smooth limb stays well inside).
_BAND_COARSE_CELLS = 0.75
# Coarse nodes with no scanned point within this many cells are far nodes.
_FAR_COARSE_CELLS = 3
# Grid cells of padding around the limb so the surface never touches the grid edge.
_PAD_CELLS = 3
# The flat top cut is searched in the top share of the scan's height.
_TOP_SEARCH_SHARE = 0.3
# Angular bins a horizontal section must fill all round to count as complete.
_RING_BINS = 24
# Neighbours over which normal orientation spreads.
_ORIENT_NEIGHBORS = 8
# Sections with fewer points do not place a centre-line point.
_MIN_SECTION_POINTS = 10


@dataclass(frozen=True)
class ClosedLimb:
    """The watertight limb surface.

    Attributes
    ----------
    mesh : trimesh.Trimesh, mm, outward winding, watertight
    filled : (n_vertices,) bool; True where the surface was filled in, not scanned
    top_z : float, mm; height of the flat cut at the top of the leg
    """

    mesh: trimesh.Trimesh
    filled: np.ndarray
    top_z: float


def cut_height(points: np.ndarray, params: SurfaceParams) -> float:
    """Height (mm) of the flat cut that closes the open top of the scan.

    The open top of a scan is ragged or slanted; the cut goes below the
    highest horizontal section whose outline is complete all round, so the
    leg is closed by a flat cap and not left open on its low side.
    """
    z = points[:, 2]
    top = float(z.max())
    if top <= 4 * params.grid_mm:
        raise CannotServeError("the scan holds no limb above the floor; "
                               "scan the foot and leg again")
    level = top
    while level > top * (1 - _TOP_SEARCH_SHARE):
        ring = points[np.abs(z - level) <= params.grid_mm]
        if len(ring) >= _RING_BINS and _complete_ring(ring[:, :2]):
            break
        level -= params.grid_mm
    return level - params.top_trim_mm


def _complete_ring(xy: np.ndarray) -> bool:
    angles = np.arctan2(*(xy - xy.mean(axis=0)).T[::-1])
    bins = np.floor((angles + np.pi) / (2 * np.pi) * _RING_BINS).astype(int)
    return np.unique(np.clip(bins, 0, _RING_BINS - 1)).size == _RING_BINS


@dataclass(frozen=True)
class Skeleton:
    """The limb's centre lines in the device frame (mm).

    Points below ``split_z`` belong to the foot (centre line ``foot``), points
    above to the leg (``leg``, its axis carried down to ``split_z``).
    """

    foot: np.ndarray
    leg: np.ndarray
    split_z: float


def limb_skeleton(points: np.ndarray, foot_length: float, params: SurfaceParams) -> Skeleton:
    """Centre lines of a limb in the device frame.

    The foot's runs through the centroids of sections across its length
    (below ``params.skeleton_foot_height`` foot lengths), stopping short of
    heel and toes; the leg's through the centroids of horizontal sections
    above ``params.skeleton_leg_height``, carried straight down through the
    ankle to ``params.skeleton_split`` so the ankle's bumps point away from it.
    """
    def centroids(pts: np.ndarray, axis: int) -> np.ndarray:
        if len(pts) == 0:
            return np.empty((0, 3))
        key = np.floor(pts[:, axis] / params.skeleton_step_mm).astype(np.int64)
        order = np.argsort(key, kind="stable")
        key, pts = key[order], pts[order]
        cuts = np.flatnonzero(np.diff(key)) + 1
        groups = [g.mean(axis=0) for g in np.split(pts, cuts) if len(g) >= _MIN_SECTION_POINTS]
        return np.array(groups).reshape(-1, 3)

    x, z = points[:, 0], points[:, 2]
    fl = foot_length
    end = params.skeleton_end_share * fl
    foot = centroids(points[(z < params.skeleton_foot_height * fl)
                            & (x > end) & (x < fl - end)], 0)
    leg = centroids(points[z > params.skeleton_leg_height * fl], 2)
    split = params.skeleton_split * fl
    if len(leg) >= 2:
        centre = leg.mean(axis=0)
        _, _, vt = np.linalg.svd(leg - centre, full_matrices=False)
        direction = vt[0] if vt[0][2] > 0 else -vt[0]
        heights = np.arange(split, leg[:, 2].min(), params.skeleton_step_mm)
        carried = centre + np.outer((heights - centre[2]) / direction[2], direction)
        leg = np.vstack([carried, leg])
    if len(foot) == 0 and len(leg) == 0:
        raise CannotServeError("the scan holds no limb that could be closed; scan it again")
    if len(foot) == 0:
        foot = leg
    if len(leg) == 0:
        leg = foot
    return Skeleton(foot=foot, leg=leg, split_z=split)


def orient_normals(points: np.ndarray, normals: np.ndarray, skeleton: Skeleton,
                   params: SurfaceParams) -> np.ndarray:
    """Flip unoriented unit ``normals`` (n, 3) so each points out of the limb.

    A limb is a tube around its centre lines (see :func:`limb_skeleton`):
    where a normal clearly lines up with the direction away from the nearest
    centre point, that direction orients it.  Where it does not, orientation
    spreads from oriented neighbours to their neighbours, keeping adjacent
    normals in agreement.
    """
    in_leg = points[:, 2] >= skeleton.split_z
    away = np.empty_like(points)
    for part, centre in ((in_leg, skeleton.leg), (~in_leg, skeleton.foot)):
        if part.any():
            _, nearest = cKDTree(centre).query(points[part])
            away[part] = points[part] - centre[nearest]
    away /= np.maximum(np.linalg.norm(away, axis=1, keepdims=True), 1e-9)
    cos = np.einsum("ij,ij->i", normals, away)
    oriented = normals * np.where(cos >= 0, 1.0, -1.0)[:, None]
    decided = np.abs(cos) >= params.orient_confident_cos
    if decided.all():
        return oriented
    _, neighbours = cKDTree(points).query(points, k=_ORIENT_NEIGHBORS + 1)
    neighbours = neighbours[:, 1:]
    while not decided.all():
        open_ = np.flatnonzero(~decided)
        nb = neighbours[open_]
        weight = decided[nb].astype(float)
        votes = np.einsum("ij,ikj->ik", normals[open_], oriented[nb]) * weight
        reached = weight.sum(axis=1) > 0
        if not reached.any():
            break  # islands with no oriented neighbour keep the centre-line sign
        agree = np.where(votes[reached].sum(axis=1) >= 0, 1.0, -1.0)
        oriented[open_[reached]] = normals[open_[reached]] * agree[:, None]
        decided[open_[reached]] = True
    return oriented


def implicit_distance(query: np.ndarray, tree: cKDTree, normals: np.ndarray, *,
                      neighbors: int, bandwidth: float,
                      reach: float = np.inf) -> np.ndarray:
    """Signed distance (mm) of ``query`` (q, 3) to the surface of oriented points.

    Negative inside.  Each neighbour contributes its tangent-plane distance,
    weighted by a Gaussian of its distance relative to the nearest neighbour,
    so the weights never all vanish far from the surface.  Query points with
    no scanned point within ``reach`` mm get NaN (the search stops early there).

    Parameters
    ----------
    tree : cKDTree over the scanned points (n, 3), mm
    normals : (n, 3) float, unit, outward
    """
    dist, idx = tree.query(query, k=neighbors, distance_upper_bound=reach, workers=-1)
    found = np.isfinite(dist)
    idx = np.where(found, idx, 0)
    nearest = np.where(found[:, :1], dist[:, :1], 0.0)
    weights = np.where(found, np.exp(-((np.where(found, dist, 0.0) ** 2) - nearest**2)
                                     / bandwidth**2), 0.0)
    offset = query[:, None, :] - tree.data[idx]
    plane = np.einsum("qkj,qkj->qk", offset, normals[idx])
    total = weights.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(found[:, 0], np.sum(weights * plane, axis=1) / total, np.nan)


def close_limb(points: np.ndarray, normals: np.ndarray, top_z: float,
               params: SurfaceParams) -> ClosedLimb:
    """Close the scanned limb into one watertight surface.

    Parameters
    ----------
    points : (n, 3) float, mm, z up with the floor (support plane) at z = 0
    normals : (n, 3) float, unit, outward (see :func:`orient_normals`)
    top_z : height of the flat cut at the top (see :func:`cut_height`)
    params : grid step, neighbourhood and fill tolerance

    Raises
    ------
    CannotServeError
        When no closed surface can be formed.
    """
    tree = cKDTree(points)
    step = params.grid_mm
    coarse = step * _COARSE_FACTOR
    lo = points.min(axis=0) - _PAD_CELLS * coarse
    hi = points.max(axis=0) + _PAD_CELLS * coarse
    # Grid planes sit half a step off z = 0, so no node lies on the floor plane.
    lo[2] = -(_PAD_CELLS * _COARSE_FACTOR + 0.5) * step
    hi[2] = top_z + _PAD_CELLS * coarse
    shape = np.ceil((hi - lo) / coarse).astype(int) + 1
    caxes = [lo[i] + coarse * np.arange(shape[i]) for i in range(3)]
    cvals = _coarse_field(_grid_points(caxes), shape, tree, normals, top_z,
                          coarse=coarse, bandwidth=step)
    # Fine pass only where the coarse field says the surface may be near.
    fine_shape = _COARSE_FACTOR * (shape - 1) + 1
    volume = ndimage.zoom(cvals, fine_shape / shape, order=1, grid_mode=False)
    faxes = [lo[i] + step * np.arange(volume.shape[i]) for i in range(3)]
    flat = volume.reshape(-1)
    near = np.flatnonzero(np.abs(flat) < _BAND_COARSE_CELLS * coarse)
    fine = _closed(_grid_points(faxes, near), top_z,
                   implicit_distance(_grid_points(faxes, near), tree, normals,
                                     neighbors=params.neighbors, bandwidth=step))
    flat[near] = np.where(np.isnan(fine), flat[near], fine)
    flat[flat == 0.0] = np.finfo(np.float64).tiny
    # The grid's outer faces are outside, whatever the field says.
    for axis in range(3):
        np.moveaxis(volume, axis, 0)[[0, -1]] = coarse
    if volume.min() >= 0:
        raise CannotServeError("no closed limb surface could be formed from the scan; "
                               "scan the limb again with fewer gaps")
    verts, faces, _, _ = marching_cubes(volume, level=0.0, spacing=(step, step, step))
    verts += lo
    mesh = _largest_body(trimesh.Trimesh(verts, faces, process=True))
    if mesh.volume < 0:
        mesh.invert()
    gap, _ = tree.query(mesh.vertices, distance_upper_bound=params.filled_distance_mm)
    filled = ~np.isfinite(gap)
    log.info("closed limb: %d vertices (%d filled), watertight=%s",
             len(mesh.vertices), int(filled.sum()), mesh.is_watertight)
    return ClosedLimb(mesh=mesh, filled=filled, top_z=top_z)


def _closed(q: np.ndarray, top_z: float, distance: np.ndarray) -> np.ndarray:
    """Intersect the limb with the half-spaces above the floor and below the top cut."""
    return np.maximum(distance, np.maximum(-q[:, 2], q[:, 2] - top_z))


def _coarse_field(nodes: np.ndarray, shape: np.ndarray, tree: cKDTree, normals: np.ndarray,
                  top_z: float, *, coarse: float, bandwidth: float) -> np.ndarray:
    """Signed distance on the coarse grid (shape), mm.

    Nodes near the scan get the implicit distance.  Far nodes (none of the
    scan within a few cells) fall into regions walled off by the near nodes
    and the closing planes; each region takes the sign its bordering near
    nodes agree on, and a magnitude from the distance transform.
    """
    reach = _FAR_COARSE_CELLS * coarse
    near_val = implicit_distance(nodes, tree, normals, neighbors=_COARSE_NEIGHBORS,
                                 bandwidth=bandwidth, reach=reach)
    values = _closed(nodes, top_z, np.nan_to_num(near_val, nan=reach)).reshape(shape)
    clipped = (np.maximum(-nodes[:, 2], nodes[:, 2] - top_z) > 0).reshape(shape)
    scanned = ~np.isnan(near_val).reshape(shape) & ~clipped
    far = ~scanned & ~clipped
    if not far.any():
        return values
    # Only nodes near the scan vote: the closing planes say nothing of inside.
    distance, nearest = ndimage.distance_transform_edt(~scanned, return_indices=True)
    nearest_sign = np.sign(values[tuple(nearest)])
    regions, count = ndimage.label(far)
    votes = ndimage.sum_labels(nearest_sign, regions, index=np.arange(1, count + 1))
    region_sign = np.concatenate([[1.0], np.where(votes < 0, -1.0, 1.0)])
    values[far] = region_sign[regions[far]] * (reach + coarse * distance[far])
    return values


def _grid_points(axes: list[np.ndarray], flat_index: np.ndarray | None = None) -> np.ndarray:
    """Coordinates (q, 3) of grid nodes, all or those at ``flat_index`` (C order)."""
    shape = tuple(len(a) for a in axes)
    if flat_index is None:
        flat_index = np.arange(int(np.prod(shape)))
    ijk = np.unravel_index(flat_index, shape)
    return np.stack([axes[i][ijk[i]] for i in range(3)], axis=1)


def _largest_body(mesh: trimesh.Trimesh) -> trimesh.Trimesh:
    """Keep the component of largest enclosed volume (drops stray blobs)."""
    parts = mesh.split(only_watertight=False)
    if len(parts) <= 1:
        return mesh
    with np.errstate(invalid="ignore", divide="ignore"):
        volumes = [abs(p.volume) for p in parts]
    return parts[int(np.argmax(volumes))]
