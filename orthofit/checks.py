"""Checks a print lab and an orthotist run on a device mesh, with trimesh.

This module owns the check table: each check is ``{value, limit, passed}``
under its name.  Solid checks (watertight, consistent winding, one body,
positive volume, no self-intersection), wall thickness by inward rays from
the outer surface, clearance of the inner surface from the limb over the
contact region, fit in the printer's build volume in some orientation, and
the figures a lab quotes (volume, mass, triangles).  Ray casting runs through
embree (embreex) when trimesh finds it.  Meshes in mm.  It must not build
shells or read files.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import trimesh
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation

from .crossings import crossing_points
from .prescription import Material, Printer
from .shell import Field, LimbDistance

__all__ = ["CheckParams", "run_checks", "solid_checks", "wall_thickness", "clearance",
           "printer_fit"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CheckParams:
    """Limits and sampling of the checks."""

    # p5 of the wall thickness at least this share of the prescription (issue #3).
    thickness_p5_share: float = 0.9
    # Median clearance within this of the prescription (mm, issue #3).
    clearance_median_tolerance_mm: float = 0.5
    # The skin may touch the shell within this much (mm) without counting as
    # penetration: the marching-cubes surface's own error at a 1 mm grid [eng].
    penetration_tolerance_mm: float = 0.1
    # Contact region: inner-surface points more than this many thicknesses
    # from a trim edge (issue #3).
    contact_edge_thicknesses: float = 2.0
    # Sample points for the ray and distance checks [eng].
    samples: int = 50_000
    # Rays start this far inside the surface so they do not hit their own face.
    ray_offset_mm: float = 1e-3


def _check(value: Any, limit: Any, passed: bool, **extra: Any) -> dict[str, Any]:
    return {"value": value, "limit": limit, "passed": bool(passed), **extra}


def _r(x: float, nd: int = 3) -> float:
    return round(float(x), nd)


def solid_checks(mesh: trimesh.Trimesh, params: CheckParams = CheckParams()) -> dict[str, dict]:
    """Watertight, winding, one body, positive volume, no self-intersection."""
    bodies = len(trimesh.graph.connected_components(mesh.face_adjacency,
                                                    nodes=np.arange(len(mesh.faces)),
                                                    min_len=1))
    crossings = self_intersections(mesh, params)
    return {
        "watertight": _check(bool(mesh.is_watertight), True, mesh.is_watertight),
        "winding_consistent": _check(bool(mesh.is_winding_consistent), True,
                                     mesh.is_winding_consistent),
        "single_body": _check(bodies, 1, bodies == 1),
        "positive_volume": _check(_r(mesh.volume / 1000.0), "> 0 cm³", mesh.volume > 0),
        "no_self_intersection": _check(crossings, 0, crossings == 0),
    }


def self_intersections(mesh: trimesh.Trimesh, params: CheckParams = CheckParams()) -> int:
    """How many edges pass through a triangle they do not belong to."""
    return len(crossing_points(mesh))


@dataclass
class _Samples:
    """Points on a shell with their distance to the limb and the rim's whereabouts."""

    points: np.ndarray
    distance: np.ndarray
    to_rim: np.ndarray

    @classmethod
    def of(cls, shell: trimesh.Trimesh, distance: LimbDistance, *, clearance: float,
           thickness: float, seed: int, params: CheckParams,
           extra: Field | None = None) -> "_Samples":
        points, _ = trimesh.sample.sample_surface(shell, params.samples,
                                                  seed=np.random.default_rng(seed))
        # Distance beyond the prescribed extra clearance (reliefs, growth), so
        # that the clearance compares with its own prescription everywhere.
        d = distance(points) - (extra(points) if extra is not None else 0.0)
        # The rim (trim edges) crosses the wall: its points lie between the
        # inner face (d = clearance) and the outer one (d = clearance + thickness).
        low, high = (clearance + share * thickness for share in _RIM_BAND)
        rim = (d > low) & (d < high)
        to_rim = (cKDTree(points[rim]).query(points)[0] if rim.any()
                  else np.full(len(points), np.inf))
        return cls(points, d, to_rim)


# Between these shares of the thickness from the inner face lies the rim.
_RIM_BAND = (0.25, 0.75)


