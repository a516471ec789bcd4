"""Run intake once on a scan file and print its stage timings and peak memory as JSON.

Run in its own process by :mod:`bench.bench_intake`, so peak memory is this
run's alone.
"""

from __future__ import annotations

import json
import resource
import sys
import time

from orthofit import IntakeOptions, inspect_file


def main(path: str) -> None:
    start = time.perf_counter()
    result = inspect_file(path, IntakeOptions())
    total = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"points": result.cleaning["input_points"], "total_s": round(total, 3),
                      "stages_s": result.timings_s, "peak_mb": round(peak_mb, 1)}))


if __name__ == "__main__":
    main(sys.argv[1])
