"""The truth record of a zoo case: landmarks, planes, angles and how each was found.

This module owns the *true limb* of a case (its closed skin and joints in the
true frame: mm, Y up, +Z anterior, +X the subject's left) and the landmark
rules that read it: heel, toe tip, first and fifth metatarsal heads, fibular
head, the plantar plane, the foot's length and the ankle angle; and mapping
all of them into a scan's frame with ``true_to_scan``. Every value comes with a
one-line method. It knows nothing about scanners or files.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import trimesh

__all__ = ["REGIONS", "Landmarks", "TrueLimb", "landmarks", "placement", "skin_regions",
           "to_scan", "unseen_shares", "vertex_areas"]

# Units: scan coordinates per mm.
UNIT_SCALE = {"mm": 1.0, "m": 0.001, "in": 1.0 / 25.4}
# Rules of the rule-based landmarks [typ]:
# the fibular head's apex is ~15-25 mm below the knee joint line, posterolateral.
FIBULAR_HEAD_BELOW_KNEE_MM = (15.0, 25.0)
FIBULAR_HEAD_POSTERIOR_DEG = 30.0
# Metatarsal heads: the skin point most medial (MTH1) / lateral (MTH5) within this
# distance along the foot's axis from the MTP joint (MakeHuman's toe-1-1 / toe-5-1
# helpers), and at most this high above the plantar plane.
MTH_WINDOW_MM = 12.0
MTH_MAX_HEIGHT_MM = 40.0
MTH1_SHARE, MTH5_SHARE = 0.72, 0.64
# The heel and toe tip are sought among the skin below this share of the ankle joint
# centre's height above the plantar plane (the foot, not the calf behind the heel).
FOOT_HEIGHT_SHARE = 1.0
# ``foot_pose`` is "plantarflexed" above this ankle angle (deg; 90 = neutral), else
# "neutral".
FOOT_PLANTARFLEXED_DEG = 100.0
# Regions of the skin a real handheld scan misses (``skin_regions``): the code of each
# skin vertex in NAME.truth.ply's ``region`` property. The first that applies wins.
REGIONS = {"skin": 0, "sole": 1, "low_side": 2, "toe_cleft": 3, "top": 4,
           "clutter_shadow": 5}
# Standing: the sole is the skin less than 1 mm over the floor, or facing down (normal
# within ~53 deg of straight down) less than 30 mm over it (the arch, the toes' pads).
SOLE_FLAT_MM, SOLE_FACING_MM, SOLE_FACING_COS = 1.0, 30.0, 0.6
# The lowest sides lost to the scanner's floor contact: up to its contact loss plus the
# ragged +-1 mm and the 2 mm band lost half the time.
LOW_SIDE_EXTRA_MM = 3.0
# The top: this far (mm) below the cut (the crop box edge leaves it ragged).
TOP_BAND_MM = 3.0
# Between the toes: skin of the front of the foot (the last TOE_SHARE of its length,
# under TOE_MAX_HEIGHT_MM) from which more than TOE_CLEFT_SHARE of TOE_RAYS rays over the
# outward hemisphere hit the limb again within TOE_REACH_MM.
TOE_SHARE, TOE_MAX_HEIGHT_MM = 0.3, 40.0
TOE_RAYS, TOE_REACH_MM, TOE_CLEFT_SHARE = 48, 25.0, 0.5


@dataclass
class TrueLimb:
    """A case's limb in the true frame.

    skin : closed, watertight, outward-wound (cap at ``cut_y``)
    cap : (n,) bool, the skin's vertices that are only on the cap
    joints : ``ankle``, ``knee`` and (MakeHuman) ``mtp1``, ``mtp2``, ``mtp5``; VH legs
        carry the hand marks (``heel``, ``toe_tip``, ``fibular_head``,
        ``knee_joint_line`` ...)
    plantar_point, plantar_normal : the foot's plantar support plane
    floor_y : the support's height (0) or None without a floor
    full_vertices : (k, 3) the whole leg's skin before the cut (for landmarks above it)
    """

    skin: trimesh.Trimesh
    cap: np.ndarray
    joints: dict[str, np.ndarray]
    plantar_point: np.ndarray
    plantar_normal: np.ndarray
    floor_y: float | None
    cut_y: float
    source: str
    full_vertices: np.ndarray
    methods: dict[str, str] = field(default_factory=dict)


@dataclass
class Landmarks:
    """Landmarks in the true frame (mm) and derived measures."""

    points: dict[str, np.ndarray | None]
    foot_axis: np.ndarray
    foot_length_mm: float
    ankle_angle_deg: float
    methods: dict[str, str]


def _foot_vertices(limb: TrueLimb) -> tuple[np.ndarray, np.ndarray]:
    """The skin vertices of the foot (below the ankle joint's height over the plantar plane)."""
    v = limb.skin.vertices[~limb.cap]
    height = (v - limb.plantar_point) @ limb.plantar_normal
    ankle_h = (limb.joints["ankle"] - limb.plantar_point) @ limb.plantar_normal
    foot = v[height < FOOT_HEIGHT_SHARE * ankle_h]
    return foot, (foot - limb.plantar_point) @ limb.plantar_normal


def _in_plane(vector: np.ndarray, normal: np.ndarray) -> np.ndarray:
    out = vector - (vector @ normal) * normal
    return out / np.linalg.norm(out)


def landmarks(limb: TrueLimb, side: str) -> Landmarks:
    """Heel, toe tip, MTH1, MTH5, fibular head, foot axis, foot length, ankle angle."""
    n = limb.plantar_normal
    joints = limb.joints
    methods = dict(limb.methods)
    foot, height = _foot_vertices(limb)
    if "toe_tip" in joints and "heel" in joints:  # hand-marked (Visible Human)
        axis = _in_plane(joints["toe_tip"] - joints["heel"], n)
        methods["foot_axis"] = ("hand-marked heel to toe tip, projected on the plantar plane")
    else:
        axis = _in_plane(joints["mtp2"] - joints["ankle"], n)
        methods["foot_axis"] = ("ankle joint centre to MakeHuman's 2nd MTP joint helper "
                                "(toe-2-1), projected on the plantar plane")
    along = foot @ axis
    heel = foot[np.argmin(along)]
    toe = foot[np.argmax(along)]
    methods["heel"] = ("skin vertex of the foot (below the ankle centre's height over the "
                       "plantar plane) farthest back along the foot axis")
    methods["toe_tip"] = "skin vertex of the foot farthest forward along the foot axis"
    length = float((toe - heel) @ axis)
    methods["foot_length_mm"] = ("(toe_tip - heel) along the foot axis, which lies in the "
                                 "foot's own plantar plane")
    lateral_x = 1.0 if side == "left" else -1.0  # +X is the subject's left
    lateral = _in_plane(np.array([lateral_x, 0.0, 0.0]), n)
    lateral = lateral - (lateral @ axis) * axis
    lateral /= np.linalg.norm(lateral)
    points: dict[str, np.ndarray | None] = {"heel": heel, "toe_tip": toe}
    if "mtp1" in joints and "mtp5" in joints:
        for key, joint, sign in (("mth1", joints["mtp1"], -1.0), ("mth5", joints["mtp5"], 1.0)):
            near = (np.abs(along - joint @ axis) < MTH_WINDOW_MM) & (height < MTH_MAX_HEIGHT_MM)
            cand = foot[near]
            points[key] = cand[np.argmax(sign * (cand @ lateral))]
            methods[key] = (f"skin vertex most {'medial' if sign < 0 else 'lateral'} within "
                            f"{MTH_WINDOW_MM:.0f} mm along the foot axis of MakeHuman's "
                            f"toe-{'1' if sign < 0 else '5'}-1 (MTP joint) helper, under "
                            f"{MTH_MAX_HEIGHT_MM:.0f} mm above the plantar plane")
    else:
        # no MTP joints (Visible Human): the metatarsal heads at their usual share of the
        # foot's length from the heel [typ: MTH1 ~72 %, MTH5 ~64 %]
        for key, share, sign in (("mth1", MTH1_SHARE, -1.0), ("mth5", MTH5_SHARE, 1.0)):
            at = heel @ axis + share * length
            near = (np.abs(along - at) < MTH_WINDOW_MM) & (height < MTH_MAX_HEIGHT_MM)
            cand = foot[near]
            points[key] = cand[np.argmax(sign * (cand @ lateral))]
            methods[key] = (f"rule: skin vertex most {'medial' if sign < 0 else 'lateral'} "
                            f"within {MTH_WINDOW_MM:.0f} mm of {100 * share:.0f} % of the foot "
                            f"length from the heel along the foot axis, under "
                            f"{MTH_MAX_HEIGHT_MM:.0f} mm above the plantar plane")
    shank = joints["knee"] - joints["ankle"]
    shank /= np.linalg.norm(shank)
    if "fibular_head" in joints:
        points["fibular_head"] = joints["fibular_head"]
    else:
        points["fibular_head"] = _fibular_head(limb.full_vertices, joints, shank, lateral_x)
        lo, hi = FIBULAR_HEAD_BELOW_KNEE_MM
        methods["fibular_head"] = (
            f"rule: skin vertex of the whole leg (before the cut) {lo:.0f}-{hi:.0f} mm below "
            f"MakeHuman's knee joint centre along the shank axis, farthest in the direction "
            f"{FIBULAR_HEAD_POSTERIOR_DEG:.0f} deg posterior of lateral")
    sagittal = np.array([1.0, 0.0, 0.0])
    s_p = shank - (shank @ sagittal) * sagittal
    f_p = axis - (axis @ sagittal) * sagittal
    cosang = (s_p @ f_p) / np.linalg.norm(s_p) / np.linalg.norm(f_p)
    angle = float(np.degrees(np.arccos(np.clip(cosang, -1.0, 1.0))))
    methods["ankle_angle_deg"] = ("angle between the shank axis (ankle joint centre to knee "
                                  "joint centre, pointing up) and the foot axis (heel to toe, "
                                  "pointing forward), both projected on the true frame's "
                                  "sagittal (y-z) plane; 90 = neutral, a plantarflexed foot "
                                  "reads more than 90")
    return Landmarks(points, axis, length, angle, methods)


def _fibular_head(vertices: np.ndarray, joints: dict[str, np.ndarray], shank: np.ndarray,
                  lateral_x: float) -> np.ndarray:
    lo, hi = FIBULAR_HEAD_BELOW_KNEE_MM
    below = -(vertices - joints["knee"]) @ shank
    band = vertices[(below >= lo) & (below <= hi)]
    a = np.radians(FIBULAR_HEAD_POSTERIOR_DEG)
    direction = np.array([lateral_x * np.cos(a), 0.0, -np.sin(a)])
    return band[np.argmax(band @ direction)]


def vertex_areas(mesh: trimesh.Trimesh) -> np.ndarray:
    """A third of the area of each vertex's faces (mm^2): the share of skin it stands for."""
    area = np.zeros(len(mesh.vertices))
    np.add.at(area, np.asarray(mesh.faces).ravel(), np.repeat(mesh.area_faces / 3.0, 3))
    return area


def _hemisphere(count: int) -> np.ndarray:
    """``count`` unit directions spread over the +z hemisphere (a Fibonacci spiral)."""
    k = np.arange(count) + 0.5
    z = 1.0 - k / count
    phi = k * np.pi * (3.0 - np.sqrt(5.0))
    r = np.sqrt(1.0 - z * z)
    return np.column_stack([r * np.cos(phi), r * np.sin(phi), z])


def _toe_clefts(limb: TrueLimb, marks: Landmarks, height: np.ndarray) -> np.ndarray:
    import open3d as o3d

    skin = limb.skin
    v, n = skin.vertices, skin.vertex_normals
    along = (v - marks.points["heel"]) @ marks.foot_axis
    front = (~limb.cap & (along > (1.0 - TOE_SHARE) * marks.foot_length_mm)
             & (height < TOE_MAX_HEIGHT_MM))
    out = np.zeros(len(v), dtype=bool)
    idx = np.flatnonzero(front)
    if len(idx) == 0:
        return out
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(np.asarray(v, np.float32)),
                        o3d.core.Tensor(np.asarray(skin.faces, np.uint32)))
    local = _hemisphere(TOE_RAYS)
    # a frame per vertex: its normal as z
    z = n[idx]
    helper = np.where(np.abs(z[:, :1]) < 0.9, [[1.0, 0, 0]], [[0, 1.0, 0]])
    x = np.cross(helper, z)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    y = np.cross(z, x)
    dirs = (local[None, :, 0, None] * x[:, None] + local[None, :, 1, None] * y[:, None]
            + local[None, :, 2, None] * z[:, None])
    origins = np.broadcast_to((v[idx] + 0.3 * z)[:, None, :], dirs.shape)
    rays = np.concatenate([origins, dirs], axis=2).reshape(-1, 6).astype(np.float32)
    t = scene.cast_rays(o3d.core.Tensor(rays))["t_hit"].numpy().reshape(len(idx), TOE_RAYS)
    out[idx] = (t < TOE_REACH_MM).mean(axis=1) > TOE_CLEFT_SHARE
    return out


