"""Find DICOM instances under a folder, group them into series, read a series as a volume.

Folder and file names are never trusted: NBIA names files ``1-001.dcm``, IDC
names them by UUID, and either may be renamed. Instances are grouped by
``SeriesInstanceUID`` and slices are ordered by their position along the
slice normal, not by file name or ``InstanceNumber``.
"""
from __future__ import annotations

import contextlib
import functools
import gc
import io
import logging
import os
import stat as stat_mode
import struct
from operator import itemgetter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import pydicom
import pydicom.pixels
import pydicom.uid
from pydicom.errors import InvalidDicomError

from ..errors import DataError
from . import threaded_jpeg2000
from .fast_header import encapsulated_pixel_data_problem, read_raw_header
from .folders import warn_skipped_entry
from .limits import check_deflated_dicom, current_limits, use_limits
from ..geometry import (
    LPS_TO_RAS, IrregularSlices, SlicePlane, SliceStackReport, orientation_problem, regular_runs, slice_grid, sort_slices,
)
from ..processes import in_worker_process, spawn_context, still_running
from ..progress import ProgressCallback, report

logger = logging.getLogger(__name__)

__all__ = [
    "InstanceHeader",
    "MissingSlice",
    "FolderScan",
    "DicomVolume",
    "read_header",
    "scan_folder",
    "group_by_series",
    "read_series",
    "looks_like_dicom",
    "set_default_index_cache",
    "split_stackable",
    "split_regular",
    "mixed_series_folders",
    "MAX_EMPTY_SLICE_FRACTION",
]

#: Tags read when indexing; pixel data is never read while indexing.
HEADER_TAGS = [
    "SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "PatientID",
    "PatientName", "Modality", "SeriesDescription", "SeriesNumber", "InstanceNumber",
    "FrameOfReferenceUID", "Rows", "Columns", "ImagePositionPatient", "ImageOrientationPatient",
    "PixelSpacing", "NumberOfFrames", "StudyDate", "StudyDescription", "SliceThickness",
    "SamplesPerPixel", "BitsAllocated", "BitsStored", "PixelRepresentation", "RescaleSlope", "RescaleIntercept",
    "WindowCenter", "WindowWidth", "PhotometricInterpretation",
]

#: The tags of :data:`HEADER_TAGS` as numbers, for pydicom's ``specific_tags``.
_HEADER_TAG_NUMBERS = [pydicom.datadict.tag_for_keyword(keyword) for keyword in HEADER_TAGS]

#: Bytes the raw reader looks at; a file whose wanted attributes lie further in is read by pydicom.
HEADER_PREFIX_BYTES = 16384

#: (7FE0,0010) Pixel Data as it appears in a little-endian file.
PIXEL_DATA_TAG_BYTES = b"\xe0\x7f\x10\x00"

#: A regular grid may hold at most this many empty positions per slice read
#: (besides :data:`MIN_EMPTY_SLICES_ALLOWED`): pydicom's CT2 (3 slices 1.25 mm
#: apart and one 202.5 mm away) fits; a 2-slice series 600 mm apart does not
#: allocate 480 empty slices, it is refused with a pointer to :func:`split_regular`.
MAX_EMPTY_SLICE_FRACTION = 64
MIN_EMPTY_SLICES_ALLOWED = 256

#: Transfer syntaxes whose pixel data is stored raw at the end of the file.
UNCOMPRESSED_LITTLE_ENDIAN = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1"}
DEFLATED_EXPLICIT_LITTLE_ENDIAN = "1.2.840.10008.1.2.1.99"


#: Where a header restored from the header cache keeps its path as text until the path is first used.
LAZY_PATH_ATTRIBUTE = "_path_text"


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
    bits_allocated: Optional[int] = None
    bits_stored: Optional[int] = None
    pixel_representation: int = 0
    rescale_slope: float = 1.0
    rescale_intercept: float = 0.0
    window: Optional[Tuple[float, float]] = None
    transfer_syntax_uid: str = ""

    def __getattr__(self, name: str) -> object:
        # Reached only for an attribute missing from the instance: the path of a header restored from the header
        # cache (index_cache) is kept as text and made into a Path on first use. A re-index of a large tree needs
        # few of its paths, and building them all was a third of its time.
        if name == "path":
            text = self.__dict__.get(LAZY_PATH_ATTRIBUTE)
            if text is not None:
                path = Path(text)
                object.__setattr__(self, "path", path)
                return path
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

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


@dataclass(frozen=True)
class MissingSlice(InstanceHeader):
    """The stand-in for a grid position that no file of the series fills.

    It keeps ``volume.instances`` aligned with k for code that enumerates it
    (a k -> file mapping, Slicer's ``DICOM.instanceUIDs`` list), while its
    ``sop_instance_uid`` (``missing-slice-<k>``) matches no annotation and its
    ``path`` names no file, so nothing can be read from or referenced to it.
    """

    @classmethod
    def at(cls, k: int, position: Sequence[float], template: InstanceHeader) -> "MissingSlice":
        return cls(
            path=template.path.parent / f"<missing slice {k}>",
            sop_instance_uid=f"missing-slice-{k}",
            sop_class_uid=template.sop_class_uid,
            series_instance_uid=template.series_instance_uid,
            study_instance_uid=template.study_instance_uid,
            patient_id=template.patient_id,
            modality=template.modality,
            series_description=template.series_description,
            series_number=template.series_number,
            frame_of_reference_uid=template.frame_of_reference_uid,
            rows=template.rows,
            columns=template.columns,
            image_position=tuple(float(v) for v in position),  # type: ignore[arg-type]
            image_orientation=template.image_orientation,
            pixel_spacing=template.pixel_spacing,
        )


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
    file_meta = getattr(dataset, "file_meta", None)
    transfer_syntax = str(file_meta.get("TransferSyntaxUID", "")) if file_meta is not None else ""
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
        slice_thickness=_finite_or_none(slice_thickness),
        samples_per_pixel=_int_or_none(dataset.get("SamplesPerPixel")) or 1,
        bits_allocated=_int_or_none(dataset.get("BitsAllocated")),
        bits_stored=_int_or_none(dataset.get("BitsStored")),
        pixel_representation=_int_or_none(dataset.get("PixelRepresentation")) or 0,
        rescale_slope=_rescale_value(dataset.get("RescaleSlope"), 1.0),
        rescale_intercept=_rescale_value(dataset.get("RescaleIntercept"), 0.0),
        window=_window(dataset),
        transfer_syntax_uid=transfer_syntax,
    )


def _finite_or_none(value: object) -> Optional[float]:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if np.isfinite(number) else None


def _float_or(value: object, default: float) -> float:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return default
    return number if np.isfinite(number) else default


