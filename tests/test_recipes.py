"""One recipe on every sample scan, left and right, adult and child (issue #5).

The insole recipe gives a passing insole on every sample.  The AFO recipe
gives a passing AFO on every sample that reaches the knee; the foot-only
sample is refused with the reason.  Corrections are applied as each recipe
says.
"""

from __future__ import annotations

import numpy as np
import pytest

from orthofit import CannotServeError
from orthofit.attachments import SLOT_PLAY_MM
from orthofit.io import read_prescription_file
from orthofit.pipeline import design_file
from orthofit.prescription import Prescription
from tests.conftest import ROOT
from tests.attachment_helpers import material_around, opening, slot_cut, vent_cuts
from tests.test_samples import SAMPLES

RECIPE = ROOT / "recipes" / "growing-child-afo.yaml"
INSOLE = ROOT / "recipes" / "insole-with-supports.yaml"


def test_the_samples_cover_both_sides_adults_and_children():
    names = [p.stem for p in SAMPLES]
    assert any("left" in n for n in names) and any("right" in n for n in names)
    assert any("adult" in n for n in names) and any("child" in n for n in names)


@pytest.mark.parametrize("scan", SAMPLES, ids=[p.stem for p in SAMPLES])
def test_recipe_gives_a_passing_device_on_every_sample(scan):
    rx = Prescription.model_validate(read_prescription_file(RECIPE))
    if "footonly" in scan.stem:
        with pytest.raises(CannotServeError, match="scan up to below the knee"):
            design_file(scan, rx)
        return
    result = design_file(scan, rx)
    assert result.passed, {k: v for k, v in result.checks.items() if not v["passed"]}
    applied = result.corrections
    assert applied["ankle_angle"]["corrected_deg"] == pytest.approx(90.0, abs=1.0)
    assert [r["at"] for r in applied["reliefs"]] == ["medial_malleolus", "lateral_malleolus"]
    assert applied["growth_length_mm"] == 8 and applied["growth_width_mm"] == 4


@pytest.mark.parametrize("scan", SAMPLES, ids=[p.stem for p in SAMPLES])
def test_insole_recipe_gives_a_passing_insole_on_every_sample(scan):
    rx = Prescription.model_validate(read_prescription_file(INSOLE))
    result = design_file(scan, rx)
    assert result.passed, {k: v for k, v in result.checks.items() if not v["passed"]}
    supports = {s["kind"]: s for s in result.corrections["supports"]}
    assert supports["arch_support"]["intended_indentation_mm"] == pytest.approx(6.0)
    assert supports["metatarsal_pad"]["height_mm"] == 4.0
    assert supports["heel_post"]["side"] == "medial" and supports["heel_post"]["degrees"] == 4
    assert result.corrections["heel_cup_depth_mm"] == 18
    assert result.corrections["shoe_heel_pitch"]["pitch_mm"] == 10


STRAPPED = ROOT / "recipes" / "afo-with-straps.yaml"


@pytest.mark.parametrize("scan", SAMPLES, ids=[p.stem for p in SAMPLES])
def test_strapped_recipe_gives_a_passing_afo_on_every_sample(scan):
    rx = Prescription.model_validate(read_prescription_file(STRAPPED))
    if "footonly" in scan.stem:
        with pytest.raises(CannotServeError, match="scan up to below the knee"):
            design_file(scan, rx)
        return
    result = design_file(scan, rx)
    assert result.passed, {k: v for k, v in result.checks.items() if not v["passed"]}
    attachments = result.attachments
    assert [s["at"] for s in attachments["straps"]] == ["proximal_calf", "ankle"]
    assert all(s["width_mm"] in (25, 38, 50) and len(s["slots"]) == 2
               for s in attachments["straps"])
    assert attachments["vents"]["count"] > 0
    assert attachments["label"]["text"][0] == "C-0042"
    assert result.device.is_watertight
    # Each slot's opening, found by rays through the wall, is where the report
    # puts it and as long as the strap; material all round it at the margin.
    for strap in attachments["straps"]:
        for slot in strap["slots"]:
            centre, length = opening(result.device, slot, rx)
            assert np.linalg.norm(centre - slot["centre_mm"]) < 2.0, (strap["at"], slot)
            assert length == pytest.approx(strap["width_mm"] + SLOT_PLAY_MM, abs=1.5)
            solid = material_around(result.device, slot_cut(slot),
                                     attachments["margin_mm"] - 1.0, rx)
            assert solid.mean() > 0.97, (strap["at"], slot["side"], solid.mean())
    for cut in vent_cuts(result):
        solid = material_around(result.device, cut, attachments["margin_mm"] - 1.0, rx)
        assert solid.mean() > 0.97, ("vent", cut.centre, solid.mean())
