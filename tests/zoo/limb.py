"""A case's true limb: the source leg, posed, loaded and cut, with its plantar plane.

This module owns turning a ``Case`` into a ``truth.TrueLimb`` in the true frame
(mm, Y up, +Z anterior, +X the subject's left): pick the source leg, turn a
MakeHuman foot down for a hanging case or press a standing sole onto the floor
(y = 0), move the joints with the skin, find the foot's plantar support plane,
and cut and cap the skin at the case's height. It also returns the uncut leg
(what the scanner sees above the crop) and the other leg (clutter). It must not
scan or write anything.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import trimesh

from . import pose, source
from .cases import BODIES, Case
from .truth import TrueLimb

__all__ = ["LimbScene", "true_limb"]

# The blend band over which a loaded sole meets its flat contact patch (mm).
SOLE_BAND_MM = 4.0
# Plantar support plane of a foot with no floor: among the convex hull's facets whose
# outward normal is within this angle of the foot's "down" direction, the one that
# spans the longest stretch of the foot axis (it touches the heel and the forefoot).
PLANTAR_FACET_MAX_DEG = 35.0
# What the Visible Human model's own feet are (measured, see vh_landmarks.json): the
# shared data README says "marked plantarflexion", but this skin's feet stand level.
VH_OWN_FOOT = ("near neutral (ankle angle 91 deg left, 88 deg right: shank axis through "
               "the section centroids 100-300 mm above the ankle, foot axis heel to toe tip, "
               "in the sagittal plane; the sole level within 4 deg)")


@dataclass
class LimbScene:
    """The true limb and what the scanner sees of the body: the uncut leg, the other leg."""

    limb: TrueLimb
    seen_leg: trimesh.Trimesh
    other_leg: trimesh.Trimesh | None


def _cut_height(case: Case, joints: dict[str, np.ndarray]) -> float:
    knee_y, ankle_y = joints["knee"][1], joints["ankle"][1]
    if case.extent == "above_knee":
        return float(knee_y + case.cut_mm)
    if case.extent == "knee":
        return float(knee_y)
    if case.extent == "below_knee":
        return float(knee_y - case.cut_mm)
    if case.extent == "foot_only":
        return float(ankle_y + case.cut_mm)
    raise ValueError(f"unknown extent {case.extent!r}")


def true_limb(case: Case) -> LimbScene:
    """Build the case's limb; raises ``ValueError`` on a parameter it does not know."""
    methods: dict[str, str] = {}
    if case.source == "makehuman":
        body = BODIES[case.body]
        leg = source.makehuman_leg(case.side, dict(body.targets),
                                   foot_length_mm=body.foot_length_mm)
        methods["ankle_joint_center"] = ("mean of MakeHuman's joint-{l,r}-ankle helper vertices "
                                         "after morphs and scale (moved with the skin)")
        methods["knee_joint_center"] = "mean of MakeHuman's joint-{l,r}-knee helper vertices"
    elif case.source == "visible_human":
        leg = source.vh_leg(case.side)
        methods["ankle_joint_center"] = "hand-marked on the VH skin (vh_landmarks.json)"
        methods["knee_joint_center"] = "hand-marked on the VH skin (vh_landmarks.json)"
    else:
        raise ValueError(f"unknown source {case.source!r}")
    joints = {k: np.asarray(v, dtype=np.float64).copy() for k, v in leg.joints.items()}
    verts = np.asarray(leg.skin.vertices, dtype=np.float64)
    other = leg.other
    floor_y: float | None = None
    if case.pose == "hanging":
        shank = joints["knee"] - joints["ankle"]
        ankle = joints["ankle"].copy()
        if case.source == "makehuman":
            # the unloaded foot's plantar plane is the floor it stood on
            plane_point, plane_normal = np.array([ankle[0], 0.0, ankle[2]]), np.array([0, 1.0, 0])
            methods["plantar_plane"] = (
                "the floor the unposed MakeHuman foot stood on, turned with the foot by "
                f"{case.plantarflex_deg:g} deg about the ankle axis (the sole turns rigidly)")
        else:
            plane_point, plane_normal = _plantar_support(verts, joints)
            methods["plantar_plane"] = (
                "convex-hull facet of the unposed foot (below the ankle) whose outward normal "
                f"is within {PLANTAR_FACET_MAX_DEG:g} deg of the foot's down direction and that "
                "spans the longest stretch along the hand-marked heel-toe axis (it touches "
                "heel and forefoot), turned with the foot")
        verts = pose.plantarflex(verts, ankle, shank, case.plantarflex_deg)
        keys = sorted(joints)
        moved = pose.plantarflex_points(np.array([joints[k] for k in keys]), ankle, shank,
                                        case.plantarflex_deg)
        joints = dict(zip(keys, moved))
        plane_point = pose.plantarflex_points(plane_point[None], ankle, shank,
                                              case.plantarflex_deg)[0]
        turn = pose.rotation_about(np.array([1.0, 0.0, 0.0]), np.radians(case.plantarflex_deg))
        plane_normal = turn @ plane_normal
        turned = (
            f"foot turned {case.plantarflex_deg:g} deg about the mediolateral axis through the "
            f"ankle joint centre, the angle blended (smoothstep) from full "
            f"{pose.BLEND_BELOW_MM:g} mm below to none {pose.BLEND_ABOVE_MM:g} mm above the "
            "ankle along the shank axis")
        if case.source == "makehuman":
            methods["pose"] = "hanging (no floor, the foot unsupported); " + turned
        elif case.plantarflex_deg:
            methods["pose"] = ("hanging (no floor, the foot unsupported); " + turned
                               + f" from the VH donor's own foot, which is {VH_OWN_FOOT}")
        else:
            methods["pose"] = ("hanging (no floor, the foot unsupported); the VH donor's own "
                               f"foot left as it is: {VH_OWN_FOOT}, so ankle_angle_deg reads "
                               "near 90 (neutral), not plantarflexed")
    elif case.pose == "standing":
        if case.source != "makehuman":
            raise ValueError("the Visible Human feet are plantarflexed: they cannot stand")
        verts = pose.load_sole(verts, case.press_mm, SOLE_BAND_MM)
        for key in joints:
            joints[key] = pose.load_sole(joints[key][None], case.press_mm, SOLE_BAND_MM)[0]
        if other is not None:
            other = trimesh.Trimesh(pose.load_sole(other.vertices, case.press_mm, SOLE_BAND_MM),
                                    other.faces, process=False)
        floor_y = 0.0
        plane_point = np.array([joints["ankle"][0], 0.0, joints["ankle"][2]])
        plane_normal = np.array([0.0, 1.0, 0.0])
        methods["plantar_plane"] = "the floor (y = 0) the loaded sole is pressed flat on"
        methods["pose"] = (
            f"standing; the sole pressed {case.press_mm:g} mm onto the floor (points below "
            f"land on it, a C1 blend {SOLE_BAND_MM:g} mm high), the leg moved down as much")
    else:
        raise ValueError(f"unknown pose {case.pose!r}")
    seen = trimesh.Trimesh(verts, leg.skin.faces, process=False)
    cut_y = _cut_height(case, joints)
    skin, cap = source.cap_cut(seen, cut_y)
    methods["true_skin"] = (f"the leg's skin cut at y = {cut_y:.1f} mm (true frame) and capped "
                            "flat with a fan from the rim's centroid")
    limb = TrueLimb(skin=skin, cap=cap, joints=joints, plantar_point=plane_point,
                    plantar_normal=plane_normal / np.linalg.norm(plane_normal), floor_y=floor_y,
                    cut_y=cut_y, source=leg.source, full_vertices=verts, methods=methods)
    return LimbScene(limb, seen, other)


def _plantar_support(verts: np.ndarray, joints: dict[str, np.ndarray]):
    """The plane under a floorless foot that touches its heel and forefoot."""
    heel, toe, ankle = joints["heel"], joints["toe_tip"], joints["ankle"]
    axis = toe - heel
    axis /= np.linalg.norm(axis)
    shank = joints["knee"] - ankle
    down = -(shank - (shank @ axis) * axis)
    down /= np.linalg.norm(down)
    rel = verts - ankle
    foot = verts[(rel @ -down) < 10.0]
    hull = trimesh.Trimesh(foot, process=False).convex_hull
    normals = hull.face_normals
    ok = normals @ down > np.cos(np.radians(PLANTAR_FACET_MAX_DEG))
    if not ok.any():
        raise RuntimeError("no convex-hull facet under the foot: check the hand marks")
    tri = hull.vertices[hull.faces[ok]]
    span = np.ptp(tri @ axis, axis=1)
    best = int(np.argmax(span))
    normal = -normals[ok][best]
    point = tri[best].mean(axis=0)
    return point, normal
