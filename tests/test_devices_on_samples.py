"""Every device on every bundled sample scan it applies to, all checks passing (issue #3).

A scan that cannot give a device must say so (``CannotServeError``, exit 4)
with a message an orthotist can act on: the foot-only sample cannot give an
AFO or a leaf spring, and gives an SMO only if it reaches high enough up the
leg.
"""

from __future__ import annotations

import pytest

from orthofit import CannotServeError
from orthofit.design import run_design
from orthofit.pipeline import inspect_file
from orthofit.prescription import DEVICES, Prescription
from tests.test_samples import SAMPLES

LEG_DEVICES = {"solid-afo", "posterior-leaf-spring"}


@pytest.fixture(scope="module", params=SAMPLES, ids=[p.stem for p in SAMPLES])
def intake(request):
    return request.param.stem, inspect_file(request.param, Prescription().scan)


@pytest.mark.parametrize("device", DEVICES)
def test_every_device_passes_every_check_or_is_refused_with_the_reason(intake, device):
    name, result = intake
    rx = Prescription(device=device)
    foot_only = result.anatomy.landmarks.get("calf") is None
    if foot_only and device in LEG_DEVICES:
        with pytest.raises(CannotServeError, match="only the foot"):
            run_design(result, rx)
        return
    try:
        design = run_design(result, rx)
    except CannotServeError as refusal:
        # Only a scan too short for the prescribed trimline may refuse.
        assert foot_only and device == "smo", f"{name} {device}: {refusal}"
        assert "scan higher up the leg" in str(refusal)
        return
    failed = {k: v for k, v in design.checks.items() if not v["passed"]}
    assert design.passed, f"{name} {device} failed {failed}"
    # The ankle stiffness is predicted where there is a calf cuff, and said why not elsewhere.
    stiffness = design.stiffness
    if device in LEG_DEVICES:
        assert stiffness["reported"] and stiffness["planes"]["sagittal"]["k_axis"] > 0
    else:
        assert not stiffness["reported"] and "no calf section" in stiffness["reason"]
    assert design.checks["fits_printer"]["orientation"] is not None
    if device == "posterior-leaf-spring":
        # Layers along the spring's neck, not across it.
        assert design.checks["fits_printer"]["shank_to_layers_deg"] <= 15.0
