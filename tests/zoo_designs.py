"""One zoo case designed by orthofit and measured against the case's true skin.

Shared by ``tests/test_zoo_fit.py`` (a few cases in CI) and
``bench/bench_zoo_fit.py`` (the whole zoo).  The design runs on orthofit's
own intake of the scan; the true skin is moved into the device frame by the
``scan_to_device`` orthofit reports, never by anything orthofit built.  A
design whose ankle a correction turned (a hanging foot designed at 90°, or a
recipe's ankle angle) is judged against the true skin turned the same way,
from the numbers its report gives (``tests.zoo.fit.turned_at_ankle``): the
patient's shank held at the prescribed angle.
"""

from __future__ import annotations

import time
from typing import Any

from orthofit import IntakeOptions, OrthofitError, inspect_file

from tests.zoo.fit import fit_against_truth, skin_in_device, turned_at_ankle
from tests.zoo.generate import scan_path

__all__ = ["design_and_fit"]


def design_and_fit(name: str, device: str, intake=None, rx=None) -> dict[str, Any]:
    """Design ``device`` (a device type, stiffness off) on zoo case ``name``, or the
    prescription ``rx`` (a recipe) labelled ``device``, and judge its fit on the true
    skin; one row (``refused`` holds a refusal's message)."""
    from orthofit.design import run_design
    from orthofit.prescription import Prescription

    row: dict[str, Any] = {"case": name, "device": device}
    started = time.perf_counter()
    try:
        intake = intake or inspect_file(scan_path(name), IntakeOptions())
        rx = rx or Prescription(device=device, predict_stiffness=False)
        result = run_design(intake, rx)
    except OrthofitError as exc:
        row.update(refused=str(exc), exit_code=exc.exit_code)
        return row
    turned = result.corrections.get("ankle_angle")
    row["checks_failed"] = [k for k, v in result.checks.items() if not v["passed"]]
    row["warnings"] = result.all_warnings
    skin = skin_in_device(name, intake.scan_to_device)
    if turned and turned["turn_deg"] != 0.0:
        skin = turned_at_ankle(skin, axis_point=turned["axis_point_mm"],
                               axis_direction=turned["axis_direction"],
                               degrees=turned["turn_deg"], blend_mm=turned["blend_mm"])
        row["ankle_turned_deg"] = turned["turn_deg"]
    row.update(fit_against_truth(result.device, skin, clearance_mm=rx.clearance_mm,
                                 thickness_mm=rx.thickness_mm))
    row["seconds"] = round(time.perf_counter() - started, 1)
    return row