def wall_thickness(shell: trimesh.Trimesh, distance: LimbDistance, *, clearance: float,
                   thickness: float, seed: int = 0, params: CheckParams = CheckParams(),
                   extra: Field | None = None) -> np.ndarray:
    """Wall thickness (mm) at points of the shell's outer surface, by inward rays.

    From outer-surface points away from the trim edges, rays run towards the
    skin (down the limb's distance gradient) to the wall's inner face.
    """
    s = _Samples.of(shell, distance, clearance=clearance, thickness=thickness, seed=seed,
                    params=params, extra=extra)
    outer = (s.distance > clearance + _RIM_BAND[1] * thickness) & (
        s.to_rim > params.contact_edge_thicknesses * thickness)
    inward = -_limb_direction(distance, s.points[outer])
    origin = s.points[outer] + inward * params.ray_offset_mm
    tri, ray, where = shell.ray.intersects_id(origin, inward, multiple_hits=True,
                                              return_locations=True)
    # The wall's inner face faces the skin, along the ray, and lies nearer the
    # skin than the wall's middle; a hit on a face turned the other way, or on
    # the far side of a crease of the outer surface, is not the wall.
    beyond = distance(where) - (extra(where) if extra is not None else 0.0)
    inner_face = (np.einsum("ij,ij->i", shell.face_normals[tri], inward[ray]) > 0) & (
        beyond < clearance + thickness / 2)
    travelled = np.linalg.norm(where - origin[ray], axis=1) + params.ray_offset_mm
    out = np.full(outer.sum(), np.inf)
    np.minimum.at(out, ray[inner_face], travelled[inner_face])
    return out[np.isfinite(out)]


def clearance(shell: trimesh.Trimesh, distance: LimbDistance, *, clearance: float,
              thickness: float, seed: int = 0, params: CheckParams = CheckParams(),
              extra: Field | None = None) -> tuple[np.ndarray, float]:
    """Distance (mm) from the inner surface to the limb over the contact region.

    With ``extra`` (reliefs, growth), the distance beyond the extra clearance
    prescribed at each point, so it compares with the plain clearance.

    Returns the distances and the share of inner-surface points excluded for
    lying within ``contact_edge_thicknesses`` thicknesses of a trim edge.
    """
    s = _Samples.of(shell, distance, clearance=clearance, thickness=thickness, seed=seed + 1,
                    params=params, extra=extra)
    inner = s.distance <= clearance + _RIM_BAND[0] * thickness
    contact = s.to_rim[inner] > params.contact_edge_thicknesses * thickness
    excluded = 1.0 - contact.mean() if contact.size else 1.0
    return s.distance[inner][contact], float(excluded)


def _limb_direction(distance: LimbDistance, points: np.ndarray, step: float = 0.25) -> np.ndarray:
    """Unit gradient (n, 3) of the limb's distance at ``points``: away from the skin."""
    grad = np.zeros_like(points)
    for axis in range(3):
        offset = np.zeros(3)
        offset[axis] = step
        grad[:, axis] = distance(points + offset) - distance(points - offset)
    return grad / np.maximum(np.linalg.norm(grad, axis=1, keepdims=True), 1e-12)


