"""The review model: the device over its limb as one glTF 2.0 binary (GLB).

This module owns the 3D scene the orthotist's review page shows: the device,
coloured vertex by vertex by its clearance from the limb, and the limb in
plain light grey, written as GLB in metres with Y up as glTF requires.  It
also owns the colour scale (the stops the page draws as its colour bar).
Inputs are meshes in mm in the device frame (z up, x toward the toes).  The
GLB is written here byte by byte, so the same meshes always give the same
bytes.  It must not read or write files.
"""

from __future__ import annotations

import json
import struct

import numpy as np
import trimesh

from .shell import LimbDistance

__all__ = ["CLEARANCE_SPAN_MM", "clearance_stops", "clearance_colours", "scale_colours",
           "review_glb"]

#: Above the prescribed clearance by this much (mm) the device is all blue.
CLEARANCE_SPAN_MM = 4.0

# The diverging scale's colours (sRGB): touching, tight, as prescribed, loose.
_RED, _YELLOW, _GREEN, _BLUE = "#d7301f", "#fdd835", "#1a9850", "#2166ac"
# With no clearance prescribed, green still needs room above red (mm).
_MIN_GREEN_MM = 1.0

# The limb: light grey (sRGB #d0d0d0 as linear) and see-through.
_LIMB_RGBA = [0.63, 0.63, 0.63, 0.4]

# z up (device frame, mm) to y up (glTF, m): (x, y, z) -> (x, z, -y), a proper rotation.
_Z_UP_TO_Y_UP = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])
_MM_TO_M = 0.001

_FLOAT, _UINT32 = 5126, 5125
_ARRAY_BUFFER, _ELEMENT_ARRAY_BUFFER = 34962, 34963
_TRIANGLES = 4


def clearance_stops(clearance_mm: float) -> list[tuple[float, str]]:
    """The colour bar's stops (mm, ``#rrggbb``), increasing in mm.

    Red at 0 mm (touching; below it the skin is inside the wall), yellow half
    way to the prescribed clearance, green at it, blue at 4 mm beyond it.

    >>> clearance_stops(2.0)
    [(0.0, '#d7301f'), (1.0, '#fdd835'), (2.0, '#1a9850'), (6.0, '#2166ac')]
    """
    green = max(float(clearance_mm), _MIN_GREEN_MM)
    return [(0.0, _RED), (green / 2, _YELLOW), (green, _GREEN),
            (float(clearance_mm) + CLEARANCE_SPAN_MM, _BLUE)]


def _hex_to_rgb(colour: str) -> np.ndarray:
    return np.array([int(colour[i:i + 2], 16) for i in (1, 3, 5)], dtype=np.float64) / 255.0


def _srgb_to_linear(c: np.ndarray) -> np.ndarray:
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def clearance_colours(distance_mm: np.ndarray, clearance_mm: float) -> np.ndarray:
    """sRGB colours (n, 3) in [0, 1] for signed distances (mm), clamped at both ends.

    >>> clearance_colours(np.array([-1.0, 6.0]), 2.0).round(3).tolist()
    [[0.843, 0.188, 0.122], [0.129, 0.4, 0.675]]
    """
    return scale_colours(distance_mm, clearance_stops(clearance_mm))


def scale_colours(values: np.ndarray, stops: list[tuple[float, str]]) -> np.ndarray:
    """sRGB colours (n, 3) in [0, 1] for values on a scale of (value, ``#rrggbb``) stops.

    >>> scale_colours(np.array([0.5]), [(0.0, "#000000"), (1.0, "#ffffff")]).tolist()
    [[0.5, 0.5, 0.5]]
    """
    at = np.array([mm for mm, _ in stops])
    rgb = np.array([_hex_to_rgb(c) for _, c in stops])
    d = np.asarray(values, dtype=np.float64)
    return np.stack([np.interp(d, at, rgb[:, k]) for k in range(3)], axis=1)


