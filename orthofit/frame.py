"""The device frame: units, up axis, and the rigid placement of a scan.

This module owns coordinate frames.  The device frame (issue #2, used by every
later step) is right-handed, in millimetres: +z up, normal to the floor (or,
with no floor, to the plantar support plane under heel and metatarsal heads),
z = 0 on that plane; the origin is the heel landmark projected onto z = 0;
+x points from there toward the midpoint of mth1 and mth5 projected onto
z = 0; +y = z × x is the subject's left.  ``scan_to_device`` is a 4×4 matrix
for column vectors, a uniform scale times a rotation plus a translation,
never a reflection, taking scan coordinates in the scan's own units.

Functions here take and return numpy arrays; they never read files and never
decide where anatomy is (that is ``orthofit.anatomy``).
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import ConvexHull, QhullError

from .errors import CannotServeError, ScanFileError

__all__ = [
    "detect_units",
    "check_extent",
    "axis_up_rotation",
    "axis_of",
    "detect_up",
    "plane_to_level",
    "support_plane",
    "heel_forward",
    "transform",
    "scale_matrix",
    "rotation_matrix",
]

# Robust extent: percentiles that ignore stray points.
_EXTENT_PERCENTILES = (1.0, 99.0)
# Largest robust extent (in scan units) below which a scan is in metres, and
# below which (but above the first) it is in inches; above both it is in mm.
# A lower limb with its floor spans 0.1-2 m: 0.1-2 in metres, 4-80 in inches,
# 100-2000 in millimetres [eng].
_METRES_BELOW = 3.0
_INCHES_BELOW = 80.0
# Plausible extent of a limb scan once in mm (an infant's foot to a room corner).
_EXTENT_MM = (60.0, 3000.0)
# Bottom slab (mm) whose footprint tells the floor side of a scan with no floor.
_SLAB_MM = 12.0
# The support plane's normal may lean this far from the up axis (degrees).
_SUPPORT_MAX_TILT_DEG = 30.0

_UNIT_AXES = {"x": np.array([1.0, 0, 0]), "y": np.array([0, 1.0, 0]),
              "z": np.array([0, 0, 1.0])}


def detect_units(points: np.ndarray) -> str:
    """Guess the unit of ``points`` (n, 3) from the scan's size: 'mm', 'm' or 'in'.

    Examples
    --------
    >>> import numpy as np
    >>> leg = np.array([[0, 0, 0], [0.25, 0.1, 0.45]])
    >>> detect_units(leg), detect_units(leg * 1000), detect_units(leg * 39.37)
    ('m', 'mm', 'in')
    """
    lo, hi = np.percentile(points, _EXTENT_PERCENTILES, axis=0)
    extent = float(np.max(hi - lo))
    if extent < _METRES_BELOW:
        return "m"
    if extent < _INCHES_BELOW:
        return "in"
    return "mm"


def check_extent(points_mm: np.ndarray, units: str) -> None:
    """Refuse scans whose size in mm is no limb's, naming the unit assumed."""
    lo, hi = np.percentile(points_mm, _EXTENT_PERCENTILES, axis=0)
    extent = float(np.max(hi - lo))
    if not _EXTENT_MM[0] <= extent <= _EXTENT_MM[1]:
        raise ScanFileError(
            f"read as {units}, the scan spans {extent:.0f} mm, which is no lower limb "
            f"(expected {_EXTENT_MM[0]:.0f}-{_EXTENT_MM[1]:.0f} mm); give the right --units")


def axis_up_rotation(axis: str) -> np.ndarray:
    """Proper rotation (3, 3) taking scan ``axis`` ('y' or 'z') to +z.

    Examples
    --------
    >>> axis_up_rotation("y") @ [0, 1, 0]
    array([0., 0., 1.])
    """
    if axis == "z":
        return np.eye(3)
    if axis == "y":
        # +90 degrees about x: y -> z, z -> -y.
        return np.array([[1.0, 0, 0], [0, 0, -1.0], [0, 1.0, 0]])
    raise ValueError(f"up axis must be 'y' or 'z', not {axis!r}")


