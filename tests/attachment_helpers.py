"""Measuring strap slots and vents on a mesh by casting rays through the wall."""

from __future__ import annotations

import numpy as np
import trimesh
from scipy import ndimage

from orthofit.attachments import Cut


def passes(device: trimesh.Trimesh, origins: np.ndarray, direction: np.ndarray,
           depth: float) -> np.ndarray:
    """Which rays from ``origins`` along ``direction`` meet nothing within ``depth``."""
    directions = np.tile(direction, (len(origins), 1))
    locations, rays, _ = device.ray.intersects_location(origins, directions)
    near = np.linalg.norm(locations - origins[rays], axis=1) < depth
    blocked = np.zeros(len(origins), dtype=bool)
    blocked[rays[near]] = True
    return ~blocked


def slot_cut(slot: dict) -> Cut:
    half_length, half_breadth = slot["length_mm"] / 2, slot["breadth_mm"] / 2
    return Cut(np.array(slot["centre_mm"]), np.array(slot["normal"]), np.array(slot["axis"]),
               half_length, half_breadth, 10.0)


def opening(device, slot, rx) -> tuple[np.ndarray, float]:
    """Centre (on the skin plane) and length of the opening through the wall at ``slot``."""
    cut = slot_cut(slot)
    side = np.cross(cut.normal, cut.axis)
    start = rx.clearance_mm + rx.thickness_mm + 4.0
    s = np.arange(-cut.half_length - 6, cut.half_length + 6.01, 0.25)
    t = np.arange(-cut.half_breadth - 4, cut.half_breadth + 4.01, 0.25)
    grid = np.array([(a, b) for a in s for b in t])
    origins = (cut.centre + start * cut.normal + grid[:, :1] * cut.axis
               + grid[:, 1:] * side)
    through = passes(device, origins, -cut.normal, start + 1.0)
    # The opening is the patch of passing rays around the slot's centre, not
    # the open air beyond a trim edge that the grid may reach.
    patches, _ = ndimage.label(through.reshape(len(s), len(t)))
    middle = patches[len(s) // 2, len(t) // 2]
    assert middle > 0, "no opening at the slot's centre"
    inside = (patches == middle).ravel()
    open_s = grid[inside, 0]
    centre = cut.centre + grid[inside].mean(axis=0) @ np.vstack([cut.axis, side])
    return centre, float(open_s.max() - open_s.min())


def material_around(device, cut: Cut, margin: float, rx) -> np.ndarray:
    """Whether rays through the wall at the ring ``margin`` outside the cut meet material."""
    start = rx.clearance_mm + rx.thickness_mm + 4.0
    ring = cut.ring(margin, start, count=48)
    return ~passes(device, ring, -cut.normal, start + 1.0)


def vent_cuts(result) -> list[Cut]:
    """The design's vent holes as cuts, each along the skin's normal at its centre."""
    vents = result.attachments["vents"]
    radius = vents["diameter_mm"] / 2
    cuts = []
    for centre in vents["centres_mm"]:
        point = np.asarray(centre)
        index = np.argmin(np.linalg.norm(result.limb.vertices - point, axis=1))
        normal = np.asarray(result.limb.vertex_normals[index])
        axis = np.cross(normal, [0.0, 0.0, 1.0])
        cuts.append(Cut(point, normal, axis / np.linalg.norm(axis), radius, radius, 10.0))
    return cuts
