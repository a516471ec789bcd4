"""What else a scanner sees beside the limb: supports and clutter, in the true frame.

This module owns building the meshes (mm, Y up, the foot's support at y = 0)
of a floor, a platform, an orthotist's hand near the shank, a stool leg, the
other foot beside the forefoot, and the stray points of a scan. Each function
takes the limb's skin (to place the object relative to it) and a seeded
generator, and returns a mesh or points. It must not scan anything or know
about cases or files.

Clutter is, by the definition orthofit works to, what is *not* connected to the
limb: every clutter object keeps its stated gap from the leg's skin everywhere.
``keep_clear`` measures the smallest distance from a clutter surface (sampled
every ``CLEAR_SAMPLE_MM``) to the leg's surface and moves each rigid part of the
object away from the leg until that distance is at least the gap; the builders
of the hand, stool leg and other foot return the achieved minimum with the mesh.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import open3d as o3d
import trimesh

__all__ = ["Clearance", "floor", "hand", "keep_clear", "other_foot", "platform",
           "surface_gap", "stool_leg", "stray_points"]

# Half-size of the floor rectangle beyond the limb (mm): well beyond any crop box.
FLOOR_MARGIN_MM = 1500.0
# The other foot is kept up to this height (mm): its foot and ankle.
OTHER_FOOT_TOP_MM = 110.0
# Clutter surfaces are sampled this finely (mm) to measure their gap from the leg.
CLEAR_SAMPLE_MM = 1.0
# Each push moves a part this much farther than the gap it lacks (mm).
CLEAR_EXTRA_MM = 0.25
CLEAR_MAX_PUSHES = 40


@dataclass(frozen=True)
class Clearance:
    """How a clutter object was kept off the leg: the stated gap, the smallest distance
    achieved from its surface to the leg's skin, and the largest push a part needed (mm)."""

    kind: str
    gap_mm: float
    min_gap_mm: float
    pushed_mm: float

    def as_dict(self) -> dict:
        return {"kind": self.kind, "gap_mm": self.gap_mm, "min_gap_mm": self.min_gap_mm,
                "pushed_mm": self.pushed_mm}


def _samples(mesh: trimesh.Trimesh) -> np.ndarray:
    """The mesh's vertices and, seeded, two points per ``CLEAR_SAMPLE_MM`` squared of its
    surface (so the gap is measured between samples well under a millimetre apart)."""
    count = int(np.ceil(2.0 * mesh.area / CLEAR_SAMPLE_MM ** 2))
    points, _ = trimesh.sample.sample_surface(mesh, count, seed=0)
    return np.vstack([np.asarray(mesh.vertices, dtype=np.float64), points])


class _Leg:
    """The leg's surface for distance queries (and its closed skin for inside tests)."""

    def __init__(self, leg: trimesh.Trimesh, closed: trimesh.Trimesh | None):
        self.surface = o3d.t.geometry.RaycastingScene()
        self.surface.add_triangles(o3d.core.Tensor(np.asarray(leg.vertices, np.float32)),
                                   o3d.core.Tensor(np.asarray(leg.faces, np.uint32)))
        self.closed = None
        if closed is not None:
            self.closed = o3d.t.geometry.RaycastingScene()
            self.closed.add_triangles(o3d.core.Tensor(np.asarray(closed.vertices, np.float32)),
                                      o3d.core.Tensor(np.asarray(closed.faces, np.uint32)))

    def gap(self, points: np.ndarray) -> float:
        """Smallest distance of ``points`` to the leg (mm); negative when one is inside."""
        query = o3d.core.Tensor(points.astype(np.float32))
        d = float(self.surface.compute_distance(query).numpy().min())
        if self.closed is not None and self.closed.compute_occupancy(
                query, nsamples=3).numpy().any():
            return -d if d > 0 else -1.0
        return d


def surface_gap(mesh: trimesh.Trimesh, leg: trimesh.Trimesh,
                closed: trimesh.Trimesh | None = None) -> float:
    """Smallest distance (mm) from ``mesh``'s surface to ``leg``'s; negative when part of
    ``mesh`` lies inside ``closed`` (the closed true skin), if given."""
    return _Leg(leg, closed).gap(_samples(mesh))


