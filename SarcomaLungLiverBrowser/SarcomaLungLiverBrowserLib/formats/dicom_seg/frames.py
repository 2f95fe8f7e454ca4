"""Per-frame facts of a SEG (segment, position, source images) and its stored frame values.

A CRLM SEG has 1,300+ frames, each with its own functional groups; building
pydicom datasets for all of them costs seconds (most of decoding a SEG), so
the few attributes needed are read straight from the raw bytes of each
frame's groups (:func:`_read_items`). Anything that walker does not handle
plainly (big endian, undefined-length values other than sequences, values of
an unexpected shape) is read through pydicom instead, as before, so both
readers give the same facts (a test checks them on every real SEG).

Native little-endian frames are sliced out of the pixel data with numpy;
everything else is decoded through highdicom, built only then.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

import numpy as np
from pydicom.dataelem import RawDataElement
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from ...errors import DataError

if TYPE_CHECKING:  # pragma: no cover - typing only
    import highdicom as hd

_NATIVE_LITTLE_ENDIAN = (ExplicitVRLittleEndian, ImplicitVRLittleEndian)

# ---------------------------------------------------------------------- attributes read per frame
_PER_FRAME_GROUPS = 0x52009230
_SHARED_GROUPS = 0x52009229
_DERIVATION_IMAGE = 0x00089124
_SOURCE_IMAGE = 0x00082112
_PLANE_POSITION = 0x00209113
_PLANE_ORIENTATION = 0x00209116
_PIXEL_MEASURES = 0x00289110
_SEGMENT_IDENTIFICATION = 0x0062000A
_REFERENCED_SOP_INSTANCE_UID = 0x00081155
_REFERENCED_FRAME_NUMBER = 0x00081160
_IMAGE_POSITION = 0x00200032
_IMAGE_ORIENTATION = 0x00200037
_PIXEL_SPACING = 0x00280030
_SPACING_BETWEEN_SLICES = 0x00180088
_REFERENCED_SEGMENT_NUMBER = 0x0062000B

#: The functional group sequences a frame's facts come from.
_GROUP_SEQUENCES = (_DERIVATION_IMAGE, _PLANE_POSITION, _PLANE_ORIENTATION, _PIXEL_MEASURES, _SEGMENT_IDENTIFICATION)
#: Sequences inside those groups (known by tag, as implicit VR does not name them).
_SEQUENCE_TAGS = frozenset(_GROUP_SEQUENCES + (_SOURCE_IMAGE,))
#: Leaf values kept; everything else is skipped by its length.
_LEAF_TAGS = frozenset({_REFERENCED_SOP_INSTANCE_UID, _REFERENCED_FRAME_NUMBER, _IMAGE_POSITION, _IMAGE_ORIENTATION,
                        _PIXEL_SPACING, _SPACING_BETWEEN_SLICES, _REFERENCED_SEGMENT_NUMBER})

_ITEM = 0xFFFEE000
_ITEM_END = 0xFFFEE00D
_SEQUENCE_END = 0xFFFEE0DD
_UNDEFINED_LENGTH = 0xFFFFFFFF
#: Explicit VRs with a 4-byte length after two reserved bytes (PS3.5 7.1.2).
_LONG_LENGTH_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT",
                              b"UV"})
_TAG_AND_LENGTH = struct.Struct("<HHL")
#: Functional groups nest three deep; deeper sequences are left to pydicom (no recursion limit to hit here).
_MAX_DEPTH = 8
_TAG_VR_SHORT_LENGTH = struct.Struct("<HH2sH")

#: A parsed item: tag -> raw value bytes (leaves), list of items (sequences) or a pydicom value.
_Node = Dict[int, Any]


class _NotPlain(Exception):
    """Raw bytes the plain walker does not read; pydicom reads the frame groups instead."""


def _read_items(data: bytes, position: int, end: Optional[int], implicit: bool, depth: int = 0
                ) -> Tuple[List[_Node], int]:
    """The items of a sequence value from ``position``: up to ``end``, or to its delimiter when ``end`` is None."""
    if depth > _MAX_DEPTH:
        raise _NotPlain
    items: List[_Node] = []
    limit = len(data) if end is None else end
    while position < limit:
        if position + 8 > limit:
            raise _NotPlain
        group, element, length = _TAG_AND_LENGTH.unpack_from(data, position)
        tag = group << 16 | element
        position += 8
        if tag == _SEQUENCE_END and end is None:
            return items, position
        if tag != _ITEM:
            raise _NotPlain
        if length == _UNDEFINED_LENGTH:
            item, position = _read_elements(data, position, None, implicit, depth)
        else:
            if position + length > limit:
                raise _NotPlain
            item, _ = _read_elements(data, position, position + length, implicit, depth)
            position += length
        items.append(item)
    if end is None:
        raise _NotPlain  # no sequence delimiter before the data ended
    return items, position


def _read_elements(data: bytes, position: int, end: Optional[int], implicit: bool, depth: int
                   ) -> Tuple[_Node, int]:
    """The wanted elements of one item from ``position``: up to ``end``, or to its delimiter when ``end`` is None."""
    elements: _Node = {}
    limit = len(data) if end is None else end
    while position < limit:
        if position + 8 > limit:
            raise _NotPlain
        if implicit:
            group, element, length = _TAG_AND_LENGTH.unpack_from(data, position)
            vr = b""
            position += 8
        else:
            group, element, vr, length = _TAG_VR_SHORT_LENGTH.unpack_from(data, position)
            position += 8
            if vr in _LONG_LENGTH_VRS:
                if position + 4 > limit:
                    raise _NotPlain
                (length,) = struct.unpack_from("<L", data, position)
                position += 4
        tag = group << 16 | element
        if tag == _ITEM_END and end is None:
            return elements, position
        if vr == b"SQ" or (implicit and (tag in _SEQUENCE_TAGS or length == _UNDEFINED_LENGTH)):
            if length == _UNDEFINED_LENGTH:
                value, position = _read_items(data, position, None, implicit, depth + 1)
            else:
                if position + length > limit:
                    raise _NotPlain
                value, _ = _read_items(data, position, position + length, implicit, depth + 1)
                position += length
            elements[tag] = value
            continue
        if length == _UNDEFINED_LENGTH or position + length > limit:
            raise _NotPlain
        if tag in _LEAF_TAGS:
            elements[tag] = data[position : position + length]
        position += length
    if end is None:
        raise _NotPlain  # no item delimiter before the data ended
    return elements, position


def _node_of_dataset(dataset: Any) -> _Node:
    """A pydicom item as a node: sequences as lists of nodes, leaves as pydicom values."""
    node: _Node = {}
    for tag in _SEQUENCE_TAGS | _LEAF_TAGS:
        element = dataset.get(tag)
        if element is None:
            continue
        if element.VR == "SQ":
            node[tag] = [_node_of_dataset(item) for item in element.value]
        else:
            node[tag] = element.value
    return node


def _sequence_items(element: Any) -> List[_Node]:
    """The items of one functional group sequence of a frame, from raw bytes where possible."""
    if isinstance(element, RawDataElement):
        if not element.is_little_endian or element.value is None or element.VR not in (None, "SQ"):
            raise _NotPlain
        try:
            items, _ = _read_items(element.value, 0, len(element.value), bool(element.is_implicit_VR))
        except struct.error:  # bounds are checked before each read; this is a second guard
            raise _NotPlain from None
        return items
    if element.VR != "SQ":
        raise _NotPlain
    return [_node_of_dataset(item) for item in element.value]


# ---------------------------------------------------------------------- leaf values
def _text(value: Any) -> str:
    if isinstance(value, (bytes, bytearray, memoryview)):
        try:
            return bytes(value).decode("ascii").strip(" \x00")
        except UnicodeDecodeError:
            raise _NotPlain from None
    return "" if value is None else str(value)


def _decimals(value: Any, count: int) -> Optional[np.ndarray]:
    """A DS value of ``count`` numbers, None when empty."""
    if value is None:
        return None
    if isinstance(value, (bytes, bytearray, memoryview)):
        text = _text(value)
        if not text:
            return None
        parts: List[Any] = text.split("\\")
    else:
        parts = list(value) if isinstance(value, (list, tuple)) or hasattr(value, "__iter__") else [value]
    if len(parts) != count:
        raise _NotPlain
    try:
        return np.array([float(part) for part in parts], dtype=float)
    except (TypeError, ValueError):
        raise _NotPlain from None


def _segment_number(value: Any) -> Optional[int]:
    if isinstance(value, (bytes, bytearray, memoryview)):
        if len(value) != 2:
            raise _NotPlain
        return int(struct.unpack("<H", bytes(value))[0])
    if value is None:
        return None
    if not isinstance(value, int):
        raise _NotPlain
    return int(value)


def _first(node: Optional[_Node], shared: _Node, tag: int) -> Optional[_Node]:
    """The first item of a group sequence: the frame's own if it has items, else the shared one."""
    for groups in (node, shared):
        if groups:
            items = groups.get(tag)
            if items:
                return items[0]
    return None


