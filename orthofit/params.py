"""Options and tuning constants of scan intake, each in one place with its source.

This module owns the values that steer intake: what a user may give
(:class:`IntakeOptions`, validated by pydantic) and the tolerances the
algorithms use (:class:`CleaningParams`, :class:`SurfaceParams`,
:class:`AnatomyParams`).  Algorithms take these objects; they hold no bare
numbers of their own.  It must not read files or touch geometry.

Sources are marked as in ``shared/DOMAIN.md``: ``[lit]`` a published figure,
``[typ]`` common clinical practice, ``[eng]`` an engineering choice of this
project, measured on the sample scans and analytic limbs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "Units",
    "UpAxis",
    "Side",
    "WeightBearing",
    "UNIT_TO_MM",
    "IntakeOptions",
    "CleaningParams",
    "FrameParams",
    "SurfaceParams",
    "AnatomyParams",
    "PoseParams",
]

Units = Literal["auto", "mm", "m", "in"]
UpAxis = Literal["auto", "y", "z"]
Side = Literal["auto", "left", "right"]
WeightBearing = Literal["none", "semi", "full"]

#: Millimetres per scan unit.
UNIT_TO_MM: dict[str, float] = {"mm": 1.0, "m": 1000.0, "in": 25.4}


class IntakeOptions(BaseModel):
    """What the user says about a scan; ``auto`` means orthofit detects it.

    Examples
    --------
    >>> IntakeOptions().units
    'auto'
    >>> IntakeOptions(side="left", units="m").side
    'left'
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    units: Units = "auto"
    up: UpAxis = "auto"
    side: Side = "auto"
    # Not detectable from geometry with confidence; recorded because it changes
    # arch height and heel width [lit: Chhikara 2025, Sensors 25:869].
    weight_bearing: WeightBearing = "none"
    # A 3-million-point binary scan is ~40-150 MB; 500 MB leaves room for ASCII
    # formats while refusing what would exhaust a clinic workstation [eng].
    max_file_mb: float = Field(default=500.0, gt=0)
    # Seed of every random step (RANSAC), so reruns are byte-identical [eng].
    seed: int = Field(default=0, ge=0)


@dataclass(frozen=True)
class CleaningParams:
    """Tolerances of the Open3D cleaning steps (all lengths in mm)."""

    # Costly steps run on at most this many points after voxel downsampling;
    # bounds time and memory whatever the scanner's density [eng].
    max_points: int = 120_000
    # Finest voxel: handheld scanners measure a lower leg with ~1-2 mm bias
    # [lit: Farhan 2021, JFAR], so averaging below 1.5 mm buys nothing.
    min_voxel_mm: float = 1.5
    # A point cloud with fewer points than this cannot describe a limb [eng].
    min_points: int = 2_000
    # A mesh is sampled over its area to the density intake needs, whatever its
    # vertex count; with fewer triangles than this it cannot show heel, toes
    # and malleoli (a coarse real foot mesh of 1,000 vertices has ~2,000) [eng].
    min_mesh_faces: int = 200
    # Plane inlier distance: range noise (~0.3 mm) plus per-view
    # misregistration of 0.5-1 mm [typ] leaves the floor within 3 mm.
    floor_distance_mm: float = 3.0
    # The floor normal may tilt this far from the up axis (uneven platform or
    # a tilted up axis in the scanner app) [eng].
    floor_max_tilt_deg: float = 25.0
    # A plane is a floor only if most other points lie above it; a platform's
    # sides below its top hold the rest [eng].
    floor_min_share_above: float = 0.6
    # ...and it holds at least this share of the downsampled points [eng].
    floor_min_share: float = 0.03
    # ...and reaches beyond the limb's footprint (the limb's points within
    # floor_limb_band_mm above it, widened by floor_beyond_mm) over at least
    # this area, measured in cells of floor_cell_mm: a floor or platform
    # does, the cut rim of an open scan or the pads of a seen sole do not [eng].
    floor_min_beyond_mm2: float = 10_000.0
    floor_limb_band_mm: float = 50.0
    floor_beyond_mm: float = 10.0
    floor_cell_mm: float = 5.0
    ransac_iterations: int = 2_000
    # Statistical outlier removal: neighbours and standard-deviation ratio,
    # Open3D's documented defaults for scanner noise [eng].
    outlier_neighbors: int = 20
    outlier_std_ratio: float = 2.5
    # The limb is the largest piece of connected surface (clutter is what is not
    # connected to it): points join within this many voxels, or that many times
    # this percentile of the neighbour spacing where a scan is sparser than the
    # voxel (the stripes of a fast sweep over the forefoot) [eng],
    link_voxels: float = 3.0
    cluster_spacing_percentile: float = 90.0
    # ...among this many nearest neighbours [eng],
    link_neighbors: int = 12
    # ...when the chord between two points lies within acos(0.6) = 53 degrees
    # of both tangent planes: a hand or the other foot facing the skin across a
    # gap does not join; stripes of one surface do [eng].
    link_tangent_cos: float = 0.6
    # Points nearer than this many voxels always join (noise tilts normals) [eng].
    link_always_voxels: float = 1.2
    # Normal estimation neighbourhood [eng].
    normal_neighbors: int = 24


