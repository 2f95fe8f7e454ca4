"""Edited boxes back out: per-slice ROI nodes -> pixel boxes -> VOC XML and DICOM SR (TID 1500).

The boxes are read from the scene (the reviewer may have moved, resized or
deleted them); everything else comes from what was recorded when the case
was read (``CaseData.provenance``), so saving never scans the source folders.
"""
from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np

from ...formats.atomic import atomic_path
from ...case_data import LoadedCase
from ...errors import DataError
from ...formats.dicom_series import InstanceHeader
from ...formats.voc_xml import VocObject, annotation_for_objects, iter_xml_files, write_voc
from ...geometry import apply_matrix, box_from_roi_corners
from ...progress import ProgressCallback, report
from ...scene.builder import ATTRIBUTE_PREFIX, SceneBuilder, array_from_vtk_matrix
from . import annotation_folder_name, patient_letter
from .boxes import ROLE_SLICE_BOX, annotation_sop

__all__ = [
    "CorrectedBox",
    "corrected_boxes",
    "vtk_ijk_to_ras",
    "export_voc",
    "export_sr",
    "export_case",
    "save_corrections",
]


@dataclass(frozen=True)
class CorrectedBox:
    """A box read back from a per-slice ROI node, in the image's pixel units."""

    sop_instance_uid: str
    series_instance_uid: str
    slice_index: int
    name: str
    difficult: bool
    truncated: bool
    xmin: int
    ymin: int
    xmax: int
    ymax: int
    rows: int
    columns: int
    node_name: str = ""


# ---------------------------------------------------------------------- from the scene
def _attribute(node: Any, key: str, default: str = "") -> str:
    value = node.GetAttribute(ATTRIBUTE_PREFIX + key)
    return default if value is None else value


def _roi_corners(node: Any) -> np.ndarray:
    """The 8 corners of a ROI node in RAS (its object-to-world matrix and size)."""
    object_to_world = array_from_vtk_matrix(node.GetObjectToWorldMatrix())
    size = np.array(node.GetSize(), dtype=float)
    signs = np.array([[sx, sy, sz] for sx in (-0.5, 0.5) for sy in (-0.5, 0.5) for sz in (-0.5, 0.5)])
    return apply_matrix(object_to_world, signs * size)


def vtk_ijk_to_ras(volume_node: Any) -> np.ndarray:
    """A volume node's IJK-to-RAS matrix as numpy."""
    return SceneBuilder.volume_geometry(volume_node)[1]


def corrected_boxes(scene: Any, case_id: str) -> List[CorrectedBox]:
    """The per-slice box ROIs of a case as they are now in the scene, in pixel units.

    Each ROI is mapped into its volume's voxel grid; the slice is the one
    nearest its centre (so a box dragged to another slice moves to that
    slice's image), and the edges are rounded to whole pixels and clamped.
    ROIs the user deleted are gone from the export; ROIs not made by the
    loader are ignored.
    """
    boxes = []
    nodes = scene.GetNodesByClass("vtkMRMLMarkupsROINode")
    for index in range(nodes.GetNumberOfItems()):
        node = nodes.GetItemAsObject(index)
        if _attribute(node, "role") != ROLE_SLICE_BOX or _attribute(node, "case_id") != case_id:
            continue
        volume = scene.GetNodeByID(_attribute(node, "volume_node_id"))
        if volume is None or not volume.GetAttribute("DICOM.instanceUIDs"):
            continue
        uids = volume.GetAttribute("DICOM.instanceUIDs").split()
        matrix = vtk_ijk_to_ras(volume)
        columns, rows, slices = volume.GetImageData().GetDimensions()
        xmin, ymin, xmax, ymax, k = box_from_roi_corners(matrix, _roi_corners(node))
        k_index = int(min(max(round(k), 0), slices - 1))
        x0, x1 = sorted((int(round(xmin)), int(round(xmax))))
        y0, y1 = sorted((int(round(ymin)), int(round(ymax))))
        boxes.append(CorrectedBox(
            sop_instance_uid=uids[k_index],
            series_instance_uid=_attribute(node, "series_instance_uid"),
            slice_index=k_index,
            name=_attribute(node, "label"),
            difficult=_attribute(node, "difficult", "0") == "1",
            truncated=_attribute(node, "truncated", "0") == "1",
            xmin=min(max(x0, 0), columns - 1), ymin=min(max(y0, 0), rows - 1),
            xmax=min(max(x1, 0), columns - 1), ymax=min(max(y1, 0), rows - 1),
            rows=rows, columns=columns, node_name=node.GetName(),
        ))
    boxes.sort(key=lambda b: (b.series_instance_uid, b.slice_index, b.xmin, b.ymin))
    return boxes


