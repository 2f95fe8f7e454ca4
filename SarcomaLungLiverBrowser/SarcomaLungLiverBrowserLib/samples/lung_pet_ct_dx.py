"""A small Lung-PET-CT-Dx sample: CT and PET series with VOC boxes, in both download layouts.

What is real here (``shared/notes/lung_voc.md``) and what is scaled:

* Layouts: patients A0001 and G0003 in the NBIA layout (``manifest-1608669183333``
  with ``metadata.csv``, folders such as ``04-04-2007-NA-Chest-07990/2.000000-5mm-40805``),
  patient B0002 in idc-index's layout (``lung_pet_ct_dx/<PatientID>/<StudyUID>/
  <Modality>_<SeriesUID>/<uuid>.dcm``); the boxes in ``Annotation/<A0001>/<SOPInstanceUID>.xml``.
* Each patient has two CT reconstruction series of one study, both annotated,
  boxes differing by a pixel or two between them (§2), and one PET series.
* CT is 128x128 instead of 512x512: four times the real pixel spacing
  (0.841796875 mm -> 3.3671875 mm), so the field of view (431 mm) is the real one.
  PET is 96x96 at 4.07 mm (the collection's PET pixel size, a smaller matrix).
  Slices: CT 5 or 8 mm as in the real A0001/A0002 series; PET 3.27 mm.
* XML quirks from the real files: no declaration, ``verified="no"``, "Unknow"
  placeholders, ``<Difficult>``, 512/512/1 in ``<size>`` whatever the image
  (as the real files say; the loader uses the image's own size); plus the
  pitfalls the notes report for the full collection: two objects in one file,
  ``<name>Q</name>``, a lower-case name, an XML whose SOPInstanceUID is in no
  series, a series with images lacking PixelSpacing, a box partly outside the
  image, a duplicate box, a lesion with a skipped slice, a truncated XML.

Lesions are ellipsoids in patient space; every series gets boxes on the
slices the ellipsoid crosses, computed through that series' own geometry.
:func:`ground_truth` gives what a correct loader must find, without writing
anything. :func:`generate_real_geometry_case` writes a 512x512 case with the
DICOM facts of the real A0002 XMLs (for tests; about 12 MB).
"""
from __future__ import annotations

import math
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import pydicom

from ..formats.voc_xml import VocAnnotation, VocObject, format_voc
from .dicom_writer import (
    SeriesSpec,
    WrittenSeries,
    facts_of,
    idc_series_folder,
    nbia_series_folder,
    uid_from_seed,
    write_nbia_metadata_csv,
    write_series,
)

__all__ = ["generate", "ground_truth", "plan", "CaseTruth", "generate_real_geometry_case", "parse_sources_txt",
           "ROOT_NAME", "MANIFEST", "DOI_URL"]

ROOT_NAME = "Lung-PET-CT-Dx"
MANIFEST = "manifest-1608669183333"
DOI_URL = "https://doi.org/10.7937/TCIA.2020.NNC20461"
CT_SPACING = 0.841796875 * 4
PET_SPACING = 4.07
PET_SLICE_SPACING = 3.27
SEED = 20201222


# ---------------------------------------------------------------------- plan
@dataclass(frozen=True)
class Ellipsoid:
    """A lesion in LPS (mm): centre and semi-axes."""

    center: Tuple[float, float, float]
    radii: Tuple[float, float, float]


@dataclass
class BoxPlan:
    """One ``<object>`` of one XML, on slice ``k`` (volume order, increasing z)."""

    k: int
    lesion: int
    box: Tuple[int, int, int, int]
    name: str
    difficult: bool = False


