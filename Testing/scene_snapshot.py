"""A JSON-able description of the nodes a case load created, to compare loaders before and after a change.

It records what users see and what other code reads back: node class and
name, the subject-hierarchy path (levels and names), every node attribute
(node IDs replaced by the referenced node's name), display settings (colour
table, window/level, ROI colour and visibility), ROI geometry, segments
(name, colour, tags, voxel count) and table columns, plus the findings with
the sample folder replaced by ``<root>``.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Dict, List

import numpy as np
import slicer

from SarcomaLungLiverBrowserLib.scene.builder import SceneBuilder, segment_mask, segment_tag

GOLDEN = Path(__file__).resolve().parent / "golden"


def _hierarchy_path(scene: Any, node: Any) -> List[str]:
    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    item = hierarchy.GetItemByDataNode(node)
    path: List[str] = []
    parent = hierarchy.GetItemParent(item)
    while parent and parent != hierarchy.GetSceneItemID():
        path.insert(0, f"{hierarchy.GetItemLevel(parent) or 'Folder'}:{hierarchy.GetItemName(parent)}")
        parent = hierarchy.GetItemParent(parent)
    return path


def _rounded(values: Any) -> List[float]:
    return [round(float(v), 3) + 0.0 for v in values]


def _attributes(scene: Any, node: Any, plain: Callable[[str], str]) -> Dict[str, str]:
    attributes = {}
    for name in sorted(node.GetAttributeNames()):
        value = node.GetAttribute(name)
        if name.endswith("volume_node_id"):
            referenced = scene.GetNodeByID(value)
            value = f"<node {referenced.GetName()}>" if referenced is not None else value
        attributes[name] = plain(value)
    return attributes


def _segments(node: Any) -> List[Dict[str, Any]]:
    reference = node.GetNodeReference(node.GetReferenceImageGeometryReferenceRole())
    shape, ijk_to_ras = SceneBuilder.volume_geometry(reference)
    segmentation = node.GetSegmentation()
    described = []
    for index in range(segmentation.GetNumberOfSegments()):
        segment_id = segmentation.GetNthSegmentID(index)
        segment = segmentation.GetSegment(segment_id)
        tags = {}
        for tag in ("SarcomaLungLiverBrowser.OriginalName", "SarcomaLungLiverBrowser.ROINumber"):
            value = segment_tag(segment, tag)
            if value is not None:
                tags[tag] = value
        described.append({"id": segment_id, "name": segment.GetName(), "color": _rounded(segment.GetColor()),
                          "tags": tags, "voxels": int(segment_mask(node, segment_id, shape, ijk_to_ras).sum())})
    return described


def describe_node(scene: Any, node: Any, plain: Callable[[str], str] = str) -> Dict[str, Any]:
    """One node as plain data (see the module docstring); ``plain`` rewrites paths in attribute values."""
    entry: Dict[str, Any] = {"class": node.GetClassName(), "name": node.GetName(),
                             "hierarchy": _hierarchy_path(scene, node),
                             "attributes": _attributes(scene, node, plain)}
    display = node.GetDisplayNode() if node.IsA("vtkMRMLDisplayableNode") else None
    if node.IsA("vtkMRMLScalarVolumeNode"):
        shape, ijk_to_ras = SceneBuilder.volume_geometry(node)
        entry["volume"] = {
            "shape": list(shape), "ijk_to_ras": _rounded(np.asarray(ijk_to_ras).ravel()),
            "color": display.GetColorNodeID(), "auto_window_level": bool(display.GetAutoWindowLevel()),
            "window_level": _rounded((display.GetWindow(), display.GetLevel())),
            "presets": display.GetNumberOfWindowLevelPresets(),
            "voxel_sum": float(slicer.util.arrayFromVolume(node).astype(np.float64).sum()),
        }
    elif node.IsA("vtkMRMLMarkupsROINode"):
        entry["roi"] = {"center": _rounded(node.GetCenterWorld()), "size": _rounded(node.GetSize()),
                        "color": _rounded(display.GetSelectedColor()), "visible": bool(display.GetVisibility()),
                        "locked": bool(node.GetLocked())}
    elif node.IsA("vtkMRMLSegmentationNode"):
        reference = node.GetNodeReference(node.GetReferenceImageGeometryReferenceRole())
        entry["segmentation"] = {"reference": reference.GetName() if reference is not None else None,
                                 "segments": _segments(node)}
    elif node.IsA("vtkMRMLTableNode"):
        table = node.GetTable()
        entry["table"] = {"columns": [table.GetColumnName(i) for i in range(table.GetNumberOfColumns())],
                          "rows": table.GetNumberOfRows()}
    return entry


def describe_load(scene: Any, loaded: Any, root: Path) -> Dict[str, Any]:
    """The nodes of a load in order, its metrics' layer choice and its findings (sorted)."""
    text_root = str(root)

    def plain(text: str) -> str:
        return (text or "").replace(text_root, "<root>")

    findings = sorted([finding.severity, finding.check, plain(finding.message), plain(finding.path),
                       finding.node_name, finding.segment_id or ""] for finding in loaded.findings)
    layers = {}
    for key in ("background_volume_id", "foreground_volume_id"):
        node = scene.GetNodeByID(loaded.metrics.get(key, "")) if loaded.metrics.get(key) else None
        layers[key] = node.GetName() if node is not None else None
    return {"nodes": [describe_node(scene, node, plain) for node in loaded.nodes], "layers": layers,
            "findings": findings}


def golden(name: str) -> Dict[str, Any]:
    """The description stored in ``golden/<name>.json``."""
    return json.loads((GOLDEN / f"{name}.json").read_text())


def normalised(description: Dict[str, Any]) -> Dict[str, Any]:
    """``description`` as it reads back from JSON (tuples become lists)."""
    return json.loads(json.dumps(description))
