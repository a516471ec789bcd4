"""Attachments: strap slots, ventilation holes and the label, placed so the shell stays strong.

This module owns where attachments go and what they cut or add:

- strap slots, in pairs, one each side of the limb at a site tied to
  landmarks (below the proximal edge, across the instep in front of the
  malleoli, behind the metatarsal heads), rounded at the ends, cut through
  the wall along the skin's normal; a width of ``auto`` takes the widest
  stock strap whose slots keep the margin;
- ventilation holes over the calf section on a staggered grid, each keeping
  the margin from trim edges, slots, reliefs and the leaf spring's neck;
- the label (case reference, side, device, the prescribed date), sunk into or
  raised from the flat underside of the footplate, which never touches skin.

Slots and holes are fields over space (negative inside the cut) that the
shell subtracts before it is meshed, so it stays one watertight body; the
label is cut or added with manifold3d on the finished shell.  The margin is
checked against the trim field on the wall's mid-surface: every point of a
ring the margin wide around a cut must lie inside the device.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import trimesh

from .errors import CannotServeError
from .prescription import Prescription
from .trimlines import Trim

__all__ = ["Cut", "AttachmentPlan", "plan_attachments", "apply_label", "label_text",
           "SLOT_PLAY_MM", "SLOT_BREADTH_MM"]

#: A slot is the strap's width plus this play in length (mm) [eng].
SLOT_PLAY_MM = 3.0
#: A slot's breadth: a 2-3 mm strap folded through with room (mm) [typ].
SLOT_BREADTH_MM = 5.0
# A cut reaches this far into the skin and beyond the wall's outer face (mm),
# so it opens the wall cleanly whatever the flare, and at a long slot's ends
# where the skin curves away from the plane at its centre (a calf's bulge
# takes it several mm inwards over 25 mm) [eng].
_CUT_IN_MM, _CUT_OUT_MM = 12.0, 6.0
# Widths tried for ``auto``, widest first.
_STOCK_WIDTHS = (50, 38, 25)
# Where straps sit along the foot, in foot lengths ahead of the ankle centre
# (ankle) or behind the metatarsal heads (forefoot) [eng].
_ANKLE_AHEAD_FL = 0.12
_FOREFOOT_BEHIND_FL = 0.06
# Slots go where the skin's normal is at most this far from horizontal (its
# z component): side walls standing nearly upright, and the calf away from
# where it bulges into the knee or narrows to the ankle [eng].
_STEEPEST_WALL, _STEEPEST_CALF = 0.3, 0.4
# The skin under a cut and its margin must lie within this of the cut's plane,
# along its normal and across to the nearest skin point (mm) [eng].
_FLAT_MM = 3.0
# How far below its highest place a calf strap may go, in steps [eng: a
# child's calf narrows within 2-3 cm below the knee].
_CALF_DROPS_MM = (0.0, 5.0, 10.0, 15.0, 20.0)
# ...and an ankle or forefoot strap this far off its site, nearest first [eng].
_SHIFTS_MM = (0.0, -5.0, 5.0, -10.0, 10.0)
# Points on each margin ring [eng].
_RING_POINTS = 24
# Vents go no lower than this above the malleoli's top on a solid AFO (mm) [eng].
_VENT_ABOVE_MALLEOLI_MM = 20.0


@dataclass(frozen=True)
class Cut:
    """A rounded slot (a round hole when ``half_length == half_breadth``) through the wall.

    ``centre`` lies on the skin; ``normal`` points out of the limb; ``axis`` is
    the slot's long direction, square to the normal.
    """

    centre: np.ndarray
    normal: np.ndarray
    axis: np.ndarray
    half_length: float
    half_breadth: float
    reach_out: float

    def field(self, points: np.ndarray) -> np.ndarray:
        """Signed distance-like field (mm): negative inside the cut."""
        rel = points - self.centre
        along = rel @ self.axis
        across = rel @ np.cross(self.normal, self.axis)
        height = rel @ self.normal
        rest = np.maximum(np.abs(along) - (self.half_length - self.half_breadth), 0.0)
        outline = np.hypot(rest, across) - self.half_breadth
        return np.maximum.reduce([outline, -height - _CUT_IN_MM, height - self.reach_out])

    def ring(self, margin: float, depth: float, count: int = _RING_POINTS) -> np.ndarray:
        """Points ``margin`` outside the cut's outline, ``depth`` out along the normal."""
        side = np.cross(self.normal, self.axis)
        straight = self.half_length - self.half_breadth
        radius = self.half_breadth + margin
        angles = np.linspace(0.0, 2 * np.pi, count, endpoint=False)
        s, c = np.sin(angles), np.cos(angles)
        along = np.where(c >= 0, straight, -straight) + radius * c
        return (self.centre + self.normal * depth + along[:, None] * self.axis
                + (radius * s)[:, None] * side)

    @property
    def reach(self) -> float:
        """No point further than this from the centre is inside the cut (mm)."""
        return float(np.hypot(self.half_length, max(_CUT_IN_MM, self.reach_out))) + 1.0

    def report(self) -> dict[str, Any]:
        return {"centre_mm": _round(self.centre), "normal": _round(self.normal, 4),
                "axis": _round(self.axis, 4), "length_mm": round(2 * self.half_length, 3),
                "breadth_mm": round(2 * self.half_breadth, 3)}


