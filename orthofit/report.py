"""The fit report an orthotist signs off: one self-contained HTML page.

This module owns ``report.html``: the prescription, landmarks and
measurements, the check table, and the pictures a person reads faster than
numbers (a clearance heat map of the skin under the shell, a wall-thickness
heat map of the shell, each with a colour bar in mm; the device over the limb;
the trimlines and landmarks on the limb).  Every figure it prints comes from
``report.json``; images are embedded as PNG, so the file opens offline and
prints to PDF.  It draws and writes no files itself: :func:`fit_figures`
returns images, :func:`report_html` the page.
"""

from __future__ import annotations

import base64
import html
import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import trimesh
from PIL import Image, ImageDraw, ImageFont

from .fitmaps import skin_gap, wall_thickness_at
from .io import png_bytes
from .preview import marker_pixels, render_coloured, render_views
from .prescription import MATERIALS
from .scene import CLEARANCE_SPAN_MM, clearance_stops, scale_colours

__all__ = ["Figure", "fit_figures", "report_html"]

#: Width of each heat map (px); the issue asks for at least 800.
HEAT_MAP_WIDTH = 1600
_PANEL_HEIGHT = 640
_BAR_HEIGHT = 90
_SKIN = np.array([0.86, 0.82, 0.79])
_COVERED = np.array([0.55, 0.75, 0.95])
_MARKER = (200, 30, 30)


@dataclass(frozen=True)
class Figure:
    """One picture of the report: an RGB image (h, w, 3) uint8 and its words."""

    name: str
    title: str
    caption: str
    image: np.ndarray


def _views(side: str) -> tuple:
    # The device frame's +y is the body's left: from -y one sees a left foot's medial side.
    minus_y, plus_y = ("medial", "lateral") if side == "left" else ("lateral", "medial")
    return ((f"{minus_y} side", (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)),
            (f"{plus_y} side", (0.0, -1.0, 0.0), (0.0, 0.0, 1.0)),
            ("posterior", (1.0, 0.0, 0.0), (0.0, 0.0, 1.0)),
            ("plantar", (0.0, 0.0, 1.0), (1.0, 0.0, 0.0)))


def fit_figures(limb: trimesh.Trimesh, device: trimesh.Trimesh, report: dict) -> list[Figure]:
    """The report's pictures for a design (its limb, device and ``report.json``)."""
    rx = report["prescription"]
    clearance, thickness = rx["clearance_mm"], rx["thickness_mm"]
    views = _views(report["side"]["value"])
    names = [name for name, _, _ in views]

    gap = skin_gap(limb, device, reach_mm=clearance + thickness + rx["trimlines"]["edge_flare_mm"]
                   + CLEARANCE_SPAN_MM)
    covered = np.isfinite(gap)
    stops = clearance_stops(clearance)
    colours = np.where(covered[:, None], scale_colours(np.nan_to_num(gap), stops), _SKIN)
    clearance_image = _with_bar(
        render_coloured([(limb, colours)], views, width=HEAT_MAP_WIDTH, height=_PANEL_HEIGHT),
        stops, "clearance from skin to shell (mm)", names)

    walls = wall_thickness_at(device)
    minimum = MATERIALS[rx["material"]].printable_min_wall_mm
    wall_stops = [(minimum, "#d7301f"), (0.9 * thickness, "#fdd835"), (thickness, "#1a9850"),
                  (thickness + 1.5, "#2166ac")]
    wall_colours = scale_colours(np.nan_to_num(walls, nan=thickness), wall_stops)
    thickness_image = _with_bar(
        render_coloured([(device, wall_colours)], views, width=HEAT_MAP_WIDTH,
                        height=_PANEL_HEIGHT),
        wall_stops, "wall thickness (mm)", names)

    overlay = _to_uint8(render_views(limb, device, width=HEAT_MAP_WIDTH, height=1000))

    trim_colours = np.where(covered[:, None], _COVERED, _SKIN)
    landmarks = {k: v for k, v in report["landmarks"].items() if v is not None}
    trim_image = _to_uint8(render_coloured([(limb, trim_colours)], views,
                                           width=HEAT_MAP_WIDTH, height=_PANEL_HEIGHT))
    trim_image = _draw_markers(trim_image, limb, landmarks, views)
    trim_image = _label_views(trim_image, names)

    figures = [
        Figure("clearance", "Clearance: skin to shell",
               f"The skin under the shell coloured by its gap to the shell's inner face "
               f"(prescribed {clearance:g} mm: green; red where it touches). Skin the "
               "shell does not cover is grey.", clearance_image),
        Figure("thickness", "Wall thickness",
               f"The shell coloured by its wall thickness along the inward normal "
               f"(prescribed {thickness:g} mm: green; red at the material's printable "
               f"minimum, {minimum:g} mm). Edges are rounded, so rims read thinner.",
               thickness_image),
        Figure("device", "The device over the limb",
               "Medial-lateral, posterior, oblique and plantar views.", overlay),
        Figure("trimlines", "Trimlines and landmarks",
               "The skin the shell covers (blue) and the landmarks it is placed by (red "
               "dots; hidden ones are not drawn).", trim_image),
    ]
    attachments = _attachment_markers(report, rx)
    if attachments:
        image = _to_uint8(render_coloured([(device, _COVERED)], views, width=HEAT_MAP_WIDTH,
                                          height=_PANEL_HEIGHT))
        image = _label_views(_draw_markers(image, device, attachments, views),
                             names)
        vents = (report.get("attachments") or {}).get("vents")
        figures.append(Figure(
            "attachments", "Straps, vents and label",
            "The device with its strap slots and label marked (red dots; hidden ones are "
            "not drawn)" + (f" and {vents['count']} ventilation holes of "
                            f"{vents['diameter_mm']:g} mm" if vents else "") + ".", image))
    return figures


