"""Read DICOM Segmentation objects onto a CT grid, and write them back.

The reader parses a SEG with highdicom and places every frame on the grid of a
reference :class:`~.dicom_series.DicomVolume`. Frames are placed by the CT
instance they reference (``DerivationImageSequence`` > ``SourceImageSequence``
> ``ReferencedSOPInstanceUID``), else by their ``ImagePositionPatient``, and
never by their order in the file: dcmqi skips empty frames and its second
``DimensionIndexValues`` entry is a per-segment running number, so frame order
says nothing about slice position (``shared/notes/datasets.md`` §1).

Segments keep their own voxels: CRLM's liver contains its tumours and the
vessels run outside the liver, so nothing is merged into one labelmap.
BINARY, FRACTIONAL (voxels at or above half the maximum fractional value) and
LABELMAP segmentations (SOP class ``...66.7``, including dcmqi's sparse
labelmaps whose missing frames hold ``PixelPaddingValue``) are read.

Frames of a native (uncompressed, little endian) BINARY SEG are unpacked
directly from the pixel data; everything else goes through highdicom's
frame decoder. The old per-segment ``iter_segments`` API is not used: it took
minutes on SEGs with many segments (highdicom issue #202).

The writer turns named masks with their codes into a BINARY SEG with
highdicom, referencing the CT instances the masks lie on.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import highdicom as hd
import numpy as np
import pydicom
from pydicom.sr.codedict import codes
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from .atomic import atomic_path
from .limits import check_seg_frames
from .dicom_series import DicomVolume
from ..errors import DataError, LoadCancelled
from ..findings import ERROR, INFO, WARNING, Finding
from ..geometry import LPS_TO_RAS, spacing_from_matrix
from ..progress import ProgressCallback, report

__all__ = [
    "SegCode",
    "DecodedSegment",
    "DecodedSegmentation",
    "SegHeader",
    "ExportSegment",
    "SEGMENTATION_SOP_CLASS_UID",
    "LABELMAP_SEGMENTATION_SOP_CLASS_UID",
    "read_seg_header",
    "decode_seg",
    "segment_tags",
    "terminology_entry",
    "parse_terminology_entry",
    "write_seg",
]

SEGMENTATION_SOP_CLASS_UID = "1.2.840.10008.5.1.4.1.1.66.4"
LABELMAP_SEGMENTATION_SOP_CLASS_UID = "1.2.840.10008.5.1.4.1.1.66.7"
SEG_SOP_CLASS_UIDS = (SEGMENTATION_SOP_CLASS_UID, LABELMAP_SEGMENTATION_SOP_CLASS_UID)

#: Slicer's terminology context names, as written into ``TerminologyEntry`` tags.
TERMINOLOGY_CONTEXT = "Segmentation category and type - DICOM master list"
ANATOMIC_CONTEXT = "Anatomic codes - DICOM master list"

#: Segment tag names (Slicer's DICOM SEG plugin uses the same "DICOM." prefix).
TAG_PREFIX = "DICOM."

#: A frame whose position is further than this fraction of the slice spacing
#: from every CT slice lies between slices and is not placed.
SLICE_POSITION_TOLERANCE = 0.1

#: In-plane offsets below this fraction of a pixel count as "on the CT grid".
IN_PLANE_TOLERANCE = 0.01

_NATIVE_LITTLE_ENDIAN = (ExplicitVRLittleEndian, ImplicitVRLittleEndian)


# ---------------------------------------------------------------------------------------------- codes
@dataclass(frozen=True)
class SegCode:
    """A coded concept (value, coding scheme, meaning), as DICOM SEG stores them."""

    value: str
    scheme: str
    meaning: str

    @classmethod
    def from_item(cls, item: Any) -> Optional["SegCode"]:
        """The code of a code sequence item (pydicom Dataset or highdicom CodedConcept)."""
        if item is None:
            return None
        value = item.get("CodeValue") or item.get("LongCodeValue") or item.get("URNCodeValue")
        if value is None:
            return None
        return cls(str(value), str(item.get("CodingSchemeDesignator", "")), str(item.get("CodeMeaning", "")))

    @classmethod
    def parse(cls, text: str) -> Optional["SegCode"]:
        """A code from Slicer's ``scheme^value^meaning`` form, None when blank."""
        parts = (text or "").split("^")
        if len(parts) < 3 or not parts[1]:
            return None
        return cls(value=parts[1], scheme=parts[0], meaning="^".join(parts[2:]))

    def to_concept(self) -> hd.sr.CodedConcept:
        return hd.sr.CodedConcept(self.value, self.scheme, self.meaning)

    def __str__(self) -> str:
        """Slicer's ``scheme^value^meaning`` form."""
        return f"{self.scheme}^{self.value}^{self.meaning.replace('~', '-').replace('^', ' ')}"


def _first_code(dataset: Any, keyword: str) -> Optional[SegCode]:
    sequence = dataset.get(keyword)
    if not sequence:
        return None
    return SegCode.from_item(sequence[0])


#: Codes used when a segment comes without any (e.g. drawn freshly in Slicer).
TISSUE = SegCode("85756007", "SCT", "Tissue")