@dataclass
class AttachmentPlan:
    """The cuts to subtract from the shell and what the report says of them."""

    cuts: list[Cut] = field(default_factory=list)
    applied: dict[str, Any] = field(default_factory=dict)

    def field(self, points: np.ndarray) -> np.ndarray:
        """Negative inside any cut.

        Each slot is tested on the points within its reach; each round hole
        only on the points whose nearest hole centre it is (holes keep a
        margin apart, so a point inside one is nearest to its centre).
        """
        from scipy.spatial import cKDTree

        points = np.asarray(points, dtype=float)
        out = np.full(len(points), np.inf)
        slots = [c for c in self.cuts if c.half_length > c.half_breadth]
        holes = [c for c in self.cuts if c.half_length <= c.half_breadth]
        for cut in slots:
            rows = np.flatnonzero(np.linalg.norm(points - cut.centre, axis=1) < cut.reach)
            out[rows] = np.minimum(out[rows], cut.field(points[rows]))
        if holes:
            distance, nearest = cKDTree(np.array([c.centre for c in holes])).query(
                points, distance_upper_bound=max(c.reach for c in holes))
            rows = np.flatnonzero(np.isfinite(distance))
            rows = rows[np.argsort(nearest[rows], kind="stable")]
            bounds = np.flatnonzero(np.diff(nearest[rows])) + 1
            for group in np.split(rows, bounds):
                if len(group):
                    cut = holes[nearest[group[0]]]
                    out[group] = np.minimum(out[group], cut.field(points[group]))
        return out


def plan_attachments(rx: Prescription, landmarks: dict[str, np.ndarray | None],
                     limb: trimesh.Trimesh, trim: Trim) -> AttachmentPlan:
    """Place the prescription's strap slots and vents on this limb and device.

    Raises
    ------
    CannotServeError
        When a strap of the prescribed width (or any stock width, for
        ``auto``) cannot keep the margin, naming the strap and the margin.
    """
    a = rx.attachments
    plan = AttachmentPlan(applied={"margin_mm": a.margin_mm, "straps": [], "vents": None,
                                   "label": None})
    if not a.straps and a.vents is None:
        return plan
    surface = _Surface(limb, rx, trim, landmarks)
    for strap in a.straps:
        widths = _STOCK_WIDTHS if strap.width_mm == "auto" else (strap.width_mm,)
        placed = None
        for width in widths:
            placed = _place_strap(strap.at, width, surface, plan.cuts, a.margin_mm)
            if placed is not None:
                break
        if placed is None:
            tried = "any stock width (50, 38, 25 mm)" if strap.width_mm == "auto" \
                else f"width_mm {strap.width_mm}"
            raise CannotServeError(
                f"a strap at {strap.at} with {tried} has no room for its slots while "
                f"keeping attachments.margin_mm {a.margin_mm} of material to the trim edges, "
                f"reliefs and other slots; choose a narrower strap, a smaller margin, or "
                f"another site")
        width, cuts = placed
        plan.cuts += cuts
        plan.applied["straps"].append({
            "at": strap.at, "width_mm": width, "prescribed": strap.width_mm,
            "slots": [{"side": side, **cut.report()} for side, cut in zip(
                ("medial", "lateral"), cuts, strict=True)]})
    if a.vents is not None:
        vents = _place_vents(a.vents.diameter_mm, a.vents.bridge_mm, surface, plan.cuts,
                             a.margin_mm)
        plan.cuts += vents
        radius = a.vents.diameter_mm / 2
        plan.applied["vents"] = {
            "count": len(vents), "diameter_mm": a.vents.diameter_mm,
            "bridge_mm": a.vents.bridge_mm,
            "open_area_mm2": round(len(vents) * np.pi * radius ** 2, 1),
            "centres_mm": [_round(v.centre) for v in vents]}
    return plan