def keep_clear(parts: list[tuple[trimesh.Trimesh, np.ndarray]], leg: trimesh.Trimesh,
               gap_mm: float, kind: str, closed: trimesh.Trimesh | None = None
               ) -> tuple[trimesh.Trimesh, Clearance]:
    """Move each rigid part (mesh, unit push direction) away from ``leg`` until every
    point of its surface is at least ``gap_mm`` from the leg's; returns the parts joined
    and the clearance achieved. Raises ``RuntimeError`` when a part cannot be cleared."""
    ruler = _Leg(leg, closed)
    moved, gaps, pushes = [], [], []
    for mesh, direction in parts:
        direction = np.asarray(direction, dtype=np.float64)
        direction = direction / np.linalg.norm(direction)
        points = _samples(mesh)
        shift = np.zeros(3)
        for _ in range(CLEAR_MAX_PUSHES):
            gap = ruler.gap(points + shift)
            if gap >= gap_mm:
                break
            shift = shift + direction * (gap_mm - max(gap, 0.0) + CLEAR_EXTRA_MM)
        else:
            raise RuntimeError(f"{kind}: a part could not be moved {gap_mm:.1f} mm off the leg")
        part = mesh.copy()
        part.apply_translation(shift)
        moved.append(part)
        gaps.append(gap)
        pushes.append(float(np.linalg.norm(shift)))
    joined = trimesh.util.concatenate(moved) if len(moved) > 1 else moved[0]
    return joined, Clearance(kind, float(gap_mm), round(float(min(gaps)), 3),
                             round(float(max(pushes)), 3))


def floor(skin: trimesh.Trimesh) -> trimesh.Trimesh:
    """A floor rectangle at y = 0 under and far round the limb (two triangles, facing up)."""
    lo, hi = skin.bounds
    x0, x1 = lo[0] - FLOOR_MARGIN_MM, hi[0] + FLOOR_MARGIN_MM
    z0, z1 = lo[2] - FLOOR_MARGIN_MM, hi[2] + FLOOR_MARGIN_MM
    verts = np.array([[x0, 0, z0], [x1, 0, z0], [x1, 0, z1], [x0, 0, z1]], dtype=np.float64)
    return trimesh.Trimesh(verts, [[0, 2, 1], [0, 3, 2]], process=False)


def platform(skin: trimesh.Trimesh, *, height_mm: float, margin_mm: float,
             rng: np.random.Generator) -> trimesh.Trimesh:
    """A box whose top (y = 0) reaches ``margin_mm`` (+-20 %) beyond the foot, on a floor.

    The floor under it (y = -height) is part of the mesh.
    """
    foot = skin.vertices[skin.vertices[:, 1] < 30.0]
    lo, hi = foot.min(axis=0), foot.max(axis=0)
    m = margin_mm * rng.uniform(0.8, 1.2, size=4)
    extents = [hi[0] - lo[0] + m[0] + m[1], height_mm, hi[2] - lo[2] + m[2] + m[3]]
    centre = [0.5 * (lo[0] - m[0] + hi[0] + m[1]), -0.5 * height_mm,
              0.5 * (lo[2] - m[2] + hi[2] + m[3])]
    box = trimesh.creation.box(extents=extents)
    box.apply_translation(centre)
    ground = floor(skin)
    ground.apply_translation([0.0, -height_mm, 0.0])
    return trimesh.util.concatenate([box, ground])


def _shank_section(skin: trimesh.Trimesh, y: float) -> tuple[np.ndarray, float]:
    """Centre (3,) and mean radius of the skin's vertices within 5 mm of height y."""
    band = skin.vertices[np.abs(skin.vertices[:, 1] - y) < 5.0]
    centre = band.mean(axis=0)
    radius = float(np.linalg.norm((band - centre)[:, [0, 2]], axis=1).mean())
    return centre, radius


def hand(skin: trimesh.Trimesh, *, height_mm: float, gap_mm: float,
         rng: np.random.Generator, closed: trimesh.Trimesh | None = None
         ) -> tuple[trimesh.Trimesh, Clearance]:
    """An orthotist's hand holding the shank: a palm and four fingers wrapped round it.

    The palm faces the shank ``gap_mm`` from the skin's mean radius at ``height_mm``,
    at a random azimuth; the fingers are capsules tangent to the leg. Where the shank
    is not round that would let a part reach the skin, so every part (palm, each
    finger, the thumb) is then moved straight out from the leg until its whole surface
    is at least ``gap_mm`` from the skin (``keep_clear``).
    """
    centre, radius = _shank_section(skin, height_mm)
    az = rng.uniform(0, 2 * np.pi)
    out = np.array([np.sin(az), 0.0, np.cos(az)])
    tangent = np.array([np.cos(az), 0.0, -np.sin(az)])
    parts = []
    palm = trimesh.creation.icosphere(subdivisions=3, radius=1.0)
    palm.apply_scale([45.0, 50.0, 14.0])
    frame = np.eye(4)
    frame[:3, 0], frame[:3, 1], frame[:3, 2] = tangent, [0, 1, 0], out
    frame[:3, 3] = centre + out * (radius + gap_mm + 14.0 + 10.0)
    palm.apply_transform(frame)
    parts.append((palm, out))
    for k, dy in enumerate((-27.0, -9.0, 9.0, 27.0)):
        length = 70.0 + 8.0 * (k in (1, 2))
        finger = trimesh.creation.capsule(height=length, radius=8.0, count=[12, 12])
        # a capsule lies along its z: lay it along the leg's tangent beside the palm,
        # wrapping round the shank
        turn = np.eye(4)
        wrap = az + (35.0 + length / (2 * radius) * 20.0) * np.pi / 180.0
        pos = centre + np.array([np.sin(wrap), 0.0, np.cos(wrap)]) * (radius + gap_mm + 8.0)
        pos[1] = centre[1] + dy
        ta = np.array([np.cos(wrap), 0.0, -np.sin(wrap)])
        oa = np.array([np.sin(wrap), 0.0, np.cos(wrap)])
        turn[:3, 0], turn[:3, 2] = oa, ta
        turn[:3, 3] = pos
        finger.apply_transform(turn)
        parts.append((finger, oa))
    thumb = trimesh.creation.capsule(height=50.0, radius=9.0, count=[12, 12])
    tt = np.eye(4)
    back = az - 40.0 * np.pi / 180.0
    ob = np.array([np.sin(back), 0.0, np.cos(back)])
    tb = np.array([np.cos(back), 0.0, -np.sin(back)])
    tt[:3, 0], tt[:3, 1], tt[:3, 2] = ob, np.cross(tb, ob), tb
    tt[:3, 3] = centre + ob * (radius + gap_mm + 9.0) + np.array([0, -20.0, 0])
    thumb.apply_transform(tt)
    parts.append((thumb, ob))
    return keep_clear(parts, skin, gap_mm, "hand", closed)


