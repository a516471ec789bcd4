"""Closing the limb: one watertight surface from oriented scan points.

This module owns the limb's solid.  The scanned points with outward normals
(``orthofit.normals``) define a signed distance (an implicit moving-least-squares
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
from scipy.spatial import ConvexHull, QhullError, cKDTree
from skimage.measure import marching_cubes

from .errors import CannotServeError
from .params import SurfaceParams

__all__ = ["ClosedLimb", "CutPlane", "cut_height", "cut_plane", "implicit_distance",
           "close_limb", "genus"]

log = logging.getLogger(__name__)

# The implicit surface is evaluated on a grid this many times coarser first, then
# finely only near the surface: closing time follows the area, not the volume.
_COARSE_FACTOR = 3
# The coarse pass only needs the sign and a rough distance: few neighbours.
_COARSE_NEIGHBORS = 4
# Fine nodes are evaluated where the coarse field is within this many coarse
# cells of the surface (trilinear error of a smooth limb stays well inside).
_BAND_COARSE_CELLS = 0.75
# Above the sole band the outline constraint relaxes this fast (mm per mm).
_SOLE_RELAX = 3.0
# Morphological opening of the inside (grid cells): removes fins under ~3 cells thick.
_OPEN_CELLS = 1
# Far from the scan, this many nearest points vote on inside or outside,
# each only if the query lies within acos(0.5) = 60 degrees of its normal line.
_FAR_VOTERS = 16
# ...drawn from every this-many-th scanned point.
_FAR_SUBSAMPLE = 8
_FAR_FACE_ON_COS = 0.5
# Coarse nodes with no scanned point within this many cells are far nodes.
_FAR_COARSE_CELLS = 3
# Gaps of up to this many cells are closed (a ball's radius), and the filled
# field is settled by a Gaussian of this many cells before marching cubes [eng].
_CLOSE_CELLS = 2
_SETTLE_CELLS = 0.5
# Grid cells of padding around the limb so the surface never touches the grid edge.
_PAD_CELLS = 3
# The sole's outline needs this many points near the floor.
_MIN_RING_POINTS = 10
# The flat top cut is searched in the top share of the scan's height.
_TOP_SEARCH_SHARE = 0.3
# Angular bins a section must fill all round to count as complete, but for
# gaps of up to this many bins (45 degrees) [eng].
_RING_BINS = 24
_RING_GAP_BINS = 3


@dataclass(frozen=True)
class CutPlane:
    """The flat cut that closes the open top of the leg.

    point : (3,) mm, a point on the plane
    normal : (3,) unit, pointing up the leg, out of the limb
    """

    point: np.ndarray
    normal: np.ndarray

    def height(self, points: np.ndarray) -> np.ndarray:
        """Signed distance (mm) of ``points`` (n, 3) above the plane."""
        return (points - self.point) @ self.normal


@dataclass(frozen=True)
class ClosedLimb:
    """The watertight limb surface.

    Attributes
    ----------
    mesh : trimesh.Trimesh, mm, outward winding, watertight
    filled : (n_vertices,) bool; True where the surface was filled in, not scanned
    top_z : float, mm; below this height the leg is whole (the cut's lowest point)
    cut : the plane of the flat cut at the top of the leg
    genus : int; the surface's handles (0 for a solid leg)
    """

    mesh: trimesh.Trimesh
    filled: np.ndarray
    top_z: float
    cut: CutPlane | None = None
    genus: int | None = None


def cut_height(points: np.ndarray, params: SurfaceParams) -> float:
    """Height (mm) of a horizontal cut closing the open top of the scan (see :func:`cut_plane`)."""
    plane = cut_plane(points, params)
    return float(plane.point[2])


def cut_plane(points: np.ndarray, params: SurfaceParams,
              up: np.ndarray | None = None) -> CutPlane:
    """The flat cut that closes the open top of the scan.

    The open top of a scan is ragged or slanted; the cut goes below the
    highest section across the leg whose outline is complete all round, so
    the leg is closed by a flat cap and not left open on its low side.  The
    sections are square to ``up``, the scanner's up axis in this frame (its
    crop box is square to it): straight up for a scan levelled on its floor,
    along the leg for a foot hanging in plantarflexion and levelled on its
    sole, so that no more of the leg is cut away than the scan lacks.
    """
    z = points[:, 2]
    if z.max() <= 4 * params.grid_mm:
        raise CannotServeError("the scan holds no limb above the floor; "
                               "scan the foot and leg again")
    axis = np.array([0.0, 0.0, 1.0]) if up is None else np.asarray(up, float)
    axis = axis / np.linalg.norm(axis)
    height = points @ axis
    highest = float(height.max())
    level = highest
    while level > highest - _TOP_SEARCH_SHARE * float(np.ptp(height)):
        ring = points[np.abs(height - level) <= params.grid_mm]
        if len(ring) >= _RING_BINS and _complete_ring(_across(ring, axis)):
            break
        level -= params.grid_mm
    cut = level - params.top_trim_mm
    centre = points[np.abs(height - level) <= params.grid_mm].mean(axis=0)
    point = centre + (cut - centre @ axis) * axis
    return CutPlane(point=point, normal=axis)


def _complete_ring(xy: np.ndarray) -> bool:
    """Whether points (k, 2) go all round their centre: no gap wider than
    ``_RING_GAP_BINS`` angular bins (a hole the closing bridges, such as an
    unseen strip behind the knee)."""
    # Round the middle of the points' extent: their mean drifts away from a gap.
    middle = 0.5 * (xy.min(axis=0) + xy.max(axis=0))
    angles = np.arctan2(*(xy - middle).T[::-1])
    bins = np.floor((angles + np.pi) / (2 * np.pi) * _RING_BINS).astype(int)
    seen = np.zeros(_RING_BINS, dtype=bool)
    seen[np.clip(bins, 0, _RING_BINS - 1)] = True
    if seen.all():
        return True
    if not seen.any():
        return False
    # The longest run of empty bins, going round: gaps between seen bins.
    where = np.flatnonzero(seen)
    gaps = np.diff(np.r_[where, where[0] + _RING_BINS]) - 1
    return bool(gaps.max() <= _RING_GAP_BINS)


def _across(points: np.ndarray, axis: np.ndarray) -> np.ndarray:
    """Coordinates (n, 2) of ``points`` in the plane square to ``axis``."""
    basis = np.linalg.svd(axis[None, :])[2][1:]
    return points @ basis.T


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


def close_limb(points: np.ndarray, normals: np.ndarray, cut: CutPlane | float,
               params: SurfaceParams, foot_length: float | None = None, *,
               sole_unseen: bool = False) -> ClosedLimb:
    """Close the scanned limb into one watertight surface.

    Parameters
    ----------
    points : (n, 3) float, mm, z up with the floor (support plane) at z = 0
    normals : (n, 3) float, unit, outward (see :func:`orient_normals`)
    cut : the flat cut at the top (see :func:`cut_plane`), or its height
    params : grid step, neighbourhood and fill tolerance
    foot_length : mm, with the heel at x = 0 and the toes towards +x; the toes
        (ahead of ``params.toes_from_share`` of it) close down to the floor
    sole_unseen : the scan shows no sole at all (no floor, the sole an open
        hole): no column counts as seen, so every one that begins low closes
        down to z = 0

    Raises
    ------
    CannotServeError
        When no closed surface can be formed.
    """
    if not isinstance(cut, CutPlane):
        cut = CutPlane(point=np.array([0.0, 0.0, float(cut)]), normal=np.array([0.0, 0.0, 1.0]))
    tree = cKDTree(points)
    step = params.grid_mm
    coarse = step * _COARSE_FACTOR
    lo = points.min(axis=0) - _PAD_CELLS * coarse
    hi = points.max(axis=0) + _PAD_CELLS * coarse
    # Grid planes sit half a step off z = 0, so no node lies on the floor plane.
    lo[2] = -(_PAD_CELLS * _COARSE_FACTOR + 0.5) * step
    hi[2] = float(points[cut.height(points) <= 0, 2].max()) + _PAD_CELLS * coarse
    shape = np.ceil((hi - lo) / coarse).astype(int) + 1
    caxes = [lo[i] + coarse * np.arange(shape[i]) for i in range(3)]
    closure = _Closure(points, cut, params)
    cvals = _coarse_field(_grid_points(caxes), shape, tree, normals, closure,
                          coarse=coarse, bandwidth=step)
    # Fine pass only where the coarse field says the surface may be near.
    fine_shape = _COARSE_FACTOR * (shape - 1) + 1
    volume = ndimage.zoom(cvals, fine_shape / shape, order=1, grid_mode=False)
    faxes = [lo[i] + step * np.arange(volume.shape[i]) for i in range(3)]
    flat = volume.reshape(-1)
    near = np.flatnonzero(np.abs(flat) < _BAND_COARSE_CELLS * coarse)
    fine_nodes = _grid_points(faxes, near)
    fine = closure(fine_nodes, implicit_distance(fine_nodes, tree, normals,
                                                 neighbors=params.neighbors, bandwidth=step))
    flat[near] = np.where(np.isnan(fine), flat[near], fine)
    flat[flat == 0.0] = np.finfo(np.float64).tiny
    # Sheets thinner than a limb's thinnest part (a spurious fin where the
    # field's sign wavers beside the scan) are opened away; toes survive.
    inside = volume < 0
    volume[inside & ~ndimage.binary_opening(inside, iterations=_OPEN_CELLS)] = step
    # The limb as the scan's field gives it, before any fill carries it down.
    from_field = volume < 0
    # The sole as the floor held it, where the scanner did not see it.
    volume[_unseen_sole(volume < 0, faxes, points, tree, params, foot_length,
                        sole_unseen, normals)] = -step
    # Voids inside the limb, and crevices reaching up from the unseen sole,
    # are limb: nothing the scanner could not see lies under a foot that
    # stands on the floor.  With the floor counted solid they are enclosed.
    inside = volume < 0
    below_floor = faxes[2] < 0
    solid = inside.copy()
    solid[:, :, below_floor] = True
    enclosed = ndimage.binary_fill_holes(solid) & ~solid
    volume[enclosed] = -step
    # Tunnels are limb too: where the field's sign wavers in a tight crease
    # (behind the heel, between foot and leg) it can leave a handle through
    # the limb, but no cross-section of a foot and leg, along any axis, has a
    # hole.  Holes are filled slice by slice along x, y and z, twice over.
    inside = volume < 0
    solid = inside.copy()
    for axis in (0, 1, 2) * 2:
        plane = np.ones((3, 3, 3), dtype=bool)
        np.moveaxis(plane, axis, 0)[[0, 2]] = False
        solid = ndimage.binary_fill_holes(solid, structure=plane)
    volume[solid & ~inside] = -step
    # Gaps narrower than a few cells (the step where the sole was filled,
    # clefts between toes, a handle left by the field's wavering) are closed
    # too: the closed limb is a solid leg, genus 0, and closing only adds.
    inside = volume < 0
    closed = ndimage.binary_fill_holes(
        ndimage.binary_closing(inside, structure=_ball(_CLOSE_CELLS), border_value=0))
    mesh = _surface_of(np.where(closed & ~inside, -step, volume), lo, step, coarse)
    handles = genus(mesh)
    if handles > 0:
        # A handle left: surface the field made where nothing was scanned (a
        # fin or an arch off the toes of a sparse scan).  Limb whose nearest
        # outside is much nearer than its nearest scanned point goes, if that
        # leaves fewer handles; elsewhere nothing is taken away.
        trimmed = closed & ~_unscanned_surface(closed, faxes, tree, cut, params)
        # The sole was filled down under that surface (the toes close to the
        # floor whatever was seen): where it goes, so does the fill beneath it,
        # or a shelf of sole no scan shows is left in front of the toes.
        trimmed &= ~_filled_under_lost(from_field, trimmed, faxes[2])
        trimmed = ndimage.binary_opening(trimmed, iterations=_OPEN_CELLS)
        again = _surface_of(np.where(trimmed, np.minimum(volume, -step),
                                     np.maximum(volume, step)), lo, step, coarse)
        fewer = genus(again)
        if fewer < handles:
            log.info("closed limb: %d handle(s) of unscanned surface taken off (%.1f cm³)",
                     handles - fewer, float((closed & ~trimmed).sum()) * step ** 3 / 1000.0)
            mesh, handles = again, fewer
    gap, _ = tree.query(mesh.vertices, distance_upper_bound=params.filled_distance_mm)
    filled = ~np.isfinite(gap)
    log.info("closed limb: %d vertices (%d filled), watertight=%s, genus %d",
             len(mesh.vertices), int(filled.sum()), mesh.is_watertight, handles)
    return ClosedLimb(mesh=mesh, filled=filled, top_z=_whole_below(mesh, cut, step), cut=cut,
                      genus=handles)


def _filled_under_lost(field: np.ndarray, kept: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Nodes filled in (not in ``field``) below a column's lowest field node above
    the floor, in the columns where ``kept`` has lost that node: the sole
    carried down under limb that is no longer there."""
    z0 = int(np.flatnonzero(z > 0)[0])
    above = field[:, :, z0:]
    first = z0 + np.argmax(above, axis=2)
    lost = above.any(axis=2) & ~np.take_along_axis(kept, first[:, :, None], axis=2)[:, :, 0]
    below = np.arange(field.shape[2])[None, None, :] < first[:, :, None]
    return lost[:, :, None] & below & ~field