def _rescale_value(value: object, default: float) -> float:
    """RescaleSlope/Intercept: the default when absent, NaN when present but not a finite number.

    A damaged rescale value must not silently become 1 or 0 (the voxel values
    would be wrong without anyone noticing); NaN makes stacking refuse the slice.
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        return default
    try:
        number = float(_first(value))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return float("nan")
    return number if np.isfinite(number) else float("nan")


def _first(value: object) -> object:
    return value[0] if isinstance(value, pydicom.multival.MultiValue) and len(value) else value


def _window(dataset: pydicom.Dataset) -> Optional[Tuple[float, float]]:
    """(width, center) of the first VOI window the file suggests, if any."""
    center, width = dataset.get("WindowCenter"), dataset.get("WindowWidth")
    if center is None or width is None:
        return None
    try:
        return float(_first(width)), float(_first(center))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def looks_like_dicom(path: Path) -> bool:
    """True if the file has the DICOM preamble magic ``DICM`` at byte 128."""
    try:
        with open(path, "rb") as stream:
            stream.seek(128)
            return stream.read(4) == b"DICM"
    except OSError:
        return False


def _parse_header(path: Path) -> pydicom.Dataset:
    """The indexed attributes of a file the raw reader declined, in one pydicom pass.

    pydicom reads from the file only up to Pixel Data (``stop_before_pixels``)
    and seeks past the values of every element it is not asked for
    (``specific_tags``), so this costs no more than the plainest
    ``dcmread(stop_before_pixels=True)``. Deflated files are the exception:
    pydicom inflates their whole data set in memory, so the expansion is
    bounded first (formats/limits.py).
    """
    check_deflated_dicom(path)
    return pydicom.dcmread(str(path), stop_before_pixels=True, specific_tags=_HEADER_TAG_NUMBERS)


def _split_floats(text: object, count: int) -> Optional[Tuple[float, ...]]:
    if not isinstance(text, str) or not text:
        return None
    return _floats(text.split("\\"), count)


def header_from_raw(values: Dict[str, object], path: Path) -> InstanceHeader:
    """Build an :class:`InstanceHeader` from :func:`~.fast_header.read_raw_header` values."""
    missing = [name for name in ("SOPInstanceUID", "SeriesInstanceUID") if not values.get(name)]
    if missing:
        raise DataError(path, f"DICOM file lacks {', '.join(missing)}")

    def text(name: str) -> str:
        return str(values.get(name, ""))

    def first_number(name: str) -> Optional[float]:
        value = values.get(name)
        if not isinstance(value, str) or not value:
            return None
        try:
            number = float(value.split("\\")[0])
        except ValueError:
            return None
        return number if np.isfinite(number) else None

    center, width = first_number("WindowCenter"), first_number("WindowWidth")
    slope = _rescale_value(values.get("RescaleSlope"), 1.0)
    intercept = _rescale_value(values.get("RescaleIntercept"), 0.0)
    return InstanceHeader(
        path=path,
        sop_instance_uid=text("SOPInstanceUID"),
        sop_class_uid=text("SOPClassUID"),
        series_instance_uid=text("SeriesInstanceUID"),
        study_instance_uid=text("StudyInstanceUID"),
        patient_id=text("PatientID"),
        modality=text("Modality"),
        series_description=text("SeriesDescription"),
        series_number=_int_or_none(values.get("SeriesNumber")),
        instance_number=_int_or_none(values.get("InstanceNumber")),
        frame_of_reference_uid=text("FrameOfReferenceUID"),
        rows=_int_or_none(values.get("Rows")),
        columns=_int_or_none(values.get("Columns")),
        image_position=_split_floats(values.get("ImagePositionPatient"), 3),  # type: ignore[arg-type]
        image_orientation=_split_floats(values.get("ImageOrientationPatient"), 6),
        pixel_spacing=_split_floats(values.get("PixelSpacing"), 2),  # type: ignore[arg-type]
        number_of_frames=_int_or_none(values.get("NumberOfFrames")) or 1,
        study_date=text("StudyDate"),
        study_description=text("StudyDescription"),
        slice_thickness=first_number("SliceThickness"),
        samples_per_pixel=_int_or_none(values.get("SamplesPerPixel")) or 1,
        bits_allocated=_int_or_none(values.get("BitsAllocated")),
        bits_stored=_int_or_none(values.get("BitsStored")),
        pixel_representation=_int_or_none(values.get("PixelRepresentation")) or 0,
        rescale_slope=slope,
        rescale_intercept=intercept,
        window=(width, center) if width is not None and center is not None else None,
        transfer_syntax_uid=text("TransferSyntaxUID"),
    )


def read_header(path: Path) -> InstanceHeader:
    """Read one file's header without its pixel data.

    Files whose data set is little endian and not deflated -- uncompressed
    and every encapsulated (JPEG, JPEG-LS, JPEG 2000, RLE) syntax -- are read
    by a minimal raw reader (:mod:`.fast_header`); everything else by one
    pydicom pass over the header.

    :raises DataError: naming the file, if it is not readable DICOM.
    """
    path = Path(path)
    try:
        with open(path, "rb") as stream:
            prefix = stream.read(HEADER_PREFIX_BYTES)
            whole_file = len(prefix) < HEADER_PREFIX_BYTES or not stream.read(1)
    except OSError as error:
        raise DataError(path, f"cannot be read ({error})") from error
    values = read_raw_header(prefix, whole_file)
    if values is not None:
        return header_from_raw(values, path)
    try:
        dataset = _parse_header(path)
        # pydicom converts values when they are first read, so damaged values raise here too.
        return header_from_dataset(dataset, path)
    except DataError:
        raise
    except MemoryError:
        raise
    except Exception as error:  # pydicom raises many types (even NotImplementedError) for damaged files
        raise DataError(path, f"not a readable DICOM file ({type(error).__name__}: {error})") from error


@dataclass
class FolderScan:
    """What :func:`scan_folder` found: readable instances and unreadable files."""

    instances: List[InstanceHeader] = field(default_factory=list)
    errors: List[DataError] = field(default_factory=list)


#: (size, mtime_ns, ctime_ns, inode) of a file: what must be unchanged for a cached header to be used.
FileKey = Tuple[int, int, int, int]

#: How a folder listing packs each file's key: size, mtime and ctime as signed and the inode as unsigned 64-bit
#: numbers (their C types on every POSIX system).
FILE_KEY_LAYOUT = struct.Struct("<qqqQ")
_SIGNED_64 = 1 << 63
_UNSIGNED_64 = 1 << 64


def file_key(stat: os.stat_result) -> FileKey:
    """The cache key of a file from its stat (``os.stat`` or ``os.DirEntry.stat``).

    A value outside its 64-bit field (Python 3.12 on Windows reports inodes
    of up to 128 bits on ReFS) is folded into it, the same way every time,
    so that every key can be packed (see :class:`FolderListing`).
    """
    values = (stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino)
    try:
        FILE_KEY_LAYOUT.pack(*values)
    except struct.error:
        size, mtime, ctime, inode = values
        return ((size + _SIGNED_64) % _UNSIGNED_64 - _SIGNED_64, (mtime + _SIGNED_64) % _UNSIGNED_64 - _SIGNED_64,
                (ctime + _SIGNED_64) % _UNSIGNED_64 - _SIGNED_64, (inode ^ (inode >> 64)) % _UNSIGNED_64)
    return values


class FolderListing:
    """The visible regular files of one folder as a walk found them: their names and keys, in listing order.

    The keys (:func:`file_key`) are packed into one bytes string, so that a
    re-index recognises an unchanged folder by comparing two strings with its
    header cache record (see :mod:`.index_cache`) instead of a tuple of four
    numbers per file -- which, with unpacking the record's tuples, was a tenth
    of a re-index. The order is the file system's: the same for an unchanged
    folder (a folder listed in another order is still matched file by file).
    """

    __slots__ = ("names", "packed_keys")

    def __init__(self, names: List[str], packed_keys: bytes) -> None:
        #: File names, as ``os.scandir`` gave them.
        self.names = names
        #: ``FILE_KEY_LAYOUT.size`` bytes per name: its key, packed.
        self.packed_keys = packed_keys

    @classmethod
    def of_keys(cls, keys: Dict[str, FileKey]) -> "FolderListing":
        """The listing of files named by ``keys`` (name -> :func:`file_key`), in that mapping's order."""
        return cls(list(keys), b"".join(FILE_KEY_LAYOUT.pack(*key) for key in keys.values()))

    def file_keys(self) -> Dict[str, FileKey]:
        """File name -> key, in listing order."""
        return dict(zip(self.names, FILE_KEY_LAYOUT.iter_unpack(self.packed_keys)))

    def __len__(self) -> int:
        return len(self.names)


#: Whether a folder can be listed through an open descriptor (POSIX): each entry's stat then resolves one name
#: against that descriptor (``fstatat``) instead of walking the whole path again, a third of a re-index's walk.
_LIST_BY_DESCRIPTOR = os.scandir in os.supports_fd
_DIRECTORY_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0)


def _walk_folders(root: Path, warn: bool = True) -> List[Tuple[str, FolderListing]]:
    """Every folder below ``root`` (itself included) with its regular files, hidden entries skipped.

    Each key comes from the ``os.scandir`` entry's stat: one system call per
    file, no open. Folders are not followed through symbolic links.

    :param warn: name each link loop or unreadable entry in a warning (:mod:`.folders`); False for a walk
        that only checks whether anything changed, ahead of a scan that warns once itself.
    """
    found: List[Tuple[str, FolderListing]] = []
    pending = [(str(root), True)]
    while pending:
        directory, is_root = pending.pop()
        listing = _list_folder(directory, is_root, pending, warn)
        if listing is not None:
            found.append((directory, listing))
    return found


