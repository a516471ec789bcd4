"""Clinical corrections of the plain offset shell, as fields over space.

This module owns what the prescription's ``corrections`` do to the shape:
the ankle angle (the shank turned about the malleolar axis, blended over the
ankle, the foot left on the floor), reliefs (extra clearance over a bony
prominence, ``depth`` at the landmark easing smoothly to nothing at
``radius``), the growth allowance's extra width
(extra clearance on the foot's sides, below the ankle) and mirroring a scan
for the other side.  The growth allowance's extra length moves the footplate's
end (``orthofit.trimlines``).  Fields take points (n, 3) in mm in the device
frame and give extra clearance in mm; the shell and the checks add it to the
prescribed clearance.  It must not build shells or read files.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import trimesh

from .errors import CannotServeError
from .io import RawScan
from .prescription import Prescription
from .shell import smoothstep

__all__ = ["ExtraClearance", "extra_clearance", "mirror_scan", "OTHER_SIDE", "sagittal_angle",
           "AnkleCorrection", "correct_ankle"]

#: The side a mirrored scan designs for.
OTHER_SIDE = {"left": "right", "right": "left"}

# The growth allowance's width fades out over this height above the ankle
# centre, and across the foot from this share of its half-width to the sides [eng].
_WIDTH_FADE_MM = 20.0
_WIDTH_FROM_SHARE, _WIDTH_FULL_SHARE = 0.4, 0.9


@dataclass
class ExtraClearance:
    """Extra clearance (mm) over space from the corrections, with what was applied."""

    parts: list[Callable[[np.ndarray], np.ndarray]]
    most_mm: float
    applied: dict[str, Any]
    #: Supports: fields of how far (mm) the wall presses in, together at most
    #: ``press_most_mm``.
    supports: list[Callable[[np.ndarray], np.ndarray]] = field(default_factory=list)
    press_most_mm: float = 0.0

    def __call__(self, points: np.ndarray) -> np.ndarray:
        """Extra room (mm) from reliefs and growth: both faces of the wall move out."""
        points = np.asarray(points, dtype=float)
        out = np.zeros(len(points))
        for part in self.parts:
            out = np.maximum(out, part(points))
        return out

    def press(self, points: np.ndarray) -> np.ndarray:
        """How far (mm) supports press the wall's inner face in; the outer face stays."""
        points = np.asarray(points, dtype=float)
        out = np.zeros(len(points))
        for support in self.supports:
            out = out + support(points)
        return out

    def net(self, points: np.ndarray) -> np.ndarray:
        """The clearance (mm) prescribed beyond the plain one at each point of the inner face."""
        return self(points) - self.press(points)


def extra_clearance(rx: Prescription, landmarks: dict[str, np.ndarray | None],
                    limb: trimesh.Trimesh) -> ExtraClearance:
    """The reliefs and growth width of ``rx`` on these landmarks of ``limb``.

    A relief is a disc of ``radius`` around the landmark across the skin, and
    the same all the way out along the skin's normal there: the wall's inner
    and outer faces both move out by the relief, so the wall keeps its
    thickness and the skin gets exactly ``depth`` more room at the landmark.

    Raises
    ------
    CannotServeError
        When a relief's landmark was not found on the scan and not given.
    """
    parts, applied = [], {"reliefs": []}
    for relief in rx.corrections.reliefs or []:
        centre = landmarks.get(relief.at)
        if centre is None:
            raise CannotServeError(f"a relief at {relief.at} needs that landmark, and the scan "
                                   f"does not show it; give it in landmark_overrides or drop "
                                   f"the relief")
        centre = np.asarray(centre, dtype=float)
        parts.append(_bump(centre, _skin_normal(limb, centre), relief.depth_mm,
                           relief.radius_mm))
        applied["reliefs"].append({"at": relief.at, "depth_mm": relief.depth_mm,
                                   "radius_mm": relief.radius_mm,
                                   "centre_mm": [round(float(c), 3) for c in centre]})
    width = rx.corrections.growth_width_mm
    if width > 0:
        parts.append(_foot_sides(landmarks, width / 2))
    applied["growth_width_mm"] = width
    most = max([r.depth_mm for r in rx.corrections.reliefs or []] + [width / 2, 0.0])
    supports, applied["supports"] = [], []
    for kind, height in (("arch_support", rx.corrections.arch_support_mm),
                         ("metatarsal_pad", rx.corrections.metatarsal_pad_mm)):
        if height <= 0:
            continue
        centre, radii = _support_place(kind, landmarks)
        supports.append(_pad(centre, radii, height))
        applied["supports"].append({
            "kind": kind, "height_mm": height,
            "centre_mm": [round(float(c), 3) for c in centre],
            "radii_mm": [round(float(r), 3) for r in radii],
            # How far the support presses into the scanned sole, on purpose.
            "intended_indentation_mm": round(max(height - rx.clearance_mm, 0.0), 3)})
    press_most = rx.corrections.arch_support_mm + rx.corrections.metatarsal_pad_mm
    for side in ("medial", "lateral"):
        degrees = getattr(rx.corrections, f"heel_post_{side}_deg")
        if degrees <= 0:
            continue
        centre, half_width, toward = _heel_seat(landmarks, limb, side)
        rise = 2.0 * half_width * np.tan(np.radians(degrees))
        supports.append(_post(centre, half_width, toward, degrees, landmarks))
        press_most += rise
        applied["supports"].append({
            "kind": "heel_post", "side": side, "degrees": degrees,
            "centre_mm": [round(float(c), 3) for c in centre],
            "heel_width_mm": round(2.0 * half_width, 3),
            "rise_mm": round(float(rise), 3),
            "intended_indentation_mm": round(max(float(rise) - rx.clearance_mm, 0.0), 3)})
    return ExtraClearance(parts, most, applied, supports, press_most)


