"""Bounded work before allocation: sizes claimed by a header are checked against the bytes present.

A header can claim anything: a 171 kB SEG "holds" 5,000,000 frames, a
112-byte ``.nii.gz`` 2^31 voxels, a 2 MB ``.xlsx`` gigabytes of XML, a 6 MB
deflated DICOM 6 GiB. Each reader calls one of these checks *before* any loop
or allocation proportional to the claim, so such a file fails fast with a
:class:`~.errors.DataError` naming it, instead of hanging or exhausting memory.

Two kinds of bound apply:

* consistency: the claim must fit the bytes present (a frame needs its bits;
  deflate cannot expand more than :data:`DEFLATE_MAX_RATIO` times);
* caps: even a consistent claim above a configurable cap is refused (a real
  CT SEG has thousands of frames, not millions). Caps come from
  :class:`Limits`; environment variables (``SLLB_MAX_FRAMES``,
  ``SLLB_MAX_DECODED_BYTES``, ``SLLB_MAX_EXPANSION_RATIO``,
  ``SLLB_MAX_SPREADSHEET_BYTES``) or :func:`use_limits` change them.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import struct
import zipfile
import zlib
from pathlib import Path
from typing import Any, Iterator, Optional, Union

from ..errors import DataError

__all__ = [
    "DEFLATE_MAX_RATIO",
    "Limits",
    "check_deflated_dicom",
    "check_nifti_data_size",
    "check_seg_frames",
    "check_spreadsheet_archive",
    "current_limits",
    "use_limits",
]

PathLike = Union[str, Path]

#: The most a deflate stream can expand (RFC 1951: 258 bytes from about 2 bits); anything claiming more is lying.
DEFLATE_MAX_RATIO = 1032

_GIB = 1 << 30


@dataclasses.dataclass(frozen=True)
class Limits:
    """Caps on what one file may make the extension do.

    :param max_frames: frames of one multi-frame object (SEG).
    :param max_decoded_bytes: bytes one file's pixels or voxels may occupy once decoded.
    :param max_expansion_ratio: decompressed / compressed size of a deflated DICOM or a spreadsheet member.
    :param max_spreadsheet_bytes: total decompressed size of a spreadsheet's members.
    """

    max_frames: int = 200_000
    max_decoded_bytes: int = 8 * _GIB
    max_expansion_ratio: float = 200.0
    max_spreadsheet_bytes: int = 512 * (1 << 20)

    @classmethod
    def from_environment(cls) -> "Limits":
        """The defaults, with any ``SLLB_MAX_*`` environment variables applied."""
        values = {}
        for field in dataclasses.fields(cls):
            text = os.environ.get(f"SLLB_{field.name.upper()}")
            if text:
                try:
                    values[field.name] = type(getattr(cls, field.name))(float(text))
                except ValueError:
                    pass  # a malformed setting keeps the default rather than disabling the check
        return cls(**values)


_override: Optional[Limits] = None


def current_limits() -> Limits:
    """The caps in force: those set by :func:`use_limits`, else the environment's, else the defaults."""
    return _override if _override is not None else Limits.from_environment()


@contextlib.contextmanager
def use_limits(limits: Limits) -> Iterator[Limits]:
    """Apply ``limits`` inside a ``with`` block (e.g. a stricter cap in a batch job)."""
    global _override
    previous, _override = _override, limits
    try:
        yield limits
    finally:
        _override = previous


def _size_text(count: float) -> str:
    for unit in ("bytes", "kB", "MB", "GB", "TB"):
        if count < 1000 or unit == "TB":
            return f"{count:.0f} {unit}" if unit == "bytes" else f"{count:.1f} {unit}"
        count /= 1000
    return f"{count} bytes"


