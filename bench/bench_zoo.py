"""Intake on the whole scan zoo, judged against each case's truth.

Every zoo case (``tests/zoo``: other scanners, extents, poses, meshes, the
Visible Human legs) is generated on demand into the zoo's cache, read by
``orthofit.inspect_file`` and judged by ``tests.zoo.judge`` against the
truth, in the device frame orthofit reports.  Results go to
``bench/results/zoo_intake.json`` and a Markdown table on stdout (the README
shows it): per case the extent found, the side, the ankle-centre,
foot-length and fibular-head errors, and pass, fail or the refusal.

Usage: ``python -m bench.bench_zoo [--ci] [--case NAME ...] [--skip-dense]``
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from orthofit import IntakeOptions, OrthofitError, inspect_file
from tests.zoo.cases import CASES, CI_SUBSET
from tests.zoo.generate import scan_path, truth
from tests.zoo.judge import LIMITS, judge_intake, judge_refusal

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"


def judge_case(name: str) -> dict:
    """Read zoo case ``name`` with orthofit's defaults and judge it; one table row."""
    path, record = scan_path(name), truth(name)
    started = time.perf_counter()
    try:
        result = inspect_file(path, IntakeOptions())
    except OrthofitError as exc:
        verdict = judge_refusal(record, exc.exit_code, str(exc))
        found = None
    else:
        found = json.loads(json.dumps(result.to_json()))
        verdict = judge_intake(record, found)
    row = verdict.row()
    row["seconds"] = round(time.perf_counter() - started, 2)
    row["warnings"] = [] if found is None else found.get("warnings", [])
    return row


def table(rows: list[dict]) -> str:
    """Markdown table: one row per case."""
    def mm(v):
        return "" if v is None else f"{v:.1f}"

    lines = ["| case | extent (truth) | found | side | ankle centre mm | foot length mm | "
             "fibular head mm | result |", "|---|---|---|---|---:|---:|---:|---|"]
    for r in rows:
        side = "" if r["side_found"] is None else (
            "correct" if r["side_found"] == r["side_truth"] else f"**wrong: {r['side_found']}**")
        result = "pass" if r["passed"] else (
            f"refused: {r['refused']}" if r["refused"] else "fail: " + "; ".join(r["failures"]))
        lines.append(f"| {r['name']} | {r['extent_truth']} | {r['extent_found'] or ''} | "
                     f"{side} | {mm(r['ankle_center_error_mm'])} | "
                     f"{mm(r['foot_length_error_mm'])} | {mm(r['fibular_head_error_mm'])} | "
                     f"{result} |")
    return "\n".join(lines)


def summary(rows: list[dict]) -> dict:
    judged = [r for r in rows if r["refused"] is None]
    ankle = [r["ankle_center_error_mm"] for r in judged if r["ankle_center_error_mm"] is not None]
    foot = [abs(r["foot_length_error_mm"]) for r in judged
            if r["foot_length_error_mm"] is not None]
    head = [r["fibular_head_error_mm"] for r in judged if r["fibular_head_error_mm"] is not None]
    return {
        "cases": len(rows), "passed": sum(r["passed"] for r in rows),
        "refused": len(rows) - len(judged),
        "side_right": sum(r["side_found"] == r["side_truth"] for r in judged),
        "ankle_center_median_mm": round(float(np.median(ankle)), 2) if ankle else None,
        "ankle_center_max_mm": round(float(np.max(ankle)), 2) if ankle else None,
        "foot_length_max_abs_mm": round(float(np.max(foot)), 2) if foot else None,
        "fibular_head_max_mm": round(float(np.max(head)), 2) if head else None,
        "limits_mm": LIMITS,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ci", action="store_true", help="only the CI subset")
    parser.add_argument("--case", nargs="*", default=None, help="only these cases")
    parser.add_argument("--skip-dense", action="store_true", help="leave out the dense clouds")
    args = parser.parse_args()
    names = args.case or (list(CI_SUBSET) if args.ci else [c.name for c in CASES])
    if args.skip_dense:
        dense = {c.name for c in CASES if c.dense}
        names = [n for n in names if n not in dense]
    rows = []
    for name in names:
        row = judge_case(name)
        rows.append(row)
        print(f"{name}: {'pass' if row['passed'] else row['failures']} "
              f"({row['seconds']:.1f} s)", file=sys.stderr)
    RESULTS.mkdir(exist_ok=True)
    out = {"summary": summary(rows), "cases": rows}
    if not args.case and not args.ci:
        (RESULTS / "zoo_intake.json").write_text(json.dumps(out, indent=2) + "\n")
    print(table(rows))
    print()
    print(json.dumps(out["summary"], indent=2))


if __name__ == "__main__":
    main()