def _unscanned_surface(solid: np.ndarray, axes: list[np.ndarray], tree: cKDTree,
                       cut: CutPlane, params: SurfaceParams) -> np.ndarray:
    """Nodes of ``solid`` whose nearest scanned point is more than ``_SPURIOUS_MM``
    farther than their nearest outside node through the skin: solid no scan
    shows, above the sole (filled on purpose) and away from the cut (closed
    on purpose)."""
    step = params.grid_mm
    # Depth to the outside through the skin only: below the floor and beyond
    # the cut count as limb, the sole and the cap being closed on purpose.
    x, y, z = np.meshgrid(*axes, indexing="ij", sparse=True)
    height = ((x - cut.point[0]) * cut.normal[0] + (y - cut.point[1]) * cut.normal[1]
              + (z - cut.point[2]) * cut.normal[2])
    closed_off = (z < 0) | (height > 0)
    depth = ndimage.distance_transform_edt(solid | closed_off) * step
    ijk = np.argwhere(solid & (depth <= _SPURIOUS_DEPTH_MM))
    nodes = np.stack([axes[a][ijk[:, a]] for a in range(3)], axis=1)
    reach = depth[tuple(ijk.T)] + _SPURIOUS_MM
    nearest, _ = tree.query(nodes, distance_upper_bound=_SPURIOUS_DEPTH_MM + _SPURIOUS_MM)
    spurious = ((nearest > reach) & (nodes[:, 2] > params.sole_band_mm)
                & (cut.height(nodes) < -_SPURIOUS_MM))
    out = np.zeros(solid.shape, dtype=bool)
    out[tuple(ijk[spurious].T)] = True
    return out


