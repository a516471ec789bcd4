"""Benchmark the stiffness prediction on shells of about 300,000 triangles and more.

An adult solid AFO and leaf spring are designed (without the prediction) from
the 1-million-point virtual scan of :mod:`bench.bench_intake`; each shell is
also subdivided until it has at least 300,000 triangles.  ``orthofit
stiffness`` then runs on every folder in a fresh process that reports its
time and peak memory.  Budget (issue #8): under 30 s and 3 GB on 2 cores for
a 300k-triangle shell.

Usage: ``python -m bench.bench_stiffness [--million 1]``
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--million", type=float, default=1.0)
    parser.add_argument("--devices", default="solid-afo,posterior-leaf-spring")
    args = parser.parse_args()
    path = scan_for(args.million)
    rows = []
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
                proc = subprocess.run([sys.executable, "-m", "bench.run_stiffness", str(folder)],
                                      capture_output=True, text=True, check=True,
                                      cwd=HERE.parent)
                row = json.loads(proc.stdout.strip().splitlines()[-1])
                row["device"] = device
                rows.append(row)
                print(f"{device}: {row['triangles']:,} triangles, {row['total_s']:.1f} s, "
                      f"{row['peak_mb']:.0f} MB", file=sys.stderr)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "stiffness.json").write_text(json.dumps(rows, indent=2) + "\n")
    print("| device | shell triangles | elements | free DOFs | read + mesh + solve s | "
          "peak MB | sagittal k_free | sagittal k_axis |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['device']} | {r['triangles']:,} | {r['elements']:,} | {r['dofs']:,} | "
              f"{r['total_s']:.1f} | {r['peak_mb']:.0f} | {r['k_free']:.3g} | "
              f"{r['k_axis']:.3g} |")


if __name__ == "__main__":
    main()
