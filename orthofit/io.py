"""Reading scans and writing intake results: the only module that touches files.

It owns format sniffing (from the bytes, never trusted from the name), the
refusals of unreadable input, and the byte layout of what orthofit writes.
Geometry modules never call it; only the pipeline, the CLI and the service do.
Nothing from an input's header, name or path is carried into any output.
"""

from __future__ import annotations

import hashlib
import io as _io
import json
import logging
import struct
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import trimesh

from .errors import ScanFileError

__all__ = [
    "SCAN_FORMATS",
    "RawScan",
    "read_scan",
    "read_scan_bytes",
    "sniff_format",
    "strip_scan_metadata",
    "write_limb_ply",
    "read_limb_ply",
    "stl_bytes",
    "threemf_bytes",
    "write_png",
    "png_bytes",
    "read_mesh",
    "read_prescription_file",
    "write_json",
    "dumps_json",
]

log = logging.getLogger(__name__)

#: Formats intake reads, by the name ``sniff_format`` gives them.
SCAN_FORMATS = ("stl", "obj", "ply", "off", "glb", "pcd", "xyz")

# Share of the first lines that must be numbers for a file to be read as XYZ.
_XYZ_NUMERIC_SHARE = 0.8
_STL_HEADER_BYTES = 84
_STL_TRIANGLE_BYTES = 50


@dataclass(frozen=True)
class RawScan:
    """A scan as read from its file, in the file's own units and axes.

    Attributes
    ----------
    points : (n, 3) float64, scan units
        Every vertex or point of the file.
    faces : (m, 3) int64 or None
        Triangles when the file is a mesh; None for a point cloud.
    format : str
        One of :data:`SCAN_FORMATS`.
    sha256 : str
        Hex digest of the file's bytes: how outputs record their input.
    """

    points: np.ndarray
    faces: np.ndarray | None
    format: str
    sha256: str


def sniff_format(data: bytes, suffix: str = "") -> str:
    """Name the scan format of ``data`` from its bytes; the suffix only breaks ties.

    Raises
    ------
    ScanFileError
        When the bytes are of no format orthofit reads.

    Examples
    --------
    >>> sniff_format(b"ply\\nformat ascii 1.0\\n")
    'ply'
    >>> sniff_format(b"\\x89PNG\\r\\n\\x1a\\n", ".stl")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    orthofit.errors.ScanFileError: the file is a PNG image, not a scan; ...
    """
    head = data[:512]
    if not data:
        raise ScanFileError("the file is empty; export the scan again from the scanner software")
    if head.startswith(b"ply"):
        return "ply"
    if head.startswith(b"glTF"):
        return "glb"
    if head.startswith((b"OFF", b"COFF", b"NOFF")):
        return "off"
    if head.startswith(b"\x89PNG") or head.startswith(b"\xff\xd8\xff"):
        kind = "a PNG image" if head.startswith(b"\x89PNG") else "a JPEG image"
        raise ScanFileError(f"the file is {kind}, not a scan; export the scan as "
                            "STL, OBJ, PLY, OFF, GLB, PCD or XYZ")
    if len(data) >= _STL_HEADER_BYTES:
        (count,) = struct.unpack_from("<I", data, 80)
        if count > 0 and len(data) == _STL_HEADER_BYTES + _STL_TRIANGLE_BYTES * count:
            return "stl"
    text = head.lstrip().lower()
    if text.startswith(b"solid") and (b"facet" in data[:4096].lower()
                                      or suffix.lower() == ".stl"):
        return "stl"
    if text.startswith(b"# .pcd") or text.startswith(b"version") and b"fields" in text:
        return "pcd"
    lines = [ln.strip() for ln in data[:4096].splitlines() if ln.strip()]
    if any(ln.startswith((b"v ", b"f ", b"vn ", b"o ", b"g ", b"mtllib")) for ln in lines):
        return "obj"
    if lines and _looks_numeric(lines[:20]):
        return "xyz"
    if suffix.lower() == ".stl":
        raise ScanFileError("the file is named .stl but is not a complete STL "
                            "(truncated or damaged); export the scan again")
    raise ScanFileError("the file is not a scan orthofit can read; export it as "
                        "STL, OBJ, PLY, OFF, GLB, PCD or XYZ")


