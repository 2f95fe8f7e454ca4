"""File > Close Scene between two loads: the second case lands in the scene's new subject hierarchy.

Slicer removes the subject-hierarchy node when the scene closes and creates a new one
(qSlicerSubjectHierarchyPluginLogic, EndCloseEvent). On slicer-core the same happens with
``scene.Clear(0)`` followed by ``vtkMRMLSubjectHierarchyNode.ResolveSubjectHierarchy(scene)``.
"""
from __future__ import annotations

import pytest

from pathlib import Path

import slicer
import vtk

from module_file_fixtures import MODULE_FILE, import_module_file, isolated_header_cache  # noqa: E402,F401

pytestmark = pytest.mark.usefixtures("isolated_header_cache")



def close_scene_like_slicer(scene) -> None:
    """What File > Close Scene does to the hierarchy: the old node goes, a new one is made."""
    scene.Clear(0)
    slicer.vtkMRMLSubjectHierarchyNode.ResolveSubjectHierarchy(scene)


def assert_case_is_in_the_scene_hierarchy(scene, loaded) -> None:
    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    assert hierarchy is not None and scene.IsNodePresent(hierarchy)
    for node in loaded.nodes:
        item = hierarchy.GetItemByDataNode(node)
        assert item != hierarchy.GetInvalidItemID(), f"{node.GetName()} has no item in the scene's hierarchy"
        if node not in (*loaded.volumes, *loaded.segmentations):
            continue  # collection-wide tables are filed in a folder of their own
        # Images and annotations are filed under the case's patient (subject) item.
        ancestor = hierarchy.GetItemParent(item)
        levels = []
        while ancestor not in (hierarchy.GetInvalidItemID(), hierarchy.GetSceneItemID()):
            levels.append(hierarchy.GetItemLevel(ancestor))
            ancestor = hierarchy.GetItemParent(ancestor)
        assert "Patient" in levels, f"{node.GetName()} is not under a patient item (levels {levels})"


def test_close_scene_then_load_puts_the_next_case_in_the_new_hierarchy(headless, tmp_path):
    from SarcomaLungLiverBrowserLib.samples import crlm

    scene = headless.scene
    module = import_module_file()
    logic = module.SarcomaLungLiverBrowserLogic(scene)
    logic.openCollection(str(crlm.generate(tmp_path)))
    first_id, second_id = logic.caseIds()[:2]

    first = logic.loadCase(first_id)
    assert_case_is_in_the_scene_hierarchy(scene, first)
    old_hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)

    close_scene_like_slicer(scene)
    logic.forgetLoadedCases()  # what the widget does on StartCloseEvent
    new_hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    assert new_hierarchy is not old_hierarchy and not scene.IsNodePresent(old_hierarchy), \
        "the scene close did not replace the hierarchy node, so this test would prove nothing"
    old_items = old_hierarchy.GetNumberOfItems()

    second = logic.loadCase(second_id)
    assert_case_is_in_the_scene_hierarchy(scene, second)
    assert old_hierarchy.GetNumberOfItems() == old_items, "the second case was written into the removed hierarchy"
    patients = vtk.vtkIdList()
    new_hierarchy.GetItemChildren(new_hierarchy.GetSceneItemID(), patients, False)
    names = [new_hierarchy.GetItemName(patients.GetId(index)) for index in range(patients.GetNumberOfIds())]
    assert names and all(first_id not in name for name in names), f"the closed case is still filed: {names}"