class _Surface:
    """The limb's skin with its normals, the device's extent and the zones to keep clear."""

    def __init__(self, limb: trimesh.Trimesh, rx: Prescription, trim: Trim,
                 landmarks: dict[str, np.ndarray | None]):
        self.points = np.asarray(limb.vertices, dtype=float)
        self.normals = np.asarray(limb.vertex_normals, dtype=float)
        self.rx, self.trim, self.lm = rx, trim, landmarks
        self.mid_depth = rx.clearance_mm + rx.thickness_mm / 2
        self.reach_out = rx.clearance_mm + rx.thickness_mm + rx.trimlines.edge_flare_mm \
            + _CUT_OUT_MM
        # The wall's mid-surface over each skin point: inside the device where
        # the trim field is negative by more than the edge's rounding.
        self.rounding = 0.5 * rx.thickness_mm
        self.depth_of = self.trim(self.points + self.normals * self.mid_depth)
        self.reliefs = [(np.asarray(landmarks[r.at], float), r.radius_mm)
                        for r in rx.corrections.reliefs or [] if landmarks.get(r.at) is not None]
        self.medial = 1.0 if landmarks["mth1"][1] > landmarks["mth5"][1] else -1.0
        self._tree = None
        self.neck = None
        if rx.device == "posterior-leaf-spring":
            top = max(landmarks["medial_malleolus"][2], landmarks["lateral_malleolus"][2])
            back = 0.5 * (landmarks["medial_malleolus"][0] + landmarks["lateral_malleolus"][0])
            self.neck = (float(landmarks["ankle_center"][2]) - 10.0,
                         float(top) + trim.params.ankle_blend_mm, float(back))

    def flat(self, cut: Cut, margin: float) -> bool:
        """Whether the skin under the cut and its margin lies close to the cut's plane.

        A cut goes straight through the wall along one normal; where the skin
        curves away within its reach (under the arch, into the sole) the cut
        would open more than the slot, or less.
        """
        from scipy.spatial import cKDTree

        if self._tree is None:
            self._tree = cKDTree(self.points)
        rings = np.vstack([cut.ring(0.0, 0.0), cut.ring(margin, 0.0),
                           cut.ring(margin / 2, 0.0)])
        distance, nearest = self._tree.query(rings)
        height = (self.points[nearest] - cut.centre) @ cut.normal
        return bool(np.all(distance < _FLAT_MM) and np.all(np.abs(height) < _FLAT_MM))

    def clear(self, cut: Cut, margin: float, others: list[Cut]) -> bool:
        """Whether ``cut`` keeps ``margin`` of material to every edge and feature."""
        if not self.flat(cut, margin):
            return False
        ring = cut.ring(margin, self.mid_depth)
        if np.any(self.trim(ring) > -self.rounding):
            return False
        reach = cut.half_length + margin
        for centre, radius in self.reliefs:
            if np.linalg.norm(cut.centre - centre) < radius + reach:
                return False
        if self.neck is not None:
            lo, hi, back = self.neck
            zs = ring[:, 2]
            if np.any((zs > lo) & (zs < hi + margin) & (ring[:, 0] < back + margin)):
                return False
        for other in others:
            if np.any(other.field(cut.ring(margin, self.mid_depth)) < 0) or np.any(
                    cut.field(other.ring(margin, self.mid_depth)) < 0):
                return False
        return True

    def cut_at(self, index: int, axis_hint: np.ndarray, half_length: float,
               half_breadth: float) -> Cut:
        normal = self.normals[index] / np.linalg.norm(self.normals[index])
        axis = axis_hint - (axis_hint @ normal) * normal
        axis /= np.linalg.norm(axis)
        return Cut(self.points[index].copy(), normal, axis, half_length, half_breadth,
                   self.reach_out)


def _place_strap(site: str, width: int, surface: _Surface, others: list[Cut],
                 margin: float) -> tuple[int, list[Cut]] | None:
    """Slots for a strap of ``width`` at ``site``, medial then lateral, or None.

    A calf strap sits as high as the margin allows, or, where the leg already
    narrows towards the knee there and the skin under the slots is not flat,
    a little lower (``_CALF_DROPS_MM``); an ankle or forefoot strap where its
    site puts it, or a little behind or ahead (``_SHIFTS_MM``)."""
    offsets = _CALF_DROPS_MM if site == "proximal_calf" else _SHIFTS_MM
    for offset in offsets:
        placed = _place_strap_at(site, width, surface, others, margin, offset)
        if placed is not None:
            return placed
    return None


