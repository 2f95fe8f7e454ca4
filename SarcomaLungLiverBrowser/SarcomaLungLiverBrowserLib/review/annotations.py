"""One table of every annotation in a collection: boxes, lesions, segments and contours.

One row per annotation as it is in the scene after loading its case: the case,
the series it is drawn on, its label and class, its size (volume for 3-D
annotations, area for a box on one slice), its RAS bounds and centre, the file
it came from, and each reader's latest verdict on it (plus the adjudicated
one). Cases are loaded one at a time and removed again, as QA does, so the
table measures exactly what a reviewer sees; a case that cannot be loaded is
left out and named in the table's ``attrs["skipped"]``.

The table is a pandas DataFrame; :func:`write_annotation_table` writes it as
CSV and as Parquet (with pyarrow).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import DataError, LoadCancelled
from ..progress import ProgressCallback, report
from .store import default_item_type

__all__ = ["ANNOTATION_COLUMNS", "annotation_rows", "collection_annotation_table", "add_verdict_columns",
           "write_annotation_table"]

logger = logging.getLogger(__name__)

#: The fixed columns; ``verdict <reader>`` columns (one per reader) and ``adjudicated_verdict`` follow them.
ANNOTATION_COLUMNS = ["case_id", "collection", "series", "kind", "annotation", "label", "class", "volume_mm3",
                      "area_mm2", "voxels", "r_min", "r_max", "a_min", "a_max", "s_min", "s_max", "center_r",
                      "center_a", "center_s", "source_file"]

#: Node attributes (after the library's prefix) that name the file an annotation was read from.
_SOURCE_ATTRIBUTES = ("seg_path", "crlm.seg_path", "rtstruct", "xml_file", "source_file", "nifti_file", "mask_file")

_PREFIX = "SarcomaLungLiverBrowser."


def _attribute(node: Any, name: str) -> str:
    return node.GetAttribute(_PREFIX + name) or ""


def _matrix(vtk_matrix: Any) -> np.ndarray:
    return np.array([[vtk_matrix.GetElement(row, column) for column in range(4)] for row in range(4)])


def _segment_measures(segmentation_node: Any, segment_id: str) -> Dict[str, Any]:
    """Voxel count, volume, RAS bounds and centroid of one segment's binary labelmap (empty dict if empty)."""
    import slicer
    import vtk
    from vtk.util import numpy_support

    segment = segmentation_node.GetSegmentation().GetSegment(segment_id)
    representation = segment.GetRepresentation(slicer.vtkSegmentationConverter.GetBinaryLabelmapRepresentationName())
    if representation is None:
        return {}
    extent = representation.GetExtent()
    if extent[1] < extent[0] or extent[3] < extent[2] or extent[5] < extent[4]:
        return {}
    shape = (extent[5] - extent[4] + 1, extent[3] - extent[2] + 1, extent[1] - extent[0] + 1)
    labels = numpy_support.vtk_to_numpy(representation.GetPointData().GetScalars()).reshape(shape)
    k, j, i = np.nonzero(labels == segment.GetLabelValue())
    if k.size == 0:
        return {"voxels": 0, "volume_mm3": 0.0}
    image_to_world = vtk.vtkMatrix4x4()
    representation.GetImageToWorldMatrix(image_to_world)
    to_ras = _matrix(image_to_world)
    # Voxel indices (i, j, k) of the extent's origin are extent[0], extent[2], extent[4].
    ijk = np.stack([i + extent[0], j + extent[2], k + extent[4], np.ones_like(i)]).astype(float)
    ras = (to_ras @ ijk)[:3]
    half_voxel = np.abs(to_ras[:3, :3]).sum(axis=1) / 2  # bounds enclose whole voxels, not their centres
    lower, upper = ras.min(axis=1) - half_voxel, ras.max(axis=1) + half_voxel
    centre = ras.mean(axis=1)
    return {"voxels": int(k.size), "volume_mm3": float(k.size * abs(np.linalg.det(to_ras[:3, :3]))),
            "r_min": lower[0], "r_max": upper[0], "a_min": lower[1], "a_max": upper[1], "s_min": lower[2],
            "s_max": upper[2], "center_r": centre[0], "center_a": centre[1], "center_s": centre[2]}


