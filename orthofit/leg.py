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
    centres = np.array([np.full(3, np.nan) if c is None else c for c, _ in sections])
    bend = _knee_bend(centres, offsets, point, direction, peak, params)
    along_ankle = float((centre - point) @ direction)
    if bend is not None and bend < _lowest_knee(along_ankle, float(offsets[peak]), params):
        bend = None  # the calf's upper end, not the knee: the knee lies higher above a calf
    neck_i = _neck(girth, peak, params) if peak is not None and bend is None else None
    # Without a peak the girth rises all the way: the scan stops below the calf's belly.
    calf_i = peak if peak is not None else ankle_i + int(np.nanargmax(girth[ankle_i:]))
    leg.landmarks["calf"] = sections[calf_i][0]
    leg.sources["calf"] = "scanned"
    leg.measurements.update(
        calf_circumference_mm=float(raw[calf_i]), calf_height_mm=float(heights[calf_i]),
        ankle_circumference_mm=float(raw[ankle_i]))
    # Distances along the leg (its axis), where a leaning leg's heights would shrink them.
    if bend is not None:
        along_knee = bend
    elif neck_i is not None:
        along_knee = offsets[neck_i] + params.joint_above_neck_foot_lengths * fl
    else:
        along_knee = _estimated_knee(along_ankle, float(offsets[calf_i]),
                                     calf_found=peak is not None, fl=fl, params=params)
    along_head = along_knee - params.fibular_head_below_knee_mm
    leg.knee_joint_z = float(point[2] + along_knee * direction[2])
    head_z = float(point[2] + along_head * direction[2])
    knee_in_view = bend is not None or neck_i is not None
    if knee_in_view and head_z <= top_z - params.slab_mm:
        leg.landmarks["fibular_head"] = _fibular_head(mesh, filled, point, direction, head_z,
                                                      medial, params)
        leg.sources["fibular_head"] = "scanned"
    else:
        leg.landmarks["fibular_head"] = _on_axis_lateral(point, direction, head_z, medial,
                                                         float(girth[-1]))
        leg.sources["fibular_head"] = "estimated"
        leg.warnings.append(
            "the scan stops below the knee, so the fibular head is estimated (low, from the "
            "calf's height and the foot's length) and an AFO's proximal edge is kept under "
            "it and under the scan's top: check the edge against the patient, or give "
            "trimlines.proximal_height_mm")
    if knee_in_view and top_z >= leg.knee_joint_z + params.above_knee_mm:
        leg.extent = "above_knee"
    elif knee_in_view and top_z >= leg.knee_joint_z - params.knee_extent_tolerance_mm:
        leg.extent = "knee"
    end = leg.landmarks["fibular_head"]
    leg.measurements["shank_length_mm"] = float(np.linalg.norm(end - centre))
    shank = leg.landmarks["calf"] - centre
    leg.measurements["ankle_angle_deg"] = float(np.degrees(np.arctan2(shank[2], shank[0])))
    log.info("leg: %s, knee joint line at %.0f mm (%s), calf at %.0f mm", leg.extent,
             leg.knee_joint_z, "in view" if knee_in_view else "estimated",
             heights[calf_i])
    return leg


def _smooth(girth: np.ndarray) -> np.ndarray:
    """The girth profile with gaps filled from their neighbours and a running median."""
    valid = np.flatnonzero(~np.isnan(girth))
    filled = np.interp(np.arange(len(girth)), valid, girth[valid])
    return median_filter(filled, size=_SMOOTH_SECTIONS, mode="nearest")


def _calf_peak(girth: np.ndarray, ankle_i: int, params: AnatomyParams) -> int | None:
    """The calf's belly: the first running maximum above the ankle, and
    ``params.calf_over_ankle_share`` wider than it, that the girth does not
    pass by ``params.calf_plateau_share`` over the next
    ``params.calf_window_sections`` sections (it narrows, or stays, above it);
    None when the girth rises all the way to the top of the scan."""
    window = params.calf_window_sections
    best = ankle_i
    least = (1.0 + params.calf_over_ankle_share) * girth[ankle_i]
    for i in range(ankle_i, len(girth) - window):
        if girth[i] < girth[best] or girth[i] < least:
            continue
        best = i
        if girth[i + 1:i + 1 + window].max() <= (1.0 + params.calf_plateau_share) * girth[i]:
            return i
    return None


