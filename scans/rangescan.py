"""A virtual handheld scanner: range images of a limb in a room, as a raw scan.

This module owns the simulation of what a structured-light scanner records:
views from around and above the limb (never from below the floor), each a
range image cast with Open3D's ray casting against the limb, the floor or a
platform, and a clutter object; range noise along each ray; a small rigid
misregistration per view; stray points; the sole and the gaps between the
toes unseen where the rays cannot reach.  It returns points, or a mesh
triangulated from each view's neighbouring pixels.  Coordinates are those of
the true limb (mm, Y up, floor at y = 0).  It never imports orthofit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import open3d as o3d
import open3d.core as o3c
import trimesh

# Views: azimuths around the limb at these elevations (degrees), plus one above.
AZIMUTHS = 10
ELEVATIONS_DEG = (8.0, 35.0, 62.0)
# Handheld scanners work ~400-600 mm from the subject [typ].
VIEW_DISTANCE_MM = 550.0
# Structured-light range noise and per-view registration error [typ, DOMAIN.md].
RANGE_NOISE_MM = 0.3
MISREGISTRATION_MM = 0.6
MISREGISTRATION_DEG = 0.15
# Neighbouring pixels closer than this in range belong to one surface.
MESH_EDGE_MM = 4.0
STRAY_POINTS = 300
# Floor kept around the limb's footprint (mm).
FLOOR_MARGIN_MM = 110.0
# Resolution of the coarse pass that sizes the range images.
_PROBE_SIDE = 48


@dataclass(frozen=True)
class Room:
    """What stands around the limb: a floor or a platform, and a clutter object."""

    floor: str = "floor"  # "floor", "platform" or "none"
    clutter: bool = True


def room_meshes(limb: trimesh.Trimesh, room: Room) -> list[trimesh.Trimesh]:
    """The limb and what surrounds it, as meshes (mm, Y up)."""
    lo, hi = limb.bounds
    centre = (lo + hi) / 2
    out = [limb]
    # Scanner apps crop the floor to a margin around the subject.
    extent = hi - lo + 2 * FLOOR_MARGIN_MM
    if room.floor == "floor":
        floor = trimesh.creation.box(extents=(extent[0], 2.0, extent[2]))
        floor.apply_translation([centre[0], -1.0, centre[2]])
        out.append(floor)
    elif room.floor == "platform":
        # A scanning platform: its top is the floor the foot stands on.
        box = trimesh.creation.box(extents=(extent[0], 80.0, extent[2]))
        box.apply_translation([centre[0], -40.0, centre[2]])
        out.append(box)
    if room.clutter:
        # A stool leg standing on the floor, clear of the limb.
        stool = trimesh.creation.cylinder(radius=18.0, height=280.0, sections=24)
        stool.apply_transform(trimesh.transformations.rotation_matrix(np.pi / 2, [1, 0, 0]))
        side = 1.0 if centre[0] > 0 else -1.0
        stool.apply_translation([hi[0] + 60.0 if side > 0 else lo[0] - 60.0, 140.0,
                                 centre[2] + 40.0])
        out.append(stool)
    return out


def _view_origins(limb: trimesh.Trimesh) -> np.ndarray:
    lo, hi = limb.bounds
    target = (lo + hi) / 2
    origins = []
    for elevation in ELEVATIONS_DEG:
        e = np.radians(elevation)
        for k in range(AZIMUTHS):
            a = 2 * np.pi * (k + 0.5 * (elevation > 30)) / AZIMUTHS
            origins.append(target + VIEW_DISTANCE_MM * np.array(
                [np.cos(e) * np.cos(a), np.sin(e), np.cos(e) * np.sin(a)]))
    origins.append(target + [0.0, VIEW_DISTANCE_MM, 1.0])
    return np.array(origins)


def scan(limb: trimesh.Trimesh, *, points: int, room: Room = Room(), mesh: bool = False,
         seed: int = 0) -> tuple[np.ndarray, np.ndarray | None]:
    """Scan ``limb`` in ``room`` with about ``points`` points.

    Returns the points (n, 3) mm and, when ``mesh`` is True, triangles (m, 3)
    made from each view's neighbouring pixels (views overlap, as in a raw scan).
    """
    rng = np.random.default_rng(seed)
    scene = o3d.t.geometry.RaycastingScene()
    for part in room_meshes(limb, room):
        scene.add_triangles(o3c.Tensor(part.vertices.astype(np.float32)),
                            o3c.Tensor(part.faces.astype(np.uint32)))
    lo, hi = limb.bounds
    target = (lo + hi) / 2
    radius = 0.6 * np.linalg.norm(hi - lo)
    origins = _view_origins(limb)
    # A coarse pass measures how much of each image the scene fills; the
    # resolution then gives about the asked number of points.
    probe = sum(len(_range_image(scene, o, target, radius, _PROBE_SIDE, rng, False)[0])
                for o in origins)
    side = int(np.ceil(_PROBE_SIDE * np.sqrt(points / max(probe, 1))))
    all_points, all_faces, offset = [], [], 0
    for origin in origins:
        pts, faces = _range_image(scene, origin, target, radius, side, rng, mesh)
        all_points.append(pts)
        if mesh:
            all_faces.append(faces + offset)
        offset += len(pts)
    cloud = np.vstack(all_points)
    faces = np.vstack(all_faces) if mesh else None
    if not mesh:
        stray = rng.uniform(lo - 80.0, hi + 80.0, (STRAY_POINTS, 3))
        cloud = np.vstack([cloud, stray])
        if len(cloud) > points:
            cloud = cloud[np.sort(rng.choice(len(cloud), points, replace=False))]
    return cloud, faces


def _range_image(scene, origin: np.ndarray, target: np.ndarray, radius: float, side: int,
                 rng: np.random.Generator, mesh: bool):
    forward = (target - origin) / np.linalg.norm(target - origin)
    right = np.cross(forward, [0.0, 1.0, 0.0])
    if np.linalg.norm(right) < 1e-6:
        right = np.array([1.0, 0.0, 0.0])
    right /= np.linalg.norm(right)
    up = np.cross(right, forward)
    half = radius / np.linalg.norm(target - origin)
    u = np.linspace(-half, half, side)
    uu, vv = np.meshgrid(u, u, indexing="xy")
    dirs = forward + uu[..., None] * right + vv[..., None] * up
    dirs /= np.linalg.norm(dirs, axis=-1, keepdims=True)
    rays = np.concatenate([np.broadcast_to(origin, dirs.shape), dirs], axis=-1)
    hit = scene.cast_rays(o3c.Tensor(rays.reshape(-1, 6).astype(np.float32)))
    t = hit["t_hit"].numpy().reshape(side, side).astype(np.float64)
    valid = np.isfinite(t)
    t = np.where(valid, t + rng.normal(0.0, RANGE_NOISE_MM, t.shape), 0.0)
    pts = origin + dirs * t[..., None]
    # Each view is registered with a small rigid error.
    angle = np.radians(MISREGISTRATION_DEG) * rng.normal(size=3)
    rot = trimesh.transformations.euler_matrix(*angle)[:3, :3]
    shift = rng.normal(0.0, MISREGISTRATION_MM, 3)
    pts = (pts - target) @ rot.T + target + shift
    index = -np.ones((side, side), dtype=np.int64)
    index[valid] = np.arange(valid.sum())
    flat = pts[valid]
    if not mesh:
        return flat, None
    a, b = index[:-1, :-1], index[:-1, 1:]
    c, d = index[1:, :-1], index[1:, 1:]
    tt = np.where(valid, t, np.inf)
    faces = []
    for tri, ranges in (((a, c, b), (tt[:-1, :-1], tt[1:, :-1], tt[:-1, 1:])),
                        ((b, c, d), (tt[:-1, 1:], tt[1:, :-1], tt[1:, 1:]))):
        stack = np.stack(ranges)
        ok = np.all(np.stack(tri) >= 0, axis=0)
        with np.errstate(invalid="ignore"):
            ok &= (stack.max(axis=0) - stack.min(axis=0)) < MESH_EDGE_MM
        faces.append(np.stack([x[ok] for x in tri], axis=1))
    return flat, np.vstack(faces)
