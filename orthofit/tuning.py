"""Design to a target ankle stiffness: the neck's trimline first, then the thickness.

This module owns the search.  A fast surrogate, beam theory on sections of
the wall perpendicular to the shank (each section's second moment of area
about the malleolar axis; compliance is the sum of height over E·I), ranks
candidate designs in milliseconds; one finite-element solve calibrates it
(the ratio of the two on the same design), and every chosen design is
confirmed by finite elements.  When a confirmation misses by more than the
tolerance, the surrogate is calibrated again on that design.

The design variables are ``trimlines.anterior_offset_mm`` (where the side
trimline passes the malleoli: further forward is a wider neck) and
``thickness_mm``, each within clinical bounds.  It builds no shells itself:
the caller gives ``build`` (prescription to shell) and ``measure`` (shell to
N·m/deg).  It must not read files.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import trimesh

from .errors import CannotServeError
from .prescription import Prescription
from .stiffness import NMM_PER_RAD_TO_NM_PER_DEG, Rig
from .trimlines import device_trim

__all__ = ["TuningParams", "SectionSurrogate", "design_to_target"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TuningParams:
    """Bounds and tolerances of designing to a stiffness."""

    # Where the side trimline may pass the malleoli (mm, + anterior): a leaf
    # spring 10-15 mm behind them [typ], from a narrow spring 25 mm behind
    # to just behind them; a solid AFO 10-15 mm in front [typ], from on them
    # to 25 mm in front [eng].
    offset_bounds_mm: dict[str, tuple[float, float]] = field(default_factory=lambda: {
        "posterior-leaf-spring": (-25.0, -2.0), "solid-afo": (0.0, 25.0)})
    # Wall thickness from the material's structural minimum up to 6 mm
    # (WASP-Med's upper bound, [typ]).
    most_thickness_mm: float = 6.0
    # The confirmed stiffness must be within this share of the target.
    tolerance: float = 0.05
    # Finite-element confirmations after the calibrating solve.
    most_confirmations: int = 3
    # Section spacing along the shank and the candidate grids [eng].
    section_step_mm: float = 4.0
    offset_step_mm: float = 0.25
    thickness_step_mm: float = 0.05


class SectionSurrogate:
    """Beam stiffness of the wall's sections along the shank, for any neck offset and thickness.

    Each section of the limb perpendicular to the shank, between the ankle
    and the cuff, is offset out to the wall's mid-surface; the part the trim
    field keeps is a thin-walled section whose second moment of area about
    the malleolar axis is ``t·Σ a² ds + t³/12·Σ cos² ds``.
    """

    def __init__(self, rx: Prescription, landmarks: dict, limb: trimesh.Trimesh, top_z: float,
                 rig: Rig, cuff_from_z: float, params: TuningParams, *,
                 trim_options: dict[str, Any] | None = None):
        self.rx, self.landmarks, self.limb, self.top_z = rx, landmarks, limb, top_z
        # What device_trim needs beside the prescription (estimated landmarks, the knee).
        self.trim_options = trim_options or {}
        self.params = params
        shank, ml = rig.slide, rig.axes["sagittal"]
        ap = np.cross(ml, shank)
        point = rig.axis_point
        # From half the ankle's height above the floor up to the cuff.
        lowest = -0.5 * point[2]
        highest = (cuff_from_z - point[2]) / max(shank[2], 0.5)
        self.heights = np.arange(lowest, highest, params.section_step_mm)
        mids, lengths, across, along, which = [], [], [], [], []
        for k, h in enumerate(self.heights):
            origin = point + h * shank
            segments, faces = trimesh.intersections.mesh_plane(
                limb, plane_normal=shank, plane_origin=origin, return_faces=True)
            if len(segments) == 0:
                continue
            normal = limb.face_normals[faces]
            normal = normal - (normal @ shank)[:, None] * shank
            normal /= np.maximum(np.linalg.norm(normal, axis=1), 1e-12)[:, None]
            direction = segments[:, 1] - segments[:, 0]
            length = np.linalg.norm(direction, axis=1)
            ok = length > 1e-9
            mids.append((0.5 * (segments[:, 0] + segments[:, 1]))[ok])
            lengths.append(length[ok])
            across.append(normal[ok])
            along.append((direction[ok] / length[ok, None]) @ ml)
            which.append(np.full(ok.sum(), k))
        self.skin = np.concatenate(mids)
        self.outward = np.concatenate(across)
        self.ds = np.concatenate(lengths)
        self.cos_ml = np.concatenate(along)
        self.section = np.concatenate(which)
        self.ap = ap
        self.modulus = rx.material_spec.elastic_modulus_mpa
        self._trims: dict[float, Any] = {}

    def _trim(self, offset: float):
        # One trim field per offset: the thickness search evaluates the same
        # offset for every candidate thickness.
        if offset not in self._trims:
            rx = self.rx.model_copy(update={"trimlines": self.rx.trimlines.model_copy(
                update={"anterior_offset_mm": offset})})
            self._trims[offset] = device_trim(rx, self.landmarks, self.limb, self.top_z,
                                              **self.trim_options)
        return self._trims[offset]

    def sections(self, offset: float, thickness: float) -> tuple[np.ndarray, np.ndarray]:
        """Per section height: second moment of area (mm⁴) and wall length (mm)."""
        middle = self.skin + self.outward * (self.rx.clearance_mm + 0.5 * thickness)
        kept = self._trim(offset)(middle) < 0
        n = len(self.heights)
        ds = np.where(kept, self.ds, 0.0)
        a = middle @ self.ap
        length = np.bincount(self.section, weights=ds, minlength=n)
        centre = np.bincount(self.section, weights=ds * a, minlength=n) / np.maximum(length, 1e-9)
        spread = np.bincount(self.section, weights=ds * (a - centre[self.section]) ** 2,
                             minlength=n)
        own = np.bincount(self.section, weights=ds * self.cos_ml ** 2, minlength=n)
        return thickness * spread + thickness ** 3 / 12.0 * own, length

    def stiffness(self, offset: float, thickness: float) -> float:
        """Uncalibrated sagittal stiffness (N·m/deg) of the sections in series."""
        inertia, _ = self.sections(offset, thickness)
        compliance = np.sum(self.params.section_step_mm
                            / (self.modulus * np.maximum(inertia, 1e-6)))
        return float(1.0 / compliance) * NMM_PER_RAD_TO_NM_PER_DEG

    def neck_width(self, offset: float, thickness: float) -> float:
        """The shortest wall section between the ankle and the cuff (mm): the neck."""
        _, length = self.sections(offset, thickness)
        above = self.heights >= 0
        return float(length[above][length[above] > 0].min()) if (length[above] > 0).any() \
            else 0.0


@dataclass
class _Candidate:
    offset: float
    thickness: float


class _Calibration:
    """Finite-element over surrogate stiffness, interpolated in the surrogate's value.

    One solve gives a constant ratio; with more, the ratio is interpolated
    linearly between the designs solved (a secant step), constant beyond them.
    """

    def __init__(self) -> None:
        self.points: list[tuple[float, float]] = []

    def add(self, surrogate_k: float, measured_k: float) -> None:
        self.points.append((surrogate_k, measured_k / surrogate_k))
        self.points.sort()

    def __call__(self, surrogate_k: float) -> float:
        s, r = np.array(self.points).T
        return float(surrogate_k * np.interp(surrogate_k, s, r))


def _choose(surrogate: SectionSurrogate, calibrated: _Calibration, target: float,
            start: _Candidate, offsets: np.ndarray,
            thicknesses: np.ndarray) -> _Candidate | None:
    """The neck offset (thickness kept), else the thickness (offset at its bound) that
    the calibrated surrogate puts on the target; None when neither reaches it."""
    by_offset = np.array([calibrated(surrogate.stiffness(o, start.thickness)) for o in offsets])
    hit = _crossing(offsets, by_offset, target)
    if hit is not None:
        return _Candidate(hit, start.thickness)
    bound = offsets[-1] if target > by_offset.max() else offsets[0]
    by_thickness = np.array([calibrated(surrogate.stiffness(bound, t)) for t in thicknesses])
    hit = _crossing(thicknesses, by_thickness, target)
    return None if hit is None else _Candidate(bound, hit)


def _crossing(xs: np.ndarray, ys: np.ndarray, target: float) -> float | None:
    """Where the piecewise-linear ys(xs) first reaches ``target`` (ys rising), or None."""
    above = np.flatnonzero(ys >= target)
    if len(above) == 0 or ys[0] > target:
        return None
    i = int(above[0])
    if i == 0:
        return float(xs[0])
    x0, x1, y0, y1 = xs[i - 1], xs[i], ys[i - 1], ys[i]
    return float(x0 + (target - y0) * (x1 - x0) / max(y1 - y0, 1e-12))


def with_design(rx: Prescription, offset: float, thickness: float) -> Prescription:
    """``rx`` with the side trimline's offset and the thickness replaced."""
    return rx.model_copy(update={
        "thickness_mm": round(thickness, 2),
        "trimlines": rx.trimlines.model_copy(update={"anterior_offset_mm": round(offset, 2)})})


