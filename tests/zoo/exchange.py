"""Writing zoo files byte for byte: scans (points or meshes), the true skin, the truth JSON.

This module owns the bytes of every file the zoo writes. Writers take numpy
arrays and return ``bytes``; nothing in a scan file says its units, side or up
axis (no comments, no names, a blank STL header). The same arrays give the
same bytes. It must not compute geometry.
"""

from __future__ import annotations

import io
import json
import struct
from typing import Any

import numpy as np

__all__ = ["SCAN_FORMATS", "dumps_truth", "mesh_bytes", "points_bytes", "truth_ply_bytes"]

# Format name -> (file extension, kind); kinds: points or mesh.
SCAN_FORMATS = {
    "ply": ("ply", "points"), "ply_ascii": ("ply", "points"), "xyz": ("xyz", "points"),
    "pcd": ("pcd", "points"), "pcd_ascii": ("pcd", "points"),
    "stl": ("stl", "mesh"), "stl_ascii": ("stl", "mesh"), "ply_mesh": ("ply", "mesh"),
    "obj": ("obj", "mesh"), "off": ("off", "mesh"), "glb": ("glb", "mesh"),
}


def _fmt(value: float) -> str:
    return f"{value:.7g}"


def _lines(points: np.ndarray) -> str:
    return "".join(f"{_fmt(x)} {_fmt(y)} {_fmt(z)}\n" for x, y, z in points.tolist())


def points_bytes(points: np.ndarray, fmt: str) -> bytes:
    """A point cloud (n, 3) in ``fmt``: ``ply``/``pcd`` binary float32, or ASCII variants."""
    pts = np.ascontiguousarray(points, dtype="<f4")
    n = len(pts)
    if fmt == "ply":
        head = (f"ply\nformat binary_little_endian 1.0\nelement vertex {n}\n"
                "property float x\nproperty float y\nproperty float z\nend_header\n")
        return head.encode("ascii") + pts.tobytes()
    if fmt == "ply_ascii":
        head = (f"ply\nformat ascii 1.0\nelement vertex {n}\n"
                "property float x\nproperty float y\nproperty float z\nend_header\n")
        return (head + _lines(pts.astype(np.float64))).encode("ascii")
    if fmt == "xyz":
        return _lines(pts.astype(np.float64)).encode("ascii")
    if fmt in ("pcd", "pcd_ascii"):
        data = "binary" if fmt == "pcd" else "ascii"
        head = ("# .PCD v0.7 - Point Cloud Data file format\nVERSION 0.7\nFIELDS x y z\n"
                "SIZE 4 4 4\nTYPE F F F\nCOUNT 1 1 1\n"
                f"WIDTH {n}\nHEIGHT 1\nVIEWPOINT 0 0 0 1 0 0 0\nPOINTS {n}\nDATA {data}\n")
        body = pts.tobytes() if fmt == "pcd" else _lines(pts.astype(np.float64)).encode("ascii")
        return head.encode("ascii") + body
    raise ValueError(f"not a point format: {fmt!r}")


def mesh_bytes(vertices: np.ndarray, faces: np.ndarray, fmt: str) -> bytes:
    """A triangle mesh in ``fmt``: ``stl`` (binary), ``stl_ascii``, ``ply_mesh``, ``obj``,
    ``off`` or ``glb``."""
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64)
    if fmt in ("stl", "stl_ascii"):
        tri = v[f]
        normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
        length = np.linalg.norm(normal, axis=1, keepdims=True)
        normal = np.where(length > 0, normal / np.where(length > 0, length, 1.0), 0.0)
        if fmt == "stl":
            rec = np.zeros(len(f), dtype=[("n", "<f4", 3), ("v", "<f4", (3, 3)), ("a", "<u2")])
            rec["n"], rec["v"] = normal, tri
            return b"\0" * 80 + struct.pack("<I", len(f)) + rec.tobytes()
        out = io.StringIO()
        out.write("solid\n")
        for nrm, t in zip(normal.tolist(), tri.tolist()):
            out.write(f"facet normal {_fmt(nrm[0])} {_fmt(nrm[1])} {_fmt(nrm[2])}\n"
                      " outer loop\n")
            for p in t:
                out.write(f"  vertex {_fmt(p[0])} {_fmt(p[1])} {_fmt(p[2])}\n")
            out.write(" endloop\nendfacet\n")
        out.write("endsolid\n")
        return out.getvalue().encode("ascii")
    if fmt == "ply_mesh":
        head = (f"ply\nformat binary_little_endian 1.0\nelement vertex {len(v)}\n"
                "property float x\nproperty float y\nproperty float z\n"
                f"element face {len(f)}\nproperty list uchar int vertex_indices\nend_header\n")
        rec = np.zeros(len(f), dtype=[("k", "u1"), ("i", "<i4", 3)])
        rec["k"], rec["i"] = 3, f
        return head.encode("ascii") + v.astype("<f4").tobytes() + rec.tobytes()
    if fmt == "obj":
        text = "".join(f"v {_fmt(a)} {_fmt(b)} {_fmt(c)}\n" for a, b, c in v.tolist())
        text += "".join(f"f {a + 1} {b + 1} {c + 1}\n" for a, b, c in f.tolist())
        return text.encode("ascii")
    if fmt == "off":
        text = f"OFF\n{len(v)} {len(f)} 0\n" + _lines(v)
        text += "".join(f"3 {a} {b} {c}\n" for a, b, c in f.tolist())
        return text.encode("ascii")
    if fmt == "glb":
        return _glb(v, f)
    raise ValueError(f"not a mesh format: {fmt!r}")


