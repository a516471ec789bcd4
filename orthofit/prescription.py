"""The prescription: what the orthotist orders, validated once, with visible defaults.

This module owns the prescription schema used by the CLI, the service and
batch manifests: the scan options, the device, thickness and clearance, the
material and printer, trimlines tied to landmarks, and landmark overrides.
Clinical defaults carry their source (as in ``shared/DOMAIN.md``: ``[lit]``
published, ``[typ]`` common practice); presets fill what a device needs and
what the prescription leaves out.  It must not touch geometry or files.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .params import IntakeOptions

__all__ = [
    "SCHEMA_VERSION",
    "DEVICES",
    "MATERIALS",
    "PRINTERS",
    "Material",
    "Printer",
    "ScanSpec",
    "Trimlines",
    "Prescription",
    "Relief",
    "Corrections",
    "prescription_schema",
    "case_ref_warnings",
]

SCHEMA_VERSION = 1

Device = Literal["solid-afo", "posterior-leaf-spring", "smo", "foot-orthosis"]
MaterialName = Literal["PP", "PA12", "PETG"]
PrinterName = Literal["hp-mjf-5200", "fdm-250", "custom"]
DEVICES: tuple[str, ...] = ("solid-afo", "posterior-leaf-spring", "smo", "foot-orthosis")
Footplate = Literal["three-quarter", "sulcus", "full", "toe-extension"]
LandmarkName = Literal["heel", "toe_tip", "mth1", "mth5", "sulcus", "navicular", "mt5_base",
                       "medial_malleolus", "lateral_malleolus", "ankle_center", "calf",
                       "leg_top", "fibular_head"]

# Every number in a prescription is finite: NaN and infinities are refused at
# the door (a NaN landmark or build volume would only fail deep in the design).
_STRICT = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

# Coordinates and lengths no limb or printer reaches (mm): a landmark within
# 2 m of the heel, a build volume up to 5 m [eng: bounds, not clinical limits].
_MAX_COORD_MM = 2000.0
_MAX_BUILD_MM = 5000.0
Coordinate = Annotated[float, Field(ge=-_MAX_COORD_MM, le=_MAX_COORD_MM)]
BuildLength = Annotated[float, Field(gt=0.0, le=_MAX_BUILD_MM)]


class Material(BaseModel):
    """A print material's properties (g/cm³, mm)."""

    model_config = _STRICT
    name: str
    density_g_cm3: float = Field(gt=0)
    # Thinnest wall the process prints reliably.
    printable_min_wall_mm: float = Field(gt=0)
    # Thinnest wall that still carries an orthosis's loads.
    structural_min_wall_mm: float = Field(gt=0)
    # Young's modulus (MPa) and Poisson's ratio of printed parts, for the
    # stiffness prediction, with where the modulus comes from.
    elastic_modulus_mpa: float = Field(gt=0)
    poisson_ratio: float = Field(ge=0.0, lt=0.5)
    modulus_source: str


#: Named materials.  Densities are the suppliers' published part densities;
#: minimum walls follow DOMAIN.md (a 2.0 mm structural check, Rhino Orthotic
#: Toolkit [typ]) and the processes' design guides [typ].
MATERIALS: dict[str, Material] = {
    "PP": Material(name="PP", density_g_cm3=0.90, printable_min_wall_mm=1.2,
                   structural_min_wall_mm=3.0, elastic_modulus_mpa=1500.0, poisson_ratio=0.42,
                   modulus_source="[typ] polypropylene homopolymer sheet and printed PP, "
                                  "1.2-1.7 GPa in suppliers' data sheets"),
    "PA12": Material(name="PA12", density_g_cm3=1.01, printable_min_wall_mm=0.8,
                     structural_min_wall_mm=2.0, elastic_modulus_mpa=1800.0, poisson_ratio=0.4,
                     modulus_source="[lit] HP 3D High Reusability PA 12 technical data sheet: "
                                    "tensile modulus 1800 MPa in XY and Z (ASTM D638)"),
    "PETG": Material(name="PETG", density_g_cm3=1.27, printable_min_wall_mm=0.8,
                     structural_min_wall_mm=2.5, elastic_modulus_mpa=2000.0, poisson_ratio=0.38,
                     modulus_source="[typ] PETG filament suppliers' data sheets, 1.7-2.1 GPa; "
                                    "FDM parts are softer across their layers"),
}


