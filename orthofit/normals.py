"""Outward normals of a limb's scanned points.

This module owns which way each scanned point faces.  Foot and leg are
modelled as tubes of roughly elliptic section: the foot's sections run along
x, the leg's along z, and per (x, y) column of the foot and ankle the top is
told from the bottom (a section across the forefoot mixes the high big toe
with the low little toes).  A normal that clearly lines up with its model's
outward direction is oriented by it; the rest take their orientation from
oriented neighbours along the surface.  Device frame, mm.  It must not build
surfaces or find anatomy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from .errors import CannotServeError
from .params import SurfaceParams

__all__ = ["Sections", "Columns", "Skeleton", "limb_skeleton", "orient_normals"]

# Neighbours over which normal orientation spreads, and how far out of the
# tangent plane (cosine to the normal) a neighbour may lie to count.
_ORIENT_NEIGHBORS = 8
_TANGENT_COS = 0.5
# Within this share of a section's half-extent from its centre, the section
# does not say which side a point is on.
_CLEAR_SHARE = 0.5
# Foot columns need this many points and this half height (mm) to tell top from bottom.
_MIN_COLUMN_POINTS = 4
_MIN_COLUMN_HALF_MM = 3.0
# Sections with fewer points do not place a centre-line point.
_MIN_SECTION_POINTS = 10


@dataclass(frozen=True)
class Sections:
    """Elliptic sections of a limb part along one axis (mm).

    ``at`` (k,) positions along ``axis``; ``centre`` (k, 2) and ``half`` (k, 2)
    the section's centre and half-extents in the two other coordinates.
    """

    axis: int
    at: np.ndarray
    centre: np.ndarray
    half: np.ndarray

    def outward(self, points: np.ndarray, clear_share: float = 0.0) -> np.ndarray:
        """Outward directions (n, 3): gradients of the nearest section's ellipse.

        Beyond the first or last section the part is closed by an ellipsoidal
        cap.  A component is left at zero where the point lies within
        ``clear_share`` of the half-extent from the centre: there the ellipse
        cannot say which side the point is on.
        """
        other = [i for i in range(3) if i != self.axis]
        k = np.clip(np.searchsorted(self.at, points[:, self.axis]), 0, len(self.at) - 1)
        prev = np.clip(k - 1, 0, len(self.at) - 1)
        nearer = np.abs(self.at[prev] - points[:, self.axis]) < np.abs(
            self.at[k] - points[:, self.axis])
        k = np.where(nearer, prev, k)
        half = np.maximum(self.half[k], 1.0)
        grad = np.zeros_like(points)
        rel = points[:, other] - self.centre[k]
        grad[:, other] = np.where(np.abs(rel) >= clear_share * half, rel / half**2, 0.0)
        beyond = points[:, self.axis] - np.clip(points[:, self.axis], self.at[0], self.at[-1])
        cap = np.maximum(half.mean(axis=1), 1.0)
        grad[:, self.axis] = beyond / cap**2
        return grad


@dataclass(frozen=True)
class Columns:
    """Vertical extent of the foot per (x, y) column: mid height and half height (mm).

    A section across the forefoot mixes the high big toe with the low little
    toes; per column, top and bottom of each toe are told apart.
    """

    origin: np.ndarray
    step: float
    mid: np.ndarray
    half: np.ndarray
    count: np.ndarray

    @classmethod
    def of(cls, points: np.ndarray, step: float) -> "Columns":
        origin = points[:, :2].min(axis=0)
        ij = np.floor((points[:, :2] - origin) / step).astype(np.int64)
        shape = tuple(ij.max(axis=0) + 1)
        lo = np.full(shape, np.inf)
        hi = np.full(shape, -np.inf)
        count = np.zeros(shape, dtype=np.int64)
        np.minimum.at(lo, tuple(ij.T), points[:, 2])
        np.maximum.at(hi, tuple(ij.T), points[:, 2])
        np.add.at(count, tuple(ij.T), 1)
        with np.errstate(invalid="ignore"):  # empty columns stay NaN, and count 0
            return cls(origin, step, (lo + hi) / 2, (hi - lo) / 2, count)

    def vertical(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(z - mid) / half² per point, and whether its column holds a top and a bottom."""
        ij = np.floor((points[:, :2] - self.origin) / self.step).astype(np.int64)
        inside = np.all((ij >= 0) & (ij < np.array(self.mid.shape)), axis=1)
        out = np.zeros(len(points))
        ok = np.zeros(len(points), dtype=bool)
        i, j = ij[inside].T
        half = self.half[i, j]
        good = (self.count[i, j] >= _MIN_COLUMN_POINTS) & (half >= _MIN_COLUMN_HALF_MM)
        idx = np.flatnonzero(inside)[good]
        out[idx] = (points[idx, 2] - self.mid[i[good], j[good]]) / half[good] ** 2
        ok[idx] = True
        return out, ok


