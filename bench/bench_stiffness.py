"""Benchmark the stiffness prediction on shells of about 300,000 triangles and more.

An adult solid AFO and leaf spring are designed (without the prediction) from
the 1-million-point virtual scan of :mod:`bench.bench_intake`; each shell is
also subdivided until it has at least 300,000 triangles.  ``orthofit
stiffness`` then runs on every folder in a fresh process that reports its
time and peak memory: the whole command (reading the files included) and the
stiffness stage alone (meshing, assembly, solve and the report's block).
Last, each device is designed again with the prediction, in a fresh process,
as ``orthofit design`` runs it (fit report included).

Budgets: the stiffness stage about 3 s and well under 1.5 GB on 2 cores, so
that a solid AFO designed with its stiffness (1 M-point scan, fresh process)
takes under 10 s and 1.5 GB; designing to a target (one calibrating solve
and up to three confirmations) under 25 s.

Usage: ``python -m bench.bench_stiffness [--million 1] [--repeat 3]``
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.bench_intake import HERE, RESULTS, scan_for

LEAST_TRIANGLES = 300_000


def _median_run(command: list[str], repeat: int) -> dict:
    """Run ``command`` ``repeat`` times; the run with the median total, peak the largest."""
    runs = []
    for _ in range(repeat):
        proc = subprocess.run(command, capture_output=True, text=True, check=True,
                              cwd=HERE.parent)
        runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    middle = sorted(runs, key=lambda r: r["total_s"])[len(runs) // 2]
    middle["peak_mb"] = max(r["peak_mb"] for r in runs)
    middle["total_s_runs"] = [r["total_s"] for r in runs]
    return middle


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--million", type=float, default=1.0)
    parser.add_argument("--devices", default="solid-afo,posterior-leaf-spring")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each (median kept)")
    args = parser.parse_args()
    path = scan_for(args.million)
    rows, designs = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for device in args.devices.split(","):
            designed = Path(tmp) / device
            subprocess.run([sys.executable, "-m", "orthofit", "design", str(path), "-o",
                            str(designed), "--device", device, "--case-ref", "bench",
                            "--no-stiffness"],
                           input=None, capture_output=True, text=True, cwd=HERE.parent,
                           env=None, check=False)
            if not (designed / "device.stl").is_file():
                raise SystemExit(f"design of {device} failed")
            dense = Path(tmp) / f"{device}-dense"
            shutil.copytree(designed, dense)
            subprocess.run([sys.executable, "-m", "bench.run_stiffness", "--densify",
                            str(LEAST_TRIANGLES), str(dense)], check=True, cwd=HERE.parent)
            for folder in (designed, dense):
                row = _median_run([sys.executable, "-m", "bench.run_stiffness", str(folder)],
                                  args.repeat)
                row["device"] = device
                rows.append(row)
                print(f"{device}: {row['triangles']:,} triangles, {row['total_s']:.1f} s, "
                      f"stage {row['stage_s']:.1f} s, {row['peak_mb']:.0f} MB",
                      file=sys.stderr)
            design = _median_run([sys.executable, "-m", "bench.run_design", str(path), device],
                                 args.repeat)
            designs.append(design)
            print(f"{device} designed with stiffness: {design['total_s']:.1f} s, "
                  f"{design['peak_mb']:.0f} MB", file=sys.stderr)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "stiffness.json").write_text(json.dumps({"stiffness": rows, "design": designs},
                                                       indent=2) + "\n")
    print("| device | shell triangles | elements | free DOFs | read + mesh + solve s | "
          "peak MB | sagittal k_free | sagittal k_axis | stiffness stage s | of it after "
          "meshing s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['device']} | {r['triangles']:,} | {r['elements']:,} | {r['dofs']:,} | "
              f"{r['total_s']:.1f} | {r['peak_mb']:.0f} | {r['k_free']:.3g} | "
              f"{r['k_axis']:.3g} | {r['stage_s']:.1f} | {r['solve_s']:.1f} |")
    print()
    print("| device designed with stiffness | total s | stiffness stage s | shell s | "
          "peak MB |")
    print("|---|---:|---:|---:|---:|")
    for d in designs:
        print(f"| {d['device']} | {d['total_s']:.1f} | {d['stages_s'].get('stiffness', 0):.1f} "
              f"| {d['stages_s'].get('shell', 0):.1f} | {d['peak_mb']:.0f} |")
    print()
    spread = [f"{r['device']} {min(r['total_s_runs']):.1f}-{max(r['total_s_runs']):.1f} s"
              for r in rows + designs]
    print(f"Median of {args.repeat} runs each; spread: " + "; ".join(spread) + ".")


if __name__ == "__main__":
    main()