@dataclass
class SeriesPlan:
    """One image series and the boxes drawn on it."""

    key: str
    modality: str
    series_number: int
    description: str
    rows: int
    columns: int
    pixel_spacing: float
    slice_spacing: float
    slices: int
    top_left: Tuple[float, float]
    z_first: float
    boxes: List[BoxPlan] = field(default_factory=list)
    #: volume slice indices whose images lack PixelSpacing
    missing_spacing: Tuple[int, ...] = ()
    #: per-series shift of box edges (pixels), "differing by a few pixels"
    jitter: Tuple[int, int, int, int] = (0, 0, 0, 0)

    def position(self, k: int) -> Tuple[float, float, float]:
        return (self.top_left[0], self.top_left[1], self.z_first + k * self.slice_spacing)


@dataclass
class PatientPlan:
    """One patient: series, lesions, layout and the XML quirks to write."""

    patient_id: str
    layout: str
    study_date: str
    study_description: str
    manufacturer: str
    lesions: List[Ellipsoid]
    series: List[SeriesPlan]
    #: (series key, k) of an XML written truncated (malformed)
    malformed: Optional[Tuple[str, int]] = None
    #: (series key, k) of an XML whose box repeats
    duplicate: Optional[Tuple[str, int]] = None
    #: (series key, k) of a box widened past the image's left edge
    outside: Optional[Tuple[str, int]] = None
    #: (series key, k, name) of boxes whose <name> is odd
    odd_names: Tuple[Tuple[str, int, str], ...] = ()
    #: (series key, k) of lesion boxes dropped to make a gap
    dropped: Tuple[Tuple[str, int], ...] = ()
    #: an XML for an image that is not in any series
    unmatched_xml: bool = False
    #: (series key, k) of an extra box on an image lacking PixelSpacing
    box_without_geometry: Optional[Tuple[str, int]] = None

    @property
    def letter(self) -> str:
        return self.patient_id.split("-")[1][0]

    @property
    def study_uid(self) -> str:
        return uid_from_seed(SEED, self.patient_id, "study")

    def series_uid(self, series: SeriesPlan) -> str:
        return uid_from_seed(SEED, self.patient_id, series.key)

    @property
    def frame_uid(self) -> str:
        return uid_from_seed(SEED, self.patient_id, "frame")


def _ct(key: str, number: int, description: str, slices: int, slice_spacing: float, z_first: float,
        jitter: Tuple[int, int, int, int] = (0, 0, 0, 0)) -> SeriesPlan:
    # Real A0001's IPP x/y, moved by 1.5 real pixels so the 4x coarser grid keeps the field of view.
    origin = (-228.036842 + 1.5 * 0.841796875, -93.0631599 + 1.5 * 0.841796875)
    return SeriesPlan(key, "CT", number, description, 128, 128, CT_SPACING, slice_spacing, slices, origin,
                      z_first, jitter=jitter)


def _pet(key: str, number: int, z_first: float, slices: int, missing: Tuple[int, ...] = ()) -> SeriesPlan:
    center_x = -228.036842 + 255.5 * 0.841796875
    center_y = -93.0631599 + 255.5 * 0.841796875
    origin = (center_x - 47.5 * PET_SPACING, center_y - 47.5 * PET_SPACING)
    return SeriesPlan(key, "PT", number, "PET WB", 96, 96, PET_SPACING, PET_SLICE_SPACING, slices, origin,
                      z_first, missing_spacing=missing)


