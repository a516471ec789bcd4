"""The zoo's own handheld-scanner simulation: sweeps of range images round a limb.

This module owns turning a scene (the limb, its support, clutter) in the true
frame (mm, Y up) into what a handheld structured-light scanner records:

- a *sweep* is a continuous camera path: the operator walks round the limb
  (at least ``turns`` of azimuth, more for a tall band: the path climbs at most
  ``pitch_mm`` a turn), the camera rising or sinking between two heights above the
  floor, held ``standoff_mm`` from the skin it faces, its stand-off and aim wobbling
  smoothly, one range image per frame; the first sweep looks down at the foot;
- every frame is a pinhole range image cast with Open3D's ``RaycastingScene``;
  each return gets Gaussian range noise along its ray, and is dropped with a
  probability that rises smoothly from 0 at ``grazing_start_deg`` to 1 at
  ``grazing_end_deg`` of incidence (dark, oblique skin returns no fringe), or
  outside the working range;
- near the floor the skin and the floor cannot be told apart: limb returns lower
  than ``contact_mm`` (ragged by +-1 mm round the foot) above the support are lost,
  and those up to 2 mm higher are lost half the time;
- every sweep after the first is misregistered by a small rigid motion (about
  the limb's centre; the turn no larger than moves the limb's far ends by the
  shift's size), as separate passes of a handheld scanner are;
- the scanning software's crop box keeps nothing above the limb's cut.

``fuse`` meshes the frames by TSDF integration (its own, in numpy, with
scikit-image's marching cubes), as scanner software does, giving a surface with holes where nothing was seen.
It returns plain arrays; it must not know about cases, truth or files.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import open3d as o3d
import trimesh

__all__ = ["Frame", "Scan", "ScannerSettings", "SceneItem", "fuse", "scan"]

# Scene labels of the returns.
LIMB, SUPPORT, CLUTTER = 0, 1, 2


@dataclass(frozen=True)
class ScannerSettings:
    """How one capture is made (lengths in mm, angles in degrees).

    Defaults are those of a handheld structured-light scanner on a lower leg
    [typ]: working range 200-700 mm, 0.2-0.5 mm range noise, a few sweeps.
    """

    sweeps: int = 3
    frames_per_sweep: int = 30
    width_px: int = 96
    height_px: int = 72
    fov_deg: float = 45.0
    standoff_mm: tuple[float, float] = (250.0, 380.0)
    camera_height_mm: tuple[float, float] = (100.0, 500.0)
    turns: float = 1.15
    noise_mm: float = 0.3
    grazing_start_deg: float = 62.0
    grazing_end_deg: float = 80.0
    range_mm: tuple[float, float] = (150.0, 800.0)
    misregistration_mm: float = 0.5
    misregistration_deg: float = 0.15
    contact_mm: float = 0.0
    pitch_mm: float = 150.0
    foot_aim_mm: tuple[float, float] | None = (25.0, 50.0)
    reach_window_mm: float = 60.0


@dataclass(frozen=True)
class SceneItem:
    """A triangle mesh in the true frame and what it is (``LIMB``, ``SUPPORT``, ``CLUTTER``)."""

    mesh: trimesh.Trimesh
    label: int


@dataclass(frozen=True)
class Frame:
    """One range image's kept limb and clutter returns, as the scanner believes them.

    eye : (3,) the camera centre after the sweep's misregistration, mm
    directions : (k, 3) unit ray directions (misregistered alike)
    ranges : (k,) noisy ranges along them, mm
    """

    eye: np.ndarray
    directions: np.ndarray
    ranges: np.ndarray
    sweep: int


@dataclass(frozen=True)
class Scan:
    """Every return kept: ``points`` (n, 3) mm in the true frame, ``labels`` (n,), frames."""

    points: np.ndarray
    labels: np.ndarray
    sweep: np.ndarray
    frames: tuple[Frame, ...]


def _look_at(eye: np.ndarray, target: np.ndarray, up: np.ndarray, roll: float) -> np.ndarray:
    """(3, 3) rows: camera right, down, forward in the world."""
    fwd = target - eye
    fwd /= np.linalg.norm(fwd)
    right = np.cross(fwd, up)
    right /= np.linalg.norm(right)
    down = np.cross(fwd, right)
    c, s = np.cos(roll), np.sin(roll)
    right, down = c * right + s * down, -s * right + c * down
    return np.vstack([right, down, fwd])


def _random_rotation(rng: np.random.Generator, sigma_deg: float) -> np.ndarray:
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    angle = np.radians(rng.normal(0.0, sigma_deg))
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * (k @ k)


def _smooth_wobble(rng: np.random.Generator, t: np.ndarray, amplitude: float) -> np.ndarray:
    """A smooth random function of t in [0, 1]: three low harmonics."""
    out = np.zeros_like(t)
    for k in (1, 2, 3):
        out += rng.normal(0.0, amplitude / k) * np.sin(2 * np.pi * k * t + rng.uniform(0, 2 * np.pi))
    return out


def limb_axis(vertices: np.ndarray, top_y: float, *, bin_mm: float = 10.0):
    """The limb's axis as (heights, centres (k, 2) x and z) of its sections below ``top_y``."""
    v = vertices[vertices[:, 1] <= top_y]
    bins = np.floor((v[:, 1] - v[:, 1].min()) / bin_mm).astype(np.int64)
    counts = np.bincount(bins)
    used = np.flatnonzero(counts)
    heights = np.bincount(bins, weights=v[:, 1])[used] / counts[used]
    xs = np.bincount(bins, weights=v[:, 0])[used] / counts[used]
    zs = np.bincount(bins, weights=v[:, 2])[used] / counts[used]
    return heights, np.column_stack([xs, zs])


