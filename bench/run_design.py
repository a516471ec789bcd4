"""Run ``design`` once on a scan file and print stage timings and peak memory as JSON.

Run in its own process by :mod:`bench.bench_design`.
"""

from __future__ import annotations

import json
import resource
import sys
import tempfile
import time
from pathlib import Path

from orthofit.pipeline import design_file, load_prescription, write_design
from orthofit.prescription import Prescription


def main(path: str, device: str) -> None:
    """``device`` is a device type, or a recipe file (.yaml, .json) to design."""
    start = time.perf_counter()
    if device.endswith((".yaml", ".yml", ".json")):
        rx = load_prescription(device)
        device = f"{Path(device).stem} (recipe)"
    else:
        rx = Prescription(device=device)
    result = design_file(path, rx)
    with tempfile.TemporaryDirectory() as out:
        written = time.perf_counter()
        write_design(out, result)
        write_s = time.perf_counter() - written
    total = time.perf_counter() - start
    stages = {**result.to_json()["timings_s"], "write": round(write_s, 3)}
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"points": result.intake.cleaning["input_points"], "device": device,
                      "total_s": round(total, 3), "stages_s": stages,
                      "passed": result.passed, "peak_mb": round(peak_mb, 1)}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
