"""Batch runs on one machine (issue #6): every summary row, resuming, crashes and hangs.

A manifest lists the sample scans with foot-orthosis prescriptions (one
file for the adults, one for the children), a foot-only scan prescribed an
AFO (which it cannot give) and a truncated scan.  The first run designs
them all with two processes; a rerun finds everything finished; a changed
prescription redoes only the scans it is given to.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import SCANS, design_processes, run_cli
from tests.test_samples import SAMPLES

# The check table of a design made around its limb (no_unintended_holes included).
FULL_CHECKS = 12


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _rows(outdir: Path) -> dict[str, dict]:
    """Summary rows by output folder, checked against the CSV."""
    rows = json.loads((outdir / "summary.json").read_text())
    with open(outdir / "summary.csv", newline="") as f:
        table = list(csv.DictReader(f))
    # The CSV says what the JSON says.
    assert [r["scan"] for r in table] == [r["scan"] for r in rows]
    for row, line in zip(rows, table, strict=True):
        assert line["status"] == row["status"] and line["exit_code"] == str(row["exit_code"])
        assert line["device_sha256"] == (row["device_sha256"] or "")
    return {r["output"]: r for r in rows}


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    """The manifest and the first run's result."""
    root = tmp_path_factory.mktemp("batch")
    (root / "rx").mkdir()
    (root / "rx" / "insole-adult.yaml").write_text("device: foot-orthosis\nthickness_mm: 3.5\n")
    (root / "rx" / "insole-child.yaml").write_text("device: foot-orthosis\nthickness_mm: 3.0\n")
    (root / "rx" / "afo.yaml").write_text("device: solid-afo\n")
    scans = root / "scans"
    scans.mkdir()
    lines = ["scan,prescription,side,units,up,weight_bearing,case_ref"]
    for number, sample in enumerate(SAMPLES, start=1):
        (scans / sample.name).write_bytes(sample.read_bytes())
        rx = "insole-child.yaml" if "child" in sample.stem else "insole-adult.yaml"
        lines.append(f"scans/{sample.name},rx/{rx},,,,,C-{number:04d}")
    footonly = next(p for p in SAMPLES if "footonly" in p.stem)
    lines.append(f"scans/{footonly.name},rx/afo.yaml,left,,,,C-0100")
    truncated = SCANS / "adult_left_floor_mm_zup.ply"
    (scans / "truncated.ply").write_bytes(truncated.read_bytes()[:4000])
    lines.append("scans/truncated.ply,rx/insole-adult.yaml,,,,,C-0101")
    (root / "manifest.csv").write_text("\n".join(lines) + "\n")
    out = root / "out"
    first = run_cli("batch", root / "manifest.csv", "-o", out, "-j", "2")
    return root, out, first


def test_first_run_records_every_scan(batch):
    root, out, first = batch
    assert first.code == 5, first.stderr  # some scans failed; the rest carry on
    assert "2 failed" in first.stderr and "traceback" not in first.stderr.lower()
    rows = _rows(out)
    assert len(rows) == len(SAMPLES) + 2
    for number, sample in enumerate(SAMPLES, start=1):
        row = rows[f"C-{number:04d}"]
        assert row["scan"] == f"scans/{sample.name}" and row["case_ref"] == f"C-{number:04d}"
        assert row["status"] == "ok" and row["exit_code"] == 0, row
        assert row["reason"] is None and row["message"] is None
        assert row["attempts"] == 1 and row["seconds"] > 0 and not row["reused"]
        assert row["checks_passed"] == FULL_CHECKS and row["checks_failed"] == []
        assert row["side"] == ("left" if "left" in sample.stem else "right")
        assert 150 < row["foot_length_mm"] < 300 and row["mass_g"] > 0
        folder = out / row["output"]
        assert row["device_sha256"] == _sha256(folder / "device.stl")
        assert json.loads((folder / "report.json").read_text())["prescription"]["thickness_mm"] \
            == (3.0 if "child" in sample.stem else 3.5)
        marker = json.loads((folder / "batch.json").read_text())
        assert marker["key"]["input_sha256"] == _sha256(sample)
    afo = rows["C-0100"]
    assert (afo["status"], afo["exit_code"], afo["reason"]) == ("failed", 4, "cannot serve")
    assert "scan up to below the knee" in afo["message"] and afo["device_sha256"] is None
    bad = rows["C-0101"]
    assert (bad["status"], bad["exit_code"], bad["reason"]) == ("failed", 3, "unreadable scan")
    assert "export the scan again" in bad["message"]
    # Results are in place and nothing half-written is left behind.
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [r["output"] for r in rows.values()] + ["summary.csv", "summary.json"])


def test_rerun_skips_everything_finished(batch):
    root, out, first = batch
    before = {r["output"]: r for r in json.loads((out / "summary.json").read_text())}
    again = run_cli("batch", root / "manifest.csv", "-o", out, "-j", "2")
    assert again.code == 5
    rows = _rows(out)
    assert all(r["reused"] for r in rows.values())
    for output, row in rows.items():
        assert {k: v for k, v in row.items() if k != "reused"} == \
            {k: v for k, v in before[output].items() if k != "reused"}