def _list_folder(directory: str, is_root: bool, pending: List[Tuple[str, bool]], warn: bool
                 ) -> Optional[FolderListing]:
    """The listing of ``directory``'s regular files, its subfolders added to ``pending``; None if it cannot be listed."""
    descriptor = None
    try:
        if _LIST_BY_DESCRIPTOR:
            # A subfolder was listed as a folder, not a link: if a link replaced it since, it is not followed.
            descriptor = os.open(directory, _DIRECTORY_FLAGS | (0 if is_root else getattr(os, "O_NOFOLLOW", 0)))
            entries = list(os.scandir(descriptor))
        else:
            entries = list(os.scandir(directory))
    except OSError:
        if descriptor is not None:
            os.close(descriptor)
        return None
    try:
        prefix = folder_prefix(directory)
        names: List[str] = []
        packed: List[bytes] = []
        pack_key = FILE_KEY_LAYOUT.pack
        for entry in entries:
            name = entry.name
            if name.startswith("."):
                continue  # caches, review stores, OS litter
            if entry.is_dir(follow_symlinks=False):
                pending.append((prefix + name, False))
                continue
            # One stat, following links as is_file() does: a link loop or an entry that vanished or cannot be
            # read is skipped, never a traceback (the warning names it); anything but a regular file is skipped.
            try:
                stat = entry.stat()
            except OSError as error:
                if warn:
                    warn_skipped_entry(entry, error, prefix + name)
                continue
            if stat_mode.S_ISREG(stat.st_mode):
                try:
                    packed.append(pack_key(stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino))
                except struct.error:  # a value wider than its field: folded (see file_key)
                    packed.append(pack_key(*file_key(stat)))
                names.append(name)
        return FolderListing(names, b"".join(packed))
    finally:
        if descriptor is not None:
            os.close(descriptor)


def folder_prefix(folder: str) -> str:
    """``folder`` with one trailing separator: ``folder_prefix(folder) + name == os.path.join(folder, name)`` for
    a name from ``os.scandir`` (a re-index joins every cached file's path; concatenation is several times faster)."""
    return folder if folder.endswith(os.sep) else folder + os.sep


def tree_file_keys(root: Path) -> Tuple[Tuple[str, int, int, int, int], ...]:
    """(path, size, mtime, ctime, inode) of every visible regular file below ``root``, sorted, without warnings:
    what anything read from the tree depends on (walked as :func:`scan_folder` walks)."""
    return tuple(sorted((os.path.join(folder, name), *key) for folder, listing in _walk_folders(root, warn=False)
                        for name, key in listing.file_keys().items()))


#: The cache :func:`scan_folder` uses when none is passed (see :func:`set_default_index_cache`).
_default_index_cache: Optional[object] = None


def set_default_index_cache(cache: Optional[object]) -> None:
    """Use ``cache`` (an :class:`~.index_cache.IndexCache`, or None) for every scan from now on."""
    global _default_index_cache
    _default_index_cache = cache


def _read_entry(path: str) -> Tuple[Optional[InstanceHeader], Optional[str]]:
    """(header, None) of a DICOM file, (None, problem) of a damaged one, (None, None) of any other file."""
    if not (path.lower().endswith(".dcm") or looks_like_dicom(Path(path))):
        return None, None
    try:
        return read_header(Path(path)), None
    except DataError as error:
        return None, error.problem


def scan_folder(root: Path, progress: Optional[ProgressCallback] = None, cache: Optional[object] = None) -> FolderScan:
    """Read the headers of every DICOM file below ``root``.

    Files ending in ``.dcm`` or carrying the DICOM magic are read; a file that
    fails is recorded in :attr:`FolderScan.errors` and the scan goes on. With a
    cache (``cache``, else the default set by :func:`set_default_index_cache`),
    files whose size, mtime, ctime and inode are unchanged are not read again
    (one cache record per folder; see :mod:`.index_cache`). Instances and
    errors come in path order.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(root, "is not a folder")
    cache = cache if cache is not None else _default_index_cache
    with _cyclic_gc_paused():
        return _scan_folders(str(root), _walk_folders(root), progress, cache)


@contextlib.contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector, as long as it was running, for the block.

    A scan creates tens of thousands of small, acyclic, long-lived objects
    (headers, their paths and tuples). Each allocation burst triggers
    collections that traverse every object of the process -- in a fresh
    interpreter with pydicom and numpy loaded, that tripled the time of
    serving a tree from the header cache. Reference counting still frees
    everything; the collector runs again afterwards.

    When the block ends, every object the collector tracks is moved to its
    oldest generation (``gc.freeze()`` then ``gc.unfreeze()``, two list
    splices) before it is enabled again: otherwise the first allocation
    after the block runs a young collection over every object the scan made
    (measured at about an eighth of a re-index of 20,000 files), only to find them alive and
    promote them. They are still traversed by the next full collection, as
    they would have been. Skipped while the host keeps frozen objects of its
    own (``gc.get_freeze_count()``), which ``unfreeze`` would release.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            if gc.get_freeze_count() == 0:
                gc.freeze()
                gc.unfreeze()
            gc.enable()


def _scan_folders(root: str, folders: List[Tuple[str, FolderListing]], progress: Optional[ProgressCallback],
                  cache: Optional[object]) -> FolderScan:
    """:func:`scan_folder` of walked folders: every file's header from the cache or the file."""
    total = sum(len(listing) for _, listing in folders)
    results: List[Tuple[str, Optional[InstanceHeader], Optional[str]]] = []
    changed_folders = []
    cache_key = _cache_key_of(root)
    records = cache.records_below(cache_key(root)) if cache is not None else {}  # type: ignore[attr-defined]
    done = next_report = 0
    for folder, listing in folders:
        if done >= next_report:
            report(progress, f"Reading DICOM headers ({done}/{total})", done / max(1, total))
            next_report = done + 200
        record = records.get(cache_key(folder))
        known, unchanged = (cache.folder_entries(folder, listing, record)  # type: ignore[attr-defined]
                            if record is not None else ({}, False))
        if unchanged:  # the common case of a re-index: every file served from the folder's record
            results.extend(known.values())
            done += len(listing)
            continue
        keys = listing.file_keys()
        found: Dict[str, Tuple[Optional[InstanceHeader], Optional[str]]] = {}
        for name in sorted(keys):  # name order is mostly the order files were written in: reads stay local
            path = os.path.join(folder, name)
            cached = known.get(name)
            if cached is None:
                entry = _read_entry(path)
                done += 1
                if done >= next_report:
                    report(progress, f"Reading DICOM headers ({done}/{total})", done / max(1, total))
                    next_report = done + 200
            else:
                entry = cached[1:]
                done += 1
            found[name] = entry
            results.append((path, entry[0], entry[1]))
        if cache is not None:  # recorded in listing order: next time the walk's listing matches it as a whole
            changed_folders.append((cache_key(folder), {name: (key, *found[name]) for name, key in keys.items()}))
    if cache is not None and changed_folders:
        cache.store_folders(changed_folders)  # type: ignore[attr-defined]
    if cache is not None:
        cache.forget_folders_gone_below(  # type: ignore[attr-defined]
            cache_key(root), [cache_key(folder) for folder, _ in folders])
    results.sort(key=itemgetter(0))
    return FolderScan([header for _, header, _ in results if header is not None],
                      [DataError(path, problem) for path, header, problem in results
                       if header is None and problem is not None])


def _cache_key_of(root: str) -> Callable[[str], str]:
    """How the header cache names the folders of a scan of ``root``: as walked when ``root`` is absolute, else made
    absolute against the working directory (the cache serves every working directory, and ``data/PAT-1`` names
    another folder in each); the scan's own paths stay as the caller gave them."""
    if os.path.isabs(root):
        return _same_text
    working_directory = os.getcwd()
    return lambda folder: os.path.normpath(os.path.join(working_directory, folder))


def _same_text(folder: str) -> str:
    return folder


