"""Run ``orthofit stiffness`` once on a design folder; print time and peak memory as JSON.

``total_s`` is the whole of ``folder_stiffness`` (reading the files, the
stiffness stage, writing stiffness.json); ``stage_s`` is the stiffness
stage alone as a design runs it: meshing, assembly, solve and the report's
block (what the budget of a design counts), and ``solve_s`` the part of it
after meshing.  With ``--densify N`` it instead subdivides the folder's
device.stl until the shell has at least N triangles (same surface, more
triangles).  Run in its own process by :mod:`bench.bench_stiffness`.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path

import numpy as np
import trimesh

from orthofit import stiffness
from orthofit.io import read_mesh, stl_bytes
from orthofit.pipeline import folder_stiffness

SPENT: dict[str, float] = {}


def _timed(name: str, function):
    def timed(*args, **kwargs):
        start = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            SPENT[name] = SPENT.get(name, 0.0) + time.perf_counter() - start
    return timed


def densify(folder: Path, least: int) -> None:
    mesh = read_mesh(folder / "device.stl")
    vertices, faces = np.asarray(mesh.vertices), np.asarray(mesh.faces)
    lengths = trimesh.Trimesh(vertices, faces, process=False).edges_unique_length
    for share in range(95, 0, -5):
        # Split the longest edges, fewer first, until the shell has enough triangles.
        denser = trimesh.remesh.subdivide_to_size(vertices, faces,
                                                  max_edge=np.percentile(lengths, share))
        if len(denser[1]) >= least:
            vertices, faces = denser
            break
    (folder / "device.stl").write_bytes(stl_bytes(vertices, faces))


def main(folder: Path) -> None:
    # The stage's pieces, timed where device_stiffness calls them.
    stiffness.solve_stiffness = _timed("stage", stiffness.solve_stiffness)
    stiffness.stiffness_block = _timed("stage", stiffness.stiffness_block)
    stiffness.shell_fe_mesh = _timed("mesh", stiffness.shell_fe_mesh)
    start = time.perf_counter()
    block = folder_stiffness(folder)
    total = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    triangles = len(read_mesh(folder / "device.stl").faces)
    sagittal = block["planes"]["sagittal"]
    print(json.dumps({"triangles": triangles, "elements": block["method"]["elements"],
                      "dofs": 3 * block["method"]["nodes"], "total_s": round(total, 3),
                      "stage_s": round(SPENT.get("stage", 0.0), 3),
                      "solve_s": round(SPENT.get("stage", 0.0) - SPENT.get("mesh", 0.0), 3),
                      "peak_mb": round(peak_mb, 1), "k_free": sagittal["k_free"],
                      "k_axis": sagittal["k_axis"]}))


if __name__ == "__main__":
    if sys.argv[1] == "--densify":
        densify(Path(sys.argv[3]), int(sys.argv[2]))
    else:
        main(Path(sys.argv[1]))