# Solid within this depth (mm) of the outside, and more than this farther
# from the scan than from the outside, is the field's invention when it makes
# a handle [eng].
_SPURIOUS_DEPTH_MM = 15.0
_SPURIOUS_MM = 4.0


def _surface_of(volume: np.ndarray, lo: np.ndarray, step: float,
                coarse: float) -> trimesh.Trimesh:
    """The closed limb's mesh from its field on the fine grid (mm, device frame).

    A light blur settles the cells the fills made all-or-nothing, so marching
    cubes meets no ambiguous corners (they would open tunnels) [eng: within
    0.1 mm of the field elsewhere].
    """
    volume = ndimage.gaussian_filter(np.clip(volume, -coarse, coarse), _SETTLE_CELLS)
    # The grid's outer faces are outside, whatever the field says.
    for axis in range(3):
        np.moveaxis(volume, axis, 0)[[0, -1]] = coarse
    if volume.min() >= 0:
        raise CannotServeError("no closed limb surface could be formed from the scan; "
                               "scan the limb again with fewer gaps")
    verts, faces, _, _ = marching_cubes(volume, level=0.0, spacing=(step, step, step))
    mesh = _largest_body(trimesh.Trimesh(verts + lo, faces, process=True))
    if mesh.volume < 0:
        mesh.invert()
    return mesh