def _attachment_markers(report: dict, rx: dict) -> dict[str, list]:
    """Points to mark for the attachments: just outside each slot, and the label's centre."""
    attachments = report.get("attachments") or {}
    out = {}
    reach = rx["clearance_mm"] + rx["thickness_mm"] + 1.0
    for strap in attachments.get("straps", []):
        for slot in strap["slots"]:
            point = np.asarray(slot["centre_mm"]) + reach * np.asarray(slot["normal"])
            out[f"{strap['at']} {slot['side']} {strap['width_mm']} mm"] = point.tolist()
    if attachments.get("label"):
        out["label"] = (np.asarray(attachments["label"]["centre_mm"]) - [0, 0, 0.5]).tolist()
    return out


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return np.clip(np.round(np.asarray(image) * 255), 0, 255).astype(np.uint8)


def _font(size: int) -> ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def _label_views(image: np.ndarray, names: list[str]) -> np.ndarray:
    picture = Image.fromarray(image)
    draw = ImageDraw.Draw(picture)
    tile = image.shape[1] // len(names)
    for i, name in enumerate(names):
        draw.text((i * tile + 12, 10), name, fill=(60, 60, 60), font=_font(22))
    return np.asarray(picture)


def _with_bar(image: np.ndarray, stops: list[tuple[float, str]], label: str,
              names: list[str]) -> np.ndarray:
    """The heat map with its view names and a colour bar in mm beneath."""
    picture = _label_views(_to_uint8(image), names)
    width = picture.shape[1]
    bar = Image.new("RGB", (width, _BAR_HEIGHT), (255, 255, 255))
    draw = ImageDraw.Draw(bar)
    left, right, top, bottom = 80, width - 80, 12, 42
    lo, hi = stops[0][0], stops[-1][0]
    values = lo + (hi - lo) * np.linspace(0, 1, right - left)
    strip = _to_uint8(scale_colours(values, stops))
    bar.paste(Image.fromarray(np.repeat(strip[None], bottom - top, axis=0)), (left, top))
    draw.rectangle((left, top, right, bottom), outline=(80, 80, 80))
    for mm, _ in stops:
        x = left + (mm - lo) / (hi - lo) * (right - left)
        draw.line((x, bottom, x, bottom + 6), fill=(80, 80, 80))
        draw.text((x, bottom + 8), f"{mm:g}", fill=(40, 40, 40), font=_font(18), anchor="ma")
    draw.text((right + 8, top + 4), "mm", fill=(40, 40, 40), font=_font(18))
    draw.text((left, bottom + 30), label, fill=(40, 40, 40), font=_font(18))
    return np.vstack([picture, np.asarray(bar)])