# ---------------------------------------------------------------------------------------------- results
@dataclass
class DecodedSegment:
    """One segment of a SEG, its description and its voxels on the CT grid.

    The voxels are kept as a bounding box (``box``, bool [k, j, i]) starting
    at voxel ``offset`` of a grid of shape ``grid_shape``, so a 40-segment
    case costs megabytes, not 40 copies of the CT; :attr:`mask` expands it.
    """

    number: int
    label: str
    description: str = ""
    color: Optional[Tuple[float, float, float]] = None
    category: Optional[SegCode] = None
    type: Optional[SegCode] = None
    type_modifier: Optional[SegCode] = None
    anatomic_region: Optional[SegCode] = None
    algorithm_type: str = ""
    algorithm_name: str = ""
    tracking_id: str = ""
    tracking_uid: str = ""
    is_background: bool = False
    grid_shape: Tuple[int, int, int] = (0, 0, 0)
    offset: Tuple[int, int, int] = (0, 0, 0)
    box: np.ndarray = field(default_factory=lambda: np.zeros((0, 0, 0), dtype=bool))
    frame_count: int = 0

    @property
    def voxel_count(self) -> int:
        return int(np.count_nonzero(self.box))

    @property
    def is_empty(self) -> bool:
        return self.voxel_count == 0

    @property
    def mask(self) -> np.ndarray:
        """The segment as a bool array on the whole CT grid [k, j, i] (a new array)."""
        mask = np.zeros(self.grid_shape, dtype=bool)
        if self.box.size:
            k, j, i = self.offset
            depth, rows, columns = self.box.shape
            mask[k : k + depth, j : j + rows, i : i + columns] = self.box
        return mask


@dataclass
class DecodedSegmentation:
    """A SEG decoded onto a CT grid, with what was found on the way."""

    path: Path
    sop_instance_uid: str
    series_instance_uid: str
    sop_class_uid: str
    segmentation_type: str
    fractional_type: str
    max_fractional_value: Optional[int]
    frame_of_reference_uid: str
    referenced_series_uids: List[str]
    number_of_frames: int
    segments: List[DecodedSegment]
    findings: List[Finding] = field(default_factory=list)
    frames_placed: int = 0
    unplaced_frames: List[int] = field(default_factory=list)
    frames_referencing_missing_instances: List[Tuple[int, str]] = field(default_factory=list)
    geometry_mismatches: List[str] = field(default_factory=list)

    def segment(self, number: int) -> DecodedSegment:
        for segment in self.segments:
            if segment.number == number:
                return segment
        raise KeyError(f"{self.path.name} has no segment number {number}")


@dataclass
class SegHeader:
    """What indexing needs from a SEG file, read without its frames."""

    path: Path
    sop_instance_uid: str
    sop_class_uid: str
    series_instance_uid: str
    study_instance_uid: str
    patient_id: str
    series_description: str
    series_number: Optional[int]
    manufacturer: str
    manufacturer_model_name: str
    content_label: str
    content_creator_name: str
    frame_of_reference_uid: str
    referenced_series_uids: List[str]
    segment_labels: List[str]
    number_of_frames: int


# ---------------------------------------------------------------------------------------------- header
_HEADER_KEYWORDS = [
    "SOPClassUID", "SOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID", "PatientID", "Modality",
    "SeriesDescription", "SeriesNumber", "Manufacturer", "ManufacturerModelName", "ContentLabel",
    "ContentCreatorName", "FrameOfReferenceUID", "ReferencedSeriesSequence", "SegmentSequence",
    "NumberOfFrames",
]


def read_seg_header(path: Path) -> SegHeader:
    """Read a SEG's identity, references and segment labels, not its frames.

    :raises DataError: naming the file, if it is not a readable DICOM SEG.
    """
    path = Path(path)
    try:
        dataset = pydicom.dcmread(str(path), stop_before_pixels=True, specific_tags=_HEADER_KEYWORDS)
        return _seg_header(dataset, path)
    except DataError:
        raise
    except Exception as error:  # pydicom raises many types for damaged files and values
        raise DataError(path, f"not a readable DICOM SEG header ({type(error).__name__}: {error})") from error


def _seg_header(dataset: Any, path: Path) -> SegHeader:
    if str(dataset.get("SOPClassUID", "")) not in SEG_SOP_CLASS_UIDS and dataset.get("Modality") != "SEG":
        raise DataError(path, f"is not a DICOM Segmentation (Modality {dataset.get('Modality', '?')})")
    series_number = dataset.get("SeriesNumber")
    return SegHeader(
        path=path,
        sop_instance_uid=str(dataset.get("SOPInstanceUID", "")),
        sop_class_uid=str(dataset.get("SOPClassUID", "")),
        series_instance_uid=str(dataset.get("SeriesInstanceUID", "")),
        study_instance_uid=str(dataset.get("StudyInstanceUID", "")),
        patient_id=str(dataset.get("PatientID", "")),
        series_description=str(dataset.get("SeriesDescription", "")),
        series_number=int(series_number) if series_number not in (None, "") else None,
        manufacturer=str(dataset.get("Manufacturer", "")),
        manufacturer_model_name=str(dataset.get("ManufacturerModelName", "")),
        content_label=str(dataset.get("ContentLabel", "")),
        content_creator_name=str(dataset.get("ContentCreatorName", "")),
        frame_of_reference_uid=str(dataset.get("FrameOfReferenceUID", "")),
        referenced_series_uids=_referenced_series_uids(dataset),
        segment_labels=[str(item.get("SegmentLabel", "")) for item in dataset.get("SegmentSequence", [])],
        number_of_frames=int(dataset.get("NumberOfFrames", 1) or 1),
    )


def _referenced_series_uids(dataset: Any) -> List[str]:
    uids: List[str] = []
    for item in dataset.get("ReferencedSeriesSequence", []):
        uid = str(item.get("SeriesInstanceUID", ""))
        if uid and uid not in uids:
            uids.append(uid)
    return uids