def printer_fit(mesh: trimesh.Trimesh, printer: Printer,
                lay_shank_flat: bool = False) -> dict[str, Any]:
    """Whether the mesh fits the build volume in some orientation, and which.

    Every orientation on a 5 degree grid of turns about the build volume's x,
    then y, then z axis is tried (a tall device often fits only diagonally).
    Of those that fit, the device frame as it is comes first, then the one
    with the widest margin.  With ``lay_shank_flat`` (a leaf spring) the
    orientation whose shank lies closest to the layer plane comes first, so
    that layers run along the spring's neck rather than across it, where they
    would part when it bends.

    ``orientation`` lists the turns in the order they apply; the
    ``shank_to_layers_deg`` beside it is the angle between the device's z axis
    (the shank) and the layer plane: 0 lies flat, 90 stands upright.
    """
    volume = np.asarray(printer.build_volume_mm, dtype=float)
    points = np.asarray(mesh.convex_hull.vertices)
    points = points - points.mean(axis=0)
    angles, rotations = _orientation_grid()
    # Rank every orientation on a few hundred hull vertices (extents from a
    # subset never exceed the true ones), then confirm on all of them.
    subset = points[:: max(1, len(points) // 256)]
    margin, extents = _margins(rotations, subset, volume)
    upright = np.abs(rotations[:, 2, 2])
    if lay_shank_flat:
        # Tilts within 5 degrees of flat count alike; then the widest margin.
        order = np.lexsort((-margin, np.round(upright / np.sin(np.radians(5)))))
    else:
        order = np.concatenate([[0], np.argsort(-margin[1:], kind="stable") + 1])
    order = order[margin[order] >= 0]
    result = {"build_volume_mm": list(printer.build_volume_mm)}
    for i in range(0, len(order), 64):
        batch = order[i:i + 64]
        exact, sizes = _margins(rotations[batch], points, volume)
        hits = np.flatnonzero(exact >= 0)
        if len(hits):
            best, hit = int(batch[hits[0]]), hits[0]
            turns = [{"turn_axis": axis, "turn_deg": float(deg)}
                     for axis, deg in zip("xyz", angles[best]) if deg != 0]
            return {**result, "fits": True,
                    "orientation": turns or [{"turn_axis": "z", "turn_deg": 0.0}],
                    "size_mm": [_r(s, 1) for s in sizes[hit]],
                    "margin_mm": _r(exact[hit], 1),
                    "shank_to_layers_deg": _r(np.degrees(np.arcsin(min(upright[best], 1.0))),
                                              1)}
    best = int(np.argmax(margin))
    exact, sizes = _margins(rotations[best:best + 1], points, volume)
    return {**result, "fits": False, "orientation": None,
            "size_mm": [_r(s, 1) for s in sizes[0]], "shortfall_mm": _r(-exact[0], 1)}


def _margins(rotations: np.ndarray, points: np.ndarray,
             volume: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each rotation's extents of ``points`` and its least margin to ``volume``."""
    extents = np.empty((len(rotations), 3))
    for i in range(0, len(rotations), 4096):
        turned = np.matmul(rotations[i:i + 4096], points.T)
        extents[i:i + 4096] = turned.max(axis=2) - turned.min(axis=2)
    # x and y of the build plate may be swapped: a quarter turn about z.
    footprint = np.sort(extents[:, :2], axis=1)
    margin = np.minimum(np.min(np.sort(volume[:2]) - footprint, axis=1),
                        volume[2] - extents[:, 2])
    return margin, extents


@functools.cache
def _orientation_grid(step_deg: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Turns about x in [0, 180), y in [-180, 180) and z in [0, 90), and their matrices.

    That covers every box the device can fill: a half turn about x is the same
    rotation as other turns about y and z, and half and quarter turns about z
    only swap or flip the build plate's axes.  The unturned frame comes first.
    """
    ax = np.arange(0, 180, step_deg)
    ay = np.concatenate([np.arange(0, 180, step_deg), np.arange(-180, 0, step_deg)])
    az = np.arange(0, 90, step_deg)
    angles = np.stack(np.meshgrid(ax, ay, az, indexing="ij"), axis=-1).reshape(-1, 3)
    return angles, Rotation.from_euler("xyz", angles, degrees=True).as_matrix()


def run_checks(shell: trimesh.Trimesh, limb: trimesh.Trimesh | None, *, clearance_mm: float,
               thickness_mm: float, material: Material, printer: Printer,
               lay_shank_flat: bool = False, seed: int = 0,
               params: CheckParams = CheckParams(),
               extra: Field | None = None) -> dict[str, dict]:
    """The whole check table for a device (and, with ``limb``, its fit).

    ``extra`` is the prescribed extra clearance (reliefs, growth) over space.
    """
    checks = solid_checks(shell, params)
    if limb is not None:
        distance = LimbDistance(limb)
        walls = wall_thickness(shell, distance, clearance=clearance_mm, thickness=thickness_mm,
                               seed=seed, params=params, extra=extra)
        if len(walls):
            p5, median = np.percentile(walls, [5, 50])
            checks["wall_thickness"] = _check(
                {"min": _r(walls.min()), "p5": _r(p5), "median": _r(median)},
                {"p5_at_least": _r(params.thickness_p5_share * thickness_mm),
                 "min_at_least": material.printable_min_wall_mm},
                p5 >= params.thickness_p5_share * thickness_mm
                and walls.min() >= material.printable_min_wall_mm)
        gaps, excluded = clearance(shell, distance, clearance=clearance_mm,
                                   thickness=thickness_mm, seed=seed, params=params, extra=extra)
        if len(gaps):
            median = float(np.median(gaps))
            checks["clearance"] = _check(
                {"min": _r(gaps.min()), "median": _r(median), "excluded_share": _r(excluded)},
                {"min_above": -params.penetration_tolerance_mm,
                 "median_within": [_r(clearance_mm - params.clearance_median_tolerance_mm),
                                   _r(clearance_mm + params.clearance_median_tolerance_mm)]},
                gaps.min() > -params.penetration_tolerance_mm
                and abs(median - clearance_mm) <= params.clearance_median_tolerance_mm)
    fit = printer_fit(shell, printer, lay_shank_flat)
    details = {key: fit[key] for key in ("orientation", "margin_mm", "shank_to_layers_deg",
                                         "shortfall_mm") if key in fit}
    checks["fits_printer"] = _check(fit["size_mm"], fit["build_volume_mm"], fit["fits"],
                                    **details)
    volume_cm3 = shell.volume / 1000.0
    checks["volume_cm3"] = _check(_r(volume_cm3, 2), None, True)
    checks["mass_g"] = _check(_r(volume_cm3 * material.density_g_cm3, 1), None, True)
    checks["triangles"] = _check(int(len(shell.faces)), None, True)
    return checks