# ---------------------------------------------------------------------- per-frame facts
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
    spacing_between_slices: Optional[float] = None  # from this frame's (or the shared) PixelMeasuresSequence


def _frame_info(number: int, node: Optional[_Node], shared: _Node) -> _FrameInfo:
    sources: List[str] = []
    multiframe = False
    for derivation in (node or {}).get(_DERIVATION_IMAGE, []):
        for source in derivation.get(_SOURCE_IMAGE, []):
            uid = _text(source.get(_REFERENCED_SOP_INSTANCE_UID))
            if uid:
                sources.append(uid)
            if _text(source.get(_REFERENCED_FRAME_NUMBER)):
                multiframe = True
    position_item = _first(node, shared, _PLANE_POSITION)
    orientation_item = _first(node, shared, _PLANE_ORIENTATION)
    measures_item = _first(node, shared, _PIXEL_MEASURES)
    segment_item = _first(node, shared, _SEGMENT_IDENTIFICATION)
    position = _decimals(position_item.get(_IMAGE_POSITION), 3) if position_item is not None else None
    orientation = _decimals(orientation_item.get(_IMAGE_ORIENTATION), 6) if orientation_item is not None else None
    spacing_values = _decimals(measures_item.get(_PIXEL_SPACING), 2) if measures_item is not None else None
    between = _decimals(measures_item.get(_SPACING_BETWEEN_SLICES), 1) if measures_item is not None else None
    segment_number = _segment_number(segment_item.get(_REFERENCED_SEGMENT_NUMBER)) if segment_item is not None \
        else None
    return _FrameInfo(
        number, segment_number, position, orientation,
        (float(spacing_values[0]), float(spacing_values[1])) if spacing_values is not None else None,
        sources, multiframe, float(between[0]) if between is not None else None,
    )


