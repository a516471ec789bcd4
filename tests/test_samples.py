"""Intake on every bundled sample scan, against the truth the generator recorded.

The truth comes from the MakeHuman data itself (``scans/make_samples.py``):
the ankle joint centre is the mean of the ``joint-*-ankle`` helper group,
foot length the floor-projected distance from the heel vertex to the toe
vertex.  Truth in the scan's coordinates is mapped into the device frame by
the ``scan_to_device`` intake found.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from orthofit import CannotServeError, IntakeOptions, inspect_file
from tests.conftest import SCANS

ANKLE_TOLERANCE_MM = 8.0
FOOT_LENGTH_TOLERANCE_MM = 4.0

SAMPLES = sorted(p for p in SCANS.iterdir()
                 if p.suffix in (".ply", ".stl") and not p.name.endswith(".truth.ply")
                 and (SCANS / f"{p.stem}.truth.json").exists())



def test_samples_are_bundled():
    names = {p.stem for p in SAMPLES}
    assert len(names) >= 5
    assert (SCANS / "residual_limb_nofoot_mm.stl").exists()
    assert (SCANS / "README.md").exists()


@pytest.fixture(scope="module", params=SAMPLES, ids=[p.stem for p in SAMPLES])
def sample(request):
    path = request.param
    truth = json.loads((SCANS / f"{path.stem}.truth.json").read_text())
    return path.stem, truth, inspect_file(path, IntakeOptions())


def _to_device(result, point) -> np.ndarray:
    m = result.scan_to_device
    return m[:3, :3] @ np.asarray(point, dtype=float) + m[:3, 3]


def test_side_units_and_up(sample):
    _, truth, result = sample
    assert result.side.value == truth["side"]
    assert result.units.value == truth["units"]
    assert result.up.value == truth["up"]


def test_foot_length(sample):
    _, truth, result = sample
    assert result.anatomy.measurements["foot_length_mm"] == pytest.approx(
        truth["foot_length_mm"], abs=FOOT_LENGTH_TOLERANCE_MM)


def test_ankle_centre(sample):
    _, truth, result = sample
    error = np.linalg.norm(result.anatomy.landmarks["ankle_center"]
                           - _to_device(result, truth["ankle_joint_center"]))
    assert error < ANKLE_TOLERANCE_MM


def test_floor_is_z0_and_heel_is_origin(sample):
    _, truth, result = sample
    heel = _to_device(result, truth["heel"])
    # The true heel vertex lies near the device origin's vertical line and the
    # true floor on z = 0 (when the scan had one).
    assert np.hypot(*heel[:2]) < 6.0
    if truth["has_floor"]:
        assert abs(_to_device(result, truth["floor_point"])[2]) < 1.5


def test_closed_limb_is_watertight(sample):
    _, _, result = sample
    assert result.limb.is_watertight and result.limb.is_winding_consistent
    assert result.limb.volume > 0
    assert 0 < result.filled.mean() < 0.5


def test_foot_only_samples_have_no_leg_landmarks():
    foot_only = [p for p in SAMPLES
                 if json.loads((SCANS / f"{p.stem}.truth.json").read_text())["foot_only"]]
    assert foot_only
    for path in foot_only:
        result = inspect_file(path, IntakeOptions())
        assert result.anatomy.landmarks["calf"] is None
        assert result.anatomy.landmarks["fibular_head"] is None
        assert result.anatomy.measurements["calf_circumference_mm"] is None
        assert result.anatomy.landmarks["ankle_center"] is not None


def test_residual_limb_is_refused_for_having_no_foot():
    with pytest.raises(CannotServeError, match="no foot"):
        inspect_file(SCANS / "residual_limb_nofoot_mm.stl", IntakeOptions())
