"""Anatomy of a limb: the foot's axis, the side, landmarks and measurements.

This module owns where anatomy is.  It finds the foot and its long axis in a
levelled scan (z up, z = 0 on the floor), tells a left limb from a right one
(hallux and arch medial, lateral malleolus lower and more posterior), and
places the landmarks and measurements orthotists use, in the device frame,
in mm.  Proportions come from :class:`orthofit.params.AnatomyParams`.  It must
not read files, clean scans or build surfaces.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import trimesh
from scipy.ndimage import median_filter
from scipy.spatial import ConvexHull, QhullError

from .errors import CannotServeError
from .leg import EXTENTS, measure_leg, shank_axis
from .params import AnatomyParams

__all__ = [
    "LANDMARKS",
    "MEASUREMENTS",
    "FootAxis",
    "SideEvidence",
    "Anatomy",
    "find_foot",
    "detect_side",
    "measure",
    "shank_axis",
    "EXTENTS",
]

log = logging.getLogger(__name__)

#: Landmark names, in the order reports list them.
LANDMARKS = ("heel", "toe_tip", "mth1", "mth5", "sulcus", "navicular", "mt5_base",
             "medial_malleolus", "lateral_malleolus", "ankle_center", "calf",
             "leg_top", "fibular_head")

#: Measurement names, in the order reports list them.
MEASUREMENTS = ("foot_length_mm", "forefoot_width_mm", "heel_width_mm", "ankle_height_mm",
                "medial_malleolus_height_mm", "lateral_malleolus_height_mm",
                "ankle_circumference_mm", "calf_circumference_mm", "calf_height_mm",
                "shank_length_mm", "ankle_angle_deg")

# Iterations of heel -> metatarsal heads -> axis; it settles in two or three.
_AXIS_ITERATIONS = 4
# A footprint this much longer than wide is a foot (a stump end is round).
_MIN_FOOTPRINT_ASPECT = 1.6
# Bin width (mm) of sections along the foot.
_BIN_MM = 2.0
# Side cues saturate at these differences (mm): beyond, a cue is certain.
_CUE_SCALE_MM = {"hallux": 8.0, "arch": 4.0, "malleoli": 8.0, "prominence": 2.0}
# Below this summed confidence the side is reported as uncertain.
SIDE_CONFIDENT = 0.5


@dataclass(frozen=True)
class FootAxis:
    """The foot found in a levelled scan (z up, floor at z = 0), mm.

    Attributes
    ----------
    heel : (3,) most posterior point of the heel
    forward : (2,) unit xy direction from the heel to the metatarsal heads' midpoint
    foot_length : heel to toe tip along ``forward``, mm
    """

    heel: np.ndarray
    forward: np.ndarray
    foot_length: float


@dataclass(frozen=True)
class SideEvidence:
    """Which side a limb is, and why.

    ``cues`` maps each cue (hallux, arch, malleoli) to a score in [-1, 1]:
    positive says right (medial towards +y), negative says left.
    """

    side: str
    confidence: float
    cues: dict[str, float]


@dataclass
class Anatomy:
    """Landmarks (name -> (3,) mm or None) and measurements (name -> float or None).

    ``sources`` says of each landmark found whether it lies on ``scanned``
    skin or was ``estimated`` (the fibular head of a scan that stops below
    the knee); ``confidence`` (0-1) how sure orthofit is of it;
    ``leg_extent`` how far up the leg the scan reaches (:data:`EXTENTS`).
    """

    landmarks: dict[str, np.ndarray | None] = field(default_factory=dict)
    measurements: dict[str, float | None] = field(default_factory=dict)
    has_leg: bool = False
    sources: dict[str, str] = field(default_factory=dict)
    confidence: dict[str, float] = field(default_factory=dict)
    leg_extent: str = "foot_only"
    #: Height of the knee joint line (found or estimated), mm; None without a leg.
    knee_joint_z: float | None = None
    warnings: list[str] = field(default_factory=list)


def find_foot(points: np.ndarray, params: AnatomyParams, *, refine: bool = False) -> FootAxis:
    """Find the foot and its long axis in levelled ``points`` (n, 3), mm.

    The footprint (points near the floor) gives a first long axis by PCA; the
    leg above marks the heel end.  Then heel, metatarsal heads and axis are
    refined together: the axis runs from the heel to the midpoint of the
    forefoot's medial and lateral extremes.

    With ``refine``, the points are a surface already known to hold a foot
    (the closed limb): only the axis is sought, no evidence of a foot.

    Raises
    ------
    CannotServeError
        When the scan shows no foot (a residual limb, a leg without its foot).
    """
    no_foot = ("the scan shows no foot (a residual limb, or a leg scanned without "
               "its foot); orthofit needs the foot and ankle in view")
    z = points[:, 2]
    footprint = points[z < params.footprint_height_mm]
    if len(footprint) < params.min_foot_points:
        raise CannotServeError(no_foot)
    xy = footprint[:, :2]
    centre = xy.mean(axis=0)
    evals, evecs = np.linalg.eigh(np.cov((xy - centre).T))
    if not refine and np.sqrt(evals[1] / max(evals[0], 1e-9)) < _MIN_FOOTPRINT_ASPECT:
        raise CannotServeError(no_foot)
    forward = evecs[:, 1]
    # The leg stands over the heel (or leans back from it, in plantarflexion):
    # the top of the scan marks the back of the foot.
    top = points[z > np.percentile(z, 90)][:, :2].mean(axis=0)
    if not refine and np.ptp(xy @ forward) < params.min_foot_to_top_ratio * _leg_width(
            points, float(np.ptp(xy @ forward)), params):
        raise CannotServeError(no_foot)
    if (centre - top) @ forward < 0:
        forward = -forward
    low = points[z < params.heel_search_height_mm]
    for _ in range(_AXIS_ITERATIONS):
        along = low[:, :2] @ forward
        heel = _rearmost(low, forward, params.extreme_cap_mm)
        length = float(along.max() - along.min())
        medial_or_lateral = _forefoot_extremes(low, heel, forward, length, params)
        if medial_or_lateral is None:
            raise CannotServeError(no_foot)
        mid = 0.5 * (medial_or_lateral[0] + medial_or_lateral[1])
        step = mid[:2] - heel[:2]
        forward = step / np.linalg.norm(step)
    along = low[:, :2] @ forward
    heel = _rearmost(low, forward, params.extreme_cap_mm)
    length = float(along.max() - along.min())
    lo, hi = params.foot_length_range_mm
    if not lo <= length <= hi:
        raise CannotServeError(f"the foot found is {length:.0f} mm long, outside "
                               f"{lo:.0f}-{hi:.0f} mm; check --units and that the "
                               "foot is in the scan")
    return FootAxis(heel=heel, forward=forward, foot_length=length)


def _leg_width(points: np.ndarray, length: float, params: AnatomyParams) -> float:
    """The narrowest horizontal width (mm) of the limb above its footprint.

    Taken on the sections between ``params.leg_probe_heights`` footprint
    lengths above the floor (the lower shank over a foot; over a stump's
    end, the stump itself), or on the scan's top tenth when it ends lower
    (a foot-only scan).  The narrowest width does not grow when the shank
    leans back over a plantarflexed foot, as its depth would.
    """
    z = points[:, 2]
    lo, hi = (share * length for share in params.leg_probe_heights)
    ring = points[(z >= lo) & (z <= hi)][:, :2]
    if len(ring) < _MIN_RING_POINTS:
        ring = points[z > np.percentile(z, 90)][:, :2]
    try:
        hull = ring[ConvexHull(ring).vertices]
    except (QhullError, ValueError):
        return 0.0
    # The hull's narrowest extent lies across one of its edges.
    edges = np.roll(hull, -1, axis=0) - hull
    normals = np.c_[-edges[:, 1], edges[:, 0]]
    normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)
    extents = np.ptp(hull @ normals.T, axis=0)
    return float(extents.min())


# A section needs this many points to give a width.
_MIN_RING_POINTS = 20


def _forefoot_extremes(points: np.ndarray, heel: np.ndarray, forward: np.ndarray,
                       length: float, params: AnatomyParams
                       ) -> tuple[np.ndarray, np.ndarray] | None:
    """The forefoot's extreme points on the two sides of the axis (+side, -side)."""
    across = np.array([-forward[1], forward[0]])
    rel = points[:, :2] - heel[:2]
    u, v = rel @ forward, rel @ across
    band = (u >= params.mth_band[0] * length) & (u <= params.mth_band[1] * length)
    band &= points[:, 2] < params.mth_height_share * length
    if band.sum() < 2:
        return None
    idx = np.flatnonzero(band)
    return points[idx[np.argmax(v[idx])]], points[idx[np.argmin(v[idx])]]


