"""Benchmark batch throughput: scans per minute with ``-j 1``, ``-j 2`` and two Celery workers.

The batch is every sample scan twice (as two cases each), designed as foot
orthoses, which every sample can give.  Each run starts from an empty output
folder.  The Celery run uses a Redis broker started by ``scripts/start-redis``
and two ``orthofit worker`` processes of one job each, with SQLite as the job
database, all on this machine.

Usage: ``python -m bench.bench_batch [--copies 2]``
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.bench_intake import HERE, RESULTS

ROOT = HERE.parent
SAMPLES = sorted(p for p in (ROOT / "scans").iterdir()
                 if p.suffix in (".ply", ".stl") and not p.name.endswith(".truth.ply")
                 and (ROOT / "scans" / f"{p.stem}.truth.json").exists())


def _manifest(folder: Path, copies: int) -> Path:
    (folder / "insole.yaml").write_text("device: foot-orthosis\n")
    lines = ["scan,prescription,case_ref"]
    for copy in range(copies):
        for number, sample in enumerate(SAMPLES):
            lines.append(f"{sample},insole.yaml,B-{copy}{number:03d}")
    path = folder / "manifest.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def _batch(manifest: Path, out: Path, env: dict, *extra: str) -> float:
    begin = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "orthofit", "batch", str(manifest), "-o",
                           str(out), *extra], env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - begin
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-3000:])
    return seconds


def _celery(manifest: Path, folder: Path, env: dict) -> float:
    broker = subprocess.run([str(ROOT / "scripts" / "start-redis")], capture_output=True,
                            text=True, check=True).stdout.strip()
    env = {**env, "ORTHOFIT_BROKER_URL": broker, "ORTHOFIT_DATA_DIR": str(folder / "shared"),
           "ORTHOFIT_DATABASE_URL": f"sqlite:///{folder / 'jobs.db'}"}
    workers = []
    logs = [folder / f"w{i}.log" for i in (1, 2)]
    for i, log in enumerate(logs, start=1):
        workers.append(subprocess.Popen(
            [sys.executable, "-m", "orthofit", "worker", "-n", f"bench{i}@local"], env=env,
            stdout=open(log, "wb"), stderr=subprocess.STDOUT, start_new_session=True))
    try:
        while not all("ready" in log.read_text(errors="replace") for log in logs):
            time.sleep(0.2)
        return _batch(manifest, folder / "out-celery", env)
    finally:
        for worker in workers:
            os.killpg(worker.pid, signal.SIGTERM)
        for worker in workers:
            worker.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=2)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="orthofit-bench-batch-"))
    env = {**os.environ, "ORTHOFIT_BROKER_URL": ""}
    try:
        manifest = _manifest(folder, args.copies)
        scans = len(SAMPLES) * args.copies
        runs = [("-j 1", _batch(manifest, folder / "out-j1", env, "-j", "1")),
                ("-j 2", _batch(manifest, folder / "out-j2", env, "-j", "2")),
                ("2 Celery workers", _celery(manifest, folder, env))]
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    rows = [{"run": name, "scans": scans, "seconds": round(s, 1),
             "scans_per_minute": round(60.0 * scans / s, 2)} for name, s in runs]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "batch.json").write_text(json.dumps(rows, indent=2) + "\n")
    print("| run | scans | seconds | scans per minute |")
    print("|---|---:|---:|---:|")
    for r in rows:
        print(f"| {r['run']} | {r['scans']} | {r['seconds']:.1f} | {r['scans_per_minute']:.1f} |")


if __name__ == "__main__":
    main()
