"""Where a triangle mesh passes through itself.

Two triangles that cross always have an edge of one through the other; each
edge is cast as a ray from one end (through embree when trimesh finds it),
and a first hit short of the other end, on a triangle that does not share
the edge's end, is a crossing.  Used by the shell, which repairs crossings
that smoothing made, and by the checks, which count them.
"""

from __future__ import annotations

import numpy as np
import trimesh

__all__ = ["crossing_points"]

# Rays start this far along their edge, off the triangles at its start (mm).
_RAY_OFFSET_MM = 1e-3


def crossing_points(mesh: trimesh.Trimesh) -> np.ndarray:
    """Where an edge passes through a triangle it does not belong to, (n, 3)."""
    edges = mesh.edges_unique
    start = mesh.vertices[edges[:, 0]]
    span = mesh.vertices[edges[:, 1]] - start
    length = np.linalg.norm(span, axis=1)
    keep = length > 4 * _RAY_OFFSET_MM
    direction = span[keep] / length[keep, None]
    origin = start[keep] + direction * _RAY_OFFSET_MM
    hit_tri, hit_ray, where = mesh.ray.intersects_id(origin, direction, multiple_hits=False,
                                                     return_locations=True)
    if len(hit_ray) == 0:
        return np.zeros((0, 3))
    travelled = np.linalg.norm(where - origin[hit_ray], axis=1)
    short = travelled < length[keep][hit_ray] - 2 * _RAY_OFFSET_MM
    # A hit on a triangle that shares the edge's end vertex is the far end itself.
    ends = edges[keep][hit_ray]
    faces = mesh.faces[hit_tri]
    touches = (faces == ends[:, :1]).any(axis=1) | (faces == ends[:, 1:]).any(axis=1)
    return np.asarray(where[short & ~touches])
