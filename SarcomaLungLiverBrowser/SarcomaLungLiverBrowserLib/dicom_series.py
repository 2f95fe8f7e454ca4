"""Find DICOM instances under a folder, group them into series, read a series as a volume.

Folder and file names are never trusted: NBIA names files ``1-001.dcm``, IDC
names them by UUID, and either may be renamed. Instances are grouped by
``SeriesInstanceUID`` and slices are ordered by their position along the
slice normal, not by file name or ``InstanceNumber``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError

from .errors import DataError
from .geometry import SlicePlane, SliceStackReport, ijk_to_ras_from_slices, sort_slices
from .progress import ProgressCallback, report

__all__ = [
    "InstanceHeader",
    "FolderScan",
    "DicomVolume",
    "read_header",
    "scan_folder",
    "group_by_series",
    "read_series",
    "looks_like_dicom",
]

#: Tags read when indexing; pixel data is never read while indexing.
HEADER_TAGS = [
    "SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "PatientID",
    "PatientName", "Modality", "SeriesDescription", "SeriesNumber", "InstanceNumber",
    "FrameOfReferenceUID", "Rows", "Columns", "ImagePositionPatient", "ImageOrientationPatient",
    "PixelSpacing", "NumberOfFrames", "StudyDate", "StudyDescription", "SliceThickness",
    "SamplesPerPixel",
]


@dataclass(frozen=True)
class InstanceHeader:
    """The header facts of one DICOM file that indexing and stacking need."""

    path: Path
    sop_instance_uid: str
    sop_class_uid: str
    series_instance_uid: str
    study_instance_uid: str
    patient_id: str
    modality: str
    series_description: str = ""
    series_number: Optional[int] = None
    instance_number: Optional[int] = None
    frame_of_reference_uid: str = ""
    rows: Optional[int] = None
    columns: Optional[int] = None
    image_position: Optional[Tuple[float, float, float]] = None
    image_orientation: Optional[Tuple[float, ...]] = None
    pixel_spacing: Optional[Tuple[float, float]] = None
    number_of_frames: int = 1
    study_date: str = ""
    study_description: str = ""
    slice_thickness: Optional[float] = None
    samples_per_pixel: int = 1

    @property
    def plane(self) -> Optional[SlicePlane]:
        """The image plane, or None when a geometry tag is missing."""
        if self.image_position is None or self.image_orientation is None or self.pixel_spacing is None:
            return None
        return SlicePlane(self.image_position, self.image_orientation, self.pixel_spacing)  # type: ignore[arg-type]

    @property
    def missing_geometry(self) -> List[str]:
        """Names of the geometry attributes this image lacks."""
        names = []
        if self.image_position is None:
            names.append("ImagePositionPatient")
        if self.image_orientation is None:
            names.append("ImageOrientationPatient")
        if self.pixel_spacing is None:
            names.append("PixelSpacing")
        return names


def _floats(value: object, count: int) -> Optional[Tuple[float, ...]]:
    if value is None:
        return None
    try:
        numbers = tuple(float(v) for v in value)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        return None
    if len(numbers) != count or not all(np.isfinite(numbers)):
        return None
    return numbers


def _int_or_none(value: object) -> Optional[int]:
    try:
        return None if value in (None, "") else int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def header_from_dataset(dataset: pydicom.Dataset, path: Path) -> InstanceHeader:
    """Build an :class:`InstanceHeader` from an already-read dataset."""
    missing = [name for name in ("SOPInstanceUID", "SeriesInstanceUID") if not dataset.get(name)]
    if missing:
        raise DataError(path, f"DICOM file lacks {', '.join(missing)}")
    slice_thickness = dataset.get("SliceThickness")
    return InstanceHeader(
        path=path,
        sop_instance_uid=str(dataset.SOPInstanceUID),
        sop_class_uid=str(dataset.get("SOPClassUID", "")),
        series_instance_uid=str(dataset.SeriesInstanceUID),
        study_instance_uid=str(dataset.get("StudyInstanceUID", "")),
        patient_id=str(dataset.get("PatientID", "")),
        modality=str(dataset.get("Modality", "")),
        series_description=str(dataset.get("SeriesDescription", "")),
        series_number=_int_or_none(dataset.get("SeriesNumber")),
        instance_number=_int_or_none(dataset.get("InstanceNumber")),
        frame_of_reference_uid=str(dataset.get("FrameOfReferenceUID", "")),
        rows=_int_or_none(dataset.get("Rows")),
        columns=_int_or_none(dataset.get("Columns")),
        image_position=_floats(dataset.get("ImagePositionPatient"), 3),  # type: ignore[arg-type]
        image_orientation=_floats(dataset.get("ImageOrientationPatient"), 6),
        pixel_spacing=_floats(dataset.get("PixelSpacing"), 2),  # type: ignore[arg-type]
        number_of_frames=_int_or_none(dataset.get("NumberOfFrames")) or 1,
        study_date=str(dataset.get("StudyDate", "")),
        study_description=str(dataset.get("StudyDescription", "")),
        slice_thickness=float(slice_thickness) if slice_thickness not in (None, "") else None,
        samples_per_pixel=_int_or_none(dataset.get("SamplesPerPixel")) or 1,
    )


def looks_like_dicom(path: Path) -> bool:
    """True if the file has the DICOM preamble magic ``DICM`` at byte 128."""
    try:
        with open(path, "rb") as stream:
            stream.seek(128)
            return stream.read(4) == b"DICM"
    except OSError:
        return False


def read_header(path: Path) -> InstanceHeader:
    """Read one file's header without its pixel data.

    :raises DataError: naming the file, if it is not readable DICOM.
    """
    try:
        dataset = pydicom.dcmread(str(path), stop_before_pixels=True, specific_tags=HEADER_TAGS)
    except (InvalidDicomError, OSError, ValueError, EOFError, KeyError, TypeError, AttributeError) as error:
        raise DataError(path, f"not a readable DICOM file ({error})") from error
    return header_from_dataset(dataset, Path(path))


@dataclass
class FolderScan:
    """What :func:`scan_folder` found: readable instances and unreadable files."""

    instances: List[InstanceHeader] = field(default_factory=list)
    errors: List[DataError] = field(default_factory=list)


def _candidate_files(root: Path) -> Iterable[Path]:
    for directory, _, files in os.walk(root):
        for name in sorted(files):
            path = Path(directory) / name
            if name.lower().endswith(".dcm") or looks_like_dicom(path):
                yield path


def scan_folder(root: Path, progress: Optional[ProgressCallback] = None) -> FolderScan:
    """Read the headers of every DICOM file below ``root``.

    Files ending in ``.dcm`` or carrying the DICOM magic are read; a file that
    fails is recorded in :attr:`FolderScan.errors` and the scan goes on.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(root, "is not a folder")
    files = list(_candidate_files(root))
    scan = FolderScan()
    for index, path in enumerate(files):
        if index % 50 == 0:
            report(progress, f"Reading DICOM headers ({index}/{len(files)})", index / max(1, len(files)))
        try:
            scan.instances.append(read_header(path))
        except DataError as error:
            scan.errors.append(error)
    return scan