def detect_side(points: np.ndarray, foot_length: float, params: AnatomyParams) -> SideEvidence:
    """Tell left from right in the device frame (+y is the subject's left).

    For a right limb the medial side faces +y.  Three cues vote: the toes
    reach further forward medially (hallux), the sole is higher medially at
    the midfoot (arch), and the lateral malleolus sits lower and further back.
    """
    fl = foot_length
    x, y, z = points.T
    cues = {}
    # Hallux: the front of the toes, compared on the two halves of the forefoot.
    toes = points[(x > params.toe_band[0] * fl) & (z < params.toe_height_share * fl)]
    cues["hallux"] = _half_difference(toes, value=lambda p: p[:, 0], reduce=np.max,
                                      scale=_CUE_SCALE_MM["hallux"])
    # Arch: the lowest sole points of each half of the midfoot.
    mid = points[(x > params.arch_band[0] * fl) & (x < params.arch_band[1] * fl)
                 & (z < params.toe_height_share * fl)]
    cues["arch"] = _half_difference(mid, value=lambda p: p[:, 2],
                                    reduce=lambda a: np.percentile(a, 5),
                                    scale=_CUE_SCALE_MM["arch"])
    # Malleoli: the lateral one (lower, further back) says which side is lateral.
    plus, minus = _malleoli_pair(points, fl, params)
    if plus is None or minus is None:
        cues["malleoli"] = 0.0
    else:
        (p_apex, p_prominence), (m_apex, m_prominence) = plus, minus
        # The lateral malleolus stands out more, and sits lower and further
        # back: a -y bump that does says -y is lateral, so the limb is right.
        lower_back = (p_apex[2] - m_apex[2]) + (p_apex[0] - m_apex[0])
        cues["malleoli"] = float(0.5 * np.tanh((m_prominence - p_prominence)
                                               / _CUE_SCALE_MM["prominence"])
                                 + 0.5 * np.tanh(lower_back / _CUE_SCALE_MM["malleoli"]))
    score = sum(cues.values())
    side = "right" if score > 0 else "left"
    confidence = min(1.0, abs(score) / len(cues))
    return SideEvidence(side=side, confidence=round(confidence, 3),
                        cues={k: round(v, 3) for k, v in cues.items()})


