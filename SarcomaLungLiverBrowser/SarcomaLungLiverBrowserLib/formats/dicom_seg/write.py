"""Write named masks with their codes as a BINARY DICOM SEG with highdicom (imported on use)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, List, Optional, Sequence, Tuple

import numpy as np
import pydicom

from ..atomic import atomic_path
from .codes import TISSUE, SegCode
from ..dicom_series import DicomVolume
from ...errors import DataError

if TYPE_CHECKING:  # pragma: no cover - typing only
    import highdicom as hd

__all__ = ["ExportSegment", "write_seg"]


@dataclass
class ExportSegment:
    """One segment to write: a name, its codes and a bool mask [k, j, i] on the CT grid."""

    name: str
    mask: np.ndarray
    category: SegCode = TISSUE
    type: SegCode = TISSUE
    type_modifier: Optional[SegCode] = None
    anatomic_region: Optional[SegCode] = None
    color: Optional[Tuple[float, float, float]] = None
    algorithm_type: str = "MANUAL"
    algorithm_name: str = ""
    description: str = ""
    tracking_id: str = ""
    tracking_uid: str = ""


def _refuse_voxels_on_empty_slices(path: Path, segments: Sequence[ExportSegment], reference: DicomVolume,
                                   used: Sequence[int]) -> None:
    """A SEG frame must reference its source image; voxels where the series has no file cannot be written."""
    empty = sorted(set(used) & set(reference.empty_slices))
    if not empty:
        return
    names = [segment.name for segment in segments if segment.mask[empty].any()]
    raise DataError(path, (
        f"not written: segment(s) {', '.join(repr(name) for name in names)} have voxels on slice(s) {empty[:10]}, "
        f"where series {reference.series_instance_uid} has no image file; a DICOM SEG frame must reference "
        "its source image (erase those voxels, or add the missing file)"))


def _source_datasets(reference: DicomVolume, indices: Sequence[int]) -> List[pydicom.Dataset]:
    datasets = []
    for k in indices:
        path = reference.instances[k].path  # never a missing slice: refused before
        try:
            dataset = pydicom.dcmread(str(path), stop_before_pixels=True)
        except Exception as error:  # pydicom raises many types for damaged files
            raise DataError(path, f"cannot be read as a source image of the SEG ({error})") from error
        # highdicom 0.28 rejects an empty SpecificCharacterSet (dcmqi's ct-3slice has
        # one; datasets.md §1 item 7): an empty value means the default repertoire.
        if "SpecificCharacterSet" in dataset and not dataset.SpecificCharacterSet:
            del dataset.SpecificCharacterSet
        datasets.append(dataset)
    return datasets


def _segment_description(number: int, segment: ExportSegment) -> hd.seg.SegmentDescription:
    import highdicom as hd
    from pydicom.sr.codedict import codes

    algorithm_type = (segment.algorithm_type or "MANUAL").upper()
    identification = None
    if algorithm_type != "MANUAL":
        identification = hd.AlgorithmIdentificationSequence(
            name=segment.algorithm_name or "unknown",
            family=codes.cid7162.ArtificialIntelligence,
            version="unknown",
        )
    color = None
    if segment.color is not None:
        red, green, blue = (int(round(255 * min(1.0, max(0.0, float(c))))) for c in segment.color)
        color = hd.color.CIELabColor.from_rgb(red, green, blue)
    description = hd.seg.SegmentDescription(
        segment_number=number,
        segment_label=segment.name[:64],
        segmented_property_category=segment.category.to_concept(),
        segmented_property_type=segment.type.to_concept(),
        algorithm_type=algorithm_type,
        algorithm_identification=identification,
        tracking_uid=segment.tracking_uid or None,
        tracking_id=segment.tracking_id or None,
        anatomic_regions=[segment.anatomic_region.to_concept()] if segment.anatomic_region else None,
        display_color=color,
    )
    if segment.type_modifier is not None:
        modifier = pydicom.Dataset()
        modifier.CodeValue = segment.type_modifier.value
        modifier.CodingSchemeDesignator = segment.type_modifier.scheme
        modifier.CodeMeaning = segment.type_modifier.meaning
        description.SegmentedPropertyTypeCodeSequence[0].SegmentedPropertyTypeModifierCodeSequence = [modifier]
    if segment.description:
        description.SegmentDescription = segment.description[:64]
    return description


def write_seg(
    path: Path,
    segments: Sequence[ExportSegment],
    reference: DicomVolume,
    *,
    series_description: str = "Segmentation",
    series_number: int = 300,
    series_instance_uid: Optional[str] = None,
    sop_instance_uid: Optional[str] = None,
    manufacturer: str = "SarcomaLungLiverBrowser",
    manufacturer_model_name: str = "SarcomaLungLiverBrowser",
    software_versions: str = "1",
    content_label: str = "SEGMENTATION",
    content_creator_name: Optional[str] = None,
) -> Path:
    """Write named masks on ``reference``'s grid as a BINARY DICOM SEG.

    The SEG references the CT instances its frames lie on, keeps each
    segment's name, codes, colour and algorithm type, allows overlapping
    segments, and omits empty frames (as dcmqi does). Only the slices that
    hold a voxel of some segment are passed to highdicom, which bounds memory.

    :raises ValueError: for masks that are not on the reference grid or no segments.
    """
    if not segments:
        raise ValueError("no segments to write")
    shape = tuple(reference.voxels.shape)
    for segment in segments:
        if tuple(segment.mask.shape) != shape:
            raise ValueError(f"segment {segment.name!r}: mask shape {segment.mask.shape} is not the "
                             f"reference grid {shape}")
    used = sorted({int(k) for segment in segments for k in np.flatnonzero(segment.mask.any(axis=(1, 2)))})
    if not used:
        used = [0]  # every segment empty: one (omitted) frame still needs a source image
    _refuse_voxels_on_empty_slices(Path(path), segments, reference, used)
    pixels = np.zeros((len(used), shape[1], shape[2], len(segments)), dtype=bool)
    for index, segment in enumerate(segments):
        pixels[..., index] = segment.mask[used]
    descriptions = [_segment_description(number, segment) for number, segment in enumerate(segments, start=1)]
    sources = _source_datasets(reference, used)
    import highdicom as hd

    seg = hd.seg.Segmentation(
        source_images=sources,
        pixel_array=pixels,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=series_instance_uid or hd.UID(),
        series_number=series_number,
        sop_instance_uid=sop_instance_uid or hd.UID(),
        instance_number=1,
        manufacturer=manufacturer,
        manufacturer_model_name=manufacturer_model_name,
        software_versions=software_versions,
        device_serial_number="1",
        content_label=content_label,
        content_creator_name=content_creator_name,
        omit_empty_frames=True,
    )
    seg.SeriesDescription = series_description
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as partial:  # a kill mid-save leaves the previous file (formats/atomic.py)
        seg.save_as(str(partial))
    return path
