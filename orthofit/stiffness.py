"""Ankle stiffness of an orthosis: the test rig and its numbers, from finite elements.

This module owns what a stiffness number means: the rig (what is clamped,
what is tied to the rigid cuff, the axes), the two load cases, the units,
and the ``stiffness`` block of ``report.json``.  The mesh comes from
``orthofit.femesh`` and the solve from ``orthofit.elasticity``.

- ``k_free``: a pure moment on the cuff, the cuff otherwise free; its
  rotation about the moment's axis.  It does not depend on any axis point.
- ``k_axis``: the cuff turned about an axis through the axis point (the
  malleolar axis for the sagittal plane), free to slide along the shank and
  held otherwise, as a rig with an ankle hinge and a sliding cuff does.

Both are reported in N·m/deg for the sagittal, frontal and transverse planes.
Published rigs measure the same AFO tens of percent apart, so the block
always carries the boundary conditions, the axes and the material with them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import trimesh

from .elasticity import (SingularStiffnessError, move_reference, rigid_body_stiffness,
                         stiffness_blocks)
from .errors import CannotServeError
from .femesh import FEMeshParams, ShellFEMesh, face_components, shell_fe_mesh, tet_volumes
from .prescription import Material

__all__ = ["PLANES", "Rig", "StiffnessResult", "HeldModel", "held_parts", "solve_stiffness",
           "device_rig",
           "device_stiffness", "not_reported", "NMM_PER_RAD_TO_NM_PER_DEG"]

log = logging.getLogger(__name__)

PLANES = ("sagittal", "frontal", "transverse")
#: N·mm/rad to N·m/deg.
NMM_PER_RAD_TO_NM_PER_DEG = 1e-3 * np.pi / 180.0
#: Numerical error of the model against closed-form beams (tests/test_stiffness.py).
ACCURACY = ("finite-element error under 3 % against closed-form beams (a cantilever strip and "
            "a quarter ring); agreement with a physical test rig is not calibrated")

#: Selects nodes of a mesh: a boolean mask.
NodeSet = Callable[[ShellFEMesh], np.ndarray]


@dataclass(frozen=True)
class RigParams:
    """Where a device is held [eng]."""

    # The calf strap's region: this far down from the proximal edge, the
    # width of a 50 mm strap and its slot margin.
    cuff_band_mm: float = 50.0
    # The footplate's plantar faces: outer-face nodes facing down within
    # this cosine, up to this height above the lowest of them.
    plantar_cos: float = 0.8
    plantar_band_mm: float = 10.0


@dataclass(frozen=True)
class Rig:
    """A stiffness test: what is clamped, what the rigid cuff holds, and the axes."""

    clamped: NodeSet
    tied: NodeSet
    axis_point: np.ndarray
    #: Unit axis per plane: the moment's axis for k_free, the hinge for k_axis.
    axes: dict[str, np.ndarray]
    #: The cuff slides freely along this unit direction in k_axis.
    slide: np.ndarray
    #: What the report says about each choice.
    described: dict[str, str] = field(default_factory=dict)


@dataclass
class StiffnessResult:
    """Stiffness per plane (N·m/deg) and the model it came from."""

    k_free: dict[str, float]
    k_axis: dict[str, float]
    body: np.ndarray            # 6 × 6 rigid-cuff stiffness at the axis point (N, mm, rad)
    mesh: ShellFEMesh
    n_clamped: int
    n_tied: int
    #: Share of the wall's volume held by neither the clamp nor the cuff, or
    #: in degenerate elements (left out).
    loose_volume_share: float = 0.0
    #: Parts of the wall left out (joined to the rest only along an edge or
    #: at a node, or not at all), and degenerate elements left out.
    loose_parts: int = 0
    degenerate_elements: int = 0


def plantar_faces(params: RigParams = RigParams(), region: Callable[[np.ndarray], np.ndarray]
                  | None = None) -> NodeSet:
    """Outer-face nodes facing down near the lowest of them (optionally within ``region``)."""

    def select(mesh: ShellFEMesh) -> np.ndarray:
        down = (mesh.level > 1 - 1e-9) & (mesh.normal[:, 2] < -params.plantar_cos)
        if region is not None:
            down &= region(mesh.nodes)
        if not down.any():
            return down
        lowest = mesh.nodes[down, 2].min()
        return down & (mesh.nodes[:, 2] < lowest + params.plantar_band_mm)

    return select


def nodes_where(region: Callable[[np.ndarray], np.ndarray]) -> NodeSet:
    """Every node (through the wall) whose position is in ``region``."""
    return lambda mesh: region(mesh.nodes)


def cuff_stiffness(body: np.ndarray, axes: dict[str, np.ndarray],
                   slide: np.ndarray) -> tuple[dict[str, float], dict[str, float]]:
    """k_free and k_axis per plane (N·m/deg) from the cuff's 6 × 6 stiffness at the axis point."""
    compliance = np.linalg.inv(body)
    k_free, k_axis = {}, {}
    for plane, axis in axes.items():
        e = np.r_[np.zeros(3), axis]
        s = np.r_[slide, np.zeros(3)]
        k_free[plane] = float(1.0 / (e @ compliance @ e)) * NMM_PER_RAD_TO_NM_PER_DEG
        # Turned by θ about the axis, sliding σ along the shank to no force.
        kee, kes, kss = e @ body @ e, e @ body @ s, s @ body @ s
        k_axis[plane] = float(kee - kes * kes / kss) * NMM_PER_RAD_TO_NM_PER_DEG
    return k_free, k_axis


