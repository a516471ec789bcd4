"""The zoo's own handheld-scanner simulation: sweeps of range images round a limb.

This module owns turning a scene (the limb, its support, clutter) in the true
frame (mm, Y up) into what a handheld structured-light scanner records:

- a *sweep* is a continuous camera path: the operator walks round the limb
  (``turns`` of azimuth), the camera rising or sinking between two heights above
  the floor, its stand-off and aim wobbling smoothly, one range image per frame;
- every frame is a pinhole range image cast with Open3D's ``RaycastingScene``;
  each return gets Gaussian range noise along its ray, and is dropped with a
  probability that rises smoothly from 0 at ``grazing_start_deg`` to 1 at
  ``grazing_end_deg`` of incidence (dark, oblique skin returns no fringe), or
  outside the working range;
- near the floor the skin and the floor cannot be told apart: limb returns lower
  than ``contact_mm`` (ragged by +-1 mm round the foot) above the support are lost,
  and those up to 2 mm higher are lost half the time;
- every sweep after the first is misregistered by a small rigid motion (about
  the limb's centre), as separate passes of a handheld scanner are;
- the scanning software's crop box keeps nothing above the limb's cut.

``fuse`` meshes the frames by TSDF integration (Open3D's ``ScalableTSDFVolume``),
as scanner software does, giving a surface with holes where nothing was seen.
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
    standoff_mm: tuple[float, float] = (280.0, 420.0)
    camera_height_mm: tuple[float, float] = (100.0, 500.0)
    turns: float = 1.15
    noise_mm: float = 0.3
    grazing_start_deg: float = 62.0
    grazing_end_deg: float = 80.0
    range_mm: tuple[float, float] = (150.0, 800.0)
    misregistration_mm: float = 0.5
    misregistration_deg: float = 0.15
    contact_mm: float = 0.0


@dataclass(frozen=True)
class SceneItem:
    """A triangle mesh in the true frame and what it is (``LIMB``, ``SUPPORT``, ``CLUTTER``)."""

    mesh: trimesh.Trimesh
    label: int


@dataclass(frozen=True)
class Frame:
    """One range image: camera pose and z-depths (0 = no return), mm.

    extrinsic : (4, 4) world -> camera (x right, y down, z forward), after the
        sweep's misregistration (the pose the scanner believes it had)
    depth : (h, w) float32 z-depth of the kept limb and clutter returns
    """

    extrinsic: np.ndarray
    depth: np.ndarray
    fx: float
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


def camera_path(settings: ScannerSettings, axis_point: np.ndarray, top_y: float, floor_y: float,
                rng: np.random.Generator, sweep: int):
    """Eyes, targets and rolls of one sweep's frames (a continuous handheld path)."""
    n = settings.frames_per_sweep
    t = np.linspace(0.0, 1.0, n)
    lo, hi = settings.camera_height_mm
    start_az = rng.uniform(0, 2 * np.pi)
    direction = 1.0 if rng.uniform() < 0.5 else -1.0
    az = start_az + direction * 2 * np.pi * settings.turns * t + _smooth_wobble(rng, t, 0.08)
    # alternate sweeps rise and sink; each covers a random share of the height range
    h0, h1 = np.sort(rng.uniform(lo, hi, size=2))
    if h1 - h0 < 0.4 * (hi - lo):
        mid = 0.5 * (h0 + h1)
        h0, h1 = mid - 0.2 * (hi - lo), mid + 0.2 * (hi - lo)
    heights = (h0 + (h1 - h0) * t) if sweep % 2 == 0 else (h1 - (h1 - h0) * t)
    heights = floor_y + heights + _smooth_wobble(rng, t, 12.0)
    r0, r1 = settings.standoff_mm
    radius = rng.uniform(r0, r1) + _smooth_wobble(rng, t, 0.1 * (r1 - r0))
    eyes = np.column_stack([axis_point[0] + radius * np.sin(az), heights,
                            axis_point[2] + radius * np.cos(az)])
    # aim at the limb's axis, a little below the camera (operators look slightly down)
    aim_y = np.clip(heights - rng.uniform(40, 120) + _smooth_wobble(rng, t, 20.0),
                    floor_y + 15.0, top_y - 10.0)
    targets = np.column_stack([axis_point[0] + _smooth_wobble(rng, t, 15.0), aim_y,
                               axis_point[2] + _smooth_wobble(rng, t, 15.0)])
    rolls = np.radians(_smooth_wobble(rng, t, 6.0))
    return eyes, targets, rolls


def scan(items: list[SceneItem], settings: ScannerSettings, *, axis_point: np.ndarray,
         crop_top_y: float, crop_box: tuple[np.ndarray, np.ndarray], support_y: float | None,
         floor_y: float, rng: np.random.Generator) -> Scan:
    """Sweep the scene ``items`` and keep the returns inside the crop box.

    axis_point : (3,) a point on the limb's vertical axis (cameras circle it)
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
    # the ragged contact line: height lost above the support varies round the foot
    contact_phase = rng.uniform(0, 2 * np.pi, size=3)
    all_pts, all_lab, all_sweep, frames = [], [], [], []
    for sweep in range(settings.sweeps):
        eyes, targets, rolls = camera_path(settings, centre, crop_top_y, floor_y, rng, sweep)
        if sweep == 0:
            mis_r, mis_t = np.eye(3), np.zeros(3)
        else:
            mis_r = _random_rotation(rng, settings.misregistration_deg)
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
            world_to_cam = np.eye(4)
            eye_b = (eye - centre) @ mis_r.T + centre + mis_t
            rot_b = rot @ mis_r.T
            world_to_cam[:3, :3] = rot_b
            world_to_cam[:3, 3] = -rot_b @ eye_b
            zdepth = np.where(keep & (labels != SUPPORT), (pts - eye) @ rot[2], 0.0)
            frames.append(Frame(world_to_cam, zdepth.reshape(h, w).astype(np.float32), fx, sweep))
    return Scan(np.vstack(all_pts), np.concatenate(all_lab), np.concatenate(all_sweep),
                tuple(frames))


def fuse(frames: tuple[Frame, ...], *, voxel_mm: float, trunc_mm: float) -> trimesh.Trimesh:
    """TSDF-fuse the frames' depth images (support returns left out) into a mesh (mm).

    The vertices and faces are put in a canonical order (sorted) so that the result
    does not depend on the volume's hash-map order.
    """
    volume = o3d.pipelines.integration.ScalableTSDFVolume(
        voxel_length=voxel_mm, sdf_trunc=trunc_mm,
        color_type=o3d.pipelines.integration.TSDFVolumeColorType.NoColor)
    for frame in frames:
        h, w = frame.depth.shape
        intr = o3d.camera.PinholeCameraIntrinsic(w, h, frame.fx, frame.fx, 0.5 * w - 0.5,
                                                 0.5 * h - 0.5)
        depth = o3d.geometry.Image(np.ascontiguousarray(frame.depth))
        color = o3d.geometry.Image(np.zeros((h, w, 3), dtype=np.uint8))
        rgbd = o3d.geometry.RGBDImage.create_from_color_and_depth(
            color, depth, depth_scale=1.0, depth_trunc=1e4, convert_rgb_to_intensity=False)
        volume.integrate(rgbd, intr, frame.extrinsic)
    mesh = volume.extract_triangle_mesh()
    verts = np.asarray(mesh.vertices, dtype=np.float64)
    faces = np.asarray(mesh.triangles, dtype=np.int64)
    if len(faces) == 0:
        raise RuntimeError("TSDF fusion found no surface: no frame saw the limb")
    return canonical_mesh(verts, faces)


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
