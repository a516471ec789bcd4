"""Make the bundled sample scans and their truth, or larger scans on demand.

``python -m scans.make_samples`` rewrites the committed samples in
``scans/`` byte for byte; ``python -m scans.make_samples --out DIR --points N``
makes one scan of about N points (for benchmarks).  Each scan ``NAME.EXT``
comes with ``NAME.truth.json``: everything in the scan's own coordinates and
units.  It never imports orthofit.
"""

from __future__ import annotations

import argparse
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import trimesh

from .mh_limb import shared_data, true_limb
from .rangescan import Room, scan

HERE = Path(__file__).resolve().parent
UNIT_PER_MM = {"mm": 1.0, "m": 1e-3, "in": 1 / 25.4}


@dataclass(frozen=True)
class Sample:
    name: str
    variant: str
    side: str
    units: str
    up: str
    fmt: str
    floor: str = "floor"
    foot_only: bool = False
    weight_bearing: str = "full"
    points: int = 100_000
    seed: int = 0


SAMPLES = (
    Sample("adult_left_floor_mm_zup", "adult", "left", "mm", "z", "ply", seed=1),
    Sample("adult_right_platform_m_yup", "fat_calf", "right", "m", "y", "ply",
           floor="platform", weight_bearing="semi", seed=2),
    Sample("child_left_floor_in_zup", "child", "left", "in", "z", "ply", seed=3),
    Sample("child_right_floor_mm_yup", "child", "right", "mm", "y", "stl", points=35_000, seed=4),
    Sample("adult_left_footonly_mm_zup", "adult", "left", "mm", "z", "ply", floor="none",
           foot_only=True, weight_bearing="none", points=50_000, seed=5),
)


def _placement(up: str, rng: np.random.Generator) -> np.ndarray:
    """4×4 proper rigid transform from the true limb's mm frame (Y up) to the scanner's."""
    yaw = rng.uniform(0, 2 * np.pi)
    rot = trimesh.transformations.rotation_matrix(yaw, [0, 1, 0])
    if up == "z":
        # +90 degrees about x: y -> z, z -> -y (a rotation, never a reflection).
        rot = trimesh.transformations.rotation_matrix(np.pi / 2, [1, 0, 0]) @ rot
    rot[:3, 3] = rng.uniform(-300, 300, 3)
    return rot


def make(sample: Sample, out_dir: Path) -> Path:
    """Write ``sample``'s scan and truth into ``out_dir``; return the scan's path."""
    rng = np.random.default_rng(sample.seed)
    limb = true_limb(sample.variant, sample.side, foot_only=sample.foot_only)
    room = Room(floor=sample.floor, clutter=sample.floor != "none")
    points, faces = scan(limb.mesh, points=sample.points, room=room,
                         mesh=sample.fmt == "stl", seed=sample.seed)
    scale = UNIT_PER_MM[sample.units]
    true_to_scan = np.diag([scale, scale, scale, 1.0]) @ _placement(sample.up, rng)

    def to_scan(p: np.ndarray) -> np.ndarray:
        return np.asarray(p, dtype=float) @ true_to_scan[:3, :3].T + true_to_scan[:3, 3]

    path = out_dir / f"{sample.name}.{sample.fmt}"
    if sample.fmt == "stl":
        trimesh.Trimesh(to_scan(points), faces, process=False).export(path)
    else:
        _write_ply_points(path, to_scan(points))
    up_dir = true_to_scan[:3, :3] @ [0.0, 1.0, 0.0]
    truth = {
        "side": sample.side, "units": sample.units, "up": sample.up,
        "weight_bearing": sample.weight_bearing, "has_floor": sample.floor != "none",
        "foot_only": sample.foot_only,
        "ankle_joint_center": to_scan(limb.ankle_joint_center).round(6).tolist(),
        "heel": to_scan(limb.heel).round(6).tolist(),
        "toe_tip": to_scan(limb.toe_tip).round(6).tolist(),
        "foot_length_mm": round(limb.foot_length_mm, 3),
        "floor_point": to_scan([0.0, 0.0, 0.0]).round(6).tolist(),
        "floor_normal": (up_dir / np.linalg.norm(up_dir)).round(9).tolist(),
        "true_to_scan": true_to_scan.round(12).tolist(),
        "generator": {"variant": sample.variant, "floor": sample.floor,
                      "clutter": room.clutter, "points": sample.points, "seed": sample.seed,
                      "format": sample.fmt},
    }
    (out_dir / f"{sample.name}.truth.json").write_text(json.dumps(truth, indent=2) + "\n")
    return path


def _write_ply_points(path: Path, points: np.ndarray) -> None:
    pts = np.asarray(points, dtype="<f4")
    header = ("ply\nformat binary_little_endian 1.0\n"
              f"element vertex {len(pts)}\nproperty float x\nproperty float y\n"
              "property float z\nend_header\n").encode("ascii")
    path.write_bytes(header + pts.tobytes())


def make_scan(out_dir: str | Path, *, points: int, variant: str = "adult", side: str = "left",
              units: str = "mm", up: str = "z", fmt: str = "ply", floor: bool = True,
              foot_only: bool = False, seed: int = 0) -> Path:
    """One scan of about ``points`` points, with its truth, for benchmarks and tests."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    name = f"{variant}_{side}_{points // 1000}k_{units}_{up}up"
    sample = Sample(name, variant, side, units, up, fmt, floor="floor" if floor else "none",
                    foot_only=foot_only, points=points, seed=seed)
    return make(sample, out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="write one on-demand scan here")
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--variant", default="adult", choices=["adult", "fat_calf", "child"])
    parser.add_argument("--side", default="left", choices=["left", "right"])
    parser.add_argument("--format", dest="fmt", default="ply", choices=["ply", "stl"])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.out:
        print(make_scan(args.out, points=args.points, variant=args.variant, side=args.side,
                        fmt=args.fmt, seed=args.seed))
        return
    for sample in SAMPLES:
        print(make(sample, HERE))
    residual = shared_data().parent / "ampscan-mit"
    shutil.copyfile(residual / "residual_limb_scan.stl", HERE / "residual_limb_nofoot_mm.stl")
    shutil.copyfile(residual / "LICENSE", HERE / "LICENSE-ampscan-MIT")
    shutil.copyfile(shared_data() / "LICENSE.md", HERE / "LICENSE-makehuman-CC0.md")


if __name__ == "__main__":
    main()