def solve_stiffness(shell: trimesh.Trimesh, limb: trimesh.Trimesh, thickness_mm: float,
                    modulus_mpa: float, poisson: float, rig: Rig,
                    params: FEMeshParams = FEMeshParams()) -> StiffnessResult:
    """The shell's stiffness in ``rig`` (linear elasticity, quadratic tetrahedra).

    Raises
    ------
    CannotServeError
        When the rig holds nothing (no plantar faces, no cuff) or the shell
        cannot be meshed.
    """
    mesh = shell_fe_mesh(shell, limb, thickness_mm, params)
    clamped, tied = rig.clamped(mesh), rig.tied(mesh)
    tied &= ~clamped
    held = held_parts(mesh, clamped, tied, params)
    mesh, clamped, tied = held.mesh, held.clamped, held.tied
    if not clamped.any():
        raise CannotServeError("the stiffness rig finds no plantar faces to clamp; the "
                               "device has no footplate under the foot")
    if not tied.any():
        raise CannotServeError("the stiffness rig finds no cuff to load; the device has no "
                               "calf section")
    log.info("stiffness: %d elements, %d nodes, %d clamped, %d tied", len(mesh.tets),
             len(mesh.nodes), clamped.sum(), tied.sum())
    k = stiffness_blocks(mesh.nodes, mesh.tets, modulus_mpa, poisson)
    try:
        body = rigid_body_stiffness(k, mesh.nodes, clamped, tied, rig.axis_point,
                                    elements=mesh.tets)
    except SingularStiffnessError as exc:
        raise CannotServeError(
            f"the stiffness cannot be computed: {exc}; design without it "
            "(--no-stiffness) or move the trimlines so the wall is one piece") from exc
    k_free, k_axis = cuff_stiffness(body, rig.axes, rig.slide)
    return StiffnessResult(k_free=k_free, k_axis=k_axis, body=body, mesh=mesh,
                           n_clamped=int(clamped.sum()), n_tied=int(tied.sum()),
                           loose_volume_share=held.loose_volume_share,
                           loose_parts=held.loose_parts,
                           degenerate_elements=held.degenerate_elements)


@dataclass(frozen=True)
class HeldModel:
    """What of a mesh the rig holds, and what was left out and why."""

    mesh: ShellFEMesh
    clamped: np.ndarray
    tied: np.ndarray
    #: Share of the wall's volume left out: parts held by neither clamp nor
    #: cuff, and degenerate elements.
    loose_volume_share: float
    loose_parts: int
    degenerate_elements: int