def group_by_series(instances: Sequence[InstanceHeader]) -> Dict[str, List[InstanceHeader]]:
    """Instances grouped by SeriesInstanceUID, in the order series were first seen."""
    groups: Dict[str, List[InstanceHeader]] = {}
    for instance in instances:
        groups.setdefault(instance.series_instance_uid, []).append(instance)
    return groups


@dataclass
class DicomVolume:
    """A DICOM series stacked into a volume on Slicer's conventions.

    ``voxels`` is indexed [k, j, i] on a regular grid that puts every slice
    where its file says (see :func:`~..geometry.slice_grid`); ``instances[k]``
    is the file of slice k, or a :class:`MissingSlice` where the series has no
    file for that position (its voxels hold :attr:`empty_value`). The first
    and last slices always have a file.
    """

    voxels: np.ndarray
    ijk_to_ras: np.ndarray
    instances: List[InstanceHeader]
    stack_report: SliceStackReport
    duplicates: List[InstanceHeader] = field(default_factory=list)
    window: Optional[Tuple[float, float]] = None
    empty_value: float = 0.0

    @property
    def empty_slices(self) -> List[int]:
        """Grid indices k with no image file (left empty at their true position)."""
        return [k for k, instance in enumerate(self.instances) if isinstance(instance, MissingSlice)]

    @property
    def present_instances(self) -> List[InstanceHeader]:
        """The files of the volume in k order, without the empty positions."""
        return [instance for instance in self.instances if not isinstance(instance, MissingSlice)]

    @property
    def series_instance_uid(self) -> str:
        return self.instances[0].series_instance_uid

    @property
    def modality(self) -> str:
        return self.instances[0].modality

    def slice_index(self, sop_instance_uid: str) -> Optional[int]:
        """k index of the slice with this SOPInstanceUID, or None."""
        for index, instance in enumerate(self.instances):
            if not isinstance(instance, MissingSlice) and instance.sop_instance_uid == sop_instance_uid:
                return index
        for instance in self.duplicates:
            if instance.sop_instance_uid == sop_instance_uid:
                return self._index_of_position(instance)
        return None

    def _index_of_position(self, instance: InstanceHeader) -> Optional[int]:
        for index, kept in enumerate(self.instances):
            if not isinstance(kept, MissingSlice) and kept.image_position == instance.image_position:
                return index
        return None

    def problems(self) -> List[str]:
        """Irregularities found while stacking, in words (naming the files concerned)."""
        problems = self.stack_report.problems()
        for duplicate in self.duplicates:
            k = self._index_of_position(duplicate)
            kept = self.instances[k].path.name if k is not None else "another slice"
            problems.append(f"{duplicate.path.name} lies at the position of {kept} and was left out")
        return problems


def _check_stackable(instances: Sequence[InstanceHeader]) -> None:
    first = instances[0]
    for instance in instances:
        if instance.number_of_frames > 1:
            raise DataError(instance.path, f"is a multi-frame image ({instance.number_of_frames} frames); "
                                           "only single-frame series are stacked")
        if instance.missing_geometry:
            raise DataError(instance.path, "lacks " + ", ".join(instance.missing_geometry)
                            + "; its slice cannot be placed in space")
        orientation = orientation_problem(instance.image_orientation)  # type: ignore[arg-type]
        if orientation:
            raise DataError(instance.path, orientation + "; its slice cannot be placed in space as given")
        if (instance.rows, instance.columns) != (first.rows, first.columns):
            raise DataError(instance.path, f"is {instance.rows}x{instance.columns} pixels but "
                                           f"{first.path.name} is {first.rows}x{first.columns}")
        if not np.allclose(instance.image_orientation, first.image_orientation, atol=1e-4):  # type: ignore[arg-type]
            raise DataError(instance.path, "has a different ImageOrientationPatient from the rest of its series")
        if not np.allclose(instance.pixel_spacing, first.pixel_spacing, rtol=1e-4):  # type: ignore[arg-type]
            raise DataError(instance.path, "has a different PixelSpacing from the rest of its series")
        if instance.samples_per_pixel != 1:
            raise DataError(instance.path, "is a colour image; only greyscale series are stacked")
        problem = _unstackable_alone(instance)
        if problem:
            raise DataError(instance.path, problem)


def _unstackable_alone(instance: InstanceHeader) -> Optional[str]:
    """Why this slice cannot be stacked whatever the rest of its series, or None.

    Checked from the header and the file size, before any voxel is allocated:
    a header claiming 65535x65535 pixels in a 100 kB file must not make the
    reader ask for gigabytes.
    """
    if instance.number_of_frames > 1:
        return f"is a multi-frame image ({instance.number_of_frames} frames); only single-frame series are stacked"
    if instance.missing_geometry:
        return "lacks " + ", ".join(instance.missing_geometry) + "; its slice cannot be placed in space"
    orientation = orientation_problem(instance.image_orientation)  # type: ignore[arg-type]
    if orientation:
        return orientation + "; its slice cannot be placed in space as given"
    if instance.samples_per_pixel != 1:
        return "is a colour image; only greyscale series are stacked"
    if not instance.rows or not instance.columns or instance.rows <= 0 or instance.columns <= 0:
        return f"has no pixels (Rows {instance.rows}, Columns {instance.columns})"
    bits = instance.bits_allocated or 16
    if bits not in (8, 16, 32) or not 0 < (instance.bits_stored or bits) <= bits:
        return (f"has BitsAllocated {instance.bits_allocated} and BitsStored {instance.bits_stored}; "
                "greyscale slices store 8, 16 or 32 bits")
    if min(instance.pixel_spacing or (0.0,)) <= 0:
        return f"has a PixelSpacing of {list(instance.pixel_spacing or ())}; spacing must be positive"
    if not (np.isfinite(instance.rescale_slope) and np.isfinite(instance.rescale_intercept)):
        return "has a RescaleSlope or RescaleIntercept that is not a number; its values cannot be trusted"
    if instance.transfer_syntax_uid in UNCOMPRESSED_LITTLE_ENDIAN:
        needed = int(instance.rows) * int(instance.columns) * bits // 8
        try:
            size = os.path.getsize(instance.path)
        except OSError as error:
            return f"cannot be read ({error})"
        if size < needed:
            return (f"holds {size} bytes, fewer than the {needed} its {instance.rows}x{instance.columns} "
                    f"pixels need (truncated, or Rows/Columns are wrong)")
    else:
        # Compressed bytes say nothing certain about the decoded size (a blank slice compresses to almost
        # nothing), so the claim meets the configurable cap before any decoder is asked to honour it.
        decoded = int(instance.rows) * int(instance.columns) * bits // 8
        cap = current_limits().max_decoded_bytes
        if decoded > cap:
            return (f"claims {instance.rows}x{instance.columns} pixels ({decoded} bytes decoded), more than the "
                    f"{cap} bytes SLLB_MAX_DECODED_BYTES allows")
    return None


def _signature(instance: InstanceHeader) -> Tuple[object, ...]:
    return (instance.rows, instance.columns,
            tuple(np.round(instance.image_orientation, 3)),  # type: ignore[arg-type]
            tuple(np.round(instance.pixel_spacing, 4)))  # type: ignore[arg-type]


def split_stackable(instances: Sequence[InstanceHeader]) -> Tuple[List[InstanceHeader], List[DataError]]:
    """Split a series into slices that stack safely and the files left out, each with its reason.

    A slice is left out when it cannot be placed (missing or non-finite
    geometry), cannot be read whole (file shorter than its pixels), repeats
    another file's SOPInstanceUID, or has another size, orientation or pixel
    spacing than most of its series. About a third of Lung-PET-CT-Dx images
    lack PixelSpacing or ImagePositionPatient (datasets notes), so one bad
    file must cost its slice, not the series.
    """
    left_out: List[DataError] = []
    candidates: List[InstanceHeader] = []
    seen: Dict[str, InstanceHeader] = {}
    for instance in instances:
        problem = _unstackable_alone(instance)
        if problem is None and instance.sop_instance_uid in seen:
            problem = f"repeats the SOPInstanceUID of {seen[instance.sop_instance_uid].path.name}"
        if problem:
            left_out.append(DataError(instance.path, problem))
            continue
        seen[instance.sop_instance_uid] = instance
        candidates.append(instance)
    if not candidates:
        return [], left_out
    counts: Dict[Tuple[object, ...], int] = {}
    for instance in candidates:
        counts[_signature(instance)] = counts.get(_signature(instance), 0) + 1
    majority = max(counts, key=lambda key: counts[key])  # ties: the first seen
    kept = []
    for instance in candidates:
        if _signature(instance) == majority:
            kept.append(instance)
        else:
            left_out.append(DataError(instance.path, (
                f"has another size, orientation or pixel spacing ({instance.rows}x{instance.columns}, "
                f"{list(instance.image_orientation or ())}, {list(instance.pixel_spacing or ())}) than the "
                f"other {len(candidates) - 1} slice(s) of series {instance.series_instance_uid}")))
    return kept, left_out