def _segment_source(segmentation_node: Any, segment_id: str, findings: Sequence[Any]) -> str:
    for name in _SOURCE_ATTRIBUTES:
        value = _attribute(segmentation_node, name)
        if value:
            return value
    # Masks read from one file per segment (ISPY1 NIfTI) are named by the findings about them.
    return next((str(finding.path) for finding in findings if finding.segment_id == segment_id and finding.path), "")


def _series_of(node: Any, scene: Any) -> str:
    reference = node.GetNodeReference("referenceImageGeometryRef") if node.IsA("vtkMRMLSegmentationNode") else None
    if reference is None:
        volume_id = _attribute(node, "volume_node_id")
        reference = scene.GetNodeByID(volume_id) if volume_id and scene is not None else None
    if reference is not None:
        return reference.GetName()
    return (_attribute(node, "series_instance_uid") or _attribute(node, "SeriesInstanceUID")
            or _attribute(node, "reference_series_instance_uid"))


def _segment_rows(node: Any, case_id: str, collection: str, findings: Sequence[Any]) -> List[Dict[str, Any]]:
    segmentation = node.GetSegmentation()
    kind = "contour" if _attribute(node, "rtstruct") else "segment"
    rows = []
    for index in range(segmentation.GetNumberOfSegments()):
        segment_id = segmentation.GetNthSegmentID(index)
        name = segmentation.GetSegment(segment_id).GetName()
        row = {"case_id": case_id, "collection": collection, "series": _series_of(node, node.GetScene()),
               "kind": kind, "annotation": name, "label": f"{node.GetName()} / {name}",
               "class": default_item_type(name), "source_file": _segment_source(node, segment_id, findings)}
        row.update(_segment_measures(node, segment_id))
        rows.append(row)
    return rows


def _roi_row(node: Any, case_id: str, collection: str, box_files: Dict[Tuple[str, str], List[str]]) -> Dict[str, Any]:
    role = _attribute(node, "role")
    kind = {"lesion": "lesion", "slice_box": "box"}.get(role, "box" if _attribute(node, "xml_file") else "roi")
    label = _attribute(node, "label") or node.GetName()
    size = [float(value) for value in node.GetSize()]
    center = [float(value) for value in node.GetCenterWorld()]
    bounds = [0.0] * 6
    node.GetRASBounds(bounds)
    if kind == "lesion":
        source = "; ".join(box_files.get((_attribute(node, "series_instance_uid"), _attribute(node, "lesion")), []))
    else:
        source = _attribute(node, "xml_file")
    # A box is drawn on one slice: its area is what was annotated; a lesion spans slices: its volume.
    return {"case_id": case_id, "collection": collection, "series": _series_of(node, node.GetScene()), "kind": kind,
            "annotation": node.GetName(), "label": label, "class": default_item_type(label),
            "volume_mm3": float(size[0] * size[1] * size[2]) if kind != "box" else None,
            "area_mm2": float(size[0] * size[1]), "voxels": None,
            "r_min": bounds[0], "r_max": bounds[1], "a_min": bounds[2], "a_max": bounds[3], "s_min": bounds[4],
            "s_max": bounds[5], "center_r": center[0], "center_a": center[1], "center_s": center[2],
            "source_file": source}


def annotation_rows(loaded: Any, collection: str) -> List[Dict[str, Any]]:
    """One row (a dict of :data:`ANNOTATION_COLUMNS`) per segment, contour, lesion and box of a loaded case."""
    case_id = loaded.case.case_id
    box_files: Dict[Tuple[str, str], List[str]] = {}
    for roi in loaded.rois:
        if _attribute(roi, "xml_file") and _attribute(roi, "lesion"):
            key = (_attribute(roi, "series_instance_uid"), _attribute(roi, "lesion"))
            box_files.setdefault(key, []).append(_attribute(roi, "xml_file"))
    rows: List[Dict[str, Any]] = []
    for node in loaded.segmentations:
        rows.extend(_segment_rows(node, case_id, collection, loaded.findings))
    rows.extend(_roi_row(node, case_id, collection, box_files) for node in loaded.rois)
    return rows