def _looks_numeric(lines: list[bytes]) -> bool:
    """Most of the first lines are three or more numbers (an XYZ point list)."""
    body = [ln for ln in lines if not ln.startswith(b"#")]
    return bool(body) and sum(map(_is_point_line, body)) >= _XYZ_NUMERIC_SHARE * len(body)


def _is_point_line(line: bytes) -> bool:
    parts = line.replace(b",", b" ").split()
    if len(parts) < 3:
        return False
    try:
        [float(p) for p in parts[:3]]
    except ValueError:
        return False
    return True


def read_scan(path: str | Path, *, max_bytes: int) -> RawScan:
    """Read a scan file of any supported format.

    Parameters
    ----------
    path : path to STL, OBJ, PLY, OFF, GLB, PCD or XYZ
    max_bytes : refuse files larger than this

    Raises
    ------
    ScanFileError
        Missing, too large, unreadable, truncated or empty files.
    """
    path = Path(path)
    if not path.is_file():
        raise ScanFileError(f"the scan file {path} does not exist or is not a file; "
                            "check the path")
    size = path.stat().st_size
    if size > max_bytes:
        raise ScanFileError(f"the scan file is {size / 1e6:.0f} MB, over the "
                            f"{max_bytes / 1e6:.0f} MB limit; decimate it in the scanner "
                            "software or raise --max-file-mb")
    return read_scan_bytes(path.read_bytes(), suffix=path.suffix)


def read_scan_bytes(data: bytes, *, suffix: str = "") -> RawScan:
    """Read a scan held in memory; see :func:`read_scan`."""
    fmt = sniff_format(data, suffix)
    digest = hashlib.sha256(data).hexdigest()
    try:
        if fmt == "pcd":
            points, faces = _read_pcd(data), None
        elif fmt == "xyz":
            points, faces = _read_xyz(data), None
        else:
            points, faces = _read_trimesh(data, fmt)
    except ScanFileError:
        raise
    except (ValueError, KeyError, IndexError, TypeError, struct.error,
            UnicodeDecodeError, OSError) as exc:
        log.debug("reader failed", exc_info=True)
        raise ScanFileError(f"the {fmt.upper()} file is damaged or truncated and cannot "
                            "be read; export the scan again") from exc
    if points.size == 0:
        raise ScanFileError(f"the {fmt.upper()} file holds no points; export the scan again")
    return RawScan(points=points, faces=faces, format=fmt, sha256=digest)


def _read_trimesh(data: bytes, fmt: str) -> tuple[np.ndarray, np.ndarray | None]:
    loaded = trimesh.load(_io.BytesIO(data), file_type=fmt, process=False)
    if isinstance(loaded, trimesh.Scene):
        geoms = [g for g in loaded.dump() if hasattr(g, "vertices")]
        meshes = [g for g in geoms if isinstance(g, trimesh.Trimesh)]
        if meshes:
            loaded = trimesh.util.concatenate(meshes)
        elif geoms:
            loaded = trimesh.PointCloud(np.vstack([g.vertices for g in geoms]))
        else:
            return np.empty((0, 3)), None
    points = np.asarray(loaded.vertices, dtype=np.float64)
    faces = None
    if isinstance(loaded, trimesh.Trimesh) and len(loaded.faces):
        faces = np.asarray(loaded.faces, dtype=np.int64)
    return points, faces


def _read_xyz(data: bytes) -> np.ndarray:
    text = data.replace(b",", b" ").decode("ascii")
    try:
        table = np.loadtxt(_io.StringIO(text), comments="#", usecols=(0, 1, 2), ndmin=2)
    except ValueError as exc:
        raise ScanFileError("the XYZ file has a line that is not three numbers; "
                            "export the point cloud again") from exc
    return np.asarray(table, dtype=np.float64)


def _read_pcd(data: bytes) -> np.ndarray:
    import open3d as o3d  # Open3D stays behind this boundary: numpy out.

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "scan.pcd"
        path.write_bytes(data)
        cloud = o3d.io.read_point_cloud(str(path), format="pcd")
    return np.asarray(cloud.points, dtype=np.float64)


