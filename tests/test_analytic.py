"""Intake against analytic limbs of known size, placed by known rigid transforms."""

from __future__ import annotations

import numpy as np
import pytest

from orthofit import CannotServeError, IntakeOptions, RawScan, run_intake
from orthofit.design import run_design
from orthofit.params import FrameParams
from orthofit.prescription import Prescription
from tests.analytic import AnalyticLimb, scan_points, sole_points

# Points of the limb's own frame that the recovered device frame must put back.
PROBES = np.array([[0, 0, 0], [240, 0, 0], [70, 0, 380], [70, 38, 200], [120, -40, 30]], float)
TOLERANCE_MM = 2.0


def _intake(points: np.ndarray, **options) -> object:
    return run_intake(RawScan(points, None, "xyz", "0" * 64), IntakeOptions(**options))


CASES = [
    ("z", "mm", "left", 30.0),
    ("y", "m", "right", -75.0),
    ("y", "in", "left", 160.0),
    ("z", "m", "right", 200.0),
]


@pytest.fixture(scope="module", params=CASES, ids=[f"{u}-up-{n}-{s}" for u, n, s, _ in CASES])
def analytic_case(request):
    up, units, side, yaw = request.param
    limb = AnalyticLimb(side=side)
    points, to_scan = scan_points(limb, up=up, units=units, yaw_deg=yaw, seed=len(units))
    return limb, to_scan, units, up, _intake(points, side=side)


def test_units_and_up_are_detected(analytic_case):
    _, _, units, up, result = analytic_case
    assert (result.units.value, result.units.source) == (units, "detected")
    assert (result.up.value, result.up.source) == (up, "detected")


def test_device_frame_recovers_the_known_placement(analytic_case):
    _, to_scan, _, _, result = analytic_case
    limb_to_device = result.scan_to_device @ to_scan
    back = PROBES @ limb_to_device[:3, :3].T + limb_to_device[:3, 3]
    assert np.abs(back - PROBES).max() < TOLERANCE_MM


def test_scan_to_device_is_scale_times_rotation(analytic_case):
    _, _, units, _, result = analytic_case
    linear = result.scan_to_device[:3, :3]
    scale = {"mm": 1.0, "m": 1000.0, "in": 25.4}[units]
    rotation = linear / scale
    assert np.allclose(rotation @ rotation.T, np.eye(3), atol=1e-9)
    assert np.linalg.det(rotation) == pytest.approx(1.0)
    assert np.allclose(result.scan_to_device[3], [0, 0, 0, 1])


def test_foot_length_and_ankle_height(analytic_case):
    limb, _, _, _, result = analytic_case
    m = result.anatomy.measurements
    assert m["foot_length_mm"] == pytest.approx(limb.foot_length, abs=TOLERANCE_MM)
    assert m["ankle_height_mm"] == pytest.approx(limb.ankle_height(), abs=TOLERANCE_MM)
    lm = result.anatomy.landmarks
    assert np.linalg.norm(lm["ankle_center"] - limb.ankle_center()) < 2 * TOLERANCE_MM
    assert lm["heel"][:2] == pytest.approx([0.0, 0.0], abs=1e-6)


def test_malleoli_sit_on_their_sides(analytic_case):
    limb, _, _, _, result = analytic_case
    lm = result.anatomy.landmarks
    assert np.sign(lm["medial_malleolus"][1]) == limb.medial
    assert np.sign(lm["lateral_malleolus"][1]) == -limb.medial
    assert lm["lateral_malleolus"][2] < lm["medial_malleolus"][2]


def test_closed_limb_is_watertight_and_flags_filled_sole(analytic_case):
    _, _, _, _, result = analytic_case
    assert result.limb.is_watertight
    assert result.limb.volume > 0
    sole = np.abs(result.limb.vertices[:, 2]) < 0.5
    # The sole stood on the floor: it was filled in, not scanned, away from its rim.
    inner = sole & (np.hypot((result.limb.vertices[:, 0] - 120) / 100,
                             result.limb.vertices[:, 1] / 35) < 1)
    assert inner.sum() > 50
    assert result.filled[inner].mean() > 0.95


