"""Measures of a device against a zoo case's true skin, from plain data.

This module owns mapping a case's truth into orthofit's device frame (given the
4x4 ``scan_to_device`` orthofit reports: mm, +z up from the floor or plantar
plane, origin at the heel) and measuring a device mesh against the true skin.
It takes numpy arrays and meshes only and never imports orthofit.

Inside / outside is decided by Open3D's ``RaycastingScene.compute_signed_distance``
with ``nsamples=3``: the sign comes from the parity of three ray casts per query,
taken by majority (robust on a closed skin, unlike a single ray); the distance is
to the nearest point of the skin. Negative means inside the skin.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import open3d as o3d
import trimesh

__all__ = ["fit_against_truth", "signed_distance", "skin_in_device", "truth_in_device"]

# Device surface samples for the clearance measure (seeded: the same device gives the same
# numbers).
SAMPLES = 60_000
SAMPLE_SEED = 0
# A device sample faces the skin when its outward normal and the skin's outward normal at
# the nearest skin point are more than this far from parallel (cos < -0.5: > 120 deg).
FACING_COS = -0.5
# Truth keys holding one point, and those holding a direction, in the scan's frame.
_POINT_KEYS = ("ankle_joint_center", "knee_joint_center", "knee_joint_center_from_source",
               "knee_joint_line_point", "fibular_head", "heel", "toe_tip", "mth1", "mth5",
               "floor_point")
_DIRECTION_KEYS = ("knee_joint_line_normal", "foot_axis", "floor_normal")
_PLANE_KEYS = ("plantar_plane", "cut_plane")


def _apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    pts = np.asarray(points, dtype=np.float64)
    return pts @ matrix[:3, :3].T + matrix[:3, 3]


def _turn(matrix: np.ndarray, vector) -> list[float]:
    out = matrix[:3, :3] @ np.asarray(vector, dtype=np.float64)
    return (out / np.linalg.norm(out)).tolist()


def truth_in_device(truth: dict[str, Any], scan_to_device: np.ndarray) -> dict[str, Any]:
    """The truth's landmarks in the device frame (mm).

    Points (``heel``, ``ankle_joint_center`` ...) get ``scan_to_device`` applied;
    directions (``foot_axis``, ``floor_normal``, ``knee_joint_line_normal``) and plane
    normals are turned by its linear part and re-normalised; planes keep a point and a
    normal. ``knee_joint_line_z_mm`` becomes the device z of the knee joint line point.
    A missing (None) value stays None. Scalars (``foot_length_mm``, ``ankle_angle_deg``)
    are copied.

    >>> t = {"heel": [1.0, 2.0, 3.0], "mth1": None, "foot_length_mm": 200.0}
    >>> d = truth_in_device(t, np.diag([10.0, 10.0, 10.0, 1.0]))
    >>> d["heel"], d["mth1"], d["foot_length_mm"]
    ([10.0, 20.0, 30.0], None, 200.0)
    """
    matrix = np.asarray(scan_to_device, dtype=np.float64)
    if matrix.shape != (4, 4):
        raise ValueError(f"scan_to_device must be 4x4, got shape {matrix.shape}")
    out: dict[str, Any] = {}
    for key in _POINT_KEYS:
        if key in truth:
            value = truth[key]
            out[key] = None if value is None else _apply(matrix, value).tolist()
    for key in _DIRECTION_KEYS:
        if key in truth:
            value = truth[key]
            out[key] = None if value is None else _turn(matrix, value)
    for key in _PLANE_KEYS:
        plane = truth.get(key)
        if plane is not None:
            out[key] = {"point": _apply(matrix, plane["point"]).tolist(),
                        "normal": _turn(matrix, plane["normal"])}
    if out.get("knee_joint_line_point") is not None:
        out["knee_joint_line_z_mm"] = out["knee_joint_line_point"][2]
    for key in ("foot_length_mm", "ankle_angle_deg", "side", "name", "fibular_head_in_view",
                "knee_in_view"):
        if key in truth:
            out[key] = truth[key]
    return out


def skin_in_device(name: str, scan_to_device: np.ndarray) -> trimesh.Trimesh:
    """Case ``name``'s closed true skin moved into the device frame (``true_to_scan``,
    then ``scan_to_device``)."""
    from .generate import true_skin, truth

    record = truth(name)
    matrix = np.asarray(scan_to_device, dtype=np.float64) @ np.asarray(record["true_to_scan"])
    skin = true_skin(name)
    moved = skin.copy()
    moved.apply_transform(matrix)
    return moved


def turned_at_ankle(skin: trimesh.Trimesh, *, axis_point, axis_direction, degrees: float,
                    blend_mm: float) -> trimesh.Trimesh:
    """``skin`` with its shank turned as a design's ankle correction reports it.

    The correction the orthotist prescribes holds the patient's shank at
    another angle; the true skin is held the same way: each vertex turns
    about the line through ``axis_point`` along ``axis_direction`` (right-hand
    rule) by ``degrees`` times a weight easing in (a cubic with level ends)
    from 0 at ``blend_mm`` below the axis point's height to 1 at ``blend_mm``
    above it.  This is the turn the report's ``ankle_angle`` block describes
    (``axis_point_mm``, ``axis_direction``, ``turn_deg``, ``blend_mm``), taken
    from its numbers, not from the code that applied it.

    >>> box = trimesh.creation.box((10.0, 10.0, 10.0))
    >>> box = box.apply_translation([0.0, 0.0, 100.0])
    >>> up = turned_at_ankle(box, axis_point=[0, 0, 0], axis_direction=[0, 1, 0],
    ...                      degrees=90.0, blend_mm=30.0)
    >>> np.round(up.centroid, 6).tolist()   # turned whole: above the blend
    [100.0, 0.0, 0.0]
    """
    point = np.asarray(axis_point, dtype=np.float64)
    axis = np.asarray(axis_direction, dtype=np.float64)
    axis = axis / np.linalg.norm(axis)
    v = np.asarray(skin.vertices, dtype=np.float64)
    t = np.clip((v[:, 2] - point[2] + blend_mm) / (2.0 * blend_mm), 0.0, 1.0)
    angle = np.radians(degrees) * t * t * (3.0 - 2.0 * t)
    rel = v - point
    cos, sin = np.cos(angle)[:, None], np.sin(angle)[:, None]
    along = (rel @ axis)[:, None] * axis
    turned = point + rel * cos + np.cross(axis, rel) * sin + along * (1.0 - cos)
    return trimesh.Trimesh(turned, np.asarray(skin.faces), process=False)


def _scene(mesh: trimesh.Trimesh) -> o3d.t.geometry.RaycastingScene:
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(np.asarray(mesh.vertices, dtype=np.float32)),
                        o3d.core.Tensor(np.asarray(mesh.faces, dtype=np.uint32)))
    return scene


def signed_distance(skin: trimesh.Trimesh, points: np.ndarray) -> np.ndarray:
    """Signed distance (mm, negative inside) of (n, 3) points to the closed ``skin``."""
    scene = _scene(skin)
    query = o3d.core.Tensor(np.asarray(points, dtype=np.float32))
    return scene.compute_signed_distance(query, nsamples=3).numpy().astype(np.float64)


def _euler(mesh: trimesh.Trimesh) -> int:
    merged = mesh.copy()
    merged.merge_vertices()
    return int(len(merged.vertices) - len(merged.edges_unique) + len(merged.faces))


def fit_against_truth(device: trimesh.Trimesh, skin_device: trimesh.Trimesh, *,
                      clearance_mm: float, thickness_mm: float) -> dict[str, Any]:
    """How a device sits on the true skin (both in the device frame, mm).

    - ``inside_share``: share of the device's vertices inside the skin (signed
      distance < 0, see the module docstring for the sign);
    - ``max_penetration_mm``: depth of the deepest device vertex inside the skin, 0 if none;
      ``deepest_at_mm``: where that vertex is (None if none);
    - ``clearance_median_mm``, ``clearance_p5_mm``: median and 5th percentile of the
      signed distance to the skin of the device's *contact region*: of ``SAMPLES``
      seeded, area-uniform samples of the device surface, those (1) whose face normal
      faces the skin (cosine with the skin's normal at the nearest skin point below
      -0.5: the inner face), (2) closer to the skin than ``clearance_mm +
      thickness_mm / 2`` (negative, i.e. inside, included), and (3) farther than
      ``2 * thickness_mm`` from every *trim edge*: a mesh edge between a face that
      faces the skin and one that does not (judged at the face centre the same way),
      where the inner face turns into the rim and the outer face.
      None when the region is empty;
    - ``contact_samples``: how many samples made the region;
    - ``watertight``, ``bodies`` (connected parts), ``euler`` (V - E + F after merging
      equal vertices) and ``genus`` = (2 * bodies - euler) / 2, meaningful for a
      watertight device.
    """
    if clearance_mm < 0 or thickness_mm <= 0:
        raise ValueError(f"clearance must be >= 0 and thickness > 0 mm, got {clearance_mm}, "
                         f"{thickness_mm}")
    if len(device.faces) == 0:
        raise ValueError("the device mesh has no faces")
    if not skin_device.is_watertight:
        raise ValueError("the true skin must be closed (watertight) for inside tests")
    scene = _scene(skin_device)
    sd_vertices = scene.compute_signed_distance(
        o3d.core.Tensor(np.asarray(device.vertices, dtype=np.float32)), nsamples=3).numpy()
    inside = sd_vertices < 0
    merged = device.copy()
    merged.merge_vertices()
    samples, face_index = trimesh.sample.sample_surface(merged, SAMPLES, seed=SAMPLE_SEED)
    normals = merged.face_normals[face_index]
    query = o3d.core.Tensor(samples.astype(np.float32))
    sd = scene.compute_signed_distance(query, nsamples=3).numpy().astype(np.float64)
    skin_normals = scene.compute_closest_points(query)["primitive_normals"].numpy()
    facing = np.einsum("ij,ij->i", normals, skin_normals.astype(np.float64)) < FACING_COS
    contact = facing & (sd < clearance_mm + 0.5 * thickness_mm)
    # trim edges: mesh edges between a face that faces the skin and one that does not
    centres = o3d.core.Tensor(merged.triangles_center.astype(np.float32))
    face_skin_normals = scene.compute_closest_points(centres)["primitive_normals"].numpy()
    face_facing = np.einsum("ij,ij->i", merged.face_normals,
                            face_skin_normals.astype(np.float64)) < FACING_COS
    pairs = merged.face_adjacency
    change = face_facing[pairs[:, 0]] != face_facing[pairs[:, 1]]
    trim_points = merged.vertices[merged.face_adjacency_edges[change]].mean(axis=1)
    if len(trim_points) and contact.any():
        from scipy.spatial import cKDTree

        d_trim = cKDTree(trim_points).query(samples[contact])[0]
        keep = np.flatnonzero(contact)[d_trim > 2.0 * thickness_mm]
        contact = np.zeros_like(contact)
        contact[keep] = True
    values = sd[contact]
    bodies = len(device.split(only_watertight=False))
    euler = _euler(device)
    return {
        "inside_share": float(inside.mean()),
        "max_penetration_mm": float(max(0.0, -sd_vertices.min())),
        "deepest_at_mm": (np.round(device.vertices[int(np.argmin(sd_vertices))], 1).tolist()
                          if inside.any() else None),
        "clearance_median_mm": float(np.median(values)) if len(values) else None,
        "clearance_p5_mm": float(np.percentile(values, 5)) if len(values) else None,
        "contact_samples": int(len(values)),
        "watertight": bool(device.is_watertight),
        "bodies": int(bodies),
        "euler": euler,
        "genus": (2 * bodies - euler) / 2,
    }
