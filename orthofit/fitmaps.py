"""Per-point fields the fit report draws: the gap from skin to shell, and wall thickness.

``skin_gap`` gives, for each limb vertex, the distance to the device's
surface where the device covers it (NaN elsewhere); ``wall_thickness_at``
gives, for each device vertex, the wall's thickness along its inward normal.
Both by Open3D ray casting and closest-point queries, in mm, device frame.
It must not draw pictures or write files.
"""

from __future__ import annotations

import numpy as np
import open3d.core as o3c
import trimesh

from .shell import raycasting_scene

__all__ = ["skin_gap", "wall_thickness_at"]

# Rays start this far inside the surface so they do not hit their own face (mm).
_RAY_OFFSET_MM = 1e-3


def skin_gap(limb: trimesh.Trimesh, device: trimesh.Trimesh, *, reach_mm: float) -> np.ndarray:
    """Distance (mm) from each limb vertex to the device, NaN where it is over ``reach_mm``.

    Where the shell covers the skin, the nearest device surface is the wall's
    inner face, so the distance is the clearance there; skin further than
    ``reach_mm`` from any part of the device is not under the shell.
    """
    points = o3c.Tensor(np.asarray(limb.vertices, dtype=np.float32))
    gap = raycasting_scene(device)[0].compute_distance(points).numpy().astype(np.float64)
    gap[gap > reach_mm] = np.nan
    return gap


def wall_thickness_at(device: trimesh.Trimesh) -> np.ndarray:
    """Wall thickness (mm) at each device vertex: the inward ray's run to the far face.

    NaN where the inward ray leaves the mesh without a hit (a vertex on a
    sharp rim).
    """
    normals = np.asarray(device.vertex_normals)
    origins = np.asarray(device.vertices) - normals * _RAY_OFFSET_MM
    rays = np.hstack([origins, -normals]).astype(np.float32)
    scene, _ = raycasting_scene(device)
    hit = scene.cast_rays(o3c.Tensor(rays))["t_hit"].numpy().astype(np.float64)
    hit[~np.isfinite(hit)] = np.nan
    return hit + _RAY_OFFSET_MM