# ---------------------------------------------------------------------------------------------- frames
def _functional_item(dataset: Any, frame_index: int, sequence_keyword: str) -> Optional[Any]:
    """The first item of a functional group for a frame: per-frame, else shared."""
    per_frame = dataset.get("PerFrameFunctionalGroupsSequence")
    if per_frame is not None and frame_index < len(per_frame):
        sequence = per_frame[frame_index].get(sequence_keyword)
        if sequence:
            return sequence[0]
    shared = dataset.get("SharedFunctionalGroupsSequence")
    if shared:
        sequence = shared[0].get(sequence_keyword)
        if sequence:
            return sequence[0]
    return None


@dataclass
class _FrameInfo:
    number: int  # 1-based frame number
    segment_number: Optional[int]
    position: Optional[np.ndarray]  # LPS
    orientation: Optional[np.ndarray]
    pixel_spacing: Optional[Tuple[float, float]]
    source_uids: List[str]
    multiframe_source: bool


def _frame_infos(dataset: Any) -> List[_FrameInfo]:
    frames: List[_FrameInfo] = []
    per_frame = dataset.get("PerFrameFunctionalGroupsSequence") or []
    number_of_frames = int(dataset.get("NumberOfFrames", len(per_frame)) or len(per_frame))
    for index in range(number_of_frames):
        segment_item = _functional_item(dataset, index, "SegmentIdentificationSequence")
        position_item = _functional_item(dataset, index, "PlanePositionSequence")
        orientation_item = _functional_item(dataset, index, "PlaneOrientationSequence")
        measures_item = _functional_item(dataset, index, "PixelMeasuresSequence")
        sources: List[str] = []
        multiframe = False
        frame_groups = per_frame[index] if index < len(per_frame) else None
        for derivation in (frame_groups.get("DerivationImageSequence", []) if frame_groups is not None else []):
            for source in derivation.get("SourceImageSequence", []):
                uid = source.get("ReferencedSOPInstanceUID")
                if uid:
                    sources.append(str(uid))
                if source.get("ReferencedFrameNumber") is not None:
                    multiframe = True
        position = None
        if position_item is not None and position_item.get("ImagePositionPatient") is not None:
            position = np.array([float(v) for v in position_item.ImagePositionPatient], dtype=float)
        orientation = None
        if orientation_item is not None and orientation_item.get("ImageOrientationPatient") is not None:
            orientation = np.array([float(v) for v in orientation_item.ImageOrientationPatient], dtype=float)
        spacing = None
        if measures_item is not None and measures_item.get("PixelSpacing") is not None:
            spacing = (float(measures_item.PixelSpacing[0]), float(measures_item.PixelSpacing[1]))
        segment_number = None
        if segment_item is not None and segment_item.get("ReferencedSegmentNumber") is not None:
            segment_number = int(segment_item.ReferencedSegmentNumber)
        frames.append(_FrameInfo(index + 1, segment_number, position, orientation, spacing, sources, multiframe))
    return frames


class _FrameReader:
    """Stored values of one frame at a time.

    Native little-endian BINARY pixel data is unpacked with numpy directly
    (frames follow each other bit by bit, so a frame need not start on a byte
    boundary); everything else is decoded by highdicom.
    """

    def __init__(self, segmentation: hd.seg.Segmentation, path: Path) -> None:
        self.segmentation = segmentation
        self.path = path
        self.rows = int(segmentation.Rows)
        self.columns = int(segmentation.Columns)
        self._all_bits: Optional[np.ndarray] = None
        transfer_syntax = segmentation.file_meta.get("TransferSyntaxUID") if hasattr(segmentation, "file_meta") else None
        self.fast = (
            int(segmentation.get("BitsAllocated", 0)) == 1
            and transfer_syntax in _NATIVE_LITTLE_ENDIAN
            and isinstance(segmentation.get("PixelData"), (bytes, bytearray))
        )
        if self.fast:
            needed = (int(segmentation.get("NumberOfFrames", 1) or 1) * self.rows * self.columns + 7) // 8
            if len(segmentation.PixelData) < needed:
                raise DataError(path, f"pixel data holds {len(segmentation.PixelData)} bytes, {needed} are "
                                      "needed for its frames (the file is truncated)")

    def frame(self, number: int) -> np.ndarray:
        try:
            return self._frame(number)
        except Exception as error:  # decoders raise many types for damaged pixel data
            raise DataError(self.path, f"frame {number} cannot be decoded ({type(error).__name__}: {error})") \
                from error

    def _frame(self, number: int) -> np.ndarray:
        if not self.fast:
            return np.asarray(self.segmentation.get_stored_frame(number))
        pixels = self.rows * self.columns
        data = self.segmentation.PixelData
        if pixels % 8 == 0:
            start = (number - 1) * pixels // 8
            chunk = np.frombuffer(data, dtype=np.uint8, count=pixels // 8, offset=start)
            return np.unpackbits(chunk, bitorder="little").reshape(self.rows, self.columns)
        if self._all_bits is None:
            self._all_bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8), bitorder="little")
        start = (number - 1) * pixels
        return self._all_bits[start : start + pixels].reshape(self.rows, self.columns)


