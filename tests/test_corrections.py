"""Clinical corrections (issue #5) against known answers on an analytic limb.

Each correction is measured on the designed shell, apart from the code that
applied it: a relief by casting a ray from its centre along the analytic
malleolus's own normal to the shell, growth by the footplate's and the foot
section's extent, mirroring by comparing with the unmirrored design.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
import trimesh

from orthofit import IntakeOptions, RawScan, run_intake
from orthofit.design import run_design
from orthofit.pipeline import design_file
from orthofit.prescription import Prescription
from tests.analytic import AnalyticLimb, scan_points
from tests.conftest import write_ply_points

# These tests measure geometry: the stiffness solve, tested in tests/test_stiffness*.py,
# is left out to keep them quick.
Prescription = functools.partial(Prescription, predict_stiffness=False)


LIMB = AnalyticLimb(side="left")


@pytest.fixture(scope="module")
def scanned():
    points, to_scan = scan_points(LIMB, seed=21)
    intake = run_intake(RawScan(points, None, "xyz", "0" * 64), IntakeOptions(side="left"))
    # Analytic (limb frame) to device frame.
    return intake, intake.scan_to_device @ to_scan


def _gap_along(device: trimesh.Trimesh, origin: np.ndarray, direction: np.ndarray) -> float:
    hits, _, _ = device.ray.intersects_location([origin], [direction])
    return float(np.min(np.linalg.norm(hits - origin, axis=1)))


def _to_device(transform: np.ndarray, point: np.ndarray) -> np.ndarray:
    return transform[:3, :3] @ point + transform[:3, 3]


def test_relief_adds_its_depth_at_its_centre(scanned):
    intake, to_device = scanned
    trim = {"proximal_height_mm": 250.0}
    plain = run_design(intake, Prescription(device="solid-afo", trimlines=trim,
                                            corrections={"reliefs": []}))
    relieved = run_design(intake, Prescription(
        device="solid-afo", trimlines=trim,
        corrections={"reliefs": [{"at": "lateral_malleolus", "depth_mm": 4.0,
                                  "radius_mm": 20.0}]}))
    applied = relieved.corrections["reliefs"]
    assert [r["at"] for r in applied] == ["lateral_malleolus"]
    centre = np.asarray(applied[0]["centre_mm"])
    # The analytic malleolus sphere's outward normal through the relief's centre.
    sphere = _to_device(to_device, LIMB.malleolus_centres()[1])
    normal = (centre - sphere) / np.linalg.norm(centre - sphere)
    extra = _gap_along(relieved.device, centre, normal) - _gap_along(plain.device, centre, normal)
    assert extra == pytest.approx(4.0, abs=0.3)
    assert relieved.passed, {k: v for k, v in relieved.checks.items() if not v["passed"]}


def test_afo_relieves_both_malleoli_by_default_and_a_foot_orthosis_none():
    assert [r.at for r in Prescription(device="solid-afo").corrections.reliefs] == [
        "medial_malleolus", "lateral_malleolus"]
    assert Prescription(device="foot-orthosis").corrections.reliefs == []


def test_growth_length_lengthens_the_footplate(scanned):
    intake, _ = scanned
    ends = []
    for growth in (0.0, 10.0):
        result = run_design(intake, Prescription(
            device="solid-afo", trimlines={"proximal_height_mm": 250.0},
            corrections={"growth_length_mm": growth}))
        v = result.device.vertices
        # The footplate's front end, measured on its underside.
        ends.append(v[v[:, 2] < -result.prescription.clearance_mm - 1.0][:, 0].max())
        assert result.passed, {k: v for k, v in result.checks.items() if not v["passed"]}
    assert ends[1] - ends[0] == pytest.approx(10.0, abs=1.0)


def test_growth_width_widens_the_foot_section(scanned):
    intake, to_device = scanned
    widths = []
    x = 0.55 * LIMB.foot_length  # across the forefoot
    for growth in (0.0, 8.0):
        result = run_design(intake, Prescription(
            device="solid-afo", trimlines={"proximal_height_mm": 250.0},
            corrections={"reliefs": [], "growth_width_mm": growth}))
        # From the middle of the foot outwards on both sides, to the wall's inner
        # face, at a height where the foot's sides stand upright (its widest), so
        # that the wall's move along its normal is a move across the foot.
        inside = _to_device(to_device, np.array([x, 0.0, 8.0]))
        widths.append(_gap_along(result.device, inside, np.array([0.0, 1.0, 0.0]))
                      + _gap_along(result.device, inside, np.array([0.0, -1.0, 0.0])))
    assert widths[1] - widths[0] == pytest.approx(8.0, abs=0.6)


def test_mirror_designs_the_other_side(tmp_path):
    points, _ = scan_points(LIMB, seed=5)
    scan = write_ply_points(tmp_path / "left.ply", points)
    rx = {"device": "smo", "scan": {"side": "left"}}
    left = design_file(scan, Prescription(**rx))
    right = design_file(scan, Prescription(**rx, corrections={"mirror": True}))
    assert left.intake.side.value == "left" and right.intake.side.value == "right"
    assert right.corrections["mirror"] and right.corrections["scanned_side"] == "left"
    # The right device is the left one mirrored across the foot's mid-plane.
    lo, hi = left.device.bounds, right.device.bounds
    assert hi[0, 0] == pytest.approx(lo[0, 0], abs=1.5)
    assert hi[1, 0] == pytest.approx(lo[1, 0], abs=1.5)
    assert hi[1, 1] == pytest.approx(-lo[0, 1], abs=1.5)
    assert hi[0, 1] == pytest.approx(-lo[1, 1], abs=1.5)
    assert right.device.volume == pytest.approx(left.device.volume, rel=0.02)


def _sagittal_angle_of(limb: trimesh.Trimesh, lo: float = 150.0, hi: float = 300.0) -> float:
    """The leg's angle to +x in the sagittal plane, from its sections' centroids."""
    v = limb.vertices
    centres = np.array([v[np.abs(v[:, 2] - z) < 2.0].mean(axis=0)
                        for z in np.arange(lo, hi, 10.0)])
    direction = np.linalg.svd(centres - centres.mean(axis=0))[2][0]
    direction *= np.sign(direction[2])
    return float(np.degrees(np.arctan2(direction[2], direction[0])))


@pytest.mark.parametrize("target", [84.0, 97.0])
def test_ankle_angle_turns_the_shank_to_the_prescribed_angle(scanned, target):
    intake, _ = scanned
    before = _sagittal_angle_of(intake.limb)
    assert before == pytest.approx(90.0, abs=1.5)  # the analytic leg stands upright
    result = run_design(intake, Prescription(
        device="solid-afo", trimlines={"proximal_height_mm": 250.0},
        corrections={"ankle_angle_deg": target}))
    assert _sagittal_angle_of(result.limb) == pytest.approx(target, abs=1.0)
    applied = result.corrections["ankle_angle"]
    assert applied["target_deg"] == target
    assert applied["corrected_deg"] == pytest.approx(target, abs=0.5)
    assert applied["scanned_deg"] == pytest.approx(before, abs=1.0)
    # The foot stays where it was, flat on the floor.
    for name in ("heel", "toe_tip", "mth1", "mth5"):
        assert np.allclose(result.landmarks[name], intake.anatomy.landmarks[name], atol=1e-6)
    plain = run_design(intake, Prescription(device="solid-afo",
                                            trimlines={"proximal_height_mm": 250.0}))
    assert result.device.bounds[0, 2] == pytest.approx(plain.device.bounds[0, 2], abs=0.2)
    assert result.passed, {k: v for k, v in result.checks.items() if not v["passed"]}


def test_ankle_angle_is_refused_for_a_device_without_a_calf_section():
    with pytest.raises(ValueError, match="ankle_angle_deg.*device smo"):
        Prescription(device="smo", corrections={"ankle_angle_deg": 90.0})


def _inner_face_z(device: trimesh.Trimesh, x: float, y: float) -> float:
    """Height of the footplate's inner face above (x, y): the second surface from below."""
    hits, _, _ = device.ray.intersects_location([[x, y, -50.0]], [[0.0, 0.0, 1.0]])
    return float(np.sort(hits[:, 2])[1])


