"""What the service shows: the job sheet, the fallback fit report and the review data.

Figures come from a design's ``report.json``; the review model is made once
per version by :func:`orthofit.scene.review_glb` and kept beside the outputs.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from orthofit.pipeline import atomic_write

__all__ = ["job_sheet", "report_html", "review_data", "review_glb"]


def job_sheet(case_ref: str, version: int, report: dict, *, files: dict[str, str]) -> dict:
    """What a print lab needs, and nothing about the patient but the case reference."""
    rx = report["prescription"]
    printed = report["print"]
    return {"case_ref": case_ref, "version": version, "side": report["side"]["value"],
            "device": rx["device"], "material": printed["material"],
            "printer": printed["printer"], "orientation": printed["orientation"],
            "shank_to_layers_deg": printed.get("shank_to_layers_deg"),
            "thickness_mm": printed["thickness_mm"], "mass_g": printed["mass_g"],
            "volume_cm3": printed["volume_cm3"], "checks_passed": report["passed"],
            "files": files}


def report_html(case_ref: str, version: int, report: dict) -> str:
    """A plain, printable page of the design's report (until the fit report exists)."""
    rows = "".join(
        f"<tr><td>{html.escape(name)}</td><td>{html.escape(json.dumps(c['value']))}</td>"
        f"<td>{html.escape(json.dumps(c['limit']))}</td>"
        f"<td>{'pass' if c['passed'] else 'FAIL'}</td></tr>"
        for name, c in report["checks"].items())
    measures = "".join(f"<tr><td>{html.escape(k)}</td><td>{v}</td></tr>"
                       for k, v in report["measurements"].items())
    rx = html.escape(json.dumps(report["prescription"], indent=2, sort_keys=True))
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(case_ref)}"
            f" v{version}</title><style>body{{font-family:sans-serif;margin:2em}}"
            "table{border-collapse:collapse}td,th{border:1px solid #999;padding:2px 8px}"
            "</style></head><body>"
            f"<h1>Case {html.escape(case_ref)}, version {version}</h1>"
            f"<p>Side {html.escape(str(report['side']['value']))}; all checks "
            f"{'passed' if report['passed'] else 'did not pass'}.</p>"
            "<h2>Checks</h2><table><tr><th>check</th><th>value</th><th>limit</th>"
            f"<th>result</th></tr>{rows}</table>"
            f"<h2>Measurements (mm)</h2><table>{measures}</table>"
            f"<h2>Prescription</h2><pre>{rx}</pre></body></html>")


def review_data(case: Any, version: Any, report: dict | None, out: Path, *,
                glb: str) -> dict:
    """The review page's data for one version."""
    data: dict[str, Any] = {
        "case_id": case.id, "case_ref": case.case_ref, "version": version.number,
        "status": version.status, "reason": version.reason, "message": version.message,
        "approved_version": case.approved_version,
        "versions": [v.number for v in case.versions],
        "side": version.side, "device": version.prescription.get("device"),
        "prescription": version.prescription}
    if report is not None and version.status == "ready":
        colours = _glb_meta(out)
        data.update({"checks": report["checks"], "measurements": report["measurements"],
                     "stiffness": report.get("stiffness"),
                     "warnings": list(report.get("warnings") or []),
                     "passed": report["passed"], "glb": glb, **colours})
    return data


def review_glb(out: Path) -> bytes:
    """The device over the limb as GLB (metres, Y up), made once and kept."""
    path = out / "review.glb"
    if not path.is_file():
        _make_glb(out)
    return path.read_bytes()


def _glb_meta(out: Path) -> dict:
    path = out / "review.json"
    if not path.is_file():
        _make_glb(out)
    return json.loads(path.read_text())


def _make_glb(out: Path) -> None:
    from orthofit.io import read_mesh
    from orthofit.pipeline import design_limb
    from orthofit.scene import review_glb as make

    report = json.loads((out / "report.json").read_text())
    # The limb the device was made around: the corrected one for an ankle
    # turned by a correction (issue #18).
    limb = design_limb(out)
    data, meta = make(read_mesh(out / "device.stl"), limb,
                      clearance_mm=report["prescription"]["clearance_mm"])
    atomic_write(out / "review.glb", lambda tmp: Path(tmp).write_bytes(data))
    atomic_write(out / "review.json", lambda tmp: Path(tmp).write_text(json.dumps(meta)))