def _place_strap_at(site: str, width: int, surface: _Surface, others: list[Cut],
                    margin: float, offset: float) -> tuple[int, list[Cut]] | None:
    """:func:`_place_strap` at one place: ``offset`` mm below the highest (a calf
    strap) or along x from the site (an ankle or forefoot strap)."""
    lm = surface.lm
    half_length = (width + SLOT_PLAY_MM) / 2
    half_breadth = SLOT_BREADTH_MM / 2
    p, inside = surface.points, surface.depth_of < -(surface.rounding + margin)
    foot_length = float(lm["toe_tip"][0] - lm["heel"][0])
    if site == "proximal_calf":
        top = surface.trim.summary["proximal_edge_z_mm"]
        # As high as the margin (and the edge's rounding) allows.
        target = top - margin - half_length - surface.rounding - 1.0 - offset
        near = inside & (np.abs(p[:, 2] - target) < 1.5) \
            & (np.abs(surface.normals[:, 2]) < _STEEPEST_CALF)
        hint = np.array([0.0, 0.0, 1.0])
    else:
        if site == "ankle":
            target = float(lm["ankle_center"][0]) + _ANKLE_AHEAD_FL * foot_length + offset
        else:
            target = float(0.5 * (lm["mth1"][0] + lm["mth5"][0])) \
                - _FOREFOOT_BEHIND_FL * foot_length + offset
        # On the side walls, where they stand nearly upright: the cut goes
        # straight through the wall and not down into the footplate's rim.
        near = inside & (np.abs(p[:, 0] - target) < 1.5) \
            & (np.abs(surface.normals[:, 1]) > 0.6) \
            & (np.abs(surface.normals[:, 2]) < _STEEPEST_WALL)
        hint = np.array([1.0, 0.0, 0.0])
    cuts = []
    for sign in (surface.medial, -surface.medial):
        candidates = np.flatnonzero(near & (sign * surface.normals[:, 1] > 0.3))
        if len(candidates) == 0:
            return None
        if site == "proximal_calf":
            # Nearest the side edge first, as a strap's slots sit.
            order = candidates[np.argsort(-surface.depth_of[candidates], kind="stable")]
        else:
            # Highest up the side wall first, so the strap crosses the instep.
            order = candidates[np.argsort(-p[candidates, 2], kind="stable")]
        found = None
        for index in order[:40]:
            cut = surface.cut_at(index, hint, half_length, half_breadth)
            if surface.clear(cut, margin, others + cuts):
                found = cut
                break
        if found is None:
            return None
        cuts.append(found)
    return width, cuts


def _place_vents(diameter: float, bridge: float, surface: _Surface, others: list[Cut],
                 margin: float) -> list[Cut]:
    """Round holes over the calf section, ``diameter + bridge`` apart, keeping the margin."""
    lm = surface.lm
    radius = diameter / 2
    pitch = diameter + bridge
    top = max(lm["medial_malleolus"][2], lm["lateral_malleolus"][2])
    low = float(top) + _VENT_ABOVE_MALLEOLI_MM
    p = surface.points
    inside = surface.depth_of < -(surface.rounding + margin + radius)
    candidates = np.flatnonzero(inside & (p[:, 2] > low))
    if len(candidates) == 0:
        return []
    # Deepest inside first, then a fixed order: deterministic and away from edges.
    order = candidates[np.lexsort((p[candidates, 1], p[candidates, 2],
                                   np.round(surface.depth_of[candidates], 1)))]
    placed: list[Cut] = []
    centres = np.empty((0, 3))
    for index in order:
        point = p[index]
        if len(centres) and np.min(np.linalg.norm(centres - point, axis=1)) < pitch:
            continue
        cut = surface.cut_at(index, np.array([0.0, 0.0, 1.0]), radius, radius)
        if not surface.clear(cut, max(margin, bridge / 2), others + placed):
            continue
        placed.append(cut)
        centres = np.vstack([centres, point])
    return placed


_DEVICE_CODES = {"solid-afo": "AFO", "posterior-leaf-spring": "PLS", "smo": "SMO",
                 "foot-orthosis": "FO"}
