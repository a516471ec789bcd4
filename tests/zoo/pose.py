"""Poses of a true leg: the foot plantarflexed about the ankle, the sole loaded on a floor.

This module owns the two deformations the zoo applies to a leg in the true
frame (mm, Y up, +Z anterior, +X the subject's left):

- ``plantarflex``: the foot of a sitting subject hangs: every vertex turns about
  the mediolateral axis through the ankle joint centre by ``angle * w``, where the
  weight ``w`` falls smoothly (C1) from 1 below the ankle to 0 above it along the
  shank axis. Turning by a blended *angle* (not blending positions) keeps the
  skin from collapsing at the blend and keeps distances to the ankle centre;
- ``load_sole``: a standing subject's weight flattens the sole on the floor: the
  lowest ``depth`` mm of the foot are pressed onto the plane y = 0 with a C1
  blend ``band`` mm high, and the whole leg moves down by ``depth``.

Both map points one to one and keep the mesh's connectivity, so joints and
landmark vertices move with the skin. It must not know about scanners or files.
"""

from __future__ import annotations

import numpy as np

__all__ = ["load_sole", "plantarflex", "plantarflex_points", "rotation_about"]

# The blend over the ankle: full turn this far below the ankle joint centre along
# the shank axis, none this far above it. The malleoli and the heel's top are at
# ~10-30 mm below the joint centre; the blend has to stay above the heel pad and
# below the calf's Achilles tendon region.
BLEND_BELOW_MM = 25.0
BLEND_ABOVE_MM = 60.0


def rotation_about(axis: np.ndarray, angle_rad: float) -> np.ndarray:
    """(3, 3) rotation by ``angle_rad`` about unit ``axis`` (right-hand rule)."""
    axis = np.asarray(axis, dtype=np.float64)
    axis = axis / np.linalg.norm(axis)
    x, y, z = axis
    c, s = np.cos(angle_rad), np.sin(angle_rad)
    k = np.array([[0, -z, y], [z, 0, -x], [-y, x, 0]])
    return np.eye(3) + s * k + (1 - c) * (k @ k)


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def plantarflex_points(points: np.ndarray, ankle: np.ndarray, shank_axis: np.ndarray,
                       angle_deg: float, *, below_mm: float = BLEND_BELOW_MM,
                       above_mm: float = BLEND_ABOVE_MM) -> np.ndarray:
    """Turn ``points`` (n, 3) mm of a leg's foot down by ``angle_deg`` about the ankle.

    The axis is +X (the true frame's mediolateral axis) through ``ankle``; a positive
    angle moves the toes down (plantarflexion) for either side. ``shank_axis`` (3,)
    is the direction from the ankle to the knee; the weight depends on a point's
    height along it relative to the ankle.
    """
    pts = np.asarray(points, dtype=np.float64)
    s = np.asarray(shank_axis, dtype=np.float64)
    s = s / np.linalg.norm(s)
    rel = pts - ankle
    h = rel @ s
    w = 1.0 - _smoothstep((h + below_mm) / (below_mm + above_mm))
    theta = np.radians(angle_deg) * w
    c, si = np.cos(theta), np.sin(theta)
    out = rel.copy()
    out[:, 1] = rel[:, 1] * c - rel[:, 2] * si
    out[:, 2] = rel[:, 1] * si + rel[:, 2] * c
    return out + ankle


def plantarflex(vertices: np.ndarray, ankle: np.ndarray, shank_axis: np.ndarray,
                angle_deg: float) -> np.ndarray:
    """``plantarflex_points`` for a leg's skin vertices; a new (n, 3) array."""
    return plantarflex_points(vertices, ankle, shank_axis, angle_deg)


def load_sole(points: np.ndarray, depth_mm: float, band_mm: float) -> np.ndarray:
    """Press the lowest ``depth_mm`` of a leg (lowest point at y = 0) onto the floor y = 0.

    Every point moves down by ``depth_mm``; those that would fall below the floor
    land on it; those up to ``band_mm`` above it are eased (``t' = b * g(t / b)``
    with ``g(x) = x^2 (2 - x)``: g(0) = g'(0) = 0, g(1) = g'(1) = 1), so the skin
    meets the flat contact patch smoothly. Returns a new (n, 3) array.
    """
    if depth_mm < 0 or band_mm <= 0:
        raise ValueError(f"depth must be >= 0 and band > 0 mm, got {depth_mm}, {band_mm}")
    out = np.asarray(points, dtype=np.float64).copy()
    t = out[:, 1] - depth_mm
    x = np.clip(t / band_mm, 0.0, 1.0)
    eased = band_mm * x * x * (2.0 - x)
    out[:, 1] = np.where(t >= band_mm, t, np.where(t <= 0.0, 0.0, eased))
    return out
