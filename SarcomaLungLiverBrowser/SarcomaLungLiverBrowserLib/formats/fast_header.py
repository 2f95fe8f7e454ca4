"""A minimal reader of the few header attributes indexing needs, from raw bytes.

pydicom parses and converts every element, which costs about a millisecond
per file; indexing a 100,000-file collection needs only ~25 attributes, all
in groups 0002-0028. Every transfer syntax but two stores the data set before
Pixel Data the same way: implicit VR little endian, or explicit VR little
endian, which also holds for every encapsulated (compressed) syntax -- JPEG,
JPEG-LS, JPEG 2000, HTJ2K, RLE -- whose compression concerns only the pixel
data after (7FE0,0010). This reader walks the elements of such files
directly and returns the raw values of the wanted tags, stopping past group
0028. Anything it does not fully understand (big-endian or deflated data
sets, registered private syntaxes, unexpected character sets, malformed
lengths) makes it return None, and the caller falls back to pydicom.
"""
from __future__ import annotations

import struct
import sys
from typing import Dict, Optional, Tuple

__all__ = ["read_raw_header", "WANTED_TAGS", "dataset_encoding", "encapsulated_pixel_data_problem"]

#: Tag number -> attribute keyword, for every attribute the index keeps.
WANTED_TAGS: Dict[int, str] = {
    0x00020010: "TransferSyntaxUID",
    0x00080005: "SpecificCharacterSet",
    0x00080016: "SOPClassUID",
    0x00080018: "SOPInstanceUID",
    0x00080020: "StudyDate",
    0x00080060: "Modality",
    0x00081030: "StudyDescription",
    0x0008103E: "SeriesDescription",
    0x00100010: "PatientName",
    0x00100020: "PatientID",
    0x00180050: "SliceThickness",
    0x0020000D: "StudyInstanceUID",
    0x0020000E: "SeriesInstanceUID",
    0x00200011: "SeriesNumber",
    0x00200013: "InstanceNumber",
    0x00200032: "ImagePositionPatient",
    0x00200037: "ImageOrientationPatient",
    0x00200052: "FrameOfReferenceUID",
    0x00280002: "SamplesPerPixel",
    0x00280004: "PhotometricInterpretation",
    0x00280008: "NumberOfFrames",
    0x00280010: "Rows",
    0x00280011: "Columns",
    0x00280030: "PixelSpacing",
    0x00280100: "BitsAllocated",
    0x00280101: "BitsStored",
    0x00280103: "PixelRepresentation",
    0x00281050: "WindowCenter",
    0x00281051: "WindowWidth",
    0x00281052: "RescaleIntercept",
    0x00281053: "RescaleSlope",
}
_LAST_WANTED = max(WANTED_TAGS)
_BINARY_US = {"SamplesPerPixel", "Rows", "Columns", "BitsAllocated", "BitsStored", "PixelRepresentation"}
_LONG_LENGTH_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
#: VRs with a 2-byte length; anything else where a VR belongs means the file is damaged (left to pydicom).
_SHORT_LENGTH_VRS = {b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FL", b"FD", b"IS", b"LO", b"LT", b"PN",
                     b"SH", b"SL", b"SS", b"ST", b"TM", b"UI", b"UL", b"US"}
_EXPLICIT_LE = "1.2.840.10008.1.2.1"
_IMPLICIT_LE = "1.2.840.10008.1.2"
#: Syntaxes whose data set is not little endian, or is deflated as a whole: left to pydicom.
_NOT_PLAIN_LITTLE_ENDIAN = {"1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99"}
_PLAIN_CHARACTER_SETS = {"", "ISO_IR 6", "ISO_IR 100", "ISO_IR 192"}
_TAG, _LONG = struct.Struct("<HH"), struct.Struct("<I")
#: An element header: explicit VR (group, element, VR, 2-byte length) and implicit VR (group, element, length).
_EXPLICIT_ELEMENT, _IMPLICIT_ELEMENT = struct.Struct("<HH2sH"), struct.Struct("<HHI")
#: Attributes stored as decimal or integer strings (DS/IS), and the bytes such strings may hold.
_NUMBER_STRINGS = {"SliceThickness", "SeriesNumber", "InstanceNumber", "ImagePositionPatient",
                   "ImageOrientationPatient", "NumberOfFrames", "PixelSpacing", "WindowCenter", "WindowWidth",
                   "RescaleIntercept", "RescaleSlope"}
_NUMBER_BYTES = frozenset(b"0123456789+-.eE \\\0")
_UID_KEYWORDS = {"TransferSyntaxUID", "SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID",
                 "FrameOfReferenceUID"}
