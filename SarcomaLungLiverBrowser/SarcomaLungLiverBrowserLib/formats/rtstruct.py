"""Read DICOM RT Structure Sets and turn their planar contours into voxel masks.

An RTSTRUCT holds ROIs (number, name, colour) and, per ROI, contours: closed
planar polygons in patient (LPS) coordinates, one plane each. To show an ROI as
a segment it is rasterised on the image it was drawn on:

* the image is chosen by the SOP instances the structure set references
  first, then by its referenced series, and otherwise by FrameOfReferenceUID,
  because re-exported structure sets (mirp's ``RS.dcm`` test files, which come
  from TCIA Soft-tissue-Sarcoma) reference SOP UIDs of the original 267-slice CT
  that are not in the images beside them;
* contours are matched to slices by their position along the slice normal
  (within half a slice spacing), never only by the SOP instance they name, for
  the same reason;
* a voxel is inside when its centre is inside the polygon; several contours on
  one slice are combined by XOR, so a contour inside another is a hole.

Nothing here touches the scene; collections put the masks into segmentations.
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Set, Tuple

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError

from ..errors import DataError
from ..findings import ERROR, INFO, WARNING, Finding
from ..geometry import LPS_TO_RAS

__all__ = [
    "RTSTRUCT_SOP_CLASS_UID",
    "Contour",
    "RoiContours",
    "StructureSet",
    "RasterResult",
    "ReferenceChoice",
    "read_rtstruct",
    "is_rtstruct",
    "rasterize_roi",
    "rasterize_roi_on_volume",
    "slice_positions_of_volume",
    "choose_reference_image",
    "image_kind_hint",
    "volume_kind",
    "roi_polygon_volume_mm3",
    "raster_findings",
    "MINIMUM_POLYGON_POINTS",
]

RTSTRUCT_SOP_CLASS_UID = "1.2.840.10008.5.1.4.1.1.481.3"

#: A closed polygon needs at least three corners to enclose any area.
MINIMUM_POLYGON_POINTS = 3

#: Colour used when an ROI has no ROIDisplayColor (Slicer's default segment green-ish).
DEFAULT_COLOR = (0.5, 0.68, 0.5)


@dataclass
class Contour:
    """One contour of an ROI.

    :param points: (n, 3) LPS coordinates in mm.
    :param geometric_type: ``CLOSED_PLANAR``, ``OPEN_PLANAR``, ``POINT``...
    :param referenced_sop_instance_uids: images the contour says it was drawn on.
    :param index: position of the contour in the ROI's ContourSequence (0-based).
    """

    points: np.ndarray
    geometric_type: str
    referenced_sop_instance_uids: Tuple[str, ...] = ()
    index: int = 0


@dataclass
class RoiContours:
    """One ROI of a structure set with all its contours."""

    number: int
    name: str
    color: Tuple[float, float, float]
    frame_of_reference_uid: str = ""
    interpreted_type: str = ""
    generation_algorithm: str = ""
    contours: List[Contour] = field(default_factory=list)
    #: whether the file gave an ROIDisplayColor (else ``color`` is :data:`DEFAULT_COLOR`, for the caller to replace)
    display_color_given: bool = False

    @property
    def closed_planar(self) -> List[Contour]:
        return [contour for contour in self.contours if contour.geometric_type == "CLOSED_PLANAR"]


@dataclass
class StructureSet:
    """The parts of an RTSTRUCT file that loading and QA need."""

    path: Path
    sop_instance_uid: str
    series_instance_uid: str
    study_instance_uid: str
    patient_id: str
    series_description: str
    structure_set_label: str
    structure_set_name: str
    manufacturer: str
    frame_of_reference_uids: List[str]
    referenced_series_uids: List[str]
    referenced_sop_instance_uids: Set[str]
    referenced_sop_class_uids: Set[str]
    rois: List[RoiContours]
    problems: List[str] = field(default_factory=list)

    @property
    def frame_of_reference_uid(self) -> str:
        """The first referenced frame of reference ('' if none is given)."""
        return self.frame_of_reference_uids[0] if self.frame_of_reference_uids else ""

    @property
    def description(self) -> str:
        """The text that says which image the set belongs to, for hints and names."""
        return self.series_description or self.structure_set_label or self.structure_set_name or self.path.name

    def roi(self, name: str) -> RoiContours:
        for roi in self.rois:
            if roi.name == name:
                return roi
        raise KeyError(f"{self.path}: no ROI named {name!r} (ROIs: {[r.name for r in self.rois]})")


def is_rtstruct(dataset: pydicom.Dataset) -> bool:
    return str(dataset.get("SOPClassUID", "")) == RTSTRUCT_SOP_CLASS_UID or dataset.get("Modality") == "RTSTRUCT"


def _text(dataset: pydicom.Dataset, keyword: str) -> str:
    value = dataset.get(keyword)
    return "" if value is None else str(value).strip()


def _display_color(item: pydicom.Dataset) -> Optional[Tuple[float, float, float]]:
    """ROIDisplayColor as 0..1 RGB, or None when absent or not three numbers."""
    value = item.get("ROIDisplayColor")
    try:
        rgb = [float(v) / 255.0 for v in value]  # type: ignore[union-attr]
    except (TypeError, ValueError):
        return None
    if len(rgb) != 3 or not all(np.isfinite(rgb)):
        return None
    return (min(max(rgb[0], 0.0), 1.0), min(max(rgb[1], 0.0), 1.0), min(max(rgb[2], 0.0), 1.0))


def _contour_points(item: pydicom.Dataset, path: Path, roi_name: str, index: int,
                    problems: List[str]) -> np.ndarray:
    data = item.get("ContourData")
    if data is None:
        problems.append(f"ROI {roi_name!r} contour {index + 1} has no ContourData")
        return np.zeros((0, 3))
    try:
        values = np.asarray([float(v) for v in data], dtype=float)
    except (TypeError, ValueError):
        problems.append(f"ROI {roi_name!r} contour {index + 1} has non-numeric ContourData")
        return np.zeros((0, 3))
    if values.size % 3:
        problems.append(f"ROI {roi_name!r} contour {index + 1} has {values.size} coordinates, not a multiple of 3")
        values = values[: values.size - values.size % 3]
    if not np.all(np.isfinite(values)):
        problems.append(f"ROI {roi_name!r} contour {index + 1} has non-finite coordinates")
        return np.zeros((0, 3))
    return values.reshape(-1, 3)


def _referenced_images(items: Iterable[pydicom.Dataset], sop_uids: Set[str], class_uids: Set[str]) -> Tuple[str, ...]:
    found = []
    for image in items:
        uid = _text(image, "ReferencedSOPInstanceUID")
        if uid:
            found.append(uid)
            sop_uids.add(uid)
        class_uid = _text(image, "ReferencedSOPClassUID")
        if class_uid:
            class_uids.add(class_uid)
    return tuple(found)


def read_rtstruct(path: Path) -> StructureSet:
    """Read an RTSTRUCT file.

    Files without the DICOM preamble/meta header (pydicom's own ``rtstruct.dcm``)
    are read too. ROIs listed without contours are kept with no contours; ROI
    contours without a StructureSetROI entry get a generated name.

    :raises DataError: naming the file, if it is not a readable RT Structure Set.
    """
    path = Path(path)
    try:
        dataset = pydicom.dcmread(str(path), force=True)
    except (InvalidDicomError, OSError, ValueError, EOFError, KeyError, TypeError, AttributeError) as error:
        raise DataError(path, f"not a readable DICOM file ({error})") from error
    if not is_rtstruct(dataset) or "StructureSetROISequence" not in dataset and "ROIContourSequence" not in dataset:
        raise DataError(path, "is not an RT Structure Set (no RTSTRUCT SOP class / StructureSetROISequence)")
    problems: List[str] = []
    sop_uids: Set[str] = set()
    class_uids: Set[str] = set()
    frames: List[str] = []
    series_uids: List[str] = []
    for frame in dataset.get("ReferencedFrameOfReferenceSequence", []):
        uid = _text(frame, "FrameOfReferenceUID")
        if uid and uid not in frames:
            frames.append(uid)
        for study in frame.get("RTReferencedStudySequence", []):
            for series in study.get("RTReferencedSeriesSequence", []):
                uid = _text(series, "SeriesInstanceUID")
                if uid and uid not in series_uids:
                    series_uids.append(uid)
                _referenced_images(series.get("ContourImageSequence", []), sop_uids, class_uids)
    top_frame = _text(dataset, "FrameOfReferenceUID")
    if top_frame and top_frame not in frames:
        frames.append(top_frame)

    rois: Dict[int, RoiContours] = {}
    for item in dataset.get("StructureSetROISequence", []):
        try:
            number = int(item.get("ROINumber"))
        except (TypeError, ValueError):
            problems.append(f"an ROI without a valid ROINumber ({_text(item, 'ROIName') or 'no name'}) was skipped")
            continue
        rois[number] = RoiContours(
            number=number,
            name=_text(item, "ROIName") or f"ROI {number}",
            color=DEFAULT_COLOR,
            frame_of_reference_uid=_text(item, "ReferencedFrameOfReferenceUID"),
            generation_algorithm=_text(item, "ROIGenerationAlgorithm"),
        )
    for item in dataset.get("ROIContourSequence", []):
        try:
            number = int(item.get("ReferencedROINumber"))
        except (TypeError, ValueError):
            problems.append("an ROIContourSequence item without a valid ReferencedROINumber was skipped")
            continue
        roi = rois.get(number)
        if roi is None:
            problems.append(f"contours of ROI number {number} have no StructureSetROISequence entry")
            roi = rois[number] = RoiContours(number=number, name=f"ROI {number}", color=DEFAULT_COLOR)
        display_color = _display_color(item)
        roi.color = display_color or DEFAULT_COLOR
        roi.display_color_given = display_color is not None
        for index, contour_item in enumerate(item.get("ContourSequence", [])):
            points = _contour_points(contour_item, path, roi.name, index, problems)
            referenced = _referenced_images(contour_item.get("ContourImageSequence", []), sop_uids, class_uids)
            roi.contours.append(Contour(
                points=points,
                geometric_type=_text(contour_item, "ContourGeometricType").upper() or "CLOSED_PLANAR",
                referenced_sop_instance_uids=referenced,
                index=index,
            ))
    for roi in rois.values():
        if not roi.contours:
            problems.append(f"ROI {roi.name!r} has no contours")
    for item in dataset.get("RTROIObservationsSequence", []):
        try:
            number = int(item.get("ReferencedROINumber"))
        except (TypeError, ValueError):
            continue
        if number in rois:
            rois[number].interpreted_type = _text(item, "RTROIInterpretedType")
    return StructureSet(
        path=path,
        sop_instance_uid=_text(dataset, "SOPInstanceUID"),
        series_instance_uid=_text(dataset, "SeriesInstanceUID"),
        study_instance_uid=_text(dataset, "StudyInstanceUID"),
        patient_id=_text(dataset, "PatientID"),
        series_description=_text(dataset, "SeriesDescription"),
        structure_set_label=_text(dataset, "StructureSetLabel"),
        structure_set_name=_text(dataset, "StructureSetName"),
        manufacturer=_text(dataset, "Manufacturer"),
        frame_of_reference_uids=frames,
        referenced_series_uids=series_uids,
        referenced_sop_instance_uids=sop_uids,
        referenced_sop_class_uids=class_uids,
        rois=[rois[number] for number in sorted(rois)],
        problems=problems,
    )


# ---------------------------------------------------------------------------------------------- rasterising
@dataclass
class RasterResult:
    """A rasterised ROI and what could not be placed.

    Contour lists hold indices into the ROI's ``contours``.
    ``off_slice`` pairs a contour with its distance (mm) to the nearest slice.
    """

    mask: np.ndarray
    slices_used: List[int] = field(default_factory=list)
    too_few_points: List[int] = field(default_factory=list)
    off_slice: List[Tuple[int, float]] = field(default_factory=list)
    not_parallel: List[int] = field(default_factory=list)
    outside_image: List[int] = field(default_factory=list)
    other_types: Dict[str, int] = field(default_factory=dict)

    @property
    def voxel_count(self) -> int:
        return int(np.count_nonzero(self.mask))


def slice_positions_of_volume(volume: object) -> Optional[np.ndarray]:
    """Positions (mm along the slice normal) of each grid slice of a DicomVolume, in k order.

    The volume's grid holds every file at its own position (a missing slice is
    an empty grid position), so the positions follow from its matrix; a
    contour is matched to the grid position it was drawn at, never to a
    neighbour of a missing slice.
    """
    matrix = getattr(volume, "ijk_to_ras", None)
    voxels = getattr(volume, "voxels", None)
    if matrix is None or voxels is None:
        return None
    ijk_to_lps = LPS_TO_RAS @ np.asarray(matrix, dtype=float)
    k_axis = ijk_to_lps[:3, 2]
    spacing = float(np.linalg.norm(k_axis))
    if spacing == 0:
        return None
    normal = k_axis / spacing
    return float(np.dot(ijk_to_lps[:3, 3], normal)) + spacing * np.arange(int(voxels.shape[0]))


def _fill_polygon(polygon_ij: np.ndarray, shape_ji: Tuple[int, int]) -> np.ndarray:
    """Boolean [j, i] image of the pixel centres inside a polygon (even-odd rule).

    A scanline fill: for each pixel row the crossings of the row's centre line
    with the polygon edges are sorted and the spans between pairs are filled.
    Edges count on a half-open interval in j, so a vertex on a row counts once.
    """
    rows, columns = shape_ji
    result = np.zeros(shape_ji, dtype=bool)
    i_values, j_values = polygon_ij[:, 0], polygon_ij[:, 1]
    i0, j0 = i_values, j_values
    i1, j1 = np.roll(i_values, -1), np.roll(j_values, -1)
    j_first = max(int(np.ceil(j_values.min())), 0)
    j_last = min(int(np.floor(j_values.max())), rows - 1)
    for j in range(j_first, j_last + 1):
        crossing = ((j0 <= j) & (j1 > j)) | ((j1 <= j) & (j0 > j))
        if not np.any(crossing):
            continue
        t = (j - j0[crossing]) / (j1[crossing] - j0[crossing])
        xs = np.sort(i0[crossing] + t * (i1[crossing] - i0[crossing]))
        for start, stop in zip(xs[0::2], xs[1::2]):
            first = max(int(np.ceil(start)), 0)
            last = min(int(np.ceil(stop)) - 1, columns - 1)  # centres with start <= i < stop
            if last >= first:
                result[j, first:last + 1] = True
    return result


def rasterize_roi(
    roi: RoiContours,
    shape: Sequence[int],
    ijk_to_ras: np.ndarray,
    slice_positions: Optional[Sequence[float]] = None,
) -> RasterResult:
    """Rasterise an ROI's closed planar contours on a voxel grid.

    :param shape: the grid's shape as [k, j, i].
    :param ijk_to_ras: the grid's IJK-to-RAS matrix.
    :param slice_positions: each slice's distance along the slice normal (mm),
        when the slices are not evenly spaced (see :func:`slice_positions_of_volume`).
    :returns: the mask [k, j, i] and the contours that could not be placed.
    """
    shape = tuple(int(n) for n in shape)
    mask = np.zeros(shape, dtype=bool)
    result = RasterResult(mask=mask)
    ijk_to_lps = LPS_TO_RAS @ np.asarray(ijk_to_ras, dtype=float)
    lps_to_ijk = np.linalg.inv(ijk_to_lps)
    k_axis = ijk_to_lps[:3, 2]
    spacing = float(np.linalg.norm(k_axis))
    normal = k_axis / spacing
    if slice_positions is None:
        origin = float(np.dot(ijk_to_lps[:3, 3], normal))
        positions = origin + spacing * np.arange(shape[0])
    else:
        positions = np.asarray(slice_positions, dtype=float)
        if positions.size != shape[0]:
            raise ValueError(f"{positions.size} slice positions for {shape[0]} slices")
    # Half the distance to the nearer neighbour; a lone slice gets half its matrix spacing.
    if positions.size > 1:
        steps = np.abs(np.diff(positions))
        left = np.concatenate([[steps[0]], steps])
        right = np.concatenate([steps, [steps[-1]]])
        tolerance = 0.5 * np.minimum(left, right) + 1e-3
    else:
        tolerance = np.array([0.5 * spacing + 1e-3])
    slices: Dict[int, np.ndarray] = {}
    counts: Counter = Counter()
    for number, contour in enumerate(roi.contours):
        if contour.geometric_type != "CLOSED_PLANAR":
            counts[contour.geometric_type] += 1
            continue
        points = contour.points
        if len(points) < MINIMUM_POLYGON_POINTS:
            result.too_few_points.append(number)
            continue
        distances = points @ normal
        # A contour must lie in one image plane; one spread over more than half a
        # slice spacing was drawn on another orientation (sagittal on axial).
        if float(distances.max() - distances.min()) > 0.5 * spacing + 1e-3:
            result.not_parallel.append(number)
            continue
        distance = float(distances.mean())
        nearest = int(np.argmin(np.abs(positions - distance)))
        offset = abs(float(positions[nearest]) - distance)
        if offset > tolerance[nearest]:
            result.off_slice.append((number, offset))
            continue
        ijk = points @ lps_to_ijk[:3, :3].T + lps_to_ijk[:3, 3]
        filled = _fill_polygon(ijk[:, :2], (shape[1], shape[2]))
        if not filled.any():
            inside_i = (ijk[:, 0].max() >= -0.5) and (ijk[:, 0].min() <= shape[2] - 0.5)
            inside_j = (ijk[:, 1].max() >= -0.5) and (ijk[:, 1].min() <= shape[1] - 0.5)
            if not (inside_i and inside_j):
                result.outside_image.append(number)
        if nearest in slices:
            slices[nearest] ^= filled
        else:
            slices[nearest] = filled
    for k, filled in slices.items():
        mask[k] = filled
    result.slices_used = sorted(slices)
    result.other_types = dict(counts)
    return result


def rasterize_roi_on_volume(roi: RoiContours, volume: object) -> RasterResult:
    """Rasterise on a :class:`~.dicom_series.DicomVolume`, using its real slice positions."""
    voxels = getattr(volume, "voxels")
    return rasterize_roi(roi, voxels.shape, getattr(volume, "ijk_to_ras"), slice_positions_of_volume(volume))


def _polygon_area(points_2d: np.ndarray) -> float:
    x, y = points_2d[:, 0], points_2d[:, 1]
    return 0.5 * float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def _point_in_polygon(point: np.ndarray, polygon: np.ndarray) -> bool:
    x, y = point
    xs, ys = polygon[:, 0], polygon[:, 1]
    xs1, ys1 = np.roll(xs, -1), np.roll(ys, -1)
    crossing = ((ys <= y) & (ys1 > y)) | ((ys1 <= y) & (ys > y))
    if not np.any(crossing):
        return False
    t = (y - ys[crossing]) / (ys1[crossing] - ys[crossing])
    return bool(np.count_nonzero(xs[crossing] + t * (xs1[crossing] - xs[crossing]) > x) % 2)


def roi_polygon_volume_mm3(roi: RoiContours, slice_spacing: float, normal: Sequence[float] = (0.0, 0.0, 1.0)) -> float:
    """Volume of an ROI from its polygons alone: area of each plane times the slice spacing.

    Independent of any voxel grid, so it checks a rasterisation. Contours in one
    plane combine by the even-odd rule (a contour inside an odd number of others
    is a hole), as in :func:`rasterize_roi`. Contours with too few points are ignored.
    """
    normal_vector = np.asarray(normal, dtype=float)
    normal_vector = normal_vector / np.linalg.norm(normal_vector)
    helper = np.array([1.0, 0.0, 0.0]) if abs(normal_vector[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    u = np.cross(normal_vector, helper)
    u /= np.linalg.norm(u)
    v = np.cross(normal_vector, u)
    planes: Dict[float, List[np.ndarray]] = {}
    for contour in roi.closed_planar:
        if len(contour.points) < MINIMUM_POLYGON_POINTS:
            continue
        key = round(float(np.mean(contour.points @ normal_vector)), 2)
        planes.setdefault(key, []).append(np.stack([contour.points @ u, contour.points @ v], axis=1))
    total = 0.0
    for polygons in planes.values():
        for index, polygon in enumerate(polygons):
            depth = sum(_point_in_polygon(polygon[0], other) for other_index, other in enumerate(polygons)
                        if other_index != index)
            total += _polygon_area(polygon) * (-1.0 if depth % 2 else 1.0)
    return total * float(slice_spacing)


# ---------------------------------------------------------------------------------------------- choosing the image
_RTSTRUCT_WORD = re.compile(r"rt[ _-]?struct(ure)?([ _-]?set)?", re.IGNORECASE)


def image_kind_hint(text: str) -> Tuple[str, bool]:
    """(kind, aligned) named by a description: kind is CT, PET, T1, T2FS, STIR, MR or ''.

    MIM's Soft-tissue-Sarcoma names (``RTstruct_AlignedT!toPET``, ``RTStruct_PET``,
    ``Aligned_T2FStoPET_BOX``, ``AXIAL SE T2 FAT SAT``) and mirp's ROI suffixes
    (``GTV_Mass_MR_T1``) are understood. An aligned MR series is named for its MR
    sequence, with ``aligned`` True, because it is an MR image on the PET grid.
    """
    lowered = _RTSTRUCT_WORD.sub(" ", text.lower()).replace("t!", "t1")
    aligned = "aligned" in lowered or "topet" in lowered
    if re.search(r"t2", lowered):
        return "T2FS", aligned
    if "stir" in lowered:
        return "STIR", aligned
    if re.search(r"t1", lowered):
        return "T1", aligned
    if re.search(r"pet|(^|[^a-z])pt([^a-z]|$)", lowered):
        return "PET", aligned
    if re.search(r"(^|[^a-z])ct([^a-z]|$)", lowered):
        return "CT", aligned
    if re.search(r"(^|[^a-z])mri?([^a-z]|$)", lowered):
        return "MR", aligned
    return "", aligned


_SOP_CLASS_MODALITY = {
    "1.2.840.10008.5.1.4.1.1.2": "CT",
    "1.2.840.10008.5.1.4.1.1.2.1": "CT",
    "1.2.840.10008.5.1.4.1.1.128": "PT",
    "1.2.840.10008.5.1.4.1.1.130": "PT",
    "1.2.840.10008.5.1.4.1.1.4": "MR",
    "1.2.840.10008.5.1.4.1.1.4.1": "MR",
}


def volume_kind(modality: str, series_description: str) -> Tuple[str, bool]:
    """(kind, aligned) of an image series, as in :func:`image_kind_hint`."""
    if modality == "CT":
        return "CT", False
    if modality == "PT":
        return "PET", False
    kind, aligned = image_kind_hint(series_description)
    if modality == "MR" and kind in ("", "CT", "PET"):
        return "MR", aligned
    return kind, aligned


@dataclass
class ReferenceChoice:
    """The image an RTSTRUCT was matched to and how."""

    index: int
    method: str  # "sop", "series" or "frame_of_reference"
    reason: str
    ambiguous: bool = False
    #: The set's descriptions name another kind of image (T1 contours matched to a T2FS image).
    kind_mismatch: bool = False


def _common_depth(first: Path, second: Path) -> int:
    depth = 0
    for a, b in zip(Path(first).resolve().parts, Path(second).resolve().parts):
        if a != b:
            break
        depth += 1
    return depth


def choose_reference_image(structure: StructureSet, volumes: Sequence[object]) -> Optional[ReferenceChoice]:
    """Which of ``volumes`` (DicomVolume-like) the structure set was drawn on.

    1. the volume holding most of the referenced SOP instances;
    2. else the volume whose SeriesInstanceUID is referenced;
    3. else, among volumes in a referenced frame of reference, the best by:
       modality of the referenced SOP class, the image kind named in the set's
       descriptions and ROI names (CT, PET, T1, T2FS, STIR, aligned-to-PET),
       how many contours land on its slices, and folder nearness.

    :returns: None when no volume shares the frame of reference.
    """
    if not volumes:
        return None
    referenced = structure.referenced_sop_instance_uids
    if referenced:
        hits = []
        for volume in volumes:
            uids = {i.sop_instance_uid for i in getattr(volume, "present_instances", getattr(volume, "instances"))}
            uids |= {i.sop_instance_uid for i in getattr(volume, "duplicates", [])}
            hits.append(len(uids & referenced))
        best = int(np.argmax(hits))
        if hits[best] > 0:
            return ReferenceChoice(best, "sop", f"{hits[best]} of {len(referenced)} referenced images are in this series")
    for index, volume in enumerate(volumes):
        if getattr(volume, "series_instance_uid") in structure.referenced_series_uids:
            return ReferenceChoice(index, "series", "its SeriesInstanceUID is the referenced series")
    frames = set(structure.frame_of_reference_uids) | {roi.frame_of_reference_uid for roi in structure.rois}
    frames.discard("")
    candidates = [index for index, volume in enumerate(volumes)
                  if getattr(volume, "instances")[0].frame_of_reference_uid in frames]
    if not candidates:
        return None
    class_modalities = {_SOP_CLASS_MODALITY.get(uid, "") for uid in structure.referenced_sop_class_uids} - {""}
    text = " ".join([structure.series_description, structure.structure_set_label, structure.structure_set_name,
                     *[roi.name for roi in structure.rois]])
    kind, aligned = image_kind_hint(structure.series_description or text)
    if not kind:
        kind, aligned = image_kind_hint(text)
    scores = []
    for index in candidates:
        volume = volumes[index]
        first = getattr(volume, "instances")[0]
        score = 0.0
        if first.modality in class_modalities:
            score += 4.0
        volume_kind_name, volume_aligned = volume_kind(first.modality, first.series_description)
        if kind and volume_kind_name == kind:
            score += 2.0
        elif kind == "MR" and first.modality == "MR":
            score += 1.0
        if kind:
            score += 1.0 if volume_aligned == aligned else -1.0
        score += 2.0 * _fraction_on_slices(structure, volume)
        score += 0.01 * _common_depth(structure.path.parent, first.path.parent)
        scores.append(score)
    order = np.argsort(scores)[::-1]
    best = candidates[int(order[0])]
    ambiguous = len(candidates) > 1 and scores[int(order[0])] - scores[int(order[1])] < 1.0
    reason = (f"same FrameOfReferenceUID; {len(candidates)} candidate image(s); hint {kind or 'none'}"
              f"{' (aligned)' if aligned else ''}")
    chosen = getattr(volumes[best], "instances")[0]
    chosen_kind, _ = volume_kind(chosen.modality, chosen.series_description)
    mismatch = bool(kind) and chosen_kind != kind and not (kind == "MR" and chosen.modality == "MR")
    return ReferenceChoice(best, "frame_of_reference", reason, ambiguous, mismatch)


def _fraction_on_slices(structure: StructureSet, volume: object) -> float:
    """Share of closed contours lying on a slice of the volume (0..1)."""
    positions = slice_positions_of_volume(volume)
    first = getattr(volume, "instances")[0]
    if positions is None or first.plane is None:
        return 0.0
    normal = first.plane.normal
    spacing = float(np.median(np.abs(np.diff(positions)))) if positions.size > 1 else float(first.slice_thickness or 1.0)
    contours = [c for roi in structure.rois for c in roi.closed_planar if len(c.points) >= MINIMUM_POLYGON_POINTS]
    if not contours:
        return 0.0
    hits = 0
    for contour in contours:
        distance = float(np.mean(contour.points @ normal))
        if np.min(np.abs(positions - distance)) <= 0.5 * spacing + 1e-3:
            hits += 1
    return hits / len(contours)


# ---------------------------------------------------------------------------------------------- findings
def raster_findings(
    structure: StructureSet,
    roi: RoiContours,
    result: RasterResult,
    check_prefix: str,
    case_id: str = "",
    node_name: str = "",
    segment_id: str = "",
    image_name: str = "",
) -> List[Finding]:
    """QA findings for one rasterised ROI (too few points, off-slice, not parallel, outside, empty)."""
    findings: List[Finding] = []
    where = f"{structure.path.name} ({structure.description}) ROI {roi.name!r}"
    common = dict(case_id=case_id, path=str(structure.path), node_name=node_name, segment_id=segment_id)
    if result.too_few_points:
        numbers = ", ".join(str(n + 1) for n in result.too_few_points)
        findings.append(Finding(WARNING, f"{check_prefix}.too_few_points",
                                f"{where}: contour(s) {numbers} have fewer than {MINIMUM_POLYGON_POINTS} points "
                                "and enclose nothing; skipped", value=float(len(result.too_few_points)), **common))
    if result.off_slice:
        worst = max(offset for _, offset in result.off_slice)
        findings.append(Finding(WARNING, f"{check_prefix}.contour_off_slice",
                                f"{where}: {len(result.off_slice)} contour(s) lie between the slices of "
                                f"{image_name or 'the image'} (up to {worst:.2f} mm from the nearest); skipped",
                                value=float(len(result.off_slice)), **common))
    if result.not_parallel:
        findings.append(Finding(WARNING, f"{check_prefix}.contour_not_parallel",
                                f"{where}: {len(result.not_parallel)} contour(s) are not in the plane of the "
                                f"slices of {image_name or 'the image'}; skipped",
                                value=float(len(result.not_parallel)), **common))
    if result.outside_image:
        findings.append(Finding(WARNING, f"{check_prefix}.contour_outside_image",
                                f"{where}: {len(result.outside_image)} contour(s) lie outside "
                                f"{image_name or 'the image'}", value=float(len(result.outside_image)), **common))
    closed = len(roi.closed_planar)
    if closed and result.voxel_count == 0:
        findings.append(Finding(ERROR, f"{check_prefix}.empty_roi",
                                f"{where}: none of its {closed} contour(s) cover a voxel of "
                                f"{image_name or 'the image'}", value=0.0, **common))
    elif not closed and roi.contours:
        types = ", ".join(f"{n} {t}" for t, n in Counter(c.geometric_type for c in roi.contours).items())
        findings.append(Finding(INFO, f"{check_prefix}.not_a_surface",
                                f"{where}: has no closed contours ({types}); not converted to a segment", **common))
    return findings
