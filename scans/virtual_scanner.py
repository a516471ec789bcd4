"""A virtual handheld structured-light scanner: raw scans of a limb standing in a room.

This module owns the simulation of what a scanner records, over any trimesh
mesh: the surroundings (a floor or a platform, a clutter object), viewpoints
around and above the limb (never below the floor), one range image per view
ray-cast with Open3D, range noise along each ray, a small rigid
misregistration per view, stray points, and the holes that follow from
occlusion (the sole on the floor, between the toes) and from the scanning
software's crop box (the open top of the leg).  It returns points, or a mesh
triangulated from each view's neighbouring pixels, and it places a scan in a
scanner's units and up axis by a known rigid motion.  It knows nothing about
MakeHuman or file formats, and never imports orthofit.

Scanning happens in the limb's frame: mm, Y up, the floor at y = 0.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import open3d as o3d
import open3d.core as o3c
import trimesh

__all__ = [
    "RawScan", "ScannerSettings", "UNITS_PER_MM", "placement", "scan", "surroundings",
    "transform",
]

log = logging.getLogger(__name__)

# --- the scanner [typ: handheld structured-light scanners such as Artec Eva,
# Structure Sensor; DOMAIN.md "What a raw scan looks like"] ---
VIEWS = 14
# Range noise along each ray (1 sigma).
RANGE_NOISE_MM = 0.3
# Per-view misregistration: a shift of this size (uniform in the range, random
# direction) and a rotation of this size (1 sigma) about the view's aim point.
MISREGISTRATION_MM = (0.5, 1.0)
MISREGISTRATION_DEG = 0.1
# Surfaces seen more obliquely than this return no structured-light pattern.
GRAZING_LIMIT_DEG = 78.0
# Working distance: the whole limb in frame, within a handheld scanner's range.
DISTANCE_PER_RADIUS = 2.2
DISTANCE_RANGE_MM = (350.0, 650.0)
# Extra field of view around the limb's bounding sphere.
FRAME_MARGIN = 1.08
# View rings: (elevation above the horizontal, degrees; share of the views).
# A handheld sweep goes round low, then higher, then looks down on the foot.
RINGS = ((12.0, 0.5), (40.0, 0.36), (68.0, 0.14))
ELEVATION_JITTER_DEG = 4.0
AZIMUTH_JITTER_DEG = 8.0
AIM_JITTER_MM = 20.0
# The scanner never goes below this height (mm above the floor).
MIN_CAMERA_HEIGHT_MM = 60.0
# Stray points (dust, reflections) scattered over the scanned box; a mesh
# scan gets a third as many tiny triangles ("specks") with edges this long.
STRAY_POINTS = 300
STRAY_MARGIN_MM = 60.0
STRAY_SPECK_MM = 1.0
# Pixels whose 3-D distance exceeds this many pixel footprints are on
# different surfaces (a depth jump) and are not joined in a mesh.
MESH_EDGE_PIXELS = 3.0
# Image side of the first, coarse pass that measures how many pixels hit
# something; the final resolution then gives about the asked number of points.
PROBE_SIDE = 64
# The smallest range image (pixels a side) a view may have, and the fewest
# surface points a scan may be asked for.
MIN_SIDE = 16
MIN_SURFACE_POINTS = 1000
# Point clouds are rendered this much denser than asked and thinned to the exact count.
OVERSAMPLE = 1.04

# --- the room ---
# Floor or platform extends this far beyond the limb and the clutter.
FLOOR_MARGIN_MM = 70.0
# A scanning platform: a box whose top is the floor.
PLATFORM_HEIGHT_MM = 120.0
# Clutter stays at least this far from the limb (DOMAIN.md: ~40 mm or more).
CLUTTER_GAP_MM = 50.0
CLUTTER_STEP_MM = 5.0                           # outward search step when placing it
STOOL_LEG_RADIUS_MM, STOOL_LEG_HEIGHT_MM = 16.0, 380.0
STOOL_LEG_SECTIONS = 32                         # facets round the cylinder
HAND_SUBDIVISIONS = 3                           # icosphere detail (642 vertices)
BOX_EXTENTS_MM = (90.0, 130.0, 70.0)            # width, height, depth: a shoe box end
HAND_SEMI_AXES_MM = (45.0, 90.0, 18.0)          # an orthotist's hand, fingers together
HAND_TILT_DEG = (10.0, 35.0)                    # leaning from the vertical, range
HAND_HEIGHT_SHARE = 0.55                        # held at about mid-shank
SUPPORTS = ("floor", "platform", "none")
CLUTTER = ("stool_leg", "box", "hand", "none")

# Scan units per mm.
UNITS_PER_MM = {"mm": 1.0, "m": 1e-3, "in": 1.0 / 25.4}
# Placement: a translation of up to this much along each axis (mm).
PLACEMENT_RANGE_MM = 300.0


@dataclass(frozen=True)
class ScannerSettings:
    """How the virtual scanner behaves; defaults are the module constants."""

    views: int = VIEWS
    range_noise_mm: float = RANGE_NOISE_MM
    misregistration_mm: tuple[float, float] = MISREGISTRATION_MM
    misregistration_deg: float = MISREGISTRATION_DEG
    grazing_limit_deg: float = GRAZING_LIMIT_DEG
    stray_points: int = STRAY_POINTS

    def as_dict(self) -> dict:
        """The settings as plain JSON-ready values."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