def mixed_series_folders(instances: Sequence[InstanceHeader]) -> List[DataError]:
    """One problem per folder whose files belong to more than one series (naming a file of each)."""
    by_folder: Dict[Path, Dict[str, List[InstanceHeader]]] = {}
    for instance in instances:
        by_folder.setdefault(instance.path.parent, {}).setdefault(instance.series_instance_uid, []).append(instance)
    problems = []
    for folder, series in by_folder.items():
        if len(series) < 2:
            continue
        groups = sorted(series.values(), key=len, reverse=True)
        others = ", ".join(f"{len(group)} file(s) of series {group[0].series_instance_uid} "
                           f"(e.g. {group[0].path.name})" for group in groups[1:])
        problems.append(DataError(folder, f"holds more than one series: {len(groups[0])} file(s) of series "
                                          f"{groups[0][0].series_instance_uid} and {others}; each series is "
                                          "read on its own"))
    return problems


def _stored_dtype(instance: InstanceHeader) -> Optional[np.dtype]:
    if instance.bits_allocated == 16:
        return np.dtype("<i2" if instance.pixel_representation else "<u2")
    if instance.bits_allocated == 8:
        return np.dtype("i1" if instance.pixel_representation else "u1")
    return None


def _raw_pixels(instance: InstanceHeader) -> Optional[np.ndarray]:
    """Stored values read straight from the end of an uncompressed file, or None.

    Uncompressed little-endian files end with the Pixel Data element; checking
    its tag and length before the values makes this exact, and anything else
    (compression, padding, trailing elements) falls back to pydicom.
    """
    dtype = _stored_dtype(instance)
    if instance.transfer_syntax_uid not in UNCOMPRESSED_LITTLE_ENDIAN or dtype is None or not instance.rows:
        return None
    count = int(instance.rows) * int(instance.columns or 0)
    size = count * dtype.itemsize
    explicit = instance.transfer_syntax_uid == "1.2.840.10008.1.2.1"
    header_size = 12 if explicit else 8
    with open(instance.path, "rb") as stream:
        stream.seek(0, os.SEEK_END)
        if stream.tell() < size + header_size:
            return None
        stream.seek(-(size + header_size), os.SEEK_END)
        data = stream.read(size + header_size)
    if data[:4] != PIXEL_DATA_TAG_BYTES:
        return None
    length = struct.unpack("<I", data[8:12] if explicit else data[4:8])[0]
    if length != size or (explicit and data[4:6] not in (b"OW", b"OB")):
        return None
    raw = np.frombuffer(data, dtype=dtype, count=count, offset=header_size).reshape(instance.rows, instance.columns)
    return _only_stored_bits(raw, instance)


def _only_stored_bits(raw: np.ndarray, instance: InstanceHeader) -> np.ndarray:
    """The values of the ``BitsStored`` low bits, as pydicom gives them.

    Bits above BitsStored may hold anything (overlays, garbage): unsigned
    values are masked, signed values are sign-extended from their own top bit,
    so a 12-bit signed -1 stored as 0x0FFF is -1, not 4095.
    """
    allocated = raw.dtype.itemsize * 8
    stored = instance.bits_stored or allocated
    if stored >= allocated:
        return raw
    if instance.pixel_representation:
        shift = allocated - stored
        return (raw << shift) >> shift  # arithmetic shift on a signed dtype extends the sign
    return raw & raw.dtype.type((1 << stored) - 1)


def _require_decoder(instance: InstanceHeader) -> None:
    """Refuse, naming the file and its compression, a file that no installed pydicom plugin can decode.

    pydicom's own message for this lists plugin names; a user needs to know
    which compression the file has and which package would read it.
    """
    syntax = pydicom.uid.UID(instance.transfer_syntax_uid)
    try:
        decoder = pydicom.pixels.get_decoder(syntax)
    except NotImplementedError:
        raise DataError(instance.path, f"is compressed as {syntax.name or syntax}, which pydicom cannot decode")
    if decoder.is_available:
        return
    packages = sorted({text.split(" - requires ", 1)[-1] for text in decoder.missing_dependencies})
    hint = f" (pydicom would decode it with: {'; '.join(packages)})" if packages else ""
    raise DataError(instance.path, f"is compressed as {syntax.name}, and no installed package decodes it{hint}; "
                                   "Resources/requirements.txt lists the decoders the module installs")


def _decoded_pixels(instance: InstanceHeader, beside_workers: bool = False) -> np.ndarray:
    """Stored values of one compressed or unusual file, decoded by pydicom's pixel-data plugins.

    JPEG, JPEG-LS, JPEG 2000 and RLE frames go through
    :func:`pydicom.pixels.pixel_array` on the file: it reads only the image
    pixel attributes and the pixel data (no full data set is built) and
    decodes with the same decoders as ``Dataset.pixel_array`` (GDCM,
    pylibjpeg-openjpeg / -rle, pyjpegls, Pillow, and pylibjpeg-libjpeg if the user installed it; see
    Resources/requirements.txt), the fastest one pinned per syntax (JPEG 2000: imagecodecs' openjpeg on
    several threads, added to pydicom as a plugin by :mod:`.threaded_jpeg2000`), so the values are the
    same. The fragments are checked first: some decoders return a half image from a truncated file without
    complaint. Only deflated files are read as a data set, as that function cannot inflate them.
    """
    try:
        if instance.transfer_syntax_uid == DEFLATED_EXPLICIT_LITTLE_ENDIAN:
            check_deflated_dicom(instance.path)  # bounded inflate before pydicom inflates it whole
            pixels = pydicom.dcmread(str(instance.path)).pixel_array
        else:
            data = instance.path.read_bytes()
            problem = encapsulated_pixel_data_problem(data)
            if problem:
                raise DataError(instance.path, problem)
            _require_decoder(instance)
            pixels = _pixel_array(instance, data, beside_workers)
    except DataError:
        raise
    except Exception as error:  # pydicom and its plugins raise many types for damaged pixel data
        raise DataError(instance.path, f"pixel data cannot be decoded ({type(error).__name__}: {error})") from error
    if pixels.shape != (instance.rows, instance.columns):
        raise DataError(instance.path, f"pixel data is {pixels.shape}, header says {instance.rows}x{instance.columns}")
    return pixels


#: The fastest pydicom decoding plugin per transfer syntax where several are installed, measured by
#: benchmarks/bench_dicom_series.py: CharLS (pyjpegls) decodes JPEG-LS about 2.5x faster than libjpeg,
#: pylibjpeg-rle RLE about 5x faster than pydicom's own. JPEG 2000 goes to imagecodecs (:mod:`.threaded_jpeg2000`):
#: the same openjpeg as pylibjpeg-openjpeg, one frame as fast on one core, but it releases the GIL, so threads of
#: this process decode a series on every core. Left to pydicom's order when not installed.
_FASTEST_PLUGINS = {
    "1.2.840.10008.1.2.4.80": "pyjpegls",
    "1.2.840.10008.1.2.4.81": "pyjpegls",
    "1.2.840.10008.1.2.5": "pylibjpeg",
    "1.2.840.10008.1.2.4.90": threaded_jpeg2000.PLUGIN,
    "1.2.840.10008.1.2.4.91": threaded_jpeg2000.PLUGIN,
}
#: JPEG 2000 where the threaded plugin cannot be added (no imagecodecs): on its own, pydicom's order, whose first
#: is GDCM (python-gdcm: openjpeg's threads inside each frame, about 0.75x the time of pylibjpeg-openjpeg, whose
#: build has no threads and holds the GIL); beside worker processes, which already give every core a decoder,
#: pylibjpeg-openjpeg, rather than GDCM, whose threads would only take turns with the other processes'.
_JPEG2000_WITHOUT_THREADED_PLUGIN = {False: "", True: "pylibjpeg"}


