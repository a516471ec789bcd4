"""Shared fixtures: paths, a CLI runner, and scans written to temporary files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SCANS = ROOT / "scans"


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str

    def json(self) -> dict:
        return json.loads(self.stdout)


def run_cli(*args: str | Path, env: dict | None = None, cwd: Path | None = None) -> CliResult:
    """Run ``python -m orthofit ARGS`` in a fresh process."""
    full_env = {**os.environ, **(env or {})}
    full_env.pop("ORTHOFIT_DEBUG", None)
    proc = subprocess.run([sys.executable, "-m", "orthofit", *map(str, args)],
                          capture_output=True, text=True, env=full_env, cwd=cwd)
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture(scope="session")
def cli():
    return run_cli


def write_xyz(path: Path, points: np.ndarray) -> Path:
    np.savetxt(path, points, fmt="%.6f")
    return path


def write_ply_points(path: Path, points: np.ndarray) -> Path:
    """Binary little-endian PLY point cloud, float32."""
    pts = np.asarray(points, dtype="<f4")
    header = ("ply\nformat binary_little_endian 1.0\n"
              f"element vertex {len(pts)}\nproperty float x\nproperty float y\n"
              "property float z\nend_header\n").encode()
    path.write_bytes(header + pts.tobytes())
    return path


def design_processes(marker: str) -> list[int]:
    """Pids of ``orthofit design`` processes whose command line holds ``marker``."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        words = [a.decode(errors="replace") for a in argv]
        if "design" in words and any(marker in w for w in words):
            found.append(int(proc.name))
    return found