# A heel post tilts the heel's seat from the heel back to this share of the
# foot's length, easing out by the next, and acts on the sole only: full up
# to this height above the floor, gone by the next (mm), so the heel cup's
# walls are not pushed in [eng].
_POST_FULL_FL, _POST_GONE_FL = 0.3, 0.45
_POST_SOLE_FULL_MM, _POST_SOLE_GONE_MM = 4.0, 14.0
# The heel's seat is measured on the skin below this height, over this share
# of the foot's length from the heel [eng].
_SEAT_HEIGHT_MM, _SEAT_FL = 12.0, (0.05, 0.25)


def _heel_seat(landmarks: dict, limb: trimesh.Trimesh, side: str
               ) -> tuple[np.ndarray, float, float]:
    """The heel seat's centre on the floor, its half-width, and the y sign of ``side``."""
    heel, toe = np.asarray(landmarks["heel"]), np.asarray(landmarks["toe_tip"])
    mth1, mth5 = np.asarray(landmarks["mth1"]), np.asarray(landmarks["mth5"])
    fl = float(toe[0] - heel[0])
    v = np.asarray(limb.vertices)
    seat = v[(v[:, 2] < _SEAT_HEIGHT_MM) & (v[:, 0] > heel[0] + _SEAT_FL[0] * fl)
             & (v[:, 0] < heel[0] + _SEAT_FL[1] * fl)]
    if len(seat) < 10:
        raise CannotServeError("heel posting tilts the heel's seat, and the scan shows too "
                               "little of the heel's underside; scan the heel again")
    lo, hi = np.percentile(seat[:, 1], [2.0, 98.0])
    medial = 1.0 if mth1[1] > mth5[1] else -1.0
    toward = medial if side == "medial" else -medial
    centre = np.array([heel[0] + 0.5 * sum(_SEAT_FL) * fl, 0.5 * (lo + hi), 0.0])
    return centre, 0.5 * float(hi - lo), toward


def _post(centre: np.ndarray, half_width: float, toward: float, degrees: float,
          landmarks: dict):
    """The heel seat tilted ``degrees``: 0 at its one edge, rising across to the other."""
    heel, toe = np.asarray(landmarks["heel"]), np.asarray(landmarks["toe_tip"])
    fl = float(toe[0] - heel[0])
    slope = np.tan(np.radians(degrees))
    full_x, gone_x = heel[0] + _POST_FULL_FL * fl, heel[0] + _POST_GONE_FL * fl

    def field(points: np.ndarray) -> np.ndarray:
        across = np.clip(toward * (points[:, 1] - centre[1]) + half_width, 0.0, 2 * half_width)
        rear = 1.0 - smoothstep((points[:, 0] - full_x) / (gone_x - full_x))
        sole = 1.0 - smoothstep((points[:, 2] - _POST_SOLE_FULL_MM)
                                / (_POST_SOLE_GONE_MM - _POST_SOLE_FULL_MM))
        return slope * across * rear * sole

    return field


# Where supports sit, in foot lengths [eng, after common insole patterns]: the
# arch support's centre under the navicular, pulled this share towards the
# foot's mid-line, and its half-lengths along and across the foot; the
# metatarsal pad's centre behind the metatarsal heads, and its half-lengths.
_ARCH_TOWARDS_MIDLINE = 0.3
_ARCH_RADII_FL = (0.17, 0.09)
_PAD_BEHIND_HEADS_FL = 0.07
_PAD_RADII_FL = (0.07, 0.05)
# Supports act on the sole: full up to this height, gone by the next (mm).
_SOLE_FULL_MM, _SOLE_GONE_MM = 20.0, 40.0