def collection_annotation_table(collection: Any, cases: Sequence[Any], scene: Any = None,
                                progress: Optional[ProgressCallback] = None) -> Any:
    """Every annotation of every case, loading each case into ``scene`` (a private headless one when None)
    and removing it again. Cases that cannot be loaded are listed in ``table.attrs["skipped"]``."""
    import pandas as pd

    from ..browser import CollectionBrowser

    environment = None
    if scene is None:
        from ..scene.headless import HeadlessSlicer

        environment = HeadlessSlicer(install_globals=False)
        scene = environment.scene
    rows: List[Dict[str, Any]] = []
    skipped: List[str] = []
    try:
        browser = CollectionBrowser(scene)
        browser.collection = collection
        browser._cases = list(cases)  # known already: do not index again
        for index, case in enumerate(cases):
            report(progress, f"Case {index + 1} of {len(cases)}: measuring {case.case_id}", index / max(1, len(cases)))
            try:
                loaded = browser.load_case(case.case_id)
            except LoadCancelled:
                raise
            except Exception as error:  # noqa: BLE001 - as in QA, one unreadable case must not stop the table
                if not isinstance(error, DataError):
                    logger.exception("unexpected error while loading %s", case.case_id)
                skipped.append(f"{case.case_id}: {error}")
                continue
            try:
                rows.extend(annotation_rows(loaded, collection.key))
            finally:
                browser.unload_case(loaded.case.case_id)
    finally:
        if environment is not None:
            environment.close()
    table = pd.DataFrame(rows, columns=ANNOTATION_COLUMNS)
    for column in ("volume_mm3", "area_mm2", "voxels", "r_min", "r_max", "a_min", "a_max", "s_min", "s_max",
                   "center_r", "center_a", "center_s"):
        table[column] = pd.to_numeric(table[column], errors="coerce")
    table.attrs["skipped"] = skipped
    report(progress, f"Measured {len(table)} annotation(s)", 1.0)
    return table


def add_verdict_columns(table: Any, records: Iterable[Any], adjudications: Iterable[Any] = ()) -> Any:
    """Add ``verdict <reader>`` (each reader's latest verdict on the annotation) and ``adjudicated_verdict``."""
    by_reader: Dict[str, Dict[Tuple[str, str], str]] = {}
    for record in records:
        if record.annotation:
            by_reader.setdefault(record.reviewer, {})[(record.case_id, record.annotation)] = record.verdict
    keys = list(zip(table["case_id"], table["annotation"]))
    for reader in sorted(by_reader):
        table[f"verdict {reader}"] = [by_reader[reader].get(key, "") for key in keys]
    final = {(item.case_id, item.annotation): item.verdict for item in adjudications if item.annotation}
    table["adjudicated_verdict"] = [final.get(key, "") for key in keys]
    return table


def write_annotation_table(table: Any, csv_path: Optional[Path] = None,
                           parquet_path: Optional[Path] = None) -> List[Path]:
    """Write the table as CSV (spreadsheet-safe cells) and/or Parquet (pyarrow); returns the files written.

    :raises DataError: naming the Parquet file, when pyarrow is not installed.
    """
    from .report import write_csv

    written = []
    if csv_path is not None:
        rows = [["" if _missing(value) else value for value in row] for row in table.itertuples(index=False)]
        written.append(write_csv(Path(csv_path), list(table.columns), rows))
    if parquet_path is not None:
        try:
            import pyarrow  # noqa: F401 - pandas writes Parquet through it
        except ImportError as error:
            raise DataError(Path(parquet_path), "Parquet needs the pyarrow package (pip install pyarrow)") from error
        parquet_path = Path(parquet_path)
        parquet_path.parent.mkdir(parents=True, exist_ok=True)
        temporary = parquet_path.with_name(f".{parquet_path.name}.tmp")
        table.to_parquet(temporary, engine="pyarrow", index=False)
        temporary.replace(parquet_path)
        written.append(parquet_path)
    return written


def _missing(value: Any) -> bool:
    try:
        return value is None or bool(np.isnan(value))
    except TypeError:
        return False
