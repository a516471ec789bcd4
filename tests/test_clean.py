"""The floor's RANSAC: the plane under known points, the same one on every run."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from orthofit.clean import ransac_plane


def _floor_and_clutter(seed: int = 5) -> np.ndarray:
    rng = np.random.default_rng(seed)
    floor = np.c_[rng.uniform(-300, 300, (6000, 2)), rng.normal(0.0, 0.4, 6000)]
    tilt = np.radians(3.0)
    floor[:, 2] += np.tan(tilt) * floor[:, 0] + 12.0
    clutter = rng.uniform([-300, -300, 20], [300, 300, 400], (4000, 3))
    return np.vstack([floor, clutter])


def test_ransac_finds_the_floor_plane():
    normal, offset = ransac_plane(_floor_and_clutter(), 3.0, 2000, seed=0)
    normal, offset = (normal, offset) if normal[2] > 0 else (-normal, -offset)
    expected = np.array([-np.sin(np.radians(3.0)), 0.0, np.cos(np.radians(3.0))])
    assert np.degrees(np.arccos(normal @ expected)) < 0.5
    # The plane passes 12 mm up at the origin.
    assert -offset / normal[2] == pytest.approx(12.0, abs=0.5)


def test_ransac_gives_the_same_plane_however_busy_the_machine_is():
    points = _floor_and_clutter()
    first = ransac_plane(points, 3.0, 2000, seed=0)
    stop = threading.Event()

    def busy() -> None:
        while not stop.is_set():
            np.linalg.svd(np.random.default_rng(1).normal(size=(200, 200)))

    workers = [threading.Thread(target=busy) for _ in range(2)]
    for worker in workers:
        worker.start()
    try:
        again = [ransac_plane(points, 3.0, 2000, seed=0) for _ in range(5)]
    finally:
        stop.set()
        for worker in workers:
            worker.join()
    for normal, offset in again:
        assert np.array_equal(normal, first[0]) and offset == first[1]
