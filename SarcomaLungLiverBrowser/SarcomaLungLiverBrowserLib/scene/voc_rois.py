"""Place PASCAL VOC boxes on DICOM volumes that are already in the scene.

Lung-PET-CT-Dx names each XML file after the SOPInstanceUID of the slice it
annotates. Slicer's DICOM loader and this extension both record a volume's
slice UIDs, in slice order, in the ``DICOM.instanceUIDs`` node attribute, so a
dropped annotation file finds its slice in whichever loaded volume holds it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

from ..geometry import box_roi_geometry
from ..errors import DataError
from ..findings import WARNING, Finding
from .builder import SceneBuilder
from ..formats.voc_xml import iter_xml_files, parse_voc

__all__ = ["slice_index_by_uid", "place_voc_files"]


def slice_index_by_uid(scene: Any) -> Dict[str, Tuple[Any, int]]:
    """SOPInstanceUID -> (volume node, k) for every volume that records its slice UIDs."""
    index: Dict[str, Tuple[Any, int]] = {}
    for position in range(scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode")):
        volume = scene.GetNthNodeByClass(position, "vtkMRMLScalarVolumeNode")
        uids = (volume.GetAttribute("DICOM.instanceUIDs") or "").split()
        for k, uid in enumerate(uids):
            index.setdefault(uid, (volume, k))
    return index


def place_voc_files(paths: Sequence[Path], builder: SceneBuilder) -> Tuple[List[Any], List[Finding]]:
    """One ROI per box of each XML file (or folder of them) whose slice is loaded.

    Files that cannot be read, and files whose slice is in no loaded volume,
    become findings naming the file; everything else is placed, inside one
    transaction so a failure leaves the scene as it was.
    """
    files: List[Path] = []
    for path in paths:
        path = Path(path)
        files.extend(iter_xml_files(path) if path.is_dir() else [path])
    index = slice_index_by_uid(builder.scene)
    rois: List[Any] = []
    findings: List[Finding] = []
    with builder.transaction():
        for path in files:
            try:
                annotation = parse_voc(path)
            except DataError as error:
                findings.append(Finding(WARNING, "voc.unreadable", str(error), path=str(path)))
                continue
            located = index.get(annotation.stem)
            if located is None:
                findings.append(Finding(WARNING, "voc.slice_not_loaded",
                                        f"{path.name}: no loaded volume has the slice {annotation.stem}",
                                        path=str(path)))
                continue
            volume, k = located
            shape, ijk_to_ras = SceneBuilder.volume_geometry(volume)
            for number, box in enumerate(annotation.objects, start=1):
                corners = (box.xmin, box.ymin, box.xmax, box.ymax)
                center, size, axes = box_roi_geometry(ijk_to_ras, corners, k, k)
                name = f"{box.name or 'box'} {path.stem[-8:]}" + (f" #{number}" if len(annotation.objects) > 1 else "")
                rois.append(builder.add_roi(name, center, size, axes_ras=axes, attributes={"VOCFile": str(path)}))
    return rois, findings
