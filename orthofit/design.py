"""Device design: from an intake result and a prescription to a checked shell.

This module owns the order of the design steps and what they report:
landmark overrides, the ankle correction, the device's trimlines, the
corrections' fields, the attachments, the shell, the label, the stiffness
(rebuilding the shell when designing to a target), the checks, and the
``report.json`` content built on the intake JSON.  Each step is a
function of another module; this one only sequences them.  It reads and
writes no files (``orthofit.pipeline`` does).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import numpy as np
import trimesh

from .anatomy import shank_axis
from .attachments import apply_label, plan_attachments
from .checks import run_checks
from .corrections import OTHER_SIDE, correct_ankle, extra_clearance, sagittal_angle
from .errors import CannotServeError
from .intake import IntakeResult, Progress, landmark_info, round_point
from .params import AnatomyParams, PoseParams
from .prescription import Prescription
from .shell import ShellParams, build_shell, edge_opening
from .stiffness import (Rig, RigParams, StiffnessResult, device_rig, not_reported, solve_stiffness,
                        stiffness_block)
from .trimlines import device_trim
from .tuning import SectionSurrogate, TuningParams, design_to_target

__all__ = ["DESIGN_STAGES", "DesignResult", "run_design"]

log = logging.getLogger(__name__)

#: Design stages after intake, as progress reports and timings name them.
DESIGN_STAGES = ("trimlines", "shell", "stiffness", "checks")
#: Every library whose version can move a shell, a check or a stiffness number
#: (requirements.lock pins them all; pyproject.toml bounds them).
# Vertices within this of the cut's plane lie on the cap closing the leg's top.
_CAP_BAND_MM = 1.0
_VERSIONED = ("orthofit", "numpy", "scipy", "open3d-cpu", "trimesh", "embreex", "manifold3d",
              "scikit-image", "pymetis", "pydantic")


@dataclass
class DesignResult:
    """A designed device and everything the report says about it."""

    intake: IntakeResult
    prescription: Prescription
    device: trimesh.Trimesh
    landmarks: dict[str, np.ndarray | None]
    trimlines: dict[str, Any]
    checks: dict[str, dict]
    timings_s: dict[str, float]
    #: What the corrections applied (reliefs with their centres, growth, mirror).
    corrections: dict[str, Any] = field(default_factory=dict)
    #: The limb the device was designed around: the scanned one, or with the
    #: ankle turned to the prescribed angle.
    limb: trimesh.Trimesh | None = None
    #: Strap slots, vents and the label, as placed.
    attachments: dict[str, Any] = field(default_factory=dict)
    #: The predicted ankle stiffness (report.json "stiffness").
    stiffness: dict[str, Any] = field(default_factory=dict)
    #: What the design says beside the intake's warnings (a default ankle angle).
    warnings: list[str] = field(default_factory=list)

    @property
    def all_warnings(self) -> list[str]:
        """Every warning for the clinician: the intake's, then the design's."""
        return [*self.intake.warnings, *self.warnings]

    @property
    def passed(self) -> bool:
        return all(check["passed"] for check in self.checks.values())

    def to_json(self) -> dict[str, Any]:
        """``report.json``: the intake JSON plus the design (timings vary by run)."""
        data = self.intake.to_json()
        data["landmarks"] = {name: None if p is None else round_point(p)
                             for name, p in self.landmarks.items()}
        data["landmark_overrides"] = sorted(self.prescription.landmark_overrides)
        data["landmark_info"] = landmark_info(self.intake.anatomy,
                                              tuple(self.prescription.landmark_overrides))
        data["prescription"] = self.prescription.model_dump(mode="json")
        data["trimlines"] = self.trimlines
        data["corrections"] = self.corrections
        data["attachments"] = self.attachments
        data["stiffness"] = self.stiffness
        data["warnings"] = self.all_warnings
        data["checks"] = self.checks
        data["passed"] = self.passed
        fit = self.checks.get("fits_printer", {})
        data["print"] = {"orientation": fit.get("orientation"),
                         "shank_to_layers_deg": fit.get("shank_to_layers_deg"),
                         "mass_g": self.checks["mass_g"]["value"],
                         "volume_cm3": self.checks["volume_cm3"]["value"],
                         "material": self.prescription.material,
                         "printer": self.prescription.printer_spec.name,
                         "thickness_mm": self.prescription.thickness_mm}
        data["timings_s"] = {**self.intake.timings_s, **self.timings_s}
        data["versions"] = _versions()
        return data


def _versions() -> dict[str, str]:
    out = {}
    for name in _VERSIONED:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "unknown"
    return out


def run_design(intake: IntakeResult, rx: Prescription, *,
               progress: Progress | None = None) -> DesignResult:
    """Trim, build and check the prescribed device on an intake's limb.

    Raises
    ------
    CannotServeError
        When the scan cannot give the device (an AFO from a foot-only scan, a
        trimline above the scanned leg, no foot, a foot orthosis from a scan
        whose sole was never seen).
    """
    timings: dict[str, float] = {}
    start = time.perf_counter()

    def done(stage: str, summary: str) -> None:
        nonlocal start
        now = time.perf_counter()
        timings[stage] = round(now - start, 3)
        if progress is not None:
            progress(stage, summary, now - start)
        start = now

    landmarks = dict(intake.anatomy.landmarks)
    for name, point in rx.landmark_overrides.items():
        landmarks[name] = np.asarray(point, dtype=np.float64)
    if landmarks["heel"] is None or landmarks["toe_tip"] is None:
        raise CannotServeError("the scan gives no foot landmarks; scan the foot again")
    if rx.device == "foot-orthosis" and intake.sole_unseen:
        raise CannotServeError(
            "the sole was not scanned and the scan shows no floor, so a foot orthosis's "
            "plantar surface would be guessed; scan the foot standing on the floor, or with "
            "the sole in view")
    limb, top_z, ankle = intake.limb, intake.top_z, None

    def shank(vertices: np.ndarray) -> np.ndarray:
        return shank_axis(vertices, intake.foot_length, AnatomyParams())[1]

    target_angle, warnings = _ankle_pose(intake, rx, PoseParams())
    knee_joint_z = intake.anatomy.knee_joint_z
    if target_angle is not None:
        turned = correct_ankle(limb, landmarks, target_angle, shank)
        if knee_joint_z is not None and landmarks.get("fibular_head") is not None:
            # The knee moves with the shank, as the fibular head below it does.
            knee_joint_z += float(turned.landmarks["fibular_head"][2]
                                  - landmarks["fibular_head"][2])
        if abs(turned.applied["turn_deg"]) > PoseParams().large_turn_deg:
            warnings.append(f"the shank was turned {abs(turned.applied['turn_deg']):.0f}° "
                            "about the ankle to reach the prescribed angle; the skin over "
                            "the front of the ankle and the heel is reshaped there: check the "
                            "fit over the ankle")
        # The top cut tilts with the shank: its lowest point is the new top.
        vertices = np.asarray(limb.vertices)
        top_ring = (np.abs(intake.cut.height(vertices)) <= _CAP_BAND_MM if intake.cut is not None
                    else vertices[:, 2] > top_z - _CAP_BAND_MM)
        limb, landmarks, ankle = turned.limb, turned.landmarks, turned.applied
        top_z = float(np.asarray(limb.vertices)[top_ring, 2].min())

    trim_options = {"knee_joint_z": knee_joint_z,
                    "estimated": frozenset(name for name, source in intake.anatomy.sources.items()
                                           if source == "estimated"
                                           and name not in rx.landmark_overrides)}

    def lay_out(variant: Prescription) -> _Built:
        trim = device_trim(variant, landmarks, limb, top_z, **trim_options)
        return _Built(variant, trim, extra_clearance(variant, landmarks, limb),
                      plan_attachments(variant, landmarks, limb, trim))

    def make(layout: _Built) -> _Built:
        variant, extra, plan = layout.rx, layout.extra, layout.plan
        device = build_shell(limb, layout.trim, clearance=variant.clearance_mm,
                             thickness=variant.thickness_mm,
                             flare=variant.trimlines.edge_flare_mm,
                             extra=extra if extra.parts else None, extra_most=extra.most_mm,
                             press=extra.press if extra.supports else None,
                             press_most=extra.press_most_mm,
                             cuts=plan.field if plan.cuts else None)
        if variant.attachments.label is not None:
            device, plan.applied["label"] = apply_label(device, variant, intake.side.value,
                                                        landmarks)
        layout.device = device
        return layout

    layout = lay_out(rx)
    done("trimlines", f"{rx.device}, footplate {rx.trimlines.footplate}")
    solved: dict[int, StiffnessResult] = {}
    target = None

    def rig_at(built: _Built) -> Rig:
        # From the landmarks and edge as report.json holds them (to 0.001 mm),
        # so that 'orthofit stiffness' on the written files gives the same numbers.
        written = {name: None if p is None else np.asarray(round_point(p))
                   for name, p in landmarks.items()}
        return device_rig(written, built.trim.summary["proximal_edge_z_mm"])

    def solve(built: _Built) -> StiffnessResult:
        material = built.rx.material_spec
        result = solve_stiffness(built.device, limb, built.rx.thickness_mm,
                                 material.elastic_modulus_mpa, material.poisson_ratio,
                                 rig_at(built))
        solved[id(built)] = result
        return result

    def measure(built: _Built) -> float:
        began = time.perf_counter()
        k = solve(built).k_axis["sagittal"]
        if progress is not None:
            # Each design tried on the way to the target, as it is confirmed.
            progress("stiffness", f"{k:.3g} Nm/deg with the side trimline "
                     f"{built.rx.trimlines.anterior_offset_mm:+.1f} mm from the malleoli, "
                     f"{built.rx.thickness_mm:g} mm thick", time.perf_counter() - began)
        return k

    if rx.target_stiffness_nm_per_deg is not None:
        proximal = layout.trim.summary["proximal_edge_z_mm"]
        surrogate = SectionSurrogate(rx, landmarks, limb, top_z, rig_at(layout),
                                     proximal - RigParams().cuff_band_mm, TuningParams(),
                                     trim_options=trim_options)
        built, rx, target = design_to_target(
            rx, surrogate, lambda v: make(layout if v == rx else lay_out(v)), measure)
    else:
        built = make(layout)
    trim, extra, plan, device = built.trim, built.extra, built.plan, built.device
    done("shell", f"{len(device.faces):,} triangles")
    corrections = {**extra.applied, "growth_length_mm": rx.corrections.growth_length_mm,
                   "mirror": rx.corrections.mirror, "ankle_angle": ankle}
    if rx.corrections.mirror:
        corrections["scanned_side"] = OTHER_SIDE[intake.side.value]
    if rx.device == "foot-orthosis":
        corrections["heel_cup_depth_mm"] = rx.trimlines.heel_cup_height_mm
    if "shoe_heel_pitch" in trim.summary:
        pitch = dict(trim.summary["shoe_heel_pitch"])
        if landmarks.get("calf") is not None:
            # In the shoe the device tilts forward by the pitch angle, and the
            # shank with it: the shank-to-vertical angle, forward positive.
            lean = 90.0 - sagittal_angle(shank(np.asarray(limb.vertices)))
            pitch["shank_to_vertical_in_shoe_deg"] = round(lean + pitch["pitch_deg"], 2)
        corrections["shoe_heel_pitch"] = pitch
    stiffness = _stiffness(rx, built, solved, rig_at, solve, target)
    done("stiffness", _stiffness_summary(stiffness))
    checks = run_checks(device, limb, clearance_mm=rx.clearance_mm,
                        thickness_mm=rx.thickness_mm, material=rx.material_spec,
                        printer=rx.printer_spec,
                        lay_shank_flat=rx.device == "posterior-leaf-spring", seed=rx.scan.seed,
                        extra=extra.net if extra.parts or extra.supports else None,
                        prescribed=_prescribed_clearance(trim, extra, rx),
                        filled=intake.filled, covers=_covers(trim, plan, rx),
                        intended_openings=len(plan.cuts),
                        reach_extra_mm=rx.trimlines.edge_flare_mm + extra.most_mm,
                        behind_mm=extra.press_most_mm, landmarks=landmarks)
    failed = [name for name, check in checks.items() if not check["passed"]]
    done("checks", "all passed" if not failed else f"failed: {', '.join(failed)}")
    return DesignResult(intake=intake, prescription=rx, device=device, landmarks=landmarks,
                        trimlines=trim.summary, checks=checks, timings_s=timings,
                        corrections=corrections, limb=limb, attachments=plan.applied,
                        stiffness=stiffness, warnings=warnings)


def _prescribed_clearance(trim, extra, rx: Prescription):
    """The clearance prescribed beyond the plain one at the wall's inner face (mm):
    reliefs and growth, the edge flare, less the supports' intended press."""
    flare = rx.trimlines.edge_flare_mm

    def field(points: np.ndarray) -> np.ndarray:
        return extra.net(points) + edge_opening(trim(points), flare)

    return field