# ---------------------------------------------------------------------------------------------- decode
class _Grid:
    """The CT grid: where each slice is and how LPS maps to voxel indices."""

    def __init__(self, volume: DicomVolume) -> None:
        self.volume = volume
        self.shape = tuple(int(n) for n in volume.voxels.shape)
        self.ijk_to_lps = LPS_TO_RAS @ np.asarray(volume.ijk_to_ras, dtype=float)
        self.lps_to_ijk = np.linalg.inv(self.ijk_to_lps)
        first = volume.instances[0]
        self.orientation = np.array(first.image_orientation, dtype=float)
        self.pixel_spacing = tuple(float(v) for v in first.pixel_spacing)  # type: ignore[union-attr]
        self.rows, self.columns = int(first.rows or 0), int(first.columns or 0)
        self.normal = np.cross(self.orientation[:3], self.orientation[3:])
        self.slice_spacing = float(spacing_from_matrix(volume.ijk_to_ras)[2])
        self.distances = np.array([np.dot(instance.image_position, self.normal) for instance in volume.instances])
        self.index_of_uid: Dict[str, int] = {
            instance.sop_instance_uid: k for k, instance in enumerate(volume.instances)
        }
        for duplicate in volume.duplicates:
            k = volume.slice_index(duplicate.sop_instance_uid)
            if k is not None:
                self.index_of_uid[duplicate.sop_instance_uid] = k
        self.frame_of_reference_uid = first.frame_of_reference_uid

    def slice_of_position(self, position: np.ndarray) -> Optional[int]:
        """k of the CT slice at this position, None when between or beyond slices."""
        distance = float(np.dot(position, self.normal))
        k = int(np.argmin(np.abs(self.distances - distance)))
        if abs(self.distances[k] - distance) > SLICE_POSITION_TOLERANCE * max(self.slice_spacing, 1e-3):
            return None
        return k

    def in_plane_offset(self, position: np.ndarray, k: int) -> np.ndarray:
        """(columns, rows) from CT slice k's first pixel to ``position``."""
        delta = position - np.asarray(self.volume.instances[k].image_position, dtype=float)
        return np.array([
            np.dot(delta, self.orientation[:3]) / self.pixel_spacing[1],
            np.dot(delta, self.orientation[3:]) / self.pixel_spacing[0],
        ])


def _codes_of(item: Any) -> Dict[str, Optional[SegCode]]:
    type_item = (item.get("SegmentedPropertyTypeCodeSequence") or [None])[0]
    modifier = None
    if type_item is not None:
        modifier = _first_code(type_item, "SegmentedPropertyTypeModifierCodeSequence")
    return {
        "category": _first_code(item, "SegmentedPropertyCategoryCodeSequence"),
        "type": SegCode.from_item(type_item),
        "type_modifier": modifier,
        "anatomic_region": _first_code(item, "AnatomicRegionSequence"),
    }


def _display_color(item: Any) -> Optional[Tuple[float, float, float]]:
    value = item.get("RecommendedDisplayCIELabValue")
    if value is None or len(value) != 3:
        return None
    try:
        red, green, blue = hd.color.CIELabColor.from_dicom_value([int(v) for v in value]).to_rgb(clip=True)
    except (ValueError, TypeError):
        return None
    return (red / 255.0, green / 255.0, blue / 255.0)


def _segment_shells(dataset: Any, labelmap: bool, grid_shape: Tuple[int, int, int]) -> List[DecodedSegment]:
    segments = []
    for item in dataset.get("SegmentSequence", []):
        algorithm = (item.get("SegmentationAlgorithmIdentificationSequence") or [None])[0]
        number = int(item.SegmentNumber)
        segments.append(DecodedSegment(
            number=number,
            label=str(item.get("SegmentLabel", "")) or f"Segment {number}",
            description=str(item.get("SegmentDescription", "")),
            color=_display_color(item),
            algorithm_type=str(item.get("SegmentAlgorithmType", "")),
            algorithm_name=str(item.get("SegmentAlgorithmName", "")
                               or (algorithm.get("AlgorithmName", "") if algorithm is not None else "")),
            tracking_id=str(item.get("TrackingID", "")),
            tracking_uid=str(item.get("TrackingUID", "")),
            is_background=labelmap and number == 0,
            grid_shape=grid_shape,
            **_codes_of(item),
        ))
    return segments


def _geometry_mismatches(dataset: Any, frames: Sequence[_FrameInfo], grid: _Grid) -> List[str]:
    problems = []
    seg_frame_of_reference = str(dataset.get("FrameOfReferenceUID", ""))
    if seg_frame_of_reference and grid.frame_of_reference_uid and seg_frame_of_reference != grid.frame_of_reference_uid:
        problems.append(f"FrameOfReferenceUID {seg_frame_of_reference} differs from the CT's "
                        f"{grid.frame_of_reference_uid}")
    orientations = {tuple(np.round(f.orientation, 4)) for f in frames if f.orientation is not None}
    for orientation in orientations:
        if not np.allclose(orientation, grid.orientation, atol=1e-3):
            problems.append(f"ImageOrientationPatient {list(orientation)} differs from the CT's "
                            f"{[round(v, 4) for v in grid.orientation]}")
    spacings = {tuple(np.round(f.pixel_spacing, 5)) for f in frames if f.pixel_spacing is not None}
    for spacing in spacings:
        if not np.allclose(spacing, grid.pixel_spacing, rtol=1e-3):
            problems.append(f"PixelSpacing {list(spacing)} differs from the CT's {list(grid.pixel_spacing)}")
    if (int(dataset.Rows), int(dataset.Columns)) != (grid.rows, grid.columns):
        problems.append(f"frames are {dataset.Rows}x{dataset.Columns} pixels, the CT's slices "
                        f"{grid.rows}x{grid.columns}")
    measures = _functional_item(dataset, 0, "PixelMeasuresSequence")
    between = measures.get("SpacingBetweenSlices") if measures is not None else None
    if between not in (None, "") and len(grid.distances) > 1 \
            and abs(float(between) - grid.slice_spacing) > 0.01 * grid.slice_spacing + 1e-3:
        problems.append(f"SpacingBetweenSlices {float(between):g} mm differs from the CT's slice spacing "
                        f"{grid.slice_spacing:g} mm")
    return problems


