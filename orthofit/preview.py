"""Pictures of a device over its limb, drawn on the CPU by ray casting.

This module owns the preview image: orthographic views of the limb (skin
colour) and the device (blue), each pixel one ray cast with Open3D's
ray-casting scene and shaded by the surface's facing; no GPU and no window.
It returns an RGB array; writing the PNG is ``orthofit.io``'s job.
"""

from __future__ import annotations

import numpy as np
import open3d.core as o3c
import trimesh

from .shell import raycasting_scene

__all__ = ["VIEWS", "render_views", "render_coloured", "marker_pixels"]

#: (name, direction the camera looks along, camera up) in the device frame.
VIEWS = (
    ("medial-lateral", (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)),
    ("posterior", (1.0, 0.0, 0.0), (0.0, 0.0, 1.0)),
    ("oblique", (-0.6, 0.55, -0.58), (0.0, 0.0, 1.0)),
    ("plantar", (0.0, 0.0, 1.0), (1.0, 0.0, 0.0)),
)
_COLOURS = np.array([[0.93, 0.80, 0.70], [0.20, 0.45, 0.85]])  # limb, device
_BACKGROUND = 1.0
_LIGHT_AMBIENT = 0.35
# Margin around the meshes in each view, as a share of their size.
_MARGIN = 0.06


def render_views(limb: trimesh.Trimesh, device: trimesh.Trimesh, *, width: int = 1600,
                 height: int = 1000) -> np.ndarray:
    """An RGB image (height, width, 3) float in [0, 1]: the views side by side."""
    return render_coloured([(limb, _COLOURS[0]), (device, _COLOURS[1])], VIEWS,
                           width=width, height=height)


def render_coloured(meshes: list[tuple[trimesh.Trimesh, np.ndarray]],
                    views=VIEWS, *, width: int, height: int) -> np.ndarray:
    """Views side by side of meshes coloured flat (3,) or per vertex (n, 3), RGB in [0, 1].

    Per-vertex colours are interpolated across each triangle from the hit's
    barycentric coordinates, then shaded by the surface's facing.
    """
    scene, ids = raycasting_scene(*(mesh for mesh, _ in meshes))
    centre, radius = _framing([m for m, _ in meshes])
    tile = width // len(views)
    panels = [_render(scene, ids, meshes, _Camera(centre, radius, look, up, tile, height))
              for _, look, up in views]
    image = np.concatenate(panels, axis=1)
    if image.shape[1] < width:
        pad = np.full((height, width - image.shape[1], 3), _BACKGROUND)
        image = np.concatenate([image, pad], axis=1)
    return image


def marker_pixels(meshes: list[trimesh.Trimesh], points: np.ndarray, views=VIEWS, *,
                  width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Where ``points`` (n, 3) fall in :func:`render_coloured`'s image of ``meshes``.

    Returns pixel columns and rows (views, n, 2), tiles offset, and whether
    each point is in sight in each view (not hidden behind a surface).
    """
    scene, _ = raycasting_scene(*meshes)
    centre, radius = _framing(meshes)
    tile = width // len(views)
    pixels, seen = [], []
    for i, (_, look, up) in enumerate(views):
        camera = _Camera(centre, radius, look, up, tile, height)
        rel = np.asarray(points, dtype=float) - centre
        col = rel @ camera.right / camera.scale + tile / 2 + i * tile
        row = height / 2 - rel @ camera.up / camera.scale
        origins = points - camera.look * (rel @ camera.look + 2 * radius)[:, None]
        rays = np.hstack([origins, np.broadcast_to(camera.look, origins.shape)])
        t = scene.cast_rays(o3c.Tensor(rays.astype(np.float32)))["t_hit"].numpy()
        depth = np.linalg.norm(points - origins, axis=1)
        pixels.append(np.stack([col, row], axis=1))
        seen.append(t >= depth - _MARKER_DEPTH_MM)
    return np.array(pixels), np.array(seen)


# A marker counts as in sight when no surface lies more than this in front of it (mm).
_MARKER_DEPTH_MM = 3.0


def _framing(meshes: list[trimesh.Trimesh]) -> tuple[np.ndarray, float]:
    lo = np.min([m.bounds[0] for m in meshes], axis=0)
    hi = np.max([m.bounds[1] for m in meshes], axis=0)
    return (lo + hi) / 2, float(np.linalg.norm(hi - lo) / 2 * (1 + _MARGIN))


class _Camera:
    """An orthographic camera looking along ``look`` at ``centre``, ``radius`` in view."""

    def __init__(self, centre, radius, look, up, width, height):
        self.look = np.asarray(look, dtype=float) / np.linalg.norm(look)
        self.right = np.cross(self.look, up)
        self.right /= np.linalg.norm(self.right)
        self.up = np.cross(self.right, self.look)
        self.scale = 2 * radius / min(width, height)
        self.centre, self.radius, self.width, self.height = centre, radius, width, height

    def rays(self) -> np.ndarray:
        u = (np.arange(self.width) - self.width / 2) * self.scale
        v = (self.height / 2 - np.arange(self.height)) * self.scale
        uu, vv = np.meshgrid(u, v)
        origins = (self.centre - self.look * 2 * self.radius + uu[..., None] * self.right
                   + vv[..., None] * self.up)
        return np.concatenate([origins, np.broadcast_to(self.look, origins.shape)], axis=-1)


def _render(scene, ids, meshes, camera: _Camera) -> np.ndarray:
    look, width, height = camera.look, camera.width, camera.height
    rays = camera.rays()
    hit = scene.cast_rays(o3c.Tensor(rays.reshape(-1, 6).astype(np.float32)))
    geometry = hit["geometry_ids"].numpy().reshape(-1)
    normals = hit["primitive_normals"].numpy().reshape(-1, 3)
    primitive = hit["primitive_ids"].numpy().reshape(-1)
    uv = hit["primitive_uvs"].numpy().reshape(-1, 2)
    shade = _LIGHT_AMBIENT + (1 - _LIGHT_AMBIENT) * np.abs(normals @ look)
    image = np.full((height * width, 3), _BACKGROUND)
    for geometry_id, (mesh, colour) in zip(ids, meshes):
        mask = geometry == geometry_id
        colour = np.asarray(colour, dtype=float)
        if colour.ndim == 1:
            rgb = np.broadcast_to(colour, (int(mask.sum()), 3))
        else:
            corners = colour[np.asarray(mesh.faces)[primitive[mask]]]  # (k, 3, 3)
            a, b = uv[mask, 0:1], uv[mask, 1:2]
            rgb = (1 - a - b) * corners[:, 0] + a * corners[:, 1] + b * corners[:, 2]
        image[mask] = shade[mask, None] * rgb
    return image.reshape(height, width, 3)