def _draw_markers(image: np.ndarray, limb: trimesh.Trimesh, landmarks: dict[str, list],
                  views) -> np.ndarray:
    names = sorted(landmarks)
    points = np.array([landmarks[n] for n in names], dtype=float)
    pixels, seen = marker_pixels([limb], points, views, width=image.shape[1],
                                 height=image.shape[0])
    picture = Image.fromarray(image)
    draw = ImageDraw.Draw(picture)
    for v in range(len(views)):
        for i, name in enumerate(names):
            if not seen[v, i]:
                continue
            x, y = pixels[v, i]
            draw.ellipse((x - 5, y - 5, x + 5, y + 5), fill=_MARKER, outline=(255, 255, 255))
            draw.text((x + 8, y - 8), name.replace("_", " "), fill=(120, 20, 20), font=_font(14))
    return np.asarray(picture)


# ----------------------------------------------------------------------- page


def report_html(report: dict, figures: list[Figure]) -> str:
    """The fit report page: every number from ``report``, every picture embedded."""
    rx = report["prescription"]
    title = (f"Fit report: {rx['scan']['case_ref']}, {report['side']['value']} "
             f"{rx['device']}")
    verdict = "All checks passed." if report["passed"] else "Not every check passed."
    parts = [f"<h1>{_e(title)}</h1>",
             f"<p class='verdict {'pass' if report['passed'] else 'fail'}'>{_e(verdict)}</p>",
             *_warnings_section(report.get("warnings") or []),
             "<h2>Checks</h2>", _checks_table(report["checks"])]
    for figure in figures:
        height, width = figure.image.shape[:2]
        data = base64.b64encode(png_bytes(figure.image)).decode("ascii")
        parts.append(f"<figure id='fig-{figure.name}'><h2>{_e(figure.title)}</h2>"
                     f"<img src='data:image/png;base64,{data}' width='{width}' "
                     f"height='{height}' alt='{_e(figure.title)}'>"
                     f"<figcaption>{_e(figure.caption)}</figcaption></figure>")
    parts += ["<h2>Measurements</h2>", _table(["measurement", "value"], [
                  (name.replace("_", " "), _number(value))
                  for name, value in report["measurements"].items()], "measurements"),
              "<h2>Landmarks (device frame, mm)</h2>", _table(["landmark", "x", "y", "z"], [
                  (name.replace("_", " "), *(["—"] * 3 if p is None else map(_number, p)))
                  for name, p in report["landmarks"].items()], "landmarks"),
              "<h2>Trimlines</h2>", _table(["trimline", "value"], [
                  (k.replace("_", " "), _value(v)) for k, v in report["trimlines"].items()],
                  "trimlines"),
              "<h2>Corrections applied</h2>", _table(["correction", "value"], [
                  (k, _value(v)) for k, v in _flatten(_corrections_shown(report))],
                  "corrections"),
              "<h2>Attachments</h2>", _table(["attachment", "value"], [
                  (k, _value(v)) for k, v in _flatten(_attachments_shown(report))],
                  "attachments"),
              *_stiffness_section(report.get("stiffness")),
              "<h2>Prescription</h2>", _table(["field", "value"], [
                  (k, _value(v)) for k, v in _flatten(rx)], "prescription"),
              "<h2>Print</h2>", _table(["", ""], [
                  (k.replace("_", " "), _value(v)) for k, v in report["print"].items()],
                  "print"),
              "<p class='muted'>orthofit " + _e(report["versions"].get("orthofit", "")) +
              "; figures from report.json in the same folder.</p>"]
    return ("<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>"
            + "".join(parts) + "</body></html>\n")


def _warnings_section(warnings: list[str]) -> list[str]:
    """What the clinician must check, at the top of the page."""
    if not warnings:
        return []
    items = "".join(f"<li>{_e(w)}</li>" for w in warnings)
    return [f"<section id='warnings' class='warnings'><h2>Check before approving</h2>"
            f"<ul>{items}</ul></section>"]


_PLANE_ORDER = {"sagittal": 0, "frontal": 1, "transverse": 2}