@dataclass(frozen=True)
class FrameParams:
    """Finding the plane a foot stands on when the scan has no floor (mm, degrees)."""

    # A foot hanging in plantarflexion (a seated, non-weight-bearing scan, an
    # equinus contracture: ankle angles up to ~150 deg) tilts its sole this far
    # from the leg's down direction [typ]; a standing foot's sole, none.
    plantar_max_tilt_deg: float = 70.0
    # The limb touches the plane within this band: the heel's and forefoot's
    # pads, ~2 mm of soft tissue and ~1 mm of range noise [eng].
    plantar_band_mm: float = 4.0
    # Contact is measured as covered cells of this size on the plane [eng].
    plantar_cell_mm: float = 5.0
    # The hull and the contact are found on at most this many points [eng].
    plantar_sample_points: int = 8_000
    # With no floor, the scanner's up axis (y or z) is the one along which the
    # scan ends in a planar rim (the crop at the top, an unseen sole at the
    # bottom): the last this-many mm of points span the leg or the foot...
    rim_band_mm: float = 2.0
    # ...at least this many times wider than along the other axis; when
    # neither does, every up direction is tried [eng].
    rim_ratio: float = 1.3
    # With no floor, the sole counts as scanned when at least this share of
    # the points within ``sole_band_mm`` of the plantar plane face down (their
    # outward normal within acos(``sole_down_cos``) = 45 deg of -z): a scanned
    # sole gives 0.8-0.95, a mesh whose sole is an open hole (the plane then
    # rests on the lowest rim of the foot's sides) under 0.1 [eng: measured on
    # the scan zoo's meshed, coarse and hanging cases].
    sole_band_mm: float = 10.0
    sole_down_cos: float = 0.7
    sole_seen_share: float = 0.3
    # An unseen sole with no floor under it: the rim the plane rests on lies
    # 4-8 mm above the true sole (3.6-7.6 mm on the zoo's meshed scans), so the
    # support is lowered this far and the closed sole errs outward [eng].
    unseen_sole_drop_mm: float = 8.0


@dataclass(frozen=True)
class SurfaceParams:
    """Tolerances of closing the limb into a watertight surface (mm)."""

    # Marching-cubes grid step; 2 mm resolves the toes and malleoli while a
    # 1-million-point scan closes within the intake budget [eng].
    grid_mm: float = 2.0
    # Neighbours averaged by the implicit surface (smooths range noise) [eng].
    neighbors: int = 12
    # A mesh vertex farther than this from any cleaned scan point was filled
    # in, not scanned: a grid step and a quarter, so the walls the closing
    # carries down from the lowest scanned section count as filled [eng].
    filled_distance_mm: float = 2.5
    # The ragged open top of the leg is cut flat this far below its highest
    # complete section [eng].
    top_trim_mm: float = 3.0
    # The sole closes straight down inside the outline of the scanned points
    # below this height: a standing foot's lowest 2-8 mm are never seen [eng].
    sole_band_mm: float = 12.0
    # ...with the gaps between the toes closed up to this wide [typ: toes lie
    # 2-8 mm apart]...
    toe_gap_mm: float = 10.0
    # ...except where the skin under a column was scanned more than this far
    # above the plantar plane (the arch of a foot hanging free) [eng].
    sole_seen_above_mm: float = 3.0
    # The toes begin ahead of this share of the foot's length (the metatarsal
    # heads lie at about 0.7 of it [typ]); under them the limb closes down to
    # the floor whatever was seen, so the footplate never wraps toe lobes.
    toes_from_share: float = 0.75
    # A column closes down only where the limb begins within this far above
    # the band, inside the outline or outside it (the foot's sides bulging over
    # its lowest sections): never a pillar under a tuberosity or a malleolus
    # [eng: an unseen medial arch is at most 15-20 mm high].
    sole_bulge_mm: float = 12.0
    # Sections for orienting normals: the foot's below this many foot lengths [eng].
    skeleton_foot_height: float = 0.3
    # Points above this many foot lengths orient by the leg's centre line,
    # carried down through the ankle; points below by the foot's [eng].
    skeleton_split: float = 0.22
    skeleton_step_mm: float = 5.0
    # ...and stops this share of foot length short of heel and toe tip [eng].
    skeleton_end_share: float = 0.12
    # A normal within acos(0.5) = 60 degrees of "away from the centre line" is
    # oriented by it; others take their oriented neighbours' orientation [eng].
    orient_confident_cos: float = 0.5


