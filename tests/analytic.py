"""Analytic limbs of known size and pose, and scans of them, for tests.

A foot is the upper half of an ellipsoid standing on the floor (heel at the
origin, toes along +x), the leg a vertical cylinder over the rear foot, and
the malleoli two spheres on either side of the leg: the lateral one lower and
further back, as in real ankles.  Everything here is in the limb's own device
frame (mm, z up, +y the subject's left), so the known answers are exact.
Points are sampled on the union's surface with analytic inside tests (no
mesh booleans), with a seeded generator.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class AnalyticLimb:
    """Sizes in mm; ``side`` decides which way medial lies (left: -y)."""

    foot_length: float = 240.0
    foot_width: float = 95.0
    foot_height: float = 60.0
    leg_radius: float = 38.0
    leg_x: float = 70.0
    leg_height: float = 380.0
    malleolus_radius: float = 12.0
    medial_malleolus_height: float = 80.0
    lateral_malleolus_height: float = 68.0
    # The lateral malleolus sits further back than the medial one.
    malleolus_x_offset: float = 6.0
    side: str = "left"

    @property
    def medial(self) -> float:
        return 1.0 if self.side == "right" else -1.0

    def malleolus_centres(self) -> tuple[np.ndarray, np.ndarray]:
        """(medial, lateral) sphere centres, touching the leg's surface."""
        reach = self.leg_radius + self.malleolus_radius * 0.2
        med = np.array([self.leg_x + self.malleolus_x_offset, self.medial * reach,
                        self.medial_malleolus_height])
        lat = np.array([self.leg_x - self.malleolus_x_offset, -self.medial * reach,
                        self.lateral_malleolus_height])
        return med, lat

    def ankle_center(self) -> np.ndarray:
        """Midpoint of the malleoli's most prominent points."""
        med, lat = self.malleolus_centres()
        r = self.malleolus_radius
        return 0.5 * ((med + [0, self.medial * r, 0]) + (lat - [0, self.medial * r, 0]))

    def ankle_height(self) -> float:
        return float(self.ankle_center()[2])

    def inside(self, p: np.ndarray) -> np.ndarray:
        """True for points (n, 3) strictly inside the limb."""
        a = np.array([self.foot_length / 2, self.foot_width / 2, self.foot_height])
        foot = np.sum(((p - [self.foot_length / 2, 0, 0]) / a) ** 2, axis=1) < 1 - 1e-9
        leg = (np.hypot(p[:, 0] - self.leg_x, p[:, 1]) < self.leg_radius - 1e-9) & (
            p[:, 2] < self.leg_height)
        out = foot | leg
        for c in self.malleolus_centres():
            out |= np.linalg.norm(p - c, axis=1) < self.malleolus_radius - 1e-9
        return out & (p[:, 2] > 0)

    def surface_points(self, density: float, rng: np.random.Generator) -> np.ndarray:
        """Points on the limb's skin (n, 3), about ``density`` per mm², open sole and top."""
        parts = [self._ellipsoid(density, rng), self._cylinder(density, rng)]
        for c in self.malleolus_centres():
            parts.append(_sphere(c, self.malleolus_radius, density, rng))
        p = np.vstack(parts)
        keep = (p[:, 2] > 0) & ~self.inside(p)
        return p[keep]

    def _ellipsoid(self, density: float, rng: np.random.Generator) -> np.ndarray:
        a = np.array([self.foot_length / 2, self.foot_width / 2, self.foot_height])
        p = 1.6075  # Thomsen's approximation of an ellipsoid's area; half of it here
        area = 2 * np.pi * (((a[0] * a[1]) ** p + (a[0] * a[2]) ** p
                             + (a[1] * a[2]) ** p) / 3) ** (1 / p)
        d = _unit_vectors(int(area * density), rng)
        d[:, 2] = np.abs(d[:, 2])
        return d * a + [self.foot_length / 2, 0, 0]

    def _cylinder(self, density: float, rng: np.random.Generator) -> np.ndarray:
        n = int(2 * np.pi * self.leg_radius * self.leg_height * density)
        t = rng.uniform(0, 2 * np.pi, n)
        z = rng.uniform(0, self.leg_height, n)
        return np.c_[self.leg_x + self.leg_radius * np.cos(t), self.leg_radius * np.sin(t), z]


