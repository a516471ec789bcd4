"""Trimlines land where the prescription puts them, relative to the landmarks.

An analytic limb goes through intake once; each test designs a device on it
and measures the shell against the landmarks and the prescription, apart
from the code that placed the trimlines.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

from orthofit import IntakeOptions, RawScan, run_intake
from orthofit.design import run_design
from orthofit.prescription import Prescription
from tests.analytic import AnalyticLimb, scan_points

# These tests measure geometry: the stiffness solve, tested in tests/test_stiffness*.py,
# is left out to keep them quick.
Prescription = functools.partial(Prescription, predict_stiffness=False)


# Edges are rounded with a radius of half the thickness and flared; an edge's
# extreme lies within this of where the trimline runs (mm).
EDGE_MM = 2.5


@pytest.fixture(scope="module")
def intake():
    points, _ = scan_points(AnalyticLimb(side="left"), seed=21)
    return run_intake(RawScan(points, None, "xyz", "0" * 64), IntakeOptions(side="left"))


def _design(intake, **fields):
    return run_design(intake, Prescription(**fields))


def _reach_forward_at(device, z: float) -> float:
    """How far forward (x) the shell reaches around height ``z``."""
    v = device.vertices
    return float(v[np.abs(v[:, 2] - z) < 1.5][:, 0].max())


def test_afo_proximal_edge_at_the_prescribed_height(intake):
    result = _design(intake, device="solid-afo", trimlines={"proximal_height_mm": 250.0})
    assert result.device.vertices[:, 2].max() == pytest.approx(250.0, abs=EDGE_MM)


def test_afo_side_trimline_passes_in_front_of_the_malleoli(intake):
    result = _design(intake, device="solid-afo", trimlines={"proximal_height_mm": 250.0})
    lm = result.landmarks
    malleoli_x = 0.5 * (lm["medial_malleolus"][0] + lm["lateral_malleolus"][0])
    z = lm["lateral_malleolus"][2]
    assert _reach_forward_at(result.device, z) == pytest.approx(malleoli_x + 12.0, abs=EDGE_MM)


def test_leaf_spring_side_trimline_passes_behind_the_malleoli(intake):
    result = _design(intake, device="posterior-leaf-spring",
                     trimlines={"proximal_height_mm": 250.0})
    lm = result.landmarks
    malleoli_x = 0.5 * (lm["medial_malleolus"][0] + lm["lateral_malleolus"][0])
    z = lm["lateral_malleolus"][2]
    assert _reach_forward_at(result.device, z) == pytest.approx(malleoli_x - 12.0, abs=EDGE_MM)


def test_landmark_override_moves_the_trimline(intake):
    base = _design(intake, device="solid-afo", trimlines={"proximal_height_mm": 250.0})
    moved = {name: tuple(base.landmarks[name] + [10.0, 0.0, 0.0])
             for name in ("medial_malleolus", "lateral_malleolus")}
    shifted = _design(intake, device="solid-afo", trimlines={"proximal_height_mm": 250.0},
                      landmark_overrides=moved)
    z = base.landmarks["lateral_malleolus"][2]
    assert (_reach_forward_at(shifted.device, z) - _reach_forward_at(base.device, z)
            == pytest.approx(10.0, abs=EDGE_MM))
    assert shifted.trimlines["side_edge_at_malleoli_x_mm"] == pytest.approx(
        base.trimlines["side_edge_at_malleoli_x_mm"] + 10.0)


def test_smo_ends_above_the_malleoli(intake):
    result = _design(intake, device="smo")
    apex = max(result.landmarks["medial_malleolus"][2], result.landmarks["lateral_malleolus"][2])
    assert result.device.vertices[:, 2].max() == pytest.approx(apex + 25.0, abs=EDGE_MM)


@pytest.mark.parametrize("footplate", ["three-quarter", "sulcus"])
def test_footplate_ends_where_prescribed(intake, footplate):
    result = _design(intake, device="foot-orthosis", trimlines={"footplate": footplate})
    lm = result.landmarks
    end = (min(lm["mth1"][0], lm["mth5"][0]) - 10.0 if footplate == "three-quarter"
           else lm["sulcus"][0])
    assert result.device.vertices[:, 0].max() == pytest.approx(end, abs=EDGE_MM)


def test_full_footplate_ends_at_the_toe_tip(intake):
    result = _design(intake, device="foot-orthosis", trimlines={"footplate": "full"})
    toe = result.landmarks["toe_tip"][0]
    end = toe + result.prescription.clearance_mm
    assert result.device.vertices[:, 0].max() == pytest.approx(end, abs=EDGE_MM)


def test_toe_extension_reaches_beyond_the_toes(intake):
    result = _design(intake, device="solid-afo",
                     trimlines={"proximal_height_mm": 250.0, "footplate": "toe-extension",
                                "toe_extension_mm": 15.0})
    toe = result.landmarks["toe_tip"][0]
    assert result.device.vertices[:, 0].max() == pytest.approx(toe + 15.0, abs=EDGE_MM)
    assert result.checks["watertight"]["passed"]


def test_foot_orthosis_heel_cup_height(intake):
    result = _design(intake, device="foot-orthosis", trimlines={"heel_cup_height_mm": 15.0})
    v = result.device.vertices
    heel_region = v[v[:, 0] < 0.15 * result.intake.foot_length]
    assert heel_region[:, 2].max() == pytest.approx(15.0, abs=EDGE_MM)


def _calf_share(intake, result, z: float) -> float:
    """Share of the leg's circumference the shell covers at height ``z``.

    Measured on the shell's section at ``z``, at the middle of the wall where
    the trimline runs (the rounded edge lies half inside it), as the angle it
    spans around the axis of the limb's section.
    """
    limb = intake.limb.vertices
    section = limb[np.abs(limb[:, 2] - z) < 2.0][:, :2]
    axis = section.mean(axis=0)
    mid_wall = (np.median(np.hypot(*(section - axis).T)) + result.prescription.clearance_mm
                + 0.5 * result.prescription.thickness_mm)
    cut = result.device.section(plane_origin=(0.0, 0.0, z), plane_normal=(0.0, 0.0, 1.0))
    v = cut.vertices[:, :2] - axis
    inner = v[np.hypot(*v.T) < mid_wall]
    assert np.all(inner[:, 0] < 0), "the calf section lies behind the leg's axis"
    # Angles measured from straight behind the axis, so the strip does not wrap.
    angle = np.degrees(np.arctan2(inner[:, 1], -inner[:, 0]))
    return float(np.ptp(angle)) / 360.0


@pytest.mark.parametrize("z", [150.0, 210.0])
def test_calf_section_is_the_posterior_half_or_a_third_for_a_leaf_spring(intake, z):
    # DOMAIN.md: a solid AFO holds the posterior half of the leg; a leaf
    # spring's calf section narrows to a strip of about a third.
    afo = _design(intake, device="solid-afo", trimlines={"proximal_height_mm": 250.0})
    spring = _design(intake, device="posterior-leaf-spring",
                     trimlines={"proximal_height_mm": 250.0})
    assert _calf_share(intake, afo, z) == pytest.approx(0.5, abs=0.06)
    assert _calf_share(intake, spring, z) == pytest.approx(1 / 3, abs=0.05)