def _same_plane_grid(frame: _FrameInfo, grid: _Grid, rows: int, columns: int) -> bool:
    orientation_ok = frame.orientation is None or np.allclose(frame.orientation, grid.orientation, atol=1e-3)
    spacing_ok = frame.pixel_spacing is None or np.allclose(frame.pixel_spacing, grid.pixel_spacing, rtol=1e-3)
    return orientation_ok and spacing_ok and (rows, columns) == (grid.rows, grid.columns)


def _resample_frame(values: np.ndarray, frame: _FrameInfo, grid: _Grid, shared_orientation: np.ndarray,
                    shared_spacing: Tuple[float, float], only_nonzero: bool) -> Tuple[np.ndarray, np.ndarray]:
    """CT voxel indices (n x 3 as k, j, i) and values of a frame not on the CT's pixel grid.

    Nearest-neighbour forward mapping of pixel centres; used only when the SEG
    was drawn on another grid (reported as a geometry mismatch).
    """
    orientation = frame.orientation if frame.orientation is not None else shared_orientation
    spacing = frame.pixel_spacing if frame.pixel_spacing is not None else shared_spacing
    rows, columns = np.nonzero(values) if only_nonzero else np.indices(values.shape).reshape(2, -1)
    points = (frame.position[None, :]  # type: ignore[index]
              + columns[:, None] * spacing[1] * orientation[None, :3]
              + rows[:, None] * spacing[0] * orientation[None, 3:])
    ijk = np.rint(points @ grid.lps_to_ijk[:3, :3].T + grid.lps_to_ijk[:3, 3]).astype(int)
    inside = np.all((ijk >= 0) & (ijk < np.array(grid.shape[::-1])), axis=1)
    kji = ijk[inside][:, ::-1]
    return kji, values[rows[inside], columns[inside]]


def decode_seg(source: Union[Path, str, pydicom.Dataset], reference: DicomVolume, case_id: str = "",
               progress: Optional[ProgressCallback] = None) -> DecodedSegmentation:
    """Decode a DICOM SEG onto a series' grid; see :func:`_decode_seg`.

    Values that pydicom cannot convert (e.g. ``NumberOfFrames`` "many")
    surface deep inside decoding; they become a :class:`DataError` naming the file.
    """
    try:
        return _decode_seg(source, reference, case_id, progress)
    except (DataError, LoadCancelled, MemoryError):
        raise
    except (ValueError, TypeError, KeyError, AttributeError, IndexError, OverflowError) as error:
        path = getattr(source, "filename", None) or source
        raise DataError(str(path), f"cannot be decoded as a DICOM SEG ({type(error).__name__}: {error})") from error


