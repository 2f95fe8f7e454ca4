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
SETTINGS_REVIEWER = MODULE_NAME + "/Reviewer"
SETTINGS_OUTPUT_FOLDER = MODULE_NAME + "/OutputFolder"


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

VERDICTS = ("accepted", "needs correction", "rejected")
WHOLE_CASE = ""
SETTINGS_BLINDED = MODULE_NAME + "/Blinded"

#: Keyboard-only review: (keys, what it does, widget method). Active only while the module is shown
#: (created in ``enter``, removed in ``exit``); shown in the review panel from this same table.
#: Ctrl+Shift keeps them clear of Slicer's own Ctrl shortcuts and of the slice views' plain keys.
REVIEW_SHORTCUTS = (
    ("Ctrl+N", "next case", "onNextCase"),
    ("Ctrl+P", "previous case", "onPreviousCase"),
    ("Ctrl+U", "next unreviewed case", "onNextUnreviewed"),
    ("Ctrl+Shift+A", "accept", "onAccept"),
    ("Ctrl+Shift+C", "needs correction", "onNeedsCorrection"),
    ("Ctrl+Shift+R", "reject", "onReject"),
    ("Ctrl+J", "jump to the next finding", "onNextFinding"),
    ("Ctrl+Shift+M", "write a comment", "onFocusComment"),
)


class SarcomaLungLiverBrowserWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The module panel: wires the UI to :class:`SarcomaLungLiverBrowserLogic`; holds no data logic."""

    def __init__(self, parent: Any = None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic: Optional[SarcomaLungLiverBrowserLogic] = None
        self.ui: Any = None
        self.loadedCase: Any = None
        self.lastQA: Any = None
        self._shortcuts: List[Any] = []

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
        self.ui.filterLineEdit.connect("textChanged(QString)", self.onFilterChanged)
        self.ui.findingsList.connect("itemClicked(QListWidgetItem*)", self.onFindingClicked)
        self.ui.previousCaseButton.connect("clicked(bool)", lambda: self.onStep(-1))
        self.ui.nextCaseButton.connect("clicked(bool)", lambda: self.onStep(1))
        self.ui.nextUnreviewedButton.connect("clicked(bool)", self.onNextUnreviewed)
        self.ui.acceptButton.connect("clicked(bool)", self.onAccept)
        self.ui.needsCorrectionButton.connect("clicked(bool)", self.onNeedsCorrection)
        self.ui.rejectButton.connect("clicked(bool)", self.onReject)
        self.ui.reviewerLineEdit.connect("editingFinished()", self.onReviewerChanged)
        self.ui.blindedCheckBox.connect("toggled(bool)", self.onBlindedToggled)
        self.ui.annotationComboBox.connect("currentIndexChanged(int)", self.showReads)
        self.ui.shortcutsLabel.text = "\n".join(f"{keys}: {_translate(action)}" for keys, action, _ in REVIEW_SHORTCUTS)
        keysOf = {methodName: keys for keys, _, methodName in REVIEW_SHORTCUTS}
        for button, methodName in ((self.ui.acceptButton, "onAccept"), (self.ui.needsCorrectionButton,
                                   "onNeedsCorrection"), (self.ui.rejectButton, "onReject")):
            button.toolTip = _translate("Record this verdict ({keys})").format(keys=keysOf[methodName])
        self.ui.runQAButton.connect("clicked(bool)", self.onRunQA)
        self.ui.exportReportButton.connect("clicked(bool)", self.onExportReport)
        self.ui.saveCorrectionsButton.connect("clicked(bool)", self.onSaveCorrections)

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)

        settings = qt.QSettings()
        self.ui.reviewerLineEdit.text = settings.value(SETTINGS_REVIEWER, "")
        self.ui.blindedCheckBox.checked = str(settings.value(SETTINGS_BLINDED, "false")).lower() == "true"
        self.logic.setReader(self.ui.reviewerLineEdit.text, self.ui.blindedCheckBox.checked)
        lastOutput = settings.value(SETTINGS_OUTPUT_FOLDER, "")
        if lastOutput:
            self.ui.outputDirectoryButton.directory = lastOutput
        lastFolder = settings.value(SETTINGS_LAST_FOLDER, "")
        if lastFolder and os.path.isdir(lastFolder):
            # Setting the directory emits directoryChanged, which indexes the folder.
            self.ui.collectionDirectoryButton.directory = lastFolder
        self.updateButtons()

    def enter(self) -> None:
        # Keyboard shortcuts only while the module is shown, so they never clash with other modules.
        mainWindow = slicer.util.mainWindow()
        for keys, _, methodName in REVIEW_SHORTCUTS:
            shortcut = qt.QShortcut(qt.QKeySequence(keys), mainWindow)
            shortcut.connect("activated()", getattr(self, methodName))
            self._shortcuts.append(shortcut)

    def exit(self) -> None:
        for shortcut in self._shortcuts:
            shortcut.disconnect("activated()")
            shortcut.setParent(None)
        self._shortcuts = []

    def cleanup(self) -> None:
        self.exit()
        self.removeObservers()

    def onSceneStartClose(self, caller: Any, event: Any) -> None:
        # The scene's nodes are about to go; forget the case that owned them.
        self.loadedCase = None
        if self.logic is not None:
            self.logic.forgetLoadedCases()
        if self.ui is not None:
            self.ui.findingsList.clear()

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

    def _runWithProgress(self, title: str, errorMessage: str, work):
        """Run ``work(callback)`` with a progress dialog and Slicer's error display."""
        if not self._ensureDependencies():
            return None
        dialog, callback = self._progressCallback(title)
        result = None
        try:
            with slicer.util.tryWithErrorDisplay(errorMessage, waitCursor=True):
                result = work(callback)
        finally:
            dialog.close()
        return result

    def _ensureDependencies(self) -> bool:
        """Install missing Python packages at first use, after asking (never at startup)."""
        from SarcomaLungLiverBrowserLib.dependencies import REQUIREMENTS_FILE, missing_requirements

        packaging = getattr(slicer, "packaging", None)
        if packaging is not None and hasattr(packaging, "pip_ensure"):
            # Slicer 5.11+: asks, shows progress, offers a restart, skips in testing mode.
            packaging.pip_ensure(packaging.load_requirements(str(REQUIREMENTS_FILE)),
                                 requester="Sarcoma Lung Liver Browser")
            return not missing_requirements()
        missing = missing_requirements()
        if not missing:
            return True
        if not slicer.util.confirmOkCancelDisplay(
                _translate("Sarcoma Lung Liver Browser needs these Python packages, which are not installed:\n\n")
                + "\n".join(missing) + _translate("\n\nInstall them now?")):
            return False
        with slicer.util.tryWithErrorDisplay(_translate("Installing the Python packages failed."), waitCursor=True):
            slicer.util.pip_install(missing)
        return not missing_requirements()

    def _selectedCaseId(self) -> Optional[str]:
        row = self.ui.casesTable.currentRow()
        if row < 0:
            return None
        item = self.ui.casesTable.item(row, self._caseIdColumn())
        return item.text() if item is not None else None

    def _caseIdColumn(self) -> int:
        for column in range(self.ui.casesTable.columnCount):
            header = self.ui.casesTable.horizontalHeaderItem(column)
            if header is not None and header.text() == "case_id":
                return column
        return 0

    def _selectCase(self, caseId: str) -> None:
        column = self._caseIdColumn()
        for row in range(self.ui.casesTable.rowCount):
            item = self.ui.casesTable.item(row, column)
            if item is not None and item.text() == caseId:
                self.ui.casesTable.selectRow(row)
                self.ui.casesTable.scrollToItem(item)
                return

    def updateButtons(self) -> None:
        haveCollection = self.logic is not None and self.logic.collection is not None
        haveCase = self.loadedCase is not None
        self.ui.loadCaseButton.enabled = self._selectedCaseId() is not None
        self.ui.refreshButton.enabled = haveCollection
        for button in (self.ui.previousCaseButton, self.ui.nextCaseButton, self.ui.nextUnreviewedButton,
                       self.ui.runQAButton, self.ui.exportReportButton):
            button.enabled = haveCollection
        for button in (self.ui.acceptButton, self.ui.needsCorrectionButton, self.ui.rejectButton,
                       self.ui.saveCorrectionsButton):
            button.enabled = haveCase

    def updateReviewProgress(self) -> None:
        if self.logic is None or self.logic.collection is None:
            self.ui.reviewProgressLabel.text = ""
            return
        reviewed, total = self.logic.reviewProgress()
        self.ui.reviewProgressLabel.text = _translate("{reviewed} of {total} reviewed").format(
            reviewed=reviewed, total=total)

    # ------------------------------------------------------------------ collection and cases
    def onCollectionFolderChanged(self, folder: str) -> None:
        qt.QSettings().setValue(SETTINGS_LAST_FOLDER, folder)
        self.onRefresh()

    def onRefresh(self) -> None:
        folder = self.ui.collectionDirectoryButton.directory

        def work(callback):
            collection = self.logic.openCollection(folder)
            return collection, self.logic.caseTable(callback)

        result = self._runWithProgress(_translate("Indexing collection"),
                                       _translate("This folder could not be opened as a collection."), work)
        if result is not None:
            collection, table = result
            self.ui.collectionLabel.text = collection.title
            self.populateCasesTable(table)
        self.updateReviewProgress()
        self.updateButtons()

    def populateCasesTable(self, table: Any) -> None:
        """Show the case table, with each case's verdict so far."""
        widget = self.ui.casesTable
        widget.setSortingEnabled(False)
        widget.clear()
        columns = list(table.columns) + ["verdict"]
        widget.setColumnCount(len(columns))
        widget.setHorizontalHeaderLabels([str(column) for column in columns])
        widget.setRowCount(len(table))
        for row, values in enumerate(table.itertuples(index=False)):
            verdict = self.logic.verdictOf(str(values[list(table.columns).index("case_id")]))
            for column, value in enumerate(list(values) + [verdict]):
                item = qt.QTableWidgetItem(str(value))
                item.setFlags(item.flags() & ~qt.Qt.ItemIsEditable)
                widget.setItem(row, column, item)
        widget.setSortingEnabled(True)
        widget.resizeColumnsToContents()
        self.onFilterChanged(self.ui.filterLineEdit.text)

    def onFilterChanged(self, text: str) -> None:
        """Hide rows that do not contain every word of the filter (any column)."""
        words = [word.lower() for word in str(text).split()]
        widget = self.ui.casesTable
        for row in range(widget.rowCount):
            cells = " ".join(widget.item(row, column).text().lower()
                             for column in range(widget.columnCount) if widget.item(row, column) is not None)
            widget.setRowHidden(row, not all(word in cells for word in words))

    def onCaseDoubleClicked(self, row: int, column: int) -> None:
        self.ui.casesTable.selectRow(row)
        self.onLoadSelectedCase()

    def onLoadSelectedCase(self) -> None:
        caseId = self._selectedCaseId()
        if caseId is not None:
            self.loadCase(caseId)

    def loadCase(self, caseId: str) -> None:
        loaded = self._runWithProgress(_translate("Loading case"), _translate("The case could not be loaded."),
                                       lambda callback: self.logic.loadCase(caseId, callback))
        if loaded is not None:
            self.loadedCase = loaded
            self._selectCase(loaded.case.case_id)
            self.showLoadedCase(loaded)
        self.updateButtons()

    def showLoadedCase(self, loaded: Any) -> None:
        """Show the case's volumes with their annotations, its findings and its review so far."""
        if loaded.background_volume is not None:
            slicer.util.setSliceViewerLayers(
                background=loaded.background_volume,
                foreground=loaded.foreground_volume,
                foregroundOpacity=loaded.foreground_opacity if loaded.foreground_volume is not None else None,
                fit=True,
            )
        self.ui.findingsList.clear()
        for finding in loaded.findings:
            item = qt.QListWidgetItem(f"[{finding.severity}] {finding.message}")
            item.setToolTip(finding.path or finding.check)
            self.ui.findingsList.addItem(item)
        self.ui.annotationComboBox.clear()
        self.ui.annotationComboBox.addItem(_translate("Whole case"), WHOLE_CASE)
        for key in self.logic.annotationKeys(loaded):
            self.ui.annotationComboBox.addItem(key, key)
        self.ui.commentTextEdit.plainText = self.logic.commentOf(loaded.case.case_id)
        self.ui.caseLabel.text = f"{loaded.case.case_id}  ({loaded.case.diagnosis or loaded.case.collection})"
        self.showReads()
        self.updateReviewProgress()

    def onFindingClicked(self, item: Any) -> None:
        if self.loadedCase is None:
            return
        row = self.ui.findingsList.row(item)
        location, whyNot = self.logic.findingPlace(self.loadedCase.findings[row], self.loadedCase)
        if location is not None:
            slicer.modules.markups.logic().JumpSlicesToLocation(location[0], location[1], location[2], True)
        else:
            slicer.util.showStatusMessage(_translate("No place to show: {reason}").format(reason=whyNot), 5000)

    def onNextFinding(self) -> None:
        """Select the next finding (wrapping) and jump the views to it."""
        count = self.ui.findingsList.count
        if self.loadedCase is None or count == 0:
            return
        row = (self.ui.findingsList.currentRow + 1) % count
        self.ui.findingsList.setCurrentRow(row)
        self.onFindingClicked(self.ui.findingsList.item(row))

    def onFocusComment(self) -> None:
        self.ui.commentTextEdit.setFocus()

    def _currentAnnotation(self) -> str:
        combo = self.ui.annotationComboBox
        return combo.itemData(combo.currentIndex) or WHOLE_CASE

    def showReads(self, *unused: Any) -> None:
        """Other readers' verdicts on the chosen item; in blinded reading only after the reader gave their own."""
        if self.loadedCase is None or self.logic is None:
            self.ui.readsLabel.text = ""
            return
        caseId, annotation = self.loadedCase.case.case_id, self._currentAnnotation()
        reads = self.logic.reads(caseId, annotation)
        if not reads and self.ui.blindedCheckBox.checked:
            self.ui.readsLabel.text = _translate("Blinded: other readers' verdicts show once you have given yours.")
            return
        lines = [f"{read.reviewer}: {read.verdict}" + (f" — {read.comment}" if read.comment else "") for read in reads]
        final = self.logic.service.view().adjudication(caseId, annotation)
        if final is not None:
            lines.append(_translate("Adjudicated by {name}: {verdict}").format(name=final.adjudicator,
                                                                               verdict=final.verdict))
        self.ui.readsLabel.text = "\n".join(lines) or _translate("No verdicts yet.")

    # ------------------------------------------------------------------ review
    def onNextCase(self) -> None:
        self.onStep(1)

    def onPreviousCase(self) -> None:
        self.onStep(-1)

    def onAccept(self) -> None:
        self.onVerdict(VERDICTS[0])

    def onNeedsCorrection(self) -> None:
        self.onVerdict(VERDICTS[1])

    def onReject(self) -> None:
        self.onVerdict(VERDICTS[2])

    def onBlindedToggled(self, blinded: bool) -> None:
        qt.QSettings().setValue(SETTINGS_BLINDED, "true" if blinded else "false")
        self.logic.setReader(self.ui.reviewerLineEdit.text, blinded)
        if self.loadedCase is not None:
            self.showLoadedCase(self.loadedCase)

    def onStep(self, step: int) -> None:
        if self.logic is None or self.logic.collection is None:
            return
        current = self.loadedCase.case.case_id if self.loadedCase is not None else self._selectedCaseId()
        caseId = self.logic.neighbourCaseId(current, step)
        if caseId is not None:
            self.loadCase(caseId)

    def onNextUnreviewed(self) -> None:
        if self.logic is None or self.logic.collection is None:
            return
        current = self.loadedCase.case.case_id if self.loadedCase is not None else None
        caseId = self.logic.nextUnreviewedCaseId(current)
        if caseId is None:
            slicer.util.infoDisplay(_translate("Every case of this collection has a verdict."))
            return
        self.loadCase(caseId)

    def onReviewerChanged(self) -> None:
        qt.QSettings().setValue(SETTINGS_REVIEWER, self.ui.reviewerLineEdit.text)
        self.logic.setReader(self.ui.reviewerLineEdit.text, self.ui.blindedCheckBox.checked)
        if self.loadedCase is not None:
            self.showLoadedCase(self.loadedCase)

    def onVerdict(self, verdict: str) -> None:
        if self.loadedCase is None:
            return
        reviewer = self.ui.reviewerLineEdit.text.strip()
        if not reviewer:
            slicer.util.warningDisplay(_translate("Enter your name as reviewer first; every verdict records it."))
            return
        annotation = self._currentAnnotation()
        if not self._ensureStoreLocation():
            return
        caseId = self.loadedCase.case.case_id
        with slicer.util.tryWithErrorDisplay(_translate("The verdict could not be saved."), waitCursor=True):
            if self.ui.adjudicateCheckBox.checked:
                self.logic.adjudicate(caseId, verdict, self.ui.commentTextEdit.plainText, reviewer, annotation)
            else:
                self.logic.setVerdict(caseId, verdict, self.ui.commentTextEdit.plainText, reviewer, annotation)
            self._markVerdictInTable(caseId, self.logic.verdictOf(caseId))
        self.showReads()
        self.updateReviewProgress()

    def _ensureStoreLocation(self) -> bool:
        """A read-only collection folder cannot hold the review store: ask where to keep it instead."""
        problem = self.logic.reviewStoreLocationProblem()
        if problem is None:
            return True
        path = qt.QFileDialog.getSaveFileName(
            slicer.util.mainWindow(), _translate("The collection folder is read-only: where should verdicts be kept?"),
            os.path.join(os.path.expanduser("~"), "sllb_review.sqlite"), "SQLite (*.sqlite)")
        if not path:
            return False
        self.logic.setReviewStorePath(path)
        return True

    def _markVerdictInTable(self, caseId: str, verdict: str) -> None:
        widget = self.ui.casesTable
        column = self._caseIdColumn()
        for row in range(widget.rowCount):
            item = widget.item(row, column)
            if item is not None and item.text() == caseId:
                widget.item(row, widget.columnCount - 1).setText(verdict)

    # ------------------------------------------------------------------ QA, reports, corrections
    def _outputFolder(self) -> str:
        folder = self.ui.outputDirectoryButton.directory
        qt.QSettings().setValue(SETTINGS_OUTPUT_FOLDER, folder)
        return folder

    def onRunQA(self) -> None:
        result = self._runWithProgress(_translate("Checking every case"), _translate("The quality checks failed."),
                                       lambda callback: self.logic.runCollectionQA(callback))
        if result is not None:
            self.lastQA = result
            slicer.util.infoDisplay(self.logic.describeQA(result))

    def onExportReport(self) -> None:
        folder = self._outputFolder()
        paths = self._runWithProgress(_translate("Writing the review report"), _translate("The report could not be written."),
                                      lambda callback: self.logic.exportReview(folder, self.lastQA, callback))
        if paths:
            slicer.util.infoDisplay(_translate("Written:\n") + "\n".join(str(path) for path in paths))

    def onSaveCorrections(self) -> None:
        if self.loadedCase is None:
            return
        folder = self._outputFolder()
        caseId = self.loadedCase.case.case_id
        paths = self._runWithProgress(_translate("Saving corrected annotations"),
                                      _translate("The corrected annotations could not be saved."),
                                      lambda callback: self.logic.saveCorrections(folder, caseId, callback))
        if paths:
            slicer.util.infoDisplay(_translate("Written:\n") + "\n".join(str(path) for path in paths))


