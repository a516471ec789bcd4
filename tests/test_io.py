"""Reading every supported format, and refusing what is not a scan."""

from __future__ import annotations

import struct

import numpy as np
import open3d as o3d
import pytest
import trimesh

from orthofit import ScanFileError, read_scan, read_scan_bytes
from orthofit.io import read_limb_ply, sniff_format, write_limb_ply

MAX = 10_000_000


@pytest.fixture(scope="module")
def mesh():
    return trimesh.creation.icosphere(subdivisions=3, radius=40.0)


@pytest.mark.parametrize("fmt", ["stl", "ply", "off", "glb", "obj"])
def test_mesh_formats_round_trip(tmp_path, mesh, fmt):
    path = tmp_path / f"scan.{fmt}"
    mesh.export(path)
    raw = read_scan(path, max_bytes=MAX)
    assert raw.format == fmt
    assert raw.faces is not None and len(raw.faces) == len(mesh.faces)
    assert np.allclose(raw.points.min(axis=0), mesh.vertices.min(axis=0), atol=1e-4)
    assert np.allclose(raw.points.max(axis=0), mesh.vertices.max(axis=0), atol=1e-4)


def test_ascii_stl(tmp_path, mesh):
    path = tmp_path / "scan.stl"
    path.write_text(trimesh.exchange.stl.export_stl_ascii(mesh))
    raw = read_scan(path, max_bytes=MAX)
    assert raw.format == "stl" and len(raw.faces) == len(mesh.faces)


def test_obj_with_quads_is_triangulated(tmp_path):
    text = "v 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\nv 0 0 1\nv 1 0 1\nv 1 1 1\nv 0 1 1\n" \
           "f 1 2 3 4\nf 5 8 7 6\nf 1 5 6 2\nf 2 6 7 3\nf 3 7 8 4\nf 5 1 4 8\n"
    path = tmp_path / "cube.obj"
    path.write_text(text)
    raw = read_scan(path, max_bytes=MAX)
    assert raw.format == "obj" and len(raw.faces) == 12 and len(raw.points) == 8


@pytest.mark.parametrize("ascii_", [True, False])
def test_pcd(tmp_path, ascii_):
    points = np.random.default_rng(0).uniform(-50, 50, (500, 3))
    path = tmp_path / "scan.pcd"
    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(points))
    o3d.io.write_point_cloud(str(path), cloud, write_ascii=ascii_)
    raw = read_scan(path, max_bytes=MAX)
    assert raw.format == "pcd" and raw.faces is None
    assert np.allclose(raw.points, points, atol=1e-3)


def test_xyz_with_extra_columns_and_comments(tmp_path):
    points = np.random.default_rng(1).uniform(-50, 50, (100, 3))
    path = tmp_path / "scan.xyz"
    body = "\n".join(f"{x:.4f},{y:.4f},{z:.4f},0.1,0.2,0.3" for x, y, z in points)
    path.write_text("# exported\n" + body + "\n")
    raw = read_scan(path, max_bytes=MAX)
    assert raw.format == "xyz" and np.allclose(raw.points, points, atol=1e-4)


def test_format_comes_from_content_not_name(tmp_path, mesh):
    path = tmp_path / "scan.stl"
    mesh.export(path, file_type="ply")
    assert read_scan(path, max_bytes=MAX).format == "ply"


def test_sha256_records_the_input():
    a = read_scan_bytes(b"0 0 0\n1 1 1\n2 2 2\n")
    b = read_scan_bytes(b"0 0 0\n1 1 1\n2 2 3\n")
    assert len(a.sha256) == 64 and a.sha256 != b.sha256


@pytest.mark.parametrize("data, message", [
    (b"", "empty"),
    (b"\x89PNG\r\n\x1a\n" + b"\0" * 64, "PNG image"),
    (b"\xff\xd8\xff\xe0" + b"\0" * 64, "JPEG image"),
    (bytes(range(256)) * 4, "not a complete STL"),
    (b"hello, this is a letter\nnot a scan\n", "not a complete STL"),
])
def test_refuses_what_is_not_a_scan(data, message):
    with pytest.raises(ScanFileError, match=message):
        read_scan_bytes(data, suffix=".stl")


def test_refuses_text_that_is_not_a_scan():
    with pytest.raises(ScanFileError, match="not a scan orthofit can read"):
        read_scan_bytes(b"Dear orthotist,\nplease find attached\n", suffix=".txt")


def test_truncated_binary_stl(mesh):
    data = trimesh.exchange.stl.export_stl(mesh)
    with pytest.raises(ScanFileError, match="truncated|damaged"):
        read_scan_bytes(data[:-100], suffix=".stl")


def test_truncated_ply(mesh):
    data = trimesh.exchange.ply.export_ply(mesh)
    with pytest.raises(ScanFileError, match="truncated|damaged"):
        read_scan_bytes(data[: len(data) // 2], suffix=".ply")


def test_xyz_with_a_broken_line():
    with pytest.raises(ScanFileError, match="not three numbers|damaged"):
        read_scan_bytes(b"1 2 3\n" * 9 + b"1 2 x\n", suffix=".xyz")


def test_stl_header_lying_about_triangles():
    header = b"\0" * 80 + struct.pack("<I", 1000)
    with pytest.raises(ScanFileError):
        read_scan_bytes(header + b"\0" * 50, suffix=".stl")


def test_missing_file_and_size_limit(tmp_path):
    with pytest.raises(ScanFileError, match="does not exist"):
        read_scan(tmp_path / "nope.ply", max_bytes=MAX)
    path = tmp_path / "big.xyz"
    path.write_text("0 0 0\n" * 1000)
    with pytest.raises(ScanFileError, match="limit"):
        read_scan(path, max_bytes=100)


def test_sniff_format_names():
    assert sniff_format(b"OFF\n3 1 0\n") == "off"
    assert sniff_format(b"glTF\x02\0\0\0") == "glb"
    assert sniff_format(b"# .PCD v0.7\nVERSION 0.7\nFIELDS x y z\n") == "pcd"
    assert sniff_format(b"v 1 2 3\nv 4 5 6\n") == "obj"
    assert sniff_format(b"1.0 2.0 3.0\n4 5 6\n") == "xyz"


def test_limb_ply_round_trip(tmp_path):
    box = trimesh.creation.box(extents=(10, 20, 30))
    filled = np.arange(len(box.vertices)) % 2 == 0
    write_limb_ply(tmp_path / "limb.ply", box.vertices, box.faces, filled)
    mesh, back = read_limb_ply(tmp_path / "limb.ply")
    assert np.allclose(mesh.vertices, box.vertices) and np.array_equal(mesh.faces, box.faces)
    assert np.array_equal(back, filled)
    assert mesh.is_watertight
    # Other tools read it too.
    assert len(trimesh.load(tmp_path / "limb.ply").faces) == len(box.faces)
