"""Trimlines: where each device's shell exists, as a field tied to landmarks.

This module owns the shapes of the devices in the device frame (DOMAIN.md,
"Shapes in the device frame").  It turns a prescription, the landmarks and
the limb's profile into a field over points that is negative where the
device exists, close to a distance in mm so edges round evenly:

- leg part (AFOs, SMO): behind a side trimline that runs down the leg's
  mid-line (a leaf spring: a posterior strip of about a third of the
  circumference) and sweeps to pass ``anterior_offset_mm`` in front of (or
  behind) the malleoli at the ankle; below the proximal edge;
- foot part: the footplate under the whole sole up to its end (three-quarter,
  sulcus, full, toe extension), with walls rising to a share of the foot's
  height, lowering towards the metatarsal heads;
- foot orthosis: the plantar surface with a heel cup and a medial flange.

It also reports where each trimline lies.  It must not build meshes or read
files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import trimesh

from .errors import CannotServeError
from .prescription import Prescription
from .shell import smoothstep

__all__ = ["TrimParams", "Trim", "device_trim"]


@dataclass(frozen=True)
class TrimParams:
    """Shares and distances shaping the trimlines; all [typ] from DOMAIN.md."""

    # Foot walls rise to about half the foot's height at the midfoot, lowering
    # to this share at the metatarsal heads; SMO walls are higher.
    afo_wall_share: tuple[float, float] = (0.5, 0.3)
    smo_wall_share: tuple[float, float] = (0.75, 0.45)
    # The side trimline blends from the malleoli to the leg's mid-line over this height.
    ankle_blend_mm: float = 60.0
    # A leaf spring's calf strip keeps this share of the leg's depth behind the axis.
    leaf_strip_share: float = 0.5
    # A three-quarter footplate ends this far behind the metatarsal heads.
    three_quarter_gap_mm: float = 10.0
    # Foot orthosis: medial flange and lateral border heights over the arch,
    # and the height at the forefoot.
    fo_medial_flange_mm: float = 18.0
    fo_lateral_border_mm: float = 10.0
    fo_forefoot_mm: float = 6.0
    # Below the top of the scan the proximal edge needs this much scanned leg:
    # the wall's rounded edge and its flare [eng].
    top_margin_mm: float = 10.0
    # An AFO's calf section needs at least this much leg above the side
    # trimline's sweep over the ankle: a 50 mm calf strap's band [typ].
    least_calf_section_mm: float = 50.0
    # Profile bins along x and z (mm).
    bin_mm: float = 4.0


@dataclass
class Trim:
    """A device's trim field and where its trimlines lie (for the report)."""

    params: TrimParams
    rx: Prescription
    landmarks: dict[str, np.ndarray | None]
    summary: dict[str, Any] = field(default_factory=dict)
    _parts: list = field(default_factory=list)
    #: Solids added to the footplate (a toe plate beyond the toes, a forefoot
    #: wedge for the shoe's heel pitch), each a field (negative inside) with
    #: the box (lo, hi) that holds it; the shell keeps them outside the clearance.
    plates: list[tuple[Any, tuple[np.ndarray, np.ndarray]]] = field(default_factory=list)

    def __call__(self, points: np.ndarray) -> np.ndarray:
        """Field over points (n, 3) mm: negative where the device exists."""
        return np.min(np.stack([part(points) for part in self._parts]), axis=0)


def _toe_plate(rx: Prescription, lm: dict, end_x: float, trim: "Trim") -> None:
    """A toe extension: the footplate's slab carried from the toes to ``end_x``.

    Under the toes, whose underside rises towards the tip, the plate also
    fills up to the skin (the shell keeps it outside the clearance), so no
    thin wedge of air is left between the plate and the footplate's wall.
    """
    bottom, top = -(rx.clearance_mm + rx.thickness_mm), -rx.clearance_mm
    y_mid = 0.5 * (lm["mth1"][1] + lm["mth5"][1])
    half = 0.5 * abs(lm["mth1"][1] - lm["mth5"][1])
    toe = lm["toe_tip"]
    start = float(toe[0]) - _TOE_PLATE_OVERLAP_MM
    fill_end = float(toe[0]) + rx.clearance_mm + rx.thickness_mm
    fill_top = max(float(toe[2]), top)

    def plate(p: np.ndarray) -> np.ndarray:
        across = np.abs(p[:, 1] - y_mid) - half
        slab = np.maximum.reduce([np.abs(p[:, 2] - 0.5 * (bottom + top)) - 0.5 * (top - bottom),
                                  p[:, 0] - end_x, start - p[:, 0], across])
        fill = np.maximum.reduce([bottom - p[:, 2], p[:, 2] - fill_top,
                                  p[:, 0] - fill_end, start - p[:, 0], across])
        return np.minimum(slab, fill)

    trim.plates.append((plate, (np.array([start, y_mid - half, bottom]),
                                np.array([end_x, y_mid + half, fill_top]))))