@dataclass(frozen=True)
class RawScan:
    """A raw scan in the limb's frame.

    points : (n, 3) float, mm
    faces : (m, 3) int or None -- triangles of a mesh scan (views overlap).
    view_origins : (k, 3) float, mm -- where the scanner stood for each view.
    """

    points: np.ndarray
    faces: np.ndarray | None
    view_origins: np.ndarray


def surroundings(limb: trimesh.Trimesh, *, support: str = "floor", clutter: str = "stool_leg",
                 top_mm: float | None = None,
                 rng: np.random.Generator) -> list[trimesh.Trimesh]:
    """The floor or platform and a clutter object around ``limb`` (mm, Y up, floor y = 0).

    ``top_mm`` limits the limb to the part that is scanned.  The clutter stands
    on the floor (a hand is held beside the shank) at a random bearing, at
    least ``CLUTTER_GAP_MM`` from the limb; the floor is a rectangle, or the
    platform a box, reaching ``FLOOR_MARGIN_MM`` beyond the limb and clutter.
    """
    if support not in SUPPORTS:
        raise ValueError(f"support must be one of {SUPPORTS}, got {support!r}")
    if clutter not in CLUTTER:
        raise ValueError(f"clutter must be one of {CLUTTER}, got {clutter!r}")
    skin = _scanned_vertices(limb, top_mm)
    props = []
    if clutter != "none":
        props.append(_clutter(skin, clutter, rng))
    lo = np.min([skin.min(axis=0)] + [p.bounds[0] for p in props], axis=0) - FLOOR_MARGIN_MM
    hi = np.max([skin.max(axis=0)] + [p.bounds[1] for p in props], axis=0) + FLOOR_MARGIN_MM
    if support == "floor":
        corners = np.array([[lo[0], 0.0, lo[2]], [hi[0], 0.0, lo[2]],
                            [hi[0], 0.0, hi[2]], [lo[0], 0.0, hi[2]]])
        props.append(trimesh.Trimesh(corners, [[0, 2, 1], [0, 3, 2]], process=False))
    elif support == "platform":
        box = trimesh.creation.box(extents=(hi[0] - lo[0], PLATFORM_HEIGHT_MM, hi[2] - lo[2]))
        box.apply_translation([(lo[0] + hi[0]) / 2, -PLATFORM_HEIGHT_MM / 2, (lo[2] + hi[2]) / 2])
        props.append(box)
    return props


def _scanned_vertices(limb: trimesh.Trimesh, top_mm: float | None) -> np.ndarray:
    v = limb.vertices
    return v if top_mm is None else v[v[:, 1] <= top_mm]


