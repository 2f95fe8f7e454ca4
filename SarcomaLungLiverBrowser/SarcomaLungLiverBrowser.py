"""SarcomaLungLiverBrowser: load TCIA sarcoma, breast, lung and liver collections into Slicer.

The module follows the Extension Wizard's shape: Module, Widget, Logic, Test.
All work happens in ``SarcomaLungLiverBrowserLib`` (Qt-free, tested on
slicer-core); the widget only connects the user interface to the logic.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, List, Optional

import slicer

try:
    import qt
    from slicer.ScriptedLoadableModule import (
        ScriptedLoadableModule,
        ScriptedLoadableModuleLogic,
        ScriptedLoadableModuleTest,
        ScriptedLoadableModuleWidget,
    )
    from slicer.util import VTKObservationMixin

    SLICER_APPLICATION = True
except ImportError:
    # slicer-core outside the application (tests, command line): the Logic
    # class must still import and work, so give it plain bases.
    qt = None
    SLICER_APPLICATION = False

    class ScriptedLoadableModule:  # type: ignore[no-redef]
        def __init__(self, parent: Any = None) -> None:
            self.parent = parent

    class ScriptedLoadableModuleWidget:  # type: ignore[no-redef]
        def __init__(self, parent: Any = None) -> None:
            self.parent = parent

    class ScriptedLoadableModuleLogic:  # type: ignore[no-redef]
        def __init__(self, parent: Any = None) -> None:
            self.parent = parent

    class ScriptedLoadableModuleTest:  # type: ignore[no-redef]
        pass

    class VTKObservationMixin:  # type: ignore[no-redef]
        def __init__(self) -> None:
            pass


MODULE_NAME = "SarcomaLungLiverBrowser"
SETTINGS_LAST_FOLDER = MODULE_NAME + "/LastCollectionFolder"


def _translate(text: str) -> str:
    """Slicer's translation function when available (Slicer >= 5.4)."""
    try:
        from slicer.i18n import tr

        return tr(text)
    except ImportError:
        return text


#
# SarcomaLungLiverBrowser
#


class SarcomaLungLiverBrowser(ScriptedLoadableModule):
    """Module description shown in Slicer's module panel."""

    def __init__(self, parent: Any) -> None:
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _translate("Sarcoma Lung Liver Browser")
        self.parent.categories = ["Informatics"]
        self.parent.dependencies = []
        self.parent.contributors = ["SarcomaLungLiverBrowser developers"]
        self.parent.helpText = _translate(
            "Load four public TCIA collections from your disk into the scene, with their annotations "
            "converted to native Slicer objects: Soft-tissue sarcoma (Hermessi MRI slices and the TCIA "
            "Soft-tissue-Sarcoma RTSTRUCTs), ISPY1-Tumor-SEG-Radiomics (NIfTI DCE-MRI, FTV/STV masks, radiomics), "
            "Lung-PET-CT-Dx (CT/PET, PASCAL VOC boxes to ROI markups) and Colorectal-Liver-Metastases "
            "(CT + DICOM SEG, clinical data). Choose a collection folder, double-click a case to load it, "
            "and review its annotations. See the extension's README for the console API."
        )
        self.parent.acknowledgementText = _translate(
            "Data: The Cancer Imaging Archive collections Soft-tissue-Sarcoma, ISPY1-Tumor-SEG-Radiomics, "
            "Lung-PET-CT-Dx and Colorectal-Liver-Metastases, and Hermessi et al. 2019."
        )


#
# SarcomaLungLiverBrowserWidget
#


class SarcomaLungLiverBrowserWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The module panel: wires the UI to :class:`SarcomaLungLiverBrowserLogic`; holds no data logic."""

    def __init__(self, parent: Any = None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic: Optional[SarcomaLungLiverBrowserLogic] = None
        self.ui: Any = None

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/SarcomaLungLiverBrowser.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = SarcomaLungLiverBrowserLogic()

        self.ui.collectionDirectoryButton.connect("directoryChanged(QString)", self.onCollectionFolderChanged)
        self.ui.refreshButton.connect("clicked(bool)", self.onRefresh)
        self.ui.loadCaseButton.connect("clicked(bool)", self.onLoadSelectedCase)
        self.ui.casesTable.connect("cellDoubleClicked(int,int)", self.onCaseDoubleClicked)
        self.ui.casesTable.connect("itemSelectionChanged()", self.updateButtons)

        lastFolder = qt.QSettings().value(SETTINGS_LAST_FOLDER, "")
        if lastFolder and os.path.isdir(lastFolder):
            self.ui.collectionDirectoryButton.directory = lastFolder
        self.updateButtons()

    def cleanup(self) -> None:
        self.removeObservers()

    # ------------------------------------------------------------------ helpers
    def _progressCallback(self, title: str):
        """A progress dialog the widget owns; the logic reports through the returned callback."""
        dialog = slicer.util.createProgressDialog(parent=slicer.util.mainWindow(), maximum=1000, labelText=title)
        dialog.setWindowTitle(title)

        def callback(message: str, fraction: float) -> bool:
            dialog.labelText = message
            dialog.value = int(fraction * 1000)
            slicer.app.processEvents()
            return bool(dialog.wasCanceled)

        return dialog, callback

    def _selectedCaseId(self) -> Optional[str]:
        row = self.ui.casesTable.currentRow()
        if row < 0:
            return None
        item = self.ui.casesTable.item(row, 1)
        return item.text() if item is not None else None

    def updateButtons(self) -> None:
        self.ui.loadCaseButton.enabled = self._selectedCaseId() is not None
        self.ui.refreshButton.enabled = self.logic is not None and self.logic.collection is not None

    # ------------------------------------------------------------------ slots
    def onCollectionFolderChanged(self, folder: str) -> None:
        qt.QSettings().setValue(SETTINGS_LAST_FOLDER, folder)
        self.onRefresh()

    def onRefresh(self) -> None:
        folder = self.ui.collectionDirectoryButton.directory
        dialog, callback = self._progressCallback(_translate("Indexing collection"))
        try:
            with slicer.util.tryWithErrorDisplay(_translate("This folder could not be opened as a collection."),
                                                 waitCursor=True):
                collection = self.logic.openCollection(folder)
                self.ui.collectionLabel.text = collection.title
                self.populateCasesTable(self.logic.caseTable(callback))
        finally:
            dialog.close()
        self.updateButtons()

    def populateCasesTable(self, table: Any) -> None:
        widget = self.ui.casesTable
        widget.clear()
        widget.setColumnCount(len(table.columns))
        widget.setHorizontalHeaderLabels([str(column) for column in table.columns])
        widget.setRowCount(len(table))
        for row, values in enumerate(table.itertuples(index=False)):
            for column, value in enumerate(values):
                item = qt.QTableWidgetItem(str(value))
                item.setFlags(item.flags() & ~qt.Qt.ItemIsEditable)
                widget.setItem(row, column, item)
        widget.resizeColumnsToContents()

    def onCaseDoubleClicked(self, row: int, column: int) -> None:
        self.ui.casesTable.selectRow(row)
        self.onLoadSelectedCase()

    def onLoadSelectedCase(self) -> None:
        caseId = self._selectedCaseId()
        if caseId is None:
            return
        dialog, callback = self._progressCallback(_translate("Loading case"))
        try:
            with slicer.util.tryWithErrorDisplay(_translate("The case could not be loaded."), waitCursor=True):
                loaded = self.logic.loadCase(caseId, callback)
                self.showLoadedCase(loaded)
        finally:
            dialog.close()

    def showLoadedCase(self, loaded: Any) -> None:
        """Show the case's first volume with its annotations and list its findings."""
        if loaded.background_volume is not None:
            slicer.util.setSliceViewerLayers(
                background=loaded.background_volume,
                foreground=loaded.foreground_volume,
                foregroundOpacity=loaded.foreground_opacity if loaded.foreground_volume is not None else None,
                fit=True,
            )
        self.ui.findingsList.clear()
        for finding in loaded.findings:
            self.ui.findingsList.addItem(f"[{finding.severity}] {finding.message}")


