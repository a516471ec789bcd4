"""Generating zoo cases into a cache, and the command line.

This module owns the pipeline of one case (true limb -> scene -> sweeps ->
cloud or mesh -> placement -> files) and the cache folder: ``.zoo-cache/`` at the
repository root, or ``$ORTHOFIT_ZOO_CACHE``. A case is regenerated when its
files are missing or its stamp (a hash of the ``Case`` and ``GENERATOR_VERSION``)
differs. Every random choice comes from one ``numpy`` generator seeded by the
case's seed, so a case gives byte-identical files on every run.

Command line (from the repository root)::

    python -m tests.zoo.generate --list
    python -m tests.zoo.generate --ci | --all | --case NAME [NAME ...] [--out DIR]

It must not import orthofit.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import open3d as o3d
import trimesh
from scipy.spatial import cKDTree

from . import clutter, exchange, scanner, source
from . import truth as records
from .cases import BODIES, CASES, CI_SUBSET, Case, case
from .limb import true_limb

__all__ = ["GENERATOR_VERSION", "cache_dir", "generate_case", "main", "scan_path",
           "true_skin", "truth"]

log = logging.getLogger(__name__)

# Bump when anything changes what a case's files contain.
GENERATOR_VERSION = "zoo-5"
CACHE_ENV = "ORTHOFIT_ZOO_CACHE"
# The crop box reaches this far beyond the limb's skin (mm) in x and z.
CROP_MARGIN_MM = 70.0
# ... and this far below the support (floor or platform top) or below a hanging foot.
CROP_BELOW_SUPPORT_MM = 15.0
CROP_BELOW_HANGING_MM = 40.0
# A skin vertex counts as seen when a limb return lies within this distance (mm):
# about the spacing of one frame's returns at the working distance.
SEEN_WITHIN_MM = 4.0
# Camera heights over the floor [typ, handheld: 10-50 cm for a leg cut below the knee];
# the scanner never goes more than 60 mm above the limb's top, so a thigh-high scan
# goes higher (the upper bound here is only a ceiling). A hanging foot is also scanned
# from below (the operator crouches and holds the scanner up to 120 mm under the foot,
# aimed up at the sole, as in a non-weight-bearing scan): heights over its lowest point.
CAMERA_HEIGHTS_STANDING_MM = (100.0, 1000.0)
CAMERA_HEIGHTS_HANGING_MM = (-120.0, 1000.0)
# TSDF fusion of meshed scans: voxel and truncation (mm); coarse meshes fuse coarser.
MESH_VOXEL_MM, MESH_TRUNC_MM = 1.2, 4.0
COARSE_VOXEL_MM, COARSE_TRUNC_MM = 2.5, 7.0
# Small holes cut in meshed scans: radius range (mm).
HOLE_RADIUS_MM = (2.5, 6.0)
# Clutter placement ranges (mm).
HAND_GAP_MM = (4.0, 18.0)
STOOL_DISTANCE_MM = (40.0, 110.0)
STOOL_RADIUS_MM = (12.0, 20.0)
OTHER_FOOT_GAP_MM = (15.0, 35.0)
OTHER_FOOT_TOE_BEHIND_MM = (40.0, 80.0)
PLATFORM_MARGIN_MM = 60.0
# Skin behind clutter (excused from coverage): within this distance of it (mm), or whose
# outward normal meets it within the second.
SHADOW_NEAR_MM, SHADOW_REACH_MM = 15.0, 300.0
# A meshed scan keeps its connected parts of at least this many faces (the software's
# "remove small pieces"; the limb and any clutter are far larger).
MIN_PART_FACES = 200


def repo_root() -> Path:
    return Path(__file__).resolve().parents[2]


def cache_dir() -> Path:
    """``$ORTHOFIT_ZOO_CACHE`` or ``.zoo-cache`` at the repository root."""
    env = os.environ.get(CACHE_ENV)
    return Path(env) if env else repo_root() / ".zoo-cache"


def case_key(c: Case) -> str:
    """Hash of the case's parameters and the generator version."""
    text = json.dumps({"case": c.params(), "version": GENERATOR_VERSION}, sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:20]