def _unit_vectors(n: int, rng: np.random.Generator) -> np.ndarray:
    v = rng.normal(size=(n, 3))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _sphere(centre: np.ndarray, radius: float, density: float,
            rng: np.random.Generator) -> np.ndarray:
    return centre + radius * _unit_vectors(int(4 * np.pi * radius**2 * density), rng)


def floor_points(limb: AnalyticLimb, density: float, rng: np.random.Generator,
                 margin: float = 150.0) -> np.ndarray:
    """Floor points (n, 3) around (not under) the foot, z = 0."""
    lo = np.array([-margin, -limb.foot_width / 2 - margin])
    hi = np.array([limb.foot_length + margin, limb.foot_width / 2 + margin])
    n = int(np.prod(hi - lo) * density)
    xy = rng.uniform(lo, hi, (n, 2))
    under = (((xy[:, 0] - limb.foot_length / 2) / (limb.foot_length / 2)) ** 2
             + (xy[:, 1] / (limb.foot_width / 2)) ** 2) < 1
    under |= np.hypot(xy[:, 0] - limb.leg_x, xy[:, 1]) < limb.leg_radius
    xy = xy[~under]
    return np.c_[xy, np.zeros(len(xy))]


def sole_points(limb: AnalyticLimb, density: float, rng: np.random.Generator) -> np.ndarray:
    """Points on the foot's flat sole (its ellipse on z = 0), about ``density`` per mm²."""
    half = np.array([limb.foot_length / 2, limb.foot_width / 2])
    n = int(np.pi * half[0] * half[1] * density)
    r, t = np.sqrt(rng.uniform(0, 1, n)), rng.uniform(0, 2 * np.pi, n)
    return np.c_[half[0] * (1 + r * np.cos(t)), half[1] * r * np.sin(t), np.zeros(n)]


def rotation(axis: np.ndarray, degrees: float) -> np.ndarray:
    """Proper rotation (3, 3) about ``axis`` by ``degrees``."""
    axis = np.asarray(axis, dtype=float) / np.linalg.norm(axis)
    t = np.radians(degrees)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(t) * k + (1 - np.cos(t)) * k @ k


#: Z-up to Y-up, a proper rotation (-90 degrees about x): z -> y, y -> -z.
Z_TO_Y_UP = rotation([1, 0, 0], -90.0)


def placement(*, up: str, yaw_deg: float, shift_mm: np.ndarray) -> np.ndarray:
    """4×4 rigid transform (mm) from the limb's frame to a scanner's frame."""
    rot = rotation([0, 0, 1], yaw_deg)
    if up == "y":
        rot = Z_TO_Y_UP @ rot
    out = np.eye(4)
    out[:3, :3] = rot
    out[:3, 3] = shift_mm
    return out


def scan_points(limb: AnalyticLimb, *, up: str = "z", units: str = "mm",
                yaw_deg: float = 30.0, shift_mm=(120.0, -40.0, 15.0), density: float = 0.6,
                noise_mm: float = 0.2, floor: bool = True, sole: bool = False, seed: int = 0
                ) -> tuple[np.ndarray, np.ndarray]:
    """A raw scan of ``limb`` in a scanner's frame and units; ``sole`` adds the
    flat sole, as a scanner that sees the foot from below records it.

    Returns the points (n, 3) and the 4×4 transform from the limb's frame
    (mm) to the scan's frame (scan units).
    """
    rng = np.random.default_rng(seed)
    pts = limb.surface_points(density, rng)
    if floor:
        pts = np.vstack([pts, floor_points(limb, density / 2, rng)])
    if sole:
        pts = np.vstack([pts, sole_points(limb, density, rng)])
    pts = pts + rng.normal(0, noise_mm, pts.shape)
    place = placement(up=up, yaw_deg=yaw_deg, shift_mm=np.asarray(shift_mm, dtype=float))
    scale = {"mm": 1.0, "m": 1e-3, "in": 1 / 25.4}[units]
    to_scan = np.diag([scale, scale, scale, 1.0]) @ place
    out = pts @ to_scan[:3, :3].T + to_scan[:3, 3]
    order = rng.permutation(len(out))
    return out[order], to_scan
