"""The review page in a real headless Chromium against the running service (issue #4).

The page loads the device over the limb with three.js, shows the checks as
``review.json`` gives them, toggles the limb, and approves a version for a
lab, all without console errors.  Chromium comes from Debian's packages
(``make test`` installs it).
"""

from __future__ import annotations

import shutil

import httpx
import pytest

from tests.service_helpers import Server, auth, fresh_database, make_keys, prescription, wait_for
from tests.test_service import SCAN

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
playwright = pytest.importorskip("playwright.sync_api")

# Without a GPU, WebGL runs on SwiftShader; these flags keep Chromium off the network.
FLAGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-quic",
         "--enable-unsafe-swiftshader", "--use-angle=swiftshader"]


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed; 'make test' installs it")
def test_review_page_shows_the_checks_and_approves(tmp_path):
    url = fresh_database("sqlite", tmp_path)
    keys = make_keys(url)
    server = Server({"ORTHOFIT_DATA_DIR": str(tmp_path / "data"), "ORTHOFIT_DATABASE_URL": url})
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            scan = SCAN.read_bytes()
            case_id = client.post("/cases", headers=auth(keys["clinic"]),
                                  files={"scan": ("scan.stl", scan)},
                                  data={"prescription": prescription()}).json()["case_id"]
            assert wait_for(client, case_id, 1, keys["clinic"])["status"] == "ready"
            review = client.get(f"/cases/{case_id}/review.json",
                                headers=auth(keys["clinic"])).json()

            with playwright.sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
                page = browser.new_page(viewport={"width": 1400, "height": 900})
                errors = []
                page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
                page.on("pageerror", lambda e: errors.append(str(e)))
                page.add_init_script(
                    f"sessionStorage.setItem('orthofit_key', {keys['clinic']!r});")
                page.goto(f"{server.url}/cases/{case_id}/review")
                page.wait_for_selector("#checks tbody tr", timeout=30_000)
                page.wait_for_selector("#viewer canvas", timeout=30_000)
                page.wait_for_function(
                    "document.querySelector('#status').textContent.includes('ready')",
                    timeout=30_000)

                rows = page.eval_on_selector_all(
                    "#checks tbody tr",
                    "rows => rows.map(r => [...r.cells].map(c => c.textContent))")
                assert len(rows) == len(review["checks"])
                marks = {name.replace("_", " "): check["passed"]
                         for name, check in review["checks"].items()}
                assert {r[0]: r[3] == "✓" for r in rows} == marks
                mass = next(r for r in rows if r[0] == "mass g")
                assert float(mass[1]) == review["checks"]["mass_g"]["value"]
                # A foot orthosis has no ankle stiffness, and the page says why.
                assert review["stiffness"]["reported"] is False
                note = page.text_content("#stiffness-note")
                assert note == f"Not reported: {review['stiffness']['reason']}"

                page.uncheck("#show-limb")
                page.click("#approve-open")
                page.fill("#lab-input", "Print Lab")
                page.click("#approve-form button[type=submit]")
                page.wait_for_selector("#action-result:not([hidden])", timeout=10_000)
                browser.close()
            assert errors == []
            case = client.get(f"/cases/{case_id}", headers=auth(keys["clinic"])).json()
            assert case["approved_version"] == 1
    finally:
        server.stop()


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed; 'make test' installs it")
def test_the_api_docs_render_offline_under_the_pages_policy(tmp_path):
    # Issue #19: /docs loaded Swagger UI from a CDN and was blank offline.
    url = fresh_database("sqlite", tmp_path)
    server = Server({"ORTHOFIT_DATA_DIR": str(tmp_path / "data"), "ORTHOFIT_DATABASE_URL": url})
    try:
        with playwright.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            page = browser.new_page()
            errors, elsewhere = [], []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("request", lambda r: None if r.url.startswith((server.url, "data:"))
                    else elsewhere.append(r.url))
            page.goto(f"{server.url}/docs")
            page.wait_for_selector(".opblock", timeout=30_000)
            assert len(page.query_selector_all(".opblock")) >= 19
            browser.close()
        assert errors == [] and elsewhere == []
    finally:
        server.stop()
