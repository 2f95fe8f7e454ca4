"""What decoding a SEG yields: segments with their voxels on a CT grid, and their scene tags."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

from .codes import TAG_PREFIX, SegCode
from ...findings import Finding

__all__ = ["DecodedSegment", "DecodedSegmentation", "segment_tags"]


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
    frames_on_empty_slices: List[int] = field(default_factory=list)

    def segment(self, number: int) -> DecodedSegment:
        for segment in self.segments:
            if segment.number == number:
                return segment
        raise KeyError(f"{self.path.name} has no segment number {number}")


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