def _frame_infos(dataset: Any) -> List[_FrameInfo]:
    """Every frame's facts, from the raw bytes of its functional groups where they are plain."""
    try:
        return _frame_infos_from_raw(dataset)
    except _NotPlain:
        return _frame_infos_by_pydicom(dataset)


def _frame_infos_from_raw(dataset: Any) -> List[_FrameInfo]:
    shared_sequence = dataset.get(_SHARED_GROUPS)
    shared = _node_of_dataset(shared_sequence.value[0]) if shared_sequence is not None and shared_sequence.value \
        else {}
    per_frame = dataset.get("PerFrameFunctionalGroupsSequence") or []
    number_of_frames = int(dataset.get("NumberOfFrames", len(per_frame)) or len(per_frame))
    frames = []
    for index in range(number_of_frames):
        node: Optional[_Node] = None
        if index < len(per_frame):
            node = {}
            item = per_frame[index]
            for tag in _GROUP_SEQUENCES:
                element = item.get_item(tag)
                if element is not None:
                    node[tag] = _sequence_items(element)
        frames.append(_frame_info(index + 1, node, shared))
    return frames


def _frame_infos_by_pydicom(dataset: Any) -> List[_FrameInfo]:
    """The same facts through pydicom's datasets (slow on thousands of frames, but reads any encoding)."""
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
        between = None
        if measures_item is not None and measures_item.get("SpacingBetweenSlices") not in (None, ""):
            between = float(measures_item.SpacingBetweenSlices)
        segment_number = None
        if segment_item is not None and segment_item.get("ReferencedSegmentNumber") is not None:
            segment_number = int(segment_item.ReferencedSegmentNumber)
        frames.append(_FrameInfo(index + 1, segment_number, position, orientation, spacing, sources, multiframe,
                                 between))
    return frames