def _patients() -> List[PatientPlan]:
    a = PatientPlan(
        "Lung_Dx-A0001", "nbia", "20070404", "Chest", "Philips",
        lesions=[Ellipsoid((40.0, 200.0, -209.0), (24.0, 30.0, 21.0)),
                 Ellipsoid((-196.0, 170.0, -206.0), (12.0, 12.0, 8.0))],
        series=[_ct("ct2", 2, "5mm", 20, 5.0, -260.0),
                _ct("ct3", 3, "5mm", 20, 5.0, -260.0, jitter=(1, -1, 1, 2)),
                _pet("pet", 4, -259.0, 30)],
        duplicate=("ct3", 8),
        outside=("ct2", 11),
        odd_names=(("ct3", 9, "a"),),
        dropped=(("ct3", 13),),
    )
    b = PatientPlan(
        "Lung_Dx-B0002", "idc", "20070425", "ThoraxAThoraxRoutine Adult", "SIEMENS",
        lesions=[Ellipsoid((-100.0, 150.0, 200.0), (30.0, 26.0, 30.0))],
        series=[_ct("ct2", 2, "ThoraxRoutine  8.0.0  B70f", 16, 8.0, 140.0),
                _ct("ct3", 3, "ThoraxRoutine  8.0.0  B40f", 16, 8.0, 140.0, jitter=(-2, 1, 0, -1)),
                _pet("pet", 4, 152.0, 30, missing=(28, 29))],
        malformed=("ct3", 11),
        odd_names=(("ct2", 8, "Q"),),
        unmatched_xml=True,
        box_without_geometry=("pet", 29),
    )
    g = PatientPlan(
        "Lung_Dx-G0003", "nbia", "20090429", "LUNGC", "SIEMENS",
        lesions=[Ellipsoid((60.0, 180.0, -140.0), (20.0, 20.0, 12.0)),
                 Ellipsoid((60.0, 180.0, -90.0), (18.0, 18.0, 11.0))],
        series=[_ct("ct2", 2, "A phase 5mm Stnd SS50", 16, 5.0, -165.0),
                _ct("ct3", 3, "5mm Lung SS50", 16, 5.0, -165.0, jitter=(0, 1, -1, 0)),
                _pet("pet", 5, -160.0, 24)],
    )
    return [a, b, g]


def _box_on_slice(series: SeriesPlan, lesion: Ellipsoid, k: int) -> Optional[Tuple[int, int, int, int]]:
    """The lesion's cross-section on slice k as an inclusive pixel box, or None."""
    z = series.position(k)[2]
    dz = (z - lesion.center[2]) / lesion.radii[2]
    if abs(dz) >= 0.95:
        return None
    scale = math.sqrt(1.0 - dz * dz)
    half_x, half_y = lesion.radii[0] * scale, lesion.radii[1] * scale
    column = (lesion.center[0] - series.top_left[0]) / series.pixel_spacing
    row = (lesion.center[1] - series.top_left[1]) / series.pixel_spacing
    dx, dy = half_x / series.pixel_spacing, half_y / series.pixel_spacing
    box = (int(math.floor(column - dx)), int(math.floor(row - dy)), int(math.ceil(column + dx)),
           int(math.ceil(row + dy)))
    jx0, jy0, jx1, jy1 = series.jitter
    return (box[0] + jx0, box[1] + jy0, box[2] + jx1, box[3] + jy1)


def plan() -> List[PatientPlan]:
    """The sample's patients with every box decided (no files written)."""
    patients = _patients()
    for patient in patients:
        for series in patient.series:
            for k in range(series.slices):
                if k in series.missing_spacing:
                    continue
                for number, lesion in enumerate(patient.lesions, start=1):
                    if series.modality == "PT" and number > 1:
                        continue  # the small lesions are not boxed on PET
                    if (series.key, k) in patient.dropped and number == 1:
                        continue
                    box = _box_on_slice(series, lesion, k)
                    if box is not None:
                        series.boxes.append(BoxPlan(k, number, box, patient.letter, difficult=(k % 7 == 3)))
        _apply_quirks(patient)
    return patients


def _series(patient: PatientPlan, key: str) -> SeriesPlan:
    return next(series for series in patient.series if series.key == key)


def _apply_quirks(patient: PatientPlan) -> None:
    for key, k, name in patient.odd_names:
        box = next(b for b in _series(patient, key).boxes if b.k == k)
        box.name = name
    if patient.outside:
        key, k = patient.outside
        box = next(b for b in _series(patient, key).boxes if b.k == k and b.lesion == 2)
        box.box = (-4, box.box[1], box.box[2], box.box[3])
    if patient.duplicate:
        key, k = patient.duplicate
        series = _series(patient, key)
        first = next(b for b in series.boxes if b.k == k and b.lesion == 1)
        series.boxes.append(BoxPlan(k, 1, first.box, first.name, first.difficult))
    if patient.box_without_geometry:
        key, k = patient.box_without_geometry
        _series(patient, key).boxes.append(BoxPlan(k, 0, (40, 40, 50, 52), patient.letter))


