"""Benchmark ``design`` end to end on a virtual scan of about 1 million points.

The scan comes from the same cache as :mod:`bench.bench_intake`; each device
is designed in a fresh process that reports its stage timings and peak
memory.  Budget (issue #3): under 15 s and 2 GB on 2 cores.

The last run is the strapped AFO recipe (ankle correction, two straps, vents
and a label), to show what attachments cost.

Usage: ``python -m bench.bench_design [--million 1] [--devices solid-afo,smo]``
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

from bench.bench_intake import HERE, RESULTS, scan_for

STAGE_ORDER = ("read", "units", "clean", "align", "close", "landmarks", "trimlines",
               "shell", "stiffness", "checks", "write")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--million", type=float, default=1.0)
    parser.add_argument("--devices",
                        default="solid-afo,posterior-leaf-spring,smo,foot-orthosis,"
                                "recipes/afo-with-straps.yaml")
    args = parser.parse_args()
    path = scan_for(args.million)
    rows = []
    for device in args.devices.split(","):
        proc = subprocess.run([sys.executable, "-m", "bench.run_design", str(path), device],
                              capture_output=True, text=True, check=True, cwd=HERE.parent)
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        print(f"{device}: {rows[-1]['total_s']:.1f} s, {rows[-1]['peak_mb']:.0f} MB",
              file=sys.stderr)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "design.json").write_text(json.dumps(rows, indent=2) + "\n")
    head = "| device | " + " | ".join(STAGE_ORDER) + " | total s | peak MB | checks |"
    print(head)
    print("|---|" + "---:|" * (len(STAGE_ORDER) + 2) + "---|")
    for r in rows:
        cells = [f"{r['stages_s'].get(s, 0):.2f}" for s in STAGE_ORDER]
        print(f"| {r['device']} | " + " | ".join(cells)
              + f" | {r['total_s']:.1f} | {r['peak_mb']:.0f} | "
              + ("pass" if r["passed"] else "fail") + " |")


if __name__ == "__main__":
    main()