def _fastest_plugin(transfer_syntax_uid: str) -> str:
    """The plugin to decode this syntax with on one thread, or "" for pydicom's own choice."""
    return _plugin(transfer_syntax_uid, False)


@functools.lru_cache(maxsize=None)
def _plugin(transfer_syntax_uid: str, beside_workers: bool) -> str:
    """The plugin to decode this syntax with (``beside_workers``: while worker processes decode too), or "" for
    pydicom's own choice."""
    preferred = _FASTEST_PLUGINS.get(transfer_syntax_uid)
    if preferred == threaded_jpeg2000.PLUGIN and not threaded_jpeg2000.add_to_pydicom():
        preferred = _JPEG2000_WITHOUT_THREADED_PLUGIN[beside_workers]
    if not preferred:
        return ""
    try:
        available = pydicom.pixels.get_decoder(pydicom.uid.UID(transfer_syntax_uid)).available_plugins
    except NotImplementedError:
        return ""
    return preferred if preferred in available else ""


def _decodes_on_threads(transfer_syntax_uid: str) -> bool:
    """Whether this syntax's decoder releases the GIL, so that threads decode its series (worker processes would
    only add their start-up)."""
    return _plugin(transfer_syntax_uid, False) == threaded_jpeg2000.PLUGIN


def _pixel_array(instance: InstanceHeader, data: bytes, beside_workers: bool) -> np.ndarray:
    """pydicom's ``pixel_array`` of a compressed file's bytes, with the plugin :func:`_plugin` pins.

    The threaded JPEG 2000 plugin is told how many threads to use: one
    beside other decoders (threads or worker processes decoding the rest of
    the series), else :func:`frame_decode_threads`. A frame it refuses is
    decoded again in pydicom's own plugin order (GDCM first, whatever the
    threads), so no file that another installed decoder reads is lost to it.
    """
    plugin = _plugin(instance.transfer_syntax_uid, beside_workers)
    if plugin != threaded_jpeg2000.PLUGIN:
        return pydicom.pixels.pixel_array(io.BytesIO(data), decoding_plugin=plugin)
    threads = 1 if beside_workers else frame_decode_threads()
    try:
        return pydicom.pixels.pixel_array(io.BytesIO(data), decoding_plugin=plugin,
                                          **{threaded_jpeg2000.THREADS_OPTION: threads})
    except Exception as error:  # noqa: BLE001 - any refusal: the other decoders get their turn
        logger.info("%s: imagecodecs refused the JPEG 2000 frame (%s: %s); decoding it with pydicom's own plugins",
                    instance.path, type(error).__name__, error)
        return pydicom.pixels.pixel_array(io.BytesIO(data))


def _stored_pixels(instance: InstanceHeader, beside_workers: bool = False) -> np.ndarray:
    try:
        pixels = _raw_pixels(instance)
    except OSError as error:
        raise DataError(instance.path, f"cannot be read ({error})") from error
    return pixels if pixels is not None else _decoded_pixels(instance, beside_workers)


# ---------------------------------------------------------------------- decoding with worker processes
#: Compressed series of at least this many slices are decoded with the help of worker processes.
PARALLEL_DECODE_MIN_SLICES = 32
#: Slices a worker decodes per task: few, so that this thread and the workers meet close to each other.
DECODE_CHUNK_SLICES = 4
#: At most this many worker processes help decode one series.
MAX_DECODE_WORKERS = 3
#: How long the end of a read waits for a worker to finish the chunk in hand before killing it (see
#: ``_SharedDecode._stop_pool``): far longer than a chunk of any real series takes.
WORKER_GRACE_SECONDS = 60.0


def decode_workers(slices: int) -> int:
    """How many worker processes help decode a compressed series of ``slices`` slices.

    ``SLLB_DECODE_WORKERS`` sets it (0: decode on this thread only); by
    default one fewer than the machine's cores, at most
    :data:`MAX_DECODE_WORKERS`, for series of at least
    :data:`PARALLEL_DECODE_MIN_SLICES` slices. A worker process never starts
    workers of its own (QA already runs one case per core).
    """
    if slices < PARALLEL_DECODE_MIN_SLICES or in_worker_process():
        return 0
    configured = os.environ.get("SLLB_DECODE_WORKERS", "").strip()
    if configured:
        try:
            return max(0, int(configured))
        except ValueError:
            logger.warning("SLLB_DECODE_WORKERS=%r is not a whole number; decoding on one thread", configured)
            return 0
    return max(0, min(MAX_DECODE_WORKERS, (os.cpu_count() or 1) - 1))


def frame_decode_threads() -> int:
    """Threads that decode a series whose decoder releases the GIL (JPEG 2000 through imagecodecs), or one such
    frame read alone.

    The cores worker processes would take, plus this thread's: one more
    than :func:`decode_workers` gives a long series, so
    ``SLLB_DECODE_WORKERS=0`` and QA worker processes (one case per core)
    decode on one thread.
    """
    return 1 + decode_workers(PARALLEL_DECODE_MIN_SLICES)


def _decoded_slices(kept: Sequence[InstanceHeader]) -> Iterator[Tuple[int, np.ndarray]]:
    """(index into ``kept``, stored values) of every slice, each once, in whatever order they are decoded.

    Uncompressed slices are read on this thread. JPEG 2000 slices, where
    imagecodecs decodes them with the GIL released, are decoded by threads
    (:func:`_decoded_on_threads`). Other compressed ones need a decoder that
    holds the GIL (pyjpegls, pylibjpeg-rle, pylibjpeg-openjpeg and GDCM all
    do, measured), so threads gain nothing; worker processes do (see
    :class:`_SharedDecode`).
    """
    compressed = all(instance.transfer_syntax_uid not in UNCOMPRESSED_LITTLE_ENDIAN for instance in kept)
    if compressed and all(_decodes_on_threads(instance.transfer_syntax_uid) for instance in kept):
        yield from _decoded_on_threads(kept, frame_decode_threads())
        return
    workers = decode_workers(len(kept)) if compressed else 0
    if workers:
        yield from _SharedDecode(kept, workers).slices()
        return
    for index, instance in enumerate(kept):
        yield index, _stored_pixels(instance)


def _decoded_on_threads(kept: Sequence[InstanceHeader], threads: int) -> Iterator[Tuple[int, np.ndarray]]:
    """(index into ``kept``, stored values) of every slice in order, decoded by ``threads`` threads side by side.

    Each thread decodes whole files, one core each: while one is inside the
    codec (which releases the GIL) another reads and parses its next file in
    Python, which one frame decoded on several threads at once cannot
    overlap (measured on two cores: 0.83-0.86 of SimpleITK's time, against
    0.95 for one frame at a time on two codec threads;
    ``benchmarks/bench_dicom_series.py``). At most two files per thread are
    in hand, so memory stays at the volume plus a few frames; slices are
    taken in order, so an error names the first damaged file in slice order,
    as one thread does. When the read ends (an error, a cancel, or the
    last slice) the files not started are dropped and the threads finish the
    file in hand before this returns.
    """
    if threads <= 1:
        for index, instance in enumerate(kept):
            yield index, _stored_pixels(instance)
        return
    from concurrent.futures import ThreadPoolExecutor  # only a series decoded on threads needs it
    from collections import deque

    in_hand: Any = deque()
    with ThreadPoolExecutor(threads, thread_name_prefix=DECODE_THREAD_PREFIX) as pool:
        try:
            for index, instance in enumerate(kept):
                in_hand.append((index, pool.submit(_stored_pixels, instance, True)))
                if len(in_hand) >= 2 * threads:
                    done, result = in_hand.popleft()
                    yield done, result.result()
            while in_hand:
                done, result = in_hand.popleft()
                yield done, result.result()
        finally:
            for _, result in in_hand:
                result.cancel()