def design_to_target(rx: Prescription, surrogate: SectionSurrogate,
                     build: Callable[[Prescription], Any],
                     measure: Callable[[Any], float],
                     params: TuningParams = TuningParams()) -> tuple[Any, Prescription,
                                                                     dict[str, Any]]:
    """Build the design whose confirmed sagittal stiffness is the prescription's target.

    ``build(rx)`` makes a design, ``measure(design)`` its finite-element
    k_axis (N·m/deg).  Returns the design, the prescription it was built
    from, and the ``target`` block of the report.

    Raises
    ------
    CannotServeError
        When no design within the bounds reaches the target, or the
        confirmations do not converge on it.
    """
    target = float(rx.target_stiffness_nm_per_deg)
    lo, hi = params.offset_bounds_mm[rx.device]
    offsets = np.arange(lo, hi + 1e-9, params.offset_step_mm)
    t_min = rx.material_spec.structural_min_wall_mm
    thicknesses = np.arange(t_min, params.most_thickness_mm + 1e-9, params.thickness_step_mm)
    start = _Candidate(float(np.clip(rx.trimlines.anterior_offset_mm, lo, hi)),
                       float(rx.thickness_mm))
    current_rx = with_design(rx, start.offset, start.thickness)
    design = build(current_rx)
    achieved = measure(design)
    history = [{"anterior_offset_mm": start.offset, "thickness_mm": start.thickness,
                "k_axis_nm_per_deg": round(achieved, 4)}]
    candidate = start
    calibrated = _Calibration()
    for _ in range(params.most_confirmations + 1):
        if abs(achieved / target - 1.0) <= params.tolerance:
            break
        if len(history) > params.most_confirmations:
            raise CannotServeError(
                f"the design did not settle on the target stiffness of {target:g} Nm/deg "
                f"within {params.most_confirmations} finite-element confirmations (last "
                f"{achieved:.3g} Nm/deg with the side trimline {candidate.offset:+.1f} mm from "
                f"the malleoli and {candidate.thickness:.2f} mm thick); give the trimline "
                f"and thickness by hand")
        calibrated.add(surrogate.stiffness(candidate.offset, candidate.thickness), achieved)
        chosen = _choose(surrogate, calibrated, target, start, offsets, thicknesses)
        if chosen is None:
            raise CannotServeError(_unreachable(rx, target, surrogate, calibrated, lo, hi,
                                                t_min, params.most_thickness_mm))
        candidate = chosen
        current_rx = with_design(rx, candidate.offset, candidate.thickness)
        design = build(current_rx)
        achieved = measure(design)
        history.append({"anterior_offset_mm": round(candidate.offset, 2),
                        "thickness_mm": round(candidate.thickness, 2),
                        "k_axis_nm_per_deg": round(achieved, 4)})
        log.info("stiffness target %.3g: offset %+.2f mm, %.2f mm thick gives %.3g Nm/deg",
                 target, candidate.offset, candidate.thickness, achieved)
    block = {
        "target_nm_per_deg": target,
        "measure": "sagittal k_axis",
        "achieved_nm_per_deg": round(achieved, 4),
        "error_percent": round(100.0 * (achieved / target - 1.0), 2),
        "tolerance_percent": 100.0 * params.tolerance,
        "anterior_offset_mm": {"prescribed": rx.trimlines.anterior_offset_mm,
                               "designed": current_rx.trimlines.anterior_offset_mm,
                               "bounds": [lo, hi]},
        "thickness_mm": {"prescribed": rx.thickness_mm, "designed": current_rx.thickness_mm,
                         "bounds": [t_min, params.most_thickness_mm]},
        "neck_width_mm": round(surrogate.neck_width(candidate.offset, candidate.thickness), 1),
        "finite_element_solves": len(history),
        "history": history,
        "method": ("neck trimline first, then thickness, chosen by beam theory on sections "
                   "perpendicular to the shank (second moment of area about the malleolar "
                   "axis), calibrated by the finite-element solves so far (their ratio "
                   "interpolated, a secant step); each design confirmed by finite elements"),
    }
    return design, current_rx, block


def _unreachable(rx: Prescription, target: float, surrogate: SectionSurrogate,
                 calibrated: _Calibration, lo: float, hi: float, t_min: float,
                 t_max: float) -> str:
    stiffest = calibrated(surrogate.stiffness(hi, t_max))
    softest = calibrated(surrogate.stiffness(lo, t_min))
    if target > stiffest:
        return (f"the target stiffness of {target:g} Nm/deg is above what a {rx.device} of "
                f"{rx.material} reaches within the clinical bounds: about {stiffest:.2f} Nm/deg "
                f"with the side trimline {hi:+g} mm from the malleoli and {t_max:g} mm thick "
                f"(predicted, calibrated by finite elements); lower the target, or prescribe "
                f"a stiffer device or material")
    return (f"the target stiffness of {target:g} Nm/deg is below what a {rx.device} of "
            f"{rx.material} reaches within the clinical bounds: about {softest:.2f} Nm/deg "
            f"with the side trimline {lo:+g} mm from the malleoli and {t_min:g} mm thick "
            f"(predicted, calibrated by finite elements); raise the target, or prescribe a "
            f"more flexible device or material")
