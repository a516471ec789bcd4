"""Clinical corrections of the plain offset shell, as fields over space.

This module owns what the prescription's ``corrections`` do to the shape:
reliefs (extra clearance over a bony prominence, ``depth`` at the landmark
easing smoothly to nothing at ``radius``), the growth allowance's extra width
(extra clearance on the foot's sides, below the ankle) and mirroring a scan
for the other side.  The growth allowance's extra length moves the footplate's
end (``orthofit.trimlines``).  Fields take points (n, 3) in mm in the device
frame and give extra clearance in mm; the shell and the checks add it to the
prescribed clearance.  It must not build shells or read files.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import trimesh

from .errors import CannotServeError
from .io import RawScan
from .prescription import Prescription

__all__ = ["ExtraClearance", "extra_clearance", "mirror_scan"]

# The growth allowance's width fades out over this height above the ankle
# centre, and across the foot from this share of its half-width to the sides [eng].
_WIDTH_FADE_MM = 20.0
_WIDTH_FROM_SHARE, _WIDTH_FULL_SHARE = 0.4, 0.9


def _smoothstep(t: np.ndarray) -> np.ndarray:
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3 - 2 * t)


@dataclass
class ExtraClearance:
    """Extra clearance (mm) over space from the corrections, with what was applied."""

    parts: list[Callable[[np.ndarray], np.ndarray]]
    most_mm: float
    applied: dict[str, Any]

    def __call__(self, points: np.ndarray) -> np.ndarray:
        points = np.asarray(points, dtype=float)
        out = np.zeros(len(points))
        for part in self.parts:
            out = np.maximum(out, part(points))
        return out


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
    return ExtraClearance(parts, most, applied)


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
        along = (1.0 - _smoothstep((height - _RELIEF_OUTSIDE_MM) / _RELIEF_FADE_MM)) * (
            1.0 - _smoothstep((-height - _RELIEF_INSIDE_MM) / _RELIEF_FADE_MM))
        return depth * (1.0 - _smoothstep(across)) * along

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
        side = _smoothstep((across - _WIDTH_FROM_SHARE) / (_WIDTH_FULL_SHARE - _WIDTH_FROM_SHARE))
        below = 1.0 - _smoothstep((points[:, 2] - ankle_z) / _WIDTH_FADE_MM)
        return half_width * side * below

    return field


def mirror_scan(raw: RawScan) -> RawScan:
    """The scan mirrored left for right (x -> -x in the scanner's frame), faces rewound."""
    points = np.asarray(raw.points).copy()
    points[:, 0] = -points[:, 0]
    faces = None if raw.faces is None else np.asarray(raw.faces)[:, ::-1].copy()
    return RawScan(points, faces, raw.format, raw.sha256)
