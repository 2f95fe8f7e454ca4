"""Segmentation nodes to and from the plain segments the DICOM SEG writer takes.

The one place where a segmentation node's segments become numpy masks for
export; the format code in :mod:`..formats.dicom_seg` never sees a node.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, List, Optional

from ..formats.dicom_seg import TAG_PREFIX, TISSUE, ExportSegment, SegCode, parse_terminology_entry, write_seg
from ..formats.dicom_series import DicomVolume
from .builder import segment_mask

__all__ = ["segments_from_node", "export_segmentation_node"]


def segments_from_node(segmentation_node: Any, reference: DicomVolume) -> List[ExportSegment]:
    """The segments of a (possibly edited) segmentation node, ready for :func:`write_seg`.

    Codes come from the ``DICOM.*`` tags the reader set, else from the
    segment's terminology entry, else "Tissue". Segments are taken in the
    node's order; masks are read on ``reference``'s grid.
    """
    import slicer  # only needed when a scene is involved

    segmentation = segmentation_node.GetSegmentation()
    shape = tuple(reference.voxels.shape)
    exported = []
    for index in range(segmentation.GetNumberOfSegments()):
        segment_id = segmentation.GetNthSegmentID(index)
        segment = segmentation.GetSegment(segment_id)

        def tag(name: str, segment: Any = segment) -> str:
            return _segment_tag(segment, TAG_PREFIX + name)

        from_terminology = parse_terminology_entry(
            _segment_tag(segment, slicer.vtkSegment.GetTerminologyEntryTagName()))

        def code(keyword: str, key: str) -> Optional[SegCode]:
            return SegCode.parse(tag(keyword)) or from_terminology[key]

        exported.append(ExportSegment(
            name=segment.GetName(),
            mask=segment_mask(segmentation_node, segment_id, shape, reference.ijk_to_ras),
            category=code("SegmentedPropertyCategoryCodeSequence", "category") or TISSUE,
            type=code("SegmentedPropertyTypeCodeSequence", "type") or TISSUE,
            type_modifier=code("SegmentedPropertyTypeModifierCodeSequence", "type_modifier"),
            anatomic_region=code("AnatomicRegionSequence", "anatomic_region"),
            color=tuple(float(c) for c in segment.GetColor()),  # type: ignore[arg-type]
            algorithm_type=tag("SegmentAlgorithmType") or "MANUAL",
            algorithm_name=tag("SegmentAlgorithmName"),
            description=tag("SegmentDescription"),
            tracking_id=tag("TrackingID"),
            tracking_uid=tag("TrackingUID"),
        ))
    return exported


def _segment_tag(segment: Any, name: str) -> str:
    """A segment tag's value, '' when absent (``GetTag`` fills an output argument)."""
    import vtk

    value = vtk.mutable("")
    return str(value) if segment.GetTag(name, value) else ""


def export_segmentation_node(segmentation_node: Any, reference: DicomVolume, path: Path, **options: Any) -> Path:
    """Write a segmentation node as a DICOM SEG referencing ``reference``'s instances.

    ``options`` go to :func:`write_seg` (series description, UIDs, manufacturer...).
    """
    return write_seg(path, segments_from_node(segmentation_node, reference), reference, **options)