def _pitch_wedge(rx: Prescription, lm: dict, end_x: float, trim: "Trim") -> None:
    """A wedge under the forefoot for a shoe whose heel seat is ``shoe_heel_pitch_mm`` up.

    In such a shoe the heel and the metatarsal heads rest on a floor that
    falls by the pitch between them, so the device tilts forward by the
    pitch angle; ahead of the metatarsal heads the shoe's forefoot floor is
    flat again.  The wedge fills the device's underside down to that floor:
    from nothing at the heads to its deepest at the footplate's end.
    """
    pitch = rx.corrections.shoe_heel_pitch_mm
    hinge_x = float(0.5 * (lm["mth1"][0] + lm["mth5"][0]))
    angle = float(np.arcsin(pitch / max(hinge_x - float(lm["heel"][0]), pitch + 1.0)))
    slope = np.tan(angle)
    underside, top = -(rx.clearance_mm + rx.thickness_mm), -rx.clearance_mm
    y_mid = 0.5 * (lm["mth1"][1] + lm["mth5"][1])
    half = 0.5 * abs(lm["mth1"][1] - lm["mth5"][1])
    deepest = underside - slope * (end_x - hinge_x)

    def wedge(p: np.ndarray) -> np.ndarray:
        floor = underside - slope * np.maximum(p[:, 0] - hinge_x, 0.0)
        return np.maximum.reduce([floor - p[:, 2], p[:, 2] - top, p[:, 0] - end_x,
                                  hinge_x - p[:, 0], np.abs(p[:, 1] - y_mid) - half])

    trim.plates.append((wedge, (np.array([hinge_x, y_mid - half, deepest]),
                                np.array([end_x, y_mid + half, top]))))
    trim.summary["shoe_heel_pitch"] = {
        "pitch_mm": pitch, "pitch_deg": round(float(np.degrees(angle)), 3),
        "hinge_x_mm": round(hinge_x, 3),
        "wedge_at_end_mm": round(float(slope * (end_x - hinge_x)), 3)}


# The toe plate starts this far behind the toe tip, under the toes, so it
# joins the footplate.
_TOE_PLATE_OVERLAP_MM = 20.0


def device_trim(rx: Prescription, landmarks: dict[str, np.ndarray | None],
                limb: trimesh.Trimesh, top_z: float,
                params: TrimParams = TrimParams(), *,
                estimated: frozenset[str] = frozenset(),
                knee_joint_z: float | None = None) -> Trim:
    """The trim field of ``rx.device`` on this limb.

    ``estimated`` names the landmarks estimated rather than scanned (the
    fibular head of a scan that stops below the knee); ``knee_joint_z`` is the
    knee joint line's height, found or estimated, which no edge may pass.

    Raises
    ------
    CannotServeError
        When the scan cannot give the device: an AFO from a foot-only scan, a
        leg too short for a calf section, a proximal edge above the scanned
        leg or the knee joint line.
    """
    lm = landmarks
    trim = Trim(params=params, rx=rx, landmarks=lm)
    verts = np.asarray(limb.vertices)
    heel, toe = lm["heel"], lm["toe_tip"]
    foot_length = float(toe[0] - heel[0])
    end_x = _footplate_end(rx, lm, params)
    trim.summary["footplate"] = rx.trimlines.footplate
    trim.summary["footplate_end_x_mm"] = round(end_x, 3)
    if end_x > float(toe[0]) + rx.clearance_mm + 1e-6:
        # A toe extension, or growth room beyond a full footplate: a toe plate.
        _toe_plate(rx, lm, end_x, trim)
    if rx.corrections.shoe_heel_pitch_mm > 0:
        _pitch_wedge(rx, lm, end_x, trim)
    if rx.device == "foot-orthosis":
        trim._parts.append(_foot_orthosis(rx, lm, end_x, foot_length, params, trim.summary))
        return trim

    malleolus_top = max(lm["medial_malleolus"][2], lm["lateral_malleolus"][2])
    if rx.device == "smo":
        proximal = malleolus_top + rx.trimlines.smo_height_above_malleolus_mm
        share = params.smo_wall_share
    else:
        proximal = _afo_proximal(rx, lm, top_z, params, estimated, knee_joint_z,
                                 malleolus_top, trim.summary)
        share = params.afo_wall_share
    if proximal > top_z - params.top_margin_mm:
        raise CannotServeError(
            f"the proximal trimline at {proximal:.0f} mm needs the scan to reach "
            f"{proximal + params.top_margin_mm:.0f} mm up the leg, and it ends at "
            f"{top_z:.0f} mm; lower the trimline or scan higher up the leg")
    trim.summary["proximal_edge_z_mm"] = round(proximal, 3)
    trim._parts.append(_leg_part(rx, lm, verts, proximal, params, trim.summary))
    dorsum = _profile(verts, axis=0, lo=heel[0], hi=toe[0], step=params.bin_mm,
                      z_cap=1.2 * lm["ankle_center"][2])
    trim._parts.append(_foot_walls(lm, dorsum, end_x, share, params))
    return trim