# ---------------------------------------------------------------------- ground truth
@dataclass(frozen=True)
class CaseTruth:
    """What loading a sample patient must give.

    :param lesions: lesion ROIs per series number.
    :param tumours: physical tumours boxed on some series (one per planned
        ellipsoid with a box kept: all series share one frame of reference).
    :param placed_boxes: per-slice box ROIs (duplicates and unplaceable boxes excluded).
    :param findings: minimum number of findings per check name.
    """

    case_id: str
    layout: str
    diagnosis: str
    series: int
    lesions: Dict[int, int]
    placed_boxes: int
    xml_files: int
    findings: Dict[str, int]
    tumours: int = 0

    @property
    def lesion_rois(self) -> int:
        return sum(self.lesions.values())


def ground_truth() -> Dict[str, CaseTruth]:
    """Expected results per patient, derived from :func:`plan` (not from the loader)."""
    truths = {}
    diagnosis = {"A": "Adenocarcinoma", "B": "Small cell carcinoma", "G": "Squamous cell carcinoma"}
    for patient in plan():
        lesions: Dict[int, int] = {}
        tumours: set = set()
        placed = 0
        xml_files = 0
        for series in patient.series:
            kept = [b for b in series.boxes if b.lesion > 0 and (series.key, b.k) != patient.malformed]
            lesions[series.series_number] = len({b.lesion for b in kept})
            tumours.update(b.lesion for b in kept)
            duplicates = 1 if patient.duplicate and patient.duplicate[0] == series.key else 0
            placed += len(kept) - duplicates
            xml_files += len({b.k for b in series.boxes})
        findings = {}
        if patient.malformed:
            findings["lung.xml_unreadable"] = 1
        if patient.duplicate:
            findings["lung.duplicate_box"] = 1
        if patient.outside:
            findings["lung.box_outside_image"] = 1
        if patient.odd_names:
            findings["lung.label_mismatch"] = len(patient.odd_names)
        if patient.dropped:
            findings["lung.lesion_gap"] = len(patient.dropped)
        if patient.unmatched_xml:
            findings["lung.xml_unmatched"] = 1
            xml_files += 1
        if patient.box_without_geometry:
            findings["lung.box_no_geometry"] = 1
            findings["lung.missing_geometry"] = 1
        truths[patient.patient_id] = CaseTruth(
            case_id=patient.patient_id, layout=patient.layout.upper(), diagnosis=diagnosis[patient.letter],
            series=len(patient.series), lesions=lesions, placed_boxes=placed, xml_files=xml_files,
            findings=findings, tumours=len(tumours),
        )
    return truths


# ---------------------------------------------------------------------- pixels
def _lps_grid(series: SeriesPlan) -> Tuple[np.ndarray, np.ndarray]:
    columns = series.top_left[0] + np.arange(series.columns) * series.pixel_spacing
    rows = series.top_left[1] + np.arange(series.rows) * series.pixel_spacing
    return np.meshgrid(columns, rows)  # x[j, i], y[j, i]