def _unseen_sole(inside: np.ndarray, axes: list[np.ndarray], points: np.ndarray,
                 tree: cKDTree, params: SurfaceParams,
                 foot_length: float | None = None,
                 sole_unseen: bool = False,
                 normals: np.ndarray | None = None) -> np.ndarray:
    """Grid nodes to add under the foot: the unseen sole closed flat on z = 0.

    A standing foot's sole touches the floor, and the lowest few millimetres
    of its sides graze it: the scanner sees neither, and the implicit surface
    there can rise in notches, cavities and separate toe lobes that the wall
    would follow up into the sole.  The foot's outline is taken from its
    lowest scanned sections (below ``params.sole_band_mm``), closed across the
    gaps between the toes (``params.toe_gap_mm``) and carried straight down,
    never pulled in: every column where the limb begins low (within
    ``params.sole_bulge_mm`` above the band, so the sides that bulge over the
    lowest sections too) is limb from z = 0 up to where the limb begins,
    unless the scanner saw the skin there facing the floor (the arch of a foot
    hanging free; never when ``sole_unseen``: the lowest skin seen is then the
    sides' rim; and never skin seen facing up or level, given ``normals``: that is
    a wall seen above a notch the field left, as at the back of a heel whose
    lowest few millimetres were not scanned, and what lies under it was not seen).
    Under the toes (ahead of ``params.toes_from_share``
    of ``foot_length``) every column is limb down to the floor, seen or not,
    and between them up to the lower of the neighbouring toes' tops: the toes
    close as one block, with no lobes or clefts for a wall to wrap.  Everything
    filled errs outward, so a device made around it never presses into skin
    that was not seen.

    Returns a boolean mask of the grid's shape.
    """
    step = params.grid_mm
    z = axes[2]
    above = np.flatnonzero(z > 0)
    band = np.flatnonzero((z > 0) & (z <= params.sole_band_mm))
    add = np.zeros(inside.shape, dtype=bool)
    if len(above) == 0 or len(band) == 0:
        return add
    z0 = int(above[0])
    # The outline: the lowest scanned sections and the limb's own lowest nodes.
    low = points[points[:, 2] <= params.sole_band_mm]
    outline = inside[:, :, band].any(axis=2)
    if len(low):
        ij = np.round((low[:, :2] - [axes[0][0], axes[1][0]]) / step).astype(np.int64)
        ok = (ij >= 0).all(axis=1) & (ij < outline.shape).all(axis=1)
        outline[ij[ok, 0], ij[ok, 1]] = True
    reach = max(1, int(round(params.toe_gap_mm / (2 * step))))
    disk = _disk(reach)
    outline = ndimage.binary_fill_holes(ndimage.binary_closing(outline, structure=disk,
                                                               border_value=0))
    column = inside[:, :, z0:]
    has = column.any(axis=2)
    first = z0 + np.argmax(column, axis=2)
    top = z0 + column.shape[2] - 1 - np.argmax(column[:, :, ::-1], axis=2)
    # Columns with limb above: fill up to where it begins, if that skin was not
    # seen and it begins low, inside the outline or outside it (a side that
    # bulges over the lowest sections would leave a crevice under it); never
    # a pillar under what overhangs higher up (a tuberosity, the malleoli).
    begins_low = has & (z[first] <= params.sole_band_mm + params.sole_bulge_mm)
    ii, jj = np.nonzero(begins_low)
    bottom = np.stack([axes[0][ii], axes[1][jj], z[first[ii, jj]]], axis=1)
    gap, nearest = tree.query(bottom, distance_upper_bound=params.filled_distance_mm)
    seen = np.isfinite(gap)
    if normals is not None:
        seen[seen] &= normals[nearest[seen], 2] < 0.0
    seen &= bottom[:, 2] > params.sole_seen_above_mm
    seen &= not sole_unseen
    if foot_length is not None:
        seen &= bottom[:, 0] < params.toes_from_share * foot_length
    for i, j, f in zip(ii[~seen], jj[~seen], first[ii[~seen], jj[~seen]]):
        add[i, j, z0:f] = True
    # Gaps between the toes: up to the lowest neighbouring top.
    tops = np.where(has, top, np.iinfo(np.int64).max)
    lowest_top = ndimage.grey_erosion(tops, footprint=disk, mode="nearest")
    gi, gj = np.nonzero(outline & ~has & (lowest_top < np.iinfo(np.int64).max))
    for i, j in zip(gi, gj):
        add[i, j, z0:lowest_top[i, j] + 1] = True
    return add & ~inside


