"""One Lung-PET-CT-Dx case read into plain data: volumes, ROIs, the box table, findings, provenance."""
from __future__ import annotations

from typing import Optional

from ...case_data import CaseData
from ...findings import WARNING
from ...progress import ProgressCallback, report, sub_progress
from . import LungCase
from .boxes import box_rois, box_table, read_case_boxes
from .series import CaseFindings, display_hints, read_case_series, volume_data

__all__ = ["read_case"]


def read_case(collection_key: str, case: LungCase, progress: Optional[ProgressCallback] = None) -> CaseData:
    """Read the case's CT/PET series and boxes; nothing is put in a scene.

    ``provenance`` holds ``source_headers`` (SOPInstanceUID -> header of every
    image found, for the SR export and for cleaning earlier corrections),
    ``boxes`` (every :class:`~.boxes.SliceBox` placed), ``objects`` (every
    ``<object>`` of a matched file), ``lesions`` (per series) and ``tumours``.

    Metrics: ``lesions`` is the number of physical tumours (lesions of
    different series of one frame of reference that overlap in RAS count
    once, :func:`~.boxes.group_tumours`); ``series_lesions`` the number of
    per-series lesion ROIs.
    """
    findings = CaseFindings(case.case_id)
    for problem in case.problems:  # found while discovering: series not on disk, boxes without their image
        findings.add(WARNING, "lung.discovery", problem)
    report(progress, f"Reading {case.case_id} headers", 0.0)
    series = read_case_series(case.case_id, case.image_folders, findings, sub_progress(progress, 0.0, 0.85))
    report(progress, "Reading annotations", 0.85)
    read = read_case_boxes(case.case_id, case.annotation_folders, series, findings, case.root)
    report(progress, "Placing boxes", 0.95)
    rois, lesions, tumours = box_rois(case.case_id, series.series, read.boxes)
    hints = display_hints(list(series.series.values()))
    layers = {hints.background: "background", hints.foreground: "foreground"}
    data = CaseData(
        case=case,
        volumes=[volume_data(collection_key, case.case_id, s, layers.get(s.key, "")) for s in series.series.values()],
        rois=rois,
        findings=list(findings),
        display=hints,
        metrics={
            "series": len(series.series),
            "boxes": sum(1 for box in read.boxes if not box.duplicate),
            "lesions": len(tumours),
            "series_lesions": sum(len(found) for found in lesions.values()),
            "findings": len(findings),
        },
        provenance={"source_headers": series.headers, "boxes": read.boxes, "objects": read.objects,
                    "lesions": lesions, "tumours": tumours},
    )
    table = box_table(case.case_id, series.series, read.boxes)
    if table is not None:
        data.tables.append(table)
    report(progress, f"Read {case.case_id}", 1.0)
    return data