_UID_BYTES = frozenset(b"0123456789. \0")
_UNDEFINED = 0xFFFFFFFF
_DONE = -1  # returned by _walk once every wanted tag's group has been passed
_ITEM, _ITEM_END, _SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD


class _Unsupported(Exception):
    """The file uses something this reader leaves to pydicom."""


def _element_header(data: bytes, offset: int, explicit: bool) -> Tuple[int, bytes, int, int]:
    """(tag, VR or b"", value length, offset of the value)."""
    if offset + 8 > len(data):
        raise _Unsupported("truncated element")
    group, element = struct.unpack_from("<HH", data, offset)
    tag = (group << 16) | element
    if group == 0xFFFE or not explicit:
        return tag, b"", struct.unpack_from("<I", data, offset + 4)[0], offset + 8
    vr = data[offset + 4:offset + 6]
    if vr in _LONG_LENGTH_VRS:
        if offset + 12 > len(data):
            raise _Unsupported("truncated element")
        return tag, vr, struct.unpack_from("<I", data, offset + 8)[0], offset + 12
    if vr not in _SHORT_LENGTH_VRS:
        raise _Unsupported("not explicit VR where expected")
    return tag, vr, struct.unpack_from("<H", data, offset + 6)[0], offset + 8


def _skip_undefined(data: bytes, offset: int, explicit: bool) -> int:
    """Offset just past an undefined-length sequence (or item) starting at ``offset``."""
    depth = 1
    while depth:
        tag, _, length, value = _element_header(data, offset, explicit)
        if tag in (_SEQUENCE_END, _ITEM_END):
            depth -= 1
            offset = value
        elif tag == _ITEM:
            if length == _UNDEFINED:
                depth += 1
                offset = value
            else:
                offset = value + length
        elif length == _UNDEFINED:
            depth += 1
            offset = value
        else:
            offset = value + length
        if offset > len(data):
            raise _Unsupported("sequence runs past the data")
    return offset


def _walk(data: bytes, offset: int, explicit: bool, values: Dict[str, bytes], stop_group: Optional[int]) -> int:
    # The element header is decoded inline, with one struct call for tag, VR and short length together: this
    # loop runs ~120 times per file and is most of the time of a first index.
    unpack_element = _EXPLICIT_ELEMENT.unpack_from if explicit else _IMPLICIT_ELEMENT.unpack_from
    unpack_long = _LONG.unpack_from
    short_vrs, long_vrs, wanted = _SHORT_LENGTH_VRS, _LONG_LENGTH_VRS, WANTED_TAGS
    size = len(data)
    while offset < size:
        if offset + 8 > size:
            raise _Unsupported("truncated element")
        if explicit:
            group, element, vr, length = unpack_element(data, offset)
        else:
            group, element, length = unpack_element(data, offset)
        # The group decides first: the next data set may be encoded otherwise than the one being walked.
        if stop_group is not None and group != stop_group:
            return offset
        tag = (group << 16) | element
        if tag > _LAST_WANTED:
            return _DONE
        value = offset + 8
        if explicit:
            if group == 0xFFFE:
                length = unpack_long(data, offset + 4)[0]
            elif vr in long_vrs:
                if offset + 12 > size:
                    raise _Unsupported("truncated element")
                length, value = unpack_long(data, offset + 8)[0], offset + 12
            elif vr not in short_vrs:
                raise _Unsupported("not explicit VR where expected")
        if length == _UNDEFINED:
            offset = _skip_undefined(data, value, explicit)
            continue
        if value + length > size:
            raise _Unsupported("element runs past the data")
        keyword = wanted.get(tag)
        if keyword is not None:
            values[keyword] = data[value:value + length]
        offset = value + length
    return offset


def dataset_encoding(transfer_syntax_uid: str) -> Optional[bool]:
    """How a Part 10 file of this transfer syntax stores its data set, as pydicom reads it.

    :returns: True for explicit VR little endian (the two uncompressed
        explicit syntaxes and every encapsulated one; like pydicom, an
        unknown syntax is taken to be one of these), False for implicit VR
        little endian, None for big-endian or deflated data sets, private
        syntaxes registered with pydicom, and a missing syntax (pydicom then
        guesses from the bytes).
    """
    if transfer_syntax_uid == _IMPLICIT_LE:
        return False
    if transfer_syntax_uid == _EXPLICIT_LE:
        return True
    if not transfer_syntax_uid or transfer_syntax_uid in _NOT_PLAIN_LITTLE_ENDIAN \
            or transfer_syntax_uid in _registered_private_syntaxes():
        return None
    return True


def _registered_private_syntaxes() -> Tuple[str, ...]:
    """Private transfer syntaxes registered with pydicom (``register_transfer_syntax``); usually none."""
    uid_module = sys.modules.get("pydicom.uid")
    return tuple(str(uid) for uid in getattr(uid_module, "PrivateTransferSyntaxes", ()))