def skin_regions(limb: TrueLimb, marks: Landmarks, *, standing: bool, contact_mm: float,
                 shadow: np.ndarray | None = None) -> np.ndarray:
    """The ``REGIONS`` code of every skin vertex: what part of the skin a real scan misses.

    ``shadow`` (n,) bool flags skin behind clutter (the generator knows its clutter).
    The cap's own vertex is ``top``.
    """
    v, n = limb.skin.vertices, limb.skin.vertex_normals
    height = (v - limb.plantar_point) @ limb.plantar_normal
    code = np.zeros(len(v), dtype=np.uint8)
    if shadow is not None:
        code[shadow] = REGIONS["clutter_shadow"]
    code[_toe_clefts(limb, marks, height)] = REGIONS["toe_cleft"]
    code[v[:, 1] > limb.cut_y - TOP_BAND_MM] = REGIONS["top"]
    code[limb.cap] = REGIONS["top"]
    if standing:
        code[height < contact_mm + LOW_SIDE_EXTRA_MM] = REGIONS["low_side"]
        down = -(n @ limb.plantar_normal)
        sole = (height < SOLE_FLAT_MM) | ((height < SOLE_FACING_MM) & (down > SOLE_FACING_COS))
        code[sole] = REGIONS["sole"]
    return code


