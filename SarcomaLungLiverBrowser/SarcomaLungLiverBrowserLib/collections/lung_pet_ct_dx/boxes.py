"""VOC boxes of a Lung-PET-CT-Dx case: placed on their slices, chained into lesions, turned into ROI data.

A box file is matched to the series holding its image by SOPInstanceUID;
a box is clamped to the image, kept once if repeated, and becomes a thin ROI
on its slice. Boxes of one series on neighbouring slices that overlap
in-plane form a lesion, which gets one 3-D ROI (see the package docstring).

Every reconstruction of a study is annotated separately (notes §2), so one
physical tumour shows as a lesion on each annotated series. Lesions of
different series that share a FrameOfReferenceUID (one patient coordinate
system) and overlap in RAS are one :class:`Tumour`: the per-series lesion
ROIs are kept (each is drawn on its own images) and carry the tumour's number;
the case's lesion count is the tumour count.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ...case_data import Placement, RoiData, TableData
from ...errors import DataError
from ...findings import ERROR, INFO, WARNING
from ...formats.voc_xml import VocObject, iter_xml_files, parse_voc
from ...geometry import (
    box_from_roi_corners,
    box_roi_geometry,
    spacing_from_matrix,
)
from . import annotation_folder_name
if TYPE_CHECKING:  # series reading imports pydicom (half a second): placing boxes needs only its types
    from .series import CaseFindings, CaseSeries, ReadSeries

__all__ = [
    "SliceBox",
    "Lesion",
    "AnnotatedObject",
    "CaseBoxes",
    "Tumour",
    "MAX_GAP_SLICES",
    "ROLE_SLICE_BOX",
    "ROLE_LESION",
    "LESION_COLORS",
    "SLICE_BOX_COLOR",
    "group_lesions",
    "group_tumours",
    "ras_bounds",
    "annotation_sop",
    "read_case_boxes",
    "box_rois",
    "box_table",
    "box_roi_geometry",
    "box_roi_geometries",
    "box_from_roi_corners",
]

#: Boxes of one lesion may skip this many slices (the gap is reported).
MAX_GAP_SLICES = 2

#: Lesions of two series are one tumour when their RAS extents share more than this along every axis (mm);
#: boxes that merely touch (a shared face) are not the same tumour.
TUMOUR_OVERLAP_MM = 1e-3

ROLE_SLICE_BOX = "slice_box"
ROLE_LESION = "lesion"

LESION_COLORS = {"CT": (1.0, 0.85, 0.0), "PT": (0.0, 0.9, 1.0)}
SLICE_BOX_COLOR = (1.0, 0.5, 0.0)

#: Name of the per-slice box folder under each series' box folder.
SLICE_BOX_FOLDER = "Per-slice boxes"

Box = Tuple[float, float, float, float]


@dataclass
class SliceBox:
    """One box of one XML ``<object>``, placed on a slice of a loaded series.

    ``box`` is (xmin, ymin, xmax, ymax) after clamping to the image;
    ``original`` is as written in the file.
    """

    xml_path: Path
    object_index: int
    voc_object: VocObject
    sop_instance_uid: str
    series_instance_uid: str
    slice_index: int
    original: Box
    box: Box
    clamped: bool = False
    duplicate: bool = False
    lesion: int = 0
    tumour: int = 0

    @property
    def name(self) -> str:
        return self.voc_object.name


@dataclass
class Lesion:
    """Boxes of one series chained over neighbouring slices."""

    series_instance_uid: str
    boxes: List[SliceBox] = field(default_factory=list)

    @property
    def slices(self) -> List[int]:
        return sorted({box.slice_index for box in self.boxes})

    @property
    def missing_slices(self) -> List[int]:
        present = set(self.slices)
        return [k for k in range(self.slices[0], self.slices[-1] + 1) if k not in present]

    @property
    def union_box(self) -> Box:
        return (
            min(b.box[0] for b in self.boxes), min(b.box[1] for b in self.boxes),
            max(b.box[2] for b in self.boxes), max(b.box[3] for b in self.boxes),
        )


@dataclass
class Tumour:
    """One physical tumour: overlapping lesions of different series in one frame of reference.

    :param number: the tumour's number in the case, from 1.
    :param lesions: (SeriesInstanceUID, lesion number in that series) of its lesions.
    """

    number: int
    frame_of_reference_uid: str
    lesions: List[Tuple[str, int]] = field(default_factory=list)


@dataclass(frozen=True)
class AnnotatedObject:
    """An ``<object>`` of a box file whose image was found (placed or not), for the label check."""

    xml_path: Path
    object_index: int
    name: str


@dataclass
class CaseBoxes:
    """The boxes of a case as read: placed boxes (duplicates flagged) and every object of a matched file."""

    boxes: List[SliceBox] = field(default_factory=list)
    objects: List[AnnotatedObject] = field(default_factory=list)


def annotation_sop(path: Path) -> str:
    """The SOPInstanceUID an annotation file is named after."""
    name = Path(path).name
    return name[:-4] if name.lower().endswith(".xml") else name


def group_lesions(boxes: Sequence[SliceBox], max_gap: int = MAX_GAP_SLICES) -> List[Lesion]:
    """Chain the boxes of one series into lesions.

    A box joins the lesion with a box on the same slice or at most
    ``max_gap + 1`` slices before it that overlaps it in-plane (the latest
    such slice wins, then the larger overlap, then the earlier lesion);
    otherwise it starts a lesion. Duplicate boxes are left out. Lesions are
    numbered from 1 in order of their first slice and their position.
    """
    lesions: List[Lesion] = []
    # Boxes already in a lesion, by slice, as (lesion index, xmin, ymin, xmax, ymax): only the few slices just
    # before a box can hold its lesion, so a box is compared with those, not with every box of the series
    # (quadratic on a 300-box series). The in-plane overlap of two inclusive pixel boxes is computed inline: this
    # loop runs for each of the collection's 32k boxes, and a helper's calls were a tenth of loading its boxes.
    placed: Dict[int, List[Tuple[int, float, float, float, float]]] = {}
    ordered = sorted((b for b in boxes if not b.duplicate),
                     key=lambda b: (b.slice_index, b.box[0], b.box[1]))
    for box in ordered:
        xmin, ymin, xmax, ymax = box.box
        best: Optional[Tuple[float, int]] = None  # (overlap, -lesion index) on the nearest slice: the largest wins
        for distance in range(0, max_gap + 2):
            for lesion_index, other_xmin, other_ymin, other_xmax, other_ymax in placed.get(
                    box.slice_index - distance, ()):
                width = min(xmax, other_xmax) - max(xmin, other_xmin) + 1
                height = min(ymax, other_ymax) - max(ymin, other_ymin) + 1
                if width > 0 and height > 0:
                    candidate = (width * height, -lesion_index)
                    if best is None or candidate > best:
                        best = candidate
            if best is not None:
                break  # the latest slice with an overlapping box wins over any earlier one
        if best is None:
            lesion_index = len(lesions)
            lesions.append(Lesion(series_instance_uid=box.series_instance_uid, boxes=[box]))
        else:
            lesion_index = -best[1]
            lesions[lesion_index].boxes.append(box)
        placed.setdefault(box.slice_index, []).append((lesion_index, xmin, ymin, xmax, ymax))
    for number, lesion in enumerate(lesions, start=1):
        for box in lesion.boxes:
            box.lesion = number
    return lesions


def box_roi_geometries(ijk_to_ras: np.ndarray, boxes: np.ndarray, first_slices: np.ndarray,
                       last_slices: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`~...geometry.box_roi_geometry` of many boxes of one series at once.

    :param boxes: n x 4 (xmin, ymin, xmax, ymax) pixel boxes, inclusive.
    :param first_slices: the first slice of each box (n).
    :param last_slices: the last slice of each box (n).
    :returns: centres (n x 3, RAS), sizes (n x 3, mm) and the axes (3 x 3, as columns) every ROI shares.
    """
    boxes = np.asarray(boxes, dtype=float).reshape(-1, 4)
    # Corners in IJK, filled in place: a series' boxes are few, so numpy's per-call cost is what counts here.
    low, high = np.empty((len(boxes), 3)), np.empty((len(boxes), 3))
    low[:, :2], high[:, :2] = boxes[:, :2] - 0.5, boxes[:, 2:] + 0.5
    low[:, 2], high[:, 2] = np.asarray(first_slices, dtype=float) - 0.5, np.asarray(last_slices, dtype=float) + 0.5
    matrix = np.asarray(ijk_to_ras, dtype=float)
    # One 1x3 product per box, as box_roi_geometry does, not one n x 3 product: BLAS sums an n x 3 product in
    # another order, which moves centres by a rounding step and would make the two paths disagree.
    centers = (((low + high) / 2.0)[:, None, :] @ matrix[:3, :3].T)[:, 0, :] + matrix[:3, 3]
    spacing = spacing_from_matrix(matrix)
    return centers, (high - low) * spacing, matrix[:3, :3] / spacing  # the axes as directions_from_matrix gives them