def _glb(v: np.ndarray, f: np.ndarray) -> bytes:
    """A minimal glTF 2.0 binary: one mesh, positions and indices, no names or extras."""
    pos = np.ascontiguousarray(v, dtype="<f4").tobytes()
    idx = np.ascontiguousarray(f, dtype="<u4").tobytes()
    blob = pos + idx
    blob += b"\0" * (-len(blob) % 4)
    lo, hi = v.min(axis=0).astype(np.float32), v.max(axis=0).astype(np.float32)
    doc = {
        "asset": {"version": "2.0"},
        "scene": 0, "scenes": [{"nodes": [0]}], "nodes": [{"mesh": 0}],
        "meshes": [{"primitives": [{"attributes": {"POSITION": 0}, "indices": 1, "mode": 4}]}],
        "buffers": [{"byteLength": len(blob)}],
        "bufferViews": [
            {"buffer": 0, "byteOffset": 0, "byteLength": len(pos), "target": 34962},
            {"buffer": 0, "byteOffset": len(pos), "byteLength": len(idx), "target": 34963}],
        "accessors": [
            {"bufferView": 0, "componentType": 5126, "count": len(v), "type": "VEC3",
             "min": [float(x) for x in lo], "max": [float(x) for x in hi]},
            {"bufferView": 1, "componentType": 5125, "count": int(f.size), "type": "SCALAR"}],
    }
    js = json.dumps(doc, separators=(",", ":")).encode("ascii")
    js += b" " * (-len(js) % 4)
    body = (struct.pack("<II", len(js), 0x4E4F534A) + js
            + struct.pack("<II", len(blob), 0x004E4942) + blob)
    return struct.pack("<III", 0x46546C67, 2, 12 + len(body)) + body


def truth_ply_bytes(vertices: np.ndarray, faces: np.ndarray, flags: np.ndarray,
                    region: np.ndarray) -> bytes:
    """The closed true skin: binary PLY, float64 xyz, uchar ``cap``, ``seen`` and ``region``.

    ``flags`` (n, 2) bool: a vertex only on the cap; a skin vertex a limb return lies near.
    ``region`` (n,) uchar: the part of the skin a real scan misses (``truth.REGIONS``).
    """
    head = (f"ply\nformat binary_little_endian 1.0\nelement vertex {len(vertices)}\n"
            "property double x\nproperty double y\nproperty double z\n"
            "property uchar cap\nproperty uchar seen\nproperty uchar region\n"
            f"element face {len(faces)}\nproperty list uchar int vertex_indices\nend_header\n")
    vrec = np.zeros(len(vertices), dtype=[("p", "<f8", 3), ("c", "u1"), ("s", "u1"),
                                          ("r", "u1")])
    vrec["p"], vrec["c"], vrec["s"], vrec["r"] = vertices, flags[:, 0], flags[:, 1], region
    frec = np.zeros(len(faces), dtype=[("k", "u1"), ("i", "<i4", 3)])
    frec["k"], frec["i"] = 3, faces
    return head.encode("ascii") + vrec.tobytes() + frec.tobytes()


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _plain(obj.tolist())
    if isinstance(obj, (np.floating, float)):
        return round(float(obj), 9)
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj


def dumps_truth(truth: dict[str, Any]) -> str:
    """The truth record as indented JSON with rounded floats (stable across runs)."""
    return json.dumps(_plain(truth), indent=1, sort_keys=False) + "\n"