@dataclass(frozen=True)
class Skeleton:
    """The limb as elliptic sections: the foot's along x, the leg's along z.

    Points below ``split_z`` belong to the foot, points above to the leg;
    ``columns`` refines the foot's up/down direction per (x, y) column.
    """

    foot: Sections
    leg: Sections
    split_z: float
    columns: Columns | None = None


def _sections(points: np.ndarray, axis: int, step: float) -> Sections | None:
    other = [i for i in range(3) if i != axis]
    key = np.floor(points[:, axis] / step).astype(np.int64)
    order = np.argsort(key, kind="stable")
    key, pts = key[order], points[order]
    cuts = np.flatnonzero(np.diff(key)) + 1
    groups = [g for g in np.split(pts, cuts) if len(g) >= _MIN_SECTION_POINTS]
    if not groups:
        return None
    lo = np.array([g[:, other].min(axis=0) for g in groups])
    hi = np.array([g[:, other].max(axis=0) for g in groups])
    return Sections(axis=axis, at=np.array([g[:, axis].mean() for g in groups]),
                    centre=(lo + hi) / 2, half=(hi - lo) / 2)


def limb_skeleton(points: np.ndarray, foot_length: float, params: SurfaceParams) -> Skeleton:
    """Elliptic sections of a limb in the device frame.

    The foot's are sections across its length below
    ``params.skeleton_foot_height`` foot lengths, stopping short of heel and
    toes (caps close the ends); the leg's are horizontal sections above
    ``params.skeleton_split`` foot lengths.
    """
    x, z = points[:, 0], points[:, 2]
    fl = foot_length
    end = params.skeleton_end_share * fl
    split = params.skeleton_split * fl
    foot = _sections(points[(z < params.skeleton_foot_height * fl)
                            & (x > end) & (x < fl - end)], 0, params.skeleton_step_mm)
    leg = _sections(points[z >= split], 2, params.skeleton_step_mm)
    if foot is None and leg is None:
        raise CannotServeError("the scan holds no limb that could be closed; scan it again")
    low = points[z < split]
    columns = Columns.of(low, params.skeleton_step_mm) if len(low) else None
    return Skeleton(foot=foot or leg, leg=leg or foot, split_z=split, columns=columns)


def orient_normals(points: np.ndarray, normals: np.ndarray, skeleton: Skeleton,
                   params: SurfaceParams) -> np.ndarray:
    """Flip unoriented unit ``normals`` (n, 3) so each points out of the limb.

    Foot and leg are tubes of roughly elliptic section (see
    :func:`limb_skeleton`): where a normal clearly lines up with the outward
    normal of its section's ellipse, that orients it.  Where it does not,
    orientation spreads from oriented neighbours to their neighbours, keeping
    adjacent normals in agreement.
    """
    in_leg = points[:, 2] >= skeleton.split_z
    away = np.empty_like(points)
    away[in_leg] = skeleton.leg.outward(points[in_leg])
    foot = ~in_leg
    away[foot] = skeleton.foot.outward(points[foot], clear_share=_CLEAR_SHARE)
    if skeleton.columns is not None:
        # A foot section mixes the high forefoot with the low little toes, so
        # up or down comes from the point's own column where it holds a top
        # and a bottom, else from the section where the point is clearly high or low.
        vertical, ok = skeleton.columns.vertical(points[foot])
        rows = np.flatnonzero(foot)
        away[rows, 2] = np.where(ok, vertical, away[rows, 2])
    length = np.linalg.norm(away, axis=1)
    away /= np.maximum(length, 1e-12)[:, None]
    cos = np.einsum("ij,ij->i", normals, away)
    oriented = normals * np.where(cos >= 0, 1.0, -1.0)[:, None]
    decided = (np.abs(cos) >= params.orient_confident_cos) & (length > 0)
    if decided.all():
        return oriented
    _, neighbours = cKDTree(points).query(points, k=_ORIENT_NEIGHBORS + 1)
    neighbours = neighbours[:, 1:]
    # Orientation spreads only along the surface: a neighbour straight across
    # (the facing side of a toe) lies along the normal, not in the tangent plane.
    chord = points[neighbours] - points[:, None, :]
    chord /= np.maximum(np.linalg.norm(chord, axis=2, keepdims=True), 1e-12)
    along = np.abs(np.einsum("ikj,ij->ik", chord, normals)) < _TANGENT_COS
    while not decided.all():
        open_ = np.flatnonzero(~decided)
        nb = neighbours[open_]
        weight = (decided[nb] & along[open_]).astype(float)
        votes = np.einsum("ij,ikj->ik", normals[open_], oriented[nb]) * weight
        reached = weight.sum(axis=1) > 0
        if not reached.any():
            break  # islands with no oriented neighbour keep the centre-line sign
        agree = np.where(votes[reached].sum(axis=1) >= 0, 1.0, -1.0)
        oriented[open_[reached]] = normals[open_[reached]] * agree[:, None]
        decided[open_[reached]] = True
    return oriented
