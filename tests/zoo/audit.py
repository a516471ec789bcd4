"""Auditing generated zoo cases against their own truth: is a case realistic?

This module owns the zoo's self-checks, measured from the files a case wrote
(scan, truth JSON, true skin) and nothing else:

- ``scan_geometry``: reading any zoo scan file back (points, or a mesh's
  vertices and faces) and moving it into the true frame;
- ``surface_error``: the signed distance (mm, negative inside) to the closed true
  skin of the scan's points or mesh vertices near it (``|sd| < NEAR_MM``),
  leaving out what lies on the support plane (the floor or platform the foot
  stands on is not skin) and what lies nearer to clutter than to the skin;
- ``inner_sheet``: for a meshed scan, the share of its surface lying a few mm
  *inside* the skin (a TSDF double wall) and whether the part near the skin is a
  single sheet (probed along the skin's inward normals: one crossing, not two);
- ``unseen``: the share of the open skin the scan never saw, split into the
  parts a real scan misses (sole, the lowest few mm of the sides, between the toes,
  the top cut, behind clutter) and the rest;
- ``clutter_gaps``: every clutter object's smallest distance to the true skin
  (clutter is what is not connected to the limb: it keeps its stated gap).

Command line (from the repository root)::

    python -m tests.zoo.audit [NAME ...]    # every non-dense case by default; exit 1 on
                                            # any case breaking a LIMIT

It never imports orthofit.
"""

from __future__ import annotations

import json
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import trimesh

from . import exchange, fit
from .cases import CASES, case
from .generate import _files, cache_dir, read_truth_ply_all, scan_path
from .truth import unseen_shares

__all__ = ["inner_sheet", "read_scan", "scan_geometry", "surface_error", "unseen"]

# Scan points this close to the true skin (mm) count as the skin's (the rest is clutter,
# support and strays).
NEAR_MM = 10.0
# Points within this height (mm) of the support plane are the support's.
SUPPORT_BAND_MM = 1.5
# What a realistic case keeps to (``problems``): the near points' signed distance median
# and p1 / p99 (mm), a meshed scan's inner sheet (share of probes crossing it twice, share
# of its area 2-10 mm inside), the unseen share of the skin outside the parts a real scan
# misses, measured both from the generator's returns and from the file.
LIMITS = {"median_mm": 0.5, "tail_mm": 1.5, "double_share": 0.02, "inside_area_share": 0.01,
          "unseen_rest": 0.05}


def _read_xyz(data: bytes) -> np.ndarray:
    return np.loadtxt(data.decode("ascii").splitlines(), dtype=np.float64).reshape(-1, 3)


def _read_pcd(data: bytes) -> np.ndarray:
    end = data.index(b"DATA ")
    line_end = data.index(b"\n", end) + 1
    header = data[:line_end].decode("ascii")
    n = int(next(h for h in header.splitlines() if h.startswith("POINTS")).split()[1])
    if "DATA binary" in header:
        return np.frombuffer(data, dtype="<f4", count=3 * n, offset=line_end).reshape(-1, 3)
    return _read_xyz(data[line_end:])


def read_scan(path: Path, fmt: str) -> tuple[np.ndarray, np.ndarray | None]:
    """A zoo scan file's (n, 3) points (or vertices) and (m, 3) faces (None for points)."""
    data = Path(path).read_bytes()
    ext, kind = exchange.SCAN_FORMATS[fmt]
    if fmt == "xyz":
        return _read_xyz(data), None
    if fmt in ("pcd", "pcd_ascii"):
        return _read_pcd(data).astype(np.float64), None
    if kind == "points":
        cloud = trimesh.load(trimesh.util.wrap_as_stream(data), file_type=ext, process=False)
        return np.asarray(cloud.vertices, dtype=np.float64), None
    mesh = trimesh.load(trimesh.util.wrap_as_stream(data), file_type=ext, force="mesh",
                        process=False)
    mesh.merge_vertices(digits_vertex=6)
    return np.asarray(mesh.vertices, dtype=np.float64), np.asarray(mesh.faces, dtype=np.int64)