def _decode_seg(source: Union[Path, str, pydicom.Dataset], reference: DicomVolume, case_id: str = "",
                progress: Optional[ProgressCallback] = None) -> DecodedSegmentation:
    """Decode a DICOM SEG onto the grid of the CT series it was drawn on.

    :param source: the SEG file (or an already-read dataset).
    :param reference: the CT (or other image) series as stacked by
        :func:`~.dicom_series.read_series`.
    :param case_id: put into the findings.
    :returns: every segment of the SEG, in the SEG's order, with its voxels on
        ``reference``'s grid, and findings about frames that reference
        instances absent from the series, frames that could not be placed and
        geometry that differs between SEG and CT.
    :raises DataError: naming the file, if it is not a readable SEG or none
        of its frames lies on the reference series.
    """
    path = Path(getattr(source, "filename", None) or "<dataset>") if isinstance(source, pydicom.Dataset) \
        else Path(source)
    segmentation = _read_segmentation(source, path)
    sop_class = str(segmentation.SOPClassUID)
    segmentation_type = str(segmentation.get("SegmentationType", "BINARY")).upper()
    labelmap = sop_class == LABELMAP_SEGMENTATION_SOP_CLASS_UID or segmentation_type == "LABELMAP"
    grid = _Grid(reference)
    frames = _frame_infos(segmentation)
    segments = _segment_shells(segmentation, labelmap, grid.shape)
    by_number = {segment.number: segment for segment in segments}
    result = DecodedSegmentation(
        path=path,
        sop_instance_uid=str(segmentation.SOPInstanceUID),
        series_instance_uid=str(segmentation.SeriesInstanceUID),
        sop_class_uid=sop_class,
        segmentation_type=segmentation_type,
        fractional_type=str(segmentation.get("SegmentationFractionalType", "")),
        max_fractional_value=int(segmentation.MaximumFractionalValue)
        if segmentation.get("MaximumFractionalValue") is not None else None,
        frame_of_reference_uid=str(segmentation.get("FrameOfReferenceUID", "")),
        referenced_series_uids=_referenced_series_uids(segmentation),
        number_of_frames=len(frames),
        segments=segments,
    )
    result.geometry_mismatches = _geometry_mismatches(segmentation, frames, grid)
    shared_orientation = next((f.orientation for f in frames if f.orientation is not None), grid.orientation)
    shared_spacing = next((f.pixel_spacing for f in frames if f.pixel_spacing is not None), grid.pixel_spacing)
    reader = _FrameReader(segmentation, path)
    threshold = _binary_threshold(result)
    fill = int(segmentation.get("PixelPaddingValue", 0) or 0) if labelmap else 0
    label_volume = np.full(grid.shape, fill, dtype=np.int32) if labelmap else None
    pieces: Dict[int, List[Tuple[int, int, int, np.ndarray]]] = {segment.number: [] for segment in segments}
    scattered: Dict[int, List[np.ndarray]] = {segment.number: [] for segment in segments}
    unknown_segments: Dict[int, int] = {}
    no_reference = 0
    multiframe = 0
    for index, frame in enumerate(frames):
        if index % 64 == 0:
            report(progress, f"Decoding {path.name}: frame {index + 1}/{len(frames)}", index / max(1, len(frames)))
        if not labelmap:
            if frame.segment_number is None and len(segments) == 1:
                frame.segment_number = segments[0].number
            if frame.segment_number not in by_number:
                unknown_segments[frame.segment_number or -1] = unknown_segments.get(frame.segment_number or -1, 0) + 1
                continue
        if frame.multiframe_source:
            multiframe += 1
        if not frame.source_uids:
            no_reference += 1
        k = None
        for uid in frame.source_uids:
            if uid in grid.index_of_uid:
                k = grid.index_of_uid[uid]
                break
        else:
            if frame.source_uids:
                result.frames_referencing_missing_instances.append((frame.number, frame.source_uids[0]))
        if k is None and frame.position is not None:
            k = grid.slice_of_position(frame.position)
        on_grid = k is not None and _same_plane_grid(frame, grid, reader.rows, reader.columns) and (
            frame.position is None or np.all(np.abs(grid.in_plane_offset(frame.position, k)) < IN_PLANE_TOLERANCE)
        )
        if not on_grid and frame.position is None:
            result.unplaced_frames.append(frame.number)
            continue
        values = reader.frame(frame.number)
        if labelmap:
            assert label_volume is not None
            if on_grid:
                label_volume[k] = values
            else:
                kji, picked = _resample_frame(values, frame, grid, shared_orientation, shared_spacing, False)
                if not len(kji):
                    result.unplaced_frames.append(frame.number)
                    continue
                label_volume[kji[:, 0], kji[:, 1], kji[:, 2]] = picked
            result.frames_placed += 1
            continue
        inside = values >= threshold if threshold > 1 else values.astype(bool)
        number = frame.segment_number
        by_number[number].frame_count += 1  # type: ignore[index]
        if on_grid:
            rows = np.flatnonzero(inside.any(axis=1))
            if rows.size:
                columns = np.flatnonzero(inside.any(axis=0))
                crop = inside[rows[0] : rows[-1] + 1, columns[0] : columns[-1] + 1]
                pieces[number].append((int(k), int(rows[0]), int(columns[0]), crop))  # type: ignore[index,arg-type]
            result.frames_placed += 1
            continue
        kji, _ = _resample_frame(inside, frame, grid, shared_orientation, shared_spacing, True)
        if inside.any() and not len(kji):
            result.unplaced_frames.append(frame.number)
            continue
        scattered[number].append(kji)  # type: ignore[index]
        result.frames_placed += 1
    if labelmap:
        assert label_volume is not None
        for segment in segments:
            segment.frame_count = result.frames_placed
            _set_box_from_mask(segment, label_volume == segment.number)
    else:
        for segment in segments:
            _assemble(segment, pieces[segment.number], scattered[segment.number])
    if frames and result.frames_placed == 0:
        raise DataError(path, f"none of its {len(frames)} frames lies on the series "
                              f"{reference.series_instance_uid} ({reference.instances[0].path.parent})")
    result.findings = _decode_findings(result, reference, case_id, unknown_segments, no_reference, multiframe)
    return result


def _read_segmentation(source: Union[Path, str, pydicom.Dataset], path: Path) -> hd.seg.Segmentation:
    try:
        dataset = source if isinstance(source, pydicom.Dataset) else pydicom.dcmread(str(path))
    except Exception as error:  # pydicom raises many types for damaged files
        raise DataError(path, f"not a readable DICOM file ({error})") from error
    if str(dataset.get("SOPClassUID", "")) not in SEG_SOP_CLASS_UIDS:
        raise DataError(path, f"is not a DICOM Segmentation (SOP class {dataset.get('SOPClassUID', 'missing')})")
    check_seg_frames(dataset, path)  # claimed frames vs bytes present and caps, before any per-frame work
    try:
        segmentation = hd.seg.Segmentation.from_dataset(dataset, copy=False)
    except Exception as error:  # highdicom validates many attributes
        raise DataError(path, f"is not a valid DICOM Segmentation ({type(error).__name__}: {error})") from error
    if segmentation.get("DimensionOrganizationType") == "TILED_FULL" or "TotalPixelMatrixRows" in segmentation:
        raise DataError(path, "is a tiled (slide microscopy) segmentation, not one on a CT/MR series")
    return segmentation


def _binary_threshold(result: DecodedSegmentation) -> float:
    """Stored value from which a voxel counts as inside (2 or more only for FRACTIONAL)."""
    if result.segmentation_type == "FRACTIONAL":
        maximum = result.max_fractional_value or 255
        # Half of the maximum fractional value (probability or occupancy 0.5).
        return max(1.0, 0.5 * maximum) if maximum > 1 else 1.0
    return 1.0


def _set_box_from_mask(segment: DecodedSegment, mask: np.ndarray) -> None:
    nonzero = [np.flatnonzero(mask.any(axis=axes)) for axes in ((1, 2), (0, 2), (0, 1))]
    if any(axis.size == 0 for axis in nonzero):
        segment.offset, segment.box = (0, 0, 0), np.zeros((0, 0, 0), dtype=bool)
        return
    (k0, k1), (j0, j1), (i0, i1) = [(int(axis[0]), int(axis[-1])) for axis in nonzero]
    segment.offset = (k0, j0, i0)
    segment.box = np.ascontiguousarray(mask[k0 : k1 + 1, j0 : j1 + 1, i0 : i1 + 1])


