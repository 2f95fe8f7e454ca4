"""The module panel's newer code paths, run with stand-ins for Qt and the Slicer application.

The widget cannot run without Slicer here. These tests import the module file as Slicer does, give it a
small fake ``qt`` (settings, cursor, file dialog) and fake widgets with the names of the ``.ui`` file
(each remembers its ``connect`` calls, so a test "clicks" a button by calling the slot the widget wired
to it), and run ``setup()`` itself. The Logic underneath is the real one on slicer-core: real
collections, the real offline IDC index, a real scene. What the fakes cannot show -- the look of the
panel, Qt's own signal dispatch -- is left to the self-test inside Slicer.
"""
from __future__ import annotations

import csv
import os
import types
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import pytest
import slicer

from module_file_fixtures import MODULE_FILE, import_module_file, isolated_header_cache  # noqa: F401

pytestmark = pytest.mark.usefixtures("isolated_header_cache")

UI_FILE = MODULE_FILE.parent / "Resources" / "UI" / "SarcomaLungLiverBrowser.ui"
CRLM_IDC = "colorectal_liver_metastases"
CRLM_PATIENT = "CRLM-CT-1085"  # the smallest CRLM patient in IDC v25: CT 21, SEG 1, AI SEG 1


# ---------------------------------------------------------------------- stand-ins
class FakeWidget:
    """A Qt widget as the module uses it: properties are attributes, ``connect`` is remembered."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.enabled = True
        self.text = ""
        self.checked = False
        self.directory = "."
        self.value = 0
        self.plainText = ""
        self.toolTip = ""
        self.currentText = ""
        self.connections: Dict[str, Callable] = {}
        self._items: List[Tuple[str, Any]] = []
        self.currentRow = -1
        self.currentIndex = -1

    def connect(self, signal: str, slot: Callable) -> None:
        self.connections[signal] = slot

    def emit(self, signal: str, *arguments: Any) -> Any:
        """Call the connected slot as PythonQt does: with only as many of the signal's arguments as it takes."""
        import inspect

        slot = self.connections[signal]
        parameters = inspect.signature(slot).parameters.values()
        if not any(p.kind == p.VAR_POSITIONAL for p in parameters):
            arguments = arguments[:len([p for p in parameters if p.default is p.empty
                                        and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)])]
        return slot(*arguments)

    def blockSignals(self, blocked: bool) -> bool:
        return False

    # QListWidget / QComboBox
    @property
    def count(self) -> int:
        return len(self._items)

    def addItem(self, text: str, data: Any = None) -> None:
        self._items.append((text, data))
        if self.currentIndex < 0:
            self.currentIndex = 0
            self.currentText = text

    def clear(self) -> None:
        self._items = []
        self.currentIndex = -1
        self.currentText = ""

    def item(self, row: int) -> Any:
        return types.SimpleNamespace(text=lambda: self._items[row][0])

    def itemData(self, index: int) -> Any:
        return self._items[index][1] if 0 <= index < len(self._items) else None

    def takeItem(self, row: int) -> None:
        self._items.pop(row)

    def texts(self) -> List[str]:
        return [text for text, _ in self._items]

    def __getattr__(self, name: str) -> Any:
        # Anything else the widget calls (resizeColumnsToContents, setFocus ...) is accepted and ignored.
        if name.startswith("__"):
            raise AttributeError(name)
        return lambda *arguments, **keywords: None


class FakeTableItem:
    def __init__(self, text: str) -> None:
        self._text = text

    def text(self) -> str:
        return self._text

    def setText(self, text: str) -> None:
        self._text = text

    def flags(self) -> int:
        return 0

    def setFlags(self, flags: int) -> None:
        pass