def _files(c: Case, folder: Path) -> dict[str, Path]:
    ext = exchange.SCAN_FORMATS[c.fmt][0]
    return {"scan": folder / f"{c.name}.{ext}", "truth": folder / f"{c.name}.truth.json",
            "skin": folder / f"{c.name}.truth.ply", "stamp": folder / f"{c.name}.stamp"}


def _fresh(c: Case, folder: Path) -> bool:
    files = _files(c, folder)
    if not all(p.exists() for p in files.values()):
        return False
    return files["stamp"].read_text(encoding="utf-8").strip() == case_key(c)


def scan_path(name: str, *, folder: Path | None = None) -> Path:
    """The scan file of case ``name``, generated into the cache when absent or stale."""
    c = case(name)
    folder = folder or cache_dir()
    if not _fresh(c, folder):
        generate_case(c, folder)
    return _files(c, folder)["scan"]


def truth(name: str, *, folder: Path | None = None) -> dict[str, Any]:
    """The truth record (``NAME.truth.json``) of case ``name``."""
    scan_path(name, folder=folder)
    path = _files(case(name), folder or cache_dir())["truth"]
    return json.loads(path.read_text(encoding="utf-8"))


def true_skin(name: str, *, folder: Path | None = None) -> trimesh.Trimesh:
    """The closed true skin of case ``name`` (true mm frame, Y up)."""
    scan_path(name, folder=folder)
    path = _files(case(name), folder or cache_dir())["skin"]
    return read_truth_ply(path)[0]


def read_truth_ply(path: Path) -> tuple[trimesh.Trimesh, np.ndarray, np.ndarray]:
    """Read a ``NAME.truth.ply``: the mesh, its ``cap`` and ``seen`` vertex flags."""
    mesh, props = read_truth_ply_all(path)
    return mesh, props["cap"].astype(bool), props["seen"].astype(bool)


def read_truth_ply_all(path: Path) -> tuple[trimesh.Trimesh, dict[str, np.ndarray]]:
    """Read a ``NAME.truth.ply``: the mesh and every uchar vertex property by name
    (``cap``, ``seen``, ``region``: see ``truth.REGIONS``)."""
    data = path.read_bytes()
    end = data.index(b"end_header\n") + len(b"end_header\n")
    header = data[:end].decode("ascii").split("\n")
    nv = int(next(h for h in header if h.startswith("element vertex")).split()[-1])
    nf = int(next(h for h in header if h.startswith("element face")).split()[-1])
    start = header.index(next(h for h in header if h.startswith("element vertex")))
    names = []
    for line in header[start + 1:]:
        if not line.startswith("property"):
            break
        kind, name = line.split()[1:3]
        if kind == "uchar":
            names.append(name)
    vdt = np.dtype([("p", "<f8", 3)] + [(n, "u1") for n in names])
    fdt = np.dtype([("k", "u1"), ("i", "<i4", 3)])
    vrec = np.frombuffer(data, dtype=vdt, count=nv, offset=end)
    frec = np.frombuffer(data, dtype=fdt, count=nf, offset=end + nv * vdt.itemsize)
    mesh = trimesh.Trimesh(vrec["p"].astype(np.float64), frec["i"].astype(np.int64),
                           process=False)
    return mesh, {n: vrec[n].copy() for n in names}


# ---------------------------------------------------------------------------- pipeline


def _settings(c: Case) -> scanner.ScannerSettings:
    heights = CAMERA_HEIGHTS_HANGING_MM if c.pose == "hanging" else CAMERA_HEIGHTS_STANDING_MM
    return scanner.ScannerSettings(
        sweeps=c.sweeps, frames_per_sweep=c.frames_per_sweep, width_px=c.image_px[0],
        height_px=c.image_px[1], noise_mm=c.noise_mm, camera_height_mm=heights,
        contact_mm=c.contact_mm if c.pose == "standing" else 0.0)