def _assemble(segment: DecodedSegment, pieces: Sequence[Tuple[int, int, int, np.ndarray]],
              scattered: Sequence[np.ndarray]) -> None:
    points = np.concatenate(scattered) if scattered else np.zeros((0, 3), dtype=int)
    lows, highs = [], []
    for k, j, i, crop in pieces:
        lows.append((k, j, i))
        highs.append((k, j + crop.shape[0] - 1, i + crop.shape[1] - 1))
    if len(points):
        lows.append(tuple(points.min(axis=0)))
        highs.append(tuple(points.max(axis=0)))
    if not lows:
        segment.offset, segment.box = (0, 0, 0), np.zeros((0, 0, 0), dtype=bool)
        return
    low = np.min(np.array(lows), axis=0)
    high = np.max(np.array(highs), axis=0)
    box = np.zeros(tuple(int(v) for v in high - low + 1), dtype=bool)
    for k, j, i, crop in pieces:
        k, j, i = k - low[0], j - low[1], i - low[2]
        box[k, j : j + crop.shape[0], i : i + crop.shape[1]] |= crop
    if len(points):
        shifted = points - low
        box[shifted[:, 0], shifted[:, 1], shifted[:, 2]] = True
    segment.offset = (int(low[0]), int(low[1]), int(low[2]))
    segment.box = box


def _decode_findings(result: DecodedSegmentation, reference: DicomVolume, case_id: str,
                     unknown_segments: Dict[int, int], no_reference: int, multiframe: int) -> List[Finding]:
    name = result.path.name
    findings: List[Finding] = []
    missing = result.frames_referencing_missing_instances
    if missing:
        instances = sorted({uid for _, uid in missing})
        findings.append(Finding(
            WARNING, "seg.missing_source_instances",
            f"{name}: {len(missing)} frame(s) reference {len(instances)} instance(s) absent from CT series "
            f"{reference.series_instance_uid} (e.g. {instances[0]}); placed by position where possible",
            case_id=case_id, path=str(result.path), value=float(len(missing)),
        ))
    for problem in result.geometry_mismatches:
        findings.append(Finding(WARNING, "seg.geometry_mismatch", f"{name}: {problem}",
                                case_id=case_id, path=str(result.path)))
    if result.unplaced_frames:
        findings.append(Finding(
            ERROR, "seg.unplaced_frames",
            f"{name}: {len(result.unplaced_frames)} frame(s) lie outside CT series {reference.series_instance_uid} "
            f"or have no position (frames {result.unplaced_frames[:10]}); their voxels are not shown",
            case_id=case_id, path=str(result.path), value=float(len(result.unplaced_frames)),
        ))
    if no_reference:
        findings.append(Finding(
            INFO, "seg.no_source_references",
            f"{name}: {no_reference} frame(s) name no source image; placed by ImagePositionPatient",
            case_id=case_id, path=str(result.path), value=float(no_reference),
        ))
    if multiframe:
        findings.append(Finding(
            INFO, "seg.multiframe_source",
            f"{name}: {multiframe} frame(s) reference frames of a multi-frame image; placed by position",
            case_id=case_id, path=str(result.path), value=float(multiframe),
        ))
    for number, count in sorted(unknown_segments.items()):
        findings.append(Finding(
            ERROR, "seg.unknown_segment",
            f"{name}: {count} frame(s) belong to segment number {number}, which SegmentSequence does not describe",
            case_id=case_id, path=str(result.path), value=float(count),
        ))
    return findings


# ---------------------------------------------------------------------------------------------- tags
def terminology_entry(category: Optional[SegCode], type_: Optional[SegCode],
                      type_modifier: Optional[SegCode] = None, anatomic_region: Optional[SegCode] = None) -> str:
    """Slicer's ``TerminologyEntry`` tag text for these codes ('' without a type)."""
    if type_ is None:
        return ""
    blank = "^^"
    return "~".join([
        TERMINOLOGY_CONTEXT,
        str(category or TISSUE),
        str(type_),
        str(type_modifier) if type_modifier else blank,
        ANATOMIC_CONTEXT,
        str(anatomic_region) if anatomic_region else blank,
        blank,
    ])


def parse_terminology_entry(text: str) -> Dict[str, Optional[SegCode]]:
    """Codes from a ``TerminologyEntry`` tag (missing parts are None)."""
    parts = (text or "").split("~")
    parts += [""] * (7 - len(parts))
    return {
        "category": SegCode.parse(parts[1]),
        "type": SegCode.parse(parts[2]),
        "type_modifier": SegCode.parse(parts[3]),
        "anatomic_region": SegCode.parse(parts[5]),
    }


def segment_tags(segment: DecodedSegment) -> Dict[str, str]:
    """Segment tags that keep a SEG segment's identity and codes in the scene."""
    tags = {
        TAG_PREFIX + "SegmentNumber": str(segment.number),
        TAG_PREFIX + "SegmentLabel": segment.label,
        TAG_PREFIX + "SegmentAlgorithmType": segment.algorithm_type,
    }
    optional = {
        "SegmentDescription": segment.description,
        "SegmentAlgorithmName": segment.algorithm_name,
        "TrackingID": segment.tracking_id,
        "TrackingUID": segment.tracking_uid,
        "SegmentedPropertyCategoryCodeSequence": str(segment.category) if segment.category else "",
        "SegmentedPropertyTypeCodeSequence": str(segment.type) if segment.type else "",
        "SegmentedPropertyTypeModifierCodeSequence": str(segment.type_modifier) if segment.type_modifier else "",
        "AnatomicRegionSequence": str(segment.anatomic_region) if segment.anatomic_region else "",
    }
    tags.update({TAG_PREFIX + key: value for key, value in optional.items() if value})
    return tags


