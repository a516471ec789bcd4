"""Devices on the scan zoo, judged against each case's true skin (issue #16).

For every zoo case (or the CI subset with ``--ci``) and each device, the
device is designed from the scan (stiffness off) and measured by
``tests.zoo.fit.fit_against_truth`` against the true skin moved into the
device frame by orthofit's ``scan_to_device``: deepest penetration, the
share of vertices inside, clearance median and 5th percentile over the
inner face, bodies and genus.  Designs whose ankle a correction turned are
judged against the true skin turned as their report says.  With
``--recipes`` the three recipes in ``recipes/`` are designed too (stiffness
off).  Results go to ``bench/results/zoo_fit.json`` and a Markdown table on
stdout.

Usage: ``python -m bench.bench_zoo_fit [--ci] [--recipes]
[--devices solid-afo,posterior-leaf-spring,smo,foot-orthosis]``
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from orthofit import IntakeOptions, OrthofitError, inspect_file
from orthofit.io import read_prescription_file
from orthofit.prescription import Prescription
from tests.zoo.cases import CASES, CI_SUBSET
from tests.zoo_designs import design_and_fit
from tests.zoo.generate import scan_path

from bench.bench_zoo import RESULTS

RECIPES = Path(__file__).resolve().parents[1] / "recipes"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ci", action="store_true", help="only the CI subset")
    parser.add_argument("--devices", default="solid-afo,posterior-leaf-spring,smo,foot-orthosis")
    parser.add_argument("--recipes", action="store_true", help="the recipes in recipes/ too")
    args = parser.parse_args()
    names = list(CI_SUBSET) if args.ci else [c.name for c in CASES]
    designs = [(device, None) for device in args.devices.split(",")]
    if args.recipes:
        for path in sorted(RECIPES.glob("*.yaml")):
            rx = Prescription.model_validate(read_prescription_file(path))
            designs.append((f"recipe {path.stem}", rx.model_copy(update={
                "predict_stiffness": False})))
    rows = []
    for name in names:
        try:
            intake = inspect_file(scan_path(name), IntakeOptions())
        except OrthofitError as exc:
            rows.append({"case": name, "device": "(intake)", "refused": str(exc)})
            continue
        for device, rx in designs:
            row = design_and_fit(name, device, intake, rx)
            rows.append(row)
            print(name, device, {k: row.get(k) for k in (
                "max_penetration_mm", "deepest_at_mm", "clearance_median_mm", "genus", "refused",
                "ankle_turned_deg", "checks_failed")}, file=sys.stderr, flush=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "zoo_fit.json").write_text(json.dumps(rows, indent=2, default=str) + "\n")
    print("| case | device | deepest in skin mm | inside % | clearance median / p5 mm "
          "| genus | checks |")
    print("|---|---|---:|---:|---|---:|---|")
    for r in rows:
        if "refused" in r:
            print(f"| {r['case']} | {r['device']} | refused: {r['refused'][:70]} | | | | |")
        else:
            checks = "pass" if not r["checks_failed"] else "fail: " + ", ".join(r["checks_failed"])
            device = r["device"] + (f" (ankle turned {r['ankle_turned_deg']:+.0f}°)"
                                    if r.get("ankle_turned_deg") else "")
            print(f"| {r['case']} | {device} | {r['max_penetration_mm']:.2f} | "
                  f"{100 * r['inside_share']:.2f} | {r['clearance_median_mm']:.2f} / "
                  f"{r['clearance_p5_mm']:.2f} | {r['genus']:g} | {checks} |")


if __name__ == "__main__":
    main()
