"""The fit report (issue #5's report.html): self-contained, true to report.json.

A real headless Chromium (Debian's package, driven by Playwright) opens the
report from disk: no console errors, every image decoded at its stated size,
the check table's numbers those of ``report.json``.
"""

from __future__ import annotations

import json
import re

import pytest

from tests.conftest import SCANS
from tests.test_review_page import CHROMIUM, FLAGS

playwright = pytest.importorskip("playwright.sync_api")


@pytest.fixture(scope="module")
def design_dir(tmp_path_factory, cli):
    out = tmp_path_factory.mktemp("fit")
    result = cli("design", SCANS / "child_right_floor_mm_yup.stl", "-o", out,
                 "--device", "smo", "--case-ref", "R-0009")
    assert result.code == 0, result.stderr
    return out


def test_report_is_one_self_contained_file(design_dir):
    page = (design_dir / "report.html").read_text()
    assert "R-0009" in page
    # Nothing fetched from elsewhere: every image inline, no scripts, no links.
    assert re.findall(r"<img [^>]*src='([^']{0,22})", page) == ["data:image/png;base64,"] * 4
    assert "<script" not in page and "http://" not in page and "https://" not in page


def test_report_command_rebuilds_the_same_page(design_dir, cli):
    before = (design_dir / "report.html").read_bytes()
    (design_dir / "report.html").unlink()
    result = cli("report", design_dir)
    assert result.code == 0, result.stderr
    assert (design_dir / "report.html").read_bytes() == before


def test_report_command_refuses_a_folder_without_a_design(tmp_path, cli):
    result = cli("report", tmp_path)
    assert result.code == 3
    assert "not a design's output folder" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed; 'make test' installs it")
def test_report_in_a_real_browser(design_dir):
    report = json.loads((design_dir / "report.json").read_text())
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page()
        errors = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto((design_dir / "report.html").as_uri())
        page.wait_for_load_state("load")
        images = page.eval_on_selector_all("img", """imgs => imgs.map(i => ({
            id: i.closest('figure').id, complete: i.complete, natural: [i.naturalWidth,
            i.naturalHeight], stated: [+i.getAttribute('width'), +i.getAttribute('height')]}))""")
        rows = page.eval_on_selector_all("#checks tbody tr", """rows => rows.map(r => ({
            name: r.dataset.check, value: r.querySelector('.value').textContent,
            limit: r.querySelector('.limit').textContent,
            result: r.querySelector('.result').textContent}))""")
        browser.close()
    assert errors == []
    assert {i["id"] for i in images} == {"fig-clearance", "fig-thickness", "fig-device",
                                         "fig-trimlines"}
    for image in images:
        assert image["complete"] and image["natural"] == image["stated"], image
        assert image["natural"][0] >= 800
    assert [r["name"] for r in rows] == list(report["checks"])
    for row in rows:
        check = report["checks"][row["name"]]
        assert json.loads(row["value"]) == check["value"]
        assert json.loads(row["limit"]) == check["limit"]
        assert row["result"] == ("pass" if check["passed"] else "FAIL")
