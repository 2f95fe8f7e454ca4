"""A SEG's identity, references and segment labels, read without its frames (and without highdicom)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, List, Optional

import pydicom

from ...errors import DataError

__all__ = ["SegHeader", "read_seg_header", "SEGMENTATION_SOP_CLASS_UID", "LABELMAP_SEGMENTATION_SOP_CLASS_UID",
           "SEG_SOP_CLASS_UIDS"]

SEGMENTATION_SOP_CLASS_UID = "1.2.840.10008.5.1.4.1.1.66.4"
LABELMAP_SEGMENTATION_SOP_CLASS_UID = "1.2.840.10008.5.1.4.1.1.66.7"
SEG_SOP_CLASS_UIDS = (SEGMENTATION_SOP_CLASS_UID, LABELMAP_SEGMENTATION_SOP_CLASS_UID)


@dataclass
class SegHeader:
    """What indexing needs from a SEG file, read without its frames."""

    path: Path
    sop_instance_uid: str
    sop_class_uid: str
    series_instance_uid: str
    study_instance_uid: str
    patient_id: str
    series_description: str
    series_number: Optional[int]
    manufacturer: str
    manufacturer_model_name: str
    content_label: str
    content_creator_name: str
    frame_of_reference_uid: str
    referenced_series_uids: List[str]
    segment_labels: List[str]
    number_of_frames: int


_HEADER_KEYWORDS = [
    "SOPClassUID", "SOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID", "PatientID", "Modality",
    "SeriesDescription", "SeriesNumber", "Manufacturer", "ManufacturerModelName", "ContentLabel",
    "ContentCreatorName", "FrameOfReferenceUID", "ReferencedSeriesSequence", "SegmentSequence",
    "NumberOfFrames",
]


def read_seg_header(path: Path) -> SegHeader:
    """Read a SEG's identity, references and segment labels, not its frames.

    :raises DataError: naming the file, if it is not a readable DICOM SEG.
    """
    path = Path(path)
    try:
        dataset = pydicom.dcmread(str(path), stop_before_pixels=True, specific_tags=_HEADER_KEYWORDS)
        return _seg_header(dataset, path)
    except DataError:
        raise
    except Exception as error:  # pydicom raises many types for damaged files and values
        raise DataError(path, f"not a readable DICOM SEG header ({type(error).__name__}: {error})") from error


def _seg_header(dataset: Any, path: Path) -> SegHeader:
    if str(dataset.get("SOPClassUID", "")) not in SEG_SOP_CLASS_UIDS and dataset.get("Modality") != "SEG":
        raise DataError(path, f"is not a DICOM Segmentation (Modality {dataset.get('Modality', '?')})")
    series_number = dataset.get("SeriesNumber")
    return SegHeader(
        path=path,
        sop_instance_uid=str(dataset.get("SOPInstanceUID", "")),
        sop_class_uid=str(dataset.get("SOPClassUID", "")),
        series_instance_uid=str(dataset.get("SeriesInstanceUID", "")),
        study_instance_uid=str(dataset.get("StudyInstanceUID", "")),
        patient_id=str(dataset.get("PatientID", "")),
        series_description=str(dataset.get("SeriesDescription", "")),
        series_number=int(series_number) if series_number not in (None, "") else None,
        manufacturer=str(dataset.get("Manufacturer", "")),
        manufacturer_model_name=str(dataset.get("ManufacturerModelName", "")),
        content_label=str(dataset.get("ContentLabel", "")),
        content_creator_name=str(dataset.get("ContentCreatorName", "")),
        frame_of_reference_uid=str(dataset.get("FrameOfReferenceUID", "")),
        referenced_series_uids=_referenced_series_uids(dataset),
        segment_labels=[str(item.get("SegmentLabel", "")) for item in dataset.get("SegmentSequence", [])],
        number_of_frames=int(dataset.get("NumberOfFrames", 1) or 1),
    )


def _referenced_series_uids(dataset: Any) -> List[str]:
    uids: List[str] = []
    for item in dataset.get("ReferencedSeriesSequence", []):
        uid = str(item.get("SeriesInstanceUID", ""))
        if uid and uid not in uids:
            uids.append(uid)
    return uids
