"""Decode a DICOM SEG's frames onto the grid of the series it was drawn on.

Frames are placed by the CT instance they reference, else by their
``ImagePositionPatient``, never by their order in the file (see the package
docstring). Native (uncompressed) SEGs are decoded with pydicom and numpy
alone; highdicom decodes compressed frames and converts display colours, and
is imported only when a SEG is decoded.
"""
from __future__ import annotations

import struct
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import pydicom

from ..limits import check_seg_frames
from .codes import SegCode, _first_code
from .frames import _FrameInfo, _FrameReader, _frame_infos, _functional_item
from .header import LABELMAP_SEGMENTATION_SOP_CLASS_UID, SEG_SOP_CLASS_UIDS, _referenced_series_uids
from .segments import DecodedSegment, DecodedSegmentation
from ..dicom_series import DicomVolume
from ...errors import DataError, LoadCancelled
from ...findings import ERROR, INFO, WARNING, Finding
from ...geometry import LPS_TO_RAS, orientation_problem, spacing_from_matrix
from ...progress import ProgressCallback, report

__all__ = ["decode_seg", "SLICE_POSITION_TOLERANCE", "IN_PLANE_TOLERANCE"]

#: A frame whose position is further than this fraction of the slice spacing
#: from every CT slice lies between slices and is not placed.
SLICE_POSITION_TOLERANCE = 0.1

#: In-plane offsets below this fraction of a pixel count as "on the CT grid".
IN_PLANE_TOLERANCE = 0.01


class _Grid:
    """The CT grid: where each slice position is and how LPS maps to voxel indices.

    Positions come from the volume's regular grid, which holds every CT file at
    its own position and keeps a missing slice as an empty position; a SEG
    frame drawn there lands on that empty position, never on a neighbour.
    """

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
        origins = self.ijk_to_lps[:3, 3] + np.arange(self.shape[0])[:, None] * self.ijk_to_lps[:3, 2]
        self.slice_origins = origins
        self.distances = origins @ self.normal
        self.empty = np.zeros(self.shape[0], dtype=bool)
        self.empty[volume.empty_slices] = True
        self.index_of_uid: Dict[str, int] = {
            volume.instances[k].sop_instance_uid: k for k in range(self.shape[0]) if not self.empty[k]
        }
        for duplicate in volume.duplicates:
            k = volume.slice_index(duplicate.sop_instance_uid)
            if k is not None:
                self.index_of_uid[duplicate.sop_instance_uid] = k
        self.frame_of_reference_uid = first.frame_of_reference_uid

    def slice_of_position(self, position: np.ndarray) -> Optional[int]:
        """k of the grid position at this position, None when between or beyond positions."""
        distance = float(np.dot(position, self.normal))
        k = int(np.argmin(np.abs(self.distances - distance)))
        if abs(self.distances[k] - distance) > SLICE_POSITION_TOLERANCE * max(self.slice_spacing, 1e-3):
            return None
        return k

    def in_plane_offset(self, position: np.ndarray, k: int) -> np.ndarray:
        """(columns, rows) from grid slice k's first pixel to ``position``."""
        delta = position - self.slice_origins[k]
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
    import highdicom as hd

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
    if frames:
        between: Any = frames[0].spacing_between_slices
    else:
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


class _PlaneChecks:
    """:func:`orientation_problem` and :func:`_same_plane_grid` once per distinct orientation and spacing.

    A SEG repeats one orientation and spacing for each of its thousand-odd
    frames; numpy's checks cost about a millisecond per call.
    """

    def __init__(self, grid: _Grid, rows: int, columns: int) -> None:
        self.grid, self.rows, self.columns = grid, rows, columns
        self._problems: Dict[bytes, Optional[str]] = {}
        self._same_plane: Dict[Tuple[Optional[bytes], Optional[Tuple[float, float]]], bool] = {}

    def orientation_problem(self, frame: _FrameInfo) -> Optional[str]:
        if frame.orientation is None:
            return None
        key = frame.orientation.tobytes()
        if key not in self._problems:
            self._problems[key] = orientation_problem(frame.orientation)
        return self._problems[key]

    def same_plane_grid(self, frame: _FrameInfo) -> bool:
        key = (None if frame.orientation is None else frame.orientation.tobytes(), frame.pixel_spacing)
        if key not in self._same_plane:
            self._same_plane[key] = _same_plane_grid(frame, self.grid, self.rows, self.columns)
        return self._same_plane[key]