#: The names of the threads :func:`_decoded_on_threads` starts begin with this.
DECODE_THREAD_PREFIX = "sllb-decode"


#: In a decoding worker: one flag per chunk of the series (set by the calling thread when it takes the chunk
#: itself), and the calling process's caps (set in code or in its environment).
_worker_taken: Any = None
_worker_limits: Any = None


def _start_decode_worker(taken: Any, limits: Any) -> None:
    """Worker side, once per process."""
    global _worker_taken, _worker_limits
    _worker_taken, _worker_limits = taken, limits


def _decode_in_worker(number: int, instances: Sequence[InstanceHeader]) -> Optional[List[np.ndarray]]:
    """Worker side: the stored values of chunk ``number``; None if the calling thread took the chunk meanwhile or any
    slice fails (that thread then decodes the chunk itself and raises the error naming the file, in slice order)."""
    if _worker_taken is not None and _worker_taken[number]:
        return None
    try:
        with use_limits(_worker_limits or current_limits()):
            return [_stored_pixels(instance, beside_workers=True) for instance in instances]
    except DataError:
        return None


class _SharedDecode:
    """Decode a series on this thread from its first slice and in worker processes from its last.

    The series is cut into chunks of :data:`DECODE_CHUNK_SLICES`; every chunk
    but the first is queued for the workers, last chunk first. This thread
    takes the chunks in order and never waits for a worker: a chunk the
    workers finished is used; any other is flagged as taken (a worker skips a
    flagged chunk) and decoded here, even one a worker is decoding right now
    (its result is dropped). So until the workers are up (a spawned
    interpreter takes about a second to import pydicom), or if one dies or
    never starts, everything is decoded here as before; errors are raised
    here, in slice order, with the same messages. Finished chunks are taken
    after every slice decoded here, so frames do not pile up in memory, and
    the workers end with the read (also one that fails or is cancelled): they
    finish the chunk in hand and exit, and one stuck past a grace period is
    killed, so none outlives the load or can hold up the application's exit.

    The workers are a :class:`concurrent.futures.ProcessPoolExecutor`, not a
    :class:`multiprocessing.pool.Pool`: a worker that dies while it holds the
    task queue's lock (killed between two tasks) makes ``Pool.terminate()``
    wait for that lock forever, while the executor notices the death and
    kills the others itself (it happened in CI, one run in several).
    """

    def __init__(self, kept: Sequence[InstanceHeader], workers: int) -> None:
        self.kept = kept
        self.workers = workers
        self.chunks = [range(start, min(start + DECODE_CHUNK_SLICES, len(kept)))
                       for start in range(0, len(kept), DECODE_CHUNK_SLICES)]
        #: chunk number -> its future in the executor, for the chunks not yet taken
        self.queued: Dict[int, Any] = {}
        #: chunk numbers whose slices were given out
        self.done: set = set()
        #: how many slices the workers decoded (and were used)
        self.worker_slices = 0
        self.pool: Any = None
        #: the worker processes, kept to be killed (the executor forgets them when it shuts down)
        self.processes: List[Any] = []
        self.taken: Any = None

    def slices(self) -> Iterator[Tuple[int, np.ndarray]]:
        self.pool = self._start_pool()
        try:
            for number, chunk in enumerate(self.chunks):
                if number in self.done:
                    continue
                if self.taken is not None:
                    self.taken[number] = 1
                self.queued.pop(number, None)
                for index in chunk:
                    yield index, _stored_pixels(self.kept[index], beside_workers=True)
                    yield from self._finished()
                self.done.add(number)
        finally:
            if self.pool is not None:
                self._stop_pool()

    def _start_pool(self) -> Any:
        from concurrent.futures import ProcessPoolExecutor  # only a compressed series read in parallel needs it

        try:
            context = spawn_context()
            self.taken = context.RawArray("b", len(self.chunks))
            pool = ProcessPoolExecutor(self.workers, mp_context=context, initializer=_start_decode_worker,
                                       initargs=(self.taken, current_limits()))
            for number in range(len(self.chunks) - 1, 0, -1):
                chunk = self.chunks[number]
                self.queued[number] = pool.submit(_decode_in_worker, number, [self.kept[i] for i in chunk])
        except (OSError, RuntimeError, ValueError) as error:  # no process could be started: decode here
            logger.info("decoding on one thread: worker processes could not start (%s)", error)
            self.taken, self.queued = None, {}
            return None
        # The executor starts its processes as tasks are submitted; it has no public list of them before
        # Python 3.14's kill_workers(), and drops its own at shutdown.
        self.processes = list((getattr(pool, "_processes", None) or {}).values())
        return pool

    def _stop_pool(self) -> None:
        """Let the workers end after the chunk in hand; kill only one still decoding after :data:`WORKER_GRACE_SECONDS`.

        A worker is never killed while it may be sending a result: one killed
        halfway through writing a chunk's frames to the executor's result pipe
        leaves half a message there, and the executor's thread then waits for
        the rest forever, and with it the end of this read (a benchmark run
        hung so: the worker was killed as this thread finished the chunk the
        worker was sending). Every chunk is flagged as taken, so a worker skips
        whatever is still queued; the one in hand is mostly the chunk this
        thread just decoded too, which the worker had started earlier. A
        worker still running after the grace period is stuck decoding, not
        sending, so killing it is safe; the executor sees the death and ends.
        """
        import threading  # as the executor: only a compressed series read in parallel needs these

        if self.taken is not None:
            self.taken[:] = [1] * len(self.taken)
        stopping = threading.Thread(target=self.pool.shutdown, kwargs={"wait": True, "cancel_futures": True},
                                    name="decode workers ending", daemon=True)
        stopping.start()
        stopping.join(WORKER_GRACE_SECONDS)
        if stopping.is_alive():
            for process in self.processes:
                if still_running(process):
                    first = self.kept[0]
                    logger.warning("a decoding worker of series %s in %s was still busy %.0f s after the series was "
                                   "read; killing it", first.series_instance_uid, first.path.parent,
                                   WORKER_GRACE_SECONDS)
                    process.kill()
            stopping.join()  # the executor sees the death, stops and reaps its workers

    def _finished(self) -> Iterator[Tuple[int, np.ndarray]]:
        """The slices of every chunk the workers have finished since the last look."""
        for number in [number for number, result in self.queued.items() if result.done()]:
            result = self.queued.pop(number)
            try:
                frames = result.result(0)
            except Exception as error:  # noqa: BLE001 - a failed worker task or a dead worker: decoded here
                logger.info("a decoding worker failed (%s); decoding its slices here", error)
                frames = None
            if frames is None:
                continue
            self.done.add(number)
            self.worker_slices += len(frames)
            yield from zip(self.chunks[number], frames)


#: Integer rescale parameters above these are treated as real numbers (the int64 arithmetic stays exact).
_LARGEST_INTEGER_SLOPE = 2 ** 16
_LARGEST_INTEGER_INTERCEPT = 2 ** 31


def _integer_rescale(instance: InstanceHeader) -> bool:
    slope, intercept = instance.rescale_slope, instance.rescale_intercept
    return (slope == int(slope) and intercept == int(intercept) and abs(slope) <= _LARGEST_INTEGER_SLOPE
            and abs(intercept) <= _LARGEST_INTEGER_INTERCEPT)


def _output_dtype(instances: Sequence[InstanceHeader]) -> np.dtype:
    """int16 when every rescale is integral (values then decide, slice by slice), float32 otherwise.

    The header range of BitsStored is not used: a 16-bit signed GE CT with
    intercept -1024 could in theory reach -33792, but its real values fit
    int16, and storing it as float32 would double its memory.
    :func:`_fill_slice` widens the volume to float32 only when a real value
    does not fit.
    """
    return np.dtype(np.int16) if all(_integer_rescale(instance) for instance in instances) else np.dtype(np.float32)