def _clutter_items(c: Case, scene, rng: np.random.Generator
                   ) -> tuple[list[scanner.SceneItem], list[dict]]:
    """The case's clutter meshes, each kept its stated gap off the whole leg, and how."""
    limb = scene.limb
    leg, closed = scene.seen_leg, limb.skin
    items, info = [], []
    for kind in c.clutter:
        if kind == "hand":
            top = min(limb.cut_y, limb.joints["knee"][1])
            ankle_y = limb.joints["ankle"][1]
            height = ankle_y + rng.uniform(0.35, 0.7) * (top - ankle_y)
            mesh, clear = clutter.hand(leg, height_mm=height, gap_mm=rng.uniform(*HAND_GAP_MM),
                                       rng=rng, closed=closed)
        elif kind == "stool_leg":
            # a stool leg stands on the floor below a hanging foot
            drop = 0.0 if limb.floor_y is not None else limb.skin.vertices[:, 1].min() - 150.0
            mesh, clear = clutter.stool_leg(limb.skin, distance_mm=rng.uniform(*STOOL_DISTANCE_MM),
                                            radius_mm=rng.uniform(*STOOL_RADIUS_MM), rng=rng,
                                            leg=leg, closed=closed, floor_shift_mm=drop)
        elif kind == "other_foot":
            if scene.other_leg is None or c.pose != "standing":
                raise ValueError(f"{c.name}: the other foot stands beside a standing foot only")
            mesh, clear = clutter.other_foot(limb.skin, scene.other_leg,
                                             medial_sign=1.0 if c.side == "right" else -1.0,
                                             gap_mm=rng.uniform(*OTHER_FOOT_GAP_MM),
                                             toe_offset_mm=rng.uniform(*OTHER_FOOT_TOE_BEHIND_MM),
                                             leg=leg, closed=closed)
        else:
            raise ValueError(f"{c.name}: unknown clutter {kind!r}")
        items.append(scanner.SceneItem(mesh, scanner.CLUTTER))
        info.append(clear.as_dict())
    return items, info


def _clutter_shadow(skin: trimesh.Trimesh, clutter_meshes: list[trimesh.Trimesh]) -> np.ndarray:
    """Skin vertices behind clutter: within ``SHADOW_NEAR_MM`` of it, or whose outward
    normal meets it within ``SHADOW_REACH_MM``."""
    out = np.zeros(len(skin.vertices), dtype=bool)
    if not clutter_meshes:
        return out
    rc = o3d.t.geometry.RaycastingScene()
    for mesh in clutter_meshes:
        rc.add_triangles(o3d.core.Tensor(np.asarray(mesh.vertices, np.float32)),
                         o3d.core.Tensor(np.asarray(mesh.faces, np.uint32)))
    v = np.asarray(skin.vertices, dtype=np.float64)
    near = rc.compute_distance(o3d.core.Tensor(v.astype(np.float32))).numpy() < SHADOW_NEAR_MM
    rays = np.hstack([v + 0.2 * skin.vertex_normals, skin.vertex_normals]).astype(np.float32)
    t = rc.cast_rays(o3d.core.Tensor(rays))["t_hit"].numpy()
    return near | (t < SHADOW_REACH_MM)


@dataclass
class Built:
    """A case's scene before scanning: the limb, every scene item, the clutter's clearance,
    and the generator (its state after building, for the rest of the pipeline)."""

    scene: Any
    items: list
    clutter: list
    rng: np.random.Generator