# ---------------------------------------------------------------------- writers
def _safe_name(name: str, folder: Path, what: str) -> str:
    """``name`` if it is a plain file name that stays inside ``folder``.

    :raises DataError: naming the folder, for separators, ``..``, absolute paths or NUL bytes.
    """
    if (not name or name.strip(".") == "" or "/" in name or "\\" in name or "\x00" in name
            or os.path.isabs(name) or (os.altsep is not None and os.altsep in name)):
        raise DataError(folder, f"refusing to write {what} {name!r}: a name taken from the data must not "
                                "leave the output folder")
    return name


def export_voc(boxes: Sequence[CorrectedBox], annotation_root: Path, case_id: str) -> List[Path]:
    """Write boxes as ``<annotation_root>/<A0001>/<SOPInstanceUID>.xml``, one file per image.

    Files are in the collection's own style (see :mod:`...formats.voc_xml`);
    ``<size>`` is the image's Columns x Rows. Existing files of the same name
    are replaced.
    """
    folder_name = _safe_name(annotation_folder_name(case_id), Path(annotation_root), "case folder")
    folder = Path(annotation_root) / folder_name
    by_image: Dict[str, List[CorrectedBox]] = defaultdict(list)
    for box in boxes:
        by_image[box.sop_instance_uid].append(box)
    # Every name comes from the data (SOPInstanceUIDs): check them all before writing any file.
    for sop_uid in by_image:
        _safe_name(f"{sop_uid}.xml", folder, "annotation file")
    written = []
    for sop_uid in sorted(by_image):
        image_boxes = by_image[sop_uid]
        objects = [VocObject(b.name or patient_letter(case_id), b.xmin, b.ymin, b.xmax, b.ymax,
                             difficult=b.difficult, truncated=b.truncated) for b in image_boxes]
        annotation = annotation_for_objects(objects, image_boxes[0].columns, image_boxes[0].rows, 1)
        written.append(write_voc(folder, f"{sop_uid}.xml", annotation))
    return written


def _finding_type(case_id: str) -> Any:
    from pydicom.sr.codedict import codes

    # As IDC's conversion does: the class from the letter, "Neoplasm" otherwise (notes §3, [SR]).
    by_letter = {"A": codes.SCT.Adenocarcinoma, "B": codes.SCT.SmallCellCarcinoma,
                 "E": codes.SCT.LargeCellCarcinoma, "G": codes.SCT.SquamousCellCarcinoma}
    return by_letter.get(patient_letter(case_id), codes.SCT.Neoplasm)