def _ball(radius: int) -> np.ndarray:
    """A ball of ``radius`` cells as a 3-D structuring element."""
    r = np.arange(-radius, radius + 1)
    return (r[:, None, None] ** 2 + r[None, :, None] ** 2 + r[None, None, :] ** 2) <= radius ** 2


def _disk(radius: int) -> np.ndarray:
    """A disk of ``radius`` cells as a 2-D structuring element."""
    r = np.arange(-radius, radius + 1)
    return (r[:, None] ** 2 + r[None, :] ** 2) <= radius * radius


def genus(mesh: trimesh.Trimesh) -> int:
    """The genus of a closed mesh (its handles and tunnels), from its Euler number.

    >>> genus(trimesh.creation.icosphere()), genus(trimesh.creation.torus(2.0, 0.5))
    (0, 1)
    """
    bodies = len(trimesh.graph.connected_components(mesh.face_adjacency,
                                                    nodes=np.arange(len(mesh.faces)),
                                                    min_len=1))
    return int(round((2 * bodies - mesh.euler_number) / 2))


def _whole_below(mesh: trimesh.Trimesh, cut: CutPlane, step: float) -> float:
    """The height (mm) below which the closed leg is whole: the cut's, or the
    lowest point of a tilted cap."""
    if cut.normal[2] >= 1.0 - 1e-12:
        return float(cut.point[2])
    vertices = np.asarray(mesh.vertices)
    on_cap = np.abs(cut.height(vertices)) <= step
    return float(vertices[on_cap, 2].min()) if on_cap.any() else float(cut.point[2])