def stool_leg(skin: trimesh.Trimesh, *, distance_mm: float, radius_mm: float,
              rng: np.random.Generator, leg: trimesh.Trimesh | None = None,
              closed: trimesh.Trimesh | None = None, floor_shift_mm: float = 0.0
              ) -> tuple[trimesh.Trimesh, Clearance]:
    """A vertical stool leg from the floor up, ``distance_mm`` from the limb's footprint,
    then moved away (horizontally) until it is ``distance_mm`` from the whole ``leg``
    (default ``skin``) everywhere: a leaning shank can come closer than the footprint.
    ``floor_shift_mm`` moves it down first (the floor below a hanging foot)."""
    foot = skin.vertices[skin.vertices[:, 1] < 60.0]
    centre = foot.mean(axis=0)
    az = rng.uniform(0, 2 * np.pi)
    direction = np.array([np.sin(az), 0.0, np.cos(az)])
    reach = np.max(foot[:, [0, 2]] @ direction[[0, 2]] - centre[[0, 2]] @ direction[[0, 2]])
    pos = centre + direction * (reach + distance_mm + radius_mm)
    post = trimesh.creation.cylinder(radius=radius_mm, height=450.0, sections=32)
    turn = np.array([[1, 0, 0, 0], [0, 0, 1, 0], [0, -1, 0, 0], [0, 0, 0, 1]], dtype=np.float64)
    post.apply_transform(turn)
    post.apply_translation([pos[0], 225.0 + floor_shift_mm, pos[2]])
    return keep_clear([(post, direction)], skin if leg is None else leg, distance_mm,
                      "stool_leg", closed)


def other_foot(skin: trimesh.Trimesh, other_leg: trimesh.Trimesh, *, medial_sign: float,
               gap_mm: float, toe_offset_mm: float, leg: trimesh.Trimesh | None = None,
               closed: trimesh.Trimesh | None = None) -> tuple[trimesh.Trimesh, Clearance]:
    """The body's other leg moved so that its toes stand beside the forefoot.

    ``medial_sign`` is +1 when the scanned leg's medial side is +x (a right leg).
    The other foot's most anterior point ends ``toe_offset_mm`` behind the scanned
    foot's toe tip, its lateral side ``gap_mm`` from the scanned forefoot's medial side;
    then it is moved medially until it is ``gap_mm`` from the whole ``leg`` (default
    ``skin``) everywhere.
    """
    foot = skin.vertices[skin.vertices[:, 1] < 40.0]
    ofoot = other_leg.vertices[other_leg.vertices[:, 1] < 40.0]
    toe_z = foot[:, 2].max()
    forefoot = foot[foot[:, 2] > toe_z - 80.0]
    if medial_sign > 0:
        dx = forefoot[:, 0].max() + gap_mm - ofoot[:, 0].min()
    else:
        dx = forefoot[:, 0].min() - gap_mm - ofoot[:, 0].max()
    dz = (toe_z - toe_offset_mm) - ofoot[:, 2].max()
    # only the foot and ankle: the body's other shank leans toward the mid-line and would
    # cross the scanned leg once the foot is moved beside it
    from .source import cap_cut

    moved, _ = cap_cut(other_leg, OTHER_FOOT_TOP_MM)
    moved.apply_translation([dx, 0.0, dz])
    return keep_clear([(moved, np.array([medial_sign, 0.0, 0.0]))],
                      skin if leg is None else leg, gap_mm, "other_foot", closed)


def stray_points(lo: np.ndarray, hi: np.ndarray, count: int,
                 rng: np.random.Generator) -> np.ndarray:
    """``count`` points uniform in the box [lo, hi] (mm): dust, reflections, a sleeve."""
    return lo + (hi - lo) * rng.uniform(size=(count, 3))
