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

The package keeps these concerns apart: :mod:`.codes` (coded concepts and
Slicer's terminology text), :mod:`.header` (identity and references, read
without frames), :mod:`.segments` (decoded results and their scene tags),
:mod:`.frames` (per-frame facts and stored values), :mod:`.decode` (placing
frames on a CT grid) and :mod:`.write` (BINARY SEG output). highdicom is
imported only by decoding and writing, so indexing a collection's SEG headers
never pays for it.
"""
from .codes import (
    ANATOMIC_CONTEXT,
    TAG_PREFIX,
    TERMINOLOGY_CONTEXT,
    TISSUE,
    SegCode,
    parse_terminology_entry,
    terminology_entry,
)
from .decode import IN_PLANE_TOLERANCE, SLICE_POSITION_TOLERANCE, decode_seg
from .header import (
    LABELMAP_SEGMENTATION_SOP_CLASS_UID,
    SEG_SOP_CLASS_UIDS,
    SEGMENTATION_SOP_CLASS_UID,
    SegHeader,
    read_seg_header,
)
from .segments import DecodedSegment, DecodedSegmentation, segment_tags
from .write import ExportSegment, write_seg

__all__ = [
    "SegCode",
    "TISSUE",
    "TAG_PREFIX",
    "TERMINOLOGY_CONTEXT",
    "ANATOMIC_CONTEXT",
    "DecodedSegment",
    "DecodedSegmentation",
    "SegHeader",
    "ExportSegment",
    "SEGMENTATION_SOP_CLASS_UID",
    "LABELMAP_SEGMENTATION_SOP_CLASS_UID",
    "SEG_SOP_CLASS_UIDS",
    "SLICE_POSITION_TOLERANCE",
    "IN_PLANE_TOLERANCE",
    "read_seg_header",
    "decode_seg",
    "segment_tags",
    "terminology_entry",
    "parse_terminology_entry",
    "write_seg",
]
