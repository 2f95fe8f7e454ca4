"""Every corrupted input of the hostile corpus, through the path a user takes.

For each entry: open the folder, list the cases and load the damaged case with
:class:`~SarcomaLungLiverBrowserLib.browser.CollectionBrowser` in a fresh
slicer-core scene. Only :class:`DataError` (or its subclass
:class:`NotACollectionError`) may escape; when it does, the scene must be
exactly as before (same node IDs, same subject hierarchy items) and the
message must name the damaged file. When the case loads, it loads whole and
the defect shows as a new warning or error finding whose message names the
file (new = absent from the same case loaded undamaged).

Exports: names taken from data (SOPInstanceUIDs, case IDs) never write
outside the chosen output folder.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, List, Set, Tuple

import numpy as np
import pytest
import vtk

from SarcomaLungLiverBrowserLib.browser import CollectionBrowser
from SarcomaLungLiverBrowserLib.errors import DataError
from SarcomaLungLiverBrowserLib.findings import ERROR, WARNING
from SarcomaLungLiverBrowserLib.scene.headless import HeadlessSlicer

from hostile.corpus import ENTRIES, Base, Entry, build_bases, materialise

pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.fixture(scope="module")
def bases(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Base]:
    return build_bases(tmp_path_factory.mktemp("hostile"))


def _normalise(text: str, root: Path) -> str:
    return text.replace(str(root), "<root>")


@pytest.fixture(scope="module")
def baselines(bases: Dict[str, Base]) -> Dict[str, Set[Tuple[str, str]]]:
    """(check, message) of every finding of each undamaged base case."""
    result = {}
    environment = HeadlessSlicer(install_globals=False)
    try:
        for key, base in bases.items():
            browser = CollectionBrowser(environment.scene)
            browser.open(base.root)
            loaded = browser.load_case(base.spec.case_id)
            result[key] = {(f.check, _normalise(f.message, base.root)) for f in loaded.findings}
            browser.unload_all()
    finally:
        environment.close()
    return result


def scene_state(scene) -> Tuple[List[str], int]:  # type: ignore[no-untyped-def]
    """Node IDs and the number of subject hierarchy items, to compare before and after."""
    import slicer

    node_ids = sorted(scene.GetNthNode(index).GetID() for index in range(scene.GetNumberOfNodes()))
    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    children = vtk.vtkIdList()
    hierarchy.GetItemChildren(hierarchy.GetSceneItemID(), children, True)
    return node_ids, children.GetNumberOfIds()


def names_one_of(text: str, names: List[str]) -> bool:
    return any(name and name in text for name in names)


def test_corpus_is_large_and_covers_every_collection():
    assert len(ENTRIES) >= 200
    assert len({entry.id for entry in ENTRIES}) == len(ENTRIES)
    covered = {entry.base.split("_")[0] for entry in ENTRIES}
    assert covered == {"crlm", "lung", "ispy1", "ispy1dicom", "sts", "hermessi"}


@pytest.mark.parametrize("entry", ENTRIES, ids=[entry.id for entry in ENTRIES])
def test_hostile_input(entry: Entry, bases, baselines, headless, tmp_path):  # type: ignore[no-untyped-def]
    root, names = materialise(entry, bases, tmp_path)
    scene = headless.scene
    before = scene_state(scene)
    browser = CollectionBrowser(scene)
    try:
        browser.open(root)
        browser.cases()
        loaded = browser.load_case(entry.case_id)
    except DataError as error:
        assert scene_state(scene) == before, "a failed load left nodes or hierarchy items behind"
        assert entry.expect in ("error", "either"), f"load refused, expected {entry.expect}: {error}"
        assert names_one_of(str(error), names), f"error does not name {names}: {error}"
        return
    except Exception as error:  # noqa: BLE001 - the point of the test
        pytest.fail(f"{type(error).__name__} escaped (not a DataError): {error}")
    assert entry.expect in ("finding", "either", "tolerated"), "the load should have been refused"
    present = {scene.GetNthNode(index).GetID() for index in range(scene.GetNumberOfNodes())}
    assert loaded.nodes and all(node.GetID() in present for node in loaded.nodes)
    baseline = baselines[entry.base]
    new = [f for f in loaded.findings if f.severity in (WARNING, ERROR)
           and (f.check, _normalise(f.message, root)) not in baseline]
    if "-names_" in entry.id:
        assert_names_clean_bounded_and_unique(loaded.nodes)
    if entry.expect == "tolerated":
        return
    assert any(names_one_of(f.message, names) for f in new), (
        f"no new warning/error finding names {names}; new findings: {[f.message for f in new]}")


def assert_names_clean_bounded_and_unique(nodes) -> None:  # type: ignore[no-untyped-def]
    """Names from the data reach the scene without control characters, bounded, and segment IDs unique."""
    from SarcomaLungLiverBrowserLib.scene.builder import MAX_NODE_NAME_LENGTH

    for node in nodes:
        name = node.GetName()
        assert not any(ord(c) < 32 or 0x7f <= ord(c) <= 0x9f for c in name), f"control character in {name!r}"
        assert 0 < len(name) <= MAX_NODE_NAME_LENGTH, f"unbounded name {name!r}"
        if node.IsA("vtkMRMLSegmentationNode"):
            segmentation = node.GetSegmentation()
            ids = [segmentation.GetNthSegmentID(i) for i in range(segmentation.GetNumberOfSegments())]
            assert len(set(ids)) == len(ids), f"segment IDs not unique in {name!r}: {ids}"
            for segment_id in ids:
                segment_name = segmentation.GetSegment(segment_id).GetName()
                assert not any(ord(c) < 32 for c in segment_id + segment_name), repr(segment_id + segment_name)
                assert len(segment_id) <= MAX_NODE_NAME_LENGTH and len(segment_name) <= MAX_NODE_NAME_LENGTH


# ---------------------------------------------------------------------------------------------- exports
#: Names that would leave the output folder (or cut a path short) if used as they are.
HOSTILE_NAMES = [
    "../../escaped",
    "../escaped",
    "/tmp/sllb_absolute_escape",
    "sub/../../escaped",
    "1.2.3\x00/../escaped",
    "1.2.3\x00",
    "..\\..\\escaped",
]
#: Folder names that are not folders of their own.
HOSTILE_FOLDER_NAMES = HOSTILE_NAMES + ["..", ".", ""]


def _files_outside(tmp_path: Path, output: Path) -> List[Path]:
    return [path for path in tmp_path.rglob("*") if path.is_file() and output not in path.parents
            and "collection" not in path.parts]


def _lung_headers(bases: Dict[str, Base]):  # type: ignore[no-untyped-def]
    from SarcomaLungLiverBrowserLib.formats.dicom_series import scan_folder

    instances = scan_folder(bases["lung_nbia"].root).instances
    return {instance.sop_instance_uid: instance for instance in instances if instance.modality == "CT"}


def _box(sop_uid: str, series_uid: str = "1.2.3"):  # type: ignore[no-untyped-def]
    from SarcomaLungLiverBrowserLib.collections.lung_pet_ct_dx import CorrectedBox

    return CorrectedBox(sop_uid, series_uid, 0, "A", False, False, 10, 10, 20, 20, 128, 128, "box")


@pytest.mark.parametrize("name", HOSTILE_NAMES, ids=[repr(n) for n in HOSTILE_NAMES])
def test_voc_export_keeps_data_names_inside_the_folder(name, tmp_path):  # type: ignore[no-untyped-def]
    from SarcomaLungLiverBrowserLib.collections.lung_pet_ct_dx import export_voc

    output = tmp_path / "out"
    with pytest.raises(DataError) as raised:
        export_voc([_box("1.2.840.1"), _box(name)], output, "Lung_Dx-A0001")
    assert "out" in str(raised.value)
    assert not _files_outside(tmp_path, output)
    assert not Path("/tmp/sllb_absolute_escape.xml").exists()
    assert not list(output.rglob("*.xml")), "a refused export must not leave some files written"


@pytest.mark.parametrize("name", HOSTILE_FOLDER_NAMES, ids=[repr(n) for n in HOSTILE_FOLDER_NAMES])
def test_voc_export_refuses_hostile_case_ids(name, tmp_path):  # type: ignore[no-untyped-def]
    from SarcomaLungLiverBrowserLib.collections.lung_pet_ct_dx import export_voc

    output = tmp_path / "out"
    with pytest.raises(DataError):
        export_voc([_box("1.2.840.1")], output, f"Lung_Dx-{name}" if name else "")
    assert not _files_outside(tmp_path, output)


@pytest.mark.parametrize("name", HOSTILE_NAMES, ids=[repr(n) for n in HOSTILE_NAMES])
def test_sr_export_refuses_hostile_case_ids(name, bases, tmp_path):  # type: ignore[no-untyped-def]
    from SarcomaLungLiverBrowserLib.collections.lung_pet_ct_dx import export_sr

    headers = _lung_headers(bases)
    sop_uid, header = next(iter(sorted(headers.items())))
    output = tmp_path / "out"
    with pytest.raises(DataError):
        export_sr([_box(sop_uid, header.series_instance_uid)], headers, output, name)
    assert not _files_outside(tmp_path, output)
    assert not list(Path("/tmp").glob("sllb_absolute_escape*"))


@pytest.mark.parametrize("name", HOSTILE_NAMES[:5], ids=[repr(n) for n in HOSTILE_NAMES[:5]])
def test_seg_export_names_come_from_the_caller_not_the_data(name, bases, builder, tmp_path):  # type: ignore[no-untyped-def]
    """Segment names and series descriptions from the data never become file names."""
    from SarcomaLungLiverBrowserLib.collections.crlm import export_segmentation
    from SarcomaLungLiverBrowserLib.scene.builder import SegmentSpec

    browser = CollectionBrowser(builder.scene)
    browser.open(bases["crlm_nbia"].root)
    loaded = browser.load_case("CRLM-CT-1001")
    segmentation = loaded.segmentations[0]
    segment = segmentation.GetSegmentation().GetNthSegment(0)
    segment.SetName(name or "unnamed")
    segmentation.SetName(name or "unnamed")
    output = tmp_path / "out"
    path = export_segmentation(segmentation, output / "edited.dcm", series_description=name)
    assert path == output / "edited.dcm" and path.is_file()
    assert [p for p in output.rglob("*") if p.is_file()] == [path]
    assert SegmentSpec  # imported to keep the builder API in view


def test_review_report_writers_escape_hostile_text(tmp_path):  # type: ignore[no-untyped-def]
    """The review report (written by the review store's owner) is checked once it exists."""
    import SarcomaLungLiverBrowserLib.review.report as review_report
    writers = [getattr(review_report, name) for name in dir(review_report)
               if name.startswith(("write_", "export_")) and callable(getattr(review_report, name))]
    assert writers, "review_report has no write_/export_ function to check"