def _clutter(skin: np.ndarray, kind: str, rng: np.random.Generator) -> trimesh.Trimesh:
    """A clutter mesh at a random bearing, ``CLUTTER_GAP_MM`` or more from ``skin``."""
    height = skin[:, 1].max()
    bearing = rng.uniform(0.0, 2 * np.pi)
    if kind == "stool_leg":
        obj = trimesh.creation.cylinder(radius=STOOL_LEG_RADIUS_MM, height=STOOL_LEG_HEIGHT_MM,
                                        sections=STOOL_LEG_SECTIONS)
        obj.apply_transform(trimesh.transformations.rotation_matrix(-np.pi / 2, [1, 0, 0]))
        obj.apply_translation([0.0, STOOL_LEG_HEIGHT_MM / 2, 0.0])
        yaw = 0.0
    elif kind == "box":
        obj = trimesh.creation.box(extents=BOX_EXTENTS_MM)
        obj.apply_translation([0.0, BOX_EXTENTS_MM[1] / 2, 0.0])
        yaw = rng.uniform(0.0, 2 * np.pi)
    else:
        # Fingers pointing down and tilted, palm (local +z) towards the leg.
        obj = trimesh.creation.icosphere(subdivisions=HAND_SUBDIVISIONS)
        obj.apply_scale(HAND_SEMI_AXES_MM)
        obj.apply_transform(trimesh.transformations.rotation_matrix(
            np.radians(rng.uniform(*HAND_TILT_DEG)), [1, 0, 0]))
        obj.apply_translation([0.0, HAND_HEIGHT_SHARE * height, 0.0])
        yaw = bearing + np.pi
    obj.apply_transform(trimesh.transformations.rotation_matrix(yaw, [0, 1, 0]))
    direction = np.array([np.sin(bearing), np.cos(bearing)])
    # The skin at the object's heights (give or take the gap), seen from above;
    # the object's footprint taken as its bounding circle.
    y0, y1 = obj.bounds[:, 1]
    near = skin[(skin[:, 1] >= y0 - CLUTTER_GAP_MM) & (skin[:, 1] <= y1 + CLUTTER_GAP_MM)]
    near = (near if len(near) else skin)[:, [0, 2]]
    radius = np.linalg.norm(obj.vertices[:, [0, 2]], axis=1).max()
    start = np.median(near, axis=0)
    # Furthest skin point along the bearing, then out by the radius and the gap.
    distance = float(np.max((near - start) @ direction)) + radius + CLUTTER_GAP_MM
    while np.min(np.linalg.norm(near - (start + distance * direction), axis=1)) \
            < radius + CLUTTER_GAP_MM:
        distance += CLUTTER_STEP_MM
    x, z = start + distance * direction
    obj.apply_translation([x, 0.0, z])
    return obj


def scan(limb: trimesh.Trimesh, *, points: int, props: Sequence[trimesh.Trimesh] = (),
         top_mm: float | None = None, mesh: bool = False, seed: int = 0,
         settings: ScannerSettings = ScannerSettings()) -> RawScan:
    """Scan ``limb`` among ``props`` like a handheld structured-light scanner.

    Parameters
    ----------
    limb : trimesh.Trimesh, mm, Y up, floor at y = 0
        The scanned body; it may go on above ``top_mm`` (it hides what is behind it).
    points : int
        About how many points to return (exactly, for a point cloud; mesh
        scans get about that many vertices).
    props : meshes standing around the limb (from ``surroundings``).
    top_mm : float, mm, optional
        The scanning software's crop box: nothing above this height is kept.
    mesh : bool
        Return triangles too, made from each view's neighbouring pixels.
    seed : int
        Seeds every random choice (view jitter, noise, misregistration, strays).

    Returns
    -------
    RawScan, in the limb's frame (mm).
    """
    least = settings.stray_points + MIN_SURFACE_POINTS
    if points < least:
        raise ValueError(f"points must be at least {least} (stray points plus "
                         f"{MIN_SURFACE_POINTS} on surfaces), got {points}")
    rng = np.random.default_rng(seed)
    scene = o3d.t.geometry.RaycastingScene()
    for part in (limb, *props):
        scene.add_triangles(o3c.Tensor(np.asarray(part.vertices, dtype=np.float32)),
                            o3c.Tensor(np.asarray(part.faces, dtype=np.uint32)))
    skin = _scanned_vertices(limb, top_mm)
    lo, hi = skin.min(axis=0), skin.max(axis=0)
    top = hi[1] if top_mm is None else top_mm
    views = _views(lo, hi, settings.views, rng)
    cos_limit = np.cos(np.radians(settings.grazing_limit_deg))

    probe = sum(int(_cast(scene, v, PROBE_SIDE, top, cos_limit)[0].sum()) for v in views)
    wanted = (points - settings.stray_points) * (1.0 if mesh else OVERSAMPLE)
    side = max(MIN_SIDE, int(np.ceil(PROBE_SIDE * np.sqrt(wanted / max(probe, 1)))))
    log.info("scanning %d views at %d x %d pixels", len(views), side, side)

    clouds, triangles, count = [], [], 0
    for view in views:
        hit, t, dirs = _cast(scene, view, side, top, cos_limit)
        t = t + rng.normal(0.0, settings.range_noise_mm, t.shape)
        xyz = view.origin + dirs * t[..., None]
        xyz = _misregister(xyz, view.aim, settings, rng)
        if mesh:
            triangles.append(_grid_faces(hit, xyz, t, view, side) + count)
        clouds.append(xyz[hit])
        count += int(hit.sum())
    cloud = np.concatenate(clouds)
    # Stray returns: points, or in a mesh tiny triangles of three vertices each
    # (as many stray vertices either way).
    n_stray = settings.stray_points // 3 if mesh else settings.stray_points
    stray = rng.uniform(lo - STRAY_MARGIN_MM, hi + STRAY_MARGIN_MM, (n_stray, 3))
    stray[:, 1] = rng.uniform(0.0, top + STRAY_MARGIN_MM, n_stray)
    if mesh:
        speck = rng.normal(size=(n_stray, 2, 3))
        speck *= STRAY_SPECK_MM / np.linalg.norm(speck, axis=-1, keepdims=True)
        corners = np.concatenate([stray[:, None], stray[:, None] + speck], axis=1)
        faces = np.concatenate(triangles + [count + np.arange(3 * n_stray).reshape(-1, 3)])
        cloud = np.concatenate([cloud, corners.reshape(-1, 3)])
    else:
        faces = None
        keep = points - settings.stray_points
        if len(cloud) > keep:
            cloud = cloud[np.sort(rng.choice(len(cloud), keep, replace=False))]
        # Stray points turn up anywhere in the scanner's stream, not at its end.
        slots = np.concatenate([np.arange(len(cloud)), rng.uniform(0, len(cloud), len(stray))])
        cloud = np.concatenate([cloud, stray])[np.argsort(slots, kind="stable")]
    log.info("raw scan: %d points%s", len(cloud), f", {len(faces)} triangles" if mesh else "")
    return RawScan(points=cloud, faces=faces,
                   view_origins=np.array([v.origin for v in views]))