def _support_place(kind: str, landmarks: dict) -> tuple[np.ndarray, np.ndarray]:
    heel, toe = np.asarray(landmarks["heel"]), np.asarray(landmarks["toe_tip"])
    mth1, mth5 = np.asarray(landmarks["mth1"]), np.asarray(landmarks["mth5"])
    fl = float(toe[0] - heel[0])
    mid_y = 0.5 * (mth1[1] + mth5[1])
    if kind == "arch_support":
        navicular = landmarks.get("navicular")
        if navicular is None:
            raise CannotServeError("corrections.arch_support_mm sits under the navicular, and "
                                   "the scan does not show it; give it in landmark_overrides")
        y = navicular[1] + _ARCH_TOWARDS_MIDLINE * (mid_y - navicular[1])
        return np.array([navicular[0], y, 0.0]), fl * np.array(_ARCH_RADII_FL)
    x = 0.5 * (mth1[0] + mth5[0]) - _PAD_BEHIND_HEADS_FL * fl
    return np.array([x, mid_y, 0.0]), fl * np.array(_PAD_RADII_FL)


def _pad(centre: np.ndarray, radii: np.ndarray, height: float):
    """``height`` at ``centre`` on the floor, easing to 0 over an ellipse of ``radii``."""

    def field(points: np.ndarray) -> np.ndarray:
        rho = np.hypot((points[:, 0] - centre[0]) / radii[0],
                       (points[:, 1] - centre[1]) / radii[1])
        sole = 1.0 - smoothstep((points[:, 2] - _SOLE_FULL_MM) / (_SOLE_GONE_MM - _SOLE_FULL_MM))
        return height * (1.0 - smoothstep(rho)) * sole

    return field


def _skin_normal(limb: trimesh.Trimesh, point: np.ndarray) -> np.ndarray:
    """The limb's outward normal around ``point``: vertex normals within a few mm, averaged."""
    near = np.linalg.norm(limb.vertices - point, axis=1) < _NORMAL_RADIUS_MM
    if not near.any():
        near = np.zeros(len(limb.vertices), dtype=bool)
        near[np.argmin(np.linalg.norm(limb.vertices - point, axis=1))] = True
    normal = limb.vertex_normals[near].mean(axis=0)
    return normal / np.linalg.norm(normal)


# Skin normals are averaged over this radius around a landmark (mm) [eng].
_NORMAL_RADIUS_MM = 6.0
# Along the skin's normal a relief holds from this far inside the skin to this
# far out, and fades over the margin: it reaches through the wall without
# touching the far side of the limb [eng].
_RELIEF_INSIDE_MM, _RELIEF_OUTSIDE_MM, _RELIEF_FADE_MM = 8.0, 25.0, 10.0


def _bump(centre: np.ndarray, normal: np.ndarray, depth: float, radius: float):
    """``depth`` on the normal line through ``centre``, easing to 0 at ``radius`` from it."""

    def field(points: np.ndarray) -> np.ndarray:
        rel = points - centre
        height = rel @ normal
        across = np.linalg.norm(rel - height[:, None] * normal, axis=1) / radius
        along = (1.0 - smoothstep((height - _RELIEF_OUTSIDE_MM) / _RELIEF_FADE_MM)) * (
            1.0 - smoothstep((-height - _RELIEF_INSIDE_MM) / _RELIEF_FADE_MM))
        return depth * (1.0 - smoothstep(across)) * along

    return field


def _foot_sides(landmarks: dict, half_width: float):
    """``half_width`` on each side of the foot below the ankle, none under the sole's middle."""
    mth1, mth5 = np.asarray(landmarks["mth1"]), np.asarray(landmarks["mth5"])
    heel = np.asarray(landmarks["heel"])
    ankle_z = float(landmarks["ankle_center"][2]) if landmarks.get("ankle_center") is not None \
        else float(max(mth1[2], mth5[2]) + 40.0)
    half = 0.5 * abs(mth1[1] - mth5[1])
    y_mid = 0.5 * (mth1[1] + mth5[1])
    # The foot's mid-line from the heel to between the metatarsal heads.
    fore = np.array([0.5 * (mth1[0] + mth5[0]), y_mid])
    back = heel[:2]

    def field(points: np.ndarray) -> np.ndarray:
        s = np.clip((points[:, 0] - back[0]) / max(fore[0] - back[0], 1e-6), 0.0, 1.0)
        mid = back[1] + s * (fore[1] - back[1])
        across = np.abs(points[:, 1] - mid) / half
        side = smoothstep((across - _WIDTH_FROM_SHARE) / (_WIDTH_FULL_SHARE - _WIDTH_FROM_SHARE))
        below = 1.0 - smoothstep((points[:, 2] - ankle_z) / _WIDTH_FADE_MM)
        return half_width * side * below

    return field