def _afo_proximal(rx: Prescription, lm: dict, top_z: float, params: TrimParams,
                  estimated: frozenset[str], knee_joint_z: float | None,
                  malleolus_top: float, summary: dict) -> float:
    """The proximal edge's height (mm) of an AFO or leaf spring.

    Below the fibular head by the prescription; where the head was
    estimated (the scan stops below the knee), under the lower of that and
    the scan's top less the edge's margin, with the reason reported.  Never
    at or above the knee joint line, and high enough for a calf section.
    """
    least = malleolus_top + params.ankle_blend_mm + params.least_calf_section_mm
    if rx.trimlines.proximal_height_mm is not None:
        proximal = rx.trimlines.proximal_height_mm
        summary["proximal_edge_from"] = "given"
    else:
        if lm.get("calf") is None:
            raise CannotServeError(f"a {rx.device} needs the leg, and this scan shows only "
                                   "the foot; scan up to below the knee, or prescribe a "
                                   "foot orthosis")
        head = float(lm["fibular_head"][2])
        proximal = head - rx.trimlines.proximal_below_fibular_head_mm
        summary["proximal_edge_from"] = "fibular_head"
        if "fibular_head" in estimated:
            under_top = top_z - params.top_margin_mm
            if under_top < proximal:
                proximal = under_top
                summary["proximal_edge_from"] = "scan_top"
            else:
                summary["proximal_edge_from"] = "fibular_head_estimated"
            if proximal < least:
                raise CannotServeError(
                    f"the scan ends at {top_z:.0f} mm, too low for a {rx.device}: its calf "
                    f"section needs the leg up to at least {least + params.top_margin_mm:.0f} "
                    "mm (above the malleoli, the side trimline's sweep and a calf strap's "
                    "band); scan up to below the knee")
    if knee_joint_z is not None and proximal >= knee_joint_z:
        raise CannotServeError(
            f"the proximal trimline at {proximal:.0f} mm would reach the knee joint line at "
            f"{knee_joint_z:.0f} mm; an AFO ends below the knee: lower "
            "trimlines.proximal_height_mm")
    return proximal


def _footplate_end(rx: Prescription, lm: dict, params: TrimParams) -> float:
    """Where the footplate ends (x, mm), the growth allowance's length included."""
    return _footplate_end_as_fitted(rx, lm, params) + rx.corrections.growth_length_mm


def _footplate_end_as_fitted(rx: Prescription, lm: dict, params: TrimParams) -> float:
    kind = rx.trimlines.footplate
    if kind == "three-quarter":
        return float(min(lm["mth1"][0], lm["mth5"][0])) - params.three_quarter_gap_mm
    if kind == "sulcus":
        return float(lm["sulcus"][0])
    if kind == "full":
        return float(lm["toe_tip"][0]) + rx.clearance_mm
    return float(lm["toe_tip"][0]) + rx.trimlines.toe_extension_mm


def _profile(verts: np.ndarray, *, axis: int, lo: float, hi: float, step: float,
             z_cap: float) -> tuple[np.ndarray, np.ndarray]:
    """Highest point (below ``z_cap``) of the limb per bin along ``axis``: (centres, heights)."""
    sel = verts[(verts[:, axis] >= lo) & (verts[:, axis] <= hi) & (verts[:, 2] <= z_cap)]
    edges = np.arange(lo, hi + step, step)
    which = np.clip(np.digitize(sel[:, axis], edges) - 1, 0, len(edges) - 1)
    tops = np.zeros(len(edges))
    np.maximum.at(tops, which, sel[:, 2])
    return edges + step / 2, tops