@dataclass(frozen=True)
class _View:
    origin: np.ndarray   # (3,) mm
    aim: np.ndarray      # (3,) mm
    half_fov: float      # radians, half the image's width


def _views(lo: np.ndarray, hi: np.ndarray, count: int, rng: np.random.Generator) -> list[_View]:
    """Viewpoints in rings around and above the box ``lo``-``hi`` (mm), none below the floor."""
    centre = (lo + hi) / 2
    radius = np.linalg.norm(hi - lo) / 2
    distance = float(np.clip(DISTANCE_PER_RADIUS * radius, *DISTANCE_RANGE_MM))
    half_fov = float(np.arctan(FRAME_MARGIN * radius / distance))
    shares = np.array([share for _, share in RINGS])
    per_ring = np.maximum(1, np.round(shares * count / shares.sum()).astype(int))
    per_ring[0] += count - per_ring.sum()
    views = []
    for (elevation, _), n in zip(RINGS, per_ring, strict=True):
        start = rng.uniform(0.0, 2 * np.pi)
        for k in range(n):
            a = start + 2 * np.pi * k / n + np.radians(rng.normal(0.0, AZIMUTH_JITTER_DEG))
            e = np.radians(elevation + rng.normal(0.0, ELEVATION_JITTER_DEG))
            aim = centre + rng.normal(0.0, AIM_JITTER_MM, 3)
            origin = aim + distance * np.array([np.cos(e) * np.sin(a), np.sin(e),
                                                np.cos(e) * np.cos(a)])
            origin[1] = max(origin[1], MIN_CAMERA_HEIGHT_MM)
            views.append(_View(origin, aim, half_fov))
    return views


def _cast(scene, view: _View, side: int, top: float, cos_limit: float):
    """One range image: (hit mask, range t in mm, unit ray directions), each side x side."""
    forward = view.aim - view.origin
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, [0.0, 1.0, 0.0])
    right /= np.linalg.norm(right)
    up = np.cross(right, forward)
    u = np.tan(view.half_fov) * np.linspace(-1.0, 1.0, side)
    dirs = (forward + u[None, :, None] * right + u[::-1, None, None] * up)
    dirs /= np.linalg.norm(dirs, axis=-1, keepdims=True)
    rays = np.concatenate([np.broadcast_to(view.origin, dirs.shape), dirs], axis=-1)
    result = scene.cast_rays(o3c.Tensor(rays.reshape(-1, 6).astype(np.float32)))
    t = result["t_hit"].numpy().reshape(side, side).astype(np.float64)
    normals = result["primitive_normals"].numpy().reshape(side, side, 3)
    hit = np.isfinite(t)
    t = np.where(hit, t, 0.0)
    # No return from grazing surfaces, nor from outside the crop box.
    hit &= np.abs(np.einsum("ijk,ijk->ij", normals, dirs)) > cos_limit
    hit &= view.origin[1] + dirs[..., 1] * t <= top
    return hit, t, dirs