def _measurement_group(box: CorrectedBox, dataset: Any, number: int, case_id: str) -> Any:
    """One planar ROI group: the box as a closed 5-point POLYLINE on its source image."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    corners = np.array([[box.xmin, box.ymin], [box.xmax, box.ymin], [box.xmax, box.ymax],
                        [box.xmin, box.ymax], [box.xmin, box.ymin]], dtype=float)
    region = hd.sr.ImageRegion(
        graphic_type=hd.sr.GraphicTypeValues.POLYLINE,
        graphic_data=corners,
        source_image=hd.sr.SourceImageForRegion(str(dataset.SOPClassUID), box.sop_instance_uid),
    )
    return hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=hd.UID(), identifier=f"Box {number}"),
        referenced_region=region,
        finding_type=_finding_type(case_id),
        finding_sites=[hd.sr.FindingSite(codes.SCT.LungStructure)],
        geometric_purpose=codes.SCT.BoundedBy,
    )


def export_sr(boxes: Sequence[CorrectedBox], source_headers: Mapping[str, InstanceHeader], output_folder: Path,
              case_id: str) -> List[Path]:
    """Write one DICOM Comprehensive 3D SR (TID 1500) per annotated series.

    Modelled on IDC's conversion of this collection (notes, "How [SR] builds
    the SR"): one planar ROI measurement group per box, a closed 5-point
    POLYLINE in the image's pixel coordinates holding the VOC values as they
    are, the source image as SourceImageForRegion, finding type from the
    patient letter, finding site lung, purpose "Bounded by"; series number =
    source series number + 100; description "Tumor bounding box".

    :raises DataError: if a box's source image is not among ``source_headers``.
    """
    import highdicom as hd
    import pydicom
    from pydicom.sr.codedict import codes

    output_folder = Path(output_folder)
    _safe_name(f"{case_id}_series", output_folder, "SR file for case")
    output_folder.mkdir(parents=True, exist_ok=True)
    by_series: Dict[str, List[CorrectedBox]] = defaultdict(list)
    for box in boxes:
        by_series[box.series_instance_uid].append(box)
    written = []
    for series_uid in sorted(by_series):
        series_boxes = sorted(by_series[series_uid], key=lambda b: (b.slice_index, b.xmin, b.ymin))
        evidence = {}
        for box in series_boxes:
            header = source_headers.get(box.sop_instance_uid)
            if header is None:
                raise DataError(output_folder, f"source image {box.sop_instance_uid} of {box.node_name} is unknown")
            if box.sop_instance_uid not in evidence:
                evidence[box.sop_instance_uid] = pydicom.dcmread(str(header.path), stop_before_pixels=True)
        groups = [_measurement_group(box, evidence[box.sop_instance_uid], number, case_id)
                  for number, box in enumerate(series_boxes, start=1)]
        observer = hd.sr.ObserverContext(
            observer_type=codes.DCM.Device,
            observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
                uid=hd.UID(), name="SarcomaLungLiverBrowser"),
        )
        report_content = hd.sr.MeasurementReport(
            observation_context=hd.sr.ObservationContext(observer_device_context=observer),
            procedure_reported=codes.SCT.ImagingProcedure,
            imaging_measurements=groups,
        )
        first = next(iter(evidence.values()))
        series_number = int(first.get("SeriesNumber", 0) or 0) + 100
        sr = hd.sr.Comprehensive3DSR(
            evidence=list(evidence.values()),
            content=report_content,
            series_instance_uid=hd.UID(),
            series_number=series_number,
            sop_instance_uid=hd.UID(),
            instance_number=1,
            manufacturer="SarcomaLungLiverBrowser",
            series_description="Tumor bounding box",
        )
        path = output_folder / f"{case_id}_series{series_number - 100}_boxes_SR.dcm"
        with atomic_path(path) as partial:  # a kill mid-save leaves the previous SR whole
            sr.save_as(str(partial))
        written.append(path)
    return written


# ---------------------------------------------------------------------- corrections of a loaded case
def export_case(loaded: LoadedCase, scene: Any, source_headers: Mapping[str, InstanceHeader],
                voc_root: Optional[Path] = None, sr_folder: Optional[Path] = None) -> Dict[str, List[Path]]:
    """Write the case's (possibly edited) per-slice boxes as VOC XML and/or DICOM SR."""
    boxes = corrected_boxes(scene, loaded.case.case_id)
    written: Dict[str, List[Path]] = {}
    if voc_root is not None:
        written["voc"] = export_voc(boxes, voc_root, loaded.case.case_id)
    if sr_folder is not None:
        written["sr"] = export_sr(boxes, source_headers, sr_folder, loaded.case.case_id)
    return written