def _covers(trim, plan, rx: Prescription):
    """Negative where the wall must cover the limb: inside the trimlines and outside
    every slot and vent by more than the rounded edge (plus a mm)."""
    margin = rx.thickness_mm * ShellParams().edge_round_share + _COVER_MARGIN_MM

    def field(points: np.ndarray) -> np.ndarray:
        inside = trim(points) + margin
        if plan.cuts:
            inside = np.maximum(inside, margin - plan.field(points))
        return inside

    return field


# The hole check looks this far (mm) beyond the rounded edges for the wall.
_COVER_MARGIN_MM = 1.0


def _ankle_pose(intake: IntakeResult, rx: Prescription,
                params: PoseParams) -> tuple[float | None, list[str]]:
    """The angle to turn the ankle to (None: as scanned), and what to say about it.

    A foot scanned hanging in plantarflexion gives an AFO or leaf spring at
    the neutral angle unless the prescription gives one.  An SMO holds the
    ankle as scanned and ends above it, with no shank to turn: from such a
    scan it is refused with the reason.

    Raises
    ------
    CannotServeError
        An SMO from a foot scanned in plantarflexion.
    """
    scanned = intake.anatomy.measurements.get("ankle_angle_deg")
    target = rx.corrections.ankle_angle_deg
    plantarflexed = scanned is not None and scanned > params.plantarflexed_from_deg
    if rx.device == "smo" and plantarflexed:
        raise CannotServeError(
            f"the foot was scanned at {scanned:.0f}° (plantarflexed, 90 is neutral), and an "
            "SMO would hold the ankle there: it ends just above the ankle, with no shank to "
            "turn; scan the foot standing or held at 90°, or prescribe an AFO, which is "
            "turned to the prescribed angle")
    if target is None and plantarflexed and rx.device in ("solid-afo", "posterior-leaf-spring"):
        return params.neutral_deg, [
            f"the foot was scanned at {scanned:.0f}° (plantarflexed); the {rx.device} is "
            f"designed at {params.neutral_deg:.0f}° (neutral) by turning the shank about the "
            "ankle: give corrections.ankle_angle_deg to design at another angle"]
    return target, []


@dataclass
class _Built:
    """One build of the device: the prescription it came from and its parts."""

    rx: Prescription
    trim: Any
    extra: Any
    plan: Any
    device: trimesh.Trimesh | None = None


def _stiffness(rx: Prescription, built: _Built, solved: dict, rig_at, solve,
               target: dict[str, Any] | None) -> dict[str, Any]:
    """The report's ``stiffness`` block: from the confirming solve when there was one."""
    if rx.device not in ("solid-afo", "posterior-leaf-spring"):
        return not_reported(rx.device)
    if not rx.predict_stiffness:
        return {"reported": False, "reason": "predict_stiffness is false in the prescription; "
                "run 'orthofit stiffness' on the design's folder for the number"}
    result = solved.get(id(built)) or solve(built)
    block = stiffness_block(result, rig_at(built), rx.material_spec)
    if target is not None:
        block["target"] = target
    return block


def _stiffness_summary(block: dict[str, Any]) -> str:
    if not block.get("reported"):
        return "not reported"
    sagittal = block["planes"]["sagittal"]
    return f"sagittal {sagittal['k_axis']:.3g} Nm/deg about the ankle axis"

