"""True lower limbs cut from the CC0 MakeHuman body, with their ground truth.

This module owns turning ``shared/data/makehuman-cc0`` into a *true limb*: it
parses ``base.obj`` (decimetres, Y up, +Z anterior, +X the subject's left),
applies morph targets, crops one leg of the skin from the sole up to the knee
joint (or to just above the ankle for a foot-only limb), converts it to mm with
the floor (the lowest sole point) at y = 0, Loop-subdivides it, and reads the
joint centres from MakeHuman's helper vertex groups.  It knows nothing about
scanners, units other than mm, or file formats, and never imports orthofit.

The true limb's frame is MakeHuman's own orientation in mm: Y up with the
floor at y = 0, +Z anterior, +X the subject's left; x and z keep MakeHuman's
origin (the body's mid-line), scaled with the limb.
"""

from __future__ import annotations

import gzip
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import trimesh

__all__ = [
    "BaseMesh", "TrueLimb", "VARIANTS", "Variant", "apply_targets", "load_base_mesh",
    "makehuman_dir", "true_limb",
]

log = logging.getLogger(__name__)

# base.obj and the targets are in decimetres.
DM_TO_MM = 100.0
# The environment variable that points at the shared ``data`` folder.
SHARED_DATA_ENV = "ORTHOFIT_SHARED_DATA"
# Default: ``shared/data`` beside the repository (repo is /work/main, shared is /work/shared).
DEFAULT_SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
# The only group of base.obj that is skin; the others are helpers (joints, clothes, eyes).
SKIN_GROUP = "body"
# Loop subdivisions of the crop: the base mesh has ~1,300 vertices below the
# knee (edges ~10-20 mm); two rounds make edges of ~3-5 mm and a smooth skin.
SUBDIVISIONS = 2
# Subdivision moves MakeHuman's own vertices by a few mm at most (measured
# 1.5 mm on the lower leg); more means the vertex order was not kept.
SMOOTHING_MOVE_MM = 10.0
# A foot-only limb ends this far above the ankle joint centre (foot orthoses,
# insoles: the scan stops a few cm above the malleoli).
FOOT_ONLY_ABOVE_ANKLE_MM = 40.0
# The skin this far above the cut is kept as ``TrueLimb.context``: the rest of
# the leg (knee, thigh) that hides the inside of the cut tube from a scanner.
CONTEXT_ABOVE_MM = 200.0


@dataclass(frozen=True)
class Variant:
    """A limb shape: morph target weights, then an optional uniform scale.

    ``targets`` maps a target path below ``targets/`` (without ``.target.gz``)
    to its weight; ``{s}`` stands for the side's letter (``l`` or ``r``).
    ``foot_length_mm``, when set, scales the limb uniformly (about the origin)
    so that its foot is about that long.
    """

    targets: Mapping[str, float] = field(default_factory=dict)
    foot_length_mm: float | None = None


VARIANTS: dict[str, Variant] = {
    # MakeHuman's neutral adult (foot ~240 mm, knee joint ~450 mm above the floor).
    "adult": Variant(),
    # A fuller calf: calf girth and lower-leg fat up (a common AFO user's shank).
    "fat_calf": Variant({"legs/measure-calf-circ-incr": 1.0, "legs/{s}-lowerleg-fat-incr": 0.8}),
    # A child of ~6 years: a relatively smaller foot, a slimmer and slightly
    # shorter shank, then scaled so the foot is 180 mm long (children's feet
    # of 170-190 mm, ages ~5-7 [typ]).
    "child": Variant({"feet/{s}-foot-scale-decr": 0.3, "legs/{s}-lowerleg-muscle-decr": 0.5,
                      "legs/{s}-lowerleg-scale-vert-decr": 0.3}, foot_length_mm=180.0),
}


def makehuman_dir() -> Path:
    """The MakeHuman reference folder: ``$ORTHOFIT_SHARED_DATA/makehuman-cc0``.

    Without the variable, ``../shared/data/makehuman-cc0`` relative to the
    repository root.  Raises ``FileNotFoundError`` naming both when missing.
    """
    root = Path(os.environ.get(SHARED_DATA_ENV) or DEFAULT_SHARED_DATA)
    folder = root / "makehuman-cc0"
    if not (folder / "base.obj").is_file():
        raise FileNotFoundError(
            f"MakeHuman reference data not found: expected {folder / 'base.obj'}. "
            f"Set {SHARED_DATA_ENV} to the shared 'data' folder that holds makehuman-cc0/.")
    return folder


@dataclass(frozen=True)
class BaseMesh:
    """The parsed MakeHuman base mesh.

    vertices : (n, 3) float, dm -- every vertex of the file (skin and helpers).
    skin_faces : (m, 3) int -- triangles of the ``body`` group (quads split).
    groups : name -> (k,) int -- vertex indices of every other group.
    """

    vertices: np.ndarray
    skin_faces: np.ndarray
    groups: dict[str, np.ndarray]

    def centre(self, vertices: np.ndarray, group: str) -> np.ndarray:
        """Mean of a helper group's vertices, e.g. ``joint-l-ankle``: (3,) float."""
        return vertices[self.groups[group]].mean(axis=0)