def write_limb_ply(path: str | Path, vertices: np.ndarray, faces: np.ndarray,
                   filled: np.ndarray) -> None:
    """Write the closed limb as binary PLY with a per-vertex ``filled`` flag.

    Parameters
    ----------
    vertices : (n, 3) float, mm, device frame
    faces : (m, 3) int
    filled : (n,) bool; True where the surface was filled in, not scanned
    """
    vertices = np.asarray(vertices, dtype="<f4")
    faces = np.asarray(faces, dtype="<i4")
    header = ("ply\nformat binary_little_endian 1.0\n"
              f"element vertex {len(vertices)}\n"
              "property float x\nproperty float y\nproperty float z\n"
              "property uchar filled\n"
              f"element face {len(faces)}\n"
              "property list uchar int vertex_indices\nend_header\n")
    vdt = np.dtype([("xyz", "<f4", 3), ("filled", "u1")])
    vrec = np.empty(len(vertices), dtype=vdt)
    vrec["xyz"] = vertices
    vrec["filled"] = np.asarray(filled, dtype=bool)
    fdt = np.dtype([("n", "u1"), ("idx", "<i4", 3)])
    frec = np.empty(len(faces), dtype=fdt)
    frec["n"] = 3
    frec["idx"] = faces
    with open(path, "wb") as fh:
        fh.write(header.encode("ascii"))
        fh.write(vrec.tobytes())
        fh.write(frec.tobytes())


def read_limb_ply(path: str | Path) -> tuple[trimesh.Trimesh, np.ndarray]:
    """Read a ``limb.ply`` written by :func:`write_limb_ply`: (mesh, filled mask)."""
    data = Path(path).read_bytes()
    end = data.index(b"end_header\n") + len(b"end_header\n")
    header = data[:end].decode("ascii").splitlines()
    n_vert = int(next(ln for ln in header if ln.startswith("element vertex")).split()[-1])
    n_face = int(next(ln for ln in header if ln.startswith("element face")).split()[-1])
    vdt = np.dtype([("xyz", "<f4", 3), ("filled", "u1")])
    fdt = np.dtype([("n", "u1"), ("idx", "<i4", 3)])
    vrec = np.frombuffer(data, dtype=vdt, count=n_vert, offset=end)
    frec = np.frombuffer(data, dtype=fdt, count=n_face, offset=end + vdt.itemsize * n_vert)
    mesh = trimesh.Trimesh(vrec["xyz"].astype(np.float64), frec["idx"].astype(np.int64),
                           process=False)
    return mesh, vrec["filled"].astype(bool)


def dumps_json(obj: Any) -> str:
    """Serialise results the same way every time (sorted keys, fixed rounding)."""
    return json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n"