def _resample_frame(values: np.ndarray, frame: _FrameInfo, grid: _Grid, shared_orientation: np.ndarray,
                    shared_spacing: Tuple[float, float], only_nonzero: bool) -> Tuple[np.ndarray, np.ndarray]:
    """CT voxel indices (n x 3 as k, j, i) and values of a frame not on the CT's pixel grid.

    Nearest-neighbour forward mapping of pixel centres; used only when the SEG
    was drawn on another grid (reported as a geometry mismatch). A frame
    parallel to the CT slices but lying between them maps nowhere (its pixels
    would otherwise be rounded onto a neighbouring slice).
    """
    orientation = frame.orientation if frame.orientation is not None else shared_orientation
    spacing = frame.pixel_spacing if frame.pixel_spacing is not None else shared_spacing
    rows, columns = np.nonzero(values) if only_nonzero else np.indices(values.shape).reshape(2, -1)
    points = (frame.position[None, :]  # type: ignore[index]
              + columns[:, None] * spacing[1] * orientation[None, :3]
              + rows[:, None] * spacing[0] * orientation[None, 3:])
    continuous = points @ grid.lps_to_ijk[:3, :3].T + grid.lps_to_ijk[:3, 3]
    ijk = np.rint(continuous).astype(int)
    inside = np.all((ijk >= 0) & (ijk < np.array(grid.shape[::-1])), axis=1)
    frame_normal = np.cross(orientation[:3], orientation[3:])
    if abs(abs(float(np.dot(frame_normal, grid.normal))) - 1.0) < 1e-3:
        inside &= np.abs(continuous[:, 2] - ijk[:, 2]) <= SLICE_POSITION_TOLERANCE
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
    except (ValueError, TypeError, LookupError, AttributeError, OverflowError, NotImplementedError, EOFError,
            struct.error) as error:  # pydicom converts values lazily: a damaged one fails where it is first read
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
    plane_checks = _PlaneChecks(grid, reader.rows, reader.columns)
    threshold = _binary_threshold(result)
    fill = int(segmentation.get("PixelPaddingValue", 0) or 0) if labelmap else 0
    label_volume = np.full(grid.shape, fill, dtype=np.int32) if labelmap else None
    pieces: Dict[int, List[Tuple[int, int, int, np.ndarray]]] = {segment.number: [] for segment in segments}
    scattered: Dict[int, List[np.ndarray]] = {segment.number: [] for segment in segments}
    unknown_segments: Dict[int, int] = {}
    invalid_orientation: Dict[str, List[int]] = {}
    placed_without_position: List[int] = []
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
        problem = plane_checks.orientation_problem(frame)
        if problem:
            # Never rescaled or skewed silently: such a frame has no trustworthy place.
            invalid_orientation.setdefault(problem, []).append(frame.number)
            result.unplaced_frames.append(frame.number)
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
        on_grid = k is not None and plane_checks.same_plane_grid(frame) and (
            frame.position is None or np.all(np.abs(grid.in_plane_offset(frame.position, k)) < IN_PLANE_TOLERANCE)
        )
        if not on_grid and frame.position is None:
            result.unplaced_frames.append(frame.number)
            continue
        if frame.position is None:
            placed_without_position.append(frame.number)
        if on_grid and grid.empty[k]:
            result.frames_on_empty_slices.append(frame.number)
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
                # A copy: a view would keep the whole decoded frame alive until the segment is assembled.
                crop = inside[rows[0] : rows[-1] + 1, columns[0] : columns[-1] + 1].copy()
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
    if frames and result.frames_placed == 0 and invalid_orientation:
        raise DataError(path, f"{next(iter(invalid_orientation))}; none of its frames can be placed")
    if frames and result.frames_placed == 0:
        raise DataError(path, f"none of its {len(frames)} frames lies on the series "
                              f"{reference.series_instance_uid} ({reference.instances[0].path.parent})")
    result.findings = _decode_findings(result, reference, case_id, unknown_segments, no_reference, multiframe)
    if placed_without_position:
        # PS3.3 C.7.6.16.2.3: a SEG on a frame of reference gives every frame's position; placing such a
        # frame by its source image alone cannot check that it lies where that image is.
        result.findings.append(Finding(
            WARNING, "seg.frames_without_position",
            f"{path.name}: {len(placed_without_position)} frame(s) have no ImagePositionPatient (frames "
            f"{placed_without_position[:10]}); placed on the CT image they reference, unchecked",
            case_id=case_id, path=str(path), value=float(len(placed_without_position))))
    for problem, numbers in invalid_orientation.items():
        result.findings.append(Finding(
            ERROR, "seg.invalid_orientation",
            f"{path.name}: {len(numbers)} frame(s) have an unusable {problem} (frames {numbers[:10]}); "
            "they are not shown", case_id=case_id, path=str(path), value=float(len(numbers))))
    return result