def _axis_at(axis, y: np.ndarray) -> np.ndarray:
    heights, centres = axis
    return np.column_stack([np.interp(y, heights, centres[:, 0]),
                            np.interp(y, heights, centres[:, 1])])


@dataclass(frozen=True)
class LimbReach:
    """How far the limb reaches from its axis: ``reach[i, k]`` is the farthest skin point
    of height bin ``i`` (``edges[i]`` to ``edges[i + 1]``) along horizontal azimuth
    ``2 pi k / azimuths`` from the axis at that height (mm)."""

    edges: np.ndarray
    reach: np.ndarray

    @classmethod
    def of(cls, vertices: np.ndarray, axis, top_y: float, *, bin_mm: float = 10.0,
           azimuths: int = 72) -> "LimbReach":
        v = vertices[vertices[:, 1] <= top_y]
        lo = v[:, 1].min()
        edges = lo + bin_mm * np.arange(int(np.ceil((top_y - lo) / bin_mm)) + 2)
        bins = np.clip(np.searchsorted(edges, v[:, 1], side="right") - 1, 0, len(edges) - 2)
        rel = v[:, [0, 2]] - _axis_at(axis, v[:, 1])
        az = 2 * np.pi * np.arange(azimuths) / azimuths
        along = rel @ np.vstack([np.sin(az), np.cos(az)])  # (n, azimuths): x sin + z cos
        reach = np.zeros((len(edges) - 1, azimuths))
        np.maximum.at(reach, bins, along)
        return cls(edges, reach)

    def at(self, y_lo: np.ndarray, y_hi: np.ndarray, az: np.ndarray) -> np.ndarray:
        """The farthest reach along azimuths ``az`` over heights ``y_lo`` to ``y_hi``."""
        k = np.rint(np.mod(az, 2 * np.pi) / (2 * np.pi) * self.reach.shape[1]).astype(np.int64)
        k %= self.reach.shape[1]
        centre = 0.5 * (self.edges[:-1] + self.edges[1:])
        out = np.zeros(len(az))
        for n, (a, b, kk) in enumerate(zip(y_lo, y_hi, k)):
            rows = (centre >= a) & (centre <= b)
            out[n] = self.reach[rows, kk].max() if rows.any() else 0.0
        return out