#
# SarcomaLungLiverBrowserLogic
#


class SarcomaLungLiverBrowserLogic(ScriptedLoadableModuleLogic):
    """Everything the module does, callable from the Python console without the widget.

    Example (Slicer's Python console)::

        import SarcomaLungLiverBrowser
        logic = SarcomaLungLiverBrowser.SarcomaLungLiverBrowserLogic()
        logic.openCollection("/data/Colorectal-Liver-Metastases")
        loaded = logic.loadCase("CRLM-CT-1001")
        loaded.segmentations[0].GetSegmentation().GetNumberOfSegments()
        logic.setVerdict("CRLM-CT-1001", "accepted", "liver contour fine", "Dr Who")
    """

    def __init__(self, scene: Any = None) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        self._scene = scene
        self._service: Any = None

    # The library is imported on first use, after the widget has made sure its packages are installed.
    @property
    def service(self) -> Any:
        """The :class:`ReviewService` shared with the command line; this class only adapts its names."""
        if self._service is None:
            from SarcomaLungLiverBrowserLib.service import ReviewService

            self._service = ReviewService(self._scene if self._scene is not None else slicer.mrmlScene,
                                          header_cache=self._headerCachePath(), snapshots=True)
        return self._service

    @staticmethod
    def _headerCachePath() -> Any:
        """DICOM headers are kept between sessions in Slicer's cache folder (the library's default outside Slicer)."""
        from SarcomaLungLiverBrowserLib.service import DEFAULT_HEADER_CACHE

        application = getattr(slicer, "app", None)
        cachePath = getattr(application, "cachePath", None)
        return Path(cachePath) / MODULE_NAME / "dicom-index.sqlite" if isinstance(cachePath, str) \
            else DEFAULT_HEADER_CACHE

    @property
    def browser(self) -> Any:
        return self.service.browser

    @property
    def collection(self) -> Any:
        """The open collection, or None."""
        return self._service.collection if self._service is not None else None

    # ------------------------------------------------------------------ browsing
    def openCollection(self, folder: str, collectionKey: Optional[str] = None) -> Any:
        """Open a collection folder (detected unless ``collectionKey`` names it)."""
        return self.service.open(Path(folder), collectionKey)

    def cases(self, progressCallback: Any = None) -> List[Any]:
        """The cases of the open collection (CaseInfo objects)."""
        return self.service.cases(progressCallback)

    def caseTable(self, progressCallback: Any = None) -> Any:
        """The open collection's cases as a pandas DataFrame."""
        from SarcomaLungLiverBrowserLib.browser import cases_table

        return cases_table(self.service.cases(progressCallback))

    def loadCase(self, caseId: str, progressCallback: Any = None, closeOthers: bool = True) -> Any:
        """Load one case into the scene; returns a LoadedCase with the created nodes and findings.

        The case loads whole or not at all; a data problem raises an error naming the file.
        With ``closeOthers`` the previously loaded case is removed once this one has loaded.
        """
        loaded = self.service.load_case(caseId, progressCallback, close_others=closeOthers)
        from SarcomaLungLiverBrowserLib.scene.layout import show_case

        show_case(self.browser.scene, loaded)  # layout, layers, slices through the first finding, 3D surfaces
        return loaded

    def closeCase(self, caseId: str) -> None:
        """Remove a loaded case's nodes from the scene."""
        self.browser.unload_case(caseId)

    def forgetLoadedCases(self) -> None:
        """Drop the record of loaded cases (their nodes are gone, e.g. the scene was closed)."""
        if self._service is not None and self._service._browser is not None:
            self._service._browser.loaded.clear()

    def saveSceneBundle(self, mrbPath: str) -> Path:
        """Save the scene as a Slicer scene bundle (.mrb)."""
        from SarcomaLungLiverBrowserLib.browser import save_scene_bundle

        return save_scene_bundle(self.browser.scene, Path(mrbPath))

    def annotationKeys(self, loaded: Any) -> List[str]:
        """Names a reviewer can give a verdict on: segments and ROIs of the case."""
        keys = []
        for segmentation in loaded.segmentations:
            segments = segmentation.GetSegmentation()
            keys.extend(segments.GetNthSegment(index).GetName() for index in range(segments.GetNumberOfSegments()))
        keys.extend(roi.GetName() for roi in loaded.rois)
        return keys

    def findingLocation(self, finding: Any, loaded: Any) -> Optional[Any]:
        """The RAS point a finding should be shown at, or None."""
        return self.findingPlace(finding, loaded)[0]

    def findingPlace(self, finding: Any, loaded: Any) -> Any:
        """(RAS point a finding should be shown at, or None; why there is none, or "")."""
        from SarcomaLungLiverBrowserLib.browser import finding_place

        return finding_place(finding, loaded)

    def placeVocFiles(self, paths: List[str]) -> Any:
        """Place PASCAL VOC boxes on the loaded DICOM volumes holding their slices; returns (ROIs, findings)."""
        from SarcomaLungLiverBrowserLib.scene.voc_rois import place_voc_files

        return place_voc_files([Path(path) for path in paths], self.browser.builder)

    # ------------------------------------------------------------------ review
    def setReviewStorePath(self, path: str) -> None:
        """Keep verdicts in ``path`` instead of beside the collection (e.g. a read-only collection)."""
        self.service.set_store_path(Path(path) if path else None)

    def reviewStoreLocationProblem(self) -> Optional[str]:
        """Why verdicts cannot be kept beside the collection (read-only folder), or None; then ask for a file."""
        return self.service.store_location_problem()

    def reviewStore(self) -> Any:
        """The open review store (created beside the collection unless another path was set)."""
        return self.service.store()

    def setReader(self, reader: str, blinded: Optional[bool] = None) -> None:
        """Who is reading, and whether other readers' verdicts stay hidden until the reader has given their own."""
        self.service.set_reader(reader, blinded)

    def setVerdict(self, caseId: str, verdict: str, comment: str, reviewer: str = "", annotation: str = "",
                   itemType: str = "") -> Any:
        """Record a verdict (accepted / needs correction / rejected); it is on disk when this returns."""
        return self.service.set_verdict(caseId, verdict, comment, reviewer or None, annotation, itemType)

    def adjudicate(self, caseId: str, verdict: str, comment: str, adjudicator: str, annotation: str = "") -> Any:
        """Record the final verdict on a case (or annotation), linked to the readers' verdicts it settles."""
        return self.service.adjudicate(caseId, verdict, comment, adjudicator, annotation)

    def reads(self, caseId: str, annotation: str = "") -> List[Any]:
        """Every reader's verdict on a case (or annotation) side by side, as far as the current reader may see."""
        return self.service.reads(caseId, annotation)

    def agreement(self) -> List[Any]:
        """Agreement between readers over the collection and per item type (Agreement objects)."""
        return self.service.agreement()

    def agreementTableNode(self) -> Any:
        """The agreement between readers as a table node in the scene (shown in Slicer's table view)."""
        import pandas as pd
        from SarcomaLungLiverBrowserLib.review.agreement import AGREEMENT_COLUMNS, agreement_rows

        table = pd.DataFrame(agreement_rows(self.service.agreement()), columns=AGREEMENT_COLUMNS)
        for column in ("items", "percent_agreement", "kappa"):  # numbers, empty where undefined
            table[column] = pd.to_numeric(table[column], errors="coerce")
        return self.browser.builder.add_table("Reader agreement", table)

    def annotationTable(self, progressCallback: Any = None) -> Any:
        """Every box, lesion, segment and contour of the collection as a pandas DataFrame (one row each:
        case, series, label, class, volume/area, RAS bounds and centre, source file, each reader's verdict)."""
        return self.service.annotation_table(progressCallback)

    def exportAnnotationTable(self, csvPath: Optional[str] = None, parquetPath: Optional[str] = None,
                              progressCallback: Any = None) -> List[Path]:
        """Write the annotation table as CSV and/or Parquet."""
        from SarcomaLungLiverBrowserLib.review.annotations import write_annotation_table

        return write_annotation_table(self.annotationTable(progressCallback), Path(csvPath) if csvPath else None,
                                      Path(parquetPath) if parquetPath else None)

    def verdictOf(self, caseId: str, annotation: str = "") -> str:
        """The verdict of a case (or annotation) to show: the current reader's own, or "" if none."""
        record = self.service.verdict_of(caseId, annotation)
        return record.verdict if record is not None else ""

    def commentOf(self, caseId: str, annotation: str = "") -> str:
        record = self.service.verdict_of(caseId, annotation)
        return record.comment if record is not None else ""

    def caseIds(self) -> List[str]:
        return self.service.case_ids()

    def reviewProgress(self) -> Any:
        """(cases with a verdict, number of cases)."""
        return self.service.review_progress()

    def neighbourCaseId(self, caseId: Optional[str], step: int) -> Optional[str]:
        """The case ``step`` places after ``caseId`` in the case list (wrapping), or None."""
        return self.service.neighbour_case_id(caseId, step)

    def nextUnreviewedCaseId(self, caseId: Optional[str] = None) -> Optional[str]:
        """The first case after ``caseId`` (wrapping) without a verdict, or None when all have one."""
        return self.service.next_unreviewed_case_id(caseId)

    def runCollectionQA(self, progressCallback: Any = None) -> Any:
        """Run every quality check over every case, with a snapshot each (cancellable through the callback).

        Cases load into this logic's scene one at a time and are removed again.
        """
        return self.service.run_qa(progressCallback)

    def describeQA(self, result: Any) -> str:
        return self.service.describe_qa(result)

    def exportReview(self, outputFolder: str, qaResult: Any = None, progressCallback: Any = None,
                     reviewer: Optional[str] = None) -> List[Path]:
        """Write the review as CSV and a self-contained HTML report (the command line's report) into ``outputFolder``."""
        return self.service.export_report(Path(outputFolder), qaResult, progressCallback, reviewer=reviewer)

    def saveCorrections(self, outputFolder: str, caseId: Optional[str] = None, progressCallback: Any = None) -> List[Path]:
        """Write the loaded case's (edited) annotations in the collection's own format; never over the sources."""
        if caseId is None:
            if not self.browser.loaded:
                raise RuntimeError("load a case first")
            caseId = list(self.browser.loaded)[-1]
        return self.browser.save_corrections(caseId, Path(outputFolder), progressCallback)


