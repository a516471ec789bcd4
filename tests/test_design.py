"""``orthofit design``: outputs, determinism, refusals and exit codes (issue #3).

Every device on every sample scan, all checks passing, is in
``test_devices_on_samples.py``.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import trimesh

from orthofit.prescription import prescription_schema
from tests.analytic import AnalyticLimb, scan_points
from tests.conftest import ROOT, SCANS, write_ply_points
from tests.test_cli import REQUIRED_KEYS

REPORT_KEYS = REQUIRED_KEYS | {"prescription", "checks", "passed", "print", "timings_s",
                               "stiffness", "versions"}
CHECKS = {"watertight", "winding_consistent", "single_body", "positive_volume",
          "no_self_intersection", "wall_thickness", "clearance", "fits_printer", "volume_cm3",
          "mass_g", "triangles", "no_unintended_holes"}


@pytest.fixture(scope="module")
def scan_file(tmp_path_factory):
    points, _ = scan_points(AnalyticLimb(side="left"), up="z", units="mm", seed=4)
    return write_ply_points(tmp_path_factory.mktemp("scan") / "scan.ply", points)


@pytest.fixture(scope="module")
def designed(scan_file, tmp_path_factory, cli):
    out = tmp_path_factory.mktemp("smo")
    result = cli("design", scan_file, "-o", out, "--device", "smo", "--side", "left",
                 "--case-ref", "C-0042", env={"PYTHONHASHSEED": "1"})
    return result, out


def test_design_writes_every_output(designed):
    result, out = designed
    assert result.code == 0, result.stderr
    for name in ("device.stl", "device.3mf", "limb.ply", "intake.json", "report.json",
                 "preview.png"):
        assert (out / name).is_file(), name
    report = json.loads((out / "report.json").read_text())
    assert REPORT_KEYS <= report.keys()
    assert set(report["checks"]) == CHECKS
    assert report["passed"] == (result.code == 0)
    for check in report["checks"].values():
        assert {"value", "limit", "passed"} <= check.keys()
    assert report["prescription"]["device"] == "smo"
    assert report["prescription"]["thickness_mm"] == 3.5  # the PA12 default, filled in


def test_device_stl_is_one_closed_solid_in_the_device_frame(designed):
    _, out = designed
    device = trimesh.load(out / "device.stl")
    assert device.is_watertight and device.volume > 0
    # An SMO ends 25 mm above the malleolus apex (prescription default).
    report = json.loads((out / "report.json").read_text())
    top = report["trimlines"]["proximal_edge_z_mm"]
    apex = max(report["landmarks"]["medial_malleolus"][2],
               report["landmarks"]["lateral_malleolus"][2])
    assert top == pytest.approx(apex + 25.0, abs=0.01)
    assert device.bounds[1][2] <= top + 1.0


def test_3mf_reads_back_without_warnings(designed):
    lib3mf = pytest.importorskip("lib3mf")
    _, out = designed
    wrapper = lib3mf.get_wrapper()
    model = wrapper.CreateModel()
    reader = model.QueryReader("3mf")
    reader.ReadFromFile(str(out / "device.3mf"))
    assert reader.GetWarningCount() == 0
    assert model.GetUnit() == lib3mf.ModelUnit.MilliMeter
    objects = model.GetMeshObjects()
    assert objects.MoveNext()
    mesh = objects.GetCurrentMeshObject()
    stl = trimesh.load(out / "device.stl")
    assert mesh.GetTriangleCount() == len(stl.faces)
    assert "C-0042" in mesh.GetName()


def test_preview_is_large_enough(designed):
    from PIL import Image

    _, out = designed
    with Image.open(out / "preview.png") as image:
        assert image.size[0] >= 1200 and image.size[1] >= 800


def test_reruns_give_byte_identical_device_files(designed, scan_file, tmp_path, cli):
    _, first = designed
    result = cli("design", scan_file, "-o", tmp_path, "--device", "smo", "--side", "left",
                 "--case-ref", "C-0042", env={"PYTHONHASHSEED": "2"})
    assert result.code == 0, result.stderr
    for name in ("device.stl", "device.3mf"):
        assert (tmp_path / name).read_bytes() == (first / name).read_bytes(), name


def test_afo_from_a_foot_only_scan_exits_4(tmp_path, cli):
    points, _ = scan_points(AnalyticLimb(side="left", leg_height=110.0), seed=6)
    scan = write_ply_points(tmp_path / "foot.ply", points)
    result = cli("design", scan, "-o", tmp_path / "out", "--device", "solid-afo",
                 "--side", "left")
    assert result.code == 4, result.stderr
    assert "Traceback" not in result.stderr and "foot" in result.stderr


def test_residual_limb_exits_4(tmp_path, cli):
    result = cli("design", SCANS / "residual_limb_nofoot_mm.stl", "-o", tmp_path)
    assert result.code == 4 and "no foot" in result.stderr


def test_stiffness_command_says_why_an_smo_has_none(designed, cli, tmp_path):
    _, out = designed
    report = json.loads((out / "report.json").read_text())
    assert report["stiffness"]["reported"] is False
    result = cli("stiffness", out)
    assert result.code == 0, result.stderr
    assert "stiffness not reported: a smo has no calf section" in " ".join(result.stdout.split())
    written = json.loads((out / "stiffness.json").read_text())
    assert {k: v for k, v in written.items() if k != "seconds"} == report["stiffness"]
    missing = cli("stiffness", tmp_path)
    assert missing.code == 3 and "is not a design's output folder" in missing.stderr


def test_a_stiffness_target_needs_a_calf_section(scan_file, tmp_path, cli):
    result = cli("design", scan_file, "-o", tmp_path, "--device", "smo",
                 "--target-stiffness", "1.5")
    assert result.code == 2, result.stderr
    assert "target_stiffness_nm_per_deg" in result.stderr and "device smo" in result.stderr
    assert not (tmp_path / "device.stl").exists()


@pytest.mark.parametrize("args", [["--thickness", "0.5"], ["--device", "boot"],
                                  ["--clearance", "-1"]])
def test_invalid_prescription_values_exit_2(scan_file, tmp_path, cli, args):
    result = cli("design", scan_file, "-o", tmp_path, *args)
    assert result.code == 2, result.stderr
    assert "Traceback" not in result.stderr


def test_prescription_file_with_unknown_field_exits_2(scan_file, tmp_path, cli):
    rx = tmp_path / "rx.json"
    rx.write_text(json.dumps({"device": "smo", "colour": "pink"}))
    result = cli("design", scan_file, "-o", tmp_path / "out", "--prescription", rx)
    assert result.code == 2 and "colour" in result.stderr


def test_a_yaml_slip_exits_2_naming_its_line(scan_file, tmp_path, cli):
    rx = tmp_path / "rx.yaml"
    rx.write_text("device: solid-afo\nscan:\n  case_ref: C-1\n   side: left\n")
    result = cli("design", scan_file, "-o", tmp_path / "out", "--prescription", rx)
    assert result.code == 2, result.stderr
    assert "not valid YAML at line 4" in result.stderr and "internal" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_missing_files_are_named(scan_file, tmp_path, cli):
    rx = cli("design", scan_file, "-o", tmp_path / "out", "--prescription", tmp_path / "rx.yaml")
    # (the terminal's width may wrap the line)
    assert rx.code == 2 and str(tmp_path / "rx.yaml") in "".join(rx.stderr.split())
    scan = cli("design", tmp_path / "scan.ply", "-o", tmp_path / "out")
    assert scan.code == 3 and str(tmp_path / "scan.ply") in "".join(scan.stderr.split())


def test_committed_schema_is_in_step():
    committed = json.loads((ROOT / "schemas" / "prescription.schema.json").read_text())
    assert committed == prescription_schema()


def test_schema_command(cli):
    result = cli("schema", "prescription")
    assert result.code == 0 and json.loads(result.stdout) == prescription_schema()


def test_check_command_on_a_box(tmp_path, cli):
    box = trimesh.creation.box(extents=(50, 60, 70))
    box.export(tmp_path / "box.stl")
    result = cli("check", tmp_path / "box.stl", "--json")
    assert result.code == 0, result.stderr
    checks = json.loads(result.stdout)
    assert checks["watertight"]["passed"] and checks["volume_cm3"]["value"] == pytest.approx(210.0)
    assert np.isclose(checks["mass_g"]["value"], 210.0 * 1.01, rtol=1e-3)


def test_check_command_reads_the_3mf_design_writes(designed, cli):
    # The 3MF the lab receives is checked like the STL (trimesh reads 3MF with lxml).
    _, out = designed
    from_3mf = cli("check", out / "device.3mf", "--json")
    from_stl = cli("check", out / "device.stl", "--json")
    assert from_3mf.code == 0, from_3mf.stderr
    a, b = json.loads(from_3mf.stdout), json.loads(from_stl.stdout)
    assert a["triangles"]["value"] == b["triangles"]["value"]
    assert a["volume_cm3"]["value"] == pytest.approx(b["volume_cm3"]["value"], abs=0.01)
