"""Record the stiffness numbers of the closed-form walls and the sample leaf springs.

A change to the finite-element mesh or solve must not move the numbers: this
records them (full precision, not the report's four figures) so that two
versions can be compared.  It solves

- the closed-form walls of ``tests/test_stiffness.py`` (the cantilever strip
  at 3 mm elements, at 2 mm, with two layers; the quarter ring), against
  beam theory;
- a PP leaf spring with its neck 12 mm behind the malleoli on each sample
  scan with a leg, exactly as ``run_design`` solves it (its rig from the
  landmarks as ``report.json`` rounds them).

Each solve's time (mesh + assembly + solve) is recorded too, but one run on
a shared machine is only a rough figure: ``bench.bench_stiffness`` times the
stage properly.

Usage::

    python -m bench.bench_stiffness_accuracy --record before
    python -m bench.bench_stiffness_accuracy --record after --compare before

``--compare before`` falls back on the values recorded below (``BEFORE``)
when ``bench/results`` has no such file.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from bench.bench_intake import HERE, RESULTS

#: Recorded with ``--record before`` on commit f644ee1 (SuperLU), before the solver changed.
BEFORE = {
    "walls": {
        "strip": {
            "k_free_sagittal": 0.011539956255210978,
            "k_axis_sagittal": 0.011544716016015984,
            "beam": 0.011780972450961725,
            "elements": 2253,
            "dofs": 14490,
            "seconds": 1.33
        },
        "strip_2mm": {
            "k_free_sagittal": 0.011638194530165206,
            "k_axis_sagittal": 0.011644082058945758,
            "beam": 0.011780972450961725,
            "elements": 4692,
            "dofs": 29601,
            "seconds": 1.78
        },
        "strip_2_layers": {
            "k_free_sagittal": 0.011506187385359344,
            "k_axis_sagittal": 0.011511295366881618,
            "beam": 0.011780972450961725,
            "elements": 4506,
            "dofs": 24150,
            "seconds": 1.16
        },
        "ring": {
            "k_free_sagittal": 0.014380075798330502,
            "k_axis_sagittal": 0.07554685002146616,
            "beam": 0.014563106796116507,
            "elements": 1947,
            "dofs": 12528,
            "seconds": 0.59
        }
    },
    "leaf_springs": {
        "adult_left_floor_mm_zup.ply": {
            "k_axis_sagittal": 4.0936755985295585,
            "k_axis_frontal": 10.288318672370794,
            "k_axis_transverse": 2.0233443615747038,
            "k_free_sagittal": 1.5534873158092488,
            "k_free_frontal": 3.5854865441672694,
            "k_free_transverse": 0.09125439218561383,
            "elements": 30362,
            "dofs": 198159,
            "seconds": 14.82
        },
        "adult_right_platform_m_yup.ply": {
            "k_axis_sagittal": 3.144464988523554,
            "k_axis_frontal": 5.84057758115582,
            "k_axis_transverse": 1.4294976727564117,
            "k_free_sagittal": 1.3086487159048197,
            "k_free_frontal": 1.839383941154888,
            "k_free_transverse": 0.11086435031263357,
            "elements": 31827,
            "dofs": 207513,
            "seconds": 13.37
        },
        "child_left_floor_in_zup.ply": {
            "k_axis_sagittal": 2.1313436520457816,
            "k_axis_frontal": 6.215192897084002,
            "k_axis_transverse": 1.732953253866073,
            "k_free_sagittal": 1.0330482701207546,
            "k_free_frontal": 2.728678004927977,
            "k_free_transverse": 0.08766822172461602,
            "elements": 16002,
            "dofs": 105513,
            "seconds": 8.27
        },
        "child_right_floor_mm_yup.stl": {
            "k_axis_sagittal": 1.9263689673626079,
            "k_axis_frontal": 6.179620601531605,
            "k_axis_transverse": 1.7068194730842432,
            "k_free_sagittal": 0.980020415451121,
            "k_free_frontal": 2.6175169673324588,
            "k_free_transverse": 0.08362402687637416,
            "elements": 15677,
            "dofs": 103209,
            "seconds": 11.84
        }
    }
}

LEAF_SPRING_SCANS = ("adult_left_floor_mm_zup.ply", "adult_right_platform_m_yup.ply",
                     "child_left_floor_in_zup.ply", "child_right_floor_mm_yup.stl")


def _walls() -> dict[str, dict]:
    from orthofit.femesh import FEMeshParams
    from orthofit.stiffness import solve_stiffness
    from tests import test_stiffness as t
    from tests.beams import quarter_ring, strip

    flat = strip(t.CLAMP + t.FREE + t.CUFF, 30.0, 3.0)
    ring = quarter_ring(50.0, 30.0, 3.0, straight=15.0)
    cases = {
        "strip": (flat, t._strip_rig(), FEMeshParams(), t._beam(30.0, 3.0, t.FREE)),
        "strip_2mm": (flat, t._strip_rig(), FEMeshParams(element_mm=2.0),
                      t._beam(30.0, 3.0, t.FREE)),
        "strip_2_layers": (flat, t._strip_rig(), FEMeshParams(layers=2),
                           t._beam(30.0, 3.0, t.FREE)),
        "ring": (ring, t._ring_rig(), FEMeshParams(),
                 t._beam(30.0, 3.0, 0.5 * np.pi * (50.0 + 1.5))),
    }
    out = {}
    for name, (wall, rig, params, exact) in cases.items():
        began = time.perf_counter()
        result = solve_stiffness(wall.shell, wall.limb, wall.thickness, t.E, 0.0, rig, params)
        out[name] = {"k_free_sagittal": result.k_free["sagittal"],
                     "k_axis_sagittal": result.k_axis["sagittal"], "beam": exact,
                     "elements": len(result.mesh.tets), "dofs": 3 * len(result.mesh.nodes),
                     "seconds": round(time.perf_counter() - began, 2)}
    return out


def _leaf_springs() -> dict[str, dict]:
    from orthofit.design import run_design
    from orthofit.intake import round_point
    from orthofit.pipeline import inspect_file
    from orthofit.prescription import Prescription
    from orthofit.stiffness import device_rig, solve_stiffness

    out = {}
    for name in LEAF_SPRING_SCANS:
        intake = inspect_file(HERE.parent / "scans" / name, Prescription().scan)
        rx = Prescription(device="posterior-leaf-spring", material="PP",
                          trimlines={"anterior_offset_mm": -12.0}, predict_stiffness=False)
        design = run_design(intake, rx)
        # The rig as run_design builds it: landmarks as report.json rounds them.
        written = {k: None if p is None else np.asarray(round_point(p))
                   for k, p in design.landmarks.items()}
        rig = device_rig(written, design.trimlines["proximal_edge_z_mm"])
        material = rx.material_spec
        began = time.perf_counter()
        result = solve_stiffness(design.device, design.limb, rx.thickness_mm,
                                 material.elastic_modulus_mpa, material.poisson_ratio, rig)
        out[name] = {**{f"k_axis_{p}": v for p, v in result.k_axis.items()},
                     **{f"k_free_{p}": v for p, v in result.k_free.items()},
                     "elements": len(result.mesh.tets), "dofs": 3 * len(result.mesh.nodes),
                     "seconds": round(time.perf_counter() - began, 2)}
        print(f"{name}: k_axis sagittal {result.k_axis['sagittal']:.5g} Nm/deg, "
              f"{out[name]['seconds']} s", file=sys.stderr)
    return out


def _compare(old: dict, new: dict) -> None:
    print("| wall | beam | old | new | old vs beam % | new vs beam % |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, n in new["walls"].items():
        o = old["walls"][name]
        print(f"| {name} k_free | {n['beam']:.5g} | {o['k_free_sagittal']:.5g} | "
              f"{n['k_free_sagittal']:.5g} | {100 * (o['k_free_sagittal'] / o['beam'] - 1):+.2f} "
              f"| {100 * (n['k_free_sagittal'] / n['beam'] - 1):+.2f} |")
    for version, data in (("old", old), ("new", new)):
        w = data["walls"]
        for fine in ("strip_2mm", "strip_2_layers"):
            delta = 100 * (w[fine]["k_free_sagittal"] / w["strip"]["k_free_sagittal"] - 1)
            print(f"{version}: {fine} vs strip {delta:+.3f} %")
    print()
    print("| leaf spring (PP, -12 mm) | old k_axis | new k_axis | change % | old DOFs | new DOFs "
          "| old s | new s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, n in new["leaf_springs"].items():
        o = old["leaf_springs"][name]
        print(f"| {name} | {o['k_axis_sagittal']:.5g} | {n['k_axis_sagittal']:.5g} | "
              f"{100 * (n['k_axis_sagittal'] / o['k_axis_sagittal'] - 1):+.3f} | "
              f"{o['dofs']:,} | {n['dofs']:,} | {o['seconds']} | {n['seconds']} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--record", required=True, help="label of this version's results")
    parser.add_argument("--compare", help="label of recorded results to compare with")
    parser.add_argument("--skip-samples", action="store_true",
                        help="only the closed-form walls")
    args = parser.parse_args()
    data = {"walls": _walls()}
    if not args.skip_samples:
        data["leaf_springs"] = _leaf_springs()
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"stiffness_accuracy_{args.record}.json").write_text(
        json.dumps(data, indent=2) + "\n")
    if args.compare:
        recorded = RESULTS / f"stiffness_accuracy_{args.compare}.json"
        old = json.loads(recorded.read_text()) if recorded.is_file() else BEFORE
        if args.skip_samples:
            data["leaf_springs"] = {}
        _compare(old, data)


if __name__ == "__main__":
    main()