# ---------------------------------------------------------------------------------------------- DICOM SEG
def check_seg_frames(dataset: Any, path: PathLike) -> None:
    """Refuse a multi-frame object whose NumberOfFrames x Rows x Columns cannot be in its pixel data.

    Checked before any per-frame loop: native pixel data must hold every
    frame's bits; encapsulated (compressed) data at least one 8-byte item
    header per frame; the per-frame functional groups one item per frame;
    and the frame count and decoded size must be under the caps.

    :raises DataError: naming the file and the claim that does not fit.
    """
    limits = current_limits()
    try:
        frames = int(dataset.get("NumberOfFrames", 1) or 1)
        rows, columns = int(dataset.get("Rows", 0) or 0), int(dataset.get("Columns", 0) or 0)
        bits = int(dataset.get("BitsAllocated", 1) or 1)
    except (TypeError, ValueError) as error:
        raise DataError(path, f"has unreadable frame dimensions ({error})") from error
    if frames < 1 or rows < 0 or columns < 0:
        raise DataError(path, f"claims {frames} frames of {rows} x {columns} pixels")
    if frames > limits.max_frames:
        raise DataError(path, f"claims {frames:,} frames; more than the cap of {limits.max_frames:,} "
                              "(SLLB_MAX_FRAMES) for one object")
    decoded = frames * rows * columns * max(bits, 8) // 8
    if decoded > limits.max_decoded_bytes:
        raise DataError(path, f"claims {frames:,} frames of {rows} x {columns} pixels ({_size_text(decoded)} "
                              f"decoded), more than the cap of {_size_text(limits.max_decoded_bytes)} "
                              "(SLLB_MAX_DECODED_BYTES)")
    per_frame = dataset.get("PerFrameFunctionalGroupsSequence")
    if per_frame is not None and len(per_frame) != frames:
        raise DataError(path, f"claims {frames:,} frames but describes {len(per_frame):,} in its per-frame "
                              "functional groups")
    element = dataset.get("PixelData")
    if element is None:
        return  # no pixel data: nothing will be decoded, readers report it themselves
    present = len(element)
    encapsulated = _is_encapsulated(dataset)
    needed = frames * 8 if encapsulated else (frames * rows * columns * bits + 7) // 8
    if present < needed:
        kind = "compressed frame items" if encapsulated else "frames"
        raise DataError(path, f"claims {frames:,} frames of {rows} x {columns} pixels, but its pixel data holds "
                              f"{_size_text(present)}: too little for that many {kind} "
                              f"({_size_text(needed)} needed)")


def _is_encapsulated(dataset: Any) -> bool:
    meta = getattr(dataset, "file_meta", None)
    syntax = meta.get("TransferSyntaxUID") if meta is not None else None
    return bool(syntax is not None and getattr(syntax, "is_encapsulated", False))


# ---------------------------------------------------------------------------------------------- deflated DICOM
#: Deflated Explicit VR Little Endian: everything after the file meta group is one deflate stream.
DEFLATED_TRANSFER_SYNTAX = "1.2.840.10008.1.2.1.99"


def check_deflated_dicom(path: PathLike, dataset_offset: Optional[int] = None) -> None:
    """Refuse a deflated DICOM file whose data set would inflate beyond the caps, inflating in bounded chunks.

    pydicom inflates the whole data set in memory before parsing it; a 6 MB
    file can expand to 6 GiB. This streams the deflate data, counting but not
    keeping the output, and stops at the first byte past the cap.

    :param dataset_offset: where the deflated data set starts (after the
        file meta group); read from the file when not given. Files that are
        not deflated are accepted without inflating anything.
    :raises DataError: naming the file, the size reached and the cap.
    """
    path = Path(path)
    if dataset_offset is None:
        dataset_offset = _deflated_dataset_offset(path)
        if dataset_offset is None:
            return
    limits = current_limits()
    compressed = max(path.stat().st_size - dataset_offset, 1)
    cap = min(limits.max_decoded_bytes, int(compressed * limits.max_expansion_ratio))
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    inflated = 0
    with open(path, "rb") as stream:
        stream.seek(dataset_offset)
        while True:
            chunk = stream.read(1 << 16)
            if not chunk:
                break
            data = inflater.decompress(chunk, 1 << 20)
            while True:
                inflated += len(data)
                if inflated > cap:
                    raise DataError(path, f"is a deflated DICOM file whose {_size_text(compressed)} of data inflate "
                                          f"to more than {_size_text(cap)} (cap: {limits.max_expansion_ratio:g} "
                                          "times the compressed size, at most SLLB_MAX_DECODED_BYTES); refused "
                                          "before reading it")
                if not inflater.unconsumed_tail:
                    break
                data = inflater.decompress(inflater.unconsumed_tail, 1 << 20)
            if inflater.eof:
                break


