"""Pictures of a zoo case for a person to look at: the true skin, what was seen, the scan.

This module owns orthographic, ray-cast PNG renders (Open3D's ``RaycastingScene``
and Pillow, no display needed) of meshes in the true frame: shaded by the
surface's normal, coloured per vertex (e.g. unseen skin red), several views side
by side, with other meshes (clutter, a scanned mesh) drawn in their own colour.
It computes nothing about the case and never imports orthofit.

Command line (from the repository root)::

    python -m tests.zoo.render NAME [--out DIR] [--scene]   # DIR: the cache's png/
    # NAME_seen.png (and NAME_scan.png for a mesh, NAME_scene.png with the clutter)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import open3d as o3d
import trimesh

__all__ = ["VIEWS", "render_views"]

# View name -> (direction the camera looks along, the image's up), in the true frame
# (Y up, +Z anterior, +X the subject's left).
VIEWS = {
    "left": ([1.0, 0.0, 0.0], [0.0, 1.0, 0.0]),     # looking at the body's left side
    "right": ([-1.0, 0.0, 0.0], [0.0, 1.0, 0.0]),
    "front": ([0.0, 0.0, -1.0], [0.0, 1.0, 0.0]),
    "back": ([0.0, 0.0, 1.0], [0.0, 1.0, 0.0]),
    "below": ([0.0, 1.0, 0.0], [0.0, 0.0, 1.0]),
    "above": ([0.0, -1.0, 0.0], [0.0, 0.0, 1.0]),
}


def _view(meshes, colours, direction, up, px_mm, bounds):
    d = np.asarray(direction, dtype=np.float64)
    d /= np.linalg.norm(d)
    up = np.asarray(up, dtype=np.float64)
    right = np.cross(d, up)
    right /= np.linalg.norm(right)
    up = np.cross(right, d)
    lo, hi = bounds
    corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1])
                        for z in (lo[2], hi[2])])
    u = corners @ right
    v = corners @ up
    w_px = int(np.ceil(np.ptp(u) / px_mm)) + 1
    h_px = int(np.ceil(np.ptp(v) / px_mm)) + 1
    uu, vv = np.meshgrid(u.min() + px_mm * np.arange(w_px), v.max() - px_mm * np.arange(h_px))
    start = (corners @ d).min() - 10.0
    origins = (uu[..., None] * right + vv[..., None] * up + start * d).reshape(-1, 3)
    scene = o3d.t.geometry.RaycastingScene()
    ids = []
    for m in meshes:
        ids.append(scene.add_triangles(o3d.core.Tensor(np.asarray(m.vertices, np.float32)),
                                       o3d.core.Tensor(np.asarray(m.faces, np.uint32))))
    rays = np.hstack([origins, np.broadcast_to(d, origins.shape)]).astype(np.float32)
    hit = scene.cast_rays(o3d.core.Tensor(rays))
    t = hit["t_hit"].numpy()
    gid = hit["geometry_ids"].numpy().astype(np.int64)
    prim = hit["primitive_ids"].numpy().astype(np.int64)
    normals = hit["primitive_normals"].numpy().astype(np.float64)
    uv = hit["primitive_uvs"].numpy().astype(np.float64)
    img = np.full((len(t), 3), 255.0)
    ok = np.isfinite(t)
    shade = 0.35 + 0.65 * np.abs(normals @ d)
    for k, (m, colour) in enumerate(zip(meshes, colours)):
        sel = ok & (gid == ids[k])
        if not sel.any():
            continue
        if colour.ndim == 1:
            c = np.broadcast_to(colour, (sel.sum(), 3))
        else:  # per-vertex colours, barycentric
            f = np.asarray(m.faces)[prim[sel]]
            b = np.column_stack([1 - uv[sel].sum(axis=1), uv[sel]])
            c = np.einsum("nk,nkc->nc", b, colour[f])
        img[sel] = c * shade[sel, None]
    return img.reshape(h_px, w_px, 3)


def render_views(meshes, colours, path: Path, *, views=("left", "right", "front", "back",
                                                         "below"), px_mm: float = 1.0,
                 bounds=None) -> Path:
    """Render ``meshes`` (true frame) side by side from ``views`` into the PNG ``path``.

    ``colours``: per mesh an RGB (3,) in 0-255, or per-vertex (n, 3).
    """
    from PIL import Image

    colours = [np.asarray(c, dtype=np.float64) for c in colours]
    if bounds is None:
        lo = np.min([m.bounds[0] for m in meshes[:1]], axis=0) - 20.0
        hi = np.max([m.bounds[1] for m in meshes[:1]], axis=0) + 20.0
        bounds = (lo, hi)
    panels = [_view(meshes, colours, *VIEWS[v], px_mm, bounds) for v in views]
    height = max(p.shape[0] for p in panels)
    row = np.full((height, sum(p.shape[1] for p in panels) + 10 * (len(panels) - 1), 3), 255.0)
    x = 0
    for p in panels:
        row[:p.shape[0], x:x + p.shape[1]] = p
        x += p.shape[1] + 10
    Image.fromarray(np.clip(row, 0, 255).astype(np.uint8)).save(path)
    return path


def main(argv: list[str] | None = None) -> int:
    from .audit import scan_geometry
    from .cases import case

    parser = argparse.ArgumentParser(prog="python -m tests.zoo.render")
    parser.add_argument("names", nargs="+")
    parser.add_argument("--out", type=Path, help="folder (default: the cache's png/)")
    parser.add_argument("--px", type=float, default=1.0)
    parser.add_argument("--scene", action="store_true", help="also NAME_scene.png with clutter")
    args = parser.parse_args(argv)
    if args.out is None:
        from .generate import cache_dir

        args.out = cache_dir() / "png"
    args.out.mkdir(parents=True, exist_ok=True)
    for name in args.names:
        pts, faces, truth, skin, props = scan_geometry(name)
        cap, seen, region = props["cap"].astype(bool), props["seen"].astype(bool), props["region"]
        # unseen skin red, unseen but excused (sole, low sides, toe clefts, top, behind
        # clutter) orange, seen grey, cap blue
        colour = np.where(seen[:, None], [200.0, 200.0, 200.0], [230.0, 40.0, 40.0])
        colour[~seen & (region > 0)] = [240.0, 170.0, 40.0]
        colour[cap] = [120.0, 120.0, 255.0]
        path = render_views([skin], [colour], args.out / f"{name}_seen.png", px_mm=args.px)
        print(path)
        if args.scene:  # the limb with its support cropped away, and the clutter
            from .generate import build_scene
            from .scanner import CLUTTER

            built = build_scene(case(name))
            meshes = [skin] + [i.mesh for i in built.items if i.label == CLUTTER]
            colours = [colour] + [np.array([90.0, 170.0, 90.0])] * (len(meshes) - 1)
            print(render_views(meshes, colours, args.out / f"{name}_scene.png", px_mm=args.px,
                               bounds=(skin.bounds[0] - 60, skin.bounds[1] + 60)))
        if faces is not None:
            scan_mesh = trimesh.Trimesh(pts, faces, process=False)
            path = render_views([scan_mesh], [np.array([200.0, 180.0, 120.0])],
                                args.out / f"{name}_scan.png", px_mm=args.px,
                                bounds=(skin.bounds[0] - 20, skin.bounds[1] + 20))
            print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
