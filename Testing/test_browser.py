"""The browsing workflow the module and the command line share."""
from __future__ import annotations

import subprocess
import sys

import pytest
import vtk

from SarcomaLungLiverBrowserLib.browser import CollectionBrowser, cases_table
from SarcomaLungLiverBrowserLib.errors import DataError, NotACollectionError
from SarcomaLungLiverBrowserLib.samples import soft_tissue_sarcoma


@pytest.fixture(scope="module")
def sarcoma_root(tmp_path_factory):
    return soft_tissue_sarcoma.generate(tmp_path_factory.mktemp("sts"))


def scene_state(scene):
    hierarchy = __import__("slicer").vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    items = vtk.vtkIdList()
    hierarchy.GetItemChildren(hierarchy.GetSceneItemID(), items, True)
    return ({scene.GetNthNode(n).GetID() for n in range(scene.GetNumberOfNodes())}, items.GetNumberOfIds())


def test_open_list_load_and_unload_a_case(headless, sarcoma_root):
    browser = CollectionBrowser(headless.scene)
    collection = browser.open(sarcoma_root)
    assert collection.key == "soft_tissue_sarcoma"
    cases = browser.cases()
    table = cases_table(cases)
    assert list(table["case_id"]) == [case.case_id for case in cases] and len(cases) >= 2
    before = scene_state(headless.scene)
    loaded = browser.load_case(cases[0].case_id.lower())  # IDs are matched case-insensitively
    assert loaded.volumes and loaded.segmentations
    assert scene_state(headless.scene) != before
    browser.unload_case(loaded.case.case_id)
    assert scene_state(headless.scene) == before


def test_unknown_case_and_non_collection_folders_are_named(headless, sarcoma_root, tmp_path):
    browser = CollectionBrowser(headless.scene)
    browser.open(sarcoma_root)
    with pytest.raises(DataError, match="no case 'STS_999'"):
        browser.load_case("STS_999")
    with pytest.raises(NotACollectionError) as raised:
        browser.open(tmp_path)
    assert str(tmp_path) in str(raised.value)


def test_command_line_loads_a_case_into_a_bundle_and_snapshot(sarcoma_root, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "SarcomaLungLiverBrowserLib", "--no-cache", "load", str(sarcoma_root),
         "--mrb", str(tmp_path / "case.mrb"), "--png", str(tmp_path / "case.png")],
        capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "case.mrb").stat().st_size > 1000
    assert (tmp_path / "case.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_command_line_names_the_folder_that_is_not_a_collection(tmp_path):
    result = subprocess.run([sys.executable, "-m", "SarcomaLungLiverBrowserLib", "--no-cache", "index", str(tmp_path)],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert str(tmp_path) in result.stderr and "Traceback" not in result.stderr


def test_finding_location_uses_point_then_segment_then_node(headless, sarcoma_root):
    from SarcomaLungLiverBrowserLib.browser import finding_location
    from SarcomaLungLiverBrowserLib.findings import Finding

    browser = CollectionBrowser(headless.scene)
    browser.open(sarcoma_root)
    loaded = browser.load_case(browser.cases()[0].case_id)
    assert finding_location(Finding("info", "x", "m", ras=(1.0, 2.0, 3.0)), loaded) == (1.0, 2.0, 3.0)
    segmentation = loaded.segmentations[0]
    segment_id = segmentation.GetSegmentation().GetNthSegmentID(0)
    expected = segmentation.GetSegmentCenterRAS(segment_id)
    located = finding_location(Finding("info", "x", "m", node_name=segmentation.GetName(), segment_id=segment_id), loaded)
    assert located == pytest.approx(tuple(expected))
    volume = loaded.volumes[0]
    bounds = [0.0] * 6
    volume.GetRASBounds(bounds)
    located = finding_location(Finding("info", "x", "m", node_name=volume.GetName()), loaded)
    assert located == pytest.approx(((bounds[0] + bounds[1]) / 2, (bounds[2] + bounds[3]) / 2, (bounds[4] + bounds[5]) / 2))
    assert finding_location(Finding("info", "x", "m"), loaded) is None


@pytest.mark.parametrize("module_name", ["crlm", "lung_pet_ct_dx"])
def test_loaded_case_survives_a_scene_bundle_round_trip(headless, tmp_path, module_name):
    """Volumes, segments (names, colours, voxels), ROIs and tables come back from the .mrb."""
    import importlib

    import numpy as np
    import slicer

    from SarcomaLungLiverBrowserLib.browser import save_scene_bundle
    from SarcomaLungLiverBrowserLib.scene.headless import HeadlessSlicer
    from SarcomaLungLiverBrowserLib.scene.builder import SceneBuilder, segment_mask

    root = importlib.import_module(f"SarcomaLungLiverBrowserLib.samples.{module_name}").generate(tmp_path / "data")
    browser = CollectionBrowser(headless.scene)
    browser.open(root)
    loaded = browser.load_case(browser.cases()[0].case_id)
    expected_segments = {}
    for segmentation in loaded.segmentations:
        reference = headless.scene.GetNodeByID(
            segmentation.GetNodeReferenceID(slicer.vtkMRMLSegmentationNode.GetReferenceImageGeometryReferenceRole()))
        shape, matrix = SceneBuilder.volume_geometry(reference)
        segments = segmentation.GetSegmentation()
        for index in range(segments.GetNumberOfSegments()):
            segment_id = segments.GetNthSegmentID(index)
            segment = segments.GetSegment(segment_id)
            expected_segments[(segmentation.GetName(), segment_id)] = (
                segment.GetName(), segment.GetColor(), segment_mask(segmentation, segment_id, shape, matrix).sum())
    expected_rois = sorted((roi.GetName(), tuple(np.round(roi.GetCenter(), 3))) for roi in loaded.rois)
    expected_tables = {table.GetName(): table.GetNumberOfRows() for table in loaded.tables}
    expected_volumes = {volume.GetName(): slicer.util.arrayFromVolume(volume).copy() for volume in loaded.volumes}
    bundle = save_scene_bundle(headless.scene, tmp_path / "case.mrb")

    with HeadlessSlicer(install_globals=False) as fresh:
        assert fresh.read_bundle(bundle)
        scene = fresh.scene
        for name, voxels in expected_volumes.items():
            assert np.array_equal(slicer.util.arrayFromVolume(scene.GetFirstNodeByName(name)), voxels), name
        for (node_name, segment_id), (name, color, count) in expected_segments.items():
            segmentation = scene.GetFirstNodeByName(node_name)
            reference = scene.GetNodeByID(
                segmentation.GetNodeReferenceID(slicer.vtkMRMLSegmentationNode.GetReferenceImageGeometryReferenceRole()))
            segment = segmentation.GetSegmentation().GetSegment(segment_id)
            assert segment.GetName() == name and segment.GetColor() == pytest.approx(color, abs=1e-6)
            if reference is not None:
                shape, matrix = SceneBuilder.volume_geometry(reference)
                assert segment_mask(segmentation, segment_id, shape, matrix).sum() == count, name
        rois = sorted((scene.GetNthNodeByClass(i, "vtkMRMLMarkupsROINode").GetName(),
                       tuple(np.round(scene.GetNthNodeByClass(i, "vtkMRMLMarkupsROINode").GetCenter(), 3)))
                      for i in range(scene.GetNumberOfNodesByClass("vtkMRMLMarkupsROINode")))
        assert rois == expected_rois
        for name, rows in expected_tables.items():
            assert scene.GetFirstNodeByName(name).GetNumberOfRows() == rows, name