def _refuse_sr_name_clash(case_id: str, boxes: Sequence[CorrectedBox], headers: Mapping[str, InstanceHeader],
                          sr_folder: Path) -> None:
    """Refuse before writing if two annotated series would get the same SR file name.

    :func:`export_sr` names each SR after its source SeriesNumber, so a
    second series with the same number would silently replace the first's SR.
    """
    numbers: Dict[str, List[str]] = defaultdict(list)
    for series_uid in sorted({box.series_instance_uid for box in boxes}):
        sop = next(box.sop_instance_uid for box in boxes if box.series_instance_uid == series_uid)
        header = headers.get(sop)
        numbers[str((header.series_number if header is not None else None) or 0)].append(series_uid)
    clashes = {number: uids for number, uids in numbers.items() if len(uids) > 1}
    if clashes:
        number, uids = sorted(clashes.items())[0]
        raise DataError(sr_folder, f"annotated series {', '.join(uids)} of {case_id} share SeriesNumber "
                                   f"{number}; their SR files would have one name; nothing was written")


def _remove_stale_corrections(case_id: str, images: Sequence[str], case_folder: Path, sr_folder: Path,
                              written: Sequence[Path]) -> None:
    """Remove earlier corrections of this case that this save did not rewrite.

    Only files this collection writes are touched: ``<SOPInstanceUID>.xml``
    of the case's own images, and ``<case_id>_series*_boxes_SR.dcm``.
    """
    keep = {path.resolve() for path in written}
    image_uids = set(images)
    stale = [path for path in iter_xml_files(case_folder) if annotation_sop(path) in image_uids]
    if sr_folder.is_dir():
        prefix = f"{case_id}_series"
        stale.extend(path for path in sr_folder.iterdir()
                     if path.is_file() and path.name.startswith(prefix) and path.name.endswith("_boxes_SR.dcm"))
    for path in stale:
        if path.resolve() not in keep:
            path.unlink()


def save_corrections(collection: Any, loaded: LoadedCase, scene: Any, output_folder: Path,
                     source_headers: Mapping[str, InstanceHeader],
                     progress: Optional[ProgressCallback] = None) -> List[Path]:
    """See :meth:`~.LungPetCtDxCollection.save_corrections`; every target is checked before writing."""
    from ...formats.output_paths import safe_output_path

    case = loaded.case
    boxes = corrected_boxes(scene, case.case_id)
    if not boxes:
        raise DataError(collection.root, f"{case.case_id} has no box ROI in the scene to save")
    folder = collection.corrections_folder(output_folder, case)
    sources = collection.source_paths(case)
    voc_root = collection.check_corrections_target(case, folder / "Annotation", sources)
    case_folder = collection.check_corrections_target(
        case, safe_output_path(voc_root, annotation_folder_name(case.case_id)), sources)
    for sop_uid in sorted({box.sop_instance_uid for box in boxes}):
        collection.check_corrections_target(case, safe_output_path(case_folder, f"{sop_uid}.xml", ".xml"), sources)
    sr_folder = collection.check_corrections_target(case, folder / "SR", sources)
    _refuse_sr_name_clash(case.case_id, boxes, source_headers, sr_folder)
    report(progress, f"Writing corrected boxes of {case.case_id}", 0.1)
    written = export_case(loaded, scene, source_headers, voc_root=voc_root, sr_folder=sr_folder)
    voc, sr = written.get("voc", []), written.get("sr", [])
    _remove_stale_corrections(case.case_id, list(source_headers), case_folder, sr_folder, voc + sr)
    report(progress, f"Saved {len(voc)} VOC and {len(sr)} SR file(s) of {case.case_id}", 1.0)
    return voc + sr
