"""Device checks against shells of known thickness and clearance (issue #3 groundwork)."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from orthofit.checks import printer_fit, run_checks, self_intersections
from orthofit.prescription import MATERIALS, PRINTERS
from orthofit.shell import LimbDistance, build_shell

CLEARANCE_MM = 2.0
THICKNESS_MM = 3.0


@pytest.fixture(scope="module")
def cup():
    """A ball 'limb' of radius 40 mm and a cup around its lower half."""
    limb = trimesh.creation.icosphere(subdivisions=5, radius=40.0)
    shell = build_shell(limb, lambda p: p[:, 2] - 10.0, clearance=CLEARANCE_MM,
                        thickness=THICKNESS_MM, flare=0.0)
    return limb, shell


def test_cup_is_one_closed_body(cup):
    _, shell = cup
    assert shell.is_watertight and shell.is_winding_consistent and shell.volume > 0
    assert len(shell.split(only_watertight=False)) == 1


def test_cup_wall_sits_where_prescribed(cup):
    limb, shell = cup
    d = LimbDistance(limb)(shell.vertices)
    # Every vertex lies on the inner face (d = clearance), the outer one
    # (d = clearance + thickness) or the rim between them.
    assert d.min() > CLEARANCE_MM - 0.15
    assert d.max() < CLEARANCE_MM + THICKNESS_MM + 0.15


def test_checks_measure_known_thickness_and_clearance(cup):
    limb, shell = cup
    checks = run_checks(shell, limb, clearance_mm=CLEARANCE_MM, thickness_mm=THICKNESS_MM,
                        material=MATERIALS["PA12"], printer=PRINTERS["fdm-250"])
    assert checks["watertight"]["passed"] and checks["single_body"]["passed"]
    assert checks["no_self_intersection"]["value"] == 0
    assert checks["wall_thickness"]["value"]["median"] == pytest.approx(THICKNESS_MM, abs=0.3)
    assert checks["clearance"]["value"]["median"] == pytest.approx(CLEARANCE_MM, abs=0.3)
    assert checks["wall_thickness"]["passed"] and checks["clearance"]["passed"]
    assert checks["fits_printer"]["passed"]
    volume = shell.volume / 1000.0
    assert checks["mass_g"]["value"] == pytest.approx(volume * 1.01, abs=0.051)  # 0.1 g steps


def test_self_intersection_is_found():
    a = trimesh.creation.box(extents=(10, 10, 10))
    b = trimesh.creation.box(extents=(10, 10, 10))
    b.apply_translation([5, 5, 5])
    both = trimesh.util.concatenate([a, b])
    assert self_intersections(both) > 0
    assert self_intersections(a) == 0


def test_too_big_for_the_printer_in_any_turn():
    huge = trimesh.creation.box(extents=(400, 300, 300))
    checks = run_checks(huge, None, clearance_mm=CLEARANCE_MM, thickness_mm=THICKNESS_MM,
                        material=MATERIALS["PA12"], printer=PRINTERS["fdm-250"])
    assert not checks["fits_printer"]["passed"]


def test_a_long_device_fits_diagonally():
    # 400 mm does not fit any edge of a 380 x 284 x 380 mm build volume, but
    # fits across its 380 x 380 face.
    rod = trimesh.creation.box(extents=(400, 40, 40))
    checks = run_checks(rod, None, clearance_mm=CLEARANCE_MM, thickness_mm=THICKNESS_MM,
                        material=MATERIALS["PA12"], printer=PRINTERS["hp-mjf-5200"])
    assert checks["fits_printer"]["passed"]
    assert checks["fits_printer"]["orientation"][0]["turn_deg"] > 0


def test_a_rod_longer_than_every_face_diagonal_fits_along_the_space_diagonal():
    # fdm-250 is 250 x 210 x 220 mm: its face diagonals are at most 333 mm and
    # its space diagonal 393 mm, so a 360 mm rod needs turns about two axes.
    rod = trimesh.creation.box(extents=(360, 16, 16))
    fit = printer_fit(rod, PRINTERS["fdm-250"])
    assert fit["fits"]
    assert len([t for t in fit["orientation"] if t["turn_deg"]]) >= 2
    assert max(fit["size_mm"]) <= 250 and fit["margin_mm"] >= 0


def test_a_leaf_spring_is_laid_with_its_shank_along_the_layers():
    # A tall strip standing on a plate, like a leaf spring's shank on its footplate.
    strip = trimesh.util.concatenate([
        trimesh.creation.box(extents=(20, 40, 200), transform=_shift(0, 0, 100)),
        trimesh.creation.box(extents=(120, 60, 4), transform=_shift(40, 0, 2))])
    upright = printer_fit(strip, PRINTERS["hp-mjf-5200"])
    flat = printer_fit(strip, PRINTERS["hp-mjf-5200"], lay_shank_flat=True)
    assert upright["orientation"] == [{"turn_axis": "z", "turn_deg": 0.0}]
    assert upright["shank_to_layers_deg"] == 90.0
    assert flat["fits"] and flat["shank_to_layers_deg"] <= 5.0


def _shift(x: float, y: float, z: float) -> np.ndarray:
    return trimesh.transformations.translation_matrix((x, y, z))


# Holes (issue #16): a through-hole adds one to the genus; a notch at an edge
# leaves the genus alone and is found by looking for the wall.

def _cup_with(cuts):
    limb = trimesh.creation.icosphere(subdivisions=5, radius=40.0)
    shell = build_shell(limb, lambda p: p[:, 2] - 10.0, clearance=CLEARANCE_MM,
                        thickness=THICKNESS_MM, flare=0.0, cuts=cuts)
    return limb, shell


def _holes(limb, shell, covers, intended=0):
    return run_checks(shell, limb, clearance_mm=CLEARANCE_MM, thickness_mm=THICKNESS_MM,
                      material=MATERIALS["PA12"], printer=PRINTERS["fdm-250"],
                      covers=covers, intended_openings=intended)["no_unintended_holes"]


def _rim(p):
    return p[:, 2] - 10.0 + 2.5   # inside the trimline by more than the rounded edge


def test_a_whole_cup_has_no_holes(cup):
    limb, shell = cup
    row = _holes(limb, shell, _rim)
    assert row["passed"], row
    assert row["value"]["genus"] == 0 and row["value"]["looked_at"] > 1000


def _through_bottom(p):
    """Negative inside a vertical cylinder of radius 6 mm through the cup's bottom
    (the sign of the shell's ``cuts``)."""
    return np.where(p[:, 2] < -20.0, np.hypot(p[:, 0], p[:, 1]) - 6.0, 1.0)


def test_a_hole_through_the_wall_is_found_unless_intended():
    limb, shell = _cup_with(_through_bottom)
    assert shell.is_watertight
    unintended = _holes(limb, shell, _rim)
    assert not unintended["passed"]
    assert unintended["value"]["genus"] == 1
    # ~113 mm² of wall missing, seen from the skin 42 mm in: about 100 mm².
    assert 40.0 < unintended["value"]["holes_mm2"] < 250.0
    # Intended (a vent), with the wall not asked for over it: it passes.
    intended = _holes(limb, shell, lambda p: np.maximum(_rim(p), 3.0 - _through_bottom(p)),
                      intended=1)
    assert intended["passed"], intended


def test_a_notch_at_the_rim_keeps_the_genus_and_is_still_found():
    def notch(p):
        # A slot 16 mm wide from the rim down to z = -10 on the +x side.
        return -np.minimum.reduce([8.0 - np.abs(p[:, 1]), p[:, 2] + 10.0, p[:, 0]])

    limb, shell = _cup_with(notch)
    row = _holes(limb, shell, _rim)
    assert row["value"]["genus"] == 0
    assert not row["passed"] and row["value"]["holes_mm2"] > 100.0, row
