"""True limbs from the reference bodies: MakeHuman (CC0) and Visible Human Female (CC BY 4.0).

This module owns reading the two reference bodies in ``shared/data`` and
turning one leg of either into a *leg*: the skin of that leg from the sole up
to well above the knee, in mm, in the *true frame* (Y up, +Z anterior, +X the
subject's left, the lowest sole point at y = 0), with its joint centres; and
cutting a leg at a height into a closed, outward-wound *true skin* with a flat
cap. It parses MakeHuman's OBJ and morph targets itself.

It knows nothing about scanners, poses, units other than mm, or file formats,
and never imports orthofit.
"""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import trimesh

__all__ = [
    "Leg", "MakeHumanBody", "SHARED_DATA_ENV", "VH_ATTRIBUTION", "cap_cut", "load_makehuman",
    "load_vh_skin", "makehuman_leg", "shared_data_dir", "vh_leg",
]

# The environment variable that points at the shared ``data`` folder.
SHARED_DATA_ENV = "ORTHOFIT_SHARED_DATA"
# base.obj and its targets are in decimetres.
DM_TO_MM = 100.0
# The Visible Human skin is in metres.
M_TO_MM = 1000.0
# The attribution CC BY 4.0 asks for, as shared/data/README.md words it.
VH_ATTRIBUTION = ("VH_F_Skin v1.1, HuBMAP CCF 3D Reference Object Library, built from NLM "
                  "Visible Human Project data, CC BY 4.0")
# The only group of base.obj that is skin.
SKIN_GROUP = "body"
# A leg keeps the skin up to this far below MakeHuman's hip joint helper: low enough
# that the two legs are apart (the crotch is ~90 mm below the hip joint centre), high
# enough for a mid-thigh cut.
MH_LEG_TOP_BELOW_HIP_MM = 160.0
# Loop subdivisions of a MakeHuman leg: edges of ~10-20 mm become ~3-5 mm.
MH_SUBDIVISIONS = 2
# The Visible Human leg is kept up to this share of the body's height (mid-thigh is
# at ~0.39 of stature; the crotch at ~0.45).
VH_LEG_TOP_SHARE = 0.42


def shared_data_dir() -> Path:
    """The shared data folder: ``$ORTHOFIT_SHARED_DATA`` or ``../shared/data`` from the repo."""
    env = os.environ.get(SHARED_DATA_ENV)
    if env:
        return Path(env)
    repo = Path(__file__).resolve().parents[2]
    return repo.parent / "shared" / "data"


@dataclass(frozen=True)
class MakeHumanBody:
    """MakeHuman's base mesh as parsed from ``base.obj``.

    vertices : (n, 3) float, decimetres, Y up, +Z anterior, +X the subject's left
    skin_faces : (m, 3) int, the ``body`` group's quads split into triangles
    groups : helper group name -> indices of its vertices (joints are small cubes)
    """

    vertices: np.ndarray
    skin_faces: np.ndarray
    groups: Mapping[str, np.ndarray]

    def joint(self, vertices: np.ndarray, name: str) -> np.ndarray:
        """Centre of joint helper ``name`` (e.g. ``joint-l-ankle``) in ``vertices``."""
        return vertices[self.groups[name]].mean(axis=0)


@lru_cache(maxsize=1)
def load_makehuman() -> MakeHumanBody:
    """Parse ``makehuman-cc0/base.obj``: vertices, the skin's triangles, helper groups."""
    path = shared_data_dir() / "makehuman-cc0" / "base.obj"
    vertices: list[list[float]] = []
    faces: dict[str, list[list[int]]] = {}
    group = ""
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("v "):
                vertices.append([float(t) for t in line.split()[1:4]])
            elif line.startswith("g "):
                group = line.split()[1]
                faces.setdefault(group, [])
            elif line.startswith("f "):
                faces[group].append([int(t.split("/")[0]) - 1 for t in line.split()[1:]])
    if SKIN_GROUP not in faces:
        raise RuntimeError(f"{path} has no '{SKIN_GROUP}' group")
    tris = []
    for face in faces[SKIN_GROUP]:
        for k in range(1, len(face) - 1):
            tris.append([face[0], face[k], face[k + 1]])
    groups = {name: np.unique(np.asarray(f, dtype=np.int64).ravel())
              for name, f in faces.items() if name != SKIN_GROUP and f}
    return MakeHumanBody(np.asarray(vertices, dtype=np.float64),
                         np.asarray(tris, dtype=np.int64), groups)