def ras_bounds(center: Sequence[float], size: Sequence[float], axes: Optional[np.ndarray] = None
               ) -> Tuple[np.ndarray, np.ndarray]:
    """(lowest, highest) RAS corner of the axis-aligned extent of a box ROI (axes as columns)."""
    directions = np.eye(3) if axes is None else np.asarray(axes, dtype=float)
    half = np.abs(directions) @ (np.asarray(size, dtype=float) / 2.0)
    middle = np.asarray(center, dtype=float)
    return middle - half, middle + half


def _shared_volume(first: Tuple[np.ndarray, np.ndarray], second: Tuple[np.ndarray, np.ndarray]) -> float:
    """mm³ two RAS extents share; 0 unless they overlap by more than :data:`TUMOUR_OVERLAP_MM` on every axis."""
    extent = np.minimum(first[1], second[1]) - np.maximum(first[0], second[0])
    return float(np.prod(extent)) if bool(np.all(extent > TUMOUR_OVERLAP_MM)) else 0.0


def group_tumours(lesion_rois: Sequence[RoiData], frame_of_reference: Dict[str, str]) -> List[Tumour]:
    """Join the lesions of different series that are one physical tumour.

    Two lesions of different series are linked when their series share a
    (non-empty) FrameOfReferenceUID and their RAS extents overlap; a tumour is
    a connected group of linked lesions. Lesions of one series are never
    linked directly (:func:`group_lesions` told them apart), but another
    series may join them: the real A0002 has two lesions on one
    reconstruction (three slices unannotated between them) that one lesion of
    the other reconstruction spans, one tumour. Tumours are numbered by their
    first lesion in the order given (the reader's: series in order, lesions
    by number), so the numbering is deterministic.

    :param lesion_rois: lesion ROIs with ``series_instance_uid`` and ``lesion`` attributes.
    :param frame_of_reference: SeriesInstanceUID -> FrameOfReferenceUID ("" when the headers lack it).
    """
    series = [roi.attributes["series_instance_uid"] for roi in lesion_rois]
    frames = [frame_of_reference.get(uid, "") for uid in series]
    extents = [ras_bounds(roi.center, roi.size, roi.axes) for roi in lesion_rois]
    parent = list(range(len(lesion_rois)))

    def root(index: int) -> int:
        while parent[index] != index:
            parent[index] = parent[parent[index]]
            index = parent[index]
        return index

    for first in range(len(lesion_rois)):
        for second in range(first + 1, len(lesion_rois)):
            if (series[first] != series[second] and frames[first] and frames[first] == frames[second]
                    and _shared_volume(extents[first], extents[second]) > 0):
                low, high = sorted((root(first), root(second)))
                parent[high] = low  # the earlier lesion's group keeps its place in the numbering
    tumours: Dict[int, Tumour] = {}
    for index, roi in enumerate(lesion_rois):
        group = root(index)
        if group not in tumours:
            tumours[group] = Tumour(len(tumours) + 1, frames[index])
        tumours[group].lesions.append((series[index], int(roi.attributes["lesion"])))
    return list(tumours.values())


