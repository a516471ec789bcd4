"""Benchmark the command line's start-up: ``orthofit --help`` and a refused input.

Each is run in a fresh process, five times; the median wall time is kept.
Budget (issue #17): ``--help`` under 1 s on 2 cores.  A refused input (a
file that is not a scan) should answer as fast, without loading Open3D.

Usage: ``python -m bench.bench_startup``
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.bench_intake import HERE, RESULTS

RUNS = 5


def _median_s(args: list[str]) -> float:
    times = []
    for _ in range(RUNS):
        began = time.perf_counter()
        subprocess.run([sys.executable, "-m", "orthofit", *args], capture_output=True,
                       cwd=HERE.parent)
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        bad = Path(tmp) / "scan.stl"
        bad.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
        rows = {"help_s": _median_s(["--help"]),
                "design_help_s": _median_s(["design", "--help"]),
                "refused_input_s": _median_s(["inspect", str(bad)])}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "startup.json").write_text(json.dumps(rows, indent=2) + "\n")
    print("| command | median wall s |")
    print("|---|---:|")
    for name, value in rows.items():
        print(f"| {name.removesuffix('_s').replace('_', ' ')} | {value:.2f} |")


if __name__ == "__main__":
    main()