@lru_cache(maxsize=64)
def _target(name: str) -> tuple[np.ndarray, np.ndarray]:
    """One morph target ``feet/l-foot-scale-decr``: (indices, (k, 3) offsets in dm)."""
    path = shared_data_dir() / "makehuman-cc0" / "targets" / f"{name}.target.gz"
    if not path.exists():
        raise FileNotFoundError(f"no MakeHuman target {name!r} at {path}")
    rows = []
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        for line in handle:
            parts = line.split()
            if len(parts) == 4 and not line.startswith("#"):
                rows.append(parts)
    data = np.asarray(rows, dtype=np.float64)
    return data[:, 0].astype(np.int64), data[:, 1:]


def apply_targets(vertices: np.ndarray, targets: Mapping[str, float]) -> np.ndarray:
    """``V[i] += w * d`` for every target; ``vertices`` (n, 3) dm, returns a new array."""
    out = vertices.copy()
    for name in sorted(targets):
        idx, delta = _target(name)
        out[idx] += float(targets[name]) * delta
    return out


@dataclass(frozen=True)
class Leg:
    """One leg's open skin in the true frame (mm, Y up, +Z anterior, +X the subject's left).

    skin : open skin from the sole to ``top_y`` (the ragged top edge is open)
    joints : name -> (3,) mm; at least ``ankle`` and ``knee``; MakeHuman legs add
        ``mtp1``, ``mtp2``, ``mtp5`` (the first metatarsophalangeal joint helpers)
    other : the other leg of the same body in the same frame (clutter), or None
    source : ``makehuman`` or ``visible_human``
    """

    skin: trimesh.Trimesh
    joints: Mapping[str, np.ndarray]
    other: trimesh.Trimesh | None
    source: str
    top_y: float


def _largest_part(mesh: trimesh.Trimesh) -> trimesh.Trimesh:
    parts = mesh.split(only_watertight=False)
    return max(parts, key=lambda p: len(p.faces))


def _leg_faces(vertices: np.ndarray, faces: np.ndarray, sign: float, top_y: float) -> np.ndarray:
    """Faces whose vertices are all below ``top_y`` and on the ``sign`` side of x = 0."""
    tri = vertices[faces]
    keep = (tri[:, :, 1] < top_y).all(axis=1) & (sign * tri[:, :, 0] > 0).all(axis=1)
    return faces[keep]


def _submesh(vertices: np.ndarray, faces: np.ndarray) -> trimesh.Trimesh:
    mesh = trimesh.Trimesh(vertices, faces, process=False)
    mesh.remove_unreferenced_vertices()
    return _largest_part(mesh)


def makehuman_leg(side: str, targets: Mapping[str, float], *,
                  foot_length_mm: float | None = None) -> Leg:
    """A MakeHuman leg (``side`` ``left`` or ``right``) after ``targets``, in mm.

    ``targets`` keys are target paths below ``targets/`` with ``{s}`` for the
    side's letter. ``foot_length_mm`` scales the whole body uniformly so that the
    foot (heel to toe tip along +Z, below the ankle joint) is that long (children).
    The leg is Loop-subdivided twice and stood with its lowest point at y = 0.
    """
    if side not in ("left", "right"):
        raise ValueError(f"side must be 'left' or 'right', got {side!r}")
    body = load_makehuman()
    letter = side[0]
    other_letter = "r" if letter == "l" else "l"
    names = {}
    for name, weight in targets.items():
        for s in ("l", "r"):  # a body's morphs apply to both legs alike
            names[name.replace("{s}", s)] = weight
    verts = apply_targets(body.vertices, names) * DM_TO_MM
    sign = 1.0 if side == "left" else -1.0
    if foot_length_mm is not None:
        verts = verts * (foot_length_mm / _raw_foot_length(body, verts, letter, sign))
    hip = body.joint(verts, f"joint-{letter}-upper-leg")
    top_y = hip[1] - MH_LEG_TOP_BELOW_HIP_MM * _scale_of(body, verts)
    leg = _submesh(verts, _leg_faces(verts, body.skin_faces, sign, top_y))
    other = _submesh(verts, _leg_faces(verts, body.skin_faces, -sign, top_y))
    leg = leg.subdivide_loop(MH_SUBDIVISIONS)
    other = other.subdivide_loop(MH_SUBDIVISIONS)
    floor = leg.vertices[:, 1].min()
    shift = np.array([0.0, -floor, 0.0])
    leg.apply_translation(shift)
    other.apply_translation(np.array([0.0, -other.vertices[:, 1].min(), 0.0]))
    joints = {
        "ankle": body.joint(verts, f"joint-{letter}-ankle") + shift,
        "knee": body.joint(verts, f"joint-{letter}-knee") + shift,
        "hip": hip + shift,
        "mtp1": body.joint(verts, f"joint-{letter}-toe-1-1") + shift,
        "mtp2": body.joint(verts, f"joint-{letter}-toe-2-1") + shift,
        "mtp5": body.joint(verts, f"joint-{letter}-toe-5-1") + shift,
        "other_ankle": body.joint(verts, f"joint-{other_letter}-ankle") + shift,
    }
    return Leg(leg, joints, other, "makehuman", float(top_y - floor))


