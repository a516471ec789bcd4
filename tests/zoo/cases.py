"""The zoo's named cases: every parameter that makes a scan, and the CI subset.

This module owns the list of cases and the MakeHuman body presets they use.
A ``Case`` is plain data (hashable, JSON-able); ``generate`` turns one into
files. It must not compute geometry.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

__all__ = ["BODIES", "CASES", "CI_SUBSET", "Body", "Case", "case"]


@dataclass(frozen=True)
class Body:
    """A MakeHuman body: morph target weights (``{s}`` = each side) and an optional
    uniform scale to a foot length (children)."""

    targets: tuple[tuple[str, float], ...] = ()
    foot_length_mm: float | None = None
    child: bool = False


BODIES: dict[str, Body] = {
    "adult": Body(),
    # a fuller, softer calf and ankle (a common AFO user's shank)
    "fatcalf": Body((("legs/measure-calf-circ-incr", 0.7), ("legs/{s}-lowerleg-fat-incr", 1.0),
                     ("feet/measure-ankle-circ-incr", 0.6))),
    # a slim, long shank and a narrow foot
    "slim": Body((("legs/{s}-lowerleg-scale-vert-incr", 0.6), ("legs/measure-calf-circ-decr", 0.8),
                  ("feet/{s}-foot-scale-horiz-decr", 0.5))),
    # a long, deep foot
    "bigfoot": Body((("feet/{s}-foot-scale-incr", 0.6), ("feet/{s}-foot-scale-depth-incr", 0.5))),
    # knock-kneed, with a thin lower leg
    "valgus": Body((("legs/{s}-leg-valgus-incr", 1.0), ("legs/{s}-lowerleg-muscle-decr", 0.7))),
    # children: morphs for a child's proportions, then a uniform scale to the foot length
    # (foot ~155 mm at ~4 years, ~175 mm at ~6, ~195 mm at ~9 [typ])
    "child4": Body((("feet/{s}-foot-scale-vert-incr", 0.4), ("legs/{s}-lowerleg-fat-incr", 0.5),
                    ("legs/{s}-lowerleg-scale-vert-decr", 0.5)), 155.0, True),
    "child6": Body((("legs/{s}-lowerleg-muscle-decr", 0.6), ("feet/{s}-foot-scale-horiz-incr", 0.3),
                    ("legs/measure-knee-circ-decr", 0.5)), 175.0, True),
    "child9": Body((("legs/{s}-lowerleg-scale-horiz-decr", 0.5), ("legs/{s}-lowerleg-scale-vert-incr",
                                                                  0.3)), 195.0, True),
}


@dataclass(frozen=True)
class Case:
    """Everything that makes one zoo scan (lengths mm, angles degrees).

    source : ``makehuman`` or ``visible_human`` (``body`` is ignored for the latter)
    extent : ``above_knee`` (cut ``cut_mm`` above the knee joint centre, mid-thigh),
        ``knee`` (at the knee joint centre's height), ``below_knee`` (``cut_mm`` below
        it) or ``foot_only`` (``cut_mm`` above the ankle joint centre)
    pose : ``standing`` (on ``support`` ``floor`` or ``platform``) or ``hanging``
        (no support, the foot unsupported; the foot turned down ``plantarflex_deg`` from
        the source's own: MakeHuman's and the Visible Human's feet are both near neutral,
        so a hanging VH case with no ``plantarflex_deg`` has a neutral foot)
    press_mm : how far a standing sole is flattened onto the support (weight bearing)
    contact_mm : the lowest height of the foot's sides the scanner cannot see
    capture : ``points``, ``mesh`` (TSDF-fused, holes, no floor), ``coarse_mesh``
        (decimated to ~``points`` vertices) or ``dense`` (a 1-3 M point cloud)
    fmt : file format (see ``exchange.SCAN_FORMATS``)
    points : points kept in a cloud, or the coarse mesh's target vertex count
    clutter : any of ``hand``, ``stool_leg``, ``other_foot``
    stray : stray points (clouds) or stray specks (meshes)
    """

    name: str
    source: str = "makehuman"
    body: str = "adult"
    side: str = "left"
    units: str = "mm"
    up: str = "y"
    extent: str = "below_knee"
    cut_mm: float = 30.0
    pose: str = "standing"
    support: str = "floor"
    weight_bearing: str = "full"
    press_mm: float = 3.0
    contact_mm: float = 4.0
    plantarflex_deg: float = 0.0
    capture: str = "points"
    fmt: str = "ply"
    points: int = 80_000
    noise_mm: float = 0.3
    sweeps: int = 3
    frames_per_sweep: int = 30
    image_px: tuple[int, int] = (112, 84)
    clutter: tuple[str, ...] = ()
    stray: int = 0
    holes: int = 0
    seed: int = 0
    platform_mm: float = 100.0
    tags: tuple[str, ...] = field(default=())

    @property
    def dense(self) -> bool:
        return self.capture == "dense"

    def params(self) -> dict:
        """Every parameter as plain data (for the truth's ``generator`` and the cache key)."""
        return asdict(self)


def _mh(name: str, **kw) -> Case:
    return Case(name=name, **kw)


def _vh(name: str, **kw) -> Case:
    kw.setdefault("pose", "hanging")
    kw.setdefault("support", "none")
    kw.setdefault("weight_bearing", "none")
    kw.setdefault("press_mm", 0.0)
    kw.setdefault("contact_mm", 0.0)
    return Case(name=name, source="visible_human", body="vh", **kw)


def _hang(name: str, deg: float, **kw) -> Case:
    return Case(name=name, pose="hanging", support="none", weight_bearing="none", press_mm=0.0,
                contact_mm=0.0, plantarflex_deg=deg, **kw)


_MESH = dict(capture="mesh", fmt="stl", units="mm", up="y", holes=6, sweeps=4,
             frames_per_sweep=34, image_px=(144, 108))
_COARSE = dict(capture="coarse_mesh", units="m", points=1000, sweeps=3, frames_per_sweep=28,
               image_px=(112, 84))
_DENSE = dict(capture="dense", sweeps=4, frames_per_sweep=60, image_px=(320, 240))

CASES: tuple[Case, ...] = (
    # --- MakeHuman, standing on a floor or a platform: point clouds
    _mh("mh_adult_l_floor_bk30_ply_mm_y", seed=101, extent="below_knee", cut_mm=30,
        stray=400, contact_mm=4.0),
    _mh("mh_adult_r_floor_knee_xyz_m_z", seed=102, side="right", extent="knee", units="m",
        up="z", fmt="xyz", clutter=("stool_leg",), stray=300, contact_mm=5.0, press_mm=3.5),
    _mh("mh_adult_l_floor_thigh_pcd_in_y", seed=103, extent="above_knee", cut_mm=200,
        units="in", fmt="pcd", clutter=("hand",), stray=300, points=110_000, contact_mm=3.0),
    _mh("mh_fatcalf_r_platform_bk50_plyascii_mm_z", seed=104, body="fatcalf", side="right",
        support="platform", platform_mm=120, weight_bearing="semi", press_mm=1.5, cut_mm=50,
        up="z", fmt="ply_ascii", clutter=("other_foot",), stray=200, contact_mm=2.5,
        points=60_000),
    _mh("mh_slim_l_platform_knee_pcdascii_in_z", seed=105, body="slim", support="platform",
        platform_mm=80, extent="knee", units="in", up="z", fmt="pcd_ascii", press_mm=2.0,
        contact_mm=6.0, weight_bearing="semi", noise_mm=0.45, stray=250),
    _mh("mh_child6_l_floor_bk20_ply_mm_y", seed=106, body="child6", cut_mm=20,
        clutter=("hand",), stray=300, press_mm=2.0, contact_mm=3.0, points=60_000),
    _mh("mh_child4_r_floor_knee_xyz_m_y", seed=107, body="child4", side="right", extent="knee",
        units="m", fmt="xyz", press_mm=1.5, contact_mm=2.0, points=50_000, noise_mm=0.25),
    _mh("mh_child9_r_floor_thigh_pcd_mm_z", seed=108, body="child9", side="right",
        extent="above_knee", cut_mm=150, up="z", fmt="pcd", clutter=("other_foot",),
        stray=300, press_mm=2.5, contact_mm=4.0),
    _mh("mh_bigfoot_r_floor_bk10_ply_in_y", seed=109, body="bigfoot", side="right", cut_mm=10,
        units="in", clutter=("stool_leg",), stray=200, press_mm=4.0, contact_mm=7.0),
    _mh("mh_valgus_l_floor_bk60_ply_m_z", seed=110, body="valgus", cut_mm=60, units="m",
        up="z", clutter=("stool_leg", "hand"), stray=500, contact_mm=5.0, noise_mm=0.5),
    _mh("mh_adult_r_floor_foot_ply_mm_z", seed=111, side="right", extent="foot_only",
        cut_mm=45, up="z", clutter=("other_foot",), stray=200, contact_mm=4.0, points=50_000),
    _mh("mh_child6_l_platform_foot_xyz_m_y", seed=112, body="child6", extent="foot_only",
        cut_mm=35, support="platform", platform_mm=60, units="m", fmt="xyz", press_mm=1.0,
        weight_bearing="semi", contact_mm=2.0, points=40_000),
    _mh("mh_fatcalf_l_floor_bk40_pcd_m_y", seed=113, body="fatcalf", cut_mm=40, units="m",
        fmt="pcd", contact_mm=8.0, press_mm=5.0, stray=300),
    _mh("mh_adult_r_platform_thigh_ply_mm_y", seed=114, side="right", extent="above_knee",
        cut_mm=220, support="platform", platform_mm=150, clutter=("hand", "stool_leg"),
        stray=400, contact_mm=3.5, points=120_000),
    # --- MakeHuman, sitting, the foot hanging in plantarflexion: point clouds
    _hang("mh_adult_l_hang35_bk40_ply_mm_y", 35, seed=121, cut_mm=40, stray=300),
    _hang("mh_adult_r_hang45_knee_pcd_in_z", 45, seed=122, side="right", extent="knee",
          units="in", up="z", fmt="pcd", clutter=("hand",), stray=300),
    _hang("mh_fatcalf_l_hang40_thigh_xyz_m_y", 40, seed=123, body="fatcalf", extent="above_knee",
          cut_mm=180, units="m", fmt="xyz", points=100_000),
    _hang("mh_child6_r_hang38_bk30_ply_mm_z", 38, seed=124, body="child6", side="right",
          cut_mm=30, up="z", clutter=("hand",), stray=200, points=60_000),
    _hang("mh_child4_l_hang50_foot_ply_mm_y", 50, seed=125, body="child4", extent="foot_only",
          cut_mm=40, points=40_000),
    _hang("mh_slim_r_hang30_bk20_plyascii_m_z", 30, seed=126, body="slim", side="right",
          cut_mm=20, units="m", up="z", fmt="ply_ascii", stray=250, noise_mm=0.4),
    _hang("mh_child9_l_hang42_bk50_xyz_in_y", 42, seed=127, body="child9", cut_mm=50,
          units="in", fmt="xyz", clutter=("stool_leg",), points=60_000),
    # --- Visible Human Female legs: point clouds. The model's own feet are near neutral
    # (~88-91 deg, not plantarflexed as shared/data/README.md says); plantarflex_deg turns
    # them, and the cases without it hang (no floor) with the feet as they are (~87 deg)
    _vh("vh_l_thigh_ply_mm_y", seed=131, plantarflex_deg=35, extent="above_knee", cut_mm=180, stray=300),
    _vh("vh_r_knee_xyz_m_z", seed=132, side="right", extent="knee", units="m", up="z",
        fmt="xyz"),
    _vh("vh_l_bk30_pcd_in_y", seed=133, plantarflex_deg=30, cut_mm=30, units="in", fmt="pcd", clutter=("hand",),
        stray=300),
    _vh("vh_r_bk50_ply_mm_z", seed=134, side="right", cut_mm=50, up="z", stray=400,
        noise_mm=0.45),
    _vh("vh_l_foot_plyascii_mm_z", seed=135, plantarflex_deg=40, extent="foot_only", cut_mm=50, up="z",
        fmt="ply_ascii", points=40_000),
    # --- meshed scans: TSDF-fused, small holes, no floor; binary STL, Y up, mm
    _mh("mh_adult_l_floor_bk30_mesh_stl", seed=141, stray=20, **_MESH),
    _mh("mh_child6_r_floor_knee_mesh_stl", seed=142, body="child6", side="right",
        extent="knee", press_mm=2.0, contact_mm=3.0, clutter=("hand",), **_MESH),
    _hang("mh_adult_r_hang40_bk30_mesh_stl", 40, seed=143, side="right", **_MESH),
    _mh("mh_fatcalf_l_platform_thigh_mesh_stlascii", seed=144, body="fatcalf",
        extent="above_knee", cut_mm=160, support="platform", weight_bearing="semi",
        press_mm=1.5, contact_mm=3.0, **{**_MESH, "fmt": "stl_ascii"}),
    _vh("vh_r_bk20_mesh_plymesh", seed=145, plantarflex_deg=32, side="right", cut_mm=20,
        **{**_MESH, "fmt": "ply_mesh"}),
    # --- coarse meshes of ~1,000 vertices, metres
    _mh("mh_adult_l_floor_bk30_coarse_obj_m_y", seed=151, fmt="obj", **_COARSE),
    _hang("mh_child6_l_hang35_bk20_coarse_off_m_z", 35, seed=152, body="child6", cut_mm=20,
          up="z", fmt="off", **_COARSE),
    _vh("vh_r_knee_coarse_glb_m_y", seed=154, side="right", extent="knee", fmt="glb",
        **_COARSE),
    # --- dense clouds (CI skips these)
    _mh("mh_adult_r_floor_bk30_dense_ply_mm_z", seed=161, side="right", up="z", fmt="ply",
        points=2_000_000, stray=2000, clutter=("stool_leg",), **_DENSE),
    _vh("vh_l_knee_dense_ply_m_y", seed=162, plantarflex_deg=38, extent="knee", units="m", fmt="ply",
        points=1_500_000, **_DENSE),
)

CI_SUBSET: tuple[str, ...] = (
    "mh_adult_l_floor_bk30_ply_mm_y",
    "mh_fatcalf_r_platform_bk50_plyascii_mm_z",
    "mh_child6_l_floor_bk20_ply_mm_y",
    "mh_adult_r_floor_foot_ply_mm_z",
    "mh_adult_l_hang35_bk40_ply_mm_y",
    "vh_l_thigh_ply_mm_y",
    "mh_adult_l_floor_bk30_mesh_stl",
    "mh_adult_l_floor_bk30_coarse_obj_m_y",
    "mh_adult_l_floor_thigh_pcd_in_y",
)

_BY_NAME = {c.name: c for c in CASES}
if len(_BY_NAME) != len(CASES):
    raise RuntimeError("two zoo cases share a name")


def case(name: str) -> Case:
    """The case called ``name``; ``KeyError`` naming the known cases otherwise."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"no zoo case {name!r}; known: {', '.join(sorted(_BY_NAME))}") from None