# ---------------------------------------------------------------------------------------------- export
@dataclass
class ExportSegment:
    """One segment to write: a name, its codes and a bool mask [k, j, i] on the CT grid."""

    name: str
    mask: np.ndarray
    category: SegCode = TISSUE
    type: SegCode = TISSUE
    type_modifier: Optional[SegCode] = None
    anatomic_region: Optional[SegCode] = None
    color: Optional[Tuple[float, float, float]] = None
    algorithm_type: str = "MANUAL"
    algorithm_name: str = ""
    description: str = ""
    tracking_id: str = ""
    tracking_uid: str = ""


def _source_datasets(reference: DicomVolume, indices: Sequence[int]) -> List[pydicom.Dataset]:
    datasets = []
    for k in indices:
        path = reference.instances[k].path
        try:
            dataset = pydicom.dcmread(str(path), stop_before_pixels=True)
        except Exception as error:  # pydicom raises many types for damaged files
            raise DataError(path, f"cannot be read as a source image of the SEG ({error})") from error
        # highdicom 0.28 rejects an empty SpecificCharacterSet (dcmqi's ct-3slice has
        # one; datasets.md §1 item 7): an empty value means the default repertoire.
        if "SpecificCharacterSet" in dataset and not dataset.SpecificCharacterSet:
            del dataset.SpecificCharacterSet
        datasets.append(dataset)
    return datasets


def _segment_description(number: int, segment: ExportSegment) -> hd.seg.SegmentDescription:
    algorithm_type = (segment.algorithm_type or "MANUAL").upper()
    identification = None
    if algorithm_type != "MANUAL":
        identification = hd.AlgorithmIdentificationSequence(
            name=segment.algorithm_name or "unknown",
            family=codes.cid7162.ArtificialIntelligence,
            version="unknown",
        )
    color = None
    if segment.color is not None:
        red, green, blue = (int(round(255 * min(1.0, max(0.0, float(c))))) for c in segment.color)
        color = hd.color.CIELabColor.from_rgb(red, green, blue)
    description = hd.seg.SegmentDescription(
        segment_number=number,
        segment_label=segment.name[:64],
        segmented_property_category=segment.category.to_concept(),
        segmented_property_type=segment.type.to_concept(),
        algorithm_type=algorithm_type,
        algorithm_identification=identification,
        tracking_uid=segment.tracking_uid or None,
        tracking_id=segment.tracking_id or None,
        anatomic_regions=[segment.anatomic_region.to_concept()] if segment.anatomic_region else None,
        display_color=color,
    )
    if segment.type_modifier is not None:
        modifier = pydicom.Dataset()
        modifier.CodeValue = segment.type_modifier.value
        modifier.CodingSchemeDesignator = segment.type_modifier.scheme
        modifier.CodeMeaning = segment.type_modifier.meaning
        description.SegmentedPropertyTypeCodeSequence[0].SegmentedPropertyTypeModifierCodeSequence = [modifier]
    if segment.description:
        description.SegmentDescription = segment.description[:64]
    return description


def write_seg(
    path: Path,
    segments: Sequence[ExportSegment],
    reference: DicomVolume,
    *,
    series_description: str = "Segmentation",
    series_number: int = 300,
    series_instance_uid: Optional[str] = None,
    sop_instance_uid: Optional[str] = None,
    manufacturer: str = "SarcomaLungLiverBrowser",
    manufacturer_model_name: str = "SarcomaLungLiverBrowser",
    software_versions: str = "1",
    content_label: str = "SEGMENTATION",
    content_creator_name: Optional[str] = None,
) -> Path:
    """Write named masks on ``reference``'s grid as a BINARY DICOM SEG.

    The SEG references the CT instances its frames lie on, keeps each
    segment's name, codes, colour and algorithm type, allows overlapping
    segments, and omits empty frames (as dcmqi does). Only the slices that
    hold a voxel of some segment are passed to highdicom, which bounds memory.

    :raises ValueError: for masks that are not on the reference grid or no segments.
    """
    if not segments:
        raise ValueError("no segments to write")
    shape = tuple(reference.voxels.shape)
    for segment in segments:
        if tuple(segment.mask.shape) != shape:
            raise ValueError(f"segment {segment.name!r}: mask shape {segment.mask.shape} is not the "
                             f"reference grid {shape}")
    used = sorted({int(k) for segment in segments for k in np.flatnonzero(segment.mask.any(axis=(1, 2)))})
    if not used:
        used = [0]  # every segment empty: one (omitted) frame still needs a source image
    pixels = np.zeros((len(used), shape[1], shape[2], len(segments)), dtype=bool)
    for index, segment in enumerate(segments):
        pixels[..., index] = segment.mask[used]
    descriptions = [_segment_description(number, segment) for number, segment in enumerate(segments, start=1)]
    sources = _source_datasets(reference, used)
    seg = hd.seg.Segmentation(
        source_images=sources,
        pixel_array=pixels,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=series_instance_uid or hd.UID(),
        series_number=series_number,
        sop_instance_uid=sop_instance_uid or hd.UID(),
        instance_number=1,
        manufacturer=manufacturer,
        manufacturer_model_name=manufacturer_model_name,
        software_versions=software_versions,
        device_serial_number="1",
        content_label=content_label,
        content_creator_name=content_creator_name,
        omit_empty_frames=True,
    )
    seg.SeriesDescription = series_description
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as partial:  # a kill mid-save leaves the previous file (formats/atomic.py)
        seg.save_as(str(partial))
    return path