def _scale_of(body: MakeHumanBody, verts: np.ndarray) -> float:
    """Stature of ``verts`` relative to the neutral body's (1 for an adult)."""
    neutral = np.ptp(body.vertices[:, 1]) * DM_TO_MM
    return float(np.ptp(verts[:, 1]) / neutral)


def _raw_foot_length(body: MakeHumanBody, verts: np.ndarray, letter: str, sign: float) -> float:
    """Heel-to-toe extent along +Z of one foot's skin below its ankle joint (mm)."""
    ankle = body.joint(verts, f"joint-{letter}-ankle")
    skin = np.unique(body.skin_faces.ravel())
    pts = verts[skin]
    foot = pts[(pts[:, 1] < ankle[1]) & (sign * pts[:, 0] > 0)]
    return float(np.ptp(foot[:, 2]))


@lru_cache(maxsize=1)
def load_vh_skin() -> trimesh.Trimesh:
    """The Visible Human Female skin (metres, Y up), one watertight mesh."""
    path = shared_data_dir() / "hubmap-vhf-ccby4" / "VH_F_Skin_v1.1.glb"
    scene = trimesh.load(path, force="scene")
    meshes = []
    for node in sorted(scene.graph.nodes_geometry):
        transform, name = scene.graph[node]
        mesh = scene.geometry[name].copy()
        mesh.apply_transform(transform)
        meshes.append(mesh)
    return trimesh.util.concatenate(meshes)


def vh_leg(side: str) -> Leg:
    """A Visible Human Female leg in mm, lowest point at y = 0; joints from the hand marks.

    glTF's convention (+Y up, the model faces +Z) puts the subject's left at +X, as in
    MakeHuman. The hand-marked landmarks (``vh_landmarks.json``) are in this same frame.
    """
    if side not in ("left", "right"):
        raise ValueError(f"side must be 'left' or 'right', got {side!r}")
    skin = load_vh_skin()
    verts = np.asarray(skin.vertices, dtype=np.float64) * M_TO_MM
    faces = np.asarray(skin.faces, dtype=np.int64)
    y0 = verts[:, 1].min()
    stature = np.ptp(verts[:, 1])
    top_y = y0 + VH_LEG_TOP_SHARE * stature
    sign = 1.0 if side == "left" else -1.0
    leg = _submesh(verts, _leg_faces(verts, faces, sign, top_y))
    other = _submesh(verts, _leg_faces(verts, faces, -sign, top_y))
    floor = leg.vertices[:, 1].min()
    shift = np.array([0.0, -floor, 0.0])
    leg.apply_translation(shift)
    other.apply_translation(shift)
    joints = {k: np.asarray(v, dtype=np.float64) for k, v in vh_marks(side).items()}
    return Leg(leg, joints, other, "visible_human", float(top_y - floor))


def vh_marks(side: str) -> dict[str, list[float]]:
    """The hand-marked landmarks of one Visible Human leg (``vh_landmarks.json``), mm.

    They are in the frame ``vh_leg`` makes: the VH skin in mm, shifted so that the
    lowest point of that leg is at y = 0.
    """
    path = Path(__file__).with_name("vh_landmarks.json")
    data = json.loads(path.read_text(encoding="utf-8"))
    return {k: v for k, v in data["legs"][side].items() if not k.startswith("_")}