def _read_segmentation(source: Union[Path, str, pydicom.Dataset], path: Path) -> pydicom.Dataset:
    """The SEG's dataset, refused unless it is a SEG whose claimed frames fit its pixel data and the caps."""
    try:
        dataset = source if isinstance(source, pydicom.Dataset) else pydicom.dcmread(str(path))
    except Exception as error:  # pydicom raises many types for damaged files
        raise DataError(path, f"not a readable DICOM file ({error})") from error
    if str(dataset.get("SOPClassUID", "")) not in SEG_SOP_CLASS_UIDS:
        raise DataError(path, f"is not a DICOM Segmentation (SOP class {dataset.get('SOPClassUID', 'missing')})")
    check_seg_frames(dataset, path)  # claimed frames vs bytes present and caps, before any per-frame work
    if dataset.get("DimensionOrganizationType") == "TILED_FULL" or "TotalPixelMatrixRows" in dataset:
        raise DataError(path, "is a tiled (slide microscopy) segmentation, not one on a CT/MR series")
    for what in ("Rows", "Columns", "SOPInstanceUID", "SeriesInstanceUID"):
        if dataset.get(what) in (None, ""):
            raise DataError(path, f"is not a valid DICOM Segmentation ({what} is missing)")
    return dataset


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
    if result.frames_on_empty_slices:
        findings.append(Finding(
            WARNING, "seg.frames_on_missing_slices",
            f"{name}: {len(result.frames_on_empty_slices)} frame(s) lie where CT series "
            f"{reference.series_instance_uid} has no image file (frames {result.frames_on_empty_slices[:10]}); "
            "they are shown at their own position on the empty slice, not moved to a neighbour",
            case_id=case_id, path=str(result.path), value=float(len(result.frames_on_empty_slices)),
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
    numbers = [segment.number for segment in result.segments]
    for number in sorted({n for n in numbers if numbers.count(n) > 1}):
        findings.append(Finding(
            ERROR, "seg.duplicate_segment_number",
            f"{name}: SegmentSequence describes segment number {number} {numbers.count(number)} times; "
            "the frames of that number cannot be told apart between those segments",
            case_id=case_id, path=str(result.path), value=float(numbers.count(number)),
        ))
    for number, count in sorted(unknown_segments.items()):
        findings.append(Finding(
            ERROR, "seg.unknown_segment",
            f"{name}: {count} frame(s) belong to segment number {number}, which SegmentSequence does not describe",
            case_id=case_id, path=str(result.path), value=float(count),
        ))
    return findings