class _GlbWriter:
    """Accessors in one binary buffer, and the JSON that describes them."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.offset = 0
        self.views: list[dict] = []
        self.accessors: list[dict] = []

    def add(self, data: np.ndarray, *, kind: str, component: int, target: int,
            bounds: bool = False) -> int:
        raw = np.ascontiguousarray(data).tobytes()
        self.views.append({"buffer": 0, "byteOffset": self.offset, "byteLength": len(raw),
                           "target": target})
        pad = (-len(raw)) % 4
        self.chunks.append(raw + b"\x00" * pad)
        self.offset += len(raw) + pad
        accessor = {"bufferView": len(self.views) - 1, "componentType": component,
                    "count": int(len(data) if kind != "SCALAR" else data.size), "type": kind}
        if bounds:
            accessor["min"] = [float(v) for v in data.min(axis=0)]
            accessor["max"] = [float(v) for v in data.max(axis=0)]
        self.accessors.append(accessor)
        return len(self.accessors) - 1

    def mesh(self, mesh: trimesh.Trimesh, colours: np.ndarray | None) -> dict:
        """A primitive's attributes and indices for ``mesh`` (mm, z up) in metres, y up."""
        vertices = (np.asarray(mesh.vertices, dtype=np.float64) @ _Z_UP_TO_Y_UP.T) * _MM_TO_M
        normals = np.asarray(mesh.vertex_normals) @ _Z_UP_TO_Y_UP.T
        attributes = {
            "POSITION": self.add(vertices.astype(np.float32), kind="VEC3", component=_FLOAT,
                                 target=_ARRAY_BUFFER, bounds=True),
            "NORMAL": self.add(normals.astype(np.float32), kind="VEC3", component=_FLOAT,
                               target=_ARRAY_BUFFER)}
        if colours is not None:
            attributes["COLOR_0"] = self.add(colours.astype(np.float32), kind="VEC3",
                                             component=_FLOAT, target=_ARRAY_BUFFER)
        indices = self.add(np.asarray(mesh.faces, dtype=np.uint32).reshape(-1), kind="SCALAR",
                           component=_UINT32, target=_ELEMENT_ARRAY_BUFFER)
        return {"attributes": attributes, "indices": indices, "mode": _TRIANGLES}

    def glb(self, document: dict) -> bytes:
        binary = b"".join(self.chunks)
        document = {**document, "buffers": [{"byteLength": len(binary)}],
                    "bufferViews": self.views, "accessors": self.accessors}
        text = json.dumps(document, separators=(",", ":"), allow_nan=False).encode("utf-8")
        text += b" " * ((-len(text)) % 4)
        total = 12 + 8 + len(text) + 8 + len(binary)
        return b"".join([struct.pack("<4sII", b"glTF", 2, total),
                         struct.pack("<I4s", len(text), b"JSON"), text,
                         struct.pack("<I4s", len(binary), b"BIN\x00"), binary])


def review_glb(device: trimesh.Trimesh, limb: trimesh.Trimesh, *,
               clearance_mm: float) -> tuple[bytes, dict]:
    """The device over the limb as GLB bytes, and the colour bar the page draws.

    Parameters
    ----------
    device, limb : meshes in mm in the device frame (z up); the limb closed
    clearance_mm : the prescribed gap between skin and the device's inner face

    Returns
    -------
    GLB bytes (metres, y up) with two nodes and meshes, ``"device"`` with
    per-vertex colours (COLOR_0, linear) by its signed distance from the limb
    and ``"limb"`` light grey and half see-through; and
    ``{"clearance_colour_mm": [lo, hi], "colours": [[mm, "#rrggbb"], ...]}``.
    """
    for name, mesh in (("device", device), ("limb", limb)):
        if len(mesh.faces) == 0:
            raise ValueError(f"the {name} mesh has no triangles")
    distance = LimbDistance(limb)(np.asarray(device.vertices, dtype=np.float64))
    colours = _srgb_to_linear(clearance_colours(distance, clearance_mm))
    writer = _GlbWriter()
    device_primitive = {**writer.mesh(device, colours), "material": 0}
    limb_primitive = {**writer.mesh(limb, None), "material": 1}
    document = {
        "asset": {"version": "2.0", "generator": "orthofit.scene"},
        "scene": 0,
        "scenes": [{"name": "review", "nodes": [0, 1]}],
        "nodes": [{"name": "device", "mesh": 0}, {"name": "limb", "mesh": 1}],
        "meshes": [{"name": "device", "primitives": [device_primitive]},
                   {"name": "limb", "primitives": [limb_primitive]}],
        "materials": [
            {"name": "device", "doubleSided": True,
             "pbrMetallicRoughness": {"baseColorFactor": [1.0, 1.0, 1.0, 1.0],
                                      "metallicFactor": 0.0, "roughnessFactor": 0.6}},
            {"name": "limb", "alphaMode": "BLEND", "doubleSided": False,
             "pbrMetallicRoughness": {"baseColorFactor": _LIMB_RGBA,
                                      "metallicFactor": 0.0, "roughnessFactor": 0.9}}],
    }
    stops = clearance_stops(clearance_mm)
    meta = {"clearance_colour_mm": [stops[0][0], stops[-1][0]],
            "colours": [[mm, colour] for mm, colour in stops]}
    return writer.glb(document), meta