def axis_of(direction: np.ndarray) -> str:
    """The scan axis ('y' or 'z') a direction (3,) lies closest to."""
    return "y" if abs(direction[1]) >= abs(direction[2]) else "z"


def detect_up(points: np.ndarray) -> np.ndarray:
    """Up direction (3,) of a scan with no floor, among ±y and ±z.

    The sole is the broadest flat end of a foot: the bottom slab of the true
    up direction has the largest footprint (heel to toes); a side of the foot
    or the cut top of the leg has less.
    """
    best, best_area = None, -1.0
    for axis in ("y", "z"):
        for sign in (1.0, -1.0):
            up = sign * _UNIT_AXES[axis]
            height = points @ up
            slab = points[height <= height.min() + _SLAB_MM]
            area = _footprint_area(slab, up)
            if area > best_area:
                best, best_area = up, area
    return best


def _footprint_area(points: np.ndarray, up: np.ndarray) -> float:
    """Area (mm²) of the convex hull of ``points`` projected along ``up``."""
    basis = np.linalg.svd(up[None, :])[2][1:]
    flat = points @ basis.T
    try:
        return float(ConvexHull(flat).volume)
    except (QhullError, ValueError):
        return 0.0


def rotation_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Smallest proper rotation (3, 3) taking unit vector ``a`` to unit vector ``b``."""
    a = a / np.linalg.norm(a)
    b = b / np.linalg.norm(b)
    v = np.cross(a, b)
    c = float(a @ b)
    if np.linalg.norm(v) < 1e-12:
        if c > 0:
            return np.eye(3)
        # Half turn about any axis perpendicular to a.
        perp = np.cross(a, [1.0, 0, 0]) if abs(a[0]) < 0.9 else np.cross(a, [0, 1.0, 0])
        perp /= np.linalg.norm(perp)
        return 2 * np.outer(perp, perp) - np.eye(3)
    vx = np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])
    return np.eye(3) + vx + vx @ vx / (1 + c)


def plane_to_level(normal: np.ndarray, point: np.ndarray) -> np.ndarray:
    """4×4 rigid transform putting a plane on z = 0 with its normal along +z."""
    rot = rotation_matrix(normal, np.array([0, 0, 1.0]))
    out = np.eye(4)
    out[:3, :3] = rot
    out[2, 3] = -float(rot[2] @ point)
    return out


def support_plane(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Plantar support plane under a foot whose up is roughly +z.

    The broadest face of the convex hull that faces down (within 30° of -z)
    touches heel and forefoot: the plane a floor would be.

    Returns
    -------
    normal : (3,) unit, pointing up into the limb
    point : (3,) a point on the plane, mm
    """
    try:
        hull = ConvexHull(points)
    except (QhullError, ValueError) as exc:
        raise CannotServeError("the scan is flat or degenerate: no foot could be "
                               "found; scan the foot and leg again") from exc
    normals = hull.equations[:, :3]
    down = normals[:, 2] <= -np.cos(np.radians(_SUPPORT_MAX_TILT_DEG))
    if not down.any():
        raise CannotServeError("no surface the foot could stand on was found; "
                               "give --up or scan with the floor in view")
    tri = points[hull.simplices]
    area = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    face = int(np.argmax(np.where(down, area, -1.0)))
    return -normals[face], tri[face, 0]


def heel_forward(heel: np.ndarray, forward: np.ndarray) -> np.ndarray:
    """4×4 transform about z: ``heel`` (projected) to the origin, ``forward`` (xy) to +x."""
    angle = np.arctan2(forward[1], forward[0])
    c, s = np.cos(-angle), np.sin(-angle)
    out = np.eye(4)
    out[:2, :2] = [[c, -s], [s, c]]
    out[:2, 3] = -out[:2, :2] @ heel[:2]
    return out


def scale_matrix(scale: float) -> np.ndarray:
    """4×4 uniform scale."""
    out = np.eye(4)
    out[:3, :3] *= scale
    return out


def transform(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a 4×4 matrix to ``points`` (n, 3); directions use ``matrix[:3, :3]``."""
    return points @ matrix[:3, :3].T + matrix[:3, 3]
