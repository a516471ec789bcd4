"""Every sample (and an analytic limb) designed at side trimlines across the tuning
bounds, with the stiffness solved: none may end in an internal error (issue #14).

Each design runs in-process; a refusal (an ``OrthofitError``) is a clear answer
and is listed with its exit code; any other exception is an internal error and
makes the sweep exit 1.  Results go to ``bench/results/sweep_neck.json``.

Usage: ``python -m bench.sweep_neck [--steps 5]``
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback

import numpy as np

from orthofit import IntakeOptions, OrthofitError, RawScan, inspect_file, run_intake
from orthofit.design import run_design
from orthofit.prescription import Prescription
from orthofit.tuning import TuningParams
from bench.bench_zoo import RESULTS

def _intakes():
    from tests.test_samples import SAMPLES

    for path in SAMPLES:
        if "footonly" in path.name:
            continue
        yield path.stem, inspect_file(path, IntakeOptions())
    from tests.analytic import AnalyticLimb, scan_points
    points, _ = scan_points(AnalyticLimb(side="left"), seed=4)
    yield "analytic_left", run_intake(RawScan(points, None, "xyz", "0" * 64),
                                      IntakeOptions(side="left"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    bounds = TuningParams().offset_bounds_mm
    rows, internal = [], 0
    for name, intake in _intakes():
        for device in ("solid-afo", "posterior-leaf-spring"):
            lo, hi = bounds[device]
            for offset in np.linspace(lo, hi, args.steps):
                rx = Prescription(device=device,
                                  trimlines={"anterior_offset_mm": float(offset)})
                row = {"scan": name, "device": device, "offset_mm": round(float(offset), 2)}
                try:
                    result = run_design(intake, rx)
                    block = result.stiffness
                    row["k_sagittal"] = (block["planes"]["sagittal"]["k_axis"]
                                         if block.get("reported") else None)
                    row["loose_volume_share"] = block.get("loose_volume_share")
                    row["failed"] = [k for k, v in result.checks.items() if not v["passed"]]
                except OrthofitError as exc:
                    row.update(exit_code=exc.exit_code, refused=str(exc))
                except Exception:  # noqa: BLE001 - the sweep exists to find these
                    internal += 1
                    row["internal_error"] = traceback.format_exc(limit=3)
                rows.append(row)
                print(json.dumps(row)[:200], file=sys.stderr, flush=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "sweep_neck.json").write_text(json.dumps(rows, indent=2) + "\n")
    print(f"{len(rows)} designs, {internal} internal errors, "
          f"{sum('refused' in r for r in rows)} refused")
    return 1 if internal else 0


if __name__ == "__main__":
    sys.exit(main())
