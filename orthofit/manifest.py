"""Batch manifests: which scans a batch designs, each with its own options.

A batch's input is a folder of scans (every scan file in it, by name) or a
manifest, CSV or JSON lines, one scan per row with the columns ``scan``
(path relative to the manifest), ``prescription`` (a file, relative
likewise), ``side``, ``units``, ``up``, ``weight_bearing`` and ``case_ref``;
every column but ``scan`` may be empty.  This module reads that into items;
it checks the manifest's shape (exit 2 with the line at fault), not the
values, which each scan's design checks so one bad row fails alone.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

from .errors import UsageError

__all__ = ["BatchItem", "MANIFEST_COLUMNS", "SCAN_SUFFIXES", "read_batch_input"]

#: The columns a manifest may have; ``scan`` is required.
MANIFEST_COLUMNS = ("scan", "prescription", "side", "units", "up", "weight_bearing", "case_ref")
#: Scan options a row may give, laid over its prescription's ``scan`` block.
_SCAN_OPTIONS = ("side", "units", "up", "weight_bearing", "case_ref")
#: Files a folder batch takes as scans.
SCAN_SUFFIXES = (".stl", ".obj", ".ply", ".off", ".glb", ".pcd", ".xyz")


@dataclass(frozen=True)
class BatchItem:
    """One scan of a batch: where it is, as given, and its own options."""

    #: The scan as the manifest or folder names it (relative path).
    scan: str
    path: Path
    prescription: Path | None = None
    scan_options: dict[str, str] = field(default_factory=dict)


def read_batch_input(source: Path) -> list[BatchItem]:
    """The items of a folder of scans, or of a CSV or JSON-lines manifest.

    Raises
    ------
    UsageError
        When ``source`` is neither, or the manifest has no ``scan`` column, an
        unknown column, or a line that is not a JSON object.
    """
    source = Path(source)
    if source.is_dir():
        scans = sorted(p for p in source.iterdir()
                       if p.is_file() and p.suffix.lower() in SCAN_SUFFIXES
                       and not p.name.endswith(".truth.ply"))
        if not scans:
            raise UsageError(f"the folder {source} holds no scan files "
                             f"({', '.join(SCAN_SUFFIXES)})")
        return [BatchItem(scan=p.name, path=p) for p in scans]
    if not source.is_file():
        raise UsageError(f"the batch input {source} is neither a folder of scans nor a "
                         f"manifest file; check the path")
    text = _read_text(source)
    suffix = source.suffix.lower()
    if suffix == ".csv":
        rows = _csv_rows(text, source.name)
    elif suffix in (".jsonl", ".ndjson", ".json"):
        rows = _jsonl_rows(text, source.name)
    else:
        raise UsageError(f"the manifest {source.name} must be .csv or .jsonl (JSON lines)")
    if not rows:
        raise UsageError(f"the manifest {source.name} lists no scans")
    base = source.parent
    return [_item(row, base, source.name, line) for line, row in rows]


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UsageError(f"the manifest {path.name} is not UTF-8 text") from exc


def _csv_rows(text: str, name: str) -> list[tuple[int, dict]]:
    reader = csv.DictReader(io.StringIO(text))
    columns = [c.strip() for c in reader.fieldnames or []]
    _check_columns(columns, name)
    rows = []
    for row in reader:
        values = {(k or "").strip(): (v or "").strip() for k, v in row.items()
                  if not isinstance(v, list)}
        if any(values.values()):
            rows.append((reader.line_num, values))
    return rows


def _jsonl_rows(text: str, name: str) -> list[tuple[int, dict]]:
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise UsageError(f"line {number} of the manifest {name} is not JSON: "
                             f"{exc.msg}") from exc
        if not isinstance(row, dict):
            raise UsageError(f"line {number} of the manifest {name} must be one object of "
                             f"columns")
        _check_columns(list(row), name, number)
        rows.append((number, {k: "" if v is None else str(v).strip() for k, v in row.items()}))
    return rows


def _check_columns(columns: list[str], name: str, line: int | None = None) -> None:
    where = f"line {line} of the manifest {name}" if line else f"the manifest {name}"
    unknown = sorted(set(columns) - set(MANIFEST_COLUMNS))
    if unknown:
        raise UsageError(f"{where} has unknown columns {', '.join(unknown)}; the columns are "
                         f"{', '.join(MANIFEST_COLUMNS)}")
    if "scan" not in columns:
        raise UsageError(f"{where} has no 'scan' column")


def _item(row: dict, base: Path, name: str, line: int) -> BatchItem:
    scan = row.get("scan", "")
    if not scan:
        raise UsageError(f"line {line} of the manifest {name} gives no scan")
    rx = row.get("prescription") or None
    return BatchItem(scan=scan, path=base / scan,
                     prescription=base / rx if rx else None,
                     scan_options={k: row[k] for k in _SCAN_OPTIONS if row.get(k)})