# Label text heights tried, largest first (4 mm keeps strokes about 0.6 mm
# wide, printable on MJF and fine FDM), and the margin to the underside's
# outline (mm) [eng].
_LABEL_CAPS_MM, _LABEL_EDGE_MM = (6.0, 5.0, 4.0), 5.0
# (manifold3d tolerance, simplify tolerance) tried in turn (mm) [eng].
_LABEL_CLEANUPS = ((0.0, 0.01), (0.01, 0.01), (0.02, 0.01), (0.0, 0.02), (0.005, 0.005))
# Pixels per mm of the rasterised text; the outline is traced from it [eng].
_LABEL_PX_PER_MM = 12


def label_text(rx: Prescription, side: str) -> list[str]:
    """The label's lines: the case reference, then side, device and the prescribed date.

    >>> from orthofit.prescription import Prescription
    >>> rx = Prescription(device="smo", scan={"case_ref": "C-0007"},
    ...                   attachments={"label": {"date": "2026-11-29"}})
    >>> label_text(rx, "right")
    ['C-0007', 'R SMO 2026-11-29']
    """
    return [rx.scan.case_ref, f"{side[0].upper()} {_DEVICE_CODES[rx.device]} "
                              f"{rx.attachments.label.date}"]


def apply_label(device: trimesh.Trimesh, rx: Prescription, side: str,
                landmarks: dict[str, np.ndarray | None]) -> tuple[trimesh.Trimesh, dict]:
    """Sink or raise the label into the footplate's underside under the midfoot.

    The text runs along the foot and reads from below; it follows the
    underside's shape (the text's prisms are cut by a slab whose faces follow
    the underside, measured by rays cast up), so its depth is the same
    everywhere.

    Raises
    ------
    CannotServeError
        When the label does not fit on the footplate's underside.
    """
    import manifold3d as m3d
    from scipy.interpolate import RegularGridInterpolator

    label = rx.attachments.label
    lines = label_text(rx, side)
    heel_x = float(landmarks["heel"][0])
    mth_x = float(0.5 * (landmarks["mth1"][0] + landmarks["mth5"][0]))
    y_mid = float(0.5 * (landmarks["mth1"][1] + landmarks["mth5"][1]))
    centre = np.array([0.5 * (heel_x + mth_x), y_mid])
    # The largest text that fits, with its edge, on the underside.
    for cap in _LABEL_CAPS_MM:
        outlines, size = _text_outlines(lines, cap)
        half = np.array(size) / 2 + _LABEL_EDGE_MM
        xs = np.arange(centre[0] - half[0], centre[0] + half[0] + 1.0, 1.0)
        ys = np.arange(centre[1] - half[1], centre[1] + half[1] + 1.0, 1.0)
        grid = np.stack(np.meshgrid(xs, ys, indexing="ij"), -1).reshape(-1, 2)
        under = _underside(device, grid).reshape(len(xs), len(ys))
        if np.isfinite(under).all():
            break
    else:
        raise CannotServeError(
            f"the label ({size[0]:.0f} x {size[1]:.0f} mm in its smallest text, with "
            f"{_LABEL_EDGE_MM:.0f} mm around it) does not fit under the footplate at the "
            f"midfoot; shorten the case_ref or drop attachments.label")
    height = RegularGridInterpolator((xs, ys), under, bounds_error=False, fill_value=None)
    overlap = 0.5
    sink = label.style == "deboss"
    # The layer the text occupies, following the underside: from ``below`` to
    # ``above`` the underside (mm).
    below, above = (-overlap, label.depth_mm) if sink else (-label.depth_mm, overlap)
    # The text as straight prisms through that layer's whole height range...
    reach = float(under.min()) + below - 1.0
    prisms = m3d.CrossSection(outlines, m3d.FillRule.EvenOdd).extrude(
        float(under.max()) + above + 1.0 - reach)
    # Along the foot (+x), read from below: mirrored across the foot's axis.
    prisms = prisms.mirror((0.0, 1.0, 0.0)).translate((centre[0], centre[1], reach))
    # ...cut by the layer itself, a slab whose faces follow the underside.  Each
    # piece is a valid solid, so the intersection is; warping the text itself
    # instead let thin strokes' walls cross where the underside curves.
    slab = m3d.Manifold.cube((2 * half[0], 2 * half[1], 1.0)).translate(
        (centre[0] - half[0], centre[1] - half[1], 0.0)).refine_to_length(1.0)

    def onto_underside(v: np.ndarray) -> np.ndarray:
        v = np.array(v, dtype=np.float64)
        base = height(v[:, :2])
        return np.column_stack([v[:, :2], base + below + v[:, 2] * (above - below)])

    solid = prisms ^ slab.warp_batch(onto_underside)
    shell = m3d.Manifold(m3d.Mesh(vert_properties=np.asarray(device.vertices, np.float32),
                                  tri_verts=np.asarray(device.faces, np.uint32)))
    result = _without_slivers(shell, solid, sink)
    base = float(height([centre])[0])
    return result, {"text": lines, "style": label.style, "depth_mm": label.depth_mm,
                    "centre_mm": _round(np.array([centre[0], centre[1], base])),
                    "size_mm": [round(float(size[0]), 2), round(float(size[1]), 2)],
                    "text_height_mm": cap,
                    "reads": "from below, along the foot"}