def _clamp(box: Box, rows: int, columns: int) -> Tuple[Optional[Box], bool]:
    """The box clamped to the image; None if nothing of it is inside."""
    xmin, ymin, xmax, ymax = box
    if xmin >= 0 and ymin >= 0 and xmax <= columns - 1 and ymax <= rows - 1:
        return tuple(box), False  # the usual box, inside its image: no new values to build
    if xmax < 0 or ymax < 0 or xmin > columns - 1 or ymin > rows - 1:
        return None, True
    clamped = (max(0.0, xmin), max(0.0, ymin), min(float(columns - 1), xmax), min(float(rows - 1), ymax))
    return clamped, clamped != tuple(box)


# ---------------------------------------------------------------------- reading
class _BoxReader:
    """Reads a case's box files against the series read; findings name each file."""

    def __init__(self, case_id: str, series: CaseSeries, findings: CaseFindings) -> None:
        self.case_id = case_id
        self.series = series
        self.findings = findings
        self.result = CaseBoxes()
        self.size_claims: Dict[Tuple[str, str, str], List[Path]] = {}
        #: VOC files naming no loaded image, per folder: one finding per folder, not per file (a series not
        #: downloaded leaves dozens of them).
        self.unmatched_xml: Dict[Path, List[Tuple[Path, str]]] = {}

    def read(self, folders: Sequence[Path], searched: Path) -> CaseBoxes:
        if not folders:
            self.findings.add(WARNING, "lung.no_annotations",
                              f"no Annotation/{annotation_folder_name(self.case_id)} folder was found beside or "
                              f"inside {searched}")
            return self.result
        seen_files: Dict[str, Path] = {}
        for folder in folders:
            for path in iter_xml_files(folder):
                stem = path.name[:-4]
                if stem in seen_files:
                    self.findings.add(WARNING, "lung.duplicate_xml", f"{path.name} exists in "
                                      f"{seen_files[stem].parent} and {path.parent}; both are read", path=path)
                seen_files.setdefault(stem, path)
                self.result.boxes.extend(self._boxes_of_file(path))
        self._report_unmatched_xml()
        self._flag_duplicates(self.result.boxes)
        for (label, claimed, actual), paths in self.size_claims.items():
            # One finding per series: the real files say 512x512 whatever the image (notes §1.1).
            self.findings.add(INFO, "lung.size_mismatch", f"{len(paths)} XML file(s) on series {label} give "
                              f"<size> {claimed} but the images are {actual} (e.g. {paths[0].name}); the images' "
                              "size is used", path=paths[0], value=float(len(paths)))
        return self.result

    def _boxes_of_file(self, path: Path) -> List[SliceBox]:
        try:
            annotation = parse_voc(path)
        except DataError as error:
            self.findings.add(ERROR, "lung.xml_unreadable", f"{path.name} skipped: {error.problem}", path=path)
            return []
        located = self._locate(annotation.stem, path)
        if located is None:
            return []
        series, k = located
        instance = series.volume.instances[k]
        rows, columns = int(instance.rows or 0), int(instance.columns or 0)
        if not annotation.objects:
            self.findings.add(WARNING, "lung.xml_no_objects", f"{path.name} holds no <object>", path=path)
        if annotation.width and annotation.height and (annotation.width, annotation.height) != (columns, rows):
            key = (series.label, f"{annotation.width}x{annotation.height}", f"{columns}x{rows}")
            self.size_claims.setdefault(key, []).append(path)
        boxes = []
        for index, voc_object in enumerate(annotation.objects):
            self.result.objects.append(AnnotatedObject(path, index, voc_object.name))
            box = self._box_of_object(path, index, voc_object, series, k, rows, columns, annotation.stem)
            if box is not None:
                boxes.append(box)
        return boxes

    def read_sr_records(self, records: Sequence[Any]) -> List[SliceBox]:
        """Place DICOM SR boxes (IDC's form or our export) like VOC boxes, on the images their SR names.

        The image comes from the record, never from the SR's file name (an SR
        file is not named after the image it annotates).
        """
        boxes = []
        for record in records:
            located = self._locate(record.sop_instance_uid, record.source)
            if located is None:
                continue
            series, k = located
            instance = series.volume.instances[k]
            self.result.objects.append(AnnotatedObject(record.source, record.index, record.label))
            box = self._box_of_object(record.source, record.index, record.as_voc_object(), series, k,
                                      int(instance.rows or 0), int(instance.columns or 0), record.sop_instance_uid)
            if box is not None:
                boxes.append(box)
        self.result.boxes.extend(boxes)
        self._flag_duplicates(self.result.boxes)
        return boxes

    def _locate(self, sop_uid: str, path: Path) -> Optional[Tuple[ReadSeries, int]]:
        holders = [series for series in self.series.series.values() if sop_uid in series.sop_to_slice]
        if len(holders) > 1:
            # A box names its image by SOPInstanceUID alone: on a UID shared by two series it could land on
            # the wrong one (centimetres away), so it is placed on neither.
            self.findings.add(ERROR, "lung.duplicate_sop_instance",
                              f"{path.name}: SOPInstanceUID {sop_uid} is in {len(holders)} series "
                              f"({', '.join(series.label for series in holders)}); the box is placed on none",
                              path=path)
            return None
        for series in holders:
            return series, series.sop_to_slice[sop_uid]
        if sop_uid in self.series.without_geometry:
            instance = self.series.without_geometry[sop_uid]
            self.findings.add(WARNING, "lung.box_no_geometry",
                              f"{path.name}: its image {instance.path.name} lacks "
                              f"{', '.join(instance.missing_geometry)}; the box cannot be placed in space", path=path)
        elif sop_uid in self.series.skipped_series_sops:
            self.findings.add(WARNING, "lung.xml_unmatched",
                              f"{path.name}: its image is in series {self.series.skipped_series_sops[sop_uid]}, "
                              "which was not loaded", path=path)
        elif path.suffix.lower() == ".xml":
            self.unmatched_xml.setdefault(path.parent, []).append((path, sop_uid))
        else:
            self.findings.add(WARNING, "lung.xml_unmatched",
                              f"{path.name}: no loaded image has SOPInstanceUID {sop_uid}", path=path)
        return None

    def _report_unmatched_xml(self) -> None:
        for folder, unmatched in self.unmatched_xml.items():
            if len(unmatched) == 1:
                path, sop_uid = unmatched[0]
                message = f"{path.name}: no loaded image has SOPInstanceUID {sop_uid}"
            else:
                names = ", ".join(path.name for path, _ in unmatched[:5])
                more = f" and {len(unmatched) - 5} more" if len(unmatched) > 5 else ""
                message = (f"{len(unmatched)} XML file(s) in {folder} name no loaded image ({names}{more}); "
                           "their series is not on disk or was not loaded")
            self.findings.add(WARNING, "lung.xml_unmatched", message, path=unmatched[0][0],
                              value=float(len(unmatched)))

    def _box_of_object(self, path: Path, index: int, voc_object: VocObject, series: ReadSeries, k: int,
                       rows: int, columns: int, sop_instance_uid: str) -> Optional[SliceBox]:
        original = voc_object.box
        box = original
        if box[0] > box[2] or box[1] > box[3]:
            box = (min(box[0], box[2]), min(box[1], box[3]), max(box[0], box[2]), max(box[1], box[3]))
            self.findings.add(WARNING, "lung.box_inverted", f"{path.name} object {index + 1}: min exceeds max "
                              f"in {original}; the corners were swapped", path=path)
        clamped, changed = _clamp(box, rows, columns)
        if clamped is None:
            self.findings.add(ERROR, "lung.box_outside_image", f"{path.name} object {index + 1}: box {original} "
                              f"lies wholly outside the {columns}x{rows} image; skipped", path=path)
            return None
        if changed:
            self.findings.add(WARNING, "lung.box_outside_image", f"{path.name} object {index + 1}: box {original} "
                              f"reaches outside the {columns}x{rows} image; clamped to {clamped}", path=path,
                              node_name=series.name)
        return SliceBox(path, index, voc_object, sop_instance_uid, series.volume.series_instance_uid, k,
                        original, clamped, clamped=changed)

    def _flag_duplicates(self, boxes: List[SliceBox]) -> None:
        seen: Dict[Tuple[str, Tuple[float, ...]], SliceBox] = {}
        for box in boxes:
            key = (box.sop_instance_uid, tuple(round(v, 6) for v in box.box))
            if key in seen:
                box.duplicate = True
                first = seen[key]
                self.findings.add(WARNING, "lung.duplicate_box",
                                  f"{box.xml_path.name} object {box.object_index + 1} repeats the box of "
                                  f"{first.xml_path.name} object {first.object_index + 1}; kept once",
                                  path=box.xml_path)
            else:
                seen[key] = box


