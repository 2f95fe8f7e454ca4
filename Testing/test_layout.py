"""The views a case opens with in Slicer, set on slicer-core's layout, slice and segmentation display nodes."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import slicer

from SarcomaLungLiverBrowserLib.browser import CollectionBrowser
from SarcomaLungLiverBrowserLib.scene.headless import HeadlessSlicer
from SarcomaLungLiverBrowserLib.scene.layout import FOUR_UP, THREE_OVER_THREE, layout_node_of, plan_views, show_case


def load_first_case(environment: HeadlessSlicer, folder: Path):
    browser = CollectionBrowser(environment.scene)
    browser.open(folder)
    return browser.load_case(browser.cases()[0].case_id)


def slice_node(scene, name):
    nodes = scene.GetNodesByClass("vtkMRMLSliceNode")
    return next(nodes.GetItemAsObject(i) for i in range(nodes.GetNumberOfItems())
                if nodes.GetItemAsObject(i).GetLayoutName() == name)


def composite_node(scene, name):
    nodes = scene.GetNodesByClass("vtkMRMLSliceCompositeNode")
    return next(nodes.GetItemAsObject(i) for i in range(nodes.GetNumberOfItems())
                if nodes.GetItemAsObject(i).GetLayoutName() == name)


def slice_center(node):
    matrix = node.GetSliceToRAS()
    return np.array([matrix.GetElement(row, 3) for row in range(3)])


def test_ct_with_segments_opens_four_up_with_surfaces_centred_on_the_first_tumour(sample_collections):
    with HeadlessSlicer() as environment:
        loaded = load_first_case(environment, sample_collections / "Colorectal-Liver-Metastases")
        plan = show_case(environment.scene, loaded)
        scene = environment.scene
        assert layout_node_of(scene).GetViewArrangement() == FOUR_UP
        assert plan.focus_name.lower().startswith("tumor")
        for name, orientation in (("Red", "Axial"), ("Yellow", "Sagittal"), ("Green", "Coronal")):
            node = slice_node(scene, name)
            assert node.GetOrientationString() == orientation
            assert np.allclose(slice_center(node), plan.focus_ras, atol=1e-3), f"{name} is not centred"
            assert composite_node(scene, name).GetBackgroundVolumeID() == loaded.background_volume.GetID()
        segmentation = loaded.segmentations[0]
        assert segmentation.GetSegmentation().ContainsRepresentation("Closed surface")
        assert segmentation.GetDisplayNode().GetVisibility3D()
        legend = slicer.vtkSlicerColorLogic.GetColorLegendDisplayNode(segmentation)
        assert legend is not None and legend.GetVisibility(), "segment names are shown in a colour legend"


def test_pet_ct_opens_the_fusion_layout(sample_collections):
    with HeadlessSlicer() as environment:
        loaded = load_first_case(environment, sample_collections / "Lung-PET-CT-Dx")
        assert loaded.foreground_volume is not None
        plan = show_case(environment.scene, loaded)
        scene = environment.scene
        assert plan.layout_id == THREE_OVER_THREE
        assert layout_node_of(scene).GetViewArrangement() == THREE_OVER_THREE
        pet, ct = loaded.foreground_volume.GetID(), loaded.background_volume.GetID()
        for name in ("Red", "Yellow", "Green"):
            composite = composite_node(scene, name)
            assert (composite.GetBackgroundVolumeID(), composite.GetForegroundVolumeID()) == (ct, pet)
            assert composite.GetForegroundOpacity() > 0
        for name in ("Red+", "Yellow+", "Green+"):
            composite = composite_node(scene, name)
            assert composite.GetBackgroundVolumeID() == pet and composite.GetForegroundVolumeID() is None
            assert composite.GetLinkedControl()
        display = loaded.foreground_volume.GetDisplayNode()
        assert display.GetApplyThreshold(), "PET below the threshold must not darken the CT"
        assert slicer.vtkSlicerColorLogic.GetColorLegendDisplayNode(loaded.foreground_volume) is not None
        assert np.allclose(slice_center(slice_node(scene, "Red")), plan.focus_ras, atol=1e-3)


def test_ispy1_opens_phases_one_above_the_other_linked(sample_collections):
    with HeadlessSlicer() as environment:
        loaded = load_first_case(environment, sample_collections / "ISPY1-Tumor-SEG-Radiomics")
        plan = show_case(environment.scene, loaded)
        scene = environment.scene
        assert plan.layout_id == THREE_OVER_THREE
        upper = scene.GetNodeByID(composite_node(scene, "Red").GetBackgroundVolumeID()).GetName()
        lower = scene.GetNodeByID(composite_node(scene, "Red+").GetBackgroundVolumeID()).GetName()
        assert "DCE_0000" in upper and "DCE_0001" in lower
        assert all(composite_node(scene, name).GetLinkedControl() for name in ("Red", "Red+", "Green+"))


def test_plan_changes_nothing_and_a_case_without_volume_is_refused(sample_collections):
    with HeadlessSlicer() as environment:
        loaded = load_first_case(environment, sample_collections / "Colorectal-Liver-Metastases")
        count = environment.scene.GetNumberOfNodes()
        plan_views(loaded)
        assert environment.scene.GetNumberOfNodes() == count
        loaded.volumes.clear()
        with pytest.raises(ValueError, match="no volume"):
            plan_views(loaded)
        assert show_case(environment.scene, loaded) is None