def camera_path(settings: ScannerSettings, axis, top_y: float, floor_y: float,
                rng: np.random.Generator, sweep: int, reach: LimbReach | None = None):
    """Eyes, targets and rolls of one sweep's frames (a continuous handheld path).

    ``axis`` is ``limb_axis``'s result: the cameras circle the limb's axis and aim at it.
    The operator covers the limb in height bands: sweep k of n rises (or sinks) through
    the k-th of n overlapping bands, up to a little above the limb's top, turning often
    enough that the path climbs at most ``pitch_mm`` per turn (a frame sees ~200 mm of
    height), so no band of skin falls between two turns. Sweep 0 is the pass round the
    foot: it aims at ``foot_aim_mm`` over the floor (the operator looks down at the foot
    from the band's heights). With ``reach`` the stand-off is kept from the skin (the
    farthest skin toward the camera within +-``reach_window_mm`` of the aim's height),
    not from the axis: a scanner is held a working distance from what it scans, so the
    toes in front of the ankle are not too close to return anything.
    """
    n = settings.frames_per_sweep
    t = np.linspace(0.0, 1.0, n)
    lo, hi = settings.camera_height_mm
    start_az = rng.uniform(0, 2 * np.pi)
    direction = 1.0 if rng.uniform() < 0.5 else -1.0
    hi = min(hi, top_y - floor_y + 60.0)
    hi = max(hi, lo + 80.0)
    share = sweep / max(settings.sweeps - 1, 1)
    span = (hi - lo) / max(settings.sweeps, 1) * 1.6
    mid = lo + share * (hi - lo) + rng.uniform(-0.1, 0.1) * span
    h0, h1 = np.clip([mid - 0.5 * span, mid + 0.5 * span], lo, hi)
    turns = max(settings.turns, (h1 - h0) / settings.pitch_mm)
    az = start_az + direction * 2 * np.pi * turns * t + _smooth_wobble(rng, t, 0.08)
    heights = (h0 + (h1 - h0) * t) if sweep % 2 == 0 else (h1 - (h1 - h0) * t)
    heights = floor_y + heights + _smooth_wobble(rng, t, 10.0)
    if sweep == 0 and settings.foot_aim_mm is not None:
        aim_y = floor_y + rng.uniform(*settings.foot_aim_mm) + _smooth_wobble(rng, t, 8.0)
    else:
        aim_y = heights - rng.uniform(20, 80) + _smooth_wobble(rng, t, 15.0)
    aim_y = np.clip(aim_y, floor_y + 15.0, top_y - 10.0)
    r0, r1 = settings.standoff_mm
    radius = rng.uniform(r0, r1) + _smooth_wobble(rng, t, 0.1 * (r1 - r0))
    if reach is not None:
        w = settings.reach_window_mm
        radius = radius + reach.at(aim_y - w, aim_y + w, az)
    around = _axis_at(axis, aim_y)
    eyes = np.column_stack([around[:, 0] + radius * np.sin(az), heights,
                            around[:, 1] + radius * np.cos(az)])
    # aim at the limb's axis, a little below the camera (operators look slightly down)
    targets = np.column_stack([around[:, 0] + _smooth_wobble(rng, t, 15.0), aim_y,
                               around[:, 1] + _smooth_wobble(rng, t, 15.0)])
    rolls = np.radians(_smooth_wobble(rng, t, 6.0))
    return eyes, targets, rolls


