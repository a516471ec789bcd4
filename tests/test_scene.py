"""The review model: a GLB in metres, y up, the device coloured by its clearance."""

from __future__ import annotations

import hashlib
import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import trimesh

from orthofit.scene import clearance_stops, review_glb


def _load(data: bytes) -> trimesh.Scene:
    scene = trimesh.load(io.BytesIO(data), file_type="glb")
    assert isinstance(scene, trimesh.Scene)
    return scene


def _colours(mesh: trimesh.Trimesh) -> np.ndarray:
    """COLOR_0 as loaded: trimesh keeps it beside the material as a vertex attribute."""
    visual = mesh.visual
    if "color" in getattr(visual, "vertex_attributes", {}):
        return np.asarray(visual.vertex_attributes["color"], dtype=np.float64)
    return np.asarray(visual.vertex_colors[:, :3], dtype=np.float64) / 255.0


@pytest.fixture(scope="module")
def spheres():
    limb = trimesh.creation.icosphere(subdivisions=4, radius=40.0)
    device = trimesh.creation.icosphere(subdivisions=4, radius=43.0)
    # One vertex pulled in onto the limb (the icospheres share their vertex directions).
    touching = int(np.argmax(device.vertices[:, 0]))
    vertices = device.vertices.copy()
    vertices[touching] *= 40.0 / 43.0
    device = trimesh.Trimesh(vertices, device.faces, process=False)
    return device, limb, touching


def test_glb_has_device_and_limb_in_metres(spheres):
    device, limb, _ = spheres
    data, _ = review_glb(device, limb, clearance_mm=3.0)
    assert data[:4] == b"glTF"
    scene = _load(data)
    assert set(scene.geometry) == {"device", "limb"}
    assert set(scene.graph.nodes_geometry) == {"device", "limb"}
    assert np.allclose(scene.geometry["device"].extents, 0.086, atol=1e-3)
    assert np.allclose(scene.geometry["limb"].extents, 0.080, atol=1e-3)
    assert len(scene.geometry["device"].faces) == len(device.faces)
    assert len(scene.geometry["limb"].faces) == len(limb.faces)


def test_z_up_becomes_y_up():
    # Tall in z, deep in y, all of it above the floor and to +y.
    box = trimesh.creation.box(extents=(20.0, 30.0, 100.0))
    box.apply_translation((0.0, 40.0, 60.0))
    limb = trimesh.creation.icosphere(subdivisions=2, radius=5.0)
    scene = _load(review_glb(box, limb, clearance_mm=2.0)[0])
    loaded = scene.geometry["device"]
    assert np.allclose(loaded.extents, (0.020, 0.100, 0.030), atol=1e-6)
    # (x, y, z) -> (x, z, -y): up stays up and the winding stays outward (a rotation).
    assert np.allclose(loaded.bounds, [[-0.010, 0.010, -0.055], [0.010, 0.110, -0.025]],
                       atol=1e-6)
    assert loaded.volume > 0


def test_colours_run_from_red_on_the_skin_to_green_at_the_clearance(spheres):
    device, limb, touching = spheres
    data, meta = review_glb(device, limb, clearance_mm=3.0)
    colours = _colours(_load(data).geometry["device"])
    assert colours.shape == (len(device.vertices), 3)
    at_clearance = int(np.argmin(device.vertices[:, 0]))  # 3 mm out, opposite the touch
    red, far = colours[touching], colours[at_clearance]
    assert red[0] > 0.5 and red[0] > 5 * max(red[1], red[2])
    assert far[1] > far[0] and far[2] > far[0] and far[1] > 0.1
    # The stops the page draws: red at 0 mm, green at 3 mm, blue at 7 mm.
    assert meta["clearance_colour_mm"] == [0.0, 7.0]
    assert meta["colours"][0] == [0.0, "#d7301f"]
    assert [mm for mm, _ in meta["colours"]] == [0.0, 1.5, 3.0, 7.0]
    assert all(len(c) == 7 and c.startswith("#") for _, c in meta["colours"])


def test_stops_increase_even_with_no_clearance():
    mm = [m for m, _ in clearance_stops(0.0)]
    assert mm == sorted(mm) and len(set(mm)) == len(mm) and mm[-1] == 4.0


_IN_ANOTHER_PROCESS = """
import hashlib, trimesh
from orthofit.scene import review_glb
limb = trimesh.creation.icosphere(subdivisions=4, radius=40.0)
device = trimesh.creation.icosphere(subdivisions=4, radius=43.0)
print(hashlib.sha256(review_glb(device, limb, clearance_mm=2.5)[0]).hexdigest())
"""


def test_same_meshes_give_the_same_bytes():
    limb = trimesh.creation.icosphere(subdivisions=4, radius=40.0)
    device = trimesh.creation.icosphere(subdivisions=4, radius=43.0)
    first, meta = review_glb(device, limb, clearance_mm=2.5)
    second, meta_again = review_glb(device, limb, clearance_mm=2.5)
    assert first == second and meta == meta_again
    out = subprocess.run([sys.executable, "-c", _IN_ANOTHER_PROCESS], capture_output=True,
                         text=True, check=True, cwd=Path(__file__).resolve().parents[1])
    assert out.stdout.strip() == hashlib.sha256(first).hexdigest()


def test_empty_device_is_refused():
    limb = trimesh.creation.icosphere(subdivisions=2, radius=40.0)
    with pytest.raises(ValueError, match="device"):
        review_glb(trimesh.Trimesh(), limb, clearance_mm=2.0)