def read_case_boxes(case_id: str, folders: Sequence[Path], series: CaseSeries, findings: CaseFindings,
                    searched: Path) -> CaseBoxes:
    """Every box of the case's annotation folders, and of its DICOM SR box files, placed on the series read.

    VOC XML is the collection's own form; IDC serves the same boxes as TID 1500
    SRs beside the images. SR boxes are placed on images that have no VOC box
    (an IDC download has no XML at all); where both forms annotate an image,
    they are compared (same box within half a pixel, same class) and every
    disagreement is a finding naming both files.

    :param searched: the folder named when no annotation folder was found.
    """
    from ...formats.sr_boxes import collect_sr_boxes, compare_voc_and_sr, is_box_sr_header, voc_box_records

    reader = _BoxReader(case_id, series, findings)
    sr_paths = sorted({header.path for header in series.headers.values()
                       if is_box_sr_header(header.modality, header.sop_class_uid)})
    if not sr_paths:
        return reader.read(folders, searched)
    result = reader.read(folders, searched) if folders else reader.result
    sizes = {uid: (int(header.rows), int(header.columns)) for uid, header in series.headers.items()
             if header.rows and header.columns}
    records, sr_findings = collect_sr_boxes(sr_paths, sizes, case_id)
    findings.extend(sr_findings)
    _report_sr_identity(sr_paths, records, series, case_id, findings)
    voc_files = sorted({box.xml_path for box in result.boxes})
    annotated_by_voc = {box.sop_instance_uid for box in result.boxes}
    reader.read_sr_records([record for record in records if record.sop_instance_uid not in annotated_by_voc])
    if voc_files:
        voc_records = []
        for path in voc_files:
            try:
                voc_records.extend(voc_box_records(path))
            except DataError:
                continue  # already reported as lung.xml_unreadable
        findings.extend(compare_voc_and_sr(voc_records, records, case_id))
    return result