def _pixels(series: SeriesPlan, patient: PatientPlan, rng: np.random.Generator) -> np.ndarray:
    """Stored values [k, j, i]: CT as HU + 1024, PET in Bq/ml, lesions bright."""
    x, y = _lps_grid(series)
    center_x = -228.036842 + 255.5 * 0.841796875
    center_y = -93.0631599 + 255.5 * 0.841796875
    body = ((x - center_x) / 170.0) ** 2 + ((y - center_y) / 120.0) ** 2 <= 1.0
    lungs = (((np.abs(x - center_x) - 70.0) / 55.0) ** 2 + ((y - center_y + 5.0) / 80.0) ** 2) <= 1.0
    volume = np.empty((series.slices, series.rows, series.columns), dtype=np.float64)
    for k in range(series.slices):
        z = series.position(k)[2]
        if series.modality == "CT":
            image = np.where(body, 40.0, -1000.0)
            image[lungs & body] = -850.0
        else:
            image = np.where(body, 1500.0, 50.0)
        for lesion in patient.lesions:
            inside = (((x - lesion.center[0]) / lesion.radii[0]) ** 2 + ((y - lesion.center[1]) / lesion.radii[1]) ** 2
                      + ((z - lesion.center[2]) / lesion.radii[2]) ** 2) <= 1.0
            image[inside] = 30.0 if series.modality == "CT" else 12000.0
        noise = rng.normal(0.0, 12.0 if series.modality == "CT" else 80.0, image.shape)
        volume[k] = image + noise
    if series.modality == "CT":
        return np.clip(np.round(volume + 1024.0), 0, 4095).astype(np.uint16)
    return np.clip(np.round(volume), 0, 32767).astype(np.uint16)


# ---------------------------------------------------------------------- writing
def _spec(patient: PatientPlan, series: SeriesPlan, rng: np.random.Generator) -> SeriesSpec:
    # Files in instance order from the top (highest z), as the real NBIA series are numbered.
    order = list(range(series.slices - 1, -1, -1))
    stored = _pixels(series, patient, rng)[order]
    per_instance = {order.index(k): {"PixelSpacing": None} for k in series.missing_spacing}
    return SeriesSpec(
        patient_id=patient.patient_id,
        study_instance_uid=patient.study_uid,
        series_instance_uid=patient.series_uid(series),
        frame_of_reference_uid=patient.frame_uid,
        modality=series.modality,
        series_number=series.series_number,
        series_description=series.description,
        stored_values=stored,
        positions=[series.position(k) for k in order],
        pixel_spacing=(series.pixel_spacing, series.pixel_spacing),
        slice_thickness=series.slice_spacing,
        rescale_intercept=-1024.0 if series.modality == "CT" else 0.0,
        study_date=patient.study_date,
        study_description=patient.study_description,
        manufacturer=patient.manufacturer,
        window=(350.0, 40.0) if series.modality == "CT" else None,
        per_instance_extra=per_instance,
    )


def _sop_of_slice(written: WrittenSeries, series: SeriesPlan, k: int) -> str:
    return written.sop_instance_uids[series.slices - 1 - k]