def _half_difference(points: np.ndarray, *, value, reduce, scale: float) -> float:
    """tanh((reduce(value) on the +y half - on the -y half) / scale); 0 when empty."""
    if len(points) < 2:
        return 0.0
    centre = 0.5 * (points[:, 1].max() + points[:, 1].min())
    plus, minus = points[points[:, 1] > centre], points[points[:, 1] <= centre]
    if len(plus) == 0 or len(minus) == 0:
        return 0.0
    return float(np.tanh((reduce(value(plus)) - reduce(value(minus))) / scale))


def _ankle_column(points: np.ndarray, fl: float, params: AnatomyParams,
                  axis: tuple[np.ndarray | None, np.ndarray | None] | None = None
                  ) -> np.ndarray | None:
    """The points around the shank's axis (carried down into the ankle) at ankle heights.

    ``axis`` is (point, direction) from :func:`_shank_axis`, found here if not given.
    """
    axis_point, axis_dir = shank_axis(points, fl, params) if axis is None else axis
    if axis_point is None:
        return None
    z = points[:, 2]
    x_axis = axis_point[0] + (z - axis_point[2]) * axis_dir[0] / axis_dir[2]
    # Whole height bins only: a sliver of a bin at either end holds a few
    # vertices of one side and would read as a cliff in the reach profile.
    lo = np.ceil(params.malleolus_z_band[0] * fl / _BIN_MM) * _BIN_MM
    hi = np.floor(params.malleolus_z_band[1] * fl / _BIN_MM) * _BIN_MM
    column = points[(np.abs(points[:, 0] - x_axis) <= params.ankle_column_share * fl)
                    & (z >= lo) & (z < hi)]
    return column if len(column) >= 4 else None


def _malleoli_pair(points: np.ndarray, fl: float, params: AnatomyParams
                   ) -> tuple[tuple[np.ndarray, float] | None, tuple[np.ndarray, float] | None]:
    """The most prominent ankle bumps towards +y and towards -y (side unknown),
    each as (apex, prominence mm).

    Following the leg's reach towards each side up the ankle, a bump is the
    interior local maximum that stands out most from the narrowing above it.
    """
    column = _ankle_column(points, fl, params)
    if column is None:
        return None, None
    return _bump(column, +1.0, fl, params), _bump(column, -1.0, fl, params)


