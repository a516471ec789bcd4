"""Judging what orthofit found on a zoo case against the case's truth, from plain data.

This module owns the zoo's verdicts: given a case's truth record and the JSON
that ``orthofit inspect --json`` (or ``intake.json``) gives, it maps the truth
into orthofit's device frame with orthofit's own ``scan_to_device`` and
compares side, leg extent, ankle centre, foot length and fibular head, each
with the limit the anatomy issue sets.  A refusal (orthofit's exit code and
one-line message) is judged too: it passes only when the case truly cannot
give landmarks.  It takes dicts and arrays only and never imports orthofit.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from .fit import truth_in_device

__all__ = ["LIMITS", "IntakeVerdict", "judge_intake", "judge_refusal"]

#: The anatomy issue's limits (mm): ankle centre, foot length, fibular head in view.
LIMITS = {"ankle_center_mm": 5.0, "foot_length_mm": 2.0, "fibular_head_mm": 15.0}


@dataclass
class IntakeVerdict:
    """One zoo case as orthofit read it, against the truth."""

    name: str
    extent_truth: str
    extent_found: str | None = None
    side_truth: str = ""
    side_found: str | None = None
    side_confidence: float | None = None
    ankle_center_error_mm: float | None = None
    foot_length_error_mm: float | None = None
    fibular_head_error_mm: float | None = None
    fibular_head_source: str | None = None
    #: The fibular head (found or estimated) above the true knee joint line, mm (> 0 is bad).
    fibular_head_above_knee_mm: float | None = None
    ankle_angle_truth_deg: float | None = None
    ankle_angle_found_deg: float | None = None
    refused: str | None = None
    passed: bool = False
    failures: list[str] | None = None

    def row(self) -> dict[str, Any]:
        return asdict(self)


def _distance(a, b) -> float | None:
    if a is None or b is None:
        return None
    return float(np.linalg.norm(np.asarray(a, float) - np.asarray(b, float)))


def judge_intake(truth: dict[str, Any], found: dict[str, Any]) -> IntakeVerdict:
    """Compare orthofit's intake JSON ``found`` with the case's ``truth``.

    A case passes when the side is right, the extent is the truth's (where
    orthofit reports one), the ankle centre, the foot length and (when the
    knee is in view) the fibular head are within :data:`LIMITS`, and no
    fibular head (found or estimated) lies above the true knee joint line.
    """
    matrix = np.asarray(found["scan_to_device"], dtype=float)
    true = truth_in_device(truth, matrix)
    landmarks = found.get("landmarks", {})
    measurements = found.get("measurements", {})
    verdict = IntakeVerdict(name=truth["name"], extent_truth=truth["leg_extent"],
                            extent_found=found.get("leg_extent"),
                            side_truth=truth["side"], side_found=found["side"]["value"],
                            side_confidence=found["side"].get("confidence"))
    failures = []
    if verdict.side_found != verdict.side_truth:
        failures.append(f"side {verdict.side_found} (truth {verdict.side_truth})")
    if verdict.extent_found is not None and verdict.extent_found != verdict.extent_truth:
        failures.append(f"extent {verdict.extent_found} (truth {verdict.extent_truth})")
    verdict.ankle_center_error_mm = _distance(landmarks.get("ankle_center"),
                                              true.get("ankle_joint_center"))
    if verdict.ankle_center_error_mm is None:
        failures.append("no ankle centre")
    elif verdict.ankle_center_error_mm > LIMITS["ankle_center_mm"]:
        failures.append(f"ankle centre {verdict.ankle_center_error_mm:.1f} mm off")
    length = measurements.get("foot_length_mm")
    if length is None:
        failures.append("no foot length")
    else:
        verdict.foot_length_error_mm = float(length - truth["foot_length_mm"])
        if abs(verdict.foot_length_error_mm) > LIMITS["foot_length_mm"]:
            failures.append(f"foot length {verdict.foot_length_error_mm:+.1f} mm off")
    head = landmarks.get("fibular_head")
    info = found.get("landmark_info", {})
    verdict.fibular_head_source = (info.get("fibular_head") or {}).get("source")
    if truth.get("fibular_head_in_view") and verdict.fibular_head_source == "scanned":
        verdict.fibular_head_error_mm = _distance(head, true.get("fibular_head"))
        if verdict.fibular_head_error_mm is None:
            failures.append("no fibular head, though the knee is in view")
        elif verdict.fibular_head_error_mm > LIMITS["fibular_head_mm"]:
            failures.append(f"fibular head {verdict.fibular_head_error_mm:.1f} mm off")
    elif truth.get("fibular_head_in_view") and truth["leg_extent"] in ("above_knee", "knee"):
        failures.append(f"fibular head {verdict.fibular_head_source or 'not found'}, "
                        "though the knee is in view")
    knee_z = true.get("knee_joint_line_z_mm")
    if head is not None and knee_z is not None:
        verdict.fibular_head_above_knee_mm = float(head[2] - knee_z)
        if verdict.fibular_head_above_knee_mm > 0:
            failures.append(f"fibular head {verdict.fibular_head_above_knee_mm:.0f} mm above "
                            "the knee joint line")
    verdict.ankle_angle_truth_deg = truth.get("ankle_angle_deg")
    verdict.ankle_angle_found_deg = measurements.get("ankle_angle_deg")
    verdict.failures = failures
    verdict.passed = not failures
    return verdict


def judge_refusal(truth: dict[str, Any], exit_code: int, message: str) -> IntakeVerdict:
    """A case orthofit refused: it fails, since every zoo case holds a foot and an ankle.

    The verdict keeps the message, so the zoo table can say why.
    """
    return IntakeVerdict(name=truth["name"], extent_truth=truth["leg_extent"],
                         side_truth=truth["side"], refused=f"exit {exit_code}: {message}",
                         passed=False, failures=[f"refused (exit {exit_code})"])