@pytest.mark.parametrize("kind,field", [("arch_support", "arch_support_mm"),
                                        ("metatarsal_pad", "metatarsal_pad_mm")])
def test_support_raises_the_footplate_by_its_height_at_its_centre(scanned, kind, field):
    intake, _ = scanned
    plain = run_design(intake, Prescription(device="foot-orthosis"))
    supported = run_design(intake, Prescription(device="foot-orthosis",
                                                corrections={field: 6.0}))
    (support,) = supported.corrections["supports"]
    assert support["kind"] == kind
    x, y, _ = support["centre_mm"]
    rise = _inner_face_z(supported.device, x, y) - _inner_face_z(plain.device, x, y)
    assert rise == pytest.approx(6.0, abs=0.3)
    # Pressing 4 mm into the sole on purpose is reported, and is no failed check.
    assert support["intended_indentation_mm"] == pytest.approx(6.0 - 2.0)
    assert supported.passed, {k: v for k, v in supported.checks.items() if not v["passed"]}


def _fit_slope(xs: np.ndarray, zs: np.ndarray) -> float:
    return float(np.polyfit(xs, zs, 1)[0])


@pytest.mark.parametrize("side", ["medial", "lateral"])
def test_heel_post_tilts_the_heel_seat_by_its_degrees(scanned, side):
    intake, _ = scanned
    plain = run_design(intake, Prescription(device="foot-orthosis"))
    posted = run_design(intake, Prescription(device="foot-orthosis",
                                             corrections={f"heel_post_{side}_deg": 5.0}))
    (post,) = posted.corrections["supports"]
    assert post["kind"] == "heel_post" and post["side"] == side
    x, y, _ = post["centre_mm"]
    half = post["heel_width_mm"] / 2
    # Across the middle of the heel's seat, the inner face's rise over the plain one.
    ys = y + np.linspace(-0.5, 0.5, 9) * half
    rise = np.array([_inner_face_z(posted.device, x, yi) - _inner_face_z(plain.device, x, yi)
                     for yi in ys])
    lm = posted.landmarks
    medial_y = 1.0 if lm["mth1"][1] > lm["mth5"][1] else -1.0
    raised_y = medial_y if side == "medial" else -medial_y
    tilt = np.degrees(np.arctan(raised_y * _fit_slope(ys, rise)))
    assert tilt == pytest.approx(5.0, abs=0.5)
    # The raised edge presses into the heel on purpose; that is reported apart.
    assert post["intended_indentation_mm"] == pytest.approx(post["rise_mm"] - 2.0, abs=1e-3)
    assert posted.passed, {k: v for k, v in posted.checks.items() if not v["passed"]}