class FakeTable(FakeWidget):
    """QTableWidget: ``currentRow()`` is a method there (a property on QListWidget)."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        del self.currentRow  # the method below, not FakeWidget's list property
        self.rowCount = self.columnCount = 0
        self.cells: Dict[Tuple[int, int], FakeTableItem] = {}
        self.headers: List[str] = []
        self._current = -1

    def currentRow(self) -> int:  # type: ignore[override]
        return self._current

    def setColumnCount(self, count: int) -> None:
        self.columnCount = count

    def setRowCount(self, count: int) -> None:
        self.rowCount = count

    def setHorizontalHeaderLabels(self, labels: List[str]) -> None:
        self.headers = list(labels)

    def horizontalHeaderItem(self, column: int) -> Optional[FakeTableItem]:
        return FakeTableItem(self.headers[column]) if column < len(self.headers) else None

    def setItem(self, row: int, column: int, item: FakeTableItem) -> None:
        self.cells[(row, column)] = item

    def item(self, row: int, column: int = 0) -> Optional[FakeTableItem]:  # type: ignore[override]
        return self.cells.get((row, column))

    def clear(self) -> None:
        self.cells = {}

    def selectRow(self, row: int) -> None:
        self._current = row


def ui_widget_names() -> List[str]:
    import xml.etree.ElementTree as ElementTree

    return [widget.get("name") for widget in ElementTree.parse(UI_FILE).iter("widget")]


class FakeSettings:
    store: Dict[str, Any] = {}

    def value(self, key: str, default: Any = None) -> Any:
        return self.store.get(key, default)

    def setValue(self, key: str, value: Any) -> None:
        self.store[key] = value


@pytest.fixture
def panel(headless, monkeypatch, tmp_path):
    """The module's widget after ``setup()``, on fake widgets, with a real Logic on the test's scene."""
    module = import_module_file()
    messages: List[Tuple[str, str]] = []
    saved_file: List[str] = []
    fake_qt = types.SimpleNamespace(
        QSettings=FakeSettings,
        QApplication=types.SimpleNamespace(setOverrideCursor=lambda cursor: None, restoreOverrideCursor=lambda: None),
        Qt=types.SimpleNamespace(WaitCursor=3, ItemIsEditable=2),
        QPushButton=lambda text: FakeWidget("chooseReviewStoreButton"),
        QFileDialog=types.SimpleNamespace(getSaveFileName=lambda *arguments: saved_file[0] if saved_file else ""),
        QListWidgetItem=lambda text: types.SimpleNamespace(setToolTip=lambda tip: None, text=text),
        QTableWidgetItem=FakeTableItem,
    )
    monkeypatch.setattr(module, "qt", fake_qt)
    FakeSettings.store = {}
    active_tables: List[str] = []
    selection = types.SimpleNamespace(SetActiveTableID=active_tables.append)
    application_logic = types.SimpleNamespace(GetSelectionNode=lambda: selection, PropagateTableSelection=lambda: None)
    monkeypatch.setattr(slicer, "app", types.SimpleNamespace(processEvents=lambda: None,
                                                             applicationLogic=lambda: application_logic,
                                                             testingEnabled=lambda: True), raising=False)
    for name, kind in (("errorDisplay", "error"), ("warningDisplay", "warning"), ("infoDisplay", "info")):
        monkeypatch.setattr(slicer.util, name, lambda text, kind=kind, **keywords: messages.append((kind, text)),
                            raising=False)
    monkeypatch.setattr(slicer.util, "mainWindow", lambda: None, raising=False)
    monkeypatch.setattr(slicer.util, "confirmOkCancelDisplay",
                        lambda text, **keywords: messages.append(("question", text)) and False, raising=False)
    dialogs: List[Any] = []

    def progress_dialog(**keywords: Any) -> Any:
        dialog = types.SimpleNamespace(**{"labelText": "", "value": 0, "wasCanceled": False, "close": lambda: None,
                                          **keywords})
        dialogs.append(dialog)
        return dialog

    monkeypatch.setattr(slicer.util, "createProgressDialog", progress_dialog, raising=False)
    monkeypatch.setattr(slicer, "mrmlScene", headless.scene)
    names = ui_widget_names()
    ui = types.SimpleNamespace(**{name: FakeWidget(name) for name in names})
    ui.casesTable = FakeTable("casesTable")
    ui.reviewCollapsibleButton.layout = lambda: types.SimpleNamespace(addRow=lambda widget: None)
    monkeypatch.setattr(slicer.util, "loadUI", lambda path: FakeWidget("root"), raising=False)
    monkeypatch.setattr(slicer.util, "childWidgetVariables", lambda widget: ui, raising=False)
    monkeypatch.setattr(module.ScriptedLoadableModuleWidget, "setup", lambda self: None, raising=False)
    widget = module.SarcomaLungLiverBrowserWidget(None)
    observers: List[Tuple[Any, int, Callable]] = []
    widget.addObserver = lambda caller, event, method: observers.append((caller, event, method))
    widget.layout = types.SimpleNamespace(addWidget=lambda child: None)
    widget.resourcePath = lambda relative: str(MODULE_FILE.parent / "Resources" / relative)
    # The Logic runs on the test's scene (the module's own default is Slicer's scene).
    logic_class = module.SarcomaLungLiverBrowserLogic
    monkeypatch.setattr(module, "SarcomaLungLiverBrowserLogic", lambda: logic_class(headless.scene))
    widget.setup()
    widget._dependenciesReady = True  # the module's packages are this test environment's
    return types.SimpleNamespace(module=module, widget=widget, ui=ui, messages=messages, observers=observers,
                                 saved_file=saved_file, active_tables=active_tables, scene=headless.scene)


@pytest.fixture(scope="module")
def crlm_root(tmp_path_factory) -> Path:
    from SarcomaLungLiverBrowserLib.samples import crlm

    return crlm.generate(tmp_path_factory.mktemp("crlm"))


# ---------------------------------------------------------------------- wiring and scene close
def test_setup_wires_the_new_controls_by_the_ui_files_names(panel):
    ui = panel.ui
    assert "clicked(bool)" in ui.checkCompletenessButton.connections
    assert "clicked(bool)" in ui.saveCompletenessCsvButton.connections
    assert "clicked(bool)" in ui.idcDownloadButton.connections and "clicked(bool)" in ui.idcCancelButton.connections
    assert "directoryChanged(QString)" in ui.annotationFolderButton.connections
    assert ui.idcCollectionComboBox.texts() == list(panel.module.IDC_COLLECTIONS)
    # Nothing to save or cancel yet.
    assert not ui.saveCompletenessCsvButton.enabled and not ui.idcCancelButton.enabled


def test_scene_end_close_clears_the_verdict_combo_box(panel):
    ui = panel.ui
    ui.annotationComboBox.addItem("Whole case", "")
    ui.annotationComboBox.addItem("Tumor_1", "Tumor_1")
    ui.caseLabel.text = "CRLM-CT-1001"
    end_close = [method for caller, event, method in panel.observers if event == slicer.mrmlScene.EndCloseEvent]
    assert len(end_close) == 1 and panel.observers[0][0] is slicer.mrmlScene
    end_close[0](slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent)
    assert ui.annotationComboBox.count == 0 and ui.caseLabel.text == "(none loaded)"


# ---------------------------------------------------------------------- Lung annotation folders
def test_annotation_folders_reach_the_logic_as_annotations(panel, tmp_path, monkeypatch):
    from SarcomaLungLiverBrowserLib.samples import lung_pet_ct_dx

    root = lung_pet_ct_dx.generate(tmp_path / "lung")
    outside = tmp_path / "annotations elsewhere"
    outside.mkdir()
    ui = panel.ui
    ui.annotationFolderButton.emit("directoryChanged(QString)", str(outside))
    ui.annotationFolderButton.emit("directoryChanged(QString)", str(outside))  # chosen twice: listed once
    ui.annotationFolderButton.emit("directoryChanged(QString)", ".")  # the button's start value: not a choice
    assert panel.widget.annotationFolders() == [str(outside)] and ui.removeAnnotationFolderButton.enabled
    service = panel.widget.logic.service
    received: List[Any] = []
    original_open = service.open

    def open_recording(folder, collection_key=None, **keywords):
        # The service's own `annotations` parameter comes with the Lung work (h/lesions); here only what the
        # Logic hands over is checked, and the folder is opened as before.
        received.append(keywords.get("annotations"))
        return original_open(folder, collection_key)

    monkeypatch.setattr(service, "open", open_recording)
    assert panel.widget.openCollectionFolder(str(root))
    assert received == [[outside]]
    ui.removeAnnotationFolderButton.emit("clicked(bool)", True)
    assert panel.widget.annotationFolders() == [] and not ui.removeAnnotationFolderButton.enabled
    assert panel.widget.openCollectionFolder(str(root))
    assert received[-1] is None  # no folders: the service is called as before, without the argument


def test_a_collection_below_a_folder_named_in_latin1_shows_text_qt_can_take(panel, tmp_path, monkeypatch):
    """Qt takes no lone surrogate: case table cells, findings and their tooltips spell such a byte out as \\xe9."""
    import os

    from SarcomaLungLiverBrowserLib.samples import hermessi

    root = hermessi.generate(tmp_path / os.fsdecode(b"\xe9tude"))
    shown: List[str] = []

    def recorded_item(text: str) -> Any:
        shown.append(text)
        return types.SimpleNamespace(setToolTip=shown.append, text=text)

    panel.module.qt.QListWidgetItem = recorded_item
    monkeypatch.setattr(slicer.util, "setSliceViewerLayers", lambda *arguments, **keywords: None)  # no views here
    assert panel.widget.openCollectionFolder(str(root))
    table = panel.ui.casesTable
    cells = [item.text() for item in table.cells.values()]
    assert cells and any("\\xe9tude" in text for text in cells), cells
    panel.widget.loadCase(panel.widget.logic.caseIds()[0])
    panel.widget.onExportReport()  # written beside the review store, below the Latin-1 folder
    assert not [message for message in panel.messages if message[0] != "info"], panel.messages
    (written,) = [text for kind, text in panel.messages if kind == "info" and text.startswith("Written:")]
    assert "\\xe9tude" in written
    for text in cells + shown + [written]:
        text.encode("utf-8")  # raises on a lone surrogate


def test_the_logic_forwards_annotations_only_when_given(headless, tmp_path, monkeypatch):
    module = import_module_file()
    logic = module.SarcomaLungLiverBrowserLogic(headless.scene)
    calls: List[Tuple[Any, ...]] = []
    monkeypatch.setattr(logic.service, "open", lambda *arguments, **keywords: calls.append((arguments, keywords)))
    logic.openCollection(str(tmp_path), annotations=[str(tmp_path / "a"), str(tmp_path / "b")])
    logic.openCollection(str(tmp_path), "lung_pet_ct_dx")
    assert calls == [((tmp_path, None), {"annotations": [tmp_path / "a", tmp_path / "b"]}),
                     ((tmp_path, "lung_pet_ct_dx"), {})]


# ---------------------------------------------------------------------- Imaging Data Commons
def test_idc_requirements_are_pinned_like_the_library_and_met_here():
    module = import_module_file()
    from SarcomaLungLiverBrowserLib.dependencies import Readiness, missing_requirements, requirements
    from SarcomaLungLiverBrowserLib.review.download import IDC_INDEX_REQUIREMENT

    assert requirements(module.IDC_REQUIREMENTS_FILE) == [IDC_INDEX_REQUIREMENT]
    assert missing_requirements(module.IDC_REQUIREMENTS_FILE) == []
    # Installed here: ready without asking.
    asked: List[str] = []
    slicer_util = getattr(slicer, "util")
    original = getattr(slicer_util, "confirmOkCancelDisplay", None)
    try:
        slicer_util.confirmOkCancelDisplay = lambda question: asked.append(question) or False
        assert module.ensureIdcRequirements() is Readiness.READY
    finally:
        if original is None:
            del slicer_util.confirmOkCancelDisplay
        else:
            slicer_util.confirmOkCancelDisplay = original
    assert asked == []


def test_idc_requirements_missing_asks_and_a_no_installs_nothing(tmp_path, monkeypatch):
    from SarcomaLungLiverBrowserLib import dependencies

    module = import_module_file()
    asked: List[str] = []
    installed: List[str] = []
    monkeypatch.setattr(slicer.util, "confirmOkCancelDisplay", lambda question: asked.append(question) or False,
                        raising=False)
    monkeypatch.setattr(slicer.util, "pip_install", installed.append, raising=False)
    monkeypatch.setattr(dependencies, "installed_version", lambda name: None)
    monkeypatch.setattr(module, "_slicerPackaging", lambda: None)
    real = dependencies.ensure_requirements
    monkeypatch.setattr(dependencies, "ensure_requirements",
                        lambda **keywords: real(**keywords, version_of=lambda name: None))
    with pytest.raises(dependencies.InstallDeclined):
        module.ensureIdcRequirements()
    assert len(asked) == 1 and "idc-index==0.13.4" in asked[0] and installed == []


def test_patient_list_parsing():
    module = import_module_file()
    parse = module.SarcomaLungLiverBrowserLogic.parsePatientList
    assert parse(" Lung_Dx-A0001, Lung_Dx-A0002;Lung_Dx-A0001\nLung_Dx-B0003 ") == [
        "Lung_Dx-A0001", "Lung_Dx-A0002", "Lung_Dx-B0003"]
    assert parse("") == [] and parse("  , ") == []


def test_logic_plans_a_download_against_the_real_index_without_the_network(tmp_path):
    """Selection and destinations, offline (what ``sllb download --dry-run`` prints)."""
    import pyarrow.parquet as parquet
    from SarcomaLungLiverBrowserLib.errors import DataError
    from SarcomaLungLiverBrowserLib.review.completeness import index_parquet_path

    module = import_module_file()
    logic = module.SarcomaLungLiverBrowserLogic
    plan = logic.planIdcDownload(CRLM_IDC, str(tmp_path / "idc"), [CRLM_PATIENT])
    index = parquet.read_table(index_parquet_path(), columns=["collection_id", "PatientID", "SeriesInstanceUID",
                                                               "StudyInstanceUID", "Modality"]).to_pandas()
    expected = index[(index.collection_id == CRLM_IDC) & (index.PatientID == CRLM_PATIENT)]
    assert sorted(plan.series.SeriesInstanceUID) == sorted(expected.SeriesInstanceUID) and len(plan.series) == 3
    for row in plan.series.itertuples():
        assert row.destination == str(tmp_path / "idc" / CRLM_IDC / CRLM_PATIENT / row.StudyInstanceUID
                                      / f"{row.Modality}_{row.SeriesInstanceUID}")
    assert not (tmp_path / "idc").exists()  # planning writes nothing
    with pytest.raises(DataError, match="no patient"):
        logic.planIdcDownload(CRLM_IDC, str(tmp_path), ["CRLM-CT-9999"])


def test_check_completeness_shows_a_table_node_and_saves_the_csv(panel, crlm_root, tmp_path):
    ui = panel.ui
    panel.widget._idcDependenciesReady = True
    ui.idcFolderButton.directory = str(crlm_root)
    ui.checkCompletenessButton.emit("clicked(bool)", True)
    assert not [message for message in panel.messages if message[0] == "error"], panel.messages
    report = panel.widget.lastCompleteness
    # Generated data: every series is unknown to IDC, and said so.
    assert report.rows and {row["status"] for row in report.rows} == {"series unknown to IDC"}
    tables = [node for node in slicer.util.getNodesByClass("vtkMRMLTableNode", panel.scene)
              if node.GetName() == "IDC completeness"]
    assert len(tables) == 1 and panel.active_tables == [tables[0].GetID()]
    table = tables[0].GetTable()
    assert table.GetNumberOfRows() == len(report.rows)
    statuses = table.GetColumnByName("status")
    assert {statuses.GetValue(row) for row in range(table.GetNumberOfRows())} == {"series unknown to IDC"}
    assert "series unknown to IDC" in ui.idcStatusLabel.text
    assert ui.saveCompletenessCsvButton.enabled
    # A second check replaces the table rather than adding another.
    ui.checkCompletenessButton.emit("clicked(bool)", True)
    assert len([node for node in slicer.util.getNodesByClass("vtkMRMLTableNode", panel.scene)
                if node.GetName() == "IDC completeness"]) == 1
    target = tmp_path / "completeness.csv"
    panel.saved_file.append(str(target))
    ui.saveCompletenessCsvButton.emit("clicked(bool)", True)
    with open(target, newline="", encoding="utf-8") as stream:
        rows = list(csv.DictReader(stream))
    assert len(rows) == len(report.rows) and {row["status"] for row in rows} == {"series unknown to IDC"}


def test_download_uses_the_panels_choices_its_progress_bar_and_its_cancel_button(panel, tmp_path, monkeypatch):
    from SarcomaLungLiverBrowserLib.errors import LoadCancelled

    ui = panel.ui
    panel.widget._idcDependenciesReady = True
    destination = tmp_path / "idc"
    ui.idcFolderButton.directory = str(destination)
    ui.idcCollectionComboBox.currentText = CRLM_IDC
    ui.idcPatientsLineEdit.text = CRLM_PATIENT
    ui.idcMissingOnlyCheckBox.checked = True
    logic = panel.widget.logic
    runs: List[Any] = []
    during: Dict[str, Any] = {}

    def cancelled_download(plan, progress=None, client=None):
        # Stands in for idc-index fetching (no network here): reports progress, and the user presses Cancel.
        runs.append(plan)
        assert progress("Downloading: 1.0 of 10.0 MB", 0.1) is False
        during["cancel enabled"] = ui.idcCancelButton.enabled
        during["download enabled"] = ui.idcDownloadButton.enabled
        during["bar"] = ui.idcProgressBar.value
        ui.idcCancelButton.emit("clicked(bool)", True)
        if progress("Downloading: 2.0 of 10.0 MB", 0.2):
            raise LoadCancelled("download cancelled")
        raise AssertionError("Cancel was not passed on through the progress callback")

    monkeypatch.setattr(logic, "runIdcDownload", cancelled_download)
    ui.idcDownloadButton.emit("clicked(bool)", True)
    assert len(runs) == 1
    plan = runs[0]
    assert plan.collection_id == CRLM_IDC and plan.patients == [CRLM_PATIENT] and plan.missing_only
    assert plan.folder == destination and len(plan.series) == 3
    assert during == {"cancel enabled": True, "download enabled": False, "bar": int((0.05 + 0.95 * 0.1) * 1000)}
    assert not panel.messages  # Cancel is not an error
    assert "Cancelled" in ui.idcStatusLabel.text and not ui.idcCancelButton.enabled and ui.idcDownloadButton.enabled

    # A finished download shows the verification as the completeness table.
    def finished_download(plan, progress=None, client=None):
        from SarcomaLungLiverBrowserLib.review.completeness import CompletenessReport

        progress("Verifying", 0.95)
        return CompletenessReport(plan.folder, [], [{"collection_id": CRLM_IDC, "patients_expected": 1,
                                                     "patients_on_disk": 1, "series_expected": 3,
                                                     "series_complete": 3, "instances_expected": 23,
                                                     "instances_on_disk": 23, "analysis_results": ""}], "25.0.5")

    monkeypatch.setattr(logic, "runIdcDownload", finished_download)
    ui.idcDownloadButton.emit("clicked(bool)", True)
    assert [kind for kind, _ in panel.messages] == ["info"] and "3/3 series complete" in panel.messages[0][1]
    assert panel.widget.lastCompleteness.complete


def test_download_of_an_unknown_collection_is_one_clear_message(panel, tmp_path):
    ui = panel.ui
    panel.widget._idcDependenciesReady = True
    ui.idcFolderButton.directory = str(tmp_path)
    ui.idcCollectionComboBox.currentText = "lung-pet-ct-dx"
    ui.idcDownloadButton.emit("clicked(bool)", True)
    assert [kind for kind, _ in panel.messages] == ["error"]
    assert "no collection 'lung-pet-ct-dx'" in panel.messages[0][1]


# ---------------------------------------------------------------------- a read-only collection (#20)
def test_read_only_collection_shows_and_exports_its_verdicts_and_the_default_export_is_refused_clearly(
        panel, crlm_root, tmp_path, monkeypatch):
    from SarcomaLungLiverBrowserLib.service import ReviewService

    with ReviewService(header_cache=None, snapshots=False) as service:
        service.open(crlm_root)
        service.set_verdict("CRLM-CT-1002", "rejected", "tumour outside the liver", reviewer="Ann")
    store_file = crlm_root / ".sllb_review.sqlite"
    before = store_file.read_bytes()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: False if Path(path) == crlm_root and mode & os.W_OK
                        else real_access(path, mode))
    widget, ui = panel.widget, panel.ui
    assert widget.openCollectionFolder(str(crlm_root))
    logic = widget.logic
    assert logic.reviewProgress() == (1, 3)
    assert logic.verdictOf("CRLM-CT-1002") == "rejected"
    verdicts, problem = logic.caseVerdictsOrProblem()
    assert verdicts["CRLM-CT-1002"] == "rejected" and problem == ""
    assert logic.reads("CRLM-CT-1002")[0].reviewer == "Ann" and logic.adjudicationOf("CRLM-CT-1002") is None
    assert logic.nextUnreviewedCaseId("CRLM-CT-1002") == "CRLM-CT-1003"
    # The default output folder is beside the store, in the read-only collection: a clear message, nothing written.
    panel.messages.clear()
    ui.exportReportButton.emit("clicked(bool)", True)
    assert [kind for kind, _ in panel.messages] == ["warning"]
    assert "read-only" in panel.messages[0][1] and "Quality checks and export" in panel.messages[0][1]
    assert not (crlm_root / "SarcomaLungLiverBrowser output").exists()
    # Chosen elsewhere, the report carries the verdicts.
    out = tmp_path / "report"
    ui.outputDirectoryButton.emit("directoryChanged(QString)", str(out))
    ui.outputDirectoryButton.directory = str(out)
    panel.messages.clear()
    ui.exportReportButton.emit("clicked(bool)", True)
    assert [kind for kind, _ in panel.messages] == ["info"], panel.messages
    with open(out / "review.csv", newline="", encoding="utf-8") as stream:
        rows = {row["case_id"]: row for row in csv.DictReader(stream)}
    assert rows["CRLM-CT-1002"]["verdict"] == "rejected"
    assert store_file.read_bytes() == before  # reading never rewrote the store
    # Recording a verdict there still asks for another file (through the service's refusal, not silently).
    with pytest.raises(Exception, match="choose another file"):
        logic.setVerdict("CRLM-CT-1001", "accepted", "", "Bob")