@lru_cache(maxsize=2)
def load_base_mesh(path: Path | None = None) -> BaseMesh:
    """Parse ``base.obj``: ``v`` lines, ``f a/b c/d ...`` faces and ``g NAME`` groups.

    Faces are fanned into triangles; a group may appear several times.
    """
    path = Path(path) if path else makehuman_dir() / "base.obj"
    vertices: list[list[float]] = []
    skin: list[list[int]] = []
    groups: dict[str, set[int]] = {}
    group = None
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            tag, _, rest = line.partition(" ")
            if tag == "v":
                vertices.append([float(t) for t in rest.split()[:3]])
            elif tag == "g":
                group = rest.strip()
            elif tag == "f":
                corners = [int(t.split("/")[0]) - 1 for t in rest.split()]
                if group == SKIN_GROUP:
                    skin.extend([corners[0], corners[i], corners[i + 1]]
                                for i in range(1, len(corners) - 1))
                elif group is not None:
                    groups.setdefault(group, set()).update(corners)
    if not skin:
        raise ValueError(f"{path}: no faces in group {SKIN_GROUP!r}; not a MakeHuman base mesh")
    return BaseMesh(np.asarray(vertices, dtype=np.float64), np.asarray(skin, dtype=np.int64),
                    {k: np.array(sorted(v), dtype=np.int64) for k, v in groups.items()})


@lru_cache(maxsize=32)
def _target(name: str) -> tuple[np.ndarray, np.ndarray]:
    path = makehuman_dir() / "targets" / f"{name}.target.gz"
    if not path.is_file():
        raise FileNotFoundError(f"morph target {name!r} not found at {path}")
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        table = np.loadtxt(fh, ndmin=2)
    return table[:, 0].astype(np.int64), table[:, 1:4]


def apply_targets(vertices: np.ndarray, weights: Mapping[str, float]) -> np.ndarray:
    """Morph ``vertices`` (n, 3) dm: ``V[i] += weight * d`` for every target line.

    ``weights`` maps target names below ``targets/`` (e.g. ``legs/l-lowerleg-fat-incr``)
    to weights.  Returns a new (n, 3) float array, dm.
    """
    out = np.array(vertices, dtype=np.float64)
    for name in sorted(weights):
        index, delta = _target(name)
        np.add.at(out, index, weights[name] * delta)
    return out


@dataclass(frozen=True)
class TrueLimb:
    """A noise-free limb in its own frame (mm, Y up, floor at y = 0, +Z anterior).

    mesh : the dense skin (Loop-subdivided), open at the top at ``top_mm``.
    coarse : the same skin at MakeHuman's resolution, its vertices on ``mesh``.
    context : the dense skin continued ``CONTEXT_ABOVE_MM`` above the cut; what
        a scanner faces (the leg goes on above the part it records).
    scale : the uniform scale applied after the morphs (1 for adults).
    top_mm : height of the cut above the floor, mm.
    ankle_joint_center, knee_joint_center : (3,) float, mm -- helper group means.
    heel, toe_tip : (3,) float, mm -- the skin vertices most posterior and most
        anterior along ``foot_axis`` (among vertices below the ankle joint).
    foot_axis : (3,) float -- unit, horizontal, heel to toe.
    """

    mesh: trimesh.Trimesh
    coarse: trimesh.Trimesh
    context: trimesh.Trimesh
    side: str
    variant: str
    foot_only: bool
    scale: float
    top_mm: float
    ankle_joint_center: np.ndarray
    knee_joint_center: np.ndarray
    heel: np.ndarray
    toe_tip: np.ndarray
    foot_axis: np.ndarray

    @property
    def foot_length_mm(self) -> float:
        """Floor-projected heel-to-toe distance, mm."""
        d = self.toe_tip - self.heel
        return float(np.hypot(d[0], d[2]))