def group_by_series(instances: Sequence[InstanceHeader]) -> Dict[str, List[InstanceHeader]]:
    """Instances grouped by SeriesInstanceUID, in the order series were first seen."""
    groups: Dict[str, List[InstanceHeader]] = {}
    for instance in instances:
        groups.setdefault(instance.series_instance_uid, []).append(instance)
    return groups


@dataclass
class DicomVolume:
    """A DICOM series stacked into a volume on Slicer's conventions.

    ``voxels`` is indexed [k, j, i]; ``instances[k]`` is the file of slice k.
    """

    voxels: np.ndarray
    ijk_to_ras: np.ndarray
    instances: List[InstanceHeader]
    stack_report: SliceStackReport
    duplicates: List[InstanceHeader] = field(default_factory=list)
    window: Optional[Tuple[float, float]] = None

    @property
    def series_instance_uid(self) -> str:
        return self.instances[0].series_instance_uid

    @property
    def modality(self) -> str:
        return self.instances[0].modality

    def slice_index(self, sop_instance_uid: str) -> Optional[int]:
        """k index of the slice with this SOPInstanceUID, or None."""
        for index, instance in enumerate(self.instances):
            if instance.sop_instance_uid == sop_instance_uid:
                return index
        for instance in self.duplicates:
            if instance.sop_instance_uid == sop_instance_uid:
                return self._index_of_position(instance)
        return None

    def _index_of_position(self, instance: InstanceHeader) -> Optional[int]:
        for index, kept in enumerate(self.instances):
            if kept.image_position == instance.image_position:
                return index
        return None

    def problems(self) -> List[str]:
        """Irregularities found while stacking, in words."""
        return self.stack_report.problems()