def _report_sr_identity(sr_paths: Sequence[Path], records: Sequence[Any], series: CaseSeries, case_id: str,
                        findings: CaseFindings) -> None:
    """Compare each box SR's PatientID, StudyInstanceUID and FrameOfReferenceUID with the images its boxes name
    (:func:`~...formats.identity.identity_findings`). Cases come from the headers, so an SR of another patient
    is that patient's and never reaches here; a PatientID spelled differently is a warning. An SR in another
    frame of reference is an error finding; its boxes are in pixel indices of the images they name, so they are
    still placed there."""
    from ...formats.identity import identity_findings

    headers_by_path = {header.path: header for header in series.headers.values()}
    for path in sr_paths:
        named = {record.sop_instance_uid for record in records if record.source == path}
        images = [header for uid, header in series.headers.items() if uid in named and header.path != path]
        if path in headers_by_path and images:
            findings.extend(identity_findings(headers_by_path[path], images, path, case_id))


# ---------------------------------------------------------------------- ROI and table data
def box_folder(series: ReadSeries) -> str:
    """The hierarchy folder of a series' boxes (under its study)."""
    return f"{series.name} boxes"


def _lesion_geometries(series: ReadSeries, lesions: Sequence[Lesion]) -> List[Tuple[np.ndarray, ...]]:
    """(centre, size, axes) of each lesion's ROI: its union box over its first to last slice."""
    slices = [lesion.slices for lesion in lesions]
    return _roi_geometries(series, [lesion.union_box for lesion in lesions], [found[0] for found in slices],
                           [found[-1] for found in slices])