def held_parts(mesh: ShellFEMesh, clamped: np.ndarray, tied: np.ndarray,
               params: FEMeshParams) -> HeldModel:
    """Only the elements the rig holds rigidly; and what was left out.

    A stiffness matrix is singular for a cause, and each is found here
    before anything is factorised:

    - a **degenerate element** (its volume under ``params.sliver_share``
      of the element size cubed: a prism flattened where the wall creases)
      carries nothing and is left out;
    - a **loose part**: tetrahedra join rigidly only through shared faces,
      so the wall falls into parts (a sliver of wall behind a crease, a piece
      hanging from the rest by an edge or a node where flat elements went).
      A part is held when the clamped and tied nodes in it span a plane
      (three not in a line); any other part is free to move or to turn
      about an edge (a mechanism), carries no load, and is left out.

    The volume share left out is reported with the stiffness.
    """
    tets = mesh.tets
    volumes = np.abs(tet_volumes(mesh.nodes, tets))
    degenerate = volumes < params.sliver_share * mesh.element_mm ** 3
    labels = face_components(tets)
    labels[degenerate] = -1
    fixed = clamped | tied
    # Each part's held nodes (once each), and whether they span a plane: the
    # second eigenvalue of their scatter matrix, from per-part sums.
    part_of = np.repeat(labels, tets.shape[1])
    node = tets.ravel()
    keep = (part_of >= 0) & fixed[node]
    pairs = np.unique(part_of[keep] * len(mesh.nodes) + node[keep])
    n_parts = int(labels.max()) + 1
    part, p = pairs // len(mesh.nodes), mesh.nodes[pairs % len(mesh.nodes)]
    count = np.bincount(part, minlength=n_parts).astype(float)
    mean = np.stack([np.bincount(part, p[:, i], n_parts) for i in range(3)], 1)
    mean /= np.maximum(count, 1.0)[:, None]
    outer = np.stack([np.bincount(part, p[:, i] * p[:, j], n_parts)
                      for i in range(3) for j in range(3)], 1).reshape(-1, 3, 3)
    scatter = outer / np.maximum(count, 1.0)[:, None, None] - mean[:, :, None] * mean[:, None]
    across = np.sqrt(np.maximum(np.linalg.eigvalsh(scatter)[:, 1], 0.0))
    held = np.flatnonzero((count >= 3) & (across > _SPAN_SHARE * mesh.element_mm))
    keep_tet = np.isin(labels, held)
    parts = len(np.unique(labels[labels >= 0]))
    total = volumes.sum()
    loose = float(volumes[~keep_tet].sum() / total) if total > 0 else 1.0
    used = np.zeros(len(mesh.nodes), dtype=bool)
    used[tets[keep_tet].ravel()] = True
    if used.all() and keep_tet.all():
        return HeldModel(mesh, clamped, tied, 0.0, 0, 0)
    # Loose parts go, and so does any node no element uses (it has no stiffness).
    new_index = np.cumsum(used) - 1
    kept = ShellFEMesh(nodes=mesh.nodes[used], tets=new_index[tets[keep_tet]],
                       level=mesh.level[used], normal=mesh.normal[used], surface=mesh.surface,
                       thickness=mesh.thickness, element_mm=mesh.element_mm, layers=mesh.layers)
    log.info("stiffness: %d of %d parts of the wall (%.2f %% of its volume) held by neither "
             "clamp nor cuff, and %d degenerate elements, left out", parts - len(held),
             parts, 100 * loose, int(degenerate.sum()))
    return HeldModel(kept, clamped[used], tied[used], loose, parts - len(held),
                     int(degenerate.sum()))


# The held nodes of a part span a plane when their spread across the line of
# best fit (root-mean-square) exceeds this share of the element size [eng].
_SPAN_SHARE = 0.01


def at_axis_point(result: StiffnessResult, rig: Rig, point: np.ndarray) -> dict[str, float]:
    """k_axis per plane with the hinge moved to ``point`` (same solve)."""
    body = move_reference(result.body, rig.axis_point, point)
    return cuff_stiffness(body, rig.axes, rig.slide)[1]


