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
import open3d.core as o3c
import trimesh
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation

from .crossings import crossing_points
from .prescription import Material, Printer
from .shell import Field, LimbDistance, raycasting_scene
from .surface import genus

__all__ = ["CheckParams", "Clearance", "run_checks", "solid_checks", "wall_thickness",
           "clearance", "openings", "describe_location", "printer_fit"]

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
    # Wall thickness is measured on the outer face more than this many
    # thicknesses from a trim edge (issue #3).
    contact_edge_thicknesses: float = 2.0
    # The inner face: where the shell's normal looks at the limb within
    # acos(0.5) = 60 degrees (the rounded rim turns away) [eng].
    inner_face_cos: float = 0.5
    # Points on the limb from which the hole check looks for the wall (one per
    # ~30 mm² of an adult leg), its step along the way out, and how near the
    # solid (share of the thickness) the way must pass [eng].
    hole_samples: int = 5_000
    hole_tolerance_share: float = 0.25
    hole_step_mm: float = 0.5
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


@dataclass
class Clearance:
    """The gap (mm) between the device's inner face and the limb, and where it was taken.

    ``gaps`` are beyond the clearance prescribed at each point (reliefs,
    growth, the edge flare, supports' intended indentation), so each compares
    with the plain clearance; ``filled`` says which lie over skin the closing
    filled in rather than scanned; ``points`` are the inner face's samples.
    """

    gaps: np.ndarray
    filled: np.ndarray
    points: np.ndarray


def clearance(shell: trimesh.Trimesh, distance: LimbDistance, *, seed: int = 0,
              params: CheckParams = CheckParams(), prescribed: Field | None = None,
              filled: np.ndarray | None = None) -> Clearance:
    """Distance (mm) from the device's inner face to the limb, over the whole contact region.

    The contact region is the inner face: every sample of the shell whose
    outward normal looks at the limb (against the limb's own normal at the
    nearest point, within ``params.inner_face_cos``), up to its rim.  No part
    of it is left out, filled-in skin included: a wall within the prescribed
    clearance of skin the scanner never saw fails as it does over scanned skin.

    Parameters
    ----------
    prescribed : field of the clearance prescribed beyond the plain one (mm)
    filled : (limb vertices,) bool; the limb's filled-in vertices
    """
    points, face = trimesh.sample.sample_surface(shell, params.samples,
                                                 seed=np.random.default_rng(seed + 1))
    found = distance.closest(points)
    facing = -np.einsum("ij,ij->i", shell.face_normals[face], found.normal)
    inner = facing > params.inner_face_cos
    points = points[inner]
    gaps = found.signed[inner] - (prescribed(points) if prescribed is not None else 0.0)
    over_filled = (filled[distance.faces[found.face[inner]]].mean(axis=1) > 0.5
                   if filled is not None else np.zeros(len(points), dtype=bool))
    return Clearance(gaps=gaps, filled=over_filled, points=points)


def _clearance_check(found: Clearance, clearance_mm: float, params: CheckParams,
                     landmarks: dict | None) -> dict[str, Any]:
    """The ``clearance`` row: the whole inner face, its scanned and filled-in parts apart."""
    gaps = found.gaps
    median = float(np.median(gaps))
    least = int(np.argmin(gaps))
    value = {"min": _r(gaps.min()), "median": _r(median)}
    for part, mask in (("scanned", ~found.filled), ("filled_in", found.filled)):
        value[part] = ({"share": _r(mask.mean()), "min": _r(gaps[mask].min()),
                        "median": _r(np.median(gaps[mask]))} if mask.any()
                       else {"share": 0.0, "min": None, "median": None})
    passed = (gaps.min() > -params.penetration_tolerance_mm
              and abs(median - clearance_mm) <= params.clearance_median_tolerance_mm)
    extra = {}
    if landmarks is not None:
        extra["where"] = describe_location(found.points[least], landmarks)
    within = params.clearance_median_tolerance_mm
    return _check(value, {"min_above": -params.penetration_tolerance_mm,
                          "median_within": [_r(clearance_mm - within), _r(clearance_mm + within)]},
                  passed, **extra)