def scan(items: list[SceneItem], settings: ScannerSettings, *, axis_point: np.ndarray,
         crop_top_y: float, crop_box: tuple[np.ndarray, np.ndarray], support_y: float | None,
         floor_y: float, rng: np.random.Generator) -> Scan:
    """Sweep the scene ``items`` and keep the returns inside the crop box.

    axis_point : (3,) the limb's centre (misregistration turns about it)
    crop_top_y : nothing above this height is kept (the limb's cut)
    crop_box : (lo, hi) (3,) the scanning software's box in the true frame
    support_y : height of the floor or platform top under the foot, None without
    floor_y : the height camera heights are measured from
    """
    rc = o3d.t.geometry.RaycastingScene()
    geometry_labels = {}
    for item in items:
        gid = rc.add_triangles(o3d.core.Tensor(np.asarray(item.mesh.vertices, np.float32)),
                               o3d.core.Tensor(np.asarray(item.mesh.faces, np.uint32)))
        geometry_labels[gid] = item.label
    label_of = np.full(max(geometry_labels) + 2, -1, dtype=np.int64)
    for gid, label in geometry_labels.items():
        label_of[gid] = label
    w, h = settings.width_px, settings.height_px
    fx = 0.5 * w / np.tan(np.radians(settings.fov_deg) / 2)
    u = (np.arange(w) + 0.5 - 0.5 * w) / fx
    v = (np.arange(h) + 0.5 - 0.5 * h) / fx
    uu, vv = np.meshgrid(u, v)
    cam_dirs = np.stack([uu, vv, np.ones_like(uu)], axis=-1).reshape(-1, 3)
    centre = np.asarray(axis_point, dtype=np.float64)
    limb_vertices = np.vstack([i.mesh.vertices for i in items if i.label == LIMB])
    axis = limb_axis(limb_vertices, crop_top_y)
    reach = LimbReach.of(limb_vertices, axis, crop_top_y)
    # registration turns a sweep about the limb's centre; its error at the limb's far
    # ends stays within the shift's size (a long thigh-high limb is not tilted more)
    kept = limb_vertices[limb_vertices[:, 1] <= crop_top_y]
    far = float(np.linalg.norm(kept - centre, axis=1).max())
    tilt_deg = min(settings.misregistration_deg, np.degrees(settings.misregistration_mm / far))
    # the ragged contact line: height lost above the support varies round the foot
    contact_phase = rng.uniform(0, 2 * np.pi, size=3)
    all_pts, all_lab, all_sweep, frames = [], [], [], []
    for sweep in range(settings.sweeps):
        eyes, targets, rolls = camera_path(settings, axis, crop_top_y, floor_y, rng, sweep,
                                           reach)
        if sweep == 0:
            mis_r, mis_t = np.eye(3), np.zeros(3)
        else:
            mis_r = _random_rotation(rng, tilt_deg)
            shift = rng.normal(size=3)
            mis_t = settings.misregistration_mm * shift / np.linalg.norm(shift)
        for eye, target, roll in zip(eyes, targets, rolls):
            rot = _look_at(eye, target, np.array([0.0, 1.0, 0.0]), roll)
            dirs = cam_dirs @ rot
            rays = np.hstack([np.broadcast_to(eye, dirs.shape), dirs]).astype(np.float32)
            hit = rc.cast_rays(o3d.core.Tensor(rays))
            t_hit = hit["t_hit"].numpy().astype(np.float64)
            gid = hit["geometry_ids"].numpy().astype(np.int64)
            normals = hit["primitive_normals"].numpy().astype(np.float64)
            ok = np.isfinite(t_hit)
            gid = np.where(ok, gid, len(label_of) - 1)
            labels = label_of[gid]
            norm = np.linalg.norm(dirs, axis=1)
            rng_mm = np.where(ok, t_hit * norm, np.inf)
            unit = dirs / norm[:, None]
            cos_inc = np.abs(np.einsum("ij,ij->i", unit, normals))
            inc = np.degrees(np.arccos(np.clip(cos_inc, 0.0, 1.0)))
            ramp = np.clip((inc - settings.grazing_start_deg)
                           / (settings.grazing_end_deg - settings.grazing_start_deg), 0.0, 1.0)
            p_drop = ramp * ramp * (3 - 2 * ramp)
            noisy = rng_mm + rng.normal(0.0, settings.noise_mm, size=rng_mm.shape)
            keep = ok & (rng.uniform(size=ok.shape) >= p_drop)
            keep &= (noisy > settings.range_mm[0]) & (noisy < settings.range_mm[1])
            pts = eye + unit * np.where(keep, noisy, 0.0)[:, None]
            if support_y is not None and settings.contact_mm > 0:
                ang = np.arctan2(pts[:, 0] - centre[0], pts[:, 2] - centre[2])
                ragged = settings.contact_mm + 0.5 * (np.sin(ang * 3 + contact_phase[0])
                                                      + np.sin(ang * 7 + contact_phase[1]))
                above = pts[:, 1] - support_y
                limb = labels == LIMB
                keep &= ~(limb & (above < ragged))
                band = limb & (above >= ragged) & (above < ragged + 2.0)
                keep &= ~(band & (rng.uniform(size=band.shape) < 0.5))
            lo, hi = crop_box
            keep &= (pts >= lo).all(axis=1) & (pts <= hi).all(axis=1) & (pts[:, 1] <= crop_top_y)
            # the scanner believes its pose; the sweep's error moves its points
            believed = (pts - centre) @ mis_r.T + centre + mis_t
            kept = believed[keep]
            all_pts.append(kept)
            all_lab.append(labels[keep])
            all_sweep.append(np.full(len(kept), sweep, dtype=np.int64))
            # the frame as the scanner believes it: camera moved by the same error
            eye_b = (eye - centre) @ mis_r.T + centre + mis_t
            mesh_keep = keep & (labels != SUPPORT)
            frames.append(Frame(eye_b, unit[mesh_keep] @ mis_r.T, noisy[mesh_keep], sweep))
    return Scan(np.vstack(all_pts), np.concatenate(all_lab), np.concatenate(all_sweep),
                tuple(frames))


