"""Scan intake: from a raw scan to a clean, closed, measured limb in the device frame.

This module owns the order of the intake steps and what they report:
units and up axis, cleaning, alignment into the device frame, the side,
the closed limb, landmarks and measurements.  Each step is a function of
another module; this one only sequences them, records what each did, and
assembles the JSON that ``orthofit inspect --json`` prints and
``intake.json`` holds.  It reads no files (the caller passes a
:class:`~orthofit.io.RawScan`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import trimesh

from . import anatomy, clean, frame, normals, surface
from .errors import CannotServeError, ScanFileError
from .io import RawScan
from .params import (UNIT_TO_MM, AnatomyParams, CleaningParams, FrameParams, IntakeOptions,
                     SurfaceParams)

__all__ = ["STAGES", "Detected", "IntakeResult", "run_intake", "round_point", "landmark_info"]

log = logging.getLogger(__name__)

#: Intake stages in order, as progress reports and timings name them.
STAGES = ("read", "units", "clean", "align", "close", "landmarks")

#: Called after each stage with (stage, one-line summary, seconds).
Progress = Callable[[str, str, float], None]

# JSON rounding: 0.001 mm for coordinates and lengths, 1e-9 for matrix entries.
_MM_DECIMALS = 3
_MATRIX_DECIMALS = 9


@dataclass(frozen=True)
class Detected:
    """A value orthofit detected or the user gave."""

    value: str
    source: str  # "detected" or "given"
    detail: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"value": self.value, "source": self.source, **self.detail}


@dataclass
class IntakeResult:
    """Everything intake found about one scan (device frame, mm)."""

    options: IntakeOptions
    input_sha256: str
    units: Detected
    up: Detected
    side: Detected
    scan_to_device: np.ndarray
    limb: trimesh.Trimesh
    filled: np.ndarray
    #: Below this height (mm) the closed leg is whole: the lowest point of the cut.
    top_z: float
    foot_length: float
    anatomy: anatomy.Anatomy
    cleaning: dict[str, Any]
    warnings: list[str]
    timings_s: dict[str, float]
    #: The flat cut closing the top of the leg (device frame).
    cut: surface.CutPlane | None = None
    #: No floor and the sole was not scanned: the sole's depth is guessed
    #: (outward), so no device may take its shape from it.
    sole_unseen: bool = False

    def to_json(self) -> dict[str, Any]:
        """The intake JSON: the same scan and options give the same JSON."""
        return {
            "units": self.units.to_json(),
            "up": self.up.to_json(),
            "side": self.side.to_json(),
            "weight_bearing": self.options.weight_bearing,
            "input_sha256": self.input_sha256,
            "scan_to_device": np.round(self.scan_to_device, _MATRIX_DECIMALS).tolist(),
            "leg_extent": self.anatomy.leg_extent,
            "landmarks": {name: None if p is None else round_point(p)
                          for name, p in self.anatomy.landmarks.items()},
            "landmark_info": landmark_info(self.anatomy),
            "measurements": {name: None if v is None or not np.isfinite(v)
                             else round(float(v), _MM_DECIMALS)
                             for name, v in self.anatomy.measurements.items()},
            "cleaning": self.cleaning,
            "warnings": list(self.warnings),
        }


def landmark_info(found: anatomy.Anatomy,
                  given: tuple[str, ...] = ()) -> dict[str, dict[str, Any]]:
    """Per landmark found or given: its ``source`` (``scanned``, ``estimated`` or
    ``given``) and ``confidence`` (0-1)."""
    out = {name: {"source": source, "confidence": found.confidence.get(name, 0.0)}
           for name, source in found.sources.items()}
    for name in given:
        out[name] = {"source": "given", "confidence": 1.0}
    return {name: out[name] for name in anatomy.LANDMARKS if name in out}


def round_point(p: np.ndarray) -> list[float]:
    """A point as JSON: a list of coordinates rounded to 0.001 mm."""
    return [round(float(c), _MM_DECIMALS) for c in p]


class _Clock:
    """Times stages and reports each to the progress callback."""

    def __init__(self, progress: Progress | None, started: float | None):
        self.progress = progress
        self.timings: dict[str, float] = {}
        self.start = time.perf_counter() if started is None else started

    def done(self, stage: str, summary: str) -> None:
        now = time.perf_counter()
        self.timings[stage] = round(now - self.start, 3)
        log.info("%s: %s (%.2f s)", stage, summary, now - self.start)
        if self.progress is not None:
            self.progress(stage, summary, now - self.start)
        self.start = now


def run_intake(raw: RawScan, options: IntakeOptions, *,
               cleaning: CleaningParams = CleaningParams(),
               surface_params: SurfaceParams = SurfaceParams(),
               anatomy_params: AnatomyParams = AnatomyParams(),
               frame_params: FrameParams = FrameParams(),
               progress: Progress | None = None,
               started: float | None = None) -> IntakeResult:
    """Clean, align, close and measure a raw scan.

    Parameters
    ----------
    raw : the scan as read by :func:`orthofit.io.read_scan`
    options : what the user gave (units, up axis, side, weight bearing, seed)
    progress : called after each stage with (stage, summary, seconds)
    started : ``time.perf_counter()`` when reading the file began, so the
        "read" stage counts it

    Raises
    ------
    ScanFileError
        The file's content is no usable scan (NaN coordinates, too few points,
        no plausible size).
    CannotServeError
        The scan holds no foot, or no limb could be closed.
    """
    clock = _Clock(progress, started)
    warnings: list[str] = []
    report: dict[str, Any] = {"input_points": int(len(raw.points)),
                              "input_faces": 0 if raw.faces is None else int(len(raw.faces))}
    _check_points(raw, cleaning)
    clock.done("read", f"{len(raw.points):,} points from {raw.format.upper()}")

    # Units: everything after this is in millimetres.
    if options.units == "auto":
        units = Detected(frame.detect_units(raw.points), "detected")
    else:
        units = Detected(options.units, "given")
    scale = UNIT_TO_MM[units.value]
    points = raw.points * scale
    frame.check_extent(points, units.value)
    if raw.faces is not None:
        points = clean.surface_points(points, raw.faces, cleaning.min_voxel_mm,
                                      seed=options.seed)
    clock.done("units", f"{units.value} ({units.source})")

    # Cleaning: downsample, floor, outliers, clutter.
    down, voxel = clean.downsample(points, cleaning)
    report["downsample"] = {"voxel_mm": round(voxel, 3), "points_after": int(len(down))}
    down_normals = clean.estimate_normals(down, cleaning)
    if options.up == "auto":
        candidates = np.array([[0, 1.0, 0], [0, -1.0, 0], [0, 0, 1.0], [0, 0, -1.0]])
    else:
        axis = np.eye(3)["xyz".index(options.up)]
        candidates = np.array([axis, -axis])
    floor = clean.find_floor(down, down_normals, candidates, cleaning, seed=options.seed)
    if floor is not None:
        above = floor.height(down) > cleaning.floor_distance_mm
        report["floor"] = {"found": True, "removed": int((~above).sum())}
        down = down[above]
    else:
        report["floor"] = {"found": False, "removed": 0}
    kept = clean.outlier_mask(down, cleaning)
    report["outliers"] = {"removed": int((~kept).sum())}
    down = down[kept]
    limb_mask, clusters = clean.limb_mask(down, clean.estimate_normals(down, cleaning), voxel,
                                          cleaning)
    report["clutter"] = {"removed": int((~limb_mask).sum()), "clusters": int(clusters)}
    limb = down[limb_mask]
    report["limb_points"] = int(len(limb))
    if len(limb) < cleaning.min_points // 4:
        raise ScanFileError(f"only {len(limb)} points remain once floor, stray points and "
                            "clutter are removed; scan the limb again more completely")
    clock.done("clean", f"{len(limb):,} limb points kept of {len(points):,}")

    # Alignment: level on the floor (or the foot's own plantar plane), then the foot's axis.
    if floor is not None:
        up_dir = floor.normal
        level = frame.plane_to_level(floor.normal, floor.point)
        limb = frame.transform(level, limb)
        limb = limb[limb[:, 2] > 0.0]
        foot = anatomy.find_foot(limb, anatomy_params)
    else:
        ups = candidates[:1] if options.up != "auto" else _up_candidates(limb, frame_params)
        up_dir, level, limb, foot, plane = _level_on_the_foot(limb, ups, anatomy_params,
                                                              frame_params)
        report["plantar_plane"] = {"contact_mm2": round(plane.contact_mm2, 1)}
    up = (Detected(frame.axis_of(up_dir), "detected") if options.up == "auto"
          else Detected(options.up, "given"))
    to_device = frame.heel_forward(foot.heel, foot.forward) @ level
    limb = frame.transform(frame.heel_forward(foot.heel, foot.forward), limb)
    clock.done("align", f"up {up.value} ({up.source}), foot {foot.foot_length:.0f} mm")

    # The closed limb, then the foot's axis once more on the closed surface.
    skeleton = normals.limb_skeleton(limb, foot.foot_length, surface_params)
    outward = normals.orient_normals(limb, clean.estimate_normals(limb, cleaning), skeleton,
                                     surface_params)
    sole_unseen = False
    if floor is None:
        limb, lower, sole_unseen = _support_under_unseen_sole(limb, outward, frame_params,
                                                              report["plantar_plane"], warnings)
        to_device = lower @ to_device
    # The scanner's crop box is square to its up axis: so is the cut closing the leg.
    cut = surface.cut_plane(limb, surface_params, up=(to_device[:3, :3] @ up_dir))
    closed = surface.close_limb(limb, outward, cut, surface_params, foot.foot_length,
                                sole_unseen=sole_unseen)
    mesh = closed.mesh
    scanned = np.asarray(mesh.vertices)[~closed.filled]
    refined = anatomy.find_foot(scanned, anatomy_params, refine=True)
    adjust = frame.heel_forward(refined.heel, refined.forward)
    mesh.apply_transform(adjust)
    cut = surface.CutPlane(point=frame.transform(adjust, cut.point[None])[0],
                           normal=adjust[:3, :3] @ cut.normal)
    to_device = adjust @ to_device @ frame.scale_matrix(scale)
    report["closed_surface"] = {"vertices": int(len(mesh.vertices)),
                                "faces": int(len(mesh.faces)),
                                "filled_vertices": int(closed.filled.sum()),
                                "watertight": bool(mesh.is_watertight),
                                "genus": closed.genus}
    clock.done("close", f"{len(mesh.faces):,} triangles, "
               f"{100 * closed.filled.mean():.0f}% filled in")

    # Side and landmarks.
    if options.side == "auto":
        # On scanned skin only: a filled sole has no arch, and a toe block
        # closed across the tips no hallux.
        evidence = anatomy.detect_side(np.asarray(mesh.vertices)[~closed.filled],
                                       refined.foot_length, anatomy_params)
        side = Detected(evidence.side, "detected",
                        {"confidence": evidence.confidence, "cues": evidence.cues})
        if evidence.confidence < anatomy.SIDE_CONFIDENT:
            warnings.append(f"the side was hard to tell (confidence {evidence.confidence:.2f}); "
                            f"check it is the {evidence.side} leg or give --side")
    else:
        side = Detected(options.side, "given")
    found = anatomy.measure(mesh, closed.filled, side.value, refined.foot_length,
                            closed.top_z, anatomy_params)
    warnings.extend(found.warnings)
    if floor is not None and options.weight_bearing == "none":
        warnings.append("the foot stands on a floor in this scan; if the patient bore "
                        "weight, give --weight-bearing semi or full")
    clock.done("landmarks", f"{side.value} ({side.source}), "
               f"foot length {found.measurements['foot_length_mm']:.0f} mm")
    return IntakeResult(
        options=options, input_sha256=raw.sha256, units=units, up=up, side=side,
        scan_to_device=to_device, limb=mesh, filled=closed.filled, top_z=closed.top_z, cut=cut,
        foot_length=refined.foot_length, anatomy=found, cleaning=report,
        warnings=warnings, timings_s=clock.timings, sole_unseen=sole_unseen)


def _support_under_unseen_sole(limb: np.ndarray, outward: np.ndarray, params: FrameParams,
                               plane_report: dict[str, Any], warnings: list[str]):
    """With no floor, check the plantar plane lies under a scanned sole; if the
    sole was not seen, lower the support by ``params.unseen_sole_drop_mm``.

    The plane of a meshed scan whose sole is an open hole rests on the lowest
    rim of the foot's sides, a few millimetres above the true sole: a shell
    built on it would press into the sole.  Lowered, the closed sole errs
    outward and a warning says so.  Records the share of sole found, whether
    it was seen and the drop in ``plane_report``.

    Returns the points (levelled: z = 0 on the support), the 4x4 translation
    applied, and whether the sole was unseen.
    """
    share = frame.sole_seen_share(limb, outward, params)
    unseen = share < params.sole_seen_share
    drop = params.unseen_sole_drop_mm if unseen else 0.0
    plane_report.update(sole_down_share=round(share, 3), sole_seen=not unseen,
                        lowered_mm=drop)
    lower = np.eye(4)
    lower[2, 3] = drop
    if unseen:
        warnings.append(
            f"the sole was not scanned and the scan shows no floor: the sole is taken "
            f"{drop:.0f} mm below the lowest scanned skin, so the footplate may sit up to "
            f"{drop:.0f} mm low; scan standing on the floor, or with the sole in view, for a "
            "closer fit")
    return limb + lower[:3, 3], lower, unseen


def _up_candidates(points: np.ndarray, params: FrameParams) -> np.ndarray:
    """Up directions to try on a scan with no floor: ±y and ±z, or ±the one
    axis along which the scan ends in a planar rim (``frame.rim_width``)."""
    widths = {axis: max(frame.rim_width(points, sign * np.eye(3)[i], params.rim_band_mm)
                        for sign in (1.0, -1.0))
              for i, axis in ((1, "y"), (2, "z"))}
    best, other = sorted(widths, key=widths.get, reverse=True)
    if widths[best] >= params.rim_ratio * widths[other]:
        axis = np.eye(3)["xyz".index(best)]
        return np.array([axis, -axis])
    return np.array([[0, 1.0, 0], [0, -1.0, 0], [0, 0, 1.0], [0, 0, -1.0]])


def _level_on_the_foot(points: np.ndarray, ups: np.ndarray, anatomy_params: AnatomyParams,
                       frame_params: FrameParams):
    """Level a scan with no floor on the plane its foot would stand on.

    Each candidate up axis (the scanner's, or each of ±y and ±z) gives the
    plantar plane found under the limb looking down that way
    (:func:`orthofit.frame.plantar_plane`); the candidate whose plane the
    limb touches over the largest area, and in whose frame a foot is found,
    wins.  A foot hanging in plantarflexion is levelled on its own sole, so
    its leg leans back in the device frame and the ankle angle reads over 90.

    Returns the up direction (scan frame), the 4×4 levelling transform, the
    levelled points above the plane, the foot and the plane.

    Raises
    ------
    CannotServeError
        When no candidate shows a foot (the last candidate's reason).
    """
    best, refusal = None, None
    for up in ups:
        rot = np.eye(4)
        rot[:3, :3] = frame.rotation_matrix(up, np.array([0, 0, 1.0]))
        plane = frame.plantar_plane(frame.transform(rot, points), np.array([0, 0, 1.0]),
                                    frame_params)
        level = frame.plane_to_level(plane.normal, plane.point) @ rot
        levelled = frame.transform(level, points)
        levelled = levelled[levelled[:, 2] > 0.0]
        try:
            foot = anatomy.find_foot(levelled, anatomy_params)
        except CannotServeError as exc:
            refusal = exc
            continue
        if best is None or plane.contact_mm2 > best[4].contact_mm2:
            best = (up, level, levelled, foot, plane)
    if best is None:
        raise refusal
    return best


def _check_points(raw: RawScan, params: CleaningParams) -> None:
    """Refuse point sets no cleaning can rescue.

    A point cloud holds what the scanner recorded, and can be too sparse; a
    mesh's surface holds as many points as intake samples from it, so only
    its triangle count is checked.
    """
    points = raw.points
    bad = ~np.isfinite(points).all(axis=1)
    if bad.any():
        raise ScanFileError(f"{int(bad.sum()):,} points have missing (NaN) or infinite "
                            "coordinates; export the scan again from the scanner software")
    if raw.faces is not None:
        if len(raw.faces) < params.min_mesh_faces:
            raise ScanFileError(f"the scan mesh holds only {len(raw.faces):,} triangles, fewer "
                                f"than the {params.min_mesh_faces:,} a foot and leg need; "
                                "export the full scan")
        return
    if len(points) < params.min_points:
        raise ScanFileError(f"the scan holds only {len(points):,} points, fewer than the "
                            f"{params.min_points:,} a limb needs; export the full scan")