def build_scene(c: Case) -> Built:
    """The case's true limb, support and clutter (deterministic from the case's seed)."""
    rng = np.random.default_rng(c.seed)
    scene = true_limb(c)
    limb = scene.limb
    items = [scanner.SceneItem(scene.seen_leg, scanner.LIMB)]
    if c.support == "floor":
        items.append(scanner.SceneItem(clutter.floor(limb.skin), scanner.SUPPORT))
    elif c.support == "platform":
        items.append(scanner.SceneItem(
            clutter.platform(limb.skin, height_mm=c.platform_mm, margin_mm=PLATFORM_MARGIN_MM,
                             rng=rng), scanner.SUPPORT))
    elif c.support != "none":
        raise ValueError(f"{c.name}: unknown support {c.support!r}")
    if (c.support == "none") != (c.pose == "hanging"):
        raise ValueError(f"{c.name}: a hanging foot has no support, a standing one has one")
    more, info = _clutter_items(c, scene, rng)
    return Built(scene, items + more, info, rng)


def _cut_holes(mesh: trimesh.Trimesh, count: int, limb_skin: trimesh.Trimesh,
               rng: np.random.Generator) -> tuple[trimesh.Trimesh, list[dict]]:
    """Remove the faces within a small radius of ``count`` random limb surface points."""
    if count == 0:
        return mesh, []
    centres = mesh.triangles_center
    tree = cKDTree(limb_skin.vertices)
    near_limb = tree.query(centres)[0] < 3.0
    candidates = np.flatnonzero(near_limb)
    drop = np.zeros(len(mesh.faces), dtype=bool)
    holes = []
    for _ in range(count):
        at = centres[candidates[rng.integers(len(candidates))]]
        radius = rng.uniform(*HOLE_RADIUS_MM)
        drop |= np.linalg.norm(centres - at, axis=1) < radius
        holes.append({"center_true_mm": at, "radius_mm": radius})
    out = trimesh.Trimesh(mesh.vertices, mesh.faces[~drop], process=False)
    out.remove_unreferenced_vertices()
    return out, holes


def _drop_small_parts(mesh: trimesh.Trimesh, min_faces: int) -> trimesh.Trimesh:
    """The mesh without its parts of fewer than ``min_faces`` faces (parts joined by
    shared edges: a sliver hanging on by one vertex is a part of its own)."""
    labels = trimesh.graph.connected_component_labels(mesh.face_adjacency,
                                                      node_count=len(mesh.faces))
    size = np.bincount(labels)
    out = trimesh.Trimesh(mesh.vertices, np.asarray(mesh.faces)[size[labels] >= min_faces],
                          process=False)
    out.remove_unreferenced_vertices()
    return out


def _specks(lo: np.ndarray, hi: np.ndarray, count: int, rng: np.random.Generator):
    """``count`` isolated 1 mm triangles in the box: a meshed scan's stray specks."""
    centres = clutter.stray_points(lo, hi, count, rng)
    offsets = rng.normal(size=(count, 3, 3)) * 0.6
    verts = (centres[:, None, :] + offsets).reshape(-1, 3)
    faces = np.arange(3 * count).reshape(-1, 3)
    return verts, faces


def _coarse(mesh: trimesh.Trimesh, vertices: int) -> trimesh.Trimesh:
    """Quadric-decimate to about ``vertices`` vertices; keep a valid (manifold) surface."""
    o3 = o3d.geometry.TriangleMesh(o3d.utility.Vector3dVector(mesh.vertices),
                                   o3d.utility.Vector3iVector(mesh.faces))
    o3 = o3.simplify_quadric_decimation(target_number_of_triangles=2 * vertices)
    o3.remove_degenerate_triangles()
    o3.remove_duplicated_triangles()
    o3.remove_non_manifold_edges()
    o3.remove_unreferenced_vertices()
    out = scanner.canonical_mesh(np.asarray(o3.vertices), np.asarray(o3.triangles))
    # drop the faces on any edge that more than two faces share, keep the largest part,
    # make its winding consistent; repeat while merging equal vertices makes new ones:
    # a valid (manifold, oriented) open surface
    for _ in range(5):
        _, inverse, counts = np.unique(out.edges_sorted, axis=0, return_inverse=True,
                                       return_counts=True)
        bad = (counts[inverse.ravel()] > 2).reshape(-1, 3).any(axis=1)
        if not bad.any() and out.is_winding_consistent and len(out.split(
                only_watertight=False)) == 1:
            return out
        out = trimesh.Trimesh(out.vertices, out.faces[~bad], process=False)
        out.remove_unreferenced_vertices()
        out = max(out.split(only_watertight=False), key=lambda p: len(p.faces))
        trimesh.repair.fix_winding(out)
        out = scanner.canonical_mesh(out.vertices, out.faces)
    raise RuntimeError("the decimated mesh could not be made a valid surface")