def scan_geometry(name: str, folder: Path | None = None, *, regenerate: bool = True):
    """(points in the true frame (mm), faces or None, truth record, true skin, its vertex
    properties ``cap``, ``seen``, ``region``)."""
    c = case(name)
    folder = folder or cache_dir()
    files = _files(c, folder)
    path = scan_path(name, folder=folder) if regenerate else files["scan"]
    truth = json.loads(files["truth"].read_text(encoding="utf-8"))
    skin, props = read_truth_ply_all(files["skin"])
    props.setdefault("region", np.zeros(len(skin.vertices), dtype=np.uint8))  # older files
    pts, faces = read_scan(path, c.fmt)
    to_true = np.linalg.inv(np.asarray(truth["true_to_scan"], dtype=np.float64))
    return fit._apply(to_true, pts), faces, truth, skin, props


def _support_height(truth: dict[str, Any], pts: np.ndarray) -> np.ndarray | None:
    """Height of true-frame points over the support plane (None without a support)."""
    if not truth["has_floor"]:
        return None
    return pts[:, 1]  # the support's top is y = 0 in the true frame


def surface_error(pts: np.ndarray, truth: dict[str, Any], skin: trimesh.Trimesh,
                  faces: np.ndarray | None = None,
                  clutter: list[trimesh.Trimesh] | None = None) -> dict[str, Any]:
    """Percentiles (1, 5, 25, 50, 75, 95, 99) of the signed distance of the near points:
    within ``NEAR_MM`` of the skin, off the support plane, not nearer to a ``clutter``
    mesh than to the skin, and (meshes) not in an isolated speck."""
    sd = fit.signed_distance(skin, pts)
    near = np.abs(sd) < NEAR_MM
    if clutter:
        near &= _distance_to(clutter, pts) > np.abs(sd)
    height = _support_height(truth, pts)
    if height is not None:
        near &= np.abs(height) > SUPPORT_BAND_MM
    if faces is not None:  # a mesh: leave out the isolated stray specks (3-vertex parts)
        near &= _in_large_part(len(pts), faces)
    values = sd[near]
    q = np.percentile(values, [1, 5, 25, 50, 75, 95, 99]) if len(values) else [np.nan] * 7
    return {"n": int(near.sum()), "share_near": float(near.mean()),
            "p": [round(float(v), 3) for v in q],
            "inside_3mm_share": float((values < -2.0).mean()) if len(values) else np.nan}


def _distance_to(meshes: list[trimesh.Trimesh], pts: np.ndarray) -> np.ndarray:
    import open3d as o3d

    scene = o3d.t.geometry.RaycastingScene()
    for mesh in meshes:
        scene.add_triangles(o3d.core.Tensor(np.asarray(mesh.vertices, np.float32)),
                            o3d.core.Tensor(np.asarray(mesh.faces, np.uint32)))
    return scene.compute_distance(o3d.core.Tensor(pts.astype(np.float32))).numpy()


@lru_cache(maxsize=4)
def clutter_meshes(name: str) -> tuple[trimesh.Trimesh, ...]:
    """The case's clutter meshes in the true frame (one per ``Case.clutter`` entry),
    rebuilt (deterministically) as the generator built them."""
    from .generate import build_scene
    from .scanner import CLUTTER

    c = case(name)
    if not c.clutter:
        return ()
    return tuple(i.mesh for i in build_scene(c).items if i.label == CLUTTER)


def clutter_gaps(name: str, skin: trimesh.Trimesh, stated: list[float]) -> list[dict[str, Any]]:
    """Each clutter object's smallest signed distance to the closed true skin (negative:
    inside it), measured both ways (seeded points, four a square millimetre, of the
    clutter's surface against the skin's triangles, and the skin's vertices against the
    clutter's triangles), with its ``stated`` gap."""
    c = case(name)
    out = []
    for kind, mesh, gap_mm in zip(c.clutter, clutter_meshes(name), stated):
        count = int(np.ceil(4.0 * mesh.area))  # four points a square millimetre
        points, _ = trimesh.sample.sample_surface(mesh, count, seed=1)
        sd = fit.signed_distance(skin, np.vstack([mesh.vertices, points]))
        back = _distance_to([mesh], np.asarray(skin.vertices))
        gap = min(float(sd.min()), float(back.min()))
        out.append({"kind": kind, "gap_mm": gap_mm, "min_gap_mm": gap})
    return out


