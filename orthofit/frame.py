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

from dataclasses import dataclass

import numpy as np
from scipy.spatial import ConvexHull, QhullError

from .errors import CannotServeError, ScanFileError
from .params import FrameParams

__all__ = [
    "detect_units",
    "check_extent",
    "axis_up_rotation",
    "axis_of",
    "plane_to_level",
    "PlantarPlane",
    "rim_width",
    "plantar_plane",
    "sole_seen_share",
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


@dataclass(frozen=True)
class PlantarPlane:
    """The plane a foot would stand on, found from the foot itself.

    normal : (3,) unit, pointing up into the limb
    point : (3,) a point on the plane, mm
    contact_mm2 : area of the limb within ``FrameParams.plantar_band_mm`` of the
        plane (heel and forefoot pads, or the sole's outline when it was not seen)
    """

    normal: np.ndarray
    point: np.ndarray
    contact_mm2: float


def rim_width(points: np.ndarray, direction: np.ndarray, band_mm: float) -> float:
    """How wide (mm) the scan ends along ``direction``: the root of the area
    its last ``band_mm`` of points cover across it.

    A scan ends in a planar open rim where the scanning software cropped it
    (the top of the leg), or where the scanner could not see (the sole of a
    foot that stood on it): the rim is as wide as the leg or the foot.  Along
    any other direction it ends on rounded skin (the heel, the toes, a side),
    whose last millimetres are a small cap.
    """
    height = points @ direction
    top = points[height > height.max() - band_mm]
    if len(top) < 3:
        return 0.0
    basis = np.linalg.svd(np.asarray(direction, float)[None, :])[2][1:]
    try:
        return float(np.sqrt(ConvexHull(top @ basis.T).volume))
    except (QhullError, ValueError):
        return 0.0


def plantar_plane(points: np.ndarray, up: np.ndarray,
                  params: FrameParams = FrameParams()) -> PlantarPlane:
    """The plantar support plane of a foot with no floor under it, whatever its pose.

    A foot touches the plane it would stand on at the heel and the forefoot,
    so the plane is a face of the limb's convex hull; of the hull's faces
    that look down (within ``params.plantar_max_tilt_deg`` of ``-up``: a
    standing foot's sole, or the sole of a foot hanging in plantarflexion),
    it is the one the limb touches over the largest area.  The shank, the
    toes' tips and a cut rim touch their faces along a line or a point.

    Parameters
    ----------
    points : (n, 3) float, mm
    up : (3,) unit; roughly up along the leg (a scanner's up axis)

    Raises
    ------
    CannotServeError
        When no face looks down (a flat or degenerate scan).
    """
    step = max(1, len(points) // params.plantar_sample_points)
    sample = points[::step]
    try:
        hull = ConvexHull(sample)
    except (QhullError, ValueError) as exc:
        raise CannotServeError("the scan is flat or degenerate: no foot could be "
                               "found; scan the foot and leg again") from exc
    outward, offset = hull.equations[:, :3], hull.equations[:, 3]
    down = np.flatnonzero(outward @ -np.asarray(up, float)
                          >= np.cos(np.radians(params.plantar_max_tilt_deg)))
    if len(down) == 0:
        raise CannotServeError("no surface the foot could stand on was found; "
                               "give --up or scan with the floor in view")
    contact = np.zeros(len(down))
    for lo in range(0, len(down), _FACE_BATCH):
        faces = down[lo:lo + _FACE_BATCH]
        height = -(sample @ outward[faces].T + offset[faces])       # (n, k) >= 0 inside
        for j, face in enumerate(faces):
            touching = sample[height[:, j] < params.plantar_band_mm]
            contact[lo + j] = _covered_area(touching, outward[face], params.plantar_cell_mm)
    # Faces of nearly one plane touch nearly the same area; of those, the
    # widest triangle gives the steadiest normal.
    near_best = down[contact >= _NEAR_BEST_SHARE * contact.max()]
    tri = sample[hull.simplices[near_best]]
    widths = np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    best = int(near_best[np.argmax(widths)])
    # Three hull points set the face's tilt to within their noise; the plane
    # fitted to everything that touches it is steadier, then moved down onto
    # the support (the contact's lowest percentile, not one noisy point).
    normal = -outward[best]
    touching = sample[-(sample @ outward[best] + offset[best]) < params.plantar_band_mm]
    centre = touching.mean(axis=0)
    fitted = np.linalg.svd(touching - centre, full_matrices=False)[2][2]
    normal = fitted if fitted @ normal > 0 else -fitted
    support = np.percentile((touching - centre) @ normal, _SUPPORT_PERCENTILE)
    return PlantarPlane(normal=normal, point=centre + support * normal,
                        contact_mm2=float(contact[np.flatnonzero(down == best)[0]]))


def sole_seen_share(points: np.ndarray, outward: np.ndarray,
                    params: FrameParams = FrameParams()) -> float:
    """How much of the limb near its support plane is sole: the share of the
    points within ``params.sole_band_mm`` above z = 0 whose outward normal
    looks down (within acos(``params.sole_down_cos``) of -z).

    A scanned sole faces down; where the sole was not seen (a meshed scan
    whose sole is an open hole, with no floor under it), the plantar plane
    rests on the lowest rim of the foot's sides, whose normals look sideways.

    Parameters
    ----------
    points : (n, 3) float, mm, levelled: z up, the support plane at z = 0
    outward : (n, 3) float, unit, outward (``orthofit.normals.orient_normals``)
    """
    low = points[:, 2] <= params.sole_band_mm
    if not low.any():
        return 0.0
    return float(np.mean(outward[low, 2] < -params.sole_down_cos))


# Hull faces scored at once (bounds the (points x faces) array).
_FACE_BATCH = 64
# Faces touching at least this share of the largest contact count as its plane.
_NEAR_BEST_SHARE = 0.95
# The support lies at this percentile of the touching points' heights.
_SUPPORT_PERCENTILE = 1.0


def _covered_area(points: np.ndarray, normal: np.ndarray, cell: float) -> float:
    """Area (mm²) of the outline of ``points`` on the plane of ``normal``.

    The convex outline: a foot standing on the plane spans it from heel to
    toes and across the forefoot, whether its sole was scanned (the pads) or
    not (only the sole's rim touches); a plane against the side of the foot
    or the shank meets a narrower strip.  Points are first snapped to cells
    of side ``cell``, so a few stray points do not widen it.
    """
    if len(points) < 3:
        return 0.0
    basis = np.linalg.svd(normal[None, :])[2][1:]
    cells = np.unique(np.floor(points @ basis.T / cell).astype(np.int64), axis=0)
    if len(cells) < 3:
        return 0.0
    try:
        return float(ConvexHull(cells * cell).volume)
    except (QhullError, ValueError):
        return 0.0


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