class Printer(BaseModel):
    """A printer's build volume (mm)."""

    model_config = _STRICT
    name: str
    build_volume_mm: tuple[BuildLength, BuildLength, BuildLength]


#: Named printers: HP MJF 5200 (380 x 284 x 380 mm) and a common FDM bed
#: (250 x 210 x 220 mm) [typ, DOMAIN.md].
PRINTERS: dict[str, Printer] = {
    "hp-mjf-5200": Printer(name="hp-mjf-5200", build_volume_mm=(380.0, 284.0, 380.0)),
    "fdm-250": Printer(name="fdm-250", build_volume_mm=(250.0, 210.0, 220.0)),
}


class ScanSpec(IntakeOptions):
    """The scan's options, as ``orthofit inspect`` takes them, and the case reference.

    A ``case_ref`` that looks like a patient's name or a date of birth is
    accepted with a warning (:func:`case_ref_warnings`).
    """

    model_config = ConfigDict(**IntakeOptions.model_config, allow_inf_nan=False)

    # A case reference, never a patient's name: letters, digits, '.', '_' and '-'.
    case_ref: str = Field(default="case", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class Trimlines(BaseModel):
    """Where the shell ends, tied to landmarks (mm).  ``None`` takes the device's preset."""

    model_config = _STRICT
    # The common peroneal nerve wraps the fibular neck: end 20-25 mm below
    # the fibular head [typ].
    proximal_below_fibular_head_mm: float = Field(default=22.0, ge=10.0, le=120.0)
    # Absolute height of the proximal edge above the floor; needed when the
    # scan does not reach the knee (no fibular head).
    proximal_height_mm: float | None = Field(default=None, gt=0.0, le=700.0)
    # Side trimlines pass this far in front of (+) or behind (-) the malleoli:
    # solid AFO 10-15 mm anterior, leaf spring 10-15 mm posterior [typ].
    anterior_offset_mm: float | None = Field(default=None, ge=-40.0, le=40.0)
    footplate: Footplate | None = None
    # Toe plate beyond the toe tip; OrthOpen leaves 15 mm [lit: OTA3D/orthopen].
    toe_extension_mm: float = Field(default=15.0, ge=0.0, le=60.0)
    # Heel cup of a foot orthosis: 10-20 mm deep [typ].
    heel_cup_height_mm: float = Field(default=15.0, ge=5.0, le=40.0)
    # SMO proximal edge 20-30 mm above the malleolus apex [typ].
    smo_height_above_malleolus_mm: float = Field(default=25.0, ge=5.0, le=60.0)
    # Edges flare a few mm away from the skin [typ].
    edge_flare_mm: float = Field(default=2.0, ge=0.0, le=8.0)


ReliefSite = Literal["medial_malleolus", "lateral_malleolus", "navicular", "mt5_base"]


class Relief(BaseModel):
    """Extra clearance over a bony prominence: ``depth_mm`` at the landmark, easing to 0."""

    model_config = _STRICT
    at: ReliefSite
    # Malleolar relief (the bubble over the ankle bumps): 3-6 mm [typ].
    depth_mm: float = Field(default=4.0, gt=0.0, le=8.0)
    # Radius over which the relief eases back to the plain clearance; a
    # malleolus is about 25-30 mm across [eng].
    radius_mm: float = Field(default=20.0, ge=8.0, le=40.0)


class Corrections(BaseModel):
    """Clinical corrections of the plain offset shell, tied to landmarks."""

    model_config = _STRICT
    # None takes the device's preset: both malleoli relieved for AFOs, leaf
    # springs and SMOs, nothing for foot orthoses; [] relieves nothing.
    reliefs: list[Relief] | None = None
    # Growth allowance for children: the footplate this much longer, and the
    # foot's section this much wider (split between the sides) [typ: 5-10 mm].
    growth_length_mm: float = Field(default=0.0, ge=0.0, le=25.0)
    growth_width_mm: float = Field(default=0.0, ge=0.0, le=12.0)
    # Design for the other side from a mirrored scan (only one limb scanned).
    mirror: bool = False
    # The ankle angle to hold: the shank's angle to the footplate in the
    # sagittal plane, 90 neutral, under 90 dorsiflexion, over 90
    # plantarflexion; None keeps the scanned angle.  Clinical range about
    # 15 degrees either way [typ].
    ankle_angle_deg: float | None = Field(default=None, ge=75.0, le=110.0)
    # Supports press the footplate into the sole on purpose (mm above the
    # scanned sole at their centre): a medial longitudinal arch support under
    # the navicular, 5-15 mm [typ]; a metatarsal pad behind the metatarsal
    # heads, 3-6 mm [typ].
    arch_support_mm: float = Field(default=0.0, ge=0.0, le=15.0)
    metatarsal_pad_mm: float = Field(default=0.0, ge=0.0, le=8.0)
    # Heel posting (intrinsic): the heel's seat tilted across the foot by
    # this many degrees, its medial side raised (inverting the heel) or its
    # lateral side (everting it); rearfoot posts are 2-6 degrees, rarely
    # over 8 [typ].  One side only.
    heel_post_medial_deg: float = Field(default=0.0, ge=0.0, le=10.0)
    heel_post_lateral_deg: float = Field(default=0.0, ge=0.0, le=10.0)
    # Heel cup depth of a foot orthosis (mm), 10-20 [typ]; None keeps
    # trimlines.heel_cup_height_mm, which this sets when given.
    heel_cup_depth_mm: float | None = Field(default=None, ge=5.0, le=40.0)
    # The shoe's heel pitch: its heel seat this much above its forefoot floor
    # (mm); everyday shoes 10-25, children's 5-15 [typ].  The footplate's
    # underside ahead of the metatarsal heads follows the shoe's forefoot
    # floor, so the device stands flush in the shoe.
    shoe_heel_pitch_mm: float = Field(default=0.0, ge=0.0, le=40.0)


StrapSite = Literal["proximal_calf", "ankle", "forefoot"]


class Strap(BaseModel):
    """A strap through a pair of slots, one each side of the limb, tied to landmarks."""

    model_config = _STRICT
    # proximal_calf: just below the proximal edge; ankle: across the instep in
    # front of the malleoli; forefoot: behind the metatarsal heads.
    at: StrapSite
    # Strap widths stocked by O&P suppliers: 25, 38 and 50 mm (1, 1.5, 2 in)
    # [typ]; auto takes the widest whose slots keep the margin.
    width_mm: Literal[25, 38, 50, "auto"] = "auto"


class Vents(BaseModel):
    """Ventilation holes over the calf section."""

    model_config = _STRICT
    # Holes of 5-10 mm with bridges at least as wide keep a perforated PP
    # or PA12 shell stiff [typ].
    diameter_mm: float = Field(default=8.0, ge=4.0, le=15.0)
    bridge_mm: float = Field(default=10.0, ge=4.0, le=40.0)


class Label(BaseModel):
    """Case reference, side, device and date on the outer face of the footplate's underside."""

    model_config = _STRICT
    # The date printed: given, never the clock, so reruns stay byte-identical.
    date: str = Field(pattern=r"^\d{4}-\d{2}-\d{2}$")
    style: Literal["deboss", "emboss"] = "deboss"
    # Depth sunk or height raised (mm); 0.5-1 mm reads well on MJF and FDM prints [typ].
    depth_mm: float = Field(default=0.6, ge=0.3, le=1.5)


class Attachments(BaseModel):
    """Straps, ventilation and a label, each keeping the shell strong and printable."""

    model_config = _STRICT
    straps: list[Strap] = Field(default_factory=list)
    vents: Vents | None = None
    label: Label | None = None
    # Solid material kept between a slot or vent hole and any trim edge,
    # relief, the leaf spring's neck or another hole: about two wall
    # thicknesses [eng].
    margin_mm: float = Field(default=6.0, ge=3.0, le=20.0)


_MALLEOLI = [Relief(at="medial_malleolus"), Relief(at="lateral_malleolus")]

#: Per-device presets for what the prescription leaves as None.
DEVICE_PRESETS: dict[str, dict[str, object]] = {
    "solid-afo": {"anterior_offset_mm": 12.0, "footplate": "full"},
    "posterior-leaf-spring": {"anterior_offset_mm": -12.0, "footplate": "full"},
    "smo": {"anterior_offset_mm": 12.0, "footplate": "full"},
    "foot-orthosis": {"anterior_offset_mm": 0.0, "footplate": "sulcus"},
}

#: Default wall thickness per material: thermoformed PP 3-5 mm, printed PA12
#: ~3-4 mm [typ]; PETG as PP.
DEFAULT_THICKNESS_MM = {"PP": 4.0, "PA12": 3.5, "PETG": 4.0}


class Prescription(BaseModel):
    """An orthosis prescription.

    Examples
    --------
    >>> rx = Prescription(device="smo", material="PA12")
    >>> rx.thickness_mm, rx.clearance_mm, rx.trimlines.footplate
    (3.5, 2.0, 'full')
    >>> Prescription(device="solid-afo", thickness_mm=0.5)
    Traceback (most recent call last):
    ...
    pydantic_core._pydantic_core.ValidationError: 1 validation error for Prescription
    ...
    """

    model_config = _STRICT
    schema_version: Literal[1] = SCHEMA_VERSION
    scan: ScanSpec = ScanSpec()
    device: Device = "solid-afo"
    # Wall thickness; None takes the material's default.  WASP-Med bounds
    # 3-6 mm; 2.0 mm is the structural floor checked by the Rhino Orthotic
    # Toolkit [typ]; 8 mm leaves room for stiff adult devices.
    thickness_mm: float | None = Field(default=None, ge=2.0, le=8.0)
    # Sock or liner gap between skin and shell: 1-3 mm [typ].
    clearance_mm: float = Field(default=2.0, ge=0.0, le=6.0)
    material: MaterialName = "PA12"
    printer: PrinterName = "hp-mjf-5200"
    # Build volume of a custom printer (mm); required when printer is "custom".
    build_volume_mm: tuple[BuildLength, BuildLength, BuildLength] | None = None
    trimlines: Trimlines = Trimlines()
    # Landmarks in the device frame (mm) that replace the detected ones.
    landmark_overrides: dict[LandmarkName, tuple[Coordinate, Coordinate, Coordinate]] = Field(
        default_factory=dict)
    corrections: Corrections = Corrections()
    attachments: Attachments = Attachments()
    # Predict the ankle stiffness of AFOs and leaf springs by finite elements
    # (report.json "stiffness"); false skips the solve.
    predict_stiffness: bool = True
    # Design to this sagittal ankle stiffness (N·m/deg, k_axis: turned about
    # the malleolar axis): the neck's trimline first, then the thickness,
    # within clinical bounds.  Commercial AFOs measure 0.58-3.66 [lit:
    # Shuman & Russell Esposito 2021].
    target_stiffness_nm_per_deg: float | None = Field(default=None, gt=0.0, le=20.0)

    @model_validator(mode="after")
    def _fill_presets(self) -> "Prescription":
        if self.thickness_mm is None:
            object.__setattr__(self, "thickness_mm", DEFAULT_THICKNESS_MM[self.material])
        preset = DEVICE_PRESETS[self.device]
        filled = {k: v for k, v in preset.items() if getattr(self.trimlines, k) is None}
        if filled:
            object.__setattr__(self, "trimlines", self.trimlines.model_copy(update=filled))
        if self.corrections.reliefs is None:
            reliefs = [] if self.device == "foot-orthosis" else list(_MALLEOLI)
            object.__setattr__(self, "corrections",
                               self.corrections.model_copy(update={"reliefs": reliefs}))
        _refuse_impossible_corrections(self)
        _refuse_impossible_attachments(self)
        if self.target_stiffness_nm_per_deg is not None:
            if self.device not in ("solid-afo", "posterior-leaf-spring"):
                raise ValueError(f"target_stiffness_nm_per_deg sets the stiffness of a calf "
                                 f"section about the ankle, and device {self.device} has none; "
                                 f"prescribe a solid-afo or posterior-leaf-spring, or drop the "
                                 f"target")
            if not self.predict_stiffness:
                raise ValueError("target_stiffness_nm_per_deg is confirmed by the stiffness "
                                 "prediction, and predict_stiffness is false; drop one of them")
        if self.printer == "custom":
            if self.build_volume_mm is None or min(self.build_volume_mm) <= 0:
                raise ValueError("printer 'custom' needs build_volume_mm: three positive "
                                 "lengths in mm")
        elif self.build_volume_mm is not None:
            raise ValueError("build_volume_mm is only for printer 'custom'")
        mat = MATERIALS[self.material]
        if self.thickness_mm < mat.structural_min_wall_mm:
            raise ValueError(f"thickness_mm {self.thickness_mm} is below the "
                             f"{mat.structural_min_wall_mm} mm structural minimum of "
                             f"{mat.name}")
        return self

    @property
    def material_spec(self) -> Material:
        return MATERIALS[self.material]

    @property
    def printer_spec(self) -> Printer:
        if self.printer == "custom":
            return Printer(name="custom", build_volume_mm=self.build_volume_mm)
        return PRINTERS[self.printer]


def _refuse_impossible_attachments(rx: Prescription) -> None:
    """Refuse attachments the device has no place for, naming both parameters."""
    a = rx.attachments
    sites = [strap.at for strap in a.straps]
    if len(set(sites)) < len(sites):
        raise ValueError("attachments.straps gives one site twice; one strap per site")
    if rx.device == "foot-orthosis" and sites:
        raise ValueError("attachments.straps need side walls to hold them, and device "
                         "foot-orthosis is worn in the shoe without straps; drop the straps")
    if "proximal_calf" in sites and rx.device == "smo":
        raise ValueError("attachments.straps at proximal_calf need a calf section, and device "
                         "smo has none; use ankle or forefoot")
    if a.vents is not None and rx.device not in ("solid-afo", "posterior-leaf-spring"):
        raise ValueError(f"attachments.vents perforate the calf section, and device "
                         f"{rx.device} has none; drop the vents")
    if a.label is not None and a.label.style == "deboss":
        room = rx.thickness_mm - rx.material_spec.structural_min_wall_mm
        if a.label.depth_mm > room + 1e-9:
            raise ValueError(f"attachments.label.depth_mm {a.label.depth_mm} would leave less "
                             f"than the {rx.material_spec.structural_min_wall_mm} mm structural "
                             f"minimum of {rx.material} under a thickness_mm of "
                             f"{rx.thickness_mm}; deboss at most {room:.1f} mm or emboss")


def _refuse_impossible_corrections(rx: Prescription) -> None:
    """Refuse corrections that cannot go together, naming both parameters; fill heel cup depth."""
    c = rx.corrections
    if c.ankle_angle_deg is not None and rx.device in ("smo", "foot-orthosis"):
        raise ValueError(f"corrections.ankle_angle_deg holds the ankle with a calf section, "
                         f"and device {rx.device} has none; prescribe a solid-afo or "
                         f"posterior-leaf-spring, or drop the ankle angle")
    if c.heel_post_medial_deg > 0 and c.heel_post_lateral_deg > 0:
        raise ValueError("corrections.heel_post_medial_deg and "
                         "corrections.heel_post_lateral_deg tilt the heel opposite ways; "
                         "prescribe one of them")
    if rx.trimlines.footplate == "three-quarter":
        for name in ("growth_length_mm", "metatarsal_pad_mm", "shoe_heel_pitch_mm"):
            if getattr(c, name) > 0:
                raise ValueError(f"corrections.{name} acts at or beyond the metatarsal "
                                 f"heads, and trimlines.footplate three-quarter ends behind "
                                 f"them; prescribe a sulcus, full or toe-extension footplate, "
                                 f"or drop {name}")
    if c.heel_cup_depth_mm is not None:
        if rx.device != "foot-orthosis":
            raise ValueError(f"corrections.heel_cup_depth_mm shapes a foot orthosis's heel "
                             f"cup, and device {rx.device} wraps the heel up to its own "
                             f"trimlines; drop heel_cup_depth_mm or prescribe a "
                             f"foot-orthosis")
        given = "heel_cup_height_mm" in rx.trimlines.model_fields_set
        if given and rx.trimlines.heel_cup_height_mm != c.heel_cup_depth_mm:
            raise ValueError(f"corrections.heel_cup_depth_mm {c.heel_cup_depth_mm} and "
                             f"trimlines.heel_cup_height_mm {rx.trimlines.heel_cup_height_mm} "
                             f"give the heel cup two depths; give one of them")
        object.__setattr__(rx, "trimlines", rx.trimlines.model_copy(
            update={"heel_cup_height_mm": c.heel_cup_depth_mm}))


# Dates as clinics write them: 1980-04-12, 12.04.1980, 12/04/80, 19800412, 12041980.
_DATE_PATTERNS = (
    (re.compile(r"(?<!\d)(\d{4})[-._/]?(\d{2})[-._/]?(\d{2})(?!\d)"), ("y", "m", "d")),
    (re.compile(r"(?<!\d)(\d{1,2})[-._/](\d{1,2})[-._/](\d{2}|\d{4})(?!\d)"), ("d", "m", "y")),
    (re.compile(r"(?<!\d)(\d{2})(\d{2})(\d{4})(?!\d)"), ("d", "m", "y")),
)
# A word of letters, as names are written (not a code like C or AB12).
_WORD = re.compile(r"[A-Za-z]{2,}")


def case_ref_warnings(case_ref: str) -> list[str]:
    """Warnings for a case reference that looks like a patient's name or date of birth.

    The rule: a warning when the reference holds a calendar date (1980-04-12,
    12.04.1980, 12-4-80, 19800412, 12041980), or two or more words of
    letters (Jane_Doe, doe.jane).  References such as C-0007 or case-2291 pass.

    >>> case_ref_warnings("C-0007")
    []
    >>> [w.split(";")[0] for w in case_ref_warnings("Jane_Doe-1980-04-12")]
    ['case_ref Jane_Doe-1980-04-12 looks like a name', 'case_ref Jane_Doe-1980-04-12 holds a date']
    """
    warnings = []
    words = [w for w in re.split(r"[._\-\d]+", case_ref) if _WORD.fullmatch(w)]
    if len(words) >= 2:
        warnings.append(f"case_ref {case_ref} looks like a name; use the clinic's case "
                        "number, never the patient's name")
    if _holds_date(case_ref):
        warnings.append(f"case_ref {case_ref} holds a date; if it is a date of birth, use "
                        "the clinic's case number instead")
    return warnings


def _holds_date(text: str) -> bool:
    for pattern, order in _DATE_PATTERNS:
        for match in pattern.finditer(text):
            parts = dict(zip(order, map(int, match.groups())))
            year = parts["y"] + (1900 if parts["y"] < 100 else 0)
            try:
                date(year, parts["m"], parts["d"])
            except ValueError:
                continue
            if 1900 <= year <= 2100:
                return True
    return False


def prescription_schema() -> dict:
    """The prescription's JSON Schema (what ``orthofit schema prescription`` prints)."""
    return Prescription.model_json_schema()
