"""What else a scanner sees beside the limb: supports and clutter, in the true frame.

This module owns building the meshes (mm, Y up, the foot's support at y = 0)
of a floor, a platform, an orthotist's hand near the shank, a stool leg, the
other foot beside the forefoot, and the stray points of a scan. Each function
takes the limb's skin (to place the object relative to it) and a seeded
generator, and returns a mesh or points. It must not scan anything or know
about cases or files.
"""

from __future__ import annotations

import numpy as np
import trimesh

__all__ = ["floor", "hand", "other_foot", "platform", "stool_leg", "stray_points"]

# Half-size of the floor rectangle beyond the limb (mm): well beyond any crop box.
FLOOR_MARGIN_MM = 1500.0
# The other foot is kept up to this height (mm): its foot and ankle.
OTHER_FOOT_TOP_MM = 110.0


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
         rng: np.random.Generator) -> trimesh.Trimesh:
    """An orthotist's hand holding the shank: a palm and four fingers wrapped round it.

    The palm faces the shank ``gap_mm`` from the skin's mean radius at ``height_mm``,
    at a random azimuth; the fingers are capsules tangent to the leg.
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
    parts.append(palm)
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
        parts.append(finger)
    thumb = trimesh.creation.capsule(height=50.0, radius=9.0, count=[12, 12])
    tt = np.eye(4)
    back = az - 40.0 * np.pi / 180.0
    ob = np.array([np.sin(back), 0.0, np.cos(back)])
    tb = np.array([np.cos(back), 0.0, -np.sin(back)])
    tt[:3, 0], tt[:3, 1], tt[:3, 2] = ob, np.cross(tb, ob), tb
    tt[:3, 3] = centre + ob * (radius + gap_mm + 9.0) + np.array([0, -20.0, 0])
    thumb.apply_transform(tt)
    parts.append(thumb)
    return trimesh.util.concatenate(parts)


def stool_leg(skin: trimesh.Trimesh, *, distance_mm: float, radius_mm: float,
              rng: np.random.Generator) -> trimesh.Trimesh:
    """A vertical stool leg from the floor up, ``distance_mm`` from the limb's footprint."""
    foot = skin.vertices[skin.vertices[:, 1] < 60.0]
    centre = foot.mean(axis=0)
    az = rng.uniform(0, 2 * np.pi)
    direction = np.array([np.sin(az), 0.0, np.cos(az)])
    reach = np.max(foot[:, [0, 2]] @ direction[[0, 2]] - centre[[0, 2]] @ direction[[0, 2]])
    pos = centre + direction * (reach + distance_mm + radius_mm)
    leg = trimesh.creation.cylinder(radius=radius_mm, height=450.0, sections=32)
    turn = np.array([[1, 0, 0, 0], [0, 0, 1, 0], [0, -1, 0, 0], [0, 0, 0, 1]], dtype=np.float64)
    leg.apply_transform(turn)
    leg.apply_translation([pos[0], 225.0, pos[2]])
    return leg


def other_foot(skin: trimesh.Trimesh, other_leg: trimesh.Trimesh, *, medial_sign: float,
               gap_mm: float, toe_offset_mm: float) -> trimesh.Trimesh:
    """The body's other leg moved so that its toes stand beside the forefoot.

    ``medial_sign`` is +1 when the scanned leg's medial side is +x (a right leg).
    The other foot's most anterior point ends ``toe_offset_mm`` behind the scanned
    foot's toe tip, its lateral side ``gap_mm`` from the scanned forefoot's medial side.
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
    return moved


def stray_points(lo: np.ndarray, hi: np.ndarray, count: int,
                 rng: np.random.Generator) -> np.ndarray:
    """``count`` points uniform in the box [lo, hi] (mm): dust, reflections, a sleeve."""
    return lo + (hi - lo) * rng.uniform(size=(count, 3))
