"""The leg above the ankle: its axis, girths, the calf, the knee and the fibular head.

This module owns how far up the leg a scan reaches and where the knee is,
from anatomy and never from where the scan stops.  Sections perpendicular to
the shank's axis, as a tape measure goes round the leg, give the girth
profile from the ankle up: the calf's belly is its first clear maximum, the
narrowing below the knee its minimum above that, and the knee's condyles
and the thigh make it rise again.  When that rise is in view the knee is
found, and the fibular head is the lateral prominence just below the joint
line; when the scan stops below it, the knee and the fibular head are
estimated from the calf's height and the foot's length, low rather than
high, and said so.  Device frame, mm.  It must not read files, clean scans,
build surfaces or find the foot.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import trimesh
from scipy.ndimage import median_filter
from scipy.spatial import ConvexHull, QhullError

from .params import AnatomyParams

__all__ = ["EXTENTS", "Leg", "shank_axis", "measure_leg"]

log = logging.getLogger(__name__)

#: How far up the leg a scan reaches, as ``leg_extent`` reports it.
EXTENTS = ("above_knee", "knee", "below_knee", "foot_only")

# Sections along the shank: spacing (mm) and margin above the malleoli and
# below the cut top (mm).
_SECTION_STEP_MM = 2.0
_SECTION_MARGIN_MM = 10.0
# The girth profile is smoothed over this many sections (a running median).
_SMOOTH_SECTIONS = 5


@dataclass
class Leg:
    """What the leg shows: landmarks, measurements and how each was found.

    ``sources`` says of each landmark whether it was ``scanned`` or
    ``estimated``; ``warnings`` are for the clinician.
    """

    extent: str
    landmarks: dict[str, np.ndarray | None] = field(default_factory=dict)
    measurements: dict[str, float | None] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    confidence: dict[str, float] = field(default_factory=dict)
    #: Height of the knee joint line (found or estimated), mm; None without a leg.
    knee_joint_z: float | None = None
    warnings: list[str] = field(default_factory=list)


def shank_axis(points: np.ndarray, fl: float, params: AnatomyParams
               ) -> tuple[np.ndarray | None, np.ndarray | None]:
    """A point on and the upward direction of the shank's axis, from sections above
    the ankle and below the knee (a scan that goes on up the thigh bends there)."""
    z = points[:, 2]
    # Above the instep; a foot-only scan stops lower, so use its upper part.
    start = min(params.shank_axis_from_share * fl, params.shank_axis_top_share * z.max())
    stop = params.shank_axis_to_foot_lengths * fl
    above = points[(z >= start) & (z <= stop)]
    if len(above) < 10:
        return None, None
    which = np.floor(above[:, 2] / params.skeleton_bin_mm).astype(np.int64)
    order = np.argsort(which, kind="stable")
    cuts = np.flatnonzero(np.diff(which[order])) + 1
    centres = np.array([g.mean(axis=0) for g in np.split(above[order], cuts) if len(g) >= 10])
    if len(centres) < 2:
        return None, None
    if np.ptp(centres[:, 2]) < params.shank_axis_min_span_share * fl:
        # Too short a stretch of leg (a foot-only scan) to fit a direction, and
        # its lower sections reach into the instep: the leg stands upright
        # through the highest section.
        return centres[-1], np.array([0.0, 0.0, 1.0])
    return centres.mean(axis=0), _fit_line_direction(centres)


def measure_leg(mesh: trimesh.Trimesh, filled: np.ndarray,
                axis: tuple[np.ndarray, np.ndarray], ankle: dict[str, np.ndarray],
                medial: float, fl: float, top_z: float, params: AnatomyParams) -> Leg:
    """Girths along the shank, the calf, the knee, the fibular head and the ankle angle.

    Parameters
    ----------
    mesh : closed limb, mm, device frame
    filled : (n_vertices,) bool; True where the surface was filled in
    axis : the shank's (point, upward direction), see :func:`shank_axis`
    ankle : the ``medial_malleolus``, ``lateral_malleolus`` and ``ankle_center``
    medial : +1 when the medial side faces +y (a right limb), else -1
    fl : foot length, mm
    top_z : below this height the closed leg is whole, mm
    """
    leg = Leg(extent="below_knee")
    centre = ankle["ankle_center"]
    point, direction = axis
    start = max(ankle["medial_malleolus"][2], ankle["lateral_malleolus"][2]) + _SECTION_MARGIN_MM
    stop = top_z - _SECTION_MARGIN_MM
    lo, hi = (np.array([start, stop]) - point[2]) / direction[2]
    offsets = np.arange(lo, hi, _SECTION_STEP_MM)
    if len(offsets) < 4:
        return leg
    sections = _sections(mesh, point, direction, offsets,
                         keep_within=params.section_radius_share * fl)
    raw = np.array([np.nan if g is None else g for _, g in sections])
    if np.all(np.isnan(raw[: max(1, len(raw) // 2)])):
        return leg
    heights = np.array([np.nan if c is None else c[2] for c, _ in sections])
    girth = _smooth(raw)
    # The ankle's narrowest section lies in the lower half of the shank.
    ankle_i = int(np.nanargmin(girth[: max(1, len(girth) // 2)]))
    peak = _calf_peak(girth, ankle_i, params)
    neck_i = _neck(girth, peak, params) if peak is not None else None
    # Without a peak the girth rises all the way: the scan stops below the calf's belly.
    calf_i = peak if peak is not None else ankle_i + int(np.nanargmax(girth[ankle_i:]))
    leg.landmarks["calf"] = sections[calf_i][0]
    leg.sources["calf"] = "scanned"
    leg.measurements.update(
        calf_circumference_mm=float(raw[calf_i]), calf_height_mm=float(heights[calf_i]),
        ankle_circumference_mm=float(raw[ankle_i]))
    if neck_i is not None:
        leg.knee_joint_z = float(heights[neck_i] + params.joint_above_neck_foot_lengths * fl)
    else:
        leg.knee_joint_z = _estimated_knee(centre, float(heights[calf_i]),
                                           calf_found=peak is not None, fl=fl, params=params)
    head_z = leg.knee_joint_z - params.fibular_head_below_knee_mm
    if neck_i is not None and head_z <= top_z - params.slab_mm:
        leg.landmarks["fibular_head"] = _fibular_head(mesh, filled, point, direction, head_z,
                                                      medial, params)
        leg.sources["fibular_head"] = "scanned"
    else:
        top_girth = float(girth[-1])
        leg.landmarks["fibular_head"] = _on_axis_lateral(point, direction, head_z, medial,
                                                         top_girth)
        leg.sources["fibular_head"] = "estimated"
        leg.warnings.append(
            f"the scan stops below the knee (at {top_z:.0f} mm), so the fibular head is "
            f"estimated at {head_z:.0f} mm from the calf's height and the foot's length; "
            "an AFO's proximal edge is kept under it and under the scan's top: check it "
            "against the patient, or give trimlines.proximal_height_mm")
    if top_z >= leg.knee_joint_z + params.above_knee_mm:
        leg.extent = "above_knee"
    elif top_z >= leg.knee_joint_z - params.knee_extent_tolerance_mm:
        leg.extent = "knee"
    end = leg.landmarks["fibular_head"]
    leg.measurements["shank_length_mm"] = float(np.linalg.norm(end - centre))
    shank = leg.landmarks["calf"] - centre
    leg.measurements["ankle_angle_deg"] = float(np.degrees(np.arctan2(shank[2], shank[0])))
    log.info("leg: %s, knee joint line at %.0f mm (%s), calf at %.0f mm", leg.extent,
             leg.knee_joint_z, "in view" if neck_i is not None else "estimated",
             heights[calf_i])
    return leg


def _smooth(girth: np.ndarray) -> np.ndarray:
    """The girth profile with gaps filled from their neighbours and a running median."""
    valid = np.flatnonzero(~np.isnan(girth))
    filled = np.interp(np.arange(len(girth)), valid, girth[valid])
    return median_filter(filled, size=_SMOOTH_SECTIONS, mode="nearest")


def _calf_peak(girth: np.ndarray, ankle_i: int, params: AnatomyParams) -> int | None:
    """The calf's belly: the first maximum above the ankle after which the girth
    falls by ``params.calf_drop_share`` of it; None when it never does."""
    best = ankle_i
    for i in range(ankle_i, len(girth)):
        if girth[i] > girth[best]:
            best = i
        elif girth[i] < (1.0 - params.calf_drop_share) * girth[best]:
            return best
    return None


def _neck(girth: np.ndarray, calf_i: int, params: AnatomyParams) -> int | None:
    """The narrowing below the knee: the least girth above the calf, when the knee's
    condyles (or the thigh) make it rise by ``params.knee_rise_share`` again above."""
    low = calf_i
    for i in range(calf_i, len(girth)):
        if girth[i] < girth[low]:
            low = i
        elif girth[i] > (1.0 + params.knee_rise_share) * girth[low]:
            return low
    return None


def _estimated_knee(ankle: np.ndarray, calf_z: float, *, calf_found: bool, fl: float,
                    params: AnatomyParams) -> float:
    """The knee joint line's height (mm) of a scan that stops below the knee.

    The lower of two estimates, so that an AFO's edge errs low: the calf's
    belly lies at most ``params.calf_share_of_shank`` of the way from the
    ankle to the knee, and the shank is ``params.shank_foot_lengths`` foot
    lengths long.
    """
    by_foot = float(ankle[2] + params.shank_foot_lengths * fl)
    if not calf_found:
        return by_foot
    by_calf = float(ankle[2] + (calf_z - ankle[2]) / params.calf_share_of_shank)
    return min(by_foot, by_calf)


def _fibular_head(mesh: trimesh.Trimesh, filled: np.ndarray, point: np.ndarray,
                  direction: np.ndarray, head_z: float, medial: float,
                  params: AnatomyParams) -> np.ndarray:
    """The fibular head of a scan that shows the knee: the scanned skin reaching
    furthest posterolaterally (``params.fibular_head_behind_lateral_deg`` behind
    lateral) within a slab around ``head_z``."""
    verts = np.asarray(mesh.vertices)
    near = np.abs(verts[:, 2] - head_z) <= params.fibular_head_slab_mm / 2
    ring = verts[near & ~filled] if (near & ~filled).sum() >= 3 else verts[near]
    if len(ring) == 0:
        return _on_axis_lateral(point, direction, head_z, medial, None)
    behind = np.radians(params.fibular_head_behind_lateral_deg)
    toward = np.array([-np.sin(behind), -medial * np.cos(behind), 0.0])
    centre = point + (head_z - point[2]) / direction[2] * direction
    return ring[np.argmax((ring - centre) @ toward)]


def _on_axis_lateral(point: np.ndarray, direction: np.ndarray, z: float, medial: float,
                     top_girth: float | None) -> np.ndarray:
    """An estimated fibular head: on the lateral skin at height ``z``, the leg taken
    as round with the girth of its highest section."""
    centre = point + (z - point[2]) / direction[2] * direction
    radius = top_girth / (2 * np.pi) if top_girth else 0.0
    return centre + np.array([0.0, -medial * radius, 0.0])


def _sections(mesh: trimesh.Trimesh, origin: np.ndarray, normal: np.ndarray,
              offsets: np.ndarray, *, keep_within: float
              ) -> list[tuple[np.ndarray | None, float | None]]:
    """Per plane: (centre (3,) of the section's convex hull, its perimeter mm).

    The convex hull's perimeter is what a tape measure reads around a limb.
    Only section points within ``keep_within`` mm of the axis line
    (``origin``, ``normal``) count: a plane low on the leg may also cut the
    instep or the toes.
    """
    lines, to_3d, _ = trimesh.intersections.mesh_multiplane(mesh, origin, normal, offsets)
    out: list[tuple[np.ndarray | None, float | None]] = []
    for seg, mat in zip(lines, to_3d):
        flat = np.asarray(seg).reshape(-1, 2)
        if len(flat) < 3:
            out.append((None, None))
            continue
        space = flat @ mat[:3, :2].T + mat[:3, 3]
        rel = space - origin
        radial = rel - np.outer(rel @ normal, normal)
        flat = flat[np.linalg.norm(radial, axis=1) <= keep_within]
        try:
            hull = ConvexHull(flat)
        except (QhullError, ValueError):
            out.append((None, None))
            continue
        c = _polygon_centroid(flat[hull.vertices])
        out.append((mat[:3, :2] @ c + mat[:3, 3], float(hull.area)))
    return out


def _polygon_centroid(ring: np.ndarray) -> np.ndarray:
    x, y = ring[:, 0], ring[:, 1]
    xs, ys = np.roll(x, -1), np.roll(y, -1)
    cross = x * ys - xs * y
    area = cross.sum() / 2
    if abs(area) < 1e-12:
        return ring.mean(axis=0)
    return np.array([((x + xs) * cross).sum(), ((y + ys) * cross).sum()]) / (6 * area)


def _fit_line_direction(points: np.ndarray) -> np.ndarray:
    """Unit direction (3,) of the least-squares line through ``points``, pointing up."""
    _, _, vt = np.linalg.svd(points - points.mean(axis=0), full_matrices=False)
    direction = vt[0]
    return direction if direction[2] > 0 else -direction