def _deflated_dataset_offset(path: Path) -> Optional[int]:
    """Where the data set starts if ``path`` is a deflated DICOM file, else None.

    Walks the file meta group (always explicit VR little endian) element by
    element; pydicom's own walker is private, and its public reader does not
    say where the group ends.
    """
    try:
        with open(path, "rb") as stream:
            head = stream.read(1 << 16)
    except OSError:
        return None
    if len(head) < 132 or head[128:132] != b"DICM":
        return None
    position, syntax = 132, b""
    while position + 8 <= len(head):
        group, element = struct.unpack_from("<HH", head, position)
        if group != 0x0002:
            break
        vr = head[position + 4:position + 6]
        if vr in _LONG_LENGTH_VRS:
            if position + 12 > len(head):
                return None
            length, value_start = struct.unpack_from("<I", head, position + 8)[0], position + 12
        else:
            length, value_start = struct.unpack_from("<H", head, position + 6)[0], position + 8
        if element == 0x0010:
            syntax = head[value_start:value_start + length]
        position = value_start + length
    if syntax.rstrip(b"\x00 ").decode("ascii", "replace") != DEFLATED_TRANSFER_SYNTAX:
        return None
    return position


_LONG_LENGTH_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}


# ---------------------------------------------------------------------------------------------- spreadsheets
def check_spreadsheet_archive(path: PathLike) -> None:
    """Refuse an ``.xlsx`` whose zip members declare more data than the caps, before openpyxl opens it.

    Python's zip reader stops at each member's declared size, so the declared
    sizes bound what reading can produce; they are checked against the total
    cap and the expansion ratio (a real workbook compresses about 5-20 times).

    :raises DataError: naming the file and the member that is too large.
    """
    path = Path(path)
    limits = current_limits()
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError):
        return  # not a zip: the spreadsheet reader reports it in its own words
    total = 0
    for member in members:
        total += member.file_size
        ratio = member.file_size / max(member.compress_size, 1)
        if member.file_size > 1 << 20 and ratio > limits.max_expansion_ratio:
            raise DataError(path, f"is a zip bomb: member {member.filename!r} expands {ratio:,.0f} times "
                                  f"({_size_text(member.compress_size)} -> {_size_text(member.file_size)}; cap "
                                  f"{limits.max_expansion_ratio:g}, SLLB_MAX_EXPANSION_RATIO)")
        if total > limits.max_spreadsheet_bytes:
            raise DataError(path, f"expands to more than {_size_text(limits.max_spreadsheet_bytes)} "
                                  f"(SLLB_MAX_SPREADSHEET_BYTES) when unpacked; refused before reading it")


# ---------------------------------------------------------------------------------------------- NIfTI
def check_nifti_data_size(path: PathLike, data_offset: int, data_bytes: int) -> None:
    """Refuse a NIfTI file whose dimensions claim more voxel bytes than the file can hold or the cap allows.

    An uncompressed file must hold ``data_offset + data_bytes``; a gzip file
    cannot expand more than :data:`DEFLATE_MAX_RATIO` times its size.

    :raises DataError: naming the file, before any voxel is allocated.
    """
    path = Path(path)
    limits = current_limits()
    size = path.stat().st_size
    if data_bytes > limits.max_decoded_bytes:
        raise DataError(path, f"its dimensions claim {_size_text(data_bytes)} of voxels, more than the cap of "
                              f"{_size_text(limits.max_decoded_bytes)} (SLLB_MAX_DECODED_BYTES)")
    needed = data_offset + data_bytes
    if path.name.lower().endswith(".gz"):
        if needed > size * DEFLATE_MAX_RATIO:
            raise DataError(path, f"its dimensions claim {_size_text(data_bytes)} of voxels, but "
                                  f"{_size_text(size)} of gzip data cannot hold that much (the header is damaged "
                                  "or the file is truncated)")
    elif size < needed:
        raise DataError(path, f"is truncated: {size} bytes on disk, the header needs {needed}")