def _without_slivers(shell, solid, sink: bool) -> trimesh.Trimesh:
    """The shell with the label cut or added, as a float32-exact mesh without slivers.

    Where the text's walls meet the underside the boolean leaves slivers
    whose faces can cross once rounded to float32, as STL stores them.
    manifold3d's tolerance and simplify at a hundredth of a millimetre
    collapse them; the first of a few settings that leaves no crossing edges
    is kept (the checks report any that remain).
    """
    from .crossings import crossing_points

    result = None
    for tolerance, simplify in _LABEL_CLEANUPS:
        base = shell.set_tolerance(tolerance) if tolerance else shell
        out = base - solid if sink else base + solid
        mesh = out.simplify(simplify).to_mesh()
        result = trimesh.Trimesh(np.asarray(mesh.vert_properties[:, :3], dtype=np.float64),
                                 np.asarray(mesh.tri_verts, dtype=np.int64), process=True)
        result.vertices = np.asarray(result.vertices, dtype=np.float32).astype(np.float64)
        if len(crossing_points(result)) == 0:
            break
    return result


def _text_outlines(lines: list[str], cap: float) -> tuple[list[np.ndarray], tuple[float, float]]:
    """The text's outlines (mm, centred on the origin) traced from a rendering, and its size.

    ``cap`` is the height of a capital letter (mm); the font is Pillow's
    built-in Aileron (CC0), so the label is the same on every machine.
    """
    from PIL import Image, ImageDraw, ImageFont
    from skimage import measure

    px = _LABEL_PX_PER_MM
    font = ImageFont.load_default(size=int(round(cap * px * 1.35)))
    draw = ImageDraw.Draw(Image.new("L", (1, 1)))
    text = "\n".join(lines)
    box = draw.multiline_textbbox((0, 0), text, font=font, spacing=int(px * 2))
    width, height = box[2] - box[0] + 4 * px, box[3] - box[1] + 4 * px
    image = Image.new("L", (width, height), 0)
    ImageDraw.Draw(image).multiline_text((2 * px - box[0], 2 * px - box[1]), text, fill=255,
                                         font=font, spacing=int(px * 2), align="center")
    mask = np.asarray(image, dtype=float) / 255.0
    padded = np.pad(mask, 1)
    outlines = []
    for contour in measure.find_contours(padded, 0.5):
        # Rows run down the image; x along columns, y up.
        xy = np.column_stack([contour[:, 1] - 1, -(contour[:, 0] - 1)]) / px
        xy -= [width / px / 2, -height / px / 2]
        outlines.append(xy[:-1] if np.allclose(xy[0], xy[-1]) else xy)
    ink = np.argwhere(mask > 0.5)
    size = ((ink[:, 1].max() - ink[:, 1].min()) / px, (ink[:, 0].max() - ink[:, 0].min()) / px)
    return outlines, size


def _underside(device: trimesh.Trimesh, xy: np.ndarray) -> np.ndarray:
    """Height of the device's lowest face over each (x, y) (mm); inf where there is none."""
    origins = np.column_stack([xy, np.full(len(xy), device.bounds[0, 2] - 5.0)])
    locations, rays, _ = device.ray.intersects_location(
        origins, np.tile([0.0, 0.0, 1.0], (len(xy), 1)))
    first = np.full(len(xy), np.inf)
    np.minimum.at(first, rays, locations[:, 2])
    return first


def _round(v: np.ndarray, digits: int = 3) -> list[float]:
    return [round(float(c), digits) for c in v]