def cap_cut(skin: trimesh.Trimesh, cut_y: float) -> tuple[trimesh.Trimesh, np.ndarray]:
    """Cut an open leg skin at height ``cut_y`` and close it with a flat cap.

    Returns the closed, outward-wound mesh and a (n,) bool array flagging its
    cap's vertices that are not on the skin (the cap's centre). The rim vertices
    lie on the plane y = cut_y and belong to both the skin and the cap. Raises
    ``RuntimeError`` when the cut is not one closed loop.
    """
    below = _largest_part(slice_below(skin, cut_y))
    loop = _rim_loop(below, cut_y)
    rim = below.vertices[loop]
    centre = rim.mean(axis=0)
    centre[1] = cut_y
    n = len(below.vertices)
    # the skin's faces run each rim edge a -> b; the cap's must run it b -> a
    cap_faces = np.column_stack([np.full(len(loop), n), np.roll(loop, -1), loop])
    closed = trimesh.Trimesh(np.vstack([below.vertices, centre]),
                             np.vstack([below.faces, cap_faces]), process=False)
    if not closed.is_watertight or not closed.is_winding_consistent:
        raise RuntimeError(f"the cut at y = {cut_y:.1f} mm did not close into a solid")
    if closed.volume < 0:
        closed.invert()
    verts = closed.vertices
    flags = np.zeros(len(verts), dtype=bool)
    flags[-1] = True
    return closed, flags


def slice_below(mesh: trimesh.Trimesh, cut_y: float) -> trimesh.Trimesh:
    """The part of ``mesh`` below the plane y = cut_y, crossing triangles split on it.

    A vertex on the plane counts as above. New vertices on the plane are shared by
    the two triangles of each cut edge, so a closed surface stays closed below
    apart from its one open rim.
    """
    verts = np.asarray(mesh.vertices, dtype=np.float64)
    faces = np.asarray(mesh.faces, dtype=np.int64)
    below = verts[:, 1] < cut_y
    count = below[faces].sum(axis=1)
    out_faces = [faces[count == 3]]
    new_verts: list[np.ndarray] = []
    edge_vertex: dict[tuple[int, int], int] = {}

    def cut(a: int, b: int) -> int:
        key = (min(a, b), max(a, b))
        if key not in edge_vertex:
            pa, pb = verts[key[0]], verts[key[1]]
            t = (cut_y - pa[1]) / (pb[1] - pa[1])
            point = pa + t * (pb - pa)
            point[1] = cut_y
            edge_vertex[key] = len(verts) + len(new_verts)
            new_verts.append(point)
        return edge_vertex[key]

    extra = []
    for face in faces[(count == 1) | (count == 2)]:
        flags = below[face]
        # rotate so that the lone vertex (the one below, or the one above) comes first
        lone = int(np.flatnonzero(flags if flags.sum() == 1 else ~flags)[0])
        a, b, c = (int(face[(lone + k) % 3]) for k in range(3))
        ab, ac = cut(a, b), cut(a, c)
        if flags.sum() == 1:
            extra.append([a, ab, ac])
        else:
            extra.extend([[ab, b, c], [ab, c, ac]])
    if extra:
        out_faces.append(np.asarray(extra, dtype=np.int64))
    all_verts = np.vstack([verts] + ([np.asarray(new_verts)] if new_verts else []))
    result = trimesh.Trimesh(all_verts, np.vstack(out_faces), process=False)
    result.remove_unreferenced_vertices()
    return result


def _rim_loop(mesh: trimesh.Trimesh, cut_y: float) -> np.ndarray:
    """Vertex indices of the single boundary loop on the plane y = cut_y, in order."""
    edges = mesh.edges_sorted
    unique, counts = np.unique(edges, axis=0, return_counts=True)
    boundary = unique[counts == 1]
    if len(boundary) == 0:
        raise RuntimeError("the cut leg has no open rim")
    on_plane = np.abs(mesh.vertices[boundary][:, :, 1] - cut_y).max(axis=1) < 1e-4
    if not on_plane.all():
        raise RuntimeError(f"the leg has {int((~on_plane).sum())} open edges off the cut plane")
    # directed boundary edges follow the faces' winding
    directed = mesh.edges[trimesh.grouping.group_rows(mesh.edges_sorted, require_count=1)]
    nxt = {int(a): int(b) for a, b in directed}
    if len(nxt) != len(directed):
        raise RuntimeError("the cut rim is not a simple loop")
    start = min(nxt)
    loop = [start]
    while True:
        following = nxt[loop[-1]]
        if following == start:
            break
        loop.append(following)
        if len(loop) > len(nxt):
            raise RuntimeError("the cut rim is not a simple loop")
    if len(loop) != len(nxt):
        raise RuntimeError("the cut rim has more than one loop")
    return np.asarray(loop, dtype=np.int64)
