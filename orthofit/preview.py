"""Pictures of a device over its limb, drawn on the CPU by ray casting.

This module owns the preview image: orthographic views of the limb (skin
colour) and the device (blue), each pixel one ray cast with Open3D's
ray-casting scene and shaded by the surface's facing; no GPU and no window.
It returns an RGB array; writing the PNG is ``orthofit.io``'s job.
"""

from __future__ import annotations

import numpy as np
import open3d as o3d
import open3d.core as o3c
import trimesh

__all__ = ["VIEWS", "render_views"]

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
    scene = o3d.t.geometry.RaycastingScene()
    ids = []
    for mesh in (limb, device):
        ids.append(scene.add_triangles(o3c.Tensor(np.asarray(mesh.vertices, np.float32)),
                                       o3c.Tensor(np.asarray(mesh.faces, np.uint32))))
    lo = np.minimum(limb.bounds[0], device.bounds[0])
    hi = np.maximum(limb.bounds[1], device.bounds[1])
    centre, radius = (lo + hi) / 2, np.linalg.norm(hi - lo) / 2 * (1 + _MARGIN)
    tile = width // len(VIEWS)
    panels = [_render(scene, ids, centre, radius, np.array(look), np.array(up), tile, height)
              for _, look, up in VIEWS]
    image = np.concatenate(panels, axis=1)
    if image.shape[1] < width:
        pad = np.full((height, width - image.shape[1], 3), _BACKGROUND)
        image = np.concatenate([image, pad], axis=1)
    return image


def _render(scene, ids, centre, radius, look, up, width, height) -> np.ndarray:
    look = look / np.linalg.norm(look)
    right = np.cross(look, up)
    right /= np.linalg.norm(right)
    true_up = np.cross(right, look)
    scale = 2 * radius / min(width, height)
    u = (np.arange(width) - width / 2) * scale
    v = (height / 2 - np.arange(height)) * scale
    uu, vv = np.meshgrid(u, v)
    origins = centre - look * 2 * radius + uu[..., None] * right + vv[..., None] * true_up
    rays = np.concatenate([origins, np.broadcast_to(look, origins.shape)], axis=-1)
    hit = scene.cast_rays(o3c.Tensor(rays.reshape(-1, 6).astype(np.float32)))
    geometry = hit["geometry_ids"].numpy().reshape(height, width)
    normals = hit["primitive_normals"].numpy().reshape(height, width, 3)
    shade = _LIGHT_AMBIENT + (1 - _LIGHT_AMBIENT) * np.abs(normals @ look)
    image = np.full((height, width, 3), _BACKGROUND)
    for index, geometry_id in enumerate(ids):
        mask = geometry == geometry_id
        image[mask] = shade[mask, None] * _COLOURS[index]
    return image
