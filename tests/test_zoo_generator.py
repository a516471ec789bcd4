"""Fast tests of the scan zoo's generator and fit measures (no orthofit involved)."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from tests.zoo import cases, exchange, fit, generate, source
from tests.zoo.generate import read_truth_ply

# Two CI-subset cases: a standing point cloud and a hanging one.
STANDING = "mh_adult_l_floor_bk30_ply_mm_y"
HANGING = "mh_adult_l_hang35_bk40_ply_mm_y"


@pytest.fixture(scope="module")
def zoo_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("zoo")


def _scan_points(path):
    return np.asarray(trimesh.load(path, process=False).vertices)


def test_case_list_is_complete():
    assert len(cases.CASES) >= 30
    names = {c.name for c in cases.CASES}
    assert set(cases.CI_SUBSET) <= names
    assert 8 <= len(cases.CI_SUBSET) <= 10
    assert not any(cases.case(n).dense for n in cases.CI_SUBSET)
    kinds = {(c.source, c.pose, c.capture, c.extent, c.units, c.up, c.side) for c in cases.CASES}
    for field_values, index in ((("makehuman", "visible_human"), 0), (("standing", "hanging"), 1),
                                (("points", "mesh", "coarse_mesh", "dense"), 2),
                                (("above_knee", "knee", "below_knee", "foot_only"), 3),
                                (("mm", "m", "in"), 4), (("y", "z"), 5), (("left", "right"), 6)):
        assert {k[index] for k in kinds} == set(field_values)
    with pytest.raises(KeyError, match="no zoo case"):
        cases.case("nope")


@pytest.mark.parametrize("name", [STANDING, HANGING])
def test_truth_is_consistent(name, zoo_dir):
    path = generate.scan_path(name, folder=zoo_dir)
    truth = generate.truth(name, folder=zoo_dir)
    skin = generate.true_skin(name, folder=zoo_dir)
    assert path.exists() and skin.is_watertight and skin.is_winding_consistent
    assert skin.volume > 0
    matrix = np.asarray(truth["true_to_scan"])
    scale = {"mm": 1.0, "m": 0.001, "in": 1 / 25.4}[truth["units"]]
    rot = matrix[:3, :3] / scale
    assert np.allclose(rot @ rot.T, np.eye(3), atol=1e-9)
    assert np.linalg.det(rot) == pytest.approx(1.0)
    assert np.allclose(matrix[3], [0, 0, 0, 1])
    to_true = np.linalg.inv(matrix)

    def true(key):
        return fit._apply(to_true, truth[key])

    ankle = true("ankle_joint_center")
    assert fit.signed_distance(skin, ankle[None])[0] < -10.0  # well inside the skin
    for key in ("heel", "toe_tip", "mth1", "mth5"):
        d = abs(fit.signed_distance(skin, true(key)[None])[0])
        assert d < 0.01, key
    axis = np.linalg.inv(rot) @ np.asarray(truth["foot_axis"])
    length = (true("toe_tip") - true("heel")) @ axis
    assert length == pytest.approx(truth["foot_length_mm"], abs=1e-6)
    assert 200.0 < truth["foot_length_mm"] < 290.0
    if truth["pose"] == "hanging":
        assert 115.0 < truth["ankle_angle_deg"] < 150.0
        assert truth["floor_point"] is None
    else:
        assert 75.0 < truth["ankle_angle_deg"] < 100.0
        assert truth["unseen"]["sole"] and truth["unseen"]["sides_below_mm"] > 0
        # no scan point of the limb under the floor, and the sole was not seen
        floor_n = np.asarray(truth["floor_normal"])
        pts = _scan_points(path)
        heights = (pts - np.asarray(truth["floor_point"])) @ floor_n / scale
        crop_lo = heights.min()
        assert crop_lo > -16.0
    # the scan is in the scan's frame: its limb lies on the true skin moved by true_to_scan
    pts = fit._apply(to_true, _scan_points(path))
    d = np.abs(fit.signed_distance(skin, pts))
    assert np.median(d) < 1.5


def test_same_case_gives_identical_bytes(tmp_path):
    name = cases.CI_SUBSET[2]
    first = generate.generate_case(cases.case(name), tmp_path / "a")
    second = generate.generate_case(cases.case(name), tmp_path / "b")
    for key in ("scan", "truth", "skin"):
        assert first[key].read_bytes() == second[key].read_bytes(), key


def test_cache_regenerates_only_when_stale(zoo_dir):
    path = generate.scan_path(STANDING, folder=zoo_dir)
    stamp = path.with_name(f"{STANDING}.stamp")
    before = path.stat().st_mtime_ns
    assert generate.scan_path(STANDING, folder=zoo_dir).stat().st_mtime_ns == before
    stamp.write_text("stale\n")
    generate.scan_path(STANDING, folder=zoo_dir)
    assert stamp.read_text().strip() == generate.case_key(cases.case(STANDING))


def test_scan_files_say_nothing_of_units_side_or_up(zoo_dir):
    data = generate.scan_path(STANDING, folder=zoo_dir).read_bytes()
    header = data[:data.index(b"end_header")].lower()
    for word in (b"mm", b"unit", b"left", b"right", b"up", b"comment"):
        assert word not in header


def test_mesh_writers_round_trip():
    box = trimesh.creation.box(extents=[10, 20, 30])
    for fmt in ("stl", "stl_ascii", "ply_mesh", "obj", "off", "glb"):
        blob = exchange.mesh_bytes(box.vertices, box.faces, fmt)
        ext = exchange.SCAN_FORMATS[fmt][0]
        loaded = trimesh.load(trimesh.util.wrap_as_stream(blob), file_type=ext, force="mesh")
        loaded.merge_vertices()
        assert loaded.is_watertight, fmt
        assert loaded.volume == pytest.approx(6000.0, rel=1e-5), fmt


def test_cap_cut_closes_a_tube():
    tube = trimesh.creation.cylinder(radius=10.0, height=100.0, sections=40)
    tube.apply_transform(trimesh.transformations.rotation_matrix(-np.pi / 2, [1, 0, 0]))
    tube.apply_translation([0, 50.0, 0])  # y from 0 to 100
    closed, cap = source.cap_cut(tube, 60.0)
    assert closed.is_watertight and closed.volume > 0
    assert closed.bounds[1][1] == pytest.approx(60.0)
    assert cap.sum() == 1


# ------------------------------------------------------------------ fit measures


def _offset_shell(skin: trimesh.Trimesh, ankle: np.ndarray, inner_mm: float,
                  thickness_mm: float) -> trimesh.Trimesh:
    """A one-body posterior shell (heel and calf, behind the ankle, up to 150 mm above it):
    inner face ``inner_mm`` off the skin (negative: inside it), ``thickness_mm`` thick,
    its rim stitched. The region is convex enough for a plain normal offset."""
    tri = skin.vertices[skin.faces]
    keep = ((tri[:, :, 2] < ankle[2]).all(axis=1) & (tri[:, :, 1] > 15.0).all(axis=1)
            & (tri[:, :, 1] < ankle[1] + 150.0).all(axis=1))
    part = trimesh.Trimesh(skin.vertices, skin.faces[keep], process=False)
    part.remove_unreferenced_vertices()
    part = max(part.split(only_watertight=False), key=lambda m: len(m.faces))
    n = part.vertex_normals
    v = part.vertices
    inner = v + inner_mm * n
    outer = v + (inner_mm + thickness_mm) * n
    k = len(v)
    faces = [part.faces + k, part.faces[:, ::-1]]
    edges = part.edges[trimesh.grouping.group_rows(part.edges_sorted, require_count=1)]
    for a, b in edges:  # each rim edge a -> b of the outer face joins the inner one
        faces.append(np.array([[b + k, a + k, a], [b + k, a, b]]))
    return trimesh.Trimesh(np.vstack([inner, outer]), np.vstack(faces), process=False)


@pytest.fixture(scope="module")
def skin_and_cap(zoo_dir):
    generate.scan_path(STANDING, folder=zoo_dir)
    mesh, _, _ = read_truth_ply(zoo_dir / f"{STANDING}.truth.ply")
    truth = generate.truth(STANDING, folder=zoo_dir)
    ankle = fit._apply(np.linalg.inv(np.asarray(truth["true_to_scan"])),
                       truth["ankle_joint_center"])
    return mesh, ankle


def test_fit_of_an_outward_offset_shell(skin_and_cap):
    skin, ankle = skin_and_cap
    shell = _offset_shell(skin, ankle, 2.0, 3.0)
    result = fit.fit_against_truth(shell, skin, clearance_mm=2.0, thickness_mm=3.0)
    assert result["watertight"] and result["bodies"] == 1 and result["genus"] == 0
    assert result["inside_share"] == 0.0 and result["max_penetration_mm"] == 0.0
    assert result["clearance_median_mm"] == pytest.approx(2.0, abs=0.3)
    assert result["clearance_p5_mm"] > 1.0


def test_fit_of_a_shell_pushed_inside(skin_and_cap):
    skin, ankle = skin_and_cap
    shell = _offset_shell(skin, ankle, -3.0, 2.0)
    result = fit.fit_against_truth(shell, skin, clearance_mm=2.0, thickness_mm=2.0)
    assert result["inside_share"] > 0.45
    assert result["max_penetration_mm"] == pytest.approx(3.0, abs=0.5)
    assert result["clearance_median_mm"] == pytest.approx(-3.0, abs=0.5)


def test_truth_in_device_maps_points_and_directions(zoo_dir):
    truth = generate.truth(STANDING, folder=zoo_dir)
    to_true = np.linalg.inv(np.asarray(truth["true_to_scan"]))
    device = fit.truth_in_device(truth, to_true)
    heel = np.asarray(device["heel"])
    assert heel[1] < 60.0 and device["floor_normal"] == pytest.approx([0, 1, 0], abs=1e-9)
    with pytest.raises(ValueError, match="4x4"):
        fit.truth_in_device(truth, np.eye(3))
