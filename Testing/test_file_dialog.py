"""Drag and drop: collection folders through the FileDialog class, VOC files through the FileReader class.

Slicer's qSlicerScriptedFileDialog and the reader's parent (with ``userMessages()``) are replaced by
small fakes with the same methods; the collection detection and the box placement are the real ones.
"""
from __future__ import annotations

import types
from pathlib import Path
from typing import Any, List, Tuple

import pytest
import slicer
import vtk

from module_file_fixtures import MODULE_FILE, import_module_file, isolated_header_cache  # noqa: E402,F401

pytestmark = pytest.mark.usefixtures("isolated_header_cache")



class FakeUrl:
    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def toLocalFile(self) -> str:
        return self.path


class FakeMimeData:
    def __init__(self, paths: List[Path]) -> None:
        self.paths = paths

    def hasFormat(self, mime_type: str) -> bool:
        return mime_type == "text/uri-list"

    def urls(self) -> List[FakeUrl]:
        return [FakeUrl(path) for path in self.paths]


class FakeScriptedFileDialog:
    """qSlicerScriptedFileDialog: the properties the class sets, mimeData() and acceptMimeData()."""

    def __init__(self, paths: List[Path]) -> None:
        self._mime = FakeMimeData(paths)
        self.accepted: List[bool] = []
        self.fileType = self.description = self.action = None

    def mimeData(self) -> FakeMimeData:
        return self._mime

    def acceptMimeData(self, accept: bool) -> None:
        self.accepted.append(accept)


class FakeUserMessages:
    def __init__(self) -> None:
        self.messages: List[Tuple[int, str]] = []

    def AddMessage(self, event: int, message: str) -> None:
        self.messages.append((event, message))


class FakeReaderParent:
    def __init__(self) -> None:
        self.user_messages = FakeUserMessages()
        self.loadedNodes: List[str] = []

    def userMessages(self) -> FakeUserMessages:
        return self.user_messages


@pytest.fixture
def fake_application(monkeypatch):
    """The Slicer application parts the drop path touches: module selection and the module's widget."""
    opened: List[str] = []
    selected: List[str] = []
    widget = types.SimpleNamespace(openCollectionFolder=lambda folder: opened.append(folder) or True)
    representation = types.SimpleNamespace(self=lambda: widget)
    monkeypatch.setattr(slicer, "qSlicerFileDialog", types.SimpleNamespace(Read=1), raising=False)
    monkeypatch.setattr(slicer.util, "selectModule", selected.append, raising=False)
    monkeypatch.setattr(slicer, "modules", types.SimpleNamespace(
        sarcomalungliverbrowser=types.SimpleNamespace(widgetRepresentation=lambda: representation)), raising=False)
    return types.SimpleNamespace(opened=opened, selected=selected)


@pytest.fixture
def lung_sample(tmp_path_factory) -> Path:
    from SarcomaLungLiverBrowserLib.samples import lung_pet_ct_dx

    return lung_pet_ct_dx.generate(tmp_path_factory.mktemp("lung"))


def test_a_dropped_collection_folder_opens_in_the_module(fake_application, lung_sample, tmp_path):
    module = import_module_file()
    (tmp_path / "holiday photos").mkdir()
    (tmp_path / "notes.txt").write_text("x")
    dialog = FakeScriptedFileDialog([tmp_path / "holiday photos", tmp_path / "notes.txt", lung_sample])
    handler = module.SarcomaLungLiverBrowserFileDialog(dialog)
    assert dialog.action == 1 and dialog.fileType and dialog.description

    handler.isMimeDataAccepted()
    assert dialog.accepted == [True] and handler.collectionFolders == [str(lung_sample)]
    handler.dropEvent()
    assert fake_application.selected == ["SarcomaLungLiverBrowser"]
    assert fake_application.opened == [str(lung_sample)]
    assert handler.collectionFolders == []


def test_other_folder_drops_are_left_to_slicer(fake_application, tmp_path):
    """The DICOM module and Add Data must still get folders that are not collections."""
    module = import_module_file()
    (tmp_path / "dicom export").mkdir()
    dialog = FakeScriptedFileDialog([tmp_path / "dicom export", tmp_path / "missing"])
    handler = module.SarcomaLungLiverBrowserFileDialog(dialog)
    handler.isMimeDataAccepted()
    assert dialog.accepted == [False]
    handler.dropEvent()
    assert fake_application.opened == [] and fake_application.selected == []


def test_the_reader_takes_only_pascal_voc_files(shared_samples, tmp_path):
    module = import_module_file()
    reader = module.SarcomaLungLiverBrowserFileReader(FakeReaderParent())
    real_voc = next((shared_samples / "lung_pet_ct_dx_voc").rglob("*.xml"))
    assert reader.canLoadFile(str(real_voc))
    (tmp_path / "scene.xml").write_text("<MRML></MRML>")
    assert not reader.canLoadFile(str(tmp_path / "scene.xml"))
    assert not reader.canLoadFile(str(tmp_path)), "folders never reach a reader; the FileDialog takes them"
    assert reader.extensions() == ["PASCAL VOC annotation (*.xml)"]


def test_the_reader_places_boxes_on_the_loaded_case_and_reports_through_user_messages(headless, lung_sample):
    module = import_module_file()
    logic = module.SarcomaLungLiverBrowserLogic(headless.scene)
    logic.openCollection(str(lung_sample))
    case_id = logic.caseIds()[0]
    logic.loadCase(case_id)
    voc_file = next((lung_sample / "Annotation").rglob("*.xml"))
    parent = FakeReaderParent()
    reader = module.SarcomaLungLiverBrowserFileReader(parent)
    assert reader.canLoadFile(str(voc_file))
    assert reader.load({"fileName": str(voc_file)}) is True
    assert parent.loadedNodes and all(headless.scene.GetNodeByID(node_id) is not None for node_id in parent.loadedNodes)
    errors = [message for event, message in parent.user_messages.messages if event == vtk.vtkCommand.ErrorEvent]
    assert errors == []


def test_the_reader_reports_a_box_without_its_slices_through_user_messages(headless, lung_sample):
    module = import_module_file()
    voc_file = next((lung_sample / "Annotation").rglob("*.xml"))
    parent = FakeReaderParent()
    assert module.SarcomaLungLiverBrowserFileReader(parent).load({"fileName": str(voc_file)}) is False
    assert parent.loadedNodes == []
    messages = parent.user_messages.messages
    assert messages and all(str(voc_file) in message for _, message in messages)
    assert any(event == vtk.vtkCommand.ErrorEvent for event, _ in messages)


def test_the_reader_reports_missing_packages_through_user_messages(headless, lung_sample, monkeypatch):
    from SarcomaLungLiverBrowserLib.dependencies import DependencyError

    module = import_module_file()

    def declined(**kwargs: Any):
        raise DependencyError("Sarcoma Lung Liver Browser cannot open collections without these Python packages")

    monkeypatch.setattr(module, "ensureModuleRequirements", declined)
    voc_file = next((lung_sample / "Annotation").rglob("*.xml"))
    parent = FakeReaderParent()
    assert module.SarcomaLungLiverBrowserFileReader(parent).load({"fileName": str(voc_file)}) is False
    assert parent.user_messages.messages == [
        (vtk.vtkCommand.ErrorEvent,
         f"{voc_file}: Sarcoma Lung Liver Browser cannot open collections without these Python packages")]