def test_leg_measurements_of_a_cylinder(analytic_case):
    limb, _, _, _, result = analytic_case
    m = result.anatomy.measurements
    circumference = 2 * np.pi * limb.leg_radius
    # Above the malleoli the leg is a cylinder: every girth is its circumference.
    assert m["calf_circumference_mm"] == pytest.approx(circumference, rel=0.02)
    assert m["ankle_circumference_mm"] == pytest.approx(circumference, rel=0.02)
    assert m["ankle_angle_deg"] == pytest.approx(90.0, abs=2.0)


@pytest.mark.parametrize("side", ["left", "right"])
def test_side_is_detected_from_the_malleoli(side):
    limb = AnalyticLimb(side=side)
    points, _ = scan_points(limb, seed=7)
    result = _intake(points)
    assert (result.side.value, result.side.source) == (side, "detected")


def test_scan_without_floor_stands_on_its_scanned_sole():
    limb = AnalyticLimb(side="left")
    points, to_scan = scan_points(limb, up="z", floor=False, sole=True, yaw_deg=50.0, seed=3)
    result = _intake(points, side="left", up="z")
    limb_to_device = result.scan_to_device @ to_scan
    back = PROBES @ limb_to_device[:3, :3].T + limb_to_device[:3, 3]
    assert np.abs(back - PROBES).max() < TOLERANCE_MM
    assert result.cleaning["floor"]["found"] is False
    plane = result.cleaning["plantar_plane"]
    assert plane["sole_seen"] is True and plane["lowered_mm"] == 0.0
    assert not result.sole_unseen


def test_an_unseen_sole_with_no_floor_is_lowered_outward_and_warned_of():
    """Issue #16: with no floor and the sole not scanned, the support found rests
    on the lowest rim seen; the sole is taken lower, filled in, and said so."""
    limb = AnalyticLimb(side="left")
    points, to_scan = scan_points(limb, up="z", floor=False, yaw_deg=50.0, seed=3)
    result = _intake(points, side="left", up="z")
    drop = FrameParams().unseen_sole_drop_mm
    limb_to_device = result.scan_to_device @ to_scan
    back = PROBES @ limb_to_device[:3, :3].T + limb_to_device[:3, 3]
    assert np.abs(back - (PROBES + [0, 0, drop])).max() < TOLERANCE_MM
    plane = result.cleaning["plantar_plane"]
    assert plane["sole_seen"] is False and plane["lowered_mm"] == drop
    assert result.sole_unseen
    assert any("sole was not scanned" in w for w in result.warnings)
    # The closed limb holds the whole true sole (it errs outward) and reaches the support.
    sole = sole_points(limb, 0.01, np.random.default_rng(0)) * [0.95, 0.95, 1] + [
        0.025 * limb.foot_length, 0, 0.5]
    inside = result.limb.contains(sole @ limb_to_device[:3, :3].T + limb_to_device[:3, 3])
    assert inside.all(), f"{(~inside).sum()} of {len(sole)} sole points outside"
    assert result.limb.vertices[:, 2].min() < 1.0
    # A foot orthosis would take its plantar surface from the guess: refused.
    with pytest.raises(CannotServeError, match="sole was not scanned"):
        run_design(result, Prescription(device="foot-orthosis"))


def test_foot_only_scan_has_foot_landmarks_and_no_leg():
    limb = AnalyticLimb(side="right", leg_height=110.0)
    points, _ = scan_points(limb, seed=5)
    result = _intake(points, side="right")
    lm, m = result.anatomy.landmarks, result.anatomy.measurements
    assert m["foot_length_mm"] == pytest.approx(limb.foot_length, abs=TOLERANCE_MM)
    assert lm["heel"] is not None and lm["mth1"] is not None
    for name in ("calf", "fibular_head"):
        assert lm[name] is None
    for name in ("calf_circumference_mm", "shank_length_mm", "ankle_angle_deg"):
        assert m[name] is None


def test_a_leg_without_a_foot_is_refused():
    rng = np.random.default_rng(11)
    # A residual limb: a cylinder with a rounded end, standing on it.
    n = 60_000
    t = rng.uniform(0, 2 * np.pi, n)
    z = rng.uniform(60, 400, n)
    tube = np.c_[55 * np.cos(t), 55 * np.sin(t), z]
    cap = rng.normal(size=(20_000, 3))
    cap /= np.linalg.norm(cap, axis=1, keepdims=True)
    cap = cap[cap[:, 2] < 0] * [55, 55, 60] + [0, 0, 60]
    with pytest.raises(CannotServeError, match="no foot"):
        _intake(np.vstack([tube, cap]), up="z")
