"""The one path from a case's plain data to MRML nodes.

Every collection reads a case into a :class:`~..case_data.CaseData` without
touching the scene; :func:`put_case` then creates every node (volumes,
segmentations, ROIs, tables) and the subject hierarchy inside one
:meth:`SceneBuilder.transaction`, so a failure leaves the scene as it was.
"""
from __future__ import annotations

from typing import Any, Dict, Optional

from ..case_data import CaseData, LoadedCase, Placement, TableData, VolumeData
from ..findings import INFO, Finding
from ..progress import ProgressCallback, report
from .builder import ATTRIBUTE_PREFIX, SceneBuilder, scene_text

__all__ = ["put_case", "placement_item", "SHARED_TABLE_ATTRIBUTE", "ROI_VOLUME_ATTRIBUTE", "CHECK_COLOR_TABLE_MISSING"]

#: Node attribute marking a collection-wide table, so later cases reuse it.
SHARED_TABLE_ATTRIBUTE = "shared_table"
#: ROI attribute holding the ID of the volume node named by :attr:`RoiData.reference`.
ROI_VOLUME_ATTRIBUTE = "volume_node_id"
#: Check of the finding made when a volume's colour node is missing from the scene.
CHECK_COLOR_TABLE_MISSING = "color_table_missing"


def placement_item(builder: SceneBuilder, placement: Placement) -> Optional[int]:
    """The subject-hierarchy item for ``placement``, creating patient, study and folders as needed.

    :returns: None for a placement at scene level with no folder.
    """
    hierarchy = builder.hierarchy
    item: Optional[int] = None
    if placement.patient_id:
        item = builder.patient_item(placement.patient_id, placement.patient_name or placement.patient_id,
                                    uid_name=placement.uid_name)
        if placement.study_uid:
            item = builder.study_item(item, placement.study_uid, placement.study_name or placement.study_uid,
                                      uid_name=placement.uid_name)
    for folder in placement.folders:
        item = builder.folder_item(item if item is not None else hierarchy.GetSceneItemID(), folder)
    return item


def _shared_table(builder: SceneBuilder, table: TableData) -> Optional[Any]:
    """The node already holding the collection-wide table ``table.shared_key``, if any."""
    nodes = builder.scene.GetNodesByClass("vtkMRMLTableNode")
    for index in range(nodes.GetNumberOfItems()):
        node = nodes.GetItemAsObject(index)
        if node.GetAttribute(ATTRIBUTE_PREFIX + SHARED_TABLE_ATTRIBUTE) == table.shared_key:
            return node
    return None


def _color_table(builder: SceneBuilder, volume: VolumeData, loaded: LoadedCase) -> Optional[str]:
    """The volume's colour node ID, or its fallback (with a finding) when the scene lacks that node."""
    wanted = volume.color_table
    if wanted is None or volume.fallback_color_table is None or builder.scene.GetNodeByID(wanted) is not None:
        return wanted
    loaded.findings.append(Finding(INFO, CHECK_COLOR_TABLE_MISSING,
                                   f"the scene has no {wanted}; {volume.name} uses {volume.fallback_color_table}",
                                   case_id=getattr(loaded.case, "case_id", ""), node_name=volume.name))
    return volume.fallback_color_table


def put_case(data: CaseData, builder: SceneBuilder, progress: Optional[ProgressCallback] = None) -> LoadedCase:
    """Create the nodes for ``data`` in the builder's scene, all or nothing.

    Volumes come first (segmentations refer to them by key), then
    segmentations, ROIs and tables. A collection-wide table already in the
    scene is reused, not added again, and is not listed in the result (it
    belongs to the case that added it).

    :raises KeyError: if a segmentation names a volume the case does not have
        (a programming error in the collection, caught before any node exists).
    """
    for segmentation in data.segmentations:
        data.volume(segmentation.reference)  # fail before creating anything
    for roi in data.rois:
        if roi.reference is not None:
            data.volume(roi.reference)
    loaded = LoadedCase(case=data.case, findings=list(data.findings), metrics=dict(data.metrics), data=data)
    total = max(1, len(data.volumes) + len(data.segmentations) + len(data.rois) + len(data.tables))
    done = 0

    def step(message: str) -> None:
        nonlocal done
        report(progress, message, done / total)
        done += 1

    with builder.transaction():
        volume_nodes: Dict[str, Any] = {}
        for volume in data.volumes:
            step(f"Creating volume {volume.name}")
            node = builder.add_volume(volume.name, volume.voxels, volume.ijk_to_ras, volume.windows,
                                      _color_table(builder, volume, loaded), placement_item(builder, volume.placement),
                                      volume.attributes, share_memory=volume.share_memory)
            for name, value in volume.slicer_attributes.items():
                node.SetAttribute(name, scene_text(value))
            volume_nodes[volume.key] = node
            loaded.volumes.append(node)
        for segmentation in data.segmentations:
            step(f"Creating segmentation {segmentation.name}")
            loaded.segmentations.append(builder.add_segmentation(
                segmentation.name, volume_nodes[segmentation.reference], segmentation.segments,
                placement_item(builder, segmentation.placement), segmentation.attributes))
        for roi in data.rois:
            step(f"Creating ROI {roi.name}")
            attributes = dict(roi.attributes)
            if roi.reference is not None:
                attributes[ROI_VOLUME_ATTRIBUTE] = volume_nodes[roi.reference].GetID()
            node = builder.add_roi(roi.name, roi.center, roi.size, roi.axes, roi.color, roi.locked,
                                   placement_item(builder, roi.placement), attributes)
            if not roi.visible:
                node.GetDisplayNode().SetVisibility(False)
            loaded.rois.append(node)
        for table in data.tables:
            step(f"Creating table {table.name}")
            if table.shared_key:
                existing = _shared_table(builder, table)
                if existing is not None:
                    continue
                attributes = {**table.attributes, SHARED_TABLE_ATTRIBUTE: table.shared_key}
                # The case that adds a collection-wide table lists it, so unloading that case leaves the scene
                # as it was; a later case finds it again (or, once it is gone, adds it again).
                loaded.tables.append(builder.add_table(table.name, table.dataframe,
                                                       placement_item(builder, table.placement), attributes))
                continue
            loaded.tables.append(builder.add_table(table.name, table.dataframe,
                                                   placement_item(builder, table.placement), table.attributes))
        hints = data.display
        if hints.background in volume_nodes:
            loaded.metrics["background_volume_id"] = volume_nodes[hints.background].GetID()
        if hints.foreground in volume_nodes:
            loaded.metrics["foreground_volume_id"] = volume_nodes[hints.foreground].GetID()
            loaded.metrics["foreground_opacity"] = hints.foreground_opacity
    report(progress, "Nodes created", 1.0)
    return loaded
