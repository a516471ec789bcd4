"""Thin walls of known bending stiffness, as closed shells with a "limb" on one side.

Each wall is a profile curve in the x-z plane (its inner face), thickened
by ``t`` away from the limb and extruded ``w`` along y, so that a pure moment
about y bends it through its thickness with I = w t³ / 12.  The limb is a
slab on the inner side, ``clearance`` away, as a device's limb is; with it
the stiffness pipeline finds the inner face as it does on a device.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import trimesh


@dataclass(frozen=True)
class Wall:
    """A wall and its limb; ``inner`` is the profile (k, 2) in (x, z), ``normal`` points away
    from the limb."""

    shell: trimesh.Trimesh
    limb: trimesh.Trimesh
    thickness: float
    width: float


def _band(inner: np.ndarray, normal: np.ndarray, near: float, far: float, y0: float,
          y1: float) -> trimesh.Trimesh:
    """The closed solid between the profile offset by ``near`` and by ``far``, from y0 to y1."""
    a = inner + near * normal
    b = inner + far * normal
    k = len(inner)
    ring = np.vstack([a, b])                       # (2k, 2) in (x, z)
    verts = np.vstack([np.c_[ring[:, 0], np.full(2 * k, y0), ring[:, 1]],
                       np.c_[ring[:, 0], np.full(2 * k, y1), ring[:, 1]]])
    faces = []
    for y in (0, 2 * k):
        for i in range(k - 1):
            # Cap quads between the two offset curves.
            faces += [[y + i, y + i + 1, y + k + i + 1], [y + i, y + k + i + 1, y + k + i]]
    loop = list(range(k)) + [k + i for i in reversed(range(k))]
    for j in range(len(loop)):
        p, q = loop[j], loop[(j + 1) % len(loop)]
        faces += [[p, q, q + 2 * k], [p, q + 2 * k, p + 2 * k]]
    mesh = trimesh.Trimesh(verts, np.array(faces), process=True)
    trimesh.repair.fix_normals(mesh)
    assert mesh.is_watertight and mesh.volume > 0
    return mesh


def _refine(mesh: trimesh.Trimesh, edge: float) -> trimesh.Trimesh:
    return trimesh.Trimesh(*trimesh.remesh.subdivide_to_size(mesh.vertices, mesh.faces,
                                                             max_edge=edge), process=True)


def strip(length: float, width: float, thickness: float, *, clearance: float = 2.0,
          edge: float = 1.0) -> Wall:
    """A flat strip along x from 0 to ``length``, its inner face at z = 0 under a limb above;
    the wall hangs below it, its plantar face at z = -thickness."""
    xs = np.linspace(0.0, length, max(2, int(np.ceil(length / edge)) + 1))
    inner = np.c_[xs, np.zeros_like(xs)]
    normal = np.tile([0.0, -1.0], (len(xs), 1))
    shell = _band(inner, normal, 0.0, thickness, 0.0, width)
    limb = _band(inner, normal, -clearance - 30.0, -clearance, -20.0, width + 20.0)
    return Wall(_refine(shell, edge), limb, thickness, width)


def quarter_ring(radius: float, width: float, thickness: float, *, straight: float,
                 clearance: float = 2.0, edge: float = 1.0) -> Wall:
    """A quarter ring of inner radius ``radius`` about the y axis, from the bottom (0, -R)
    to the side (R, 0), with straight runs of ``straight`` before it (along -x, the clamp)
    and after it (up +z, the cuff); the limb fills its inside."""
    steps = max(8, int(np.ceil(0.5 * np.pi * radius / edge)))
    phi = np.linspace(-0.5 * np.pi, 0.0, steps + 1)
    arc = radius * np.c_[np.cos(phi), np.sin(phi)]
    arc_normal = np.c_[np.cos(phi), np.sin(phi)]
    run = np.linspace(straight, 0.0, max(2, int(np.ceil(straight / edge)) + 1))[:-1]
    before = np.c_[-run, np.full_like(run, -radius)]
    after = np.c_[np.full_like(run, radius), run[::-1]]
    inner = np.vstack([before, arc, after])
    normal = np.vstack([np.tile([0.0, -1.0], (len(before), 1)), arc_normal,
                        np.tile([1.0, 0.0], (len(after), 1))])
    shell = _band(inner, normal, 0.0, thickness, 0.0, width)
    limb = _band(inner, normal, -clearance - 15.0, -clearance, -20.0, width + 20.0)
    return Wall(_refine(shell, edge), limb, thickness, width)
