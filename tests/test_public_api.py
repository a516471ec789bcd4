"""The public API is what ``__all__`` declares, and every module's doctests pass."""

from __future__ import annotations

import doctest
import importlib

import pytest

import orthofit

MODULES = ["anatomy", "attachments", "batch", "checks", "clean", "cli", "corrections",
           "crossings", "design", "elasticity", "errors", "femesh", "fitmaps", "frame", "intake",
           "io", "jobs", "jobstore", "manifest", "normals", "params", "pipeline", "prescription",
           "preview", "report", "scene", "settings", "shell", "stiffness", "surface", "tasks",
           "trimlines", "tuning"]


def test_exported_members():
    assert sorted(orthofit.__all__) == sorted([
        "__version__", "OrthofitError", "UsageError", "ScanFileError", "CannotServeError",
        "CheckFailedError", "IntakeOptions", "RawScan", "read_scan", "read_scan_bytes",
        "IntakeResult", "run_intake", "inspect_file", "write_intake"])
    for name in orthofit.__all__:
        assert hasattr(orthofit, name), name


@pytest.mark.parametrize("name", MODULES)
def test_module_declares_its_api_and_doctests_pass(name):
    module = importlib.import_module(f"orthofit.{name}")
    assert module.__doc__, f"orthofit.{name} needs a docstring saying what it owns"
    for member in getattr(module, "__all__", []):
        assert hasattr(module, member), f"orthofit.{name}.{member}"
    failures, _ = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert failures == 0


def test_exit_codes_are_distinct():
    codes = {cls.exit_code for cls in (orthofit.UsageError, orthofit.ScanFileError,
                                       orthofit.CannotServeError, orthofit.CheckFailedError)}
    assert codes == {2, 3, 4, 5}


def test_the_command_line_starts_without_the_geometry_libraries():
    # `orthofit --help` and a refused input answer without loading Open3D,
    # trimesh or SciPy (issue #17: --help under 1 s; bench/bench_startup.py).
    import subprocess
    import sys
    probe = ("import sys, orthofit.cli, orthofit; orthofit.__all__; "
             "print(sorted(m for m in ('open3d', 'trimesh', 'scipy', 'skimage') "
             "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"