def _roi_geometries(series: ReadSeries, boxes: Sequence[Box], first_slices: Sequence[int],
                    last_slices: Sequence[int]) -> List[Tuple[np.ndarray, ...]]:
    """(centre, size, axes) per box, computed for the whole series at once; every ROI gets its own arrays."""
    if not boxes:
        return []
    centers, sizes, axes = box_roi_geometries(series.volume.ijk_to_ras, np.array(boxes, dtype=float),
                                              np.array(first_slices), np.array(last_slices))
    return [(center.copy(), size.copy(), axes.copy()) for center, size in zip(centers, sizes)]


def _lesion_roi(case_id: str, series: ReadSeries, lesion: Lesion, number: int,
                geometry: Tuple[np.ndarray, ...]) -> RoiData:
    from .series import study_placement

    slices = lesion.slices
    center, size, axes = geometry
    return RoiData(
        key=f"{series.key}/lesion/{number}",
        name=f"{series.name} lesion {number}",
        center=center, size=size, axes=axes,
        color=LESION_COLORS.get(series.volume.modality, LESION_COLORS["CT"]),
        locked=True,
        placement=study_placement(case_id, series.volume.instances[0]).in_folder(box_folder(series)),
        reference=series.key,
        attributes={
            "role": ROLE_LESION, "case_id": case_id, "lesion": str(number),
            "series_instance_uid": lesion.series_instance_uid,
            "first_slice": str(slices[0]), "last_slice": str(slices[-1]), "boxes": str(len(lesion.boxes)),
            "missing_slices": " ".join(str(k) for k in lesion.missing_slices),
        },
    )