def openings(shell: trimesh.Trimesh, limb: trimesh.Trimesh, distance: LimbDistance,
             covers: Field, *, intended: int, clearance_mm: float, thickness_mm: float,
             reach_mm: float, behind_mm: float = 0.0, seed: int = 0,
             params: CheckParams = CheckParams()) -> dict[str, Any]:
    """The ``no_unintended_holes`` row: the shell's genus against its intended openings,
    and the wall looked for wherever it should cover the limb.

    Every through-opening (a strap slot, a vent) adds one to a solid's genus,
    so the genus must equal ``intended``.  A gap at an edge (a notch, a
    missing patch of footplate) leaves the genus alone, so the wall is looked
    for too: from seeded points on the limb, paths go out along the limb
    distance's gradient (so they follow creases, where a straight ray would
    graze the wall), from ``behind_mm`` inside the skin (supports press the
    wall in) to ``reach_mm`` out.  Where ``covers`` is negative all through
    the wall's depth (``clearance_mm`` to ``clearance_mm + thickness_mm``),
    the path must pass through the solid.  The skin behind the paths that
    do not is the holes' area.
    """
    handles = genus(shell)
    samples, _ = trimesh.sample.sample_surface(limb, params.hole_samples,
                                               seed=np.random.default_rng(seed + 2))
    scene, _ = raycasting_scene(shell)
    steps = np.arange(-behind_mm - params.hole_step_mm, reach_mm + params.hole_step_mm,
                      params.hole_step_mm)
    q = samples.copy()
    gap = np.full(len(q), np.inf)
    along = np.full(len(q), -np.inf)
    for target in steps:
        near = distance.closest(q)
        q = q + _away(q, near) * (target - near.signed)[:, None]
        # The way passes through the wall where it comes within a fraction of
        # the thickness of its surface (inside the wall it is within half).
        gap = np.minimum(gap, scene.compute_distance(o3c.Tensor(q.astype(np.float32))).numpy())
        if clearance_mm <= target <= clearance_mm + thickness_mm:
            along = np.maximum(along, covers(q))
    looked = along < 0
    out = looked & (gap > params.hole_tolerance_share * thickness_mm)
    area = float(out.sum() * limb.area / params.hole_samples)
    value = {"genus": handles, "intended_openings": intended, "looked_at": int(looked.sum()),
             "not_covered": int(out.sum()), "holes_mm2": _r(area, 1)}
    return _check(value, {"genus": intended, "holes_mm2": 0.0},
                  handles == intended and not out.any())


def describe_location(point: np.ndarray, landmarks: dict) -> str:
    """Where ``point`` lies on the limb, named by the nearest landmark.

    >>> describe_location(np.array([10.0, 0, 0]), {"heel": np.zeros(3), "toe_tip": None})
    'by the heel (10 mm from it, 0 mm up)'
    """
    named = {n: np.asarray(p, float) for n, p in landmarks.items() if p is not None}
    if not named:
        return f"at ({point[0]:.0f}, {point[1]:.0f}, {point[2]:.0f}) mm"
    name = min(named, key=lambda n: float(np.linalg.norm(named[n] - point)))
    gap = float(np.linalg.norm(named[name] - point))
    return f"by the {name.replace('_', ' ')} ({gap:.0f} mm from it, {point[2]:.0f} mm up)"


def _limb_direction(distance: LimbDistance, points: np.ndarray) -> np.ndarray:
    """Unit gradient (n, 3) of the limb's distance at ``points``: away from the skin."""
    return _away(points, distance.closest(points))


def _away(points: np.ndarray, found) -> np.ndarray:
    """The limb distance's unit gradient at ``points``, from their closest points."""
    away = points - found.point
    length = np.linalg.norm(away, axis=1, keepdims=True)
    # On the skin itself (within the float32 closest point's rounding) the
    # gradient is the limb's normal.
    return np.where(length > _ON_SKIN_MM, away / np.maximum(length, 1e-12) * np.sign(
        found.signed)[:, None], found.normal)


# Closer than this (mm) to the skin a point is on it: float32's rounding at 1 m.
_ON_SKIN_MM = 1e-3


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
               extra: Field | None = None, prescribed: Field | None = None,
               filled: np.ndarray | None = None, covers: Field | None = None,
               intended_openings: int = 0, reach_extra_mm: float = 0.0,
               behind_mm: float = 0.0, landmarks: dict | None = None) -> dict[str, dict]:
    """The whole check table for a device (and, with ``limb``, its fit).

    ``extra`` is the prescribed extra clearance through the wall's depth
    (reliefs, growth) and ``prescribed`` the clearance prescribed beyond the
    plain one at the inner face (those, the edge flare and the supports'
    intended indentation; ``extra`` when not given).  ``filled`` flags the
    limb's filled-in vertices, so the clearance reports them apart.  With
    ``covers`` (negative where the wall must cover the limb) the shell is
    also checked for holes against its ``intended_openings``; the wall's
    faces lie within ``clearance + thickness + reach_extra_mm`` of the skin
    and its inner face at most ``behind_mm`` inside it.
    ``landmarks`` name where a failing value was found.
    """
    checks = solid_checks(shell, params)
    prescribed = prescribed if prescribed is not None else extra
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
        checks["clearance"] = _clearance_check(
            clearance(shell, distance, seed=seed, params=params, prescribed=prescribed,
                      filled=filled), clearance_mm, params, landmarks)
        if covers is not None:
            checks["no_unintended_holes"] = openings(
                shell, limb, distance, covers, intended=intended_openings,
                clearance_mm=clearance_mm, thickness_mm=thickness_mm,
                reach_mm=clearance_mm + thickness_mm + reach_extra_mm, behind_mm=behind_mm,
                seed=seed, params=params)
    else:
        checks["genus"] = _check(genus(shell), None, True)
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