def _check_stackable(instances: Sequence[InstanceHeader]) -> None:
    first = instances[0]
    for instance in instances:
        if instance.number_of_frames > 1:
            raise DataError(instance.path, f"is a multi-frame image ({instance.number_of_frames} frames); "
                                           "only single-frame series are stacked")
        if instance.missing_geometry:
            raise DataError(instance.path, "lacks " + ", ".join(instance.missing_geometry)
                            + "; its slice cannot be placed in space")
        if (instance.rows, instance.columns) != (first.rows, first.columns):
            raise DataError(instance.path, f"is {instance.rows}x{instance.columns} pixels but "
                                           f"{first.path.name} is {first.rows}x{first.columns}")
        if not np.allclose(instance.image_orientation, first.image_orientation, atol=1e-4):  # type: ignore[arg-type]
            raise DataError(instance.path, "has a different ImageOrientationPatient from the rest of its series")
        if not np.allclose(instance.pixel_spacing, first.pixel_spacing, rtol=1e-4):  # type: ignore[arg-type]
            raise DataError(instance.path, "has a different PixelSpacing from the rest of its series")
        if instance.samples_per_pixel != 1:
            raise DataError(instance.path, "is a colour image; only greyscale series are stacked")


def _pixels(instance: InstanceHeader) -> Tuple[np.ndarray, float, float, Optional[Tuple[float, float]]]:
    try:
        dataset = pydicom.dcmread(str(instance.path))
        pixels = dataset.pixel_array
    except Exception as error:  # pydicom raises many types for damaged pixel data
        raise DataError(instance.path, f"pixel data cannot be decoded ({error})") from error
    if pixels.shape != (instance.rows, instance.columns):
        raise DataError(instance.path, f"pixel data is {pixels.shape}, header says {instance.rows}x{instance.columns}")
    slope = float(dataset.get("RescaleSlope", 1) or 1)
    intercept = float(dataset.get("RescaleIntercept", 0) or 0)
    window = None
    center, width = dataset.get("WindowCenter"), dataset.get("WindowWidth")
    if center is not None and width is not None:
        try:
            center_value = float(center[0] if isinstance(center, pydicom.multival.MultiValue) else center)
            width_value = float(width[0] if isinstance(width, pydicom.multival.MultiValue) else width)
            window = (width_value, center_value)
        except (TypeError, ValueError):
            window = None
    return pixels, slope, intercept, window


def read_series(instances: Sequence[InstanceHeader], progress: Optional[ProgressCallback] = None) -> DicomVolume:
    """Stack a single-frame series into a volume with real-world values.

    Slices are ordered along the normal; instances at the same position are
    reported as duplicates (the first is kept); gaps and non-uniform spacing
    are reported in :attr:`DicomVolume.stack_report`. RescaleSlope and
    RescaleIntercept are applied per slice; the result is int16 when every
    value fits, float32 otherwise.

    :raises DataError: naming the file, for anything that prevents stacking.
    """
    if not instances:
        raise ValueError("no instances to read")
    _check_stackable(instances)
    order = sort_slices([instance.plane for instance in instances])  # type: ignore[misc]
    ordered = [instances[index] for index in order]
    kept: List[InstanceHeader] = []
    duplicates: List[InstanceHeader] = []
    normal = ordered[0].plane.normal  # type: ignore[union-attr]
    last_distance: Optional[float] = None
    for instance in ordered:
        distance = float(np.dot(instance.image_position, normal))  # type: ignore[arg-type]
        if last_distance is not None and abs(distance - last_distance) < 1e-3:
            duplicates.append(instance)
            continue
        kept.append(instance)
        last_distance = distance
    ijk_to_ras, stack_report = ijk_to_ras_from_slices(
        [instance.plane for instance in kept], kept[0].slice_thickness  # type: ignore[misc]
    )
    stack_report.duplicate_positions = [ordered.index(instance) for instance in duplicates]
    slices = []
    rescaled_needs_float = False
    window = None
    for index, instance in enumerate(kept):
        report(progress, f"Reading slice {index + 1}/{len(kept)}", index / len(kept))
        pixels, slope, intercept, slice_window = _pixels(instance)
        window = window or slice_window
        if slope != 1.0 or intercept != int(intercept):
            rescaled_needs_float = rescaled_needs_float or slope != int(slope) or intercept != int(intercept)
        slices.append(pixels.astype(np.float64) * slope + intercept if (slope, intercept) != (1.0, 0.0) else pixels)
    voxels = np.stack(slices)
    if not rescaled_needs_float and np.all(np.mod(voxels, 1) == 0) \
            and voxels.min() >= np.iinfo(np.int16).min and voxels.max() <= np.iinfo(np.int16).max:
        voxels = voxels.astype(np.int16)
    else:
        voxels = voxels.astype(np.float32)
    return DicomVolume(
        voxels=voxels,
        ijk_to_ras=ijk_to_ras,
        instances=kept,
        stack_report=stack_report,
        duplicates=duplicates,
        window=window,
    )