def true_limb(variant: str = "adult", side: str = "left", *, foot_only: bool = False,
              subdivisions: int = SUBDIVISIONS) -> TrueLimb:
    """Cut one leg of a MakeHuman variant into a true limb.

    The ``side`` half of the skin (left: x > 0, right: x < 0; MakeHuman's own
    right leg, not a mirror) is cut at the knee joint's height, or
    ``FOOT_ONLY_ABOVE_ANKLE_MM`` above the ankle joint centre when
    ``foot_only``; the connected piece holding the sole is kept, converted to
    mm, Loop-subdivided ``subdivisions`` times and stood on y = 0.
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {sorted(VARIANTS)}, got {variant!r}")
    if side not in ("left", "right"):
        raise ValueError(f"side must be 'left' or 'right', got {side!r}")
    spec = VARIANTS[variant]
    s = side[0]
    base = load_base_mesh()
    dm = apply_targets(base.vertices, {k.format(s=s): w for k, w in spec.targets.items()})
    scale = DM_TO_MM
    if spec.foot_length_mm is not None:
        # Size the foot on the unsubdivided skin; subdivision shortens it by ~1 mm.
        scale *= spec.foot_length_mm / _coarse_foot_length(base, dm * DM_TO_MM, s)
    mm = dm * scale
    ankle = base.centre(mm, f"joint-{s}-ankle")
    knee = base.centre(mm, f"joint-{s}-knee")
    top = ankle[1] + FOOT_ONLY_ABOVE_ANKLE_MM if foot_only else knee[1]

    # Keep whole faces reaching below the context's top (sliced exactly after
    # subdivision) on the side's half, then the piece holding the sole.
    faces = base.skin_faces
    on_side = mm[:, 0] > 0 if side == "left" else mm[:, 0] < 0
    keep = on_side[faces].all(axis=1) & (mm[faces, 1].min(axis=1) < top + CONTEXT_ABOVE_MM)
    piece = _piece_with_lowest_vertex(mm, faces[keep])
    dense_v, dense_f = trimesh.remesh.subdivide_loop(piece.vertices, piece.faces,
                                                     iterations=subdivisions)
    # Subdivision keeps the original vertices first (moved onto the smooth
    # surface): MakeHuman's faces over them give the coarse truth mesh.
    coarse_v = dense_v[:len(piece.vertices)]
    if np.abs(coarse_v - piece.vertices).max() > SMOOTHING_MOVE_MM:
        raise RuntimeError("Loop subdivision reordered the limb's vertices; "
                           "the crop is not a single manifold piece")
    floor = float(dense_v[:, 1].min())
    shift = np.array([0.0, -floor, 0.0])
    mesh = _below(dense_v + shift, dense_f, top - floor)
    context = _below(dense_v + shift, dense_f, top - floor + CONTEXT_ABOVE_MM)
    coarse = _below(coarse_v + shift, piece.faces, top - floor)
    ankle, knee = ankle + shift, knee + shift
    heel, toe, axis = _heel_and_toe(mesh.vertices, ankle[1])
    limb = TrueLimb(mesh=mesh, coarse=coarse, context=context, side=side, variant=variant,
                    foot_only=foot_only, scale=scale / DM_TO_MM, top_mm=top - floor,
                    ankle_joint_center=ankle, knee_joint_center=knee, heel=heel, toe_tip=toe,
                    foot_axis=axis)
    log.info("true limb %s %s%s: %d vertices, foot %.1f mm, ankle joint %.1f mm above floor",
             variant, side, " (foot only)" if foot_only else "", len(mesh.vertices),
             limb.foot_length_mm, ankle[1])
    return limb


def _below(vertices: np.ndarray, faces: np.ndarray, height: float) -> trimesh.Trimesh:
    """The part of a mesh below ``y = height``, cut exactly on that plane."""
    v, f, _ = trimesh.intersections.slice_faces_plane(
        vertices, faces, plane_normal=np.array([0.0, -1.0, 0.0]),
        plane_origin=np.array([0.0, height, 0.0]))
    return trimesh.Trimesh(v, f, process=True)


def _piece_with_lowest_vertex(vertices: np.ndarray, faces: np.ndarray) -> trimesh.Trimesh:
    mesh = trimesh.Trimesh(vertices, faces, process=True)
    pieces = mesh.split(only_watertight=False)
    return min(pieces, key=lambda p: p.vertices[:, 1].min())


def _heel_and_toe(vertices: np.ndarray, ankle_height: float):
    """Heel and toe vertices along the foot's long horizontal axis (mm).

    The axis is the principal direction of the floor-projected vertices below
    the ankle joint, pointed anteriorly (+z).
    """
    foot = vertices[vertices[:, 1] < ankle_height]
    xz = foot[:, [0, 2]] - foot[:, [0, 2]].mean(axis=0)
    _, _, vt = np.linalg.svd(xz, full_matrices=False)
    axis = np.array([vt[0, 0], 0.0, vt[0, 1]])
    axis *= np.sign(axis[2])
    along = foot @ axis
    return foot[np.argmin(along)], foot[np.argmax(along)], axis


def _coarse_foot_length(base: BaseMesh, vertices: np.ndarray, s: str) -> float:
    """Foot length of the unsubdivided skin, in the units of ``vertices``."""
    v = vertices[np.unique(base.skin_faces)]
    v = v[v[:, 0] > 0] if s == "l" else v[v[:, 0] < 0]
    ankle = base.centre(vertices, f"joint-{s}-ankle")
    heel, toe, _ = _heel_and_toe(v, ankle[1])
    return float(np.hypot(*(toe - heel)[[0, 2]]))
