"""Per-frame facts of a SEG (segment, position, source images) and its stored frame values.

Native little-endian BINARY frames are unpacked with numpy; everything else is
decoded through the highdicom object the caller passes in.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, List, Optional, Tuple

import numpy as np
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from ...errors import DataError

if TYPE_CHECKING:  # pragma: no cover - typing only
    import highdicom as hd

_NATIVE_LITTLE_ENDIAN = (ExplicitVRLittleEndian, ImplicitVRLittleEndian)


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
