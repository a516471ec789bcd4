"""Benchmark scan intake on virtual scans of about 0.2, 1 and 3 million points.

Each scan is made once by the project's virtual scanner (``scans``), cached
under ``bench/.cache``, and run through intake in a fresh process, which
reports its stage timings and its peak resident memory.  Results go to
``bench/results/intake.json`` and a Markdown table on stdout (the README
shows it).  Budget (issue #2): a 1-million-point raw scan within 8 s and
2 GB on 2 cores.

Usage: ``python -m bench.bench_intake [--sizes 0.2,1,3] [--repeat 3]``
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from orthofit.intake import STAGES

HERE = Path(__file__).resolve().parent
CACHE = HERE / ".cache"
RESULTS = HERE / "results"


def scan_for(million: float) -> Path:
    """A cached virtual scan of about ``million`` million points (binary PLY, mm)."""
    from scans.make_samples import make_scan

    out = CACHE / f"{million:g}M"
    existing = sorted(out.glob("*.ply")) if out.exists() else []
    existing = [p for p in existing if not p.name.endswith(".truth.ply")]
    if existing:
        return existing[0]
    out.mkdir(parents=True, exist_ok=True)
    return Path(make_scan(out, points=int(million * 1_000_000), variant="adult", side="left",
                          units="mm", up="z", fmt="ply", floor=True, foot_only=False,
                          seed=1))


def run_once(path: Path) -> dict:
    proc = subprocess.run([sys.executable, "-m", "bench.run_intake", str(path)],
                          capture_output=True, text=True, check=True, cwd=HERE.parent)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="0.2,1,3", help="million points per scan")
    parser.add_argument("--repeat", type=int, default=3, help="runs per size (median kept)")
    args = parser.parse_args()
    rows = []
    for million in (float(s) for s in args.sizes.split(",")):
        path = scan_for(million)
        runs = [run_once(path) for _ in range(args.repeat)]
        best = sorted(runs, key=lambda r: r["total_s"])[len(runs) // 2]
        best["peak_mb"] = max(r["peak_mb"] for r in runs)
        best["total_s_runs"] = [r["total_s"] for r in runs]
        rows.append(best)
        print(f"{best['points']:,} points: {best['total_s']:.2f} s, "
              f"{best['peak_mb']:.0f} MB peak", file=sys.stderr)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "intake.json").write_text(json.dumps(rows, indent=2) + "\n")
    print(table(rows))


def table(rows: list[dict]) -> str:
    """Markdown table: one row per scan size, one column per stage."""
    head = "| points | " + " | ".join(STAGES) + " | total s | peak MB |"
    rule = "|" + "---:|" * (len(STAGES) + 3)
    lines = [head, rule]
    for r in rows:
        cells = [f"{r['stages_s'].get(s, 0):.2f}" for s in STAGES]
        lines.append(f"| {r['points']:,} | " + " | ".join(cells)
                     + f" | {r['total_s']:.2f} | {r['peak_mb']:.0f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