def _underside_z(device: trimesh.Trimesh, x: float, y: float) -> float:
    hits, _, _ = device.ray.intersects_location([[x, y, -80.0]], [[0.0, 0.0, 1.0]])
    return float(hits[:, 2].min())


@pytest.mark.parametrize("device", ["foot-orthosis", "solid-afo"])
def test_shoe_heel_pitch_lets_the_forefoot_fall_to_the_shoe_floor(scanned, device):
    intake, _ = scanned
    rx = {"device": device, "trimlines": {"proximal_height_mm": 250.0, "footplate": "full"}}
    if device == "foot-orthosis":
        rx["trimlines"] = {"footplate": "full"}
    result = run_design(intake, Prescription(**rx, corrections={"shoe_heel_pitch_mm": 20.0}))
    lm = result.landmarks
    heel_x, hinge_x = float(lm["heel"][0]), float(0.5 * (lm["mth1"][0] + lm["mth5"][0]))
    y = float(0.5 * (lm["mth1"][1] + lm["mth5"][1]))
    # Stood in the shoe, heel seat 20 mm above the forefoot floor: the device
    # turns forward until the heads touch that floor, heel to heads falling 20 mm.
    expected = np.degrees(np.arcsin(20.0 / (hinge_x - heel_x)))
    ahead = np.linspace(hinge_x + 10.0, float(lm["toe_tip"][0]) - 10.0, 8)
    behind = np.linspace(hinge_x - 60.0, hinge_x - 15.0, 6)
    fall = (np.degrees(np.arctan(-_fit_slope(ahead, [_underside_z(result.device, x, y)
                                                     for x in ahead])))
            - np.degrees(np.arctan(-_fit_slope(behind, [_underside_z(result.device, x, y)
                                                        for x in behind]))))
    assert fall == pytest.approx(expected, abs=0.7)
    pitch = result.corrections["shoe_heel_pitch"]
    assert pitch["pitch_deg"] == pytest.approx(expected, abs=0.01)
    if device == "solid-afo":
        # The upright analytic leg leans forward by the pitch angle in the shoe.
        assert pitch["shank_to_vertical_in_shoe_deg"] == pytest.approx(expected, abs=1.5)
    assert result.passed, {k: v for k, v in result.checks.items() if not v["passed"]}


def test_heel_cup_depth_sets_the_height_of_the_heel_cup(scanned):
    intake, _ = scanned
    tops = []
    for depth in (12.0, 24.0):
        result = run_design(intake, Prescription(device="foot-orthosis",
                                                 corrections={"heel_cup_depth_mm": depth}))
        heel_x = float(result.landmarks["heel"][0])
        v = result.device.vertices
        tops.append(v[v[:, 0] < heel_x + 20.0][:, 2].max())
        assert result.corrections["heel_cup_depth_mm"] == depth
        assert result.passed, {k: v for k, v in result.checks.items() if not v["passed"]}
    assert tops[1] - tops[0] == pytest.approx(12.0, abs=1.0)


@pytest.mark.parametrize("rx,names", [
    ({"device": "solid-afo", "corrections": {"heel_cup_depth_mm": 15.0}},
     ["heel_cup_depth_mm", "device solid-afo"]),
    ({"device": "foot-orthosis", "trimlines": {"heel_cup_height_mm": 12.0},
      "corrections": {"heel_cup_depth_mm": 18.0}}, ["heel_cup_depth_mm", "heel_cup_height_mm"]),
    ({"device": "foot-orthosis", "corrections": {"heel_post_medial_deg": 4.0,
                                                 "heel_post_lateral_deg": 2.0}},
     ["heel_post_medial_deg", "heel_post_lateral_deg"]),
    ({"device": "solid-afo", "trimlines": {"footplate": "three-quarter"},
      "corrections": {"shoe_heel_pitch_mm": 10.0}}, ["shoe_heel_pitch_mm", "footplate"]),
    ({"device": "foot-orthosis", "trimlines": {"footplate": "three-quarter"},
      "corrections": {"metatarsal_pad_mm": 4.0}}, ["metatarsal_pad_mm", "footplate"]),
    ({"device": "smo", "trimlines": {"footplate": "three-quarter"},
      "corrections": {"growth_length_mm": 8.0}}, ["growth_length_mm", "footplate"]),
])
def test_corrections_that_cannot_go_together_are_refused_naming_both(rx, names):
    with pytest.raises(ValueError) as refused:
        Prescription(**rx)
    for name in names:
        assert name in str(refused.value)