def generate_case(c: Case, folder: Path) -> dict[str, Path]:
    """Make case ``c``'s scan, truth JSON and true skin in ``folder``; returns their paths."""
    started = time.perf_counter()
    built = build_scene(c)
    scene, items, rng = built.scene, built.items, built.rng
    limb = scene.limb
    marks = records.landmarks(limb, c.side)
    settings = _settings(c)
    lo, hi = limb.skin.bounds.copy()
    lo[[0, 2]] -= CROP_MARGIN_MM
    hi[[0, 2]] += CROP_MARGIN_MM
    lo[1] = (limb.floor_y - CROP_BELOW_SUPPORT_MM if limb.floor_y is not None
             else lo[1] - CROP_BELOW_HANGING_MM)
    hi[1] = limb.cut_y
    axis = limb.skin.bounds.mean(axis=0)  # the limb's middle (the vertices crowd the toes)
    camera_floor = limb.floor_y if limb.floor_y is not None else limb.skin.vertices[:, 1].min()
    result = scanner.scan(items, settings, axis_point=axis, crop_top_y=limb.cut_y,
                          crop_box=(lo, hi), support_y=limb.floor_y, floor_y=camera_floor,
                          rng=rng)
    open_skin = ~limb.cap
    limb_pts = result.points[result.labels == scanner.LIMB]
    dist = cKDTree(limb_pts).query(limb.skin.vertices)[0]
    seen = (dist < SEEN_WITHIN_MM) & open_skin
    shadow = _clutter_shadow(limb.skin, [i.mesh for i in items if i.label == scanner.CLUTTER])
    region = records.skin_regions(limb, marks, standing=c.pose == "standing",
                                  contact_mm=c.contact_mm, shadow=shadow & open_skin)
    counts: dict[str, int] = {}
    holes: list[dict] = []
    kind = exchange.SCAN_FORMATS[c.fmt][1]
    matrix = records.placement(c.up, c.units, rng)
    if c.capture in ("points", "dense"):
        if kind != "points":
            raise ValueError(f"{c.name}: a point capture needs a point format, not {c.fmt}")
        pts, labels = result.points, result.labels
        keep = c.points - c.stray
        if len(pts) < keep:
            raise RuntimeError(f"{c.name}: the sweeps gave {len(pts)} returns, fewer than the "
                               f"{keep} asked for; raise frames or image size")
        pick = np.sort(rng.choice(len(pts), size=keep, replace=False))
        pts, labels = pts[pick], labels[pick]
        stray = clutter.stray_points(lo, hi, c.stray, rng)
        pts = np.vstack([pts, stray])
        labels = np.concatenate([labels, np.full(c.stray, -1)])
        order = rng.permutation(len(pts))
        pts, labels = pts[order], labels[order]
        counts = {"points": len(pts), "limb": int((labels == scanner.LIMB).sum()),
                  "support": int((labels == scanner.SUPPORT).sum()),
                  "clutter": int((labels == scanner.CLUTTER).sum()), "stray": c.stray,
                  "raw_returns": len(result.points)}
        payload = exchange.points_bytes(records.to_scan(matrix, pts), c.fmt)
    elif c.capture in ("mesh", "coarse_mesh"):
        if kind != "mesh":
            raise ValueError(f"{c.name}: a mesh capture needs a mesh format, not {c.fmt}")
        coarse = c.capture == "coarse_mesh"
        fused = scanner.fuse(result.frames, voxel_mm=COARSE_VOXEL_MM if coarse else MESH_VOXEL_MM,
                             trunc_mm=COARSE_TRUNC_MM if coarse else MESH_TRUNC_MM)
        # nothing above the crop: the software cuts the fused surface at the limb's cut too
        fused = source.slice_below(fused, limb.cut_y)
        if coarse:
            mesh = _coarse(fused, c.points)
        else:
            mesh, holes = _cut_holes(fused, c.holes, limb.skin, rng)
            # the software drops small loose pieces (fringes at the contact line, slivers
            # the holes left)
            mesh = _drop_small_parts(mesh, MIN_PART_FACES)
        verts, faces = np.asarray(mesh.vertices), np.asarray(mesh.faces)
        if c.stray:
            sv, sf = _specks(lo, hi, c.stray, rng)
            faces = np.vstack([faces, sf + len(verts)])
            verts = np.vstack([verts, sv])
        counts = {"vertices": len(verts), "faces": len(faces), "stray_specks": c.stray,
                  "holes_cut": len(holes), "raw_returns": len(result.points)}
        payload = exchange.mesh_bytes(records.to_scan(matrix, verts), faces, c.fmt)
    else:
        raise ValueError(f"{c.name}: unknown capture {c.capture!r}")
    record = records.record(c, limb, marks, matrix, seen=seen, region=region, counts=counts,
                            holes=holes, settings=asdict(settings), version=GENERATOR_VERSION,
                            bodies={k: asdict(v) for k, v in BODIES.items()},
                            clutter=built.clutter)
    files = _files(c, folder)
    folder.mkdir(parents=True, exist_ok=True)
    blobs = {
        "scan": payload,
        "truth": exchange.dumps_truth(record).encode("utf-8"),
        "skin": exchange.truth_ply_bytes(limb.skin.vertices, limb.skin.faces,
                                         np.column_stack([limb.cap, seen]), region),
    }
    for key, blob in blobs.items():
        _write_atomic(files[key], blob)
    _write_atomic(files["stamp"], (case_key(c) + "\n").encode("ascii"))
    log.info("%s: %.1f s", c.name, time.perf_counter() - started)
    return files