def unseen_shares(skin: trimesh.Trimesh, cap: np.ndarray, seen: np.ndarray,
                  region: np.ndarray) -> dict:
    """Area shares of the open skin (not the cap) that no return saw, in all and by region
    (each region's unseen area over the whole open skin's area), with ``rest``: the
    unseen share of the skin outside every excused region, over that skin's own area."""
    area = vertex_areas(skin) * ~cap
    total = area.sum()
    miss = ~seen & ~cap
    out = {"all": float(area[miss].sum() / total)}
    for name, code in REGIONS.items():
        out[name] = float(area[miss & (region == code)].sum() / total)
    plain = region == REGIONS["skin"]
    out["rest"] = float(area[miss & plain].sum() / max(area[plain].sum(), 1e-9))
    return out


def placement(up: str, units: str, rng: np.random.Generator) -> np.ndarray:
    """A random rigid motion (rotation about the vertical, shift +-300 mm), then units.

    For a Z-up scan the true frame's +Y goes to +Z by a +90 deg turn about x
    (y -> z, z -> -y), a rotation, never a reflection. Returns (4, 4) true mm ->
    scan coordinates (column vectors).
    """
    if up not in ("y", "z") or units not in UNIT_SCALE:
        raise ValueError(f"up must be y or z and units one of {sorted(UNIT_SCALE)}")
    angle = rng.uniform(0.0, 2 * np.pi)
    c, s = np.cos(angle), np.sin(angle)
    rot = np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
    if up == "z":
        rot = np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0]], dtype=np.float64) @ rot
    shift = rng.uniform(-300.0, 300.0, size=3)
    motion = np.eye(4)
    motion[:3, :3] = rot
    motion[:3, 3] = shift
    scale = np.diag([UNIT_SCALE[units]] * 3 + [1.0])
    return scale @ motion


