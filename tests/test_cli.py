"""The command line: output keys, files written, exit codes, determinism, privacy."""

from __future__ import annotations

import json

import numpy as np
import pytest

from orthofit.io import read_limb_ply
from tests.analytic import AnalyticLimb, scan_points
from tests.conftest import write_ply_points, write_xyz

REQUIRED_KEYS = {"units", "up", "side", "weight_bearing", "input_sha256", "scan_to_device",
                 "landmarks", "measurements", "cleaning"}
LANDMARKS = {"heel", "toe_tip", "mth1", "mth5", "sulcus", "navicular", "mt5_base",
             "medial_malleolus", "lateral_malleolus", "ankle_center", "calf", "leg_top",
             "fibular_head"}
MEASUREMENTS = {"foot_length_mm", "forefoot_width_mm", "heel_width_mm", "ankle_height_mm",
                "medial_malleolus_height_mm", "lateral_malleolus_height_mm",
                "ankle_circumference_mm", "calf_circumference_mm", "calf_height_mm",
                "shank_length_mm", "ankle_angle_deg"}


@pytest.fixture(scope="module")
def scan_file(tmp_path_factory):
    points, _ = scan_points(AnalyticLimb(side="right"), up="y", units="m", seed=2)
    return write_ply_points(tmp_path_factory.mktemp("scan") / "Jane_Doe_1984-02-03.ply", points)


@pytest.fixture(scope="module")
def inspected(scan_file, tmp_path_factory, cli):
    out = tmp_path_factory.mktemp("out")
    result = cli("inspect", scan_file, "--json", "-o", out, "--side", "right",
                 "--weight-bearing", "semi")
    return result, out


def test_json_has_the_contract_keys(inspected):
    result, _ = inspected
    assert result.code == 0, result.stderr
    data = result.json()
    assert REQUIRED_KEYS <= data.keys()
    assert set(data["landmarks"]) == LANDMARKS
    assert set(data["measurements"]) == MEASUREMENTS
    assert data["units"] == {"value": "m", "source": "detected"}
    assert data["up"] == {"value": "y", "source": "detected"}
    assert data["side"] == {"value": "right", "source": "given"}
    assert data["weight_bearing"] == "semi"
    assert len(data["input_sha256"]) == 64
    assert np.array(data["scan_to_device"]).shape == (4, 4)
    for step in ("downsample", "floor", "outliers", "clutter"):
        assert step in data["cleaning"]


def test_outdir_holds_limb_and_the_same_json(inspected):
    result, out = inspected
    assert json.loads((out / "intake.json").read_text()) == result.json()
    mesh, filled = read_limb_ply(out / "limb.ply")
    assert mesh.is_watertight and filled.any() and not filled.all()


def test_progress_goes_to_stderr(inspected):
    result, _ = inspected
    for stage in ("read", "units", "clean", "align", "close", "landmarks"):
        assert stage in result.stderr


def test_no_patient_identifier_leaks(inspected):
    result, out = inspected
    for blob in (result.stdout, result.stderr, (out / "intake.json").read_text(),
                 (out / "limb.ply").read_bytes().decode("latin-1")):
        assert "Jane" not in blob and "Doe" not in blob and "1984" not in blob


def test_human_readable_table(scan_file, cli):
    result = cli("inspect", scan_file)
    assert result.code == 0, result.stderr
    assert "foot_length_mm" in result.stdout and "ankle_center" in result.stdout
    assert "right" in result.stdout


def test_reruns_are_byte_identical(scan_file, tmp_path, cli):
    outputs = []
    for seed in ("1", "2"):
        out = tmp_path / seed
        result = cli("inspect", scan_file, "-o", out, "--json", env={"PYTHONHASHSEED": seed})
        assert result.code == 0, result.stderr
        outputs.append(((out / "limb.ply").read_bytes(), (out / "intake.json").read_bytes()))
    assert outputs[0] == outputs[1]


def _one_line_error(result, code: int) -> None:
    assert result.code == code, (result.code, result.stderr)
    assert "Traceback" not in result.stderr
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith("orthofit: error:")]
    assert len(lines) == 1, result.stderr


@pytest.mark.parametrize("args", [
    ["--units", "furlong"],
    ["--side", "middle"],
    ["--up", "x"],
    ["--weight-bearing", "heavy"],
    ["--max-file-mb", "0"],
    ["--no-such-option"],
])
def test_bad_usage_exits_2(scan_file, cli, args):
    _one_line_error(cli("inspect", scan_file, *args), 2)


def test_missing_argument_exits_2(cli):
    _one_line_error(cli("inspect"), 2)


@pytest.mark.parametrize("name, content", [
    ("missing.ply", None),
    ("empty.stl", b""),
    ("photo.stl", b"\x89PNG\r\n\x1a\n" + b"\0" * 100),
    ("garbage.ply", b"ply\nformat binary_little_endian 1.0\nelement vertex 100\n"
                    b"property float x\nproperty float y\nproperty float z\nend_header\n"
                    + b"\1" * 30),
    ("letter.txt", b"Dear orthotist, here is the scan you asked for.\n"),
])
def test_unreadable_input_exits_3(tmp_path, cli, name, content):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    _one_line_error(cli("inspect", path), 3)


def test_nan_coordinates_exit_3(tmp_path, cli):
    points = np.random.default_rng(0).uniform(0, 300, (5000, 3))
    points[10] = np.nan
    _one_line_error(cli("inspect", write_xyz(tmp_path / "nan.xyz", points)), 3)


def test_too_few_points_exit_3(tmp_path, cli):
    points = np.random.default_rng(0).uniform(0, 300, (50, 3))
    _one_line_error(cli("inspect", write_xyz(tmp_path / "few.xyz", points)), 3)


def test_absurd_extent_exits_3(tmp_path, cli):
    points = np.random.default_rng(0).uniform(0, 300, (5000, 3))
    result = cli("inspect", write_xyz(tmp_path / "huge.xyz", points), "--units", "m")
    _one_line_error(result, 3)
    assert "--units" in result.stderr


def test_file_over_the_size_limit_exits_3(scan_file, cli):
    result = cli("inspect", scan_file, "--max-file-mb", "0.01")
    _one_line_error(result, 3)
    assert "limit" in result.stderr


def test_scan_without_a_foot_exits_4(tmp_path, cli):
    rng = np.random.default_rng(3)
    t = rng.uniform(0, 2 * np.pi, 40_000)
    z = rng.uniform(50, 400, 40_000)
    stump = np.c_[55 * np.cos(t), 55 * np.sin(t), z]
    result = cli("inspect", write_xyz(tmp_path / "stump.xyz", stump), "--up", "z")
    _one_line_error(result, 4)
    assert "no foot" in result.stderr


def test_version(cli):
    result = cli("--version")
    assert result.code == 0 and result.stdout.startswith("orthofit ")