def device_rig(landmarks: dict[str, np.ndarray | None], proximal_z: float,
               params: RigParams = RigParams()) -> Rig:
    """The rig for an AFO: footplate clamped, the calf strap's band tied to the cuff.

    Axes from the landmarks: sagittal about the malleolar axis (lateral to
    medial malleolus, made normal to the shank), transverse about the shank
    (ankle centre to calf), frontal about the axis normal to both; all
    through the midpoint of the malleoli.
    """
    medial, lateral = landmarks["medial_malleolus"], landmarks["lateral_malleolus"]
    point = 0.5 * (np.asarray(medial, float) + np.asarray(lateral, float))
    calf = landmarks.get("calf")
    shank = (np.asarray(calf, float) - np.asarray(landmarks["ankle_center"], float)
             if calf is not None else np.array([0.0, 0.0, 1.0]))
    shank /= np.linalg.norm(shank)
    ml = np.asarray(medial, float) - np.asarray(lateral, float)
    ml -= (ml @ shank) * shank
    ml /= np.linalg.norm(ml)
    ap = np.cross(ml, shank)
    band_from = proximal_z - params.cuff_band_mm
    return Rig(
        clamped=plantar_faces(params),
        tied=nodes_where(lambda p: p[:, 2] >= band_from),
        axis_point=point, axes={"sagittal": ml, "frontal": ap, "transverse": shank},
        slide=shank,
        described={
            "clamped": (f"the footplate's plantar faces: the outer face where it faces down "
                        f"(within {np.degrees(np.arccos(params.plantar_cos)):.0f}°), up to "
                        f"{params.plantar_band_mm:g} mm above its lowest point"),
            "tied": (f"the calf strap's band, from the proximal edge down "
                     f"{params.cuff_band_mm:g} mm, through the wall, tied to a rigid cuff"),
            "k_free": "a pure moment on the cuff, which is otherwise free",
            "k_axis": ("the cuff turned about the plane's axis through the axis point, free "
                       "to slide along the shank, held otherwise"),
            "axes": ("sagittal: the malleolar axis (lateral to medial malleolus, normal to the "
                     "shank); transverse: the shank (ankle centre to calf); frontal: normal to "
                     "both; through the midpoint of the malleoli"),
        })


def not_reported(device: str) -> dict[str, Any]:
    """The block for a device with no calf cuff."""
    return {"reported": False,
            "reason": (f"a {device} has no calf section for a cuff to load, so it has no "
                       "ankle stiffness to report; stiffness is computed for solid AFOs and "
                       "posterior leaf springs")}


def device_stiffness(shell: trimesh.Trimesh, limb: trimesh.Trimesh, *, device: str,
                     landmarks: dict[str, np.ndarray | None], proximal_z: float | None,
                     thickness_mm: float, material: Material,
                     params: FEMeshParams = FEMeshParams()) -> tuple[dict[str, Any],
                                                                      StiffnessResult | None]:
    """The ``stiffness`` block of ``report.json`` and the solve behind it (None if not reported)."""
    if device not in ("solid-afo", "posterior-leaf-spring") or proximal_z is None:
        return not_reported(device), None
    rig = device_rig(landmarks, proximal_z)
    result = solve_stiffness(shell, limb, thickness_mm, material.elastic_modulus_mpa,
                             material.poisson_ratio, rig, params)
    return stiffness_block(result, rig, material), result


def stiffness_block(result: StiffnessResult, rig: Rig, material: Material) -> dict[str, Any]:
    """What the report says about a solve: numbers, method, axes, material."""
    mesh = result.mesh

    def rounded(v: float) -> float:
        return float(f"{v:.4g}")

    return {
        "reported": True,
        "unit": "Nm/deg",
        "planes": {plane: {"k_free": rounded(result.k_free[plane]),
                           "k_axis": rounded(result.k_axis[plane])} for plane in PLANES},
        "method": {
            "model": ("linear-elastic finite elements: 10-node quadratic tetrahedra, prism "
                      "layers extruded from the shell's inner face by its local thickness"),
            "elements": int(len(mesh.tets)), "nodes": int(len(mesh.nodes)),
            "element_mm": rounded(mesh.element_mm),
            "layers": mesh.layers,
            "clamped_nodes": result.n_clamped, "tied_nodes": result.n_tied,
            "loose_volume_share": round(result.loose_volume_share, 4),
            "loose_parts": result.loose_parts,
            "degenerate_elements": result.degenerate_elements,
            "boundary_conditions": {k: rig.described[k] for k in ("clamped", "tied")},
            "load_cases": {k: rig.described[k] for k in ("k_free", "k_axis")},
        },
        "axes": {"point_mm": [round(float(v), 2) for v in rig.axis_point],
                 **{plane: [round(float(v), 4) for v in rig.axes[plane]] for plane in PLANES},
                 "from": rig.described.get("axes", "")},
        "material": {"name": material.name, "elastic_modulus_mpa": material.elastic_modulus_mpa,
                     "poisson_ratio": material.poisson_ratio, "source": material.modulus_source},
        "accuracy": ACCURACY,
    }