def _in_large_part(n: int, faces: np.ndarray, min_faces: int = 50) -> np.ndarray:
    """Vertices that belong to a connected part of at least ``min_faces`` faces."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    a = np.concatenate([faces[:, 0], faces[:, 1], faces[:, 2]])
    b = np.concatenate([faces[:, 1], faces[:, 2], faces[:, 0]])
    graph = coo_matrix((np.ones(len(a)), (a, b)), shape=(n, n))
    _, comp = connected_components(graph, directed=False)
    face_comp = comp[faces[:, 0]]
    sizes = np.bincount(face_comp, minlength=comp.max() + 1)
    return sizes[comp] >= min_faces


def inner_sheet(verts: np.ndarray, faces: np.ndarray, skin: trimesh.Trimesh, cap: np.ndarray,
                *, outside_mm: float = 4.0, inside_mm: float = 6.0,
                probes: int = 4000) -> dict[str, Any]:
    """How many sheets of a meshed scan lie along the skin's normals.

    From ``probes`` seeded, area-uniform points of the skin (not the cap), a segment
    from ``outside_mm`` outside to ``inside_mm`` inside along the skin's inward normal
    is cast against the scan mesh: a single surface on the skin crosses it once (or not
    at all, in a hole); a double wall (a second sheet a few mm inside) twice. Returns
    the share of the probes that cross the scan at all (``hit_share``), the share of
    those that cross it twice or more (``double_share``), and the share of the mesh's
    area (its large parts) lying 2 to ``NEAR_MM`` mm inside the skin.
    """
    import open3d as o3d

    mesh = trimesh.Trimesh(verts, faces, process=False)
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(verts.astype(np.float32)),
                        o3d.core.Tensor(faces.astype(np.uint32)))
    on_cap = cap[skin.faces].all(axis=1)
    skin_only = trimesh.Trimesh(skin.vertices, skin.faces[~on_cap], process=False)
    at, face = trimesh.sample.sample_surface(skin_only, probes, seed=0)
    normal = skin_only.face_normals[face]
    origin = at + normal * outside_mm
    direction = -normal
    crossings = np.zeros(len(at), dtype=np.int64)
    remaining = np.full(len(at), outside_mm + inside_mm)
    alive = np.ones(len(at), dtype=bool)
    for _ in range(6):  # walk along each probe, counting crossings
        rays = np.hstack([origin, direction]).astype(np.float32)
        t = scene.cast_rays(o3d.core.Tensor(rays))["t_hit"].numpy().astype(np.float64)
        hit = alive & np.isfinite(t) & (t < remaining)
        crossings += hit
        step = np.where(hit, t + 0.05, 0.0)
        origin = origin + direction * step[:, None]
        remaining = remaining - step
        alive = hit
        if not alive.any():
            break
    sd = fit.signed_distance(skin, mesh.triangles_center)
    area = mesh.area_faces
    big = _in_large_part(len(verts), faces)[faces[:, 0]]
    inside = big & (sd < -2.0) & (sd > -NEAR_MM)
    crossed = crossings >= 1
    return {"probes": int(len(at)), "hit_share": float(crossed.mean()),
            "double_share": float((crossings >= 2).sum() / max(crossed.sum(), 1)),
            "inside_area_share": float(area[inside].sum() / area[big].sum())}


def seen_from_scan(pts: np.ndarray, skin: trimesh.Trimesh, cap: np.ndarray,
                   faces: np.ndarray | None = None, within_mm: float = 4.0) -> np.ndarray:
    """Skin vertices (not the cap) within ``within_mm`` of a point of the scan file (or of
    its mesh's surface): what the file shows of the skin, independent of the generator's
    own ``seen`` flags."""
    if faces is not None:
        mesh = trimesh.Trimesh(pts, faces, process=False)
        d = _distance_to([mesh], np.asarray(skin.vertices))
    else:
        from scipy.spatial import cKDTree

        d = cKDTree(pts).query(skin.vertices, distance_upper_bound=within_mm)[0]
    return (d < within_mm) & ~cap


def unseen(skin: trimesh.Trimesh, cap: np.ndarray, seen: np.ndarray,
           region: np.ndarray) -> dict[str, Any]:
    """Area shares of the open skin unseen, in all, by region, and the rest's own share."""
    return unseen_shares(skin, cap, seen, region)


def audit(name: str, folder: Path | None = None) -> dict[str, Any]:
    """Every measure of one case."""
    pts, faces, truth, skin, props = scan_geometry(name, folder)
    cap, seen, region = props["cap"].astype(bool), props["seen"].astype(bool), props["region"]
    out: dict[str, Any] = {"name": name, "capture": truth["capture"]}
    out["surface"] = surface_error(pts, truth, skin, faces, list(clutter_meshes(name)))
    if faces is not None and truth["capture"] == "mesh":
        out["sheet"] = inner_sheet(pts, faces, skin, cap)
    out["unseen"] = unseen(skin, cap, seen, region)
    out["unseen_file"] = unseen(skin, cap, seen_from_scan(pts, skin, cap, faces), region)
    out["clutter"] = truth["generator"].get("clutter")
    out["clutter_measured"] = clutter_gaps(name, skin,
                                           [k["gap_mm"] for k in out["clutter"] or []])
    out["ankle_angle_deg"] = truth["ankle_angle_deg"]
    return out


def problems(row: dict[str, Any]) -> list[str]:
    """What in one case's ``audit`` row breaks the ``LIMITS`` (empty: realistic)."""
    out = []
    p1, median, p99 = row["surface"]["p"][0], row["surface"]["p"][3], row["surface"]["p"][6]
    if abs(median) > LIMITS["median_mm"]:
        out.append(f"signed distance median {median:+.2f} mm")
    if p1 < -LIMITS["tail_mm"] or p99 > LIMITS["tail_mm"]:
        out.append(f"signed distance p1 {p1:+.2f} / p99 {p99:+.2f} mm")
    sheet = row.get("sheet")
    if sheet and (sheet["double_share"] > LIMITS["double_share"]
                  or sheet["inside_area_share"] > LIMITS["inside_area_share"]):
        out.append(f"inner sheet: {100 * sheet['double_share']:.1f} % of probes cross twice, "
                   f"{100 * sheet['inside_area_share']:.1f} % of the area lies inside")
    for key in ("unseen", "unseen_file"):
        if row[key]["rest"] > LIMITS["unseen_rest"]:
            out.append(f"{key}: {100 * row[key]['rest']:.1f} % of the skin outside sole, low "
                       "sides, toe clefts, top and clutter shadow unseen")
    for item in row["clutter"] or []:
        if item["min_gap_mm"] < item["gap_mm"]:
            out.append(f"{item['kind']} {item['min_gap_mm']:.2f} mm off the skin, under its "
                       f"gap {item['gap_mm']:.2f} mm")
    for item in row.get("clutter_measured") or []:
        if item["min_gap_mm"] < item["gap_mm"] - 0.05:
            out.append(f"{item['kind']} measured {item['min_gap_mm']:.2f} mm off the skin")
    return out


def main(argv: list[str] | None = None) -> int:
    """Print every case's measures; exit 1 when any case breaks a limit."""
    names = (argv if argv else None) or [c.name for c in CASES if not c.dense]
    failed = 0
    for name in names:
        row = audit(name)
        s, u = row["surface"], row["unseen"]
        line = (f"{name:44s} sd p1..p99 {' '.join(f'{x:6.2f}' for x in s['p'])} | unseen "
                f"{u['all']:.3f} rest {u['rest']:.3f} (sole {u['sole']:.3f} low "
                f"{u['low_side']:.3f} toes {u['toe_cleft']:.3f} top {u['top']:.3f} shadow "
                f"{u['clutter_shadow']:.3f}) file-rest {row['unseen_file']['rest']:.3f} | "
                f"angle {row['ankle_angle_deg']:.1f}")
        if "sheet" in row:
            line += (f" | double {row['sheet']['double_share']:.3f} "
                     f"inside-area {row['sheet']['inside_area_share']:.3f}")
        if row["clutter"]:
            line += " | gap " + " ".join(
                f"{k['kind']} {k['gap_mm']:.1f}->{k['min_gap_mm']:.1f} "
                f"(measured {m['min_gap_mm']:.1f})"
                for k, m in zip(row["clutter"], row["clutter_measured"]))
        print(line, flush=True)
        for problem in problems(row):
            failed += 1
            print(f"  PROBLEM {name}: {problem}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