def _malleoli(points: np.ndarray, fl: float, medial: float, params: AnatomyParams,
              axis: tuple[np.ndarray | None, np.ndarray | None]
              ) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(medial, lateral) malleolus of a limb whose side is known.

    The lateral malleolus is the more prominent bump and is found as such.
    The medial one often shows no bump of its own on a scan; it is the
    furthest medial reach at or a little above and in front of the lateral
    one, where it sits [typ: about 1 cm higher and up to 1.5 cm further forward].
    """
    column = _ankle_column(points, fl, params, axis)
    if column is None:
        return None, None
    lateral, _ = _bump(column, -medial, fl, params)
    z, ahead = column[:, 2], column[:, 0] - lateral[0]
    lo, hi = params.medial_ahead_of_lateral_mm
    window = column[(z >= lateral[2]) & (z <= lateral[2] + params.medial_above_lateral_mm)
                    & (ahead >= lo) & (ahead <= hi)]
    if len(window) == 0:
        return _bump(column, medial, fl, params)[0], lateral
    bins, extent = _reach_profile(window, medial)
    peaks = [i for i in range(1, len(bins) - 1)
             if extent[i] >= extent[i - 1] and extent[i] >= extent[i + 1]]
    if peaks:
        best = max(peaks, key=lambda i: extent[i])
    else:
        # The leg only widens or narrows here: take the typical height.
        typical = lateral[2] + params.medial_typical_above_lateral_mm
        best = int(np.argmin(np.abs((bins + 0.5) * _BIN_MM - typical)))
    return _cap_centre(window, medial, int(bins[best]), float(extent[best]), params), lateral


def _bump(column: np.ndarray, direction: float, fl: float,
          params: AnatomyParams) -> tuple[np.ndarray, float]:
    """The most prominent bump of ``column`` (k, 3) towards ``direction`` (±y).

    Returns its apex (3,) and how far it stands out from the narrowing above
    it (mm; 0 when no bump stands out and the typical height was taken).
    """
    bins, extent = _reach_profile(column, direction)
    above = max(1, int(round(params.malleolus_drop_share * fl / _BIN_MM)))
    best, best_prominence = None, 0.0
    for i in range(1, len(bins) - 1):
        if extent[i] < extent[i - 1] or extent[i] < extent[i + 1]:
            continue
        prominence = extent[i] - extent[i + 1: i + 1 + above].min()
        if prominence > best_prominence:
            best, best_prominence = i, prominence
    if best is None:
        # No bump stands out: take the extent at the typical malleolus height.
        best = int(np.argmin(np.abs(bins * _BIN_MM - params.malleolus_typical_share * fl)))
    return _cap_centre(column, direction, int(bins[best]), float(extent[best]),
                       params), best_prominence


def _reach_profile(column: np.ndarray, direction: float) -> tuple[np.ndarray, np.ndarray]:
    """Height bins (indices of ``_BIN_MM`` slabs) and the reach towards ``direction``
    (±y, mm) of ``column`` (k, 3) in each."""
    which = np.floor(column[:, 2] / _BIN_MM).astype(np.int64)
    bins = np.unique(which)
    return bins, np.array([np.max(direction * column[which == b, 1]) for b in bins])


def _cap_centre(column: np.ndarray, direction: float, bin_index: int, reach: float,
                params: AnatomyParams) -> np.ndarray:
    """A bump's apex: the centre of its cap (the surface within a little of its
    greatest reach, near its height bin), steadier than any single vertex."""
    centre_z = (bin_index + 0.5) * _BIN_MM
    near = np.abs(column[:, 2] - centre_z) <= params.malleolus_cap_half_height_mm
    cap = column[near & (direction * column[:, 1] >= reach - params.malleolus_cap_depth_mm)]
    apex = cap.mean(axis=0)
    apex[1] = direction * reach
    return apex


def measure(mesh: trimesh.Trimesh, filled: np.ndarray, side: str, foot_length: float,
            top_z: float, params: AnatomyParams) -> Anatomy:
    """Landmarks and measurements of a closed limb in the device frame.

    Parameters
    ----------
    mesh : closed limb, mm, device frame
    filled : (n_vertices,) bool; True where the surface was filled in
    side : 'left' or 'right'
    foot_length : mm, from :func:`find_foot`
    top_z : height of the flat cut closing the top of the leg, mm
    """
    fl = foot_length
    verts = np.asarray(mesh.vertices)
    z = verts[:, 2]
    medial = 1.0 if side == "right" else -1.0
    axis = shank_axis(verts, fl, params)
    lm: dict[str, np.ndarray | None] = dict.fromkeys(LANDMARKS)
    ms: dict[str, float | None] = dict.fromkeys(MEASUREMENTS)

    # Heel, toes and metatarsal heads are taken on scanned skin, never on
    # surface the closing filled in where the scanner saw nothing.
    low = verts[(z < params.heel_search_height_mm) & ~filled]
    lm["heel"] = _extreme_cap(low, -1.0, params.extreme_cap_mm)
    lm["toe_tip"] = _extreme_cap(low, +1.0, params.extreme_cap_mm)
    plus, minus = _forefoot_extremes(low, lm["heel"], np.array([1.0, 0.0]), fl, params)
    lm["mth1"], lm["mth5"] = (plus, minus) if medial > 0 else (minus, plus)
    lm["sulcus"], sulcus_scanned = _sulcus(verts, filled, lm["mth1"], lm["mth5"],
                                           lm["toe_tip"], params)
    lm["navicular"] = _extreme_near(verts, params.navicular_fraction * fl, medial,
                                    z_max=params.navicular_height_share * fl,
                                    half_width=params.landmark_window_share * fl)
    lm["mt5_base"] = _extreme_near(verts, params.mt5_base_fraction * fl, -medial,
                                   z_max=params.mth_height_share * fl,
                                   half_width=params.landmark_window_share * fl)
    lm["medial_malleolus"], lm["lateral_malleolus"] = _malleoli(verts, fl, medial, params, axis)
    if lm["medial_malleolus"] is None:
        raise CannotServeError("the scan ends below the ankle, so the malleoli cannot be "
                               "found; scan the foot with the ankle and some of the leg")
    # The talar dome's centre lies a little medial of the malleoli's midpoint.
    towards_medial = lm["medial_malleolus"] - lm["lateral_malleolus"]
    towards_medial /= max(float(np.linalg.norm(towards_medial)), 1e-9)
    lm["ankle_center"] = (0.5 * (lm["medial_malleolus"] + lm["lateral_malleolus"])
                          + params.ankle_centre_medial_shift_mm * towards_medial)
    scanned = verts[~filled] if (~filled).any() else verts
    lm["leg_top"] = scanned[np.argmax(scanned[:, 2])]

    ms["foot_length_mm"] = float(lm["toe_tip"][0] - lm["heel"][0])
    ms["forefoot_width_mm"] = float(np.linalg.norm(lm["mth1"][:2] - lm["mth5"][:2]))
    ms["heel_width_mm"] = _heel_width(verts, lm["heel"], params.heel_width_window_mm,
                                      params.heel_width_height_share * fl)
    ms["ankle_height_mm"] = float(lm["ankle_center"][2])
    ms["medial_malleolus_height_mm"] = float(lm["medial_malleolus"][2])
    ms["lateral_malleolus_height_mm"] = float(lm["lateral_malleolus"][2])

    found = Anatomy(landmarks=lm, measurements=ms,
                    has_leg=top_z >= params.leg_min_height_foot_lengths * fl)
    found.sources = {name: "scanned" for name, p in lm.items() if p is not None}
    if not sulcus_scanned:
        found.sources["sulcus"] = "estimated"
    if found.has_leg and axis[0] is not None:
        leg = measure_leg(mesh, filled, axis, lm, medial, fl, top_z, params)
        lm.update(leg.landmarks)
        ms.update(leg.measurements)
        found.sources.update(leg.sources)
        found.leg_extent, found.knee_joint_z = leg.extent, leg.knee_joint_z
        found.warnings.extend(leg.warnings)
    found.confidence = {name: _confidence(verts, filled, lm[name], params)
                        if found.sources[name] == "scanned" else params.estimated_confidence
                        for name in found.sources}
    return found


def _confidence(verts: np.ndarray, filled: np.ndarray, point: np.ndarray,
                params: AnatomyParams) -> float:
    """How sure a landmark is: the share of scanned (not filled-in) skin around it.

    A landmark found where the scanner saw the skin all round reads 1; one
    next to skin the closing had to fill in reads less.
    """
    near = np.linalg.norm(verts - point, axis=1) <= params.confidence_radius_mm
    if not near.any():
        return 0.0
    return round(float(1.0 - filled[near].mean()), 3)


def _sulcus(verts: np.ndarray, filled: np.ndarray, mth1: np.ndarray, mth5: np.ndarray,
            toe: np.ndarray, params: AnatomyParams) -> tuple[np.ndarray, bool]:
    """The toe crease: where the top of the forefoot bends from its fall over the
    metatarsophalangeal joints into the flatter toes.

    Along the foot, between the metatarsal heads and the toe tip, the highest
    *scanned* skin within the forefoot's width makes a profile (filled-in
    surface can rise in a spike between the toes, and never counts); the
    crease is where that profile bends most (its second derivative is
    largest), away from both ends.  Returns the point on the top of the foot
    there, and whether it was found on scanned skin (else it is placed at
    ``params.sulcus_share`` of the way to the toe tip, and estimated).
    """
    start = 0.5 * (mth1[0] + mth5[0])
    length = float(toe[0] - start)
    y_lo, y_hi = sorted((mth1[1], mth5[1]))
    keep = ((verts[:, 0] >= start) & (verts[:, 0] <= toe[0]) & ~filled
            & (verts[:, 1] >= y_lo) & (verts[:, 1] <= y_hi))
    band = verts[keep]
    fallback = np.array([start + params.sulcus_share * length, 0.5 * (y_lo + y_hi), 0.0])
    if len(band) < 4 or length <= 4 * _BIN_MM:
        return fallback, False
    edges = np.arange(start, toe[0] + _BIN_MM, _BIN_MM)
    which = np.clip(np.digitize(band[:, 0], edges) - 1, 0, len(edges) - 1)
    tops = np.full(len(edges), np.nan)
    np.fmax.at(tops, which, band[:, 2])
    valid = np.flatnonzero(np.isfinite(tops))
    if len(valid) < _SULCUS_MIN_BINS:
        return fallback, False
    profile = median_filter(np.interp(np.arange(len(edges)), valid, tops[valid]),
                            size=_SULCUS_SMOOTH_BINS, mode="nearest")
    bend = np.gradient(np.gradient(profile, _BIN_MM), _BIN_MM)
    lo, hi = (int(share * length / _BIN_MM) for share in params.sulcus_window)
    if hi - lo < 2:
        return fallback, False
    i = lo + int(np.argmax(bend[lo:hi]))
    in_bin = band[which == i]
    if len(in_bin) == 0:
        fallback[0] = edges[i]
        return fallback, False
    return in_bin[np.argmax(in_bin[:, 2])], True


# The sulcus profile needs this many bins of scanned skin, smoothed over this many.
_SULCUS_MIN_BINS = 6
_SULCUS_SMOOTH_BINS = 3


def _rearmost(points: np.ndarray, forward: np.ndarray, depth: float) -> np.ndarray:
    """The heel along the xy direction ``forward``: the middle of the skin within
    ``depth`` mm of the rearmost reach, at that reach."""
    along = points[:, :2] @ forward
    cap = points[along <= along.min() + depth]
    out = cap.mean(axis=0)
    out[:2] += (along.min() - out[:2] @ forward) * forward
    return out


def _extreme_cap(points: np.ndarray, direction: float, depth: float) -> np.ndarray:
    """The extreme of ``points`` along ±x: at its reach, in the middle of the skin
    within ``depth`` mm of it (a flat heel's back has no single rearmost point)."""
    x = direction * points[:, 0]
    cap = points[x >= x.max() - depth]
    out = cap.mean(axis=0)
    out[0] = points[np.argmax(x), 0]
    return out


def _extreme_near(verts: np.ndarray, x0: float, direction: float, *, z_max: float,
                  half_width: float) -> np.ndarray | None:
    """The point furthest towards ``direction`` (±y) near x = x0 below z_max."""
    sel = verts[(np.abs(verts[:, 0] - x0) <= half_width) & (verts[:, 2] < z_max)]
    if len(sel) == 0:
        return None
    return sel[np.argmax(direction * sel[:, 1])]


def _heel_width(verts: np.ndarray, heel: np.ndarray, window: float, z_max: float) -> float:
    """Widest mediolateral extent of the heel within ``window`` mm of its back."""
    sel = verts[(verts[:, 0] - heel[0] <= window) & (verts[:, 2] < z_max)]
    if len(sel) == 0:
        return float("nan")
    which = np.floor((sel[:, 0] - heel[0]) / _BIN_MM).astype(int)
    widths = [np.ptp(sel[which == k, 1]) for k in np.unique(which)]
    return float(max(widths))