def write_json(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as JSON with :func:`dumps_json`."""
    Path(path).write_text(dumps_json(obj), encoding="utf-8")


#: Binary STL header: says what the file is, and nothing about the patient.
_STL_HEADER = b"orthofit device, binary STL, millimetres, device frame".ljust(80, b" ")
# Every member of a 3MF archive gets this timestamp, so archives are byte-identical.
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


def stl_bytes(vertices: np.ndarray, faces: np.ndarray) -> bytes:
    """Binary STL of a triangle mesh (mm); the same mesh gives the same bytes.

    Parameters
    ----------
    vertices : (n, 3) float, mm
    faces : (m, 3) int, counter-clockwise seen from outside
    """
    tri = np.asarray(vertices, dtype=np.float64)[np.asarray(faces)]
    normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    length = np.linalg.norm(normal, axis=1, keepdims=True)
    normal = np.divide(normal, length, out=np.zeros_like(normal), where=length > 0)
    record = np.zeros(len(tri), dtype=[("n", "<f4", 3), ("v", "<f4", (3, 3)), ("a", "<u2")])
    record["n"] = normal
    record["v"] = tri
    return _STL_HEADER + struct.pack("<I", len(tri)) + record.tobytes()


def threemf_bytes(vertices: np.ndarray, faces: np.ndarray, *, name: str) -> bytes:
    """A 3MF package (unit millimetre) holding one mesh object, id 1.

    ``name`` labels the object for the lab (a case reference, never a
    patient's name).  Fixed timestamps and member order make it byte-identical
    for the same mesh.
    """
    vertices = np.asarray(vertices, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int64)
    # One formatting call per element list (in C) instead of one per element.
    verts = ('<vertex x="%.4f" y="%.4f" z="%.4f"/>' * len(vertices)) % tuple(
        vertices.ravel().tolist())
    tris = ('<triangle v1="%d" v2="%d" v3="%d"/>' * len(faces)) % tuple(faces.ravel().tolist())
    model = ('<?xml version="1.0" encoding="UTF-8"?>\n'
             '<model unit="millimeter" xml:lang="en-US" '
             'xmlns="http://schemas.microsoft.com/3dmanufacturing/core/2015/02">'
             f'<resources><object id="1" type="model" name="{_xml_attr(name)}">'
             f'<mesh><vertices>{verts}</vertices><triangles>{tris}</triangles></mesh>'
             '</object></resources><build><item objectid="1"/></build></model>')
    content_types = ('<?xml version="1.0" encoding="UTF-8"?>\n'
                     '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
                     '<Default Extension="rels" '
                     'ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
                     '<Default Extension="model" '
                     'ContentType="application/vnd.ms-package.3dmanufacturing-3dmodel+xml"/>'
                     '</Types>')
    rels = ('<?xml version="1.0" encoding="UTF-8"?>\n'
            '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
            '<Relationship Target="/3D/3dmodel.model" Id="rel0" '
            'Type="http://schemas.microsoft.com/3dmanufacturing/2013/01/3dmodel"/>'
            '</Relationships>')
    buffer = _io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for member, text in (("[Content_Types].xml", content_types), ("_rels/.rels", rels),
                             ("3D/3dmodel.model", model)):
            info = zipfile.ZipInfo(member, date_time=_ZIP_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, text.encode("utf-8"))
    return buffer.getvalue()


def _xml_attr(text: str) -> str:
    return (text.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;")
            .replace(">", "&gt;"))


def write_png(path: str | Path, image: np.ndarray) -> None:
    """Write an RGB image (h, w, 3) float in [0, 1] as PNG, with no metadata."""
    Path(path).write_bytes(png_bytes(image))


def png_bytes(image: np.ndarray) -> bytes:
    """An RGB image (h, w, 3) float in [0, 1] (or uint8) as PNG bytes, with no metadata."""
    from PIL import Image

    pixels = np.asarray(image)
    if pixels.dtype != np.uint8:
        pixels = np.clip(np.round(pixels * 255), 0, 255).astype(np.uint8)
    buffer = _io.BytesIO()
    Image.fromarray(pixels, mode="RGB").save(buffer, format="PNG")
    return buffer.getvalue()


def read_mesh(path: str | Path) -> trimesh.Trimesh:
    """Read a device mesh for checking (any format trimesh reads, 3MF included)."""
    path = Path(path)
    if not path.is_file():
        raise ScanFileError(f"the mesh file does not exist: {path.name}; check the path")
    try:
        mesh = trimesh.load(path, force="mesh")
    except (ValueError, KeyError, IndexError, TypeError, OSError) as exc:
        raise ScanFileError("the mesh file is damaged or of no format orthofit reads; "
                            "export it again as STL, PLY, OBJ or 3MF") from exc
    if not isinstance(mesh, trimesh.Trimesh) or len(mesh.faces) == 0:
        raise ScanFileError("the mesh file holds no triangles; export the device again")
    return mesh


def read_prescription_file(path: str | Path) -> dict[str, Any]:
    """A prescription file's content: JSON, or YAML by its .yaml/.yml suffix."""
    from .errors import UsageError

    path = Path(path)
    if not path.is_file():
        raise UsageError(f"the prescription file {path} does not exist; check the path")
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() in (".yaml", ".yml"):
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise UsageError(f"the prescription file {path.name} is not valid YAML{where}: "
                             f"{problem}; check the indentation there") from exc
    else:
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise UsageError(f"the prescription file {path.name} is not valid JSON: "
                             f"{exc}") from exc
    if not isinstance(data, dict):
        raise UsageError("the prescription file must hold one object of fields")
    return data


def strip_scan_metadata(data: bytes, fmt: str) -> bytes:
    """``data`` (a scan in format ``fmt``) with every header, comment and name dropped.

    What intake reads stays byte for byte (:func:`read_scan_bytes` gives the
    same points and faces); what a scanner or a person may have written beside
    the geometry goes: a binary STL's 80-byte header and its per-triangle
    attribute bytes are zeroed, an ASCII STL's solid name dropped, PLY
    ``comment`` and ``obj_info`` lines, OBJ, OFF, PCD and XYZ ``#`` comments,
    OBJ ``o``/``g`` names and material references, and a GLB's names, extras
    and generator.

    >>> strip_scan_metadata(b"ply\\nformat ascii 1.0\\ncomment Jane Doe 1980-04-12\\n"
    ...                     b"element vertex 0\\nend_header\\n", "ply")
    b'ply\\nformat ascii 1.0\\nelement vertex 0\\nend_header\\n'
    """
    if fmt == "stl":
        return _strip_stl(data)
    if fmt == "ply":
        return _strip_ply(data)
    if fmt == "glb":
        return _strip_glb(data)
    if fmt == "pcd":
        return _strip_pcd(data)
    if fmt in ("obj", "off", "xyz"):
        return _strip_text(data, obj=fmt == "obj")
    raise ScanFileError(f"no scan format {fmt!r}")


def _strip_stl(data: bytes) -> bytes:
    if len(data) >= _STL_HEADER_BYTES:
        (count,) = struct.unpack_from("<I", data, 80)
        if count > 0 and len(data) == _STL_HEADER_BYTES + _STL_TRIANGLE_BYTES * count:
            out = bytearray(data)
            out[:80] = bytes(80)
            triangles = np.frombuffer(out, dtype=np.uint8, offset=_STL_HEADER_BYTES)
            triangles.reshape(count, _STL_TRIANGLE_BYTES)[:, 48:] = 0
            return bytes(out)
    lines = data.splitlines(keepends=True)
    for i, line in enumerate(lines):
        word = line.strip().split(maxsplit=1)
        if word and word[0].lower() in (b"solid", b"endsolid"):
            lines[i] = word[0] + (b"\r\n" if line.endswith(b"\r\n") else b"\n")
    return b"".join(lines)


def _strip_ply(data: bytes) -> bytes:
    end = data.find(b"end_header")
    if end < 0:
        raise ScanFileError("the PLY file has no end_header line; export the scan again")
    stop = data.index(b"\n", end) + 1 if b"\n" in data[end:] else len(data)
    header = data[:stop].splitlines(keepends=True)
    kept = [ln for ln in header if not ln.lstrip().startswith((b"comment", b"obj_info"))]
    return b"".join(kept) + data[stop:]


def _strip_pcd(data: bytes) -> bytes:
    out, offset = [], 0
    for line in data.splitlines(keepends=True):
        offset += len(line)
        if not line.lstrip().startswith(b"#"):
            out.append(line)
        if line.upper().startswith(b"DATA"):
            break
    return b"".join(out) + data[offset:]


_OBJ_NAMES = (b"o", b"g", b"mtllib", b"usemtl")


def _strip_text(data: bytes, *, obj: bool) -> bytes:
    out = []
    for line in data.splitlines(keepends=True):
        ending = b"\r\n" if line.endswith(b"\r\n") else b"\n" if line.endswith(b"\n") else b""
        body = line.split(b"#", 1)[0].rstrip()
        if not body:
            continue
        if obj and body.split(maxsplit=1)[0] in _OBJ_NAMES:
            continue
        out.append(body + (ending or b"\n"))
    return b"".join(out)


def _strip_glb(data: bytes) -> bytes:
    try:
        magic, version, _ = struct.unpack_from("<4sII", data, 0)
        length, kind = struct.unpack_from("<I4s", data, 12)
        if magic != b"glTF" or kind != b"JSON":
            raise ValueError("not a GLB")
        doc = json.loads(data[20:20 + length])
    except (struct.error, ValueError, UnicodeDecodeError) as exc:
        raise ScanFileError("the GLB file is damaged or truncated and cannot be read; "
                            "export the scan again") from exc
    doc = _without_names(doc)
    doc["asset"] = {"version": str(doc.get("asset", {}).get("version", "2.0"))}
    text = json.dumps(doc, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 4)
    rest = data[20 + length:]
    total = 12 + 8 + len(text) + len(rest)
    return struct.pack("<4sII", b"glTF", version, total) + \
        struct.pack("<I4s", len(text), b"JSON") + text + rest


def _without_names(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _without_names(v) for k, v in node.items()
                if k not in ("name", "extras", "copyright", "generator")}
    if isinstance(node, list):
        return [_without_names(v) for v in node]
    return node