def to_scan(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a (4, 4) transform to (n, 3) or (3,) points."""
    pts = np.asarray(points, dtype=np.float64)
    return pts @ matrix[:3, :3].T + matrix[:3, 3]


def _dir(matrix: np.ndarray, vector: np.ndarray) -> np.ndarray:
    """A unit direction of the true frame in the scan's frame (rotation only)."""
    out = matrix[:3, :3] @ np.asarray(vector, dtype=np.float64)
    return out / np.linalg.norm(out)


def record(case, limb: TrueLimb, marks: Landmarks, matrix: np.ndarray, *, seen: np.ndarray,
           region: np.ndarray, counts: dict, holes: list, settings: dict, version: str,
           bodies: dict, clutter: list) -> dict:
    """The truth JSON of a case: every coordinate in the scan's frame and units."""
    def pt(p):
        return None if p is None else to_scan(matrix, p)

    scale = UNIT_SCALE[case.units]
    j = limb.joints
    n = limb.plantar_normal
    shank = j["knee"] - j["ankle"]
    shank /= np.linalg.norm(shank)
    foot_only = case.extent == "foot_only"
    knee_line = j.get("knee_joint_line", j["knee"])
    fib = marks.points["fibular_head"]
    methods = dict(marks.methods)
    methods["knee_joint_line"] = (
        "the knee joint centre (MakeHuman's knee helper sits on the tibiofemoral joint line) "
        "with the shank axis as the line's plane normal" if "knee_joint_line" not in j
        else "hand-marked on the VH skin (vh_landmarks.json), shank axis as normal")
    methods["knee_joint_line_z_mm"] = ("height of knee_joint_line_point over the plantar plane "
                                       "along its normal, mm")
    methods["fibular_head_in_view"] = "the fibular head lies at least 5 mm below the cut"
    methods["foot_pose"] = (f"plantarflexed when ankle_angle_deg > {FOOT_PLANTARFLEXED_DEG:g}, "
                            "else neutral; plantarflex_applied_deg is the zoo's own turn of "
                            "the source foot (hanging cases)")
    methods["unseen"] = ("a skin vertex is seen when a limb return (before thinning) lies "
                         "within 4 mm of it; sides_below_mm is the scanner's contact loss; "
                         "skin_unseen_share counts vertices (the toes' are dense), "
                         "area_shares weighs each vertex by a third of its faces' area and "
                         "splits the unseen skin by NAME.truth.ply's region codes "
                         f"({', '.join(f'{v} {k}' for k, v in REGIONS.items())}): sole "
                         f"(standing: under {SOLE_FLAT_MM:g} mm over the floor, or facing "
                         f"down under {SOLE_FACING_MM:g} mm), low_side (standing: under the "
                         f"contact loss + {LOW_SIDE_EXTRA_MM:g} mm), toe_cleft (front "
                         f"{100 * TOE_SHARE:.0f} % of the foot where over half of {TOE_RAYS} "
                         f"hemisphere rays hit the limb within {TOE_REACH_MM:g} mm), top "
                         f"(within {TOP_BAND_MM:g} mm of the cut), clutter_shadow (see "
                         "generator.clutter); rest = unseen share of the remaining skin")
    methods["true_to_scan"] = ("random rotation about the true frame's vertical, a +90 deg "
                               "turn about x for Z-up, a random shift, then the unit scale")
    open_skin = ~limb.cap
    verts = limb.skin.vertices
    height = (verts - limb.plantar_point) @ n
    sole = open_skin & (height < 1.0)
    unseen = {
        "sole": bool(case.pose == "standing" or (sole.any() and seen[sole].mean() < 0.5)),
        "sole_seen_share": float(seen[sole].mean()) if sole.any() else None,
        "sides_below_mm": float(case.contact_mm) if case.pose == "standing" else 0.0,
        "sides_ragged_mm": 1.0 if case.pose == "standing" else 0.0,
        "skin_unseen_share": float(1.0 - seen[open_skin].mean()),
        "skin_unseen_share_below_10mm": (float(1.0 - seen[open_skin & (height < 10)].mean())
                                         if (open_skin & (height < 10)).any() else None),
        "area_shares": unseen_shares(limb.skin, limb.cap, seen, region),
        "top": "open: nothing above the cut (the crop box)",
        "holes_cut": holes,
    }
    floor = limb.floor_y is not None
    rec = {
        "name": case.name,
        "source": limb.source,
        "side": case.side,
        "units": case.units,
        "up": case.up,
        "leg_extent": case.extent,
        "pose": case.pose,
        "has_floor": floor,
        "support": case.support,
        "weight_bearing": case.weight_bearing,
        "capture": case.capture,
        "dense": case.dense,
        "format": case.fmt,
        "ankle_joint_center": pt(j["ankle"]),
        "knee_joint_center": None if foot_only else pt(j["knee"]),
        "knee_joint_center_from_source": pt(j["knee"]),
        "knee_in_view": bool(limb.cut_y > j["knee"][1] - 1e-6),
        "knee_joint_line_point": pt(knee_line),
        "knee_joint_line_normal": _dir(matrix, shank),
        "knee_joint_line_z_mm": float((knee_line - limb.plantar_point) @ n),
        "fibular_head": pt(fib),
        "fibular_head_in_view": bool(fib[1] < limb.cut_y - 5.0),
        "heel": pt(marks.points["heel"]),
        "toe_tip": pt(marks.points["toe_tip"]),
        "mth1": pt(marks.points.get("mth1")),
        "mth5": pt(marks.points.get("mth5")),
        "foot_axis": _dir(matrix, marks.foot_axis),
        "foot_length_mm": marks.foot_length_mm,
        "ankle_angle_deg": marks.ankle_angle_deg,
        "foot_pose": ("plantarflexed" if marks.ankle_angle_deg > FOOT_PLANTARFLEXED_DEG
                      else "neutral"),
        "plantarflex_applied_deg": float(case.plantarflex_deg if case.pose == "hanging"
                                         else 0.0),
        "ankle_height_mm": float((j["ankle"] - limb.plantar_point) @ n),
        "plantar_plane": {"point": pt(limb.plantar_point), "normal": _dir(matrix, n)},
        "floor_point": pt(np.array([j["ankle"][0], 0.0, j["ankle"][2]])) if floor else None,
        "floor_normal": _dir(matrix, [0.0, 1.0, 0.0]) if floor else None,
        "cut_plane": {"point": pt(np.array([j["ankle"][0], limb.cut_y, j["ankle"][2]])),
                      "normal": _dir(matrix, [0.0, 1.0, 0.0])},
        "unseen": unseen,
        "counts": counts,
        "true_to_scan": matrix,
        "unit_scale": scale,
        "true_frame": ("mm, Y up, +Z anterior, +X the subject's left; standing: the floor at "
                       "y = 0; the frame of NAME.truth.ply"),
        "methods": methods,
        "generator": {"version": version, "seed": case.seed, "case": case.params(),
                      "scanner": settings, "body": bodies.get(case.body),
                      "clutter": clutter},
    }
    if limb.source == "visible_human":
        from .source import VH_ATTRIBUTION
        rec["attribution"] = VH_ATTRIBUTION
        rec["provenance"] = (
            f"{VH_ATTRIBUTION}. Changed: the {case.side} leg cropped (below "
            f"{100 * 0.42:.0f} % of stature, split at x = 0), scaled from m to mm, cut at "
            f"{limb.cut_y:.1f} mm and capped, placed by a rigid motion, scanned by the zoo's "
            "virtual scanner.")
    else:
        rec["provenance"] = ("MakeHuman base mesh and morph targets (CC0 1.0); morphed, "
                             "one leg cropped, Loop-subdivided, posed, cut and capped, placed, "
                             "and scanned by the zoo's virtual scanner")
    return rec
