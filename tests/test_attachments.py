"""Strap slots, vents and the label (issue #7) on an analytic limb, measured on the mesh.

A slot is found by casting rays through the wall along its normal: those
that pass make the opening, whose centre and length are compared with where
the prescription puts it.  The margin is a ring of rays just inside it that
must all meet material.  The label's depth is the rise of the underside
under rays cast up, against the same device without a label.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

from orthofit import CannotServeError, IntakeOptions, RawScan, run_intake
from orthofit.attachments import SLOT_PLAY_MM
from orthofit.design import run_design
from orthofit.prescription import Prescription
from tests.analytic import AnalyticLimb, scan_points
from tests.attachment_helpers import material_around, opening, passes, slot_cut, vent_cuts

# These tests measure geometry: the stiffness solve, tested in tests/test_stiffness*.py,
# is left out to keep them quick.
Prescription = functools.partial(Prescription, predict_stiffness=False)


LIMB = AnalyticLimb(side="left")
TRIM = {"proximal_height_mm": 250.0}
MARGIN = 6.0


@pytest.fixture(scope="module")
def intake():
    points, _ = scan_points(LIMB, seed=21)
    return run_intake(RawScan(points, None, "xyz", "0" * 64), IntakeOptions(side="left"))


@pytest.fixture(scope="module")
def strapped(intake):
    return run_design(intake, Prescription(
        device="solid-afo", trimlines=TRIM, scan={"case_ref": "C-0007"},
        attachments={"straps": [{"at": "proximal_calf", "width_mm": 38},
                                {"at": "ankle", "width_mm": "auto"}],
                     "vents": {"diameter_mm": 8, "bridge_mm": 10},
                     "margin_mm": MARGIN}))


def test_slots_are_where_the_prescription_puts_them(strapped):
    rx = strapped.prescription
    assert strapped.passed, {k: v for k, v in strapped.checks.items() if not v["passed"]}
    straps = {s["at"]: s for s in strapped.attachments["straps"]}
    assert straps["proximal_calf"]["width_mm"] == 38
    assert straps["ankle"]["width_mm"] in (25, 38, 50)
    lm = strapped.landmarks
    foot_length = lm["toe_tip"][0] - lm["heel"][0]
    top = strapped.trimlines["proximal_edge_z_mm"]
    for at, strap in straps.items():
        assert [s["side"] for s in strap["slots"]] == ["medial", "lateral"]
        for slot in strap["slots"]:
            centre, length = opening(strapped.device, slot, rx)
            assert np.linalg.norm(centre - slot["centre_mm"]) < 2.0, (at, centre, slot)
            assert length == pytest.approx(strap["width_mm"] + SLOT_PLAY_MM, abs=1.5)
            if at == "proximal_calf":
                # Just below the proximal edge: the margin and the rounded edge above it.
                expected = top - MARGIN - slot["length_mm"] / 2 - 0.5 * rx.thickness_mm - 1.0
                assert centre[2] == pytest.approx(expected, abs=2.0)
                assert abs(slot["axis"][2]) > 0.9  # along the leg
            else:
                # In front of the malleoli by 0.12 foot lengths, on the side walls.
                expected = lm["ankle_center"][0] + 0.12 * foot_length
                assert centre[0] == pytest.approx(expected, abs=2.0)
                assert abs(slot["axis"][0]) > 0.9  # along the foot
    medial = 1.0 if lm["mth1"][1] > lm["mth5"][1] else -1.0
    for strap in straps.values():
        ys = [s["centre_mm"][1] for s in strap["slots"]]
        assert medial * ys[0] > 0 > medial * ys[1]


def test_every_slot_and_vent_keeps_its_margin(strapped):
    rx = strapped.prescription
    cuts = [slot_cut(s) for strap in strapped.attachments["straps"] for s in strap["slots"]]
    vents = strapped.attachments["vents"]
    radius = vents["diameter_mm"] / 2
    assert vents["count"] >= 10
    assert vents["open_area_mm2"] == pytest.approx(vents["count"] * np.pi * radius ** 2,
                                                   rel=1e-3)
    for cut in cuts + vent_cuts(strapped):
        # Material all round, a little inside the margin (the edges are rounded).
        solid = material_around(strapped.device, cut, MARGIN - 1.0, rx)
        assert solid.mean() > 0.97, (cut.centre, solid.mean())
    start = rx.clearance_mm + rx.thickness_mm + 4.0
    for cut in vent_cuts(strapped):
        # And open at the centre: a hole through the wall.
        assert passes(strapped.device, np.array([cut.centre + start * cut.normal]),
                      -cut.normal, start + 1.0)[0], cut.centre


def test_the_shell_stays_one_watertight_body(strapped):
    device = strapped.device
    assert device.is_watertight and device.is_winding_consistent
    assert strapped.checks["single_body"]["passed"]
    assert strapped.checks["no_self_intersection"]["passed"]
    assert strapped.checks["wall_thickness"]["passed"]


def _underside(device, xy: np.ndarray) -> np.ndarray:
    origins = np.column_stack([xy, np.full(len(xy), device.bounds[0, 2] - 5.0)])
    locations, rays, _ = device.ray.intersects_location(
        origins, np.tile([0.0, 0.0, 1.0], (len(xy), 1)))
    first = np.full(len(xy), np.inf)
    np.minimum.at(first, rays, locations[:, 2])
    return first


@pytest.mark.parametrize("style,depth", [("deboss", 0.6), ("emboss", 0.8)])
def test_label_is_sunk_or_raised_by_its_depth(intake, style, depth):
    base = dict(device="smo", scan={"case_ref": "C-0007"}, corrections={"reliefs": []})
    plain = run_design(intake, Prescription(**base))
    labelled = run_design(intake, Prescription(**base, attachments={
        "label": {"date": "2026-11-29", "style": style, "depth_mm": depth}}))
    label = labelled.attachments["label"]
    assert label["text"] == ["C-0007", "L SMO 2026-11-29"]
    cx, cy, _ = label["centre_mm"]
    w, h = label["size_mm"]
    xs, ys = np.meshgrid(np.arange(cx - w / 2, cx + w / 2, 0.2),
                         np.arange(cy - h / 2, cy + h / 2, 0.2), indexing="ij")
    xy = np.column_stack([xs.ravel(), ys.ravel()])
    rise = _underside(labelled.device, xy) - _underside(plain.device, xy)
    sign = 1.0 if style == "deboss" else -1.0
    ink = np.abs(rise - sign * depth) < 0.1
    bare = np.abs(rise) < 0.1
    # Strokes at the prescribed depth, the rest untouched: a readable label.
    assert 0.08 < ink.mean() < 0.6, ink.mean()
    assert ink.mean() + bare.mean() > 0.9
    assert labelled.passed, {k: v for k, v in labelled.checks.items() if not v["passed"]}
    assert labelled.device.is_watertight


def test_auto_width_is_the_widest_that_keeps_the_margin(intake):
    # A margin at which the widest stock widths do not fit on this forefoot.
    rx = dict(device="smo", corrections={"reliefs": []})
    auto = run_design(intake, Prescription(**rx, attachments={
        "straps": [{"at": "forefoot"}], "margin_mm": 7.0}))
    (strap,) = auto.attachments["straps"]
    assert strap["prescribed"] == "auto"
    wider = [w for w in (25, 38, 50) if w > strap["width_mm"]]
    assert wider, strap
    for width in wider:
        with pytest.raises(CannotServeError, match=r"forefoot.*margin_mm 7.0"):
            run_design(intake, Prescription(**rx, attachments={
                "straps": [{"at": "forefoot", "width_mm": width}], "margin_mm": 7.0}))


@pytest.mark.parametrize("rx,names", [
    ({"device": "foot-orthosis", "attachments": {"straps": [{"at": "forefoot"}]}},
     ["attachments.straps", "foot-orthosis"]),
    ({"device": "smo", "attachments": {"straps": [{"at": "proximal_calf"}]}},
     ["proximal_calf", "device smo"]),
    ({"device": "smo", "attachments": {"vents": {}}}, ["attachments.vents", "smo"]),
    ({"device": "solid-afo", "thickness_mm": 3.0,
      "attachments": {"label": {"date": "2026-11-29", "depth_mm": 1.2}}},
     ["label.depth_mm", "thickness_mm"]),
    ({"device": "solid-afo", "attachments": {"straps": [{"at": "ankle"}, {"at": "ankle"}]}},
     ["one site twice"]),
])
def test_attachments_that_cannot_fit_are_refused_naming_the_parameters(rx, names):
    with pytest.raises(ValueError) as refused:
        Prescription(**rx)
    for name in names:
        assert name in str(refused.value)


def test_label_date_comes_from_the_prescription_only():
    with pytest.raises(ValueError, match="date"):
        Prescription(device="smo", attachments={"label": {}})
