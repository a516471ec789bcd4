"""Where a case's scan and each version's outputs live in the data folder.

``DATA_DIR/cases/{case_id}/scan.{fmt}`` and
``DATA_DIR/cases/{case_id}/v{n}/prescription.json`` with the design's outputs
in ``v{n}/out/``.  Names carry the case id only, never a patient's name.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from orthofit.pipeline import atomic_write

__all__ = ["Storage"]


class Storage:
    def __init__(self, root: Path):
        self.root = Path(root)

    def case_dir(self, case_id: str) -> Path:
        return self.root / "cases" / case_id

    def scan_path(self, case_id: str, fmt: str) -> Path:
        return self.case_dir(case_id) / f"scan.{fmt}"

    def version_dir(self, case_id: str, number: int) -> Path:
        return self.case_dir(case_id) / f"v{number}"

    def out_dir(self, case_id: str, number: int) -> Path:
        return self.version_dir(case_id, number) / "out"

    def prescription_path(self, case_id: str, number: int) -> Path:
        return self.version_dir(case_id, number) / "prescription.json"

    def write(self, path: Path, data: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))

    def delete_case(self, case_id: str) -> None:
        shutil.rmtree(self.case_dir(case_id), ignore_errors=True)