@dataclass(frozen=True)
class AnatomyParams:
    """Anthropometric proportions that place landmarks; all [typ] unless noted.

    Fractions are of foot length measured from the heel.
    """

    # The footprint: points below this height outline heel, forefoot and toes.
    footprint_height_mm: float = 20.0
    # The heel's most posterior point lies below this height in adults and children.
    heel_search_height_mm: float = 50.0
    # The heel and the toe tip are the middle of the skin within this of the
    # foot's rear- and foremost reach [eng].
    extreme_cap_mm: float = 1.0
    # Metatarsal heads: the forefoot's medial and lateral extremes lie in this
    # band, below this share of foot length above the floor.
    mth_band: tuple[float, float] = (0.55, 0.82)
    mth_height_share: float = 0.15
    # The sulcus (toe crease) is sought between these shares of the way from
    # the metatarsal heads' midpoint to the toe tip, or placed at this share
    # when the scan does not show it [typ: the crease lies a third to a half
    # of the way to the toe tip].
    sulcus_window: tuple[float, float] = (0.2, 0.65)
    sulcus_share: float = 0.4
    # Toes (front of the foot) and the midfoot arch, for telling the side.
    toe_band: tuple[float, float] = (0.82, 1.01)
    toe_height_share: float = 0.15
    arch_band: tuple[float, float] = (0.30, 0.60)
    # Navicular tuberosity and fifth-metatarsal base along the foot, searched
    # within a window of this share of foot length.
    navicular_fraction: float = 0.42
    navicular_height_share: float = 0.25
    mt5_base_fraction: float = 0.47
    landmark_window_share: float = 0.04
    # Malleoli: searched between these heights (shares of foot length),
    malleolus_z_band: tuple[float, float] = (0.18, 0.45)
    # ...within this share of foot length in front of or behind the shank's axis,
    ankle_column_share: float = 0.08
    # ...standing out from the narrowing within this share of foot length above.
    malleolus_drop_share: float = 0.15
    # The apex is the centre of the bump's cap: the surface within this depth
    # of its greatest reach and this far above or below its highest bin (mm).
    malleolus_cap_depth_mm: float = 1.5
    malleolus_cap_half_height_mm: float = 8.0
    # The medial malleolus sits up to this much above the lateral one (about
    # 1 cm higher [typ]), and this far behind (-) or in front of (+) it (mm).
    medial_above_lateral_mm: float = 15.0
    medial_typical_above_lateral_mm: float = 8.0
    medial_ahead_of_lateral_mm: tuple[float, float] = (-5.0, 15.0)
    # The ankle joint's centre (the talar dome's) lies this far medial of the
    # midpoint of the malleoli's apices [lit: Pikulkaew 2012, J Med Assoc Thai
    # 95 S9:S1-5: 2.1 +/- 1.1 mm on radiographs].
    ankle_centre_medial_shift_mm: float = 2.1
    # The shank's axis runs through the centres of sections above this share
    # of foot length (above the instep), binned this finely (mm).
    shank_axis_from_share: float = 0.45
    # ...or above this share of the scan's height, whichever is lower.
    shank_axis_top_share: float = 0.75
    # Sections spanning less than this share of foot length give no direction.
    shank_axis_min_span_share: float = 0.3
    skeleton_bin_mm: float = 5.0
    # Heel width is measured on the heel below this share of foot length.
    heel_width_height_share: float = 0.2
    # Width of a cross-section slab when measuring sections (mm).
    slab_mm: float = 4.0
    # Leg sections keep what lies within this share of foot length of the
    # shank's axis (an adult calf's radius is ~0.25 foot lengths).
    section_radius_share: float = 0.5
    # Malleolus height used when no bump stands out (lateral apex ~0.27 foot lengths).
    malleolus_typical_share: float = 0.27
    # The shank's axis comes from sections up to this many foot lengths above
    # the floor: the knee joint lies 1.6-1.9 above it [lit: Winter 2009,
    # Biomechanics and Motor Control of Human Movement, segment lengths as
    # shares of height H: knee 0.285 H, foot 0.152 H], and a thigh above
    # bends away from the shank [eng].
    shank_axis_to_foot_lengths: float = 1.35
    # The calf's belly is the first maximum of the girth above the ankle that
    # it does not pass by this share over the next this-many sections (2 mm
    # apart) [eng]...
    calf_plateau_share: float = 0.01
    calf_window_sections: int = 15
    # ...and at least this share wider than the ankle (a calf is ~1.5 times
    # the ankle's girth [typ]; the leg just above the ankle is nearly level).
    calf_over_ankle_share: float = 0.15
    # A scan cut at the knee shows it as a narrowing by this share above the
    # calf, then at least and at most this many sections that widen by this
    # share (the condyles at the joint line: 1-2 % on the zoo's legs) [eng].
    knee_neck_drop_share: float = 0.01
    knee_rise_share: float = 0.005
    knee_above_neck_sections: int = 12
    knee_neck_most_sections: int = 30
    # The knee is where the sections' centre line bends from the shank's into
    # the thigh's by more than this, the lines fitted over this reach below
    # and above it [eng: 15-21 deg at the joint line of the zoo's thigh-high
    # scans, up to 12 deg where the calf ends on the others'].
    knee_bend_deg: float = 13.0
    knee_bend_reach_mm: float = 50.0
    # Without the thigh in view, the knee joint line lies this many foot lengths above that narrowing
    # [eng: 0.19-0.27 on the scan zoo's MakeHuman and Visible Human legs].
    joint_above_neck_foot_lengths: float = 0.2
    # The fibular head's apex lies this far below the knee joint line [typ: 1-2 cm].
    fibular_head_below_knee_mm: float = 15.0
    # ...reaching out posterolaterally: the skin furthest this far behind the
    # lateral direction, within a slab this thick, is its apex [typ].
    fibular_head_behind_lateral_deg: float = 30.0
    fibular_head_slab_mm: float = 10.0
    # Below the knee, the knee is estimated low, as the lower of: the calf's
    # belly at most this share of the way from the ankle to the knee [eng:
    # 0.58-0.72 on the zoo's legs; the largest gives the lowest knee], and a
    # shank of this many foot lengths: 1.62 on average [lit: Winter 2009:
    # lower leg 0.246 H, foot 0.152 H], 1.38-1.63 on the zoo's legs; taken at
    # its low end [eng].
    calf_share_of_shank: float = 0.72
    shank_foot_lengths: float = 1.35
    # leg_extent: "above_knee" when the scan reaches this far above the knee
    # joint line, "knee" from this far below it, else "below_knee" [eng].
    above_knee_mm: float = 40.0
    knee_extent_tolerance_mm: float = 15.0
    # A landmark's confidence is the share of scanned skin within this radius
    # (mm); an estimated landmark's is this [eng].
    confidence_radius_mm: float = 10.0
    estimated_confidence: float = 0.25
    # A scan needs the leg this high above the floor to count as having a leg
    # (foot-only scans stop a few cm above the malleoli).
    leg_min_height_foot_lengths: float = 0.75
    # Heel width: the widest section within this distance of the heel (issue #2).
    heel_width_window_mm: float = 40.0
    # A foot reaches this many times further along its axis than the leg
    # above it is wide; a stump's end does not...
    min_foot_to_top_ratio: float = 1.6
    # ...the leg's width taken between these heights, in footprint lengths (the
    # lower shank above a foot; a stump itself above its end).
    leg_probe_heights: tuple[float, float] = (0.5, 0.8)
    # Below this many scanned points in the foot the scan has no foot.
    min_foot_points: int = 200
    # Feet shorter or longer than this are not feet (infant to large adult).
    foot_length_range_mm: tuple[float, float] = (80.0, 380.0)


@dataclass(frozen=True)
class PoseParams:
    """The ankle's pose in the scan and the design (degrees, sagittal, 90 neutral)."""

    # A foot scanned at more than this hangs in plantarflexion (a seated,
    # non-weight-bearing scan, an equinus contracture); standing scans read
    # 85-100 [typ] ...
    plantarflexed_from_deg: float = 105.0
    # ...and an AFO or leaf spring from it is designed at this angle unless
    # the prescription gives one (DOMAIN.md: neutral 90 deg) [typ].
    neutral_deg: float = 90.0
    # A turn of the shank larger than this reshapes the ankle noticeably:
    # the design says so [eng].
    large_turn_deg: float = 15.0