#
# SarcomaLungLiverBrowserFileReader
#


class SarcomaLungLiverBrowserFileReader:
    """Drag and drop: a collection folder opens in the module; VOC XML files become ROIs on loaded slices."""

    def __init__(self, parent: Any) -> None:
        self.parent = parent

    def description(self) -> str:
        return _translate("TCIA collection folder or PASCAL VOC annotation")

    def fileType(self) -> str:
        return "SarcomaLungLiverBrowserFile"

    def extensions(self) -> List[str]:
        return [_translate("PASCAL VOC annotation (*.xml)"), _translate("Collection folder (*)")]

    def canLoadFile(self, filePath: str) -> bool:
        path = Path(filePath)
        if path.is_dir():
            try:
                from SarcomaLungLiverBrowserLib.registry import collection_classes

                return any(collectionClass.detect(path) for collectionClass in collection_classes())
            except ImportError:
                return False
        if path.suffix.lower() == ".xml":
            try:
                with open(path, "rb") as stream:
                    head = stream.read(4096)
            except OSError:
                return False
            # Other readers claim .xml too: take only PASCAL VOC annotations.
            return b"<annotation" in head
        return False

    def load(self, properties: Any) -> bool:
        path = Path(properties["fileName"])
        widget = slicer.modules.sarcomalungliverbrowser.widgetRepresentation().self()
        try:
            if path.is_dir():
                slicer.util.selectModule("SarcomaLungLiverBrowser")
                widget.ui.collectionDirectoryButton.directory = str(path)
                self.parent.loadedNodes = []
                return True
            rois, findings = widget.logic.placeVocFiles([str(path)])
        except Exception as error:
            slicer.util.errorDisplay(f"{path}: {error}")
            return False
        for finding in findings:
            logging.warning(finding.message)
        self.parent.loadedNodes = [roi.GetID() for roi in rois]
        return bool(rois)


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
        self.setUp()
        self.test_ReviewRound()

    def _sampleCollections(self) -> Any:
        import tempfile

        from SarcomaLungLiverBrowserLib.samples import generate_all

        folder = tempfile.mkdtemp(prefix="SarcomaLungLiverBrowserTest-")
        return Path(folder), generate_all(Path(folder) / "data")

    def test_LoadSampleCaseOfEachCollection(self) -> None:
        self.delayDisplay("Generating sample collections")
        _, roots = self._sampleCollections()
        logic = SarcomaLungLiverBrowserLogic()
        for name, root in roots.items():
            self.delayDisplay(f"Loading a case of {name}")
            logic.openCollection(str(root))
            cases = logic.cases()
            self.assertTrue(cases, f"no cases found in {root}")
            nodesBefore = slicer.mrmlScene.GetNumberOfNodes()
            loaded = logic.loadCase(cases[0].case_id)
            self.assertTrue(loaded.volumes, f"{name}: no volume loaded")
            self.assertGreater(slicer.mrmlScene.GetNumberOfNodes(), nodesBefore)
            for node in loaded.nodes:
                self.assertIsNotNone(slicer.mrmlScene.GetNodeByID(node.GetID()))
            logic.closeCase(loaded.case.case_id)
        self.delayDisplay("Test passed")

    def test_ReviewRound(self) -> None:
        self.delayDisplay("Reviewing the CRLM sample collection")
        folder, roots = self._sampleCollections()
        logic = SarcomaLungLiverBrowserLogic()
        logic.openCollection(str(roots["crlm"]))
        logic.setReviewStorePath(str(folder / "review.sqlite"))
        caseIds = logic.caseIds()
        reviewed = 0
        caseId = logic.nextUnreviewedCaseId()
        while caseId is not None:
            loaded = logic.loadCase(caseId)
            self.assertTrue(loaded.segmentations)
            logic.setVerdict(caseId, "accepted" if reviewed % 2 == 0 else "needs correction", "checked", "Self Test")
            reviewed += 1
            caseId = logic.nextUnreviewedCaseId(caseId)
        self.assertEqual(logic.reviewProgress(), (len(caseIds), len(caseIds)))
        paths = logic.exportReview(str(folder / "report"))
        self.assertTrue(any(str(path).endswith(".html") for path in paths))
        self.delayDisplay("Test passed")