def _unique_by_position(ordered: Sequence[InstanceHeader]) -> Tuple[List[InstanceHeader], List[InstanceHeader]]:
    """Split slices sorted along the normal into kept ones and later duplicates of a position."""
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
    return kept, duplicates


def _max_grid_slices(count: int) -> int:
    return count + max(MIN_EMPTY_SLICES_ALLOWED, MAX_EMPTY_SLICE_FRACTION * count)


def _ordered_unique(instances: Sequence[InstanceHeader]) -> Tuple[List[InstanceHeader], List[InstanceHeader]]:
    order = sort_slices([instance.plane for instance in instances])  # type: ignore[misc]
    return _unique_by_position([instances[index] for index in order])


def split_regular(instances: Sequence[InstanceHeader]) -> List[List[InstanceHeader]]:
    """Split a stackable series into consecutive parts that each lie on one regular grid.

    :func:`read_series` refuses a series whose slices no single grid holds
    (variable spacing); each part returned here reads as its own exact volume.
    Duplicates of a position stay with their part (read_series reports them).
    """
    if not instances:
        return []
    _check_stackable(instances)
    kept, duplicates = _ordered_unique(instances)
    runs = regular_runs([instance.plane for instance in kept],  # type: ignore[misc]
                        max_slices=_max_grid_slices(len(kept)))
    parts = [[kept[n] for n in run] for run in runs]
    for duplicate in duplicates:
        for part in parts:
            if any(member.image_position == duplicate.image_position for member in part):
                part.append(duplicate)
                break
    return parts


def _grid_of(kept: Sequence[InstanceHeader]) -> Tuple[np.ndarray, List[int], SliceStackReport]:
    try:
        grid = slice_grid([instance.plane for instance in kept], kept[0].slice_thickness,  # type: ignore[misc]
                          max_slices=_max_grid_slices(len(kept)))
    except IrregularSlices as error:
        parts = len(regular_runs([instance.plane for instance in kept],  # type: ignore[misc]
                                 max_slices=_max_grid_slices(len(kept))))
        raise DataError(kept[error.plane_index].path, (
            f"{error}; series {kept[0].series_instance_uid} is not read as one volume "
            f"(it splits into {parts} regular part(s): split_regular)")) from error
    return grid.ijk_to_ras, grid.slice_indices, grid.report


def read_series(instances: Sequence[InstanceHeader], progress: Optional[ProgressCallback] = None) -> DicomVolume:
    """Stack a single-frame series into a volume with real-world values.

    Slices are ordered along the normal; instances at the same position are
    reported as duplicates (the first is kept). Every slice is put on a
    regular grid at its own position (:func:`~..geometry.slice_grid`): a
    missing slice leaves an empty grid position (filled with the volume's
    lowest value and listed in :attr:`DicomVolume.empty_slices` and the stack
    report), so nothing past a gap moves. RescaleSlope and RescaleIntercept
    are applied per slice; the result is int16 when every value fits,
    float32 otherwise. The volume is allocated once, so peak memory stays
    close to the voxel bytes.

    :raises DataError: naming the file, for anything that prevents stacking,
        including a tilted (sheared) stack and spacing that no regular grid
        holds (see :func:`split_regular`).
    """
    if not instances:
        raise ValueError("no instances to read")
    _check_stackable(instances)
    kept, duplicates = _ordered_unique(instances)
    ijk_to_ras, slice_indices, stack_report = _grid_of(kept)
    stack_report.duplicate_positions = [_grid_index_of(duplicate, kept, slice_indices) for duplicate in duplicates]
    dtype = _output_dtype(kept)
    depth = stack_report.number_of_slices
    volume_bytes = depth * int(kept[0].rows) * int(kept[0].columns) * np.dtype(dtype).itemsize
    if volume_bytes > current_limits().max_decoded_bytes:
        raise DataError(kept[0].path.parent, f"a volume of {depth}x{kept[0].rows}x{kept[0].columns} voxels "
                                             f"({volume_bytes} bytes) is more than the "
                                             f"{current_limits().max_decoded_bytes} bytes SLLB_MAX_DECODED_BYTES allows")
    try:
        voxels = np.empty((depth, int(kept[0].rows), int(kept[0].columns)), dtype=dtype)  # type: ignore[arg-type]
    except MemoryError as error:
        raise DataError(kept[0].path.parent, f"a volume of {depth}x{kept[0].rows}x{kept[0].columns} voxels "
                                             "does not fit in memory") from error
    grid_instances: List[Optional[InstanceHeader]] = [None] * depth
    # Each slice is decoded, rescaled and written into the volume as soon as it is decoded: never a list of frames.
    with contextlib.closing(_decoded_slices(kept)) as decoded:  # a cancel or an error stops the workers at once
        for count, (index, stored) in enumerate(decoded):
            if count % 16 == 0:
                report(progress, f"Reading slice {count + 1}/{len(kept)}", count / len(kept))
            k = slice_indices[index]
            grid_instances[k] = kept[index]
            voxels = _fill_slice(voxels, k, kept[index], stored)
    empty_value = 0.0
    if stack_report.empty_slices:
        # The lowest real value (air on CT): an empty position reads as "nothing here", not as tissue.
        empty_value = float(min(voxels[k].min() for k in slice_indices))
        step = ijk_to_ras[:3, 2]
        for k in stack_report.empty_slices:
            voxels[k] = empty_value
            position = kept[0].image_position + (LPS_TO_RAS[:3, :3] @ step) * k  # type: ignore[operator]
            grid_instances[k] = MissingSlice.at(k, position, kept[0])
    return DicomVolume(
        voxels=voxels,
        ijk_to_ras=ijk_to_ras,
        instances=grid_instances,  # type: ignore[arg-type]
        stack_report=stack_report,
        duplicates=duplicates,
        window=next((instance.window for instance in kept if instance.window), None),
        empty_value=empty_value,
    )


def _grid_index_of(duplicate: InstanceHeader, kept: Sequence[InstanceHeader], slice_indices: Sequence[int]) -> int:
    """Grid index k of the kept slice at a duplicate's position."""
    normal = kept[0].plane.normal  # type: ignore[union-attr]
    distances = np.array([np.dot(instance.image_position, normal) for instance in kept])  # type: ignore[arg-type]
    nearest = int(np.argmin(np.abs(distances - np.dot(duplicate.image_position, normal))))  # type: ignore[arg-type]
    return int(slice_indices[nearest])


def _rescaled(stored: np.ndarray, instance: InstanceHeader, integer: bool) -> np.ndarray:
    """``stored * RescaleSlope + RescaleIntercept``: exact int64, or float64 as pydicom computes it."""
    if integer:
        if instance.rescale_slope == 1.0 and stored.dtype.itemsize <= 2 and abs(instance.rescale_intercept) < 2 ** 30:
            return stored.astype(np.int32) + np.int32(instance.rescale_intercept)  # the common CT case, half the bytes
        values = stored.astype(np.int64)
        if instance.rescale_slope != 1.0:
            values *= int(instance.rescale_slope)
        if instance.rescale_intercept != 0.0:
            values += int(instance.rescale_intercept)
        return values
    return stored.astype(np.float64) * instance.rescale_slope + instance.rescale_intercept


def _fill_slice(voxels: np.ndarray, k: int, instance: InstanceHeader, stored: np.ndarray) -> np.ndarray:
    """Write one file's rescaled ``stored`` values into slice k; returns the volume (widened to float32 if needed).

    Values equal pydicom's ``apply_rescale(pixel_array)``: exactly in int16,
    or that float64 result rounded once to float32.
    """
    if voxels.dtype == np.int16:
        if instance.rescale_slope == 1.0 and instance.rescale_intercept == 0.0 and \
                (stored.dtype.itemsize == 1 or stored.dtype == np.int16):
            voxels[k] = stored
            return voxels
        values = _rescaled(stored, instance, True)
        if values.size == 0 or (int(values.min()) >= -32768 and int(values.max()) <= 32767):
            voxels[k] = values
            return voxels
        # A real value does not fit int16: widen once (int16 -> float32 is exact).
        voxels = voxels.astype(np.float32)
    voxels[k] = _rescaled(stored, instance, _integer_rescale(instance)).astype(np.float32)
    return voxels
