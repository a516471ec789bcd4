"""Devices on scans nobody here made, judged against the true skin (issue #16).

Standing scans from the zoo's scanner leave the sole and the lowest sides of
the foot unseen; the first release's footplates pressed up to 14 mm into
such soles.  Each device here is designed from the scan alone and then
measured against the true skin of the limb that was scanned, moved into the
device frame by orthofit's own ``scan_to_device``: no vertex may lie inside
it, the inner face must sit at the prescribed clearance, and the shell must
be one body of genus 0.  ``bench/bench_zoo_fit.py`` runs the whole zoo.
"""

from __future__ import annotations

import pytest

from tests.zoo_designs import design_and_fit

# The limits: no vertex over 0.5 mm inside the true skin, the inner clearance's
# median within 0.5 mm of the prescription (2 mm).
PENETRATION_MM = 0.5
CLEARANCE_MEDIAN_MM = (1.5, 2.5)

CASES = [
    ("mh_adult_l_floor_bk30_ply_mm_y", "solid-afo"),
    ("mh_adult_l_floor_bk30_ply_mm_y", "foot-orthosis"),
    ("mh_child6_l_floor_bk20_ply_mm_y", "smo"),
    ("mh_fatcalf_r_platform_bk50_plyascii_mm_z", "solid-afo"),
    ("mh_adult_r_floor_foot_ply_mm_z", "foot-orthosis"),
    # no floor and the sole an open hole: the support lowered under the rim seen
    ("mh_adult_l_floor_bk30_coarse_obj_m_y", "smo"),
    # the back of the heel unseen below a wall seen above it: filled to the floor
    ("mh_child4_r_floor_knee_xyz_m_y", "smo"),
    # the toes' lowest 8 mm unseen, and the field's blob in front of them trimmed
    # with the sole filled under it: no shelf, no handles at the footplate's end
    ("mh_fatcalf_l_floor_bk40_pcd_m_y", "smo"),
    # a foot hanging at 127°: the AFO's shank turned to 90°, judged on the true skin
    # turned the same way
    ("mh_adult_l_hang35_bk40_ply_mm_y", "posterior-leaf-spring"),
]


@pytest.mark.parametrize(("name", "device"), CASES, ids=[f"{n}-{d}" for n, d in CASES])
def test_the_device_never_presses_into_the_true_skin(name, device):
    row = design_and_fit(name, device)
    assert "refused" not in row, row
    assert ("ankle_turned_deg" in row) == ("hang" in name), row
    assert row["checks_failed"] == [], row
    assert row["max_penetration_mm"] <= PENETRATION_MM, row
    lo, hi = CLEARANCE_MEDIAN_MM
    assert lo <= row["clearance_median_mm"] <= hi, row
    # Nowhere pressed onto the skin: the tightest twentieth still has a gap.
    assert row["clearance_p5_mm"] > 0.0, row
    assert row["watertight"] and row["bodies"] == 1 and row["genus"] == 0, row