def _leg_part(rx: Prescription, lm: dict, verts: np.ndarray, proximal: float,
              params: TrimParams, summary: dict):
    """Behind the side trimline and below the proximal edge."""
    ankle = lm["ankle_center"]
    calf = lm["calf"] if lm.get("calf") is not None else ankle + [0, 0, 100.0]
    axis = (calf - ankle) / np.linalg.norm(calf - ankle)
    malleoli_x = 0.5 * (lm["medial_malleolus"][0] + lm["lateral_malleolus"][0])
    edge_at_ankle = malleoli_x + rx.trimlines.anterior_offset_mm
    blend_from = max(lm["medial_malleolus"][2], lm["lateral_malleolus"][2])
    # Depth of the leg behind its axis, per height, for the leaf spring's strip.
    z_bins, back = _leg_back(verts, ankle, axis, params.bin_mm)
    summary["side_edge_at_malleoli_x_mm"] = round(float(edge_at_ankle), 3)
    summary["anterior_offset_mm"] = rx.trimlines.anterior_offset_mm

    def field(p: np.ndarray) -> np.ndarray:
        z = p[:, 2]
        mid = ankle[0] + (z - ankle[2]) * axis[0] / axis[2]
        if rx.device == "posterior-leaf-spring":
            depth = np.interp(z, z_bins, back)
            upper = mid - params.leaf_strip_share * depth
        else:
            upper = mid
        blend = smoothstep((z - blend_from) / params.ankle_blend_mm)
        edge = edge_at_ankle * (1 - blend) + upper * blend
        return np.maximum(p[:, 0] - edge, z - proximal)

    return field


def _leg_back(verts: np.ndarray, ankle: np.ndarray, axis: np.ndarray,
              step: float) -> tuple[np.ndarray, np.ndarray]:
    """Per height bin: how far the leg reaches behind its axis (mm)."""
    sel = verts[verts[:, 2] >= ankle[2]]
    mid = ankle[0] + (sel[:, 2] - ankle[2]) * axis[0] / axis[2]
    behind = mid - sel[:, 0]
    edges = np.arange(ankle[2], sel[:, 2].max() + step, step)
    which = np.clip(np.digitize(sel[:, 2], edges) - 1, 0, len(edges) - 1)
    depth = np.zeros(len(edges))
    np.maximum.at(depth, which, behind)
    return edges + step / 2, depth


def _foot_walls(lm: dict, dorsum: tuple[np.ndarray, np.ndarray], end_x: float,
                share: tuple[float, float], params: TrimParams):
    """Footplate under the sole, walls to a share of the foot's height."""
    xs, tops = dorsum
    mid_x = float(lm["navicular"][0]) if lm.get("navicular") is not None else xs.mean()
    mth_x = 0.5 * (lm["mth1"][0] + lm["mth5"][0])
    heel_x = float(lm["heel"][0])

    def field(p: np.ndarray) -> np.ndarray:
        x = p[:, 0]
        t = np.clip((x - mid_x) / max(mth_x - mid_x, 1.0), 0.0, 1.0)
        wall = np.interp(x, xs, tops) * (share[0] * (1 - t) + share[1] * t)
        return np.maximum.reduce([p[:, 2] - wall, x - end_x, heel_x - 30.0 - x])

    return field


def _foot_orthosis(rx: Prescription, lm: dict, end_x: float, foot_length: float,
                   params: TrimParams, summary: dict):
    """Plantar shell with a heel cup and a medial flange, to its end."""
    medial = 1.0 if lm["mth1"][1] > lm["mth5"][1] else -1.0
    cup = rx.trimlines.heel_cup_height_mm
    heel_x = float(lm["heel"][0])
    arch_from, arch_to = heel_x + 0.3 * foot_length, heel_x + 0.65 * foot_length
    summary["heel_cup_height_mm"] = cup
    summary["medial_flange_height_mm"] = params.fo_medial_flange_mm

    def field(p: np.ndarray) -> np.ndarray:
        x, y = p[:, 0], p[:, 1]
        rear = smoothstep((x - arch_from) / (0.1 * foot_length))
        front = smoothstep((x - arch_to) / (0.1 * foot_length))
        side = np.where(medial * y > 0, params.fo_medial_flange_mm, params.fo_lateral_border_mm)
        height = cup * (1 - rear) + side * (rear - front) + params.fo_forefoot_mm * front
        return np.maximum.reduce([p[:, 2] - height, x - end_x, heel_x - 30.0 - x])

    return field