def mirror_scan(raw: RawScan) -> RawScan:
    """The scan mirrored left for right (x -> -x in the scanner's frame), faces rewound."""
    points = np.asarray(raw.points).copy()
    points[:, 0] = -points[:, 0]
    faces = None if raw.faces is None else np.asarray(raw.faces)[:, ::-1].copy()
    return RawScan(points, faces, raw.format, raw.sha256)


def sagittal_angle(direction: np.ndarray) -> float:
    """The angle (deg) of an upward shank direction to +x in the sagittal (x-z) plane.

    >>> round(sagittal_angle(np.array([0.0, 0.3, 1.0])), 3)
    90.0
    """
    return float(np.degrees(np.arctan2(direction[2], direction[0])))


@dataclass
class AnkleCorrection:
    """The limb and landmarks with the ankle at the prescribed angle, and the report."""

    limb: trimesh.Trimesh
    landmarks: dict[str, np.ndarray | None]
    applied: dict[str, Any]


# The turn blends in over this height either side of the ankle centre (mm) [eng]:
# the heel and the foot stay, the shank above turns whole.
_ANKLE_BLEND_MM = 30.0
# Measure-and-correct rounds of the turn; each takes the error down severalfold.
_ANKLE_ROUNDS = 6


def correct_ankle(limb: trimesh.Trimesh, landmarks: dict[str, np.ndarray | None],
                  target_deg: float, shank: Callable[[np.ndarray], np.ndarray]
                  ) -> AnkleCorrection:
    """Turn the shank about the malleolar axis until its sagittal angle is ``target_deg``.

    ``shank`` gives the shank's upward direction from limb vertices.  Points
    below the ankle centre by more than the blend stay put (the footplate
    stays on z = 0); points above it by more turn whole; between, the turn
    eases in.  The turn is found by measuring again and correcting, since
    the malleolar axis need not be square to the sagittal plane.

    Raises
    ------
    CannotServeError
        When the scan has no malleoli or leg to turn.
    """
    medial, lateral = landmarks.get("medial_malleolus"), landmarks.get("lateral_malleolus")
    if medial is None or lateral is None or landmarks.get("calf") is None:
        raise CannotServeError("corrections.ankle_angle_deg turns the shank about the "
                               "malleoli, and this scan shows no leg above them; scan up to "
                               "below the knee, or drop the ankle angle")
    centre = 0.5 * (np.asarray(medial) + np.asarray(lateral))
    axis = np.asarray(medial) - np.asarray(lateral)
    axis = axis / np.linalg.norm(axis)
    vertices = np.asarray(limb.vertices, dtype=float)
    scanned = sagittal_angle(shank(vertices))
    turn, turned = 0.0, vertices
    for _ in range(_ANKLE_ROUNDS):
        turned = _turn(vertices, centre, axis, turn)
        measured = sagittal_angle(shank(turned))
        if abs(measured - target_deg) < 0.05:
            break
        # Turning about the malleolar axis by +a tips the shank by about -a or
        # +a in the sagittal plane, as the axis points medially or laterally.
        sign = -1.0 if axis[1] > 0 else 1.0
        turn += sign * (target_deg - measured)
    out = trimesh.Trimesh(turned, np.asarray(limb.faces), process=False)
    moved = {name: None if p is None else _turn(np.asarray(p, float)[None], centre, axis,
                                                  turn)[0]
             for name, p in landmarks.items()}
    applied = {"scanned_deg": round(scanned, 2), "corrected_deg": round(measured, 2),
               "target_deg": target_deg, "turn_deg": round(turn, 2),
               "axis_point_mm": [round(float(c), 3) for c in centre],
               "axis_direction": [round(float(c), 4) for c in axis],
               "blend_mm": _ANKLE_BLEND_MM,
               "landmarks_before": {n: None if p is None else [round(float(c), 3) for c in p]
                                    for n, p in landmarks.items()},
               "landmarks_after": {n: None if p is None else [round(float(c), 3) for c in p]
                                   for n, p in moved.items()}}
    return AnkleCorrection(out, moved, applied)


def _turn(points: np.ndarray, centre: np.ndarray, axis: np.ndarray, degrees: float
          ) -> np.ndarray:
    """Rodrigues' turn of each point by ``degrees`` times its blend weight."""
    if degrees == 0.0:
        return points.copy()
    weight = smoothstep((points[:, 2] - centre[2] + _ANKLE_BLEND_MM) / (2 * _ANKLE_BLEND_MM))
    angle = np.radians(degrees) * weight
    rel = points - centre
    cos, sin = np.cos(angle)[:, None], np.sin(angle)[:, None]
    along = (rel @ axis)[:, None] * axis
    return centre + rel * cos + np.cross(axis, rel) * sin + along * (1 - cos)