def test_changed_prescription_redoes_only_the_scans_it_touches(batch):
    root, out, first = batch
    hashes = {s: r["device_sha256"] for s, r in _rows(out).items()}
    (root / "rx" / "insole-child.yaml").write_text("device: foot-orthosis\nthickness_mm: 3.2\n")
    changed = run_cli("batch", root / "manifest.csv", "-o", out, "-j", "2")
    assert changed.code == 5
    rows = _rows(out)
    for output, row in rows.items():
        child = "child" in row["scan"]
        assert row["reused"] is not child, output
        assert (row["device_sha256"] != hashes[output]) is child, output
        if child:
            folder = out / row["output"]
            assert json.loads((folder / "report.json").read_text())[
                "prescription"]["thickness_mm"] == 3.2


def test_all_ok_exits_0_and_a_folder_of_scans_works(tmp_path):
    (tmp_path / "scans").mkdir()
    sample = next(p for p in SAMPLES if "child_right" in p.stem)
    (tmp_path / "scans" / sample.name).write_bytes(sample.read_bytes())
    (tmp_path / "insole.yaml").write_text("device: foot-orthosis\n")
    result = run_cli("batch", tmp_path / "scans", "-o", tmp_path / "out",
                     "--prescription", tmp_path / "insole.yaml", "-j", "1")
    assert result.code == 0, result.stderr
    (row,) = _rows(tmp_path / "out").values()
    assert row["status"] == "ok" and row["scan"] == sample.name and row["case_ref"] is None


def test_a_scan_that_kills_its_worker_is_tried_again(tmp_path):
    sample = next(p for p in SAMPLES if "child_right" in p.stem)
    (tmp_path / "insole.yaml").write_text("device: foot-orthosis\n")
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text(json.dumps({"scan": str(sample), "prescription": "insole.yaml",
                                    "case_ref": "C-0200"}) + "\n")
    out = tmp_path / "out"
    env = {**os.environ, "ORTHOFIT_MAX_ATTEMPTS": "2"}
    proc = subprocess.Popen([sys.executable, "-m", "orthofit", "batch", str(manifest), "-o",
                             str(out), "-j", "1"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not (pids := design_processes(str(out))) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert pids, "no design process started"
    time.sleep(1.0)  # into the design, not its start-up
    os.kill(pids[0], signal.SIGKILL)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    (row,) = _rows(out).values()
    assert row["status"] == "ok" and row["attempts"] == 2


def test_a_scan_that_hangs_its_worker_fails_after_its_attempts(tmp_path):
    sample = next(p for p in SAMPLES if "child_right" in p.stem)
    env = {"ORTHOFIT_JOB_TIMEOUT_S": "1", "ORTHOFIT_MAX_ATTEMPTS": "2"}
    (tmp_path / "scans").mkdir()
    (tmp_path / "scans" / sample.name).write_bytes(sample.read_bytes())
    result = run_cli("batch", tmp_path / "scans", "-o", tmp_path / "out", "-j", "1", env=env)
    assert result.code == 5
    (row,) = _rows(tmp_path / "out").values()
    assert (row["status"], row["reason"], row["attempts"]) == ("failed", "worker lost", 2)
    assert row["exit_code"] < 0
    assert "longer than 1 s" in row["message"] and "gave up after 2 attempts" in row["message"]


@pytest.mark.parametrize("text,name,expected", [
    ("scan,patient\nx.ply,Jane\n", "m.csv", "unknown columns patient"),
    ("prescription\nrx.yaml\n", "m.csv", "no 'scan' column"),
    ('{"scan": "x.ply"}\nnot json\n', "m.jsonl", "line 2 of the manifest m.jsonl is not JSON"),
    ("scan\n", "m.csv", "lists no scans"),
    ("scan\nx.ply\n", "m.txt", "must be .csv or .jsonl"),
])
def test_a_bad_manifest_is_refused_before_anything_runs(tmp_path, text, name, expected):
    (tmp_path / name).write_text(text)
    result = run_cli("batch", tmp_path / name, "-o", tmp_path / "out")
    assert result.code == 2 and expected in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out" / "summary.csv").exists()


def test_an_unreachable_broker_is_a_clear_error(tmp_path):
    (tmp_path / "scans").mkdir()
    sample = next(p for p in SAMPLES if "child_right" in p.stem)
    (tmp_path / "scans" / sample.name).write_bytes(sample.read_bytes())
    result = run_cli("batch", tmp_path / "scans", "-o", tmp_path / "out",
                     "--broker", "redis://:secret@127.0.0.1:1/0",
                     env={"ORTHOFIT_DATA_DIR": str(tmp_path / "data")})
    assert result.code == 2 and "cannot reach the broker" in result.stderr, result.stderr
    assert "secret" not in result.stderr and "Traceback" not in result.stderr