def _write_atomic(path: Path, blob: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "wb") as handle:
        handle.write(blob)
    os.replace(tmp, path)


# ---------------------------------------------------------------------------- CLI


def _list() -> str:
    rows = [f"{'name':44s} {'source':13s} {'side':5s} {'unit':4s} {'up':2s} {'extent':10s} "
            f"{'pose':8s} {'capture':11s} {'fmt':9s} clutter"]
    for c in CASES:
        ci = " [ci]" if c.name in CI_SUBSET else ""
        rows.append(f"{c.name:44s} {c.source:13s} {c.side:5s} {c.units:4s} {c.up:2s} "
                    f"{c.extent:10s} {c.pose:8s} {c.capture:11s} {c.fmt:9s} "
                    f"{','.join(c.clutter) or '-'}{' +stray' if c.stray else ''}{ci}")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    """The command line; returns the exit code (0, or 2 for an unknown case)."""
    parser = argparse.ArgumentParser(prog="python -m tests.zoo.generate",
                                     description="Generate zoo scans and their truth.")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--all", action="store_true", help="every case, dense ones too")
    which.add_argument("--ci", action="store_true", help="the CI subset")
    which.add_argument("--case", nargs="+", metavar="NAME", help="the named cases")
    parser.add_argument("--list", action="store_true", help="list the cases")
    parser.add_argument("--out", type=Path, help="folder to write to (default: the cache)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    if args.list:
        print(_list())
    names: list[str] = []
    if args.all:
        names = [c.name for c in CASES]
    elif args.ci:
        names = list(CI_SUBSET)
    elif args.case:
        names = args.case
    folder = args.out or cache_dir()
    for name in names:
        try:
            c = case(name)
        except KeyError as err:
            print(err.args[0], file=sys.stderr)
            return 2
        started = time.perf_counter()
        if _fresh(c, folder):
            print(f"{name}: up to date")
            continue
        files = generate_case(c, folder)
        print(f"{name}: {time.perf_counter() - started:.1f} s -> {files['scan']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