def _misregister(xyz: np.ndarray, aim: np.ndarray, settings: ScannerSettings,
                 rng: np.random.Generator) -> np.ndarray:
    """Move one view rigidly: a small rotation about ``aim`` and a small shift (mm)."""
    axis = rng.normal(size=3)
    angle = np.radians(settings.misregistration_deg) * rng.normal()
    rot = trimesh.transformations.rotation_matrix(angle, axis)[:3, :3]
    direction = rng.normal(size=3)
    shift = rng.uniform(*settings.misregistration_mm) * direction / np.linalg.norm(direction)
    return (xyz - aim) @ rot.T + aim + shift


def _grid_faces(hit: np.ndarray, xyz: np.ndarray, t: np.ndarray, view: _View,
                side: int) -> np.ndarray:
    """Triangles between neighbouring pixels of one range image, facing the scanner.

    Returns (m, 3) int indices into ``xyz[hit]``.
    """
    index = np.full(hit.shape, -1, dtype=np.int64)
    index[hit] = np.arange(int(hit.sum()))
    # A pixel's footprint at range t is t times the angle between pixels.
    pixel_angle = 2 * np.tan(view.half_fov) / (side - 1)
    quads = [(slice(None, -1), slice(None, -1)), (slice(None, -1), slice(1, None)),
             (slice(1, None), slice(None, -1)), (slice(1, None), slice(1, None))]
    a, b, c, d = (index[q] for q in quads)
    pa, pb, pc, pd = (xyz[q] for q in quads)
    limit = MESH_EDGE_PIXELS * pixel_angle * np.maximum.reduce([t[q] for q in quads])
    out = []
    for (i, j, k), (p, q, r) in (((a, c, b), (pa, pc, pb)), ((b, c, d), (pb, pc, pd))):
        ok = (i >= 0) & (j >= 0) & (k >= 0)
        for e0, e1 in ((p, q), (q, r), (r, p)):
            ok &= np.linalg.norm(e0 - e1, axis=-1) < limit
        tri = np.stack([i[ok], j[ok], k[ok]], axis=1)
        # Face the scanner: flip triangles whose normal points away from it.
        n = np.cross(q[ok] - p[ok], r[ok] - p[ok])
        away = np.einsum("ij,ij->i", n, p[ok] - view.origin) > 0
        tri[away] = tri[away][:, ::-1]
        out.append(tri)
    return np.concatenate(out)


def placement(*, up: str, units: str, rng: np.random.Generator) -> np.ndarray:
    """A random rigid placement from the limb's frame into a scanner's frame.

    A rotation about the up axis by a random angle, a random translation (up
    to ``PLACEMENT_RANGE_MM`` per axis), then, for ``up="z"``, +90 degrees
    about x (y -> z, z -> -y: a proper rotation, never a reflection), then the
    unit scale.  Returns the (4, 4) matrix mapping limb mm to scan units.
    """
    if up not in ("y", "z"):
        raise ValueError(f"up must be 'y' or 'z', got {up!r}")
    if units not in UNITS_PER_MM:
        raise ValueError(f"units must be one of {sorted(UNITS_PER_MM)}, got {units!r}")
    yaw = rng.uniform(0.0, 2 * np.pi)
    matrix = trimesh.transformations.rotation_matrix(yaw, [0.0, 1.0, 0.0])
    matrix[:3, 3] = rng.uniform(-PLACEMENT_RANGE_MM, PLACEMENT_RANGE_MM, 3)
    if up == "z":
        matrix = trimesh.transformations.rotation_matrix(np.pi / 2, [1.0, 0.0, 0.0]) @ matrix
    scale = UNITS_PER_MM[units]
    return np.diag([scale, scale, scale, 1.0]) @ matrix


def transform(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Apply a (4, 4) matrix to points (n, 3) or one point (3,)."""
    p = np.asarray(points, dtype=np.float64)
    return p @ matrix[:3, :3].T + matrix[:3, 3]