def read_raw_header(data: bytes, whole_file: bool) -> Optional[Dict[str, object]]:
    """Wanted attributes of a Part 10 file from its first bytes, or None to let pydicom do it.

    Text values come back as str, the binary ``US`` values as int.

    :param whole_file: ``data`` is the entire file; otherwise it is a prefix,
        trusted only if the walk got past group 0028 inside it.
    """
    try:
        if len(data) < 132 or data[128:132] != b"DICM":
            return None
        raw: Dict[str, bytes] = {}
        offset = _walk(data, 132, True, raw, stop_group=0x0002)
        explicit = dataset_encoding(raw.get("TransferSyntaxUID", b"").rstrip(b"\0 ").decode("ascii"))
        if explicit is None:
            return None
        if _walk(data, offset, explicit, raw, stop_group=None) != _DONE and not whole_file:
            return None
    except (_Unsupported, struct.error, UnicodeDecodeError):
        return None
    character_set = raw.get("SpecificCharacterSet", b"").decode("ascii", "replace").strip("\0 ").split("\\")[0]
    if character_set not in _PLAIN_CHARACTER_SETS:
        return None
    encoding = "utf-8" if character_set == "ISO_IR 192" else "latin-1"
    values: Dict[str, object] = {}
    for keyword, value in raw.items():
        # A damaged length swallows the next elements into a value; such values are left to pydicom.
        if keyword in _NUMBER_STRINGS and not _NUMBER_BYTES.issuperset(value):
            return None
        if keyword in _UID_KEYWORDS and not _UID_BYTES.issuperset(value):
            return None
        if keyword in _BINARY_US:
            if len(value) != 2:
                return None
            values[keyword] = struct.unpack("<H", value)[0]
        else:
            try:
                text = value.decode(encoding)
            except UnicodeDecodeError:
                return None
            # As pydicom shows them: UIDs lose padding at both ends, other text only trailing padding
            # (a leading space of a description or ID is part of it).
            values[keyword] = text.strip("\0 ") if keyword in _UID_KEYWORDS else text.rstrip("\0 ")
    return values


_PIXEL_DATA = 0x7FE00010


def encapsulated_pixel_data_problem(data: bytes) -> Optional[str]:
    """Why the encapsulated (compressed) Pixel Data of a whole Part 10 file is incomplete, or None.

    A file cut short inside its last fragment still decodes with some
    decoders (CharLS returns the rows it got and zeros or garbage below), so
    a truncated JPEG-LS slice would load silently wrong. This walks the
    fragment items after (7FE0,0010) and checks that every item lies inside
    the file and that the sequence delimiter is present. Files this reader
    does not walk (big endian, deflated, damaged headers) get None: the
    decoder is their only judge.
    """
    try:
        if len(data) < 132 or data[128:132] != b"DICM":
            return None
        meta: Dict[str, bytes] = {}
        offset = _walk(data, 132, True, meta, stop_group=0x0002)
        explicit = dataset_encoding(meta.get("TransferSyntaxUID", b"").rstrip(b"\0 ").decode("ascii"))
        if not explicit:
            return None
        offset = _pixel_data_element(data, offset)
    except (_Unsupported, struct.error, UnicodeDecodeError):
        return None
    if offset is None:
        return "has no Pixel Data element"
    tag, _, length, offset = _element_header(data, offset, True)
    if length != _UNDEFINED:
        return None  # native (not encapsulated) pixel data: its size is checked against Rows x Columns elsewhere
    fragments = 0
    while True:
        if offset + 8 > len(data):
            return f"is truncated: its compressed Pixel Data ends after {fragments} fragment(s) without a delimiter"
        group, element = _TAG.unpack_from(data, offset)
        length = _LONG.unpack_from(data, offset + 4)[0]
        tag = (group << 16) | element
        if tag == _SEQUENCE_END:
            return None
        if tag != _ITEM:
            return f"has damaged compressed Pixel Data (({group:04X},{element:04X}) where a fragment item belongs)"
        if offset + 8 + length > len(data):
            return (f"is truncated: fragment {fragments} of its compressed Pixel Data claims {length} bytes, "
                    f"{len(data) - offset - 8} are present")
        offset += 8 + length
        fragments += 1


def _pixel_data_element(data: bytes, offset: int) -> Optional[int]:
    """Offset of the top-level (7FE0,0010) element of an explicit VR little-endian data set, or None."""
    size = len(data)
    while offset + 8 <= size:
        tag, _, length, value = _element_header(data, offset, True)
        if tag == _PIXEL_DATA:
            return offset
        if length == _UNDEFINED:
            offset = _skip_undefined(data, value, True)
        else:
            offset = value + length
    return None