def fuse(frames: tuple[Frame, ...], *, voxel_mm: float, trunc_mm: float) -> trimesh.Trimesh:
    """TSDF-fuse the frames' returns (support left out) into a mesh (mm), as scanner
    software does.

    Every return adds, to each voxel its ray passes within ``trunc_mm`` of the
    surface, the projective signed distance ``range - (centre - eye) . dir`` (positive
    in front of the surface); voxels average what they got; marching cubes meshes
    only the cubes whose eight corners were all observed, so unseen skin stays a hole
    and the back of the truncation band (observed voxels next to the unseen inside)
    gives no second, inner wall. Vertices and faces come out in a canonical (sorted)
    order.
    """
    steps = np.arange(-trunc_mm, trunc_mm + 1e-9, 0.5 * voxel_mm)
    eyes = np.vstack([np.broadcast_to(f.eye, f.directions.shape) for f in frames])
    dirs = np.vstack([f.directions for f in frames])
    ranges = np.concatenate([f.ranges for f in frames])
    if len(ranges) == 0:
        raise RuntimeError("TSDF fusion found no surface: no frame saw the limb")
    surface = eyes + dirs * ranges[:, None]
    origin = surface.min(axis=0) - 2 * trunc_mm
    shape = np.ceil((surface.max(axis=0) + 2 * trunc_mm - origin) / voxel_mm).astype(np.int64) + 1
    total = np.zeros(int(np.prod(shape)), dtype=np.float64)
    count = np.zeros(int(np.prod(shape)), dtype=np.float64)
    chunk = 200_000
    for start in range(0, len(ranges), chunk):
        e, d, r = eyes[start:start + chunk], dirs[start:start + chunk], ranges[start:start + chunk]
        samples = (e[:, None, :] + d[:, None, :] * (r[:, None] + steps[None, :])[..., None])
        ijk = np.rint((samples - origin) / voxel_mm).astype(np.int64)
        centre = origin + ijk * voxel_mm
        sdf = r[:, None] - np.einsum("nkj,nj->nk", centre - e[:, None, :], d)
        inside = np.abs(sdf) <= trunc_mm
        flat = np.ravel_multi_index(tuple(ijk[inside].T), tuple(shape))
        total += np.bincount(flat, weights=sdf[inside], minlength=len(total))
        count += np.bincount(flat, minlength=len(count))
    seen = (count > 0).reshape(shape)
    tsdf = np.where(seen, total.reshape(shape) / np.maximum(count.reshape(shape), 1), trunc_mm)
    verts, faces = _surface(tsdf, seen, voxel_mm)
    if len(faces) == 0:
        raise RuntimeError("TSDF fusion found no surface: no frame saw the limb")
    return canonical_mesh(verts + origin, faces)


def _surface(tsdf: np.ndarray, seen: np.ndarray, voxel_mm: float):
    """Marching cubes on the cubes whose eight corners were all observed.

    The unseen voxels (the limb's inside, beyond the truncation band) hold no
    distance; a cube reaching into them would put a second, inner wall at the back of
    the band, where the last observed (negative) values meet the unseen ones. Cubes
    are indexed by their lowest corner; scikit-image's ``mask`` only limits where it
    looks (it tests one corner), so its faces are kept by the cube holding their centroid.
    """
    from skimage.measure import marching_cubes

    nx, ny, nz = seen.shape
    whole = np.zeros_like(seen)
    whole[:-1, :-1, :-1] = True
    for dx in (0, 1):
        for dy in (0, 1):
            for dz in (0, 1):
                whole[:-1, :-1, :-1] &= seen[dx:nx - 1 + dx, dy:ny - 1 + dy, dz:nz - 1 + dz]
    mask = whole.copy()  # every corner of a whole cube
    for dx in (0, 1):
        for dy in (0, 1):
            for dz in (0, 1):
                mask[dx:, dy:, dz:] |= whole[:nx - dx, :ny - dy, :nz - dz]
    verts, faces, _, _ = marching_cubes(tsdf.astype(np.float32), level=0.0,
                                        spacing=(voxel_mm,) * 3, mask=mask,
                                        gradient_direction="ascent")
    if len(faces):
        cube = np.floor(verts[faces].mean(axis=1) / voxel_mm).astype(np.int64)
        cube = np.clip(cube, 0, np.array(seen.shape) - 1)
        faces = faces[whole[cube[:, 0], cube[:, 1], cube[:, 2]]]
    return verts, faces


def canonical_mesh(verts: np.ndarray, faces: np.ndarray) -> trimesh.Trimesh:
    """Merge equal vertices, drop degenerate faces, sort vertices and faces."""
    mesh = trimesh.Trimesh(verts, faces, process=False)
    mesh.merge_vertices(digits_vertex=5)
    mesh.update_faces(mesh.nondegenerate_faces(height=1e-6))
    mesh.update_faces(mesh.unique_faces())
    mesh.remove_unreferenced_vertices()
    v = np.round(np.asarray(mesh.vertices), 5)
    order = np.lexsort((v[:, 2], v[:, 1], v[:, 0]))
    inverse = np.empty_like(order)
    inverse[order] = np.arange(len(order))
    f = inverse[np.asarray(mesh.faces)]
    # rotate each face so its smallest index comes first (keeps the winding), then sort
    first = np.argmin(f, axis=1)
    f = np.stack([f[np.arange(len(f)), (first + k) % 3] for k in range(3)], axis=1)
    f = f[np.lexsort((f[:, 2], f[:, 1], f[:, 0]))]
    return trimesh.Trimesh(v[order], f, process=False)
