"""Read Lung-PET-CT-Dx tumour boxes from DICOM SR (TID 1500) and compare them with the VOC XML boxes.

Imaging Data Commons serves the collection's boxes as the analysis result
``lung_pet_ct_dx_annotations``: one Comprehensive 3D SR per annotated image
series, SeriesDescription "Tumor bounding box". Facts used (notes
``lung_voc.md`` §3, "How [SR] builds the SR"; cited, not copied):

* each box is one TID 1410 planar ROI measurement group whose Image Region is
  a SCOORD POLYLINE, a closed 5-point rectangle (xmin,ymin) (xmax,ymin)
  (xmax,ymax) (xmin,ymax) (xmin,ymin) holding the XML's pixel values
  *unchanged* (column, row), referencing the CT or PET instance as
  SourceImageForRegion;
* the finding type is coded from the class letter: adenocarcinoma (A), small
  cell (B), large cell (E), squamous cell carcinoma (G), "Neoplasm" for any
  other letter;
* the project's own export (the Lung collection's ``export_sr``) writes the
  same form, so one reader serves both.

Both paths give the same plain record, :class:`SliceBoxRecord`: the
annotated image's SOPInstanceUID, the class letter, and the box in the
image's pixel indices, so the existing geometry
(:func:`~..geometry.box_roi_geometry`) places SR and VOC boxes alike.

Because the SR keeps the VOC values, an SR box and a VOC box of the same
slice agree to the digit; :func:`compare_voc_and_sr` reports any pair that
differs by more than half a pixel or in class.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from ..errors import DataError
from ..findings import ERROR, WARNING, Finding
from .voc_xml import VocAnnotation, VocObject, parse_voc

__all__ = [
    "SliceBoxRecord",
    "SrBoxes",
    "CLASS_LETTERS",
    "BOX_SR_DESCRIPTION",
    "BOX_TOLERANCE_PIXELS",
    "class_letter_of_name",
    "class_letter_of_code",
    "voc_box_records",
    "read_sr_boxes",
    "check_sr_boxes_against_images",
    "compare_voc_and_sr",
    "is_box_sr_header",
    "collect_sr_boxes",
]

PathLike = Union[str, Path]

#: Histology classes of the collection, by the letter IDC's conversion maps.
CLASS_LETTERS = ("A", "B", "E", "G")

#: IDC's SeriesDescription of the box SRs (and the project's own export).
BOX_SR_DESCRIPTION = "Tumor bounding box"

#: Two boxes of one slice agree when every coordinate is within this many pixels.
BOX_TOLERANCE_PIXELS = 0.5

#: SNOMED CT codes per class letter. Both the current codes (pydicom 3's code
#: dictionary) and the older ones are listed, since SRs written with earlier
#: toolkits carry the older values.
_CODES_BY_LETTER: Dict[str, Tuple[str, ...]] = {
    "A": ("1187332001", "35917007"),
    "B": ("74364000",),
    "E": ("22687000",),
    "G": ("1162767002", "28899001"),
}
_LETTER_BY_CODE = {value: letter for letter, values in _CODES_BY_LETTER.items() for value in values}
#: Code meanings as a last resort (a different coding scheme with the same words).
_LETTER_BY_MEANING = (("small cell", "B"), ("large cell", "E"), ("squamous", "G"), ("adenocarcinoma", "A"))

_SR_STORAGE_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.88.34": "Comprehensive 3D SR",
    "1.2.840.10008.5.1.4.1.1.88.33": "Comprehensive SR",
    "1.2.840.10008.5.1.4.1.1.88.22": "Enhanced SR",
}


# ---------------------------------------------------------------------- records
@dataclass(frozen=True)
class SliceBoxRecord:
    """One box on one 2-D image, as read from a VOC XML file or a DICOM SR.

    :param sop_instance_uid: the annotated image.
    :param label: the class as written (VOC ``<name>``; for an SR the
        finding type's code meaning).
    :param class_letter: A, B, E or G; "" when the label names no class
        (IDC's conversion writes "Neoplasm" then).
    :param xmin: first column of the box (0-based pixel index, as in the XML).
    :param ymin: first row.
    :param xmax: last column.
    :param ymax: last row.
    :param source: the file the box came from.
    :param index: 0-based position of the box in that file (``<object>`` or
        measurement group).
    """

    sop_instance_uid: str
    label: str
    class_letter: str
    xmin: float
    ymin: float
    xmax: float
    ymax: float
    source: Path
    index: int = 0

    @property
    def box(self) -> Tuple[float, float, float, float]:
        """(xmin, ymin, xmax, ymax), the form :func:`~..geometry.box_roi_geometry` takes."""
        return (self.xmin, self.ymin, self.xmax, self.ymax)

    @property
    def where(self) -> str:
        """The file and the box's place in it, for messages."""
        kind = "measurement group" if self.source.suffix.lower() != ".xml" else "object"
        return f"{self.source.name} {kind} {self.index + 1}"

    def as_voc_object(self) -> VocObject:
        """The box as a VOC object (class letter as the name), for code written around VOC boxes."""
        return VocObject(self.class_letter or self.label, self.xmin, self.ymin, self.xmax, self.ymax)


@dataclass
class SrBoxes:
    """The boxes of one SR file and what its header says.

    :param problems: measurement groups that were skipped, each message
        naming the file and the group.
    """

    path: Path
    sop_instance_uid: str
    series_instance_uid: str
    patient_id: str
    series_description: str
    referenced_series_uids: List[str]
    records: List[SliceBoxRecord]
    problems: List[str]


def class_letter_of_name(name: str) -> str:
    """The class letter of a VOC ``<name>`` as IDC's conversion reads it (case-insensitive), or ""."""
    letter = (name or "").strip().upper()
    return letter if letter in CLASS_LETTERS else ""


def class_letter_of_code(value: str, meaning: str = "") -> str:
    """The class letter of an SR finding type (code value first, then its meaning), or ""."""
    letter = _LETTER_BY_CODE.get(str(value or "").strip())
    if letter:
        return letter
    lowered = (meaning or "").lower()
    for words, letter in _LETTER_BY_MEANING:
        if words in lowered:
            return letter
    return ""


def voc_box_records(source: Union[PathLike, VocAnnotation]) -> List[SliceBoxRecord]:
    """The boxes of one VOC XML file (a path, or an annotation already parsed) as records.

    :raises DataError: naming the file, if it cannot be parsed (see :func:`~.voc_xml.parse_voc`).
    """
    annotation = source if isinstance(source, VocAnnotation) else parse_voc(source)
    path = Path(annotation.path) if annotation.path is not None else Path("<memory>")
    return [
        SliceBoxRecord(annotation.stem, voc_object.name, class_letter_of_name(voc_object.name),
                       voc_object.xmin, voc_object.ymin, voc_object.xmax, voc_object.ymax, path, index)
        for index, voc_object in enumerate(annotation.objects)
    ]


def is_box_sr_header(modality: str, sop_class_uid: str) -> bool:
    """True for an SR instance a box reader should look at (any SR storage class highdicom reads)."""
    return modality == "SR" and sop_class_uid in _SR_STORAGE_CLASSES


# ---------------------------------------------------------------------- reading an SR
def _read_dataset(path: Path) -> Any:
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        return pydicom.dcmread(str(path))
    except InvalidDicomError as error:
        raise DataError(path, f"is not a DICOM file ({error})") from None
    except OSError as error:
        raise DataError(path, f"cannot be read ({error.strerror or error})") from None
    except Exception as error:  # pydicom raises many types for damaged files
        raise DataError(path, f"is not readable DICOM ({type(error).__name__}: {error})") from None


def _measurement_report(dataset: Any, path: Path) -> Any:
    import highdicom as hd

    sop_class = str(dataset.get("SOPClassUID", ""))
    if sop_class not in _SR_STORAGE_CLASSES:
        modality = dataset.get("Modality", "?")
        raise DataError(path, f"is not a structured report (Modality {modality}, SOP class {sop_class or 'none'}); "
                              "box SRs are Comprehensive 3D SR")
    document_class = {"1.2.840.10008.5.1.4.1.1.88.34": hd.sr.Comprehensive3DSR,
                      "1.2.840.10008.5.1.4.1.1.88.33": hd.sr.ComprehensiveSR,
                      "1.2.840.10008.5.1.4.1.1.88.22": hd.sr.EnhancedSR}[sop_class]
    try:
        document = document_class.from_dataset(dataset, copy=False)
        report = document.content
    except Exception as error:  # highdicom refuses malformed content trees with assorted errors
        raise DataError(path, f"is not a TID 1500 measurement report highdicom can read "
                              f"({type(error).__name__}: {error})") from None
    if report is None or not hasattr(report, "get_planar_roi_measurement_groups"):
        raise DataError(path, "holds no TID 1500 measurement report")
    return report


def _source_image_uid(region: Any) -> Optional[str]:
    for item in getattr(region, "ContentSequence", []) or []:
        for reference in item.get("ReferencedSOPSequence", []) or []:
            uid = reference.get("ReferencedSOPInstanceUID")
            if uid:
                return str(uid)
    return None


def _rectangle(points: np.ndarray) -> Optional[Tuple[float, float, float, float]]:
    """(xmin, ymin, xmax, ymax) of an axis-aligned rectangle given as a polyline, or None.

    A closed 5-point polyline (IDC's form) or its 4 open corners are
    accepted; every corner must lie on the rectangle's corners.
    """
    if points.ndim != 2 or points.shape[1] != 2 or not np.all(np.isfinite(points)):
        return None
    if len(points) == 5 and np.allclose(points[0], points[-1]):
        points = points[:4]
    if len(points) != 4:
        return None
    xmin, ymin = points.min(axis=0)
    xmax, ymax = points.max(axis=0)
    corners = {(xmin, ymin), (xmax, ymin), (xmax, ymax), (xmin, ymax)}
    on_corners = all(any(np.allclose(p, c) for c in corners) for p in points)
    distinct = len({(round(float(x), 6), round(float(y), 6)) for x, y in points}) == 4
    if not (on_corners and distinct):
        return None
    return float(xmin), float(ymin), float(xmax), float(ymax)


def _group_record(group: Any, index: int, path: Path) -> Tuple[Optional[SliceBoxRecord], Optional[str]]:
    import highdicom as hd

    where = f"{path.name} measurement group {index + 1}"
    try:
        region = group.roi
    except Exception as error:  # a damaged region item
        return None, f"{where}: its image region cannot be read ({type(error).__name__}: {error})"
    if region is None:
        return None, f"{where}: has no image region (only a segmentation or volume reference?); skipped"
    if isinstance(region, hd.sr.ImageRegion3D):
        return None, f"{where}: is a 3-D region (SCOORD3D), not a box in image pixels; skipped"
    graphic_type = str(region.GraphicType)
    if graphic_type != "POLYLINE":
        return None, f"{where}: graphic type {graphic_type}, expected POLYLINE (a closed 5-point rectangle); skipped"
    points = np.asarray(region.GraphicData, dtype=float)
    points = points.reshape(-1, 2) if points.size % 2 == 0 else points.reshape(1, -1)
    box = _rectangle(points)
    if box is None:
        return None, (f"{where}: the POLYLINE {points.tolist()} is not an axis-aligned rectangle "
                      "(closed 5-point or 4 corners); skipped")
    sop_uid = _source_image_uid(region)
    if not sop_uid:
        return None, f"{where}: the region names no source image (ReferencedSOPInstanceUID); skipped"
    finding = group.finding_type
    value = str(finding.value) if finding is not None else ""
    meaning = str(finding.meaning) if finding is not None else ""
    return SliceBoxRecord(sop_uid, meaning, class_letter_of_code(value, meaning), *box, path, index), None


def _referenced_series(dataset: Any) -> List[str]:
    uids = []
    for study in dataset.get("CurrentRequestedProcedureEvidenceSequence", []) or []:
        for series in study.get("ReferencedSeriesSequence", []) or []:
            uid = str(series.get("SeriesInstanceUID", ""))
            if uid and uid not in uids:
                uids.append(uid)
    return uids


def read_sr_boxes(path: PathLike) -> SrBoxes:
    """The boxes of one TID 1500 SR file (IDC's form or the project's own export).

    Measurement groups that are not a box (another graphic type, not a
    rectangle, no source image) are skipped and listed in
    :attr:`SrBoxes.problems`, each message naming the file and the group.

    :raises DataError: naming the file, if it is not readable DICOM, not an
        SR, not a TID 1500 report, or holds no box at all.
    """
    path = Path(path)
    dataset = _read_dataset(path)
    report = _measurement_report(dataset, path)
    try:
        groups = report.get_planar_roi_measurement_groups()
    except Exception as error:
        raise DataError(path, f"its measurement groups cannot be read ({type(error).__name__}: {error})") from None
    records: List[SliceBoxRecord] = []
    problems: List[str] = []
    for index, group in enumerate(groups):
        record, problem = _group_record(group, index, path)
        if record is not None:
            records.append(record)
        if problem:
            problems.append(problem)
    if not records:
        detail = f"; {len(problems)} group(s) skipped: " + " | ".join(problems) if problems else ""
        raise DataError(path, f"holds no bounding box (no planar ROI measurement group with a POLYLINE "
                              f"rectangle){detail}")
    return SrBoxes(
        path=path,
        sop_instance_uid=str(dataset.get("SOPInstanceUID", "")),
        series_instance_uid=str(dataset.get("SeriesInstanceUID", "")),
        patient_id=str(dataset.get("PatientID", "")),
        series_description=str(dataset.get("SeriesDescription", "")),
        referenced_series_uids=_referenced_series(dataset),
        records=records,
        problems=problems,
    )


# ---------------------------------------------------------------------- checks
def check_sr_boxes_against_images(records: Iterable[SliceBoxRecord], image_sizes: Mapping[str, Tuple[int, int]],
                                  case_id: str = "", check_prefix: str = "lung.sr") -> List[Finding]:
    """Findings for boxes whose image is unknown or that reach outside their image.

    :param image_sizes: SOPInstanceUID -> (rows, columns) of the images on disk.
    """
    findings = []
    for record in records:
        size = image_sizes.get(record.sop_instance_uid)
        if size is None:
            findings.append(Finding(WARNING, f"{check_prefix}_unmatched",
                                    f"{record.where}: no image on disk has SOPInstanceUID {record.sop_instance_uid}",
                                    case_id=case_id, path=str(record.source)))
            continue
        rows, columns = size
        xmin, ymin, xmax, ymax = record.box
        if xmax < 0 or ymax < 0 or xmin > columns - 1 or ymin > rows - 1:
            findings.append(Finding(ERROR, f"{check_prefix}_box_outside_image",
                                    f"{record.where}: box {record.box} lies wholly outside the {columns}x{rows} "
                                    f"image {record.sop_instance_uid}", case_id=case_id, path=str(record.source)))
        elif xmin < 0 or ymin < 0 or xmax > columns - 1 or ymax > rows - 1:
            findings.append(Finding(WARNING, f"{check_prefix}_box_outside_image",
                                    f"{record.where}: box {record.box} reaches outside the {columns}x{rows} image "
                                    f"{record.sop_instance_uid}", case_id=case_id, path=str(record.source)))
    return findings


def _distance(a: SliceBoxRecord, b: SliceBoxRecord) -> float:
    return float(np.max(np.abs(np.subtract(a.box, b.box))))


def _pair_boxes(voc: Sequence[SliceBoxRecord], sr: Sequence[SliceBoxRecord]
                ) -> Tuple[List[Tuple[SliceBoxRecord, SliceBoxRecord]], List[SliceBoxRecord], List[SliceBoxRecord]]:
    """Pairs of one slice's VOC and SR boxes, nearest first; then the unpaired of each side."""
    candidates = sorted(((_distance(a, b), i, j) for i, a in enumerate(voc) for j, b in enumerate(sr)))
    used_voc, used_sr, pairs = set(), set(), []
    for _, i, j in candidates:
        if i in used_voc or j in used_sr:
            continue
        used_voc.add(i)
        used_sr.add(j)
        pairs.append((voc[i], sr[j]))
    return (pairs, [b for i, b in enumerate(voc) if i not in used_voc],
            [b for j, b in enumerate(sr) if j not in used_sr])


def compare_voc_and_sr(voc_records: Iterable[SliceBoxRecord], sr_records: Iterable[SliceBoxRecord],
                       case_id: str = "", tolerance: float = BOX_TOLERANCE_PIXELS) -> List[Finding]:
    """Disagreements between VOC and SR boxes on the slices that have both.

    On each image annotated in both forms, boxes are paired nearest first;
    a pair whose coordinates differ by more than ``tolerance`` pixels, or
    whose class letters differ, is reported, as is a box without a partner
    on that image. Every message names both files. Images annotated in one
    form only are not compared (an IDC download has no XML at all).
    """
    by_image_voc: Dict[str, List[SliceBoxRecord]] = {}
    by_image_sr: Dict[str, List[SliceBoxRecord]] = {}
    for record in voc_records:
        by_image_voc.setdefault(record.sop_instance_uid, []).append(record)
    for record in sr_records:
        by_image_sr.setdefault(record.sop_instance_uid, []).append(record)
    findings = []
    for sop_uid in sorted(set(by_image_voc) & set(by_image_sr)):
        pairs, voc_only, sr_only = _pair_boxes(by_image_voc[sop_uid], by_image_sr[sop_uid])
        for voc, sr in pairs:
            distance = _distance(voc, sr)
            if distance > tolerance:
                findings.append(Finding(WARNING, "lung.voc_sr_box_differs",
                                        f"{voc.where} box {voc.box} and {sr.where} box {sr.box} on image {sop_uid} "
                                        f"differ by up to {distance:g} px (tolerance {tolerance:g})",
                                        case_id=case_id, path=str(voc.source), value=distance))
            if voc.class_letter != sr.class_letter:
                findings.append(Finding(WARNING, "lung.voc_sr_class_differs",
                                        f"{voc.where} class {voc.class_letter or repr(voc.label)} and {sr.where} "
                                        f"class {sr.class_letter or repr(sr.label)} on image {sop_uid} differ",
                                        case_id=case_id, path=str(voc.source)))
        sr_files = ", ".join(sorted({b.source.name for b in by_image_sr[sop_uid]}))
        voc_files = ", ".join(sorted({b.source.name for b in by_image_voc[sop_uid]}))
        for voc in voc_only:
            findings.append(Finding(WARNING, "lung.voc_box_not_in_sr",
                                    f"{voc.where} box {voc.box} has no counterpart in {sr_files} on image {sop_uid}",
                                    case_id=case_id, path=str(voc.source)))
        for sr in sr_only:
            findings.append(Finding(WARNING, "lung.sr_box_not_in_voc",
                                    f"{sr.where} box {sr.box} has no counterpart in {voc_files} on image {sop_uid}",
                                    case_id=case_id, path=str(sr.source)))
    return findings


def collect_sr_boxes(paths: Iterable[PathLike], image_sizes: Mapping[str, Tuple[int, int]], case_id: str = ""
                     ) -> Tuple[List[SliceBoxRecord], List[Finding]]:
    """The boxes of several SR files, and findings for everything that went wrong, never raising.

    An unreadable or box-less SR is an error finding naming it; a skipped
    measurement group a warning; boxes on unknown images or reaching outside
    their image are reported by :func:`check_sr_boxes_against_images` (the
    records are all returned; placing them is the caller's choice).
    """
    records: List[SliceBoxRecord] = []
    findings: List[Finding] = []
    for path in paths:
        try:
            result = read_sr_boxes(path)
        except DataError as error:
            findings.append(Finding(ERROR, "lung.sr_unreadable", f"{Path(path).name} skipped: {error.problem}",
                                    case_id=case_id, path=str(path)))
            continue
        findings.extend(Finding(WARNING, "lung.sr_group_skipped", problem, case_id=case_id, path=str(path))
                        for problem in result.problems)
        records.extend(result.records)
    findings.extend(check_sr_boxes_against_images(records, image_sizes, case_id))
    return records, findings