class _Closure:
    """The half-spaces and the sole's outline that close the limb.

    Above the floor and below the top cut; and near the floor, inside the
    convex outline of the lowest scanned ring: the sole of a standing scan
    closes down onto the floor plane within the foot's outline, instead of
    the implicit surface spreading along the floor where nothing was seen.
    """

    def __init__(self, points: np.ndarray, cut: CutPlane, params: SurfaceParams):
        self.cut = cut
        self.params = params
        ring = points[points[:, 2] < params.sole_band_mm][:, :2]
        self.edges = None
        if len(ring) >= _MIN_RING_POINTS:
            try:
                self.edges = ConvexHull(ring).equations
            except (QhullError, ValueError):
                self.edges = None

    def __call__(self, q: np.ndarray, distance: np.ndarray) -> np.ndarray:
        closed = np.maximum(distance, np.maximum(-q[:, 2], self.cut.height(q)))
        if self.edges is None:
            return closed
        outline = np.max(q[:, :2] @ self.edges[:, :2].T + self.edges[:, 2], axis=1)
        rise = np.maximum(q[:, 2] - self.params.sole_band_mm, 0.0) * _SOLE_RELAX
        return np.maximum(closed, outline - self.params.grid_mm - rise)


def _coarse_field(nodes: np.ndarray, shape: np.ndarray, tree: cKDTree, normals: np.ndarray,
                  closure: _Closure, *, coarse: float, bandwidth: float) -> np.ndarray:
    """Signed distance on the coarse grid (shape), mm.

    Nodes near the scan get the implicit distance from a bounded search (fast);
    the rest, far from every scanned point, get the sign of their nearest
    tangent planes (slower per node, but few) and a magnitude of at least the
    search radius.
    """
    reach = _FAR_COARSE_CELLS * coarse
    dist = implicit_distance(nodes, tree, normals, neighbors=_COARSE_NEIGHBORS,
                             bandwidth=bandwidth, reach=reach)
    far = np.flatnonzero(np.isnan(dist))
    if far.size:
        # Far from the scan a sparse subset of it votes just as well, and faster.
        sparse = slice(None, None, _FAR_SUBSAMPLE)
        sign = _far_side(nodes[far], cKDTree(tree.data[sparse]), normals[sparse])
        dist[far] = np.where(sign < 0, -reach, reach)
    return closure(nodes, dist).reshape(shape)


def _far_side(query: np.ndarray, tree: cKDTree, normals: np.ndarray) -> np.ndarray:
    """Inside (-1) or outside (+1) for points far from the scan, by vote.

    Each of the nearest scanned points votes with the side of its tangent
    plane the query lies on, if the query lies well off that plane (seen
    face-on, not edge-on); a few badly oriented normals cannot outvote the rest.
    """
    _, idx = tree.query(query, k=_FAR_VOTERS, workers=-1)
    offset = query[:, None, :] - tree.data[idx]
    offset /= np.maximum(np.linalg.norm(offset, axis=2, keepdims=True), 1e-12)
    cos = np.einsum("qkj,qkj->qk", offset, normals[idx])
    votes = np.where(np.abs(cos) >= _FAR_FACE_ON_COS, np.sign(cos), 0.0).sum(axis=1)
    fallback = np.sign(cos.sum(axis=1))
    return np.where(votes != 0, np.sign(votes), np.where(fallback != 0, fallback, 1.0))


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