def _slice_roi(case_id: str, series: ReadSeries, box: SliceBox, geometry: Tuple[np.ndarray, ...]) -> RoiData:
    from .series import study_placement

    center, size, axes = geometry
    placement = study_placement(case_id, series.volume.instances[0])
    return RoiData(
        key=f"{series.key}/box/{box.xml_path}/{box.object_index}",
        name=f"{series.name} slice {box.slice_index} box {box.object_index + 1}",
        center=center, size=size, axes=axes, color=SLICE_BOX_COLOR, locked=False,
        placement=placement.in_folder(box_folder(series), SLICE_BOX_FOLDER),
        reference=series.key,
        # Kept for editing and export, hidden so the lesion boxes stay readable.
        visible=False,
        attributes={
            "role": ROLE_SLICE_BOX, "case_id": case_id, "lesion": str(box.lesion),
            "series_instance_uid": box.series_instance_uid,
            "sop_instance_uid": box.sop_instance_uid, "slice_index": str(box.slice_index),
            "xml_file": box.xml_path.name, "object_index": str(box.object_index), "label": box.name,
            "difficult": str(int(box.voc_object.difficult)), "truncated": str(int(box.voc_object.truncated)),
            "clamped": str(int(box.clamped)),
        },
    )


def box_rois(case_id: str, series: Dict[str, ReadSeries], boxes: Sequence[SliceBox]
             ) -> Tuple[List[RoiData], Dict[str, List[Lesion]], List[Tumour]]:
    """Lesion ROIs of every series, then the per-slice box ROIs (duplicates left out), the lesions and tumours.

    Lesion ROIs and boxes carry the number of the tumour they belong to
    (``tumour`` attribute, :attr:`SliceBox.tumour`).
    """
    by_series: Dict[str, List[SliceBox]] = defaultdict(list)
    for box in boxes:
        by_series[box.series_instance_uid].append(box)
    lesion_rois: List[RoiData] = []
    lesions_by_series: Dict[str, List[Lesion]] = {}
    for uid, series_boxes in by_series.items():
        read = series[uid]
        lesions = group_lesions(series_boxes)
        lesions_by_series[uid] = lesions
        geometries = _lesion_geometries(read, lesions)
        lesion_rois.extend(_lesion_roi(case_id, read, lesion, number, geometry)
                           for number, (lesion, geometry) in enumerate(zip(lesions, geometries), 1))
    frames = {uid: read.volume.instances[0].frame_of_reference_uid or "" for uid, read in series.items()}
    tumours = group_tumours(lesion_rois, frames)
    tumour_of = {lesion: tumour.number for tumour in tumours for lesion in tumour.lesions}
    for roi in lesion_rois:
        roi.attributes["tumour"] = str(tumour_of[(roi.attributes["series_instance_uid"],
                                                  int(roi.attributes["lesion"]))])
    for box in boxes:
        box.tumour = tumour_of.get((box.series_instance_uid, box.lesion), 0)
    slice_rois = []
    for uid, series_boxes in by_series.items():
        kept = [box for box in series_boxes if not box.duplicate]
        indices = [box.slice_index for box in kept]
        geometries = _roi_geometries(series[uid], [box.box for box in kept], indices, indices)
        slice_rois.extend(_slice_roi(case_id, series[uid], box, geometry) for box, geometry in zip(kept, geometries))
    return lesion_rois + slice_rois, lesions_by_series, tumours


def box_table(case_id: str, series: Dict[str, ReadSeries], boxes: Sequence[SliceBox]) -> Optional[TableData]:
    """One row per box read (duplicates flagged), under the patient; None when there is no box."""
    if not boxes:
        return None
    import pandas as pd  # imported here: only needed once boxes exist

    rows = []
    for box in boxes:
        read = series[box.series_instance_uid]
        rows.append({
            "xml_file": box.xml_path.name, "object": box.object_index + 1, "label": box.name,
            "series": read.label, "modality": read.volume.modality, "slice": box.slice_index,
            "sop_instance_uid": box.sop_instance_uid, "xmin": box.box[0], "ymin": box.box[1],
            "xmax": box.box[2], "ymax": box.box[3], "difficult": int(box.voc_object.difficult),
            "clamped": int(box.clamped), "duplicate": int(box.duplicate), "lesion": box.lesion,
            "tumour": box.tumour,
        })
    return TableData(key="boxes", name=f"{case_id} boxes", dataframe=pd.DataFrame(rows),
                     placement=Placement(patient_id=case_id, patient_name=case_id),
                     attributes={"case_id": case_id, "role": "box_table"})