def _write_xmls(patient: PatientPlan, written: Dict[str, WrittenSeries], folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for series in patient.series:
        by_slice: Dict[int, List[BoxPlan]] = {}
        for box in series.boxes:
            by_slice.setdefault(box.k, []).append(box)
        for k, boxes in sorted(by_slice.items()):
            objects = [VocObject(b.name, *b.box, difficult=b.difficult) for b in boxes]
            # The real files say 512x512x1 whatever the image (notes §1.1).
            text = format_voc(VocAnnotation(None, 512, 512, 1, objects))
            if patient.malformed == (series.key, k):
                text = text[: len(text) // 2]  # cut off, as a broken download would
            (folder / f"{_sop_of_slice(written[series.key], series, k)}.xml").write_bytes(text.encode("ascii"))
    if patient.unmatched_xml:
        stray = uid_from_seed(SEED, patient.patient_id, "not downloaded")
        objects = [VocObject(patient.letter, 30, 30, 60, 64)]
        (folder / f"{stray}.xml").write_bytes(format_voc(VocAnnotation(None, 512, 512, 1, objects)).encode("ascii"))


def generate(parent: Path) -> Path:
    """Write the sample under ``parent``; returns its root folder (``Lung-PET-CT-Dx``)."""
    root = Path(parent) / ROOT_NAME
    if root.exists():
        shutil.rmtree(root)
    rng = np.random.default_rng(SEED)
    manifest = root / MANIFEST
    nbia_collection = manifest / "Lung-PET-CT-Dx"
    idc_collection = root / "lung_pet_ct_dx"
    metadata = []
    for patient in plan():
        written: Dict[str, WrittenSeries] = {}
        for series in patient.series:
            spec = _spec(patient, series, rng)
            if patient.layout == "nbia":
                folder = nbia_series_folder(nbia_collection, spec)
                written[series.key] = write_series(spec, folder, "nbia")
                metadata.append((folder, facts_of(written[series.key])))
            else:
                folder = idc_series_folder(idc_collection, patient.patient_id, patient.study_uid, series.modality,
                                           spec.series_instance_uid)
                written[series.key] = write_series(spec, folder, "idc")
        _write_xmls(patient, written, root / "Annotation" / patient.patient_id.split("-")[1])
    (nbia_collection / "LICENSE").write_text("Creative Commons Attribution 4.0 (sample data generated for tests)\n")
    write_nbia_metadata_csv(manifest, "Lung-PET-CT-Dx", DOI_URL, metadata)
    return root


# ---------------------------------------------------------------------- real-geometry case
@dataclass(frozen=True)
class SourceFact:
    """One line of ``SOURCES.txt``: an XML and the DICOM facts of its image."""

    xml_name: str
    sop_instance_uid: str
    patient_folder: str
    series_instance_uid: str
    series_number: int
    instance_number: int
    position: Tuple[float, float, float]
    orientation: Tuple[float, ...]
    pixel_spacing: Tuple[float, float]
    rows: int
    columns: int
    series_folder: str


_FACT = re.compile(
    r"Annotation/(?P<patient>[A-Z]\d+)/(?P<sop>[0-9.]+)\.xml.*?YES: (?P<dicom>[^|]*?)/1-\d+\.dcm \| Modality=\w+ "
    r"SeriesNumber=(?P<series_number>\d+) SeriesInstanceUID=(?P<series_uid>[0-9.]+) "
    r"InstanceNumber=(?P<instance>\d+) IPP=\[(?P<ipp>[^\]]+)\] IOP=\[(?P<iop>[^\]]+)\] "
    r"PixelSpacing=\[(?P<spacing>[^\]]+)\] Rows=(?P<rows>\d+) Cols=(?P<cols>\d+)")


def parse_sources_txt(path: Path) -> List[SourceFact]:
    """The DICOM facts of each real sample XML, from the samples' ``SOURCES.txt``."""
    facts = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        match = _FACT.search(line)
        if not match:
            continue

        def floats(text: str) -> Tuple[float, ...]:
            return tuple(float(v) for v in text.split(","))

        facts.append(SourceFact(
            xml_name=f"{match['sop']}.xml", sop_instance_uid=match["sop"], patient_folder=match["patient"],
            series_instance_uid=match["series_uid"], series_number=int(match["series_number"]),
            instance_number=int(match["instance"]), position=floats(match["ipp"]),  # type: ignore[arg-type]
            orientation=floats(match["iop"]), pixel_spacing=floats(match["spacing"]),  # type: ignore[arg-type]
            rows=int(match["rows"]), columns=int(match["cols"]), series_folder=match["dicom"],
        ))
    return facts


def generate_real_geometry_case(parent: Path, samples_folder: Path, margin: int = 1) -> Path:
    """Write the real sample XMLs' patient as NBIA DICOM with their real geometry.

    Every series named in ``SOURCES.txt`` gets the instances from the lowest
    to the highest annotated InstanceNumber (± ``margin``), 512x512, with the
    real SeriesInstanceUID, IPP, IOP and PixelSpacing; annotated instances
    carry the real SOPInstanceUID (the XML's name), others a generated one.
    The slice step is taken from two annotated instances of the series. The
    XMLs are copied into ``Annotation/<patient>/``. Returns the root folder.
    """
    samples_folder = Path(samples_folder)
    facts = parse_sources_txt(samples_folder / "SOURCES.txt")
    root = Path(parent) / "Lung-PET-CT-Dx-real-geometry"
    manifest = root / "manifest-1675442780019"
    by_series: Dict[str, List[SourceFact]] = {}
    for fact in facts:
        by_series.setdefault(fact.series_instance_uid, []).append(fact)
    metadata = []
    for series_uid, series_facts in sorted(by_series.items()):
        series_facts.sort(key=lambda f: f.instance_number)
        first, last = series_facts[0], series_facts[-1]
        step = np.subtract(last.position, first.position) / max(1, last.instance_number - first.instance_number)
        numbers = list(range(max(1, first.instance_number - margin), last.instance_number + margin + 1))
        known = {f.instance_number: f for f in series_facts}
        positions = [tuple(np.add(first.position, step * (n - first.instance_number))) for n in numbers]
        stored = np.zeros((len(numbers), first.rows, first.columns), dtype=np.uint16)
        stored[:, 200:300, 100:250] = 1000
        patient_id = f"Lung_Dx-{first.patient_folder}"
        study_folder, series_folder = first.series_folder.split("/")[-2:]
        spec = SeriesSpec(
            patient_id=patient_id,
            study_instance_uid=uid_from_seed("real-geometry", patient_id),
            series_instance_uid=series_uid,
            frame_of_reference_uid=uid_from_seed("real-geometry", patient_id, "frame"),
            modality="CT",
            series_number=first.series_number,
            series_description=series_folder.split("-", 1)[1].rsplit("-", 1)[0],
            stored_values=stored,
            positions=positions,
            orientation=first.orientation,
            pixel_spacing=first.pixel_spacing,  # type: ignore[arg-type]
            slice_thickness=float(np.linalg.norm(step)),
            rescale_intercept=-1024.0,
            instance_numbers=numbers,
        )
        folder = manifest / "Lung-PET-CT-Dx" / patient_id / study_folder / series_folder
        written = write_series(spec, folder, "nbia")
        # Give annotated instances their real SOPInstanceUID (the XML's file name).
        for index, number in enumerate(numbers):
            if number in known:
                dataset = pydicom.dcmread(str(written.paths[index]))
                dataset.SOPInstanceUID = known[number].sop_instance_uid
                dataset.file_meta.MediaStorageSOPInstanceUID = known[number].sop_instance_uid
                dataset.save_as(str(written.paths[index]), enforce_file_format=True)
        metadata.append((folder, facts_of(written)))
        annotation_folder = root / "Annotation" / first.patient_folder
        annotation_folder.mkdir(parents=True, exist_ok=True)
        for fact in series_facts:
            shutil.copyfile(samples_folder / fact.patient_folder / fact.xml_name, annotation_folder / fact.xml_name)
    write_nbia_metadata_csv(manifest, "Lung-PET-CT-Dx", DOI_URL, metadata)
    return root


def expected_real_geometry_corners(fact: SourceFact, box: Sequence[float], slice_spacing: float) -> np.ndarray:
    """The 8 RAS corners of a box on a real slice, straight from IPP/IOP/PixelSpacing.

    Independent of the loader: LPS = IPP + x*colSpacing*row_dir + y*rowSpacing*col_dir
    (notes, "Suggested mapping" 2-3), pixel edges half a pixel outside the
    indices, ± half the slice spacing along the normal, then LPS -> RAS.
    """
    row_dir = np.asarray(fact.orientation[:3])
    col_dir = np.asarray(fact.orientation[3:6])
    normal = np.cross(row_dir, col_dir)
    row_spacing, column_spacing = fact.pixel_spacing
    corners = []
    for x in (box[0] - 0.5, box[2] + 0.5):
        for y in (box[1] - 0.5, box[3] + 0.5):
            for dz in (-0.5, 0.5):
                lps = (np.asarray(fact.position) + x * column_spacing * row_dir + y * row_spacing * col_dir
                       + dz * slice_spacing * normal)
                corners.append([-lps[0], -lps[1], lps[2]])
    return np.array(corners)