#
# SarcomaLungLiverBrowserLogic
#


class SarcomaLungLiverBrowserLogic(ScriptedLoadableModuleLogic):
    """Everything the module does, callable from the Python console without the widget.

    Example (Slicer's Python console)::

        logic = slicer.util.getModuleLogic("SarcomaLungLiverBrowser")  # or SarcomaLungLiverBrowserLogic()
        logic.openCollection("/data/Colorectal-Liver-Metastases")
        loaded = logic.loadCase("CRLM-CT-1001")
        loaded.segmentations[0].GetSegmentation().GetNumberOfSegments()
    """

    def __init__(self, scene: Any = None) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        from SarcomaLungLiverBrowserLib.browser import CollectionBrowser

        self.browser = CollectionBrowser(scene if scene is not None else slicer.mrmlScene)

    @property
    def collection(self) -> Any:
        """The open collection, or None."""
        return self.browser.collection

    def openCollection(self, folder: str, collectionKey: Optional[str] = None) -> Any:
        """Open a collection folder (detected unless ``collectionKey`` names it)."""
        return self.browser.open(Path(folder), collectionKey)

    def cases(self, progressCallback: Any = None) -> List[Any]:
        """The cases of the open collection (CaseInfo objects)."""
        return self.browser.cases(progressCallback)

    def caseTable(self, progressCallback: Any = None) -> Any:
        """The open collection's cases as a pandas DataFrame."""
        from SarcomaLungLiverBrowserLib.browser import cases_table

        return cases_table(self.browser.cases(progressCallback))

    def loadCase(self, caseId: str, progressCallback: Any = None) -> Any:
        """Load one case into the scene; returns a LoadedCase with the created nodes and findings.

        The case loads whole or not at all; a data problem raises an error naming the file.
        """
        return self.browser.load_case(caseId, progressCallback)

    def saveSceneBundle(self, mrbPath: str) -> Path:
        """Save the scene as a Slicer scene bundle (.mrb)."""
        from SarcomaLungLiverBrowserLib.browser import save_scene_bundle

        return save_scene_bundle(self.browser.scene, Path(mrbPath))


#
# SarcomaLungLiverBrowserTest
#


class SarcomaLungLiverBrowserTest(ScriptedLoadableModuleTest):
    """Self-test run inside Slicer ("Reload and Test", or ctest through the extension build)."""

    def setUp(self) -> None:
        slicer.mrmlScene.Clear()

    def runTest(self) -> None:
        self.setUp()
        self.test_LoadSampleCaseOfEachCollection()

    def test_LoadSampleCaseOfEachCollection(self) -> None:
        import tempfile

        from SarcomaLungLiverBrowserLib.samples import generate_all

        self.delayDisplay("Generating sample collections")
        folder = tempfile.mkdtemp(prefix="SarcomaLungLiverBrowserTest-")
        roots = generate_all(Path(folder))
        logic = SarcomaLungLiverBrowserLogic()
        for name, root in roots.items():
            self.delayDisplay(f"Loading a case of {name}")
            logic.openCollection(str(root))
            cases = logic.cases()
            self.assertTrue(cases, f"no cases found in {root}")
            loaded = logic.loadCase(cases[0].case_id)
            self.assertTrue(loaded.volumes, f"{name}: no volume loaded")
            for volume in loaded.volumes:
                self.assertIsNotNone(slicer.mrmlScene.GetNodeByID(volume.GetID()))
        self.delayDisplay("Test passed")
