"""MakeHuman lower limbs: the CC0 base body, its morph targets, and leg crops with truth.

This module owns turning ``shared/data/makehuman-cc0`` into true limbs: it
parses ``base.obj`` (decimetres, Y up, +Z anterior, +X the subject's left),
applies morph targets, crops one leg below the knee joint (or the foot just
above the ankle), converts to mm with the floor at y = 0, and reads the joint
centres from the helper vertex groups.  It never imports orthofit.
"""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import trimesh

DM_TO_MM = 100.0
# Variants: morph target weights and a uniform scale (a child's limb is the
# adult's scaled so the foot is ~175 mm long, a 5-7 year old's [typ]).
VARIANTS: dict[str, tuple[dict[str, float], float]] = {
    "adult": ({}, 1.0),
    "fat_calf": ({"legs/measure-calf-circ-incr": 1.0, "legs/{s}-lowerleg-fat-incr": 0.8}, 1.0),
    "child": ({"feet/{s}-foot-scale-decr": 0.3, "legs/{s}-lowerleg-muscle-decr": 0.5}, 0.74),
}
# Loop subdivisions of the crop: the base mesh is coarse (about 1,300
# vertices for a lower leg); two rounds make it smooth.
SUBDIVISIONS = 2
# A foot-only crop ends this far above the ankle joint centre (mm).
FOOT_ONLY_ABOVE_ANKLE_MM = 40.0


def shared_data() -> Path:
    """The reference data folder: ``$ORTHOFIT_SHARED_DATA`` or ``../shared/data``."""
    root = Path(os.environ.get("ORTHOFIT_SHARED_DATA",
                               Path(__file__).resolve().parents[2] / "shared" / "data"))
    folder = root / "makehuman-cc0"
    if not (folder / "base.obj").is_file():
        raise FileNotFoundError(f"MakeHuman reference data not found in {folder}; set "
                                "ORTHOFIT_SHARED_DATA to the shared/data folder")
    return folder


@dataclass(frozen=True)
class Body:
    vertices: np.ndarray          # (n, 3) dm
    faces: np.ndarray             # (m, 3) triangles of the skin ("body" group)
    groups: dict[str, np.ndarray]  # helper group name -> vertex indices


@lru_cache(maxsize=1)
def load_body() -> Body:
    """Parse ``base.obj``: vertices, the skin's triangles, and helper groups."""
    verts, skin, groups, current = [], [], {}, None
    with open(shared_data() / "base.obj", encoding="utf-8") as fh:
        for line in fh:
            if line.startswith("v "):
                verts.append([float(t) for t in line.split()[1:4]])
            elif line.startswith("g "):
                current = line.split()[1]
            elif line.startswith("f "):
                idx = [int(t.split("/")[0]) - 1 for t in line.split()[1:]]
                if current == "body":
                    skin.extend([idx[0], idx[i], idx[i + 1]] for i in range(1, len(idx) - 1))
                elif current is not None:
                    groups.setdefault(current, set()).update(idx)
    return Body(np.array(verts), np.array(skin, dtype=np.int64),
                {k: np.array(sorted(v)) for k, v in groups.items()})


def morphed_vertices(weights: dict[str, float]) -> np.ndarray:
    """Body vertices (dm) with morph targets applied: ``V[i] += w * d``."""
    body = load_body()
    verts = body.vertices.copy()
    for name, weight in sorted(weights.items()):
        with gzip.open(shared_data() / "targets" / f"{name}.target.gz", "rt") as fh:
            table = np.loadtxt(fh, ndmin=2)
        verts[table[:, 0].astype(np.int64)] += weight * table[:, 1:4]
    return verts


@dataclass(frozen=True)
class TrueLimb:
    """A true limb in its own frame: mm, Y up with the floor at y = 0, +Z anterior."""

    mesh: trimesh.Trimesh
    side: str
    ankle_joint_center: np.ndarray
    knee_joint_center: np.ndarray
    heel: np.ndarray
    toe_tip: np.ndarray

    @property
    def foot_length_mm(self) -> float:
        d = self.toe_tip - self.heel
        return float(np.hypot(d[0], d[2]))


def true_limb(variant: str = "adult", side: str = "left", *, foot_only: bool = False) -> TrueLimb:
    """Crop one leg of a MakeHuman variant into a true limb (mm, floor at 0)."""
    morphs, scale = VARIANTS[variant]
    s = "l" if side == "left" else "r"
    verts = morphed_vertices({k.format(s=s): w for k, w in morphs.items()})
    body = load_body()
    ankle = verts[body.groups[f"joint-{s}-ankle"]].mean(axis=0)
    knee = verts[body.groups[f"joint-{s}-knee"]].mean(axis=0)
    top = ankle[1] + FOOT_ONLY_ABOVE_ANKLE_MM / DM_TO_MM / scale if foot_only else knee[1]
    on_side = verts[:, 0] > 0 if side == "left" else verts[:, 0] < 0
    keep = on_side & (verts[:, 1] <= top)
    faces = body.faces[keep[body.faces].all(axis=1)]
    mesh = trimesh.Trimesh(verts, faces, process=True)
    parts = mesh.split(only_watertight=False)
    mesh = max(parts, key=lambda p: len(p.faces))
    floor = mesh.vertices[:, 1].min()
    shift = np.array([0.0, -floor, 0.0])
    mesh.apply_translation(shift)
    mesh.apply_scale(DM_TO_MM * scale)
    mesh = mesh.subdivide_loop(SUBDIVISIONS)
    # Loop subdivision lifts the sole a little; stand it back on the floor.
    lift = -float(mesh.vertices[:, 1].min())
    mesh.apply_translation([0.0, lift, 0.0])

    def to_mm(p: np.ndarray) -> np.ndarray:
        return (p + shift) * DM_TO_MM * scale + [0.0, lift, 0.0]

    ankle_mm = to_mm(ankle)
    v = mesh.vertices
    foot = v[v[:, 1] < ankle_mm[1]]
    heel = foot[np.argmin(foot[:, 2])]
    toe = foot[np.argmax(foot[:, 2])]
    return TrueLimb(mesh=mesh, side=side, ankle_joint_center=ankle_mm,
                    knee_joint_center=to_mm(knee), heel=heel, toe_tip=toe)