def _knee_bend(centres: np.ndarray, offsets: np.ndarray, point: np.ndarray,
               direction: np.ndarray, calf_i: int | None,
               params: AnatomyParams) -> float | None:
    """Where the leg bends at the knee: the offset along the shank's axis (mm).

    The centre line of the sections runs straight up the shank and bends at
    the knee into the thigh's (the joint's flexion, the thigh's shape over
    the condyles).  At each section above the calf, a line is fitted to the
    centres over ``params.knee_bend_reach_mm`` below it and another over as
    much above; the knee is where they meet at the largest angle, if that is
    over ``params.knee_bend_deg``.  None when the scan stops before the
    thigh's line can be drawn.
    """
    if calf_i is None:
        return None
    valid = ~np.isnan(centres[:, 0])
    reach = params.knee_bend_reach_mm
    best, best_angle = None, params.knee_bend_deg
    for i in range(calf_i, len(offsets)):
        here = offsets[i]
        if here + reach > offsets[-1]:
            break
        below = valid & (offsets >= here - reach) & (offsets <= here)
        above = valid & (offsets >= here) & (offsets <= here + reach)
        if below.sum() < _MIN_LINE_SECTIONS or above.sum() < _MIN_LINE_SECTIONS:
            continue
        cos = abs(_fit_line_direction(centres[below]) @ _fit_line_direction(centres[above]))
        angle = float(np.degrees(np.arccos(min(cos, 1.0))))
        if angle > best_angle:
            best, best_angle = float(here), angle
    return best


# A line through section centres needs this many of them.
_MIN_LINE_SECTIONS = 8


def _neck(girth: np.ndarray, calf_i: int, params: AnatomyParams) -> int | None:
    """The narrowing below the knee of a scan cut at the knee, or None.

    Above the calf the leg narrows by ``params.knee_neck_drop_share`` to its
    neck, then goes on at least ``params.knee_above_neck_sections`` sections
    and at most ``params.knee_neck_most_sections``, widening by
    ``params.knee_rise_share`` (the condyles at the joint line) before the
    scan ends.  A long way of widening above the calf is the thigh's shape,
    which the bend at the knee tells better (:func:`_knee_bend`).
    """
    span = girth[calf_i:]
    low = calf_i + len(span) - 1 - int(np.argmin(span[::-1]))
    if girth[low] > (1.0 - params.knee_neck_drop_share) * girth[calf_i]:
        return None
    tail = girth[low:]
    if (params.knee_above_neck_sections < len(tail) <= params.knee_neck_most_sections
            and tail.max() >= (1.0 + params.knee_rise_share) * girth[low]):
        return low
    return None


def _estimated_knee(along_ankle: float, along_calf: float, *, calf_found: bool, fl: float,
                    params: AnatomyParams) -> float:
    """Where the knee joint line lies along the leg (mm) when the scan stops below it.

    The lower of two estimates, so that an AFO's edge errs low: the calf's
    belly lies at most ``params.calf_share_of_shank`` of the way from the
    ankle to the knee, and the shank is ``params.shank_foot_lengths`` foot
    lengths long.
    """
    by_foot = along_ankle + params.shank_foot_lengths * fl
    if not calf_found:
        return by_foot
    return min(by_foot, _lowest_knee(along_ankle, along_calf, params))


def _lowest_knee(along_ankle: float, along_calf: float, params: AnatomyParams) -> float:
    """The lowest the knee can lie along the leg (mm) above a calf whose belly is there."""
    return along_ankle + (along_calf - along_ankle) / params.calf_share_of_shank


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