def _stiffness_section(block: dict | None) -> list[str]:
    """Ankle stiffness per plane, the target when one was prescribed, and the method."""
    if not block:
        return []
    if not block.get("reported"):
        return ["<h2>Ankle stiffness</h2>",
                f"<p id='stiffness-not-reported'>Not reported: {_e(block['reason'])}</p>"]
    unit = block["unit"]
    parts = ["<h2>Ankle stiffness</h2>", _table(
        ["plane", f"k_free ({unit})", f"k_axis ({unit})"],
        [(plane, _number(v["k_free"]), _number(v["k_axis"]))
         for plane, v in sorted(block["planes"].items(),
                                key=lambda item: _PLANE_ORDER.get(item[0], 9))], "stiffness")]
    target = block.get("target")
    if target:
        shown = {k: v for k, v in target.items() if k not in ("history", "method")}
        parts += ["<h3>Designed to a target</h3>", _table(["", ""], [
            (k, _value(v)) for k, v in _flatten(shown)], "stiffness-target"),
            f"<p class='muted'>{_e(target['method'])}</p>"]
    method = {"method": block["method"], "axes": block["axes"], "material": block["material"]}
    parts += ["<h3>How these were computed</h3>", _table(["", ""], [
        (k, _value(v)) for k, v in _flatten(method)], "stiffness-method"),
        f"<p class='muted'>Accuracy: {_e(block['accuracy'])}.</p>"]
    return parts


def _attachments_shown(report: dict) -> dict:
    """The attachments block, without the list of every vent's centre."""
    shown = dict(report.get("attachments") or {})
    if isinstance(shown.get("vents"), dict):
        shown["vents"] = {k: v for k, v in shown["vents"].items() if k != "centres_mm"}
    return shown


def _corrections_shown(report: dict) -> dict:
    """The corrections block, without the landmark lists the tables above already show."""
    shown = dict(report.get("corrections") or {})
    ankle = shown.get("ankle_angle")
    if isinstance(ankle, dict):
        shown["ankle_angle"] = {k: v for k, v in ankle.items()
                                if k not in ("landmarks_before", "landmarks_after")}
    return shown


def _checks_table(checks: dict[str, dict]) -> str:
    rows = []
    for name, check in checks.items():
        mark = "pass" if check["passed"] else "FAIL"
        rows.append(f"<tr class='{mark.lower()}' data-check='{_e(name)}'>"
                    f"<td>{_e(name.replace('_', ' '))}</td>"
                    f"<td class='value'>{_e(_json(check['value']))}</td>"
                    f"<td class='limit'>{_e(_json(check['limit']))}</td>"
                    f"<td class='result'>{mark}</td></tr>")
    return ("<table id='checks'><thead><tr><th>check</th><th>value</th><th>limit</th>"
            "<th>result</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>")


def _table(header: list[str], rows: list[tuple], name: str) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_e(str(c))}</td>" for c in row) + "</tr>"
                   for row in rows)
    return f"<table id='{name}'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _flatten(data: dict, prefix: str = "") -> list[tuple[str, Any]]:
    out = []
    for key, value in data.items():
        if isinstance(value, dict) and value:
            out += _flatten(value, f"{prefix}{key}.")
        else:
            out.append((f"{prefix}{key}", value))
    return out


def _number(value: Any) -> str:
    return "—" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def _json(value: Any) -> str:
    """A check's value or limit as JSON writes it, so the page and report.json agree."""
    return json.dumps(value, ensure_ascii=False)


def _value(value: Any) -> str:
    return value if isinstance(value, str) else _json(value)


def _e(text: str) -> str:
    return html.escape(str(text), quote=True)


_CSS = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1650px;color:#222}
h1{font-size:1.6em}h2{font-size:1.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #bbb;padding:3px 8px;
text-align:left;vertical-align:top}th{background:#f0f0f0}
tr.fail td{background:#fde0dc}.verdict.pass{color:#1a7a3c}.verdict.fail{color:#b3261e}
.warnings{background:#fff4d6;border:1px solid #e0b000;padding:.3em 1em;margin:1em 0}
figure{margin:1em 0;page-break-inside:avoid}img{max-width:100%;height:auto}
figcaption{color:#555;font-size:.9em}.muted{color:#777;font-size:.85em}
@media print{body{margin:0;max-width:none}h2{page-break-after:avoid}}
"""