# ---------------------------------------------------------------------- frame values
#: Stored value types of native pixel data by BitsAllocated (SEG frames are unsigned).
_NATIVE_TYPES = {8: np.dtype(np.uint8), 16: np.dtype("<u2")}


class _FrameReader:
    """Stored values of one frame at a time.

    Native little-endian pixel data is sliced with numpy (BINARY frames follow
    each other bit by bit, so a frame need not start on a byte boundary; only
    that frame's bytes are unpacked); everything else is decoded by
    highdicom, whose Segmentation is built only for such files.
    """

    def __init__(self, dataset: Any, path: Path) -> None:
        self.dataset = dataset
        self.path = path
        self.rows = int(dataset.Rows)
        self.columns = int(dataset.Columns)
        self.bits = int(dataset.get("BitsAllocated", 0) or 0)
        self._segmentation: Optional[hd.seg.Segmentation] = None
        meta = getattr(dataset, "file_meta", None)
        transfer_syntax = meta.get("TransferSyntaxUID") if meta is not None else None
        pixel_data = dataset.get("PixelData")
        self.native = (
            (self.bits == 1 or self.bits in _NATIVE_TYPES)
            and transfer_syntax in _NATIVE_LITTLE_ENDIAN
            and isinstance(pixel_data, (bytes, bytearray))
        )
        self._data = np.frombuffer(pixel_data, dtype=np.uint8) if self.native else None
        if self._data is not None:
            frames = int(dataset.get("NumberOfFrames", 1) or 1)
            needed = (frames * self.rows * self.columns * self.bits + 7) // 8
            if self._data.size < needed:
                raise DataError(path, f"pixel data holds {self._data.size} bytes, {needed} are needed for its "
                                      "frames (the file is truncated)")

    def frame(self, number: int) -> np.ndarray:
        try:
            return self._frame(number)
        except DataError:
            raise
        except Exception as error:  # decoders raise many types for damaged pixel data
            raise DataError(self.path, f"frame {number} cannot be decoded ({type(error).__name__}: {error})") \
                from error

    def _frame(self, number: int) -> np.ndarray:
        if self._data is None:
            return np.asarray(self._highdicom().get_stored_frame(number))
        pixels = self.rows * self.columns
        if self.bits == 1:
            first_bit = (number - 1) * pixels
            start, skip = divmod(first_bit, 8)
            chunk = self._data[start : (first_bit + pixels + 7) // 8]
            bits = np.unpackbits(chunk, bitorder="little")
            return bits[skip : skip + pixels].reshape(self.rows, self.columns)
        dtype = _NATIVE_TYPES[self.bits]
        start = (number - 1) * pixels * dtype.itemsize
        return self._data[start : start + pixels * dtype.itemsize].view(dtype).reshape(self.rows, self.columns)

    def _highdicom(self) -> hd.seg.Segmentation:
        """highdicom's Segmentation of the file, for pixel data numpy cannot slice (compressed, big endian)."""
        if self._segmentation is None:
            import highdicom as hd

            try:
                self._segmentation = hd.seg.Segmentation.from_dataset(self.dataset, copy=False)
            except Exception as error:  # highdicom validates many attributes
                raise DataError(self.path, f"is not a valid DICOM Segmentation ({type(error).__name__}: {error})") \
                    from error
        return self._segmentation
