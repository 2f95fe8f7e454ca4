"""SarcomaLungLiverBrowser: load TCIA sarcoma, breast, lung and liver collections into Slicer.

The module follows the Extension Wizard's shape: Module, Widget, Logic, Test.
All work happens in ``SarcomaLungLiverBrowserLib`` (Qt-free, tested on
slicer-core); the widget only connects the user interface to the logic.
"""
from __future__ import annotations

import logging
import os
import unittest
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

    class ScriptedLoadableModuleTest(unittest.TestCase):  # type: ignore[no-redef]
        """Slicer's test base is a unittest.TestCase with delayDisplay; so is this stand-in."""

        def delayDisplay(self, message: str, msec: int = 1000) -> None:
            logging.info(message)

    class VTKObservationMixin:  # type: ignore[no-redef]
        def __init__(self) -> None:
            pass


MODULE_NAME = "SarcomaLungLiverBrowser"
SETTINGS_LAST_FOLDER = MODULE_NAME + "/LastCollectionFolder"
SETTINGS_REVIEWER = MODULE_NAME + "/Reviewer"
SETTINGS_OUTPUT_FOLDER = MODULE_NAME + "/OutputFolder"
#: Attribute of the table node holding the last completeness check (a new check replaces it).
COMPLETENESS_TABLE_ATTRIBUTE = MODULE_NAME + ".CompletenessTable"


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



def _shown(value: Any) -> str:
    """Text for a Qt label or dialog: Qt takes no lone surrogate, so a byte of a file name that is not
    UTF-8 is spelled out as \\xe9 (text.py, standard library only, imported here like the rest of the library)."""
    from SarcomaLungLiverBrowserLib.text import spell_out_undecodable

    return spell_out_undecodable(value)


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
# Python packages, dropped folders
#

RESTART_MESSAGE = _translate(
    "Python packages that Slicer had already loaded were upgraded. Restart Slicer before using "
    "Sarcoma Lung Liver Browser: until then the old versions stay in memory.")


def _testingMode() -> bool:
    """True when Slicer runs its tests (``--testing``); False outside the application."""
    application = getattr(slicer, "app", None)
    testingEnabled = getattr(application, "testingEnabled", None)
    return bool(testingEnabled()) if callable(testingEnabled) else False


def _slicerPackaging() -> Any:
    """Slicer 5.12+'s package helpers (``pip_ensure``, ``pip_check``), or None on other Pythons.

    ``slicer.packaging`` is not imported at startup, so it is imported here explicitly. Newer previews
    also document the same functions as ``slicer.pydeps``; whichever has them is used.
    """
    import importlib

    for name in ("slicer.packaging", "slicer.pydeps"):
        try:
            candidate = importlib.import_module(name)
        except ImportError:
            continue
        if hasattr(candidate, "pip_ensure") and hasattr(candidate, "pip_check"):
            return candidate
    return None


def _pipInstallOutsideSlicer(arguments: str) -> None:
    from SarcomaLungLiverBrowserLib.dependencies import DependencyError

    raise DependencyError(f"This Python is not Slicer's, so the module does not install packages into it; "
                          f"run: python -m pip install {arguments.replace('--dry-run ', '')}")


def ensureModuleRequirements(installInTesting: bool = False, ask: bool = True) -> Any:
    """Make the module's Python packages ready (see ``SarcomaLungLiverBrowserLib.dependencies``).

    :returns: ``Readiness.READY`` or ``Readiness.RESTART_NEEDED``.
    :raises DependencyError: declined or failed, with a message for the user.
    """
    return _ensureRequirementsWithSlicer(install_in_testing=installInTesting, ask=ask)


def _ensureRequirementsWithSlicer(**options: Any) -> Any:
    """``dependencies.ensure_requirements`` asking through Slicer's dialogs and installing with its pip."""
    from SarcomaLungLiverBrowserLib.dependencies import ensure_requirements

    util = getattr(slicer, "util", None)
    confirm = getattr(util, "confirmOkCancelDisplay", None) or (lambda question: False)
    pipInstall = getattr(util, "pip_install", None) or _pipInstallOutsideSlicer
    return ensure_requirements(confirm=confirm, pip_install=pipInstall, slicer_packaging=_slicerPackaging(),
                               **options)


#: The optional packages of the Imaging Data Commons section (idc-index pins its index, idc-index-data).
IDC_REQUIREMENTS_FILE = Path(__file__).resolve().parent / "Resources" / "idc-requirements.txt"

#: IDC collection IDs of the collections this module reads (the download combo box offers them; others can be typed).
IDC_COLLECTIONS = ("colorectal_liver_metastases", "lung_pet_ct_dx", "ispy1", "soft_tissue_sarcoma")


def ensureIdcRequirements(ask: bool = True) -> Any:
    """Make idc-index (and the index it pins) ready at first use of the IDC section, as
    :func:`ensureModuleRequirements` does for the module's own packages (same questions, same restart rule).

    :returns: ``Readiness.READY`` or ``Readiness.RESTART_NEEDED``.
    :raises DependencyError: declined or failed, with a message for the user.
    """
    return _ensureRequirementsWithSlicer(
        path=IDC_REQUIREMENTS_FILE,
        requester=_translate("The Imaging Data Commons tools of Sarcoma Lung Liver Browser"), ask=ask)


def requireModuleRequirements() -> None:
    """Like :func:`ensureModuleRequirements`, but a needed restart is an error too (for console use)."""
    from SarcomaLungLiverBrowserLib.dependencies import DependencyError, Readiness

    if ensureModuleRequirements() is Readiness.RESTART_NEEDED:
        raise DependencyError(RESTART_MESSAGE)


def collectionFoldersIn(paths: List[str]) -> List[str]:
    """The dropped paths that are folders holding a collection this module knows (others are left to Slicer).

    Detection needs the library; when its packages are not installed yet, no folder is claimed, so a
    drop still reaches Slicer's own handlers (DICOM import, Add Data).
    """
    folders = [path for path in paths if path and os.path.isdir(path)]
    if not folders:
        return []
    try:
        from SarcomaLungLiverBrowserLib.registry import collection_classes
    except ImportError as error:
        logging.info(f"Sarcoma Lung Liver Browser cannot inspect dropped folders yet ({error}); "
                     "open the module to install its Python packages.")
        return []
    accepted = []
    for folder in folders:
        try:
            if any(collectionClass.detect(Path(folder)) for collectionClass in collection_classes()):
                accepted.append(folder)
        except Exception as error:  # an unreadable folder is simply not ours
            logging.info(f"{folder}: not inspected ({error})")
    return accepted



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
    """The module panel: wires the UI to :class:`SarcomaLungLiverBrowserLogic`; holds no data logic.

    Every button runs through :meth:`_runAction`, which keeps the rules of
    ``SarcomaLungLiverBrowserLib.actions``: one action at a time (the panel is disabled meanwhile,
    because Slicer's progress dialog is not modal), one clear message on failure, Cancel is not an
    error, and settings are saved only after the action succeeded.
    """

    def __init__(self, parent: Any = None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic: Optional[SarcomaLungLiverBrowserLogic] = None
        self.ui: Any = None
        self.loadedCase: Any = None
        self.lastQA: Any = None
        self._shortcuts: List[Any] = []
        self._actions: Any = None
        self._collectionFolderChosen = False
        self._outputFolderChosen = False
        self._dependenciesReady = False
        self._chooseReviewStoreButton: Any = None
        self._idcDependenciesReady = False
        self._idcCancelRequested = False
        self.lastCompleteness: Any = None

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/SarcomaLungLiverBrowser.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = SarcomaLungLiverBrowserLogic()
        # Only the standard library is imported here: setup must stay light (no indexing, no install prompt).
        from SarcomaLungLiverBrowserLib.actions import ActionRunner

        self._actions = ActionRunner()

        # Restore the last choices without emitting directoryChanged: opening a collection indexes it,
        # which is the user's decision (Refresh), not something to do each time the module is shown.
        settings = qt.QSettings()
        self.ui.reviewerLineEdit.text = settings.value(SETTINGS_REVIEWER, "")
        lastOutput = settings.value(SETTINGS_OUTPUT_FOLDER, "")
        if lastOutput and os.path.isdir(lastOutput):
            self._setDirectorySilently(self.ui.outputDirectoryButton, lastOutput)
            self._outputFolderChosen = True
        lastFolder = settings.value(SETTINGS_LAST_FOLDER, "")
        if lastFolder and os.path.isdir(lastFolder):
            self._setDirectorySilently(self.ui.collectionDirectoryButton, lastFolder)
            self._collectionFolderChosen = True
            self.ui.collectionLabel.text = _translate("Press Refresh to open this folder.")

        self.ui.collectionDirectoryButton.connect("directoryChanged(QString)", self.onCollectionFolderChanged)
        self.ui.outputDirectoryButton.connect("directoryChanged(QString)", self.onOutputFolderChanged)
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
        self.ui.annotationFolderButton.connect("directoryChanged(QString)", self.onAnnotationFolderChosen)
        self.ui.removeAnnotationFolderButton.connect("clicked(bool)", self.onRemoveAnnotationFolder)
        self.ui.checkCompletenessButton.connect("clicked(bool)", self.onCheckCompleteness)
        self.ui.saveCompletenessCsvButton.connect("clicked(bool)", self.onSaveCompletenessCsv)
        self.ui.idcDownloadButton.connect("clicked(bool)", self.onIdcDownload)
        self.ui.idcCancelButton.connect("clicked(bool)", self.onIdcCancel)
        self.ui.idcFolderButton.connect("directoryChanged(QString)", lambda folder: self.updateButtons())
        for collectionId in IDC_COLLECTIONS:
            self.ui.idcCollectionComboBox.addItem(collectionId)

        # A read-only collection cannot hold its review store: let the user put it elsewhere.
        self._chooseReviewStoreButton = qt.QPushButton(_translate("Choose review store file..."))
        self._chooseReviewStoreButton.toolTip = _translate(
            "Where verdicts are kept. By default a file beside the collection; choose another file when the "
            "collection folder is read-only or shared.")
        self._chooseReviewStoreButton.connect("clicked(bool)", self.onChooseReviewStore)
        self.ui.reviewCollapsibleButton.layout().addRow(self._chooseReviewStoreButton)

        self.ui.blindedCheckBox.checked = str(settings.value(SETTINGS_BLINDED, "false")).lower() == "true"
        self.logic.setReader(self.ui.reviewerLineEdit.text, self.ui.blindedCheckBox.checked)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        # As the Extension Wizard template does: what the panel shows of the closed scene goes once it is closed.
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.updateButtons()

    @staticmethod
    def _setDirectorySilently(button: Any, folder: str) -> None:
        wasBlocked = button.blockSignals(True)
        try:
            button.directory = folder
        finally:
            button.blockSignals(wasBlocked)

    def enter(self) -> None:
        # Keyboard shortcuts only while the module is shown, so they never clash with other modules.
        self.exit()
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
            self.updateButtons()

    def onSceneEndClose(self, caller: Any, event: Any) -> None:
        # The segments and ROIs the verdict combo box named are gone with the scene; so is the case they came with.
        if self.ui is None:
            return
        self.ui.annotationComboBox.clear()
        self.ui.caseLabel.text = _translate("(none loaded)")
        self.ui.readsLabel.text = ""
        self.ui.commentTextEdit.plainText = ""
        self.updateButtons()

    # ------------------------------------------------------------------ running actions
    def _ensureDependencies(self) -> bool:
        """Install missing or too-old Python packages at first use, after asking (never at setup)."""
        if not self._dependenciesReady:
            self._dependenciesReady = self._requirementsReady(ensureModuleRequirements,
                                                              _translate("Sarcoma Lung Liver Browser"))
        return self._dependenciesReady

    @staticmethod
    def _requirementsReady(ensure: Any, title: str) -> bool:
        """Run one of the ``ensure...Requirements`` functions; False (after telling the user) unless usable now."""
        from SarcomaLungLiverBrowserLib.dependencies import DependencyError, Readiness

        try:
            readiness = ensure()
        except DependencyError as error:
            slicer.util.errorDisplay(str(error), windowTitle=title)
            return False
        if readiness is Readiness.RESTART_NEEDED:
            slicer.util.warningDisplay(RESTART_MESSAGE, windowTitle=title)
            return False
        return True

    def _setControlsEnabled(self, enabled: bool) -> None:
        for name in ("collectionCollapsibleButton", "reviewCollapsibleButton", "outputCollapsibleButton"):
            getattr(self.ui, name).enabled = enabled
        # The IDC section stays usable for its Cancel button; its other controls follow the panel.
        for name in ("idcFolderButton", "checkCompletenessButton", "saveCompletenessCsvButton",
                     "idcCollectionComboBox", "idcPatientsLineEdit", "idcMissingOnlyCheckBox", "idcDownloadButton"):
            getattr(self.ui, name).enabled = enabled
        if enabled:
            self.updateButtons()

    def _runAction(self, title: str, failureMessage: str, work: Any, remember: Any = None,
                   withProgress: bool = True, progress: Any = None) -> Any:
        """Run ``work(callback)`` as one user action; returns its ActionResult, or None if it could not start.

        The panel is disabled while it runs (Slicer's progress dialog is not modal, so buttons and the
        Ctrl+N/P/U shortcuts would otherwise start a second action inside this one); failures show one
        message; Cancel shows nothing.

        :param progress: a progress callback of the caller's own (e.g. the IDC section's progress bar and
            Cancel button) used instead of a progress dialog.
        """
        from SarcomaLungLiverBrowserLib.actions import Outcome

        if self._actions is None or self._actions.busy or not self._ensureDependencies():
            return None
        dialog = None
        callback = progress
        if withProgress and progress is None:
            dialog = slicer.util.createProgressDialog(parent=slicer.util.mainWindow(), maximum=1000,
                                                      labelText=title, windowTitle=title)

            def callback(message: str, fraction: float) -> bool:
                dialog.labelText = message
                dialog.value = int(max(0.0, min(1.0, fraction)) * 1000)
                slicer.app.processEvents()
                return bool(dialog.wasCanceled)

        self._setControlsEnabled(False)
        qt.QApplication.setOverrideCursor(qt.Qt.WaitCursor)
        try:
            result = self._actions.run(title, failureMessage, lambda: work(callback), remember)
        finally:
            qt.QApplication.restoreOverrideCursor()
            if dialog is not None:
                dialog.close()
            self._setControlsEnabled(True)
        if result.outcome is Outcome.FAILED:
            slicer.util.errorDisplay(result.message, windowTitle=title, detailedText=result.details)
        return result

    # ------------------------------------------------------------------ helpers
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
        self.ui.refreshButton.enabled = haveCollection or self._collectionFolderChosen
        for button in (self.ui.previousCaseButton, self.ui.nextCaseButton, self.ui.nextUnreviewedButton,
                       self.ui.runQAButton, self.ui.exportReportButton):
            button.enabled = haveCollection
        for button in (self.ui.acceptButton, self.ui.needsCorrectionButton, self.ui.rejectButton,
                       self.ui.saveCorrectionsButton):
            button.enabled = haveCase
        if self._chooseReviewStoreButton is not None:
            self._chooseReviewStoreButton.enabled = haveCollection
        self.ui.removeAnnotationFolderButton.enabled = self.ui.annotationFoldersList.count > 0
        self.ui.saveCompletenessCsvButton.enabled = self.lastCompleteness is not None
        self.ui.idcCancelButton.enabled = self._actions is not None and self._actions.busy

    def updateReviewProgress(self) -> None:
        if self.logic is None or self.logic.collection is None:
            self.ui.reviewProgressLabel.text = ""
            return
        try:
            reviewed, total = self.logic.reviewProgress()
        except Exception as error:  # e.g. no usable review store yet: say so instead of a count
            self.ui.reviewProgressLabel.text = _translate("Verdicts unavailable: {error}").format(error=error)
            return
        self.ui.reviewProgressLabel.text = _translate("{reviewed} of {total} reviewed").format(
            reviewed=reviewed, total=total)

    # ------------------------------------------------------------------ collection and cases
    def onCollectionFolderChanged(self, folder: str) -> None:
        self._collectionFolderChosen = True
        self.openCollectionFolder(folder)

    def onRefresh(self) -> None:
        self.openCollectionFolder(self.ui.collectionDirectoryButton.directory)

    def openCollectionFolder(self, folder: str) -> bool:
        """Open and index ``folder`` (explicit user action: folder choice, Refresh, or a folder drop).

        The folder is saved as the one to offer next time only after it opened.
        """
        if self.ui.collectionDirectoryButton.directory != folder:
            self._setDirectorySilently(self.ui.collectionDirectoryButton, folder)

        annotations = self.annotationFolders()

        def work(callback):
            collection = self.logic.openCollection(folder, annotations=annotations or None)
            table = self.logic.caseTable(callback)
            verdicts, storeProblem = self.logic.caseVerdictsOrProblem()
            return collection, table, verdicts, storeProblem

        result = self._runAction(
            _translate("Indexing collection"), _translate("This folder could not be opened as a collection."),
            work, remember=lambda value: qt.QSettings().setValue(SETTINGS_LAST_FOLDER, folder))
        if result is not None and result.done:
            collection, table, verdicts, storeProblem = result.value
            self.loadedCase = None
            self.ui.collectionLabel.text = collection.title
            self.populateCasesTable(table, verdicts)
            if storeProblem:
                self._offerOtherReviewStore(storeProblem)
        self.updateReviewProgress()
        self.updateButtons()
        return result is not None and result.done

    def annotationFolders(self) -> List[str]:
        """The Lung-PET-CT-Dx annotation folders listed in the panel, in order."""
        widget = self.ui.annotationFoldersList
        return [widget.item(row).text() for row in range(widget.count)]

    def onAnnotationFolderChosen(self, folder: str) -> None:
        """Add a chosen annotation folder to the list (once); it is used when the collection is next opened."""
        if not folder or folder == "." or folder in self.annotationFolders():
            return
        self.ui.annotationFoldersList.addItem(folder)
        self.updateButtons()
        if self.logic is not None and self.logic.collection is not None:
            self.ui.collectionLabel.text = _translate("Press Refresh to use the annotation folders.")

    def onRemoveAnnotationFolder(self) -> None:
        widget = self.ui.annotationFoldersList
        row = widget.currentRow if widget.currentRow >= 0 else widget.count - 1
        if row >= 0:
            widget.takeItem(row)
        self.updateButtons()

    def _offerOtherReviewStore(self, problem: str) -> None:
        question = _translate("Verdicts cannot be saved:\n\n{problem}\n\nChoose another file for the review store now?")
        if slicer.util.confirmOkCancelDisplay(question.format(problem=problem)):
            self.onChooseReviewStore()

    def onChooseReviewStore(self) -> None:
        """Pick the review-store file (a GUI way for read-only collections)."""
        if self.logic is None or self.logic.collection is None:
            return
        start = os.path.join(os.path.expanduser("~"), f"{Path(self.logic.collection.root).name} review.sqlite")
        # A save dialog, because the file may not exist yet; an existing store is opened, never replaced.
        path = qt.QFileDialog.getSaveFileName(slicer.util.mainWindow(), _translate("Review store file"), start,
                                              _translate("Review store (*.sqlite);;All files (*)"))
        if not path:
            return
        result = self._runAction(_translate("Opening the review store"),
                                 _translate("This file cannot hold the review store."),
                                 lambda callback: self.logic.useReviewStore(path), withProgress=False)
        if result is not None and result.done:
            self._refreshVerdictColumn()
        self.updateReviewProgress()

    def _refreshVerdictColumn(self) -> None:
        verdicts, _ = self.logic.caseVerdictsOrProblem()
        widget = self.ui.casesTable
        column = self._caseIdColumn()
        for row in range(widget.rowCount):
            item = widget.item(row, column)
            if item is not None:
                widget.item(row, widget.columnCount - 1).setText((verdicts or {}).get(item.text(), ""))

    def populateCasesTable(self, table: Any, verdicts: Optional[Any] = None) -> None:
        """Show the case table, with each case's verdict so far (empty when there is no review store)."""
        verdicts = verdicts or {}
        widget = self.ui.casesTable
        widget.setSortingEnabled(False)
        widget.clear()
        columns = list(table.columns) + ["verdict"]
        caseIdIndex = list(table.columns).index("case_id")
        widget.setColumnCount(len(columns))
        widget.setHorizontalHeaderLabels([str(column) for column in columns])
        widget.setRowCount(len(table))
        for row, values in enumerate(table.itertuples(index=False)):
            verdict = verdicts.get(str(values[caseIdIndex]), "")
            for column, value in enumerate(list(values) + [verdict]):
                item = qt.QTableWidgetItem(_shown(value))
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
        result = self._runAction(_translate("Loading case"), _translate("The case could not be loaded."),
                                 lambda callback: self.logic.loadCase(caseId, callback))
        if result is not None and result.done:
            self.loadedCase = result.value
            self._selectCase(self.loadedCase.case.case_id)
            self.showLoadedCase(self.loadedCase)
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
            item = qt.QListWidgetItem(_shown(f"[{finding.severity}] {finding.message}"))
            item.setToolTip(_shown(finding.path or finding.check))
            self.ui.findingsList.addItem(item)
        self.ui.annotationComboBox.clear()
        self.ui.annotationComboBox.addItem(_translate("Whole case"), WHOLE_CASE)
        for key in self.logic.annotationKeys(loaded):
            self.ui.annotationComboBox.addItem(key, key)
        try:
            self.ui.commentTextEdit.plainText = self.logic.commentOf(loaded.case.case_id)
        except Exception as error:  # the case is loaded; only the review store is unavailable
            logging.warning(f"Review store unavailable: {error}")
            self.ui.commentTextEdit.plainText = ""
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
        final = self.logic.adjudicationOf(caseId, annotation)
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
        if self.logic is None or self.logic.collection is None or (self._actions and self._actions.busy):
            return
        current = self.loadedCase.case.case_id if self.loadedCase is not None else self._selectedCaseId()
        caseId = self.logic.neighbourCaseId(current, step)
        if caseId is not None:
            self.loadCase(caseId)

    def onNextUnreviewed(self) -> None:
        if self.logic is None or self.logic.collection is None or (self._actions and self._actions.busy):
            return
        current = self.loadedCase.case.case_id if self.loadedCase is not None else None
        result = self._runAction(_translate("Finding the next unreviewed case"),
                                 _translate("The review store could not be read."),
                                 lambda callback: self.logic.nextUnreviewedCaseId(current), withProgress=False)
        if result is None or not result.done:
            return
        if result.value is None:
            slicer.util.infoDisplay(_translate("Every case of this collection has a verdict."))
            return
        self.loadCase(result.value)

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
        comment = self.ui.commentTextEdit.plainText
        adjudicating = self.ui.adjudicateCheckBox.checked

        def work(callback):
            if adjudicating:
                self.logic.adjudicate(caseId, verdict, comment, reviewer, annotation)
            else:
                self.logic.setVerdict(caseId, verdict, comment, reviewer, annotation)
            return self.logic.verdictOf(caseId)

        result = self._runAction(_translate("Saving the verdict"), _translate("The verdict could not be saved."),
                                 work, withProgress=False)
        if result is not None and result.done:
            self._markVerdictInTable(caseId, result.value)
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
    def onOutputFolderChanged(self, folder: str) -> None:
        self._outputFolderChosen = True

    def _outputFolder(self) -> str:
        """The folder the user chose, else the documented default beside the review store."""
        from SarcomaLungLiverBrowserLib.actions import output_folder

        chosen = self.ui.outputDirectoryButton.directory if self._outputFolderChosen else ""
        return str(output_folder(chosen, self.logic.reviewStorePath()))

    def _rememberOutputFolder(self, folder: str) -> None:
        if self._outputFolderChosen:
            qt.QSettings().setValue(SETTINGS_OUTPUT_FOLDER, folder)

    def onRunQA(self) -> None:
        result = self._runAction(_translate("Checking every case"), _translate("The quality checks failed."),
                                 lambda callback: self.logic.runCollectionQA(callback))
        if result is not None and result.done:
            self.lastQA = result.value
            slicer.util.infoDisplay(self.logic.describeQA(result.value))

    def onExportReport(self) -> None:
        folder = self._outputFolder()
        problem = self.logic.outputFolderProblem(folder)
        if problem is not None:
            # A read-only collection keeps its verdicts readable, but the report cannot go beside them.
            slicer.util.warningDisplay(problem, windowTitle=_translate("Writing the review report"))
            return
        result = self._runAction(_translate("Writing the review report"), _translate("The report could not be written."),
                                 lambda callback: self.logic.exportReview(folder, self.lastQA, callback),
                                 remember=lambda paths: self._rememberOutputFolder(folder))
        if result is not None and result.done and result.value:
            slicer.util.infoDisplay(_translate("Written:\n") + "\n".join(_shown(path) for path in result.value))

    def onSaveCorrections(self) -> None:
        if self.loadedCase is None:
            return
        folder = self._outputFolder()
        caseId = self.loadedCase.case.case_id
        result = self._runAction(_translate("Saving corrected annotations"),
                                 _translate("The corrected annotations could not be saved."),
                                 lambda callback: self.logic.saveCorrections(folder, caseId, callback),
                                 remember=lambda paths: self._rememberOutputFolder(folder))
        if result is not None and result.done and result.value:
            slicer.util.infoDisplay(_translate("Written:\n") + "\n".join(_shown(path) for path in result.value))

    # ------------------------------------------------------------------ Imaging Data Commons
    def _ensureIdcDependencies(self) -> bool:
        """Install idc-index (which brings IDC's index) at first use of the IDC section, after asking."""
        if not self._idcDependenciesReady:
            self._idcDependenciesReady = self._requirementsReady(ensureIdcRequirements,
                                                                 _translate("Imaging Data Commons"))
        return self._idcDependenciesReady

    def _idcFolder(self) -> Optional[str]:
        """The IDC folder chosen in the panel, else the open collection's folder; None (with a message) if neither."""
        folder = self.ui.idcFolderButton.directory
        if folder and folder != ".":
            return folder
        if self.logic is not None and self.logic.collection is not None:
            return str(self.logic.collection.root)
        slicer.util.warningDisplay(_translate("Choose the folder of the IDC download first."),
                                   windowTitle=_translate("Imaging Data Commons"))
        return None

    def _idcProgress(self, message: str, fraction: float) -> bool:
        """The IDC section's progress callback: its own bar and label, and its Cancel button."""
        self.ui.idcProgressBar.value = int(max(0.0, min(1.0, fraction)) * 1000)
        self.ui.idcStatusLabel.text = message
        slicer.app.processEvents()
        return self._idcCancelRequested

    def onIdcCancel(self) -> None:
        self._idcCancelRequested = True
        self.ui.idcStatusLabel.text = _translate("Cancelling...")

    def _runIdcAction(self, title: str, failureMessage: str, work: Any) -> Any:
        """Run an IDC action with the section's own progress bar, its Cancel button live while it runs."""
        if not self._ensureIdcDependencies():
            return None
        self._idcCancelRequested = False
        self.ui.idcProgressBar.value = 0
        self.ui.idcCancelButton.enabled = True
        try:
            result = self._runAction(title, failureMessage, work, progress=self._idcProgress)
        finally:
            self.ui.idcCancelButton.enabled = False
        if result is not None and not result.done and not self._idcCancelRequested:
            self.ui.idcStatusLabel.text = result.message or ""
        elif result is not None and not result.done:
            self.ui.idcStatusLabel.text = _translate("Cancelled; files fetched so far stay. "
                                                     "Download again with \"Missing series only\" to resume.")
        return result

    def onCheckCompleteness(self) -> None:
        folder = self._idcFolder()
        if folder is None:
            return
        result = self._runIdcAction(
            _translate("Checking completeness against IDC"), _translate("The completeness check failed."),
            lambda callback: self.logic.checkCompleteness(folder, progressCallback=callback))
        if result is None or not result.done:
            return
        self.showCompleteness(result.value)

    def showCompleteness(self, report: Any) -> None:
        """The completeness result as a table node in the scene (shown in a table view) and in the status line."""
        self.lastCompleteness = report
        node = self.logic.completenessTableNode(report)
        slicer.app.applicationLogic().GetSelectionNode().SetActiveTableID(node.GetID())
        slicer.app.applicationLogic().PropagateTableSelection()
        self.ui.idcStatusLabel.text = self.logic.describeCompleteness(report)
        self.updateButtons()

    def onSaveCompletenessCsv(self) -> None:
        if self.lastCompleteness is None:
            return
        start = os.path.join(self._outputFolder() if self.logic.collection is not None else os.path.expanduser("~"),
                             "completeness.csv")
        path = qt.QFileDialog.getSaveFileName(slicer.util.mainWindow(), _translate("Save the completeness table"),
                                              start, _translate("CSV files (*.csv)"))
        if not path:
            return
        report = self.lastCompleteness
        result = self._runAction(_translate("Saving the completeness table"), _translate("The table could not be saved."),
                                 lambda callback: self.logic.writeCompletenessCsv(report, path), withProgress=False)
        if result is not None and result.done:
            self.ui.idcStatusLabel.text = _translate("Written: {path}").format(path=result.value)

    def onIdcDownload(self) -> None:
        folder = self._idcFolder()
        collectionId = self.ui.idcCollectionComboBox.currentText.strip()
        if folder is None or not collectionId:
            return
        patients = self.logic.parsePatientList(self.ui.idcPatientsLineEdit.text)
        missingOnly = self.ui.idcMissingOnlyCheckBox.checked

        def work(callback):
            from SarcomaLungLiverBrowserLib.progress import sub_progress

            plan = self.logic.planIdcDownload(collectionId, folder, patients, missingOnly,
                                              sub_progress(callback, 0.0, 0.05))
            return plan, self.logic.runIdcDownload(plan, sub_progress(callback, 0.05, 1.0))

        result = self._runIdcAction(_translate("Downloading from IDC"), _translate("The download failed."), work)
        if result is None or not result.done:
            return
        plan, report = result.value
        self.showCompleteness(report)
        summary = plan.describe() + "\n\n" + self.logic.describeCompleteness(report)
        if report.complete:
            slicer.util.infoDisplay(summary, windowTitle=_translate("Downloaded from IDC"))
        else:
            slicer.util.warningDisplay(summary + "\n\n" + _translate(
                "Some series are still incomplete: download again with \"Missing series only\"."),
                windowTitle=_translate("Downloaded from IDC"))


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
            if SLICER_APPLICATION:
                # Console use inside Slicer gets the same first-use install prompt as the panel.
                requireModuleRequirements()
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
    def openCollection(self, folder: str, collectionKey: Optional[str] = None,
                       annotations: Optional[List[str]] = None) -> Any:
        """Open a collection folder (detected unless ``collectionKey`` names it).

        :param annotations: Lung-PET-CT-Dx annotation folders outside the collection folder (the VOC XML
            trees); None or empty for none. Passed to the review service as ``annotations``.

        If the folder cannot be opened, the collection open before stays open, with its review store.
        """
        if annotations:
            return self.service.open(Path(folder), collectionKey, annotations=[Path(path) for path in annotations])
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

    def reviewStorePath(self) -> Path:
        """The review-store file in use (or to be used): the chosen one, else the one beside the collection."""
        if self.collection is None:
            raise RuntimeError("open a collection folder first")
        return self.service.store_path

    def useReviewStore(self, path: str) -> Any:
        """Switch to the review store in ``path`` and open it now; if it cannot be opened, keep the current one."""
        return self.service.use_store(Path(path))

    def caseVerdictsOrProblem(self) -> Any:
        """({case id: verdict}, "") for the open collection, or (None, why) when no review store can be opened.

        A read-only collection folder still browses and loads; only verdicts need another store file.
        """
        try:
            return {caseId: self.verdictOf(caseId) for caseId in self.caseIds()}, ""
        except Exception as error:
            return None, str(error)

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

    def runCollectionQA(self, progressCallback: Any = None, workers: int = 1, scheduler: Optional[str] = None) -> Any:
        """Run every quality check over every case, with a snapshot each (cancellable through the callback).

        Cases load into this logic's scene one at a time and are removed again. With ``workers`` > 1 they
        are checked in that many worker processes, or with ``scheduler`` on a Dask distributed cluster
        (needs dask and distributed), each worker in a scene of its own; the findings are the same.
        """
        return self.service.run_qa(progressCallback, workers=workers, scheduler=scheduler)

    def describeQA(self, result: Any) -> str:
        return self.service.describe_qa(result)

    def exportReview(self, outputFolder: str, qaResult: Any = None, progressCallback: Any = None,
                     reviewer: Optional[str] = None) -> List[Path]:
        """Write the review as CSV and a self-contained HTML report (the command line's report) into ``outputFolder``.

        Uses the cases indexed when the collection was opened, reporting progress through ``progressCallback``.
        """
        return self.service.export_report(Path(outputFolder), qaResult, progressCallback, reviewer=reviewer)

    def outputFolderProblem(self, outputFolder: str) -> Optional[str]:
        """Why reports cannot be written into ``outputFolder`` (it, or the folder it would be made in, is
        read-only -- e.g. the default beside the store of a read-only collection), or None."""
        folder = Path(outputFolder)
        existing = folder
        while not existing.exists() and existing.parent != existing:
            existing = existing.parent
        if existing.is_dir() and os.access(str(existing), os.W_OK | os.X_OK):
            return None
        return (f"Reports cannot be written to {folder}: {existing} is read-only. Choose an output folder "
                "you can write to under \"Quality checks and export\"; the verdicts themselves are read "
                "from the review store as they are.")

    def adjudicationOf(self, caseId: str, annotation: str = "") -> Any:
        """The adjudicated verdict of a case (or annotation) as the current reader may see it, or None."""
        store = self.service.store_for_reading()
        if store is None:
            return None
        view = store.as_reader(self.service.reader, self.service.blinded) if self.service.reader else store
        return view.adjudication(caseId, annotation)

    # ------------------------------------------------------------------ Imaging Data Commons
    @staticmethod
    def parsePatientList(text: str) -> List[str]:
        """PatientIDs typed in the panel, separated by commas, semicolons or white space (no duplicates)."""
        import re

        patients: List[str] = []
        for part in re.split(r"[,;\s]+", text or ""):
            if part and part not in patients:
                patients.append(part)
        return patients

    def checkCompleteness(self, folder: str, collections: Optional[List[str]] = None,
                          patients: Optional[List[str]] = None, progressCallback: Any = None,
                          indexPath: Optional[str] = None) -> Any:
        """Compare the DICOM files below ``folder`` with IDC's index (idc-index-data), as ``sllb completeness``.

        :returns: a CompletenessReport (rows: what is missing or unknown; summary per collection).
        :raises IndexUnavailable: when idc-index-data is not installed (the widget installs it first).
        """
        from SarcomaLungLiverBrowserLib.review.completeness import check_completeness

        return check_completeness(Path(folder), collections or None, patients or None,
                                  Path(indexPath) if indexPath else None, progressCallback)

    @staticmethod
    def describeCompleteness(report: Any) -> str:
        """One line per collection and the count of each problem, for the panel."""
        from SarcomaLungLiverBrowserLib.review.completeness import STATUSES

        lines = [f"{row['collection_id']}: {row['patients_on_disk']}/{row['patients_expected']} patients, "
                 f"{row['series_complete']}/{row['series_expected']} series complete, "
                 f"{row['instances_on_disk']}/{row['instances_expected']} instances" for row in report.summary]
        counts = [f"{len(report.rows_with(status))} {status}" for status in STATUSES if report.rows_with(status)]
        lines.append(", ".join(counts) if counts else "complete: every expected series is on disk")
        return "\n".join(lines)

    def completenessTableNode(self, report: Any) -> Any:
        """The completeness rows as a table node (one per scene: a new check replaces the previous table)."""
        name = "IDC completeness"
        previous = [node for node in slicer.util.getNodesByClass("vtkMRMLTableNode", self.browser.scene)
                    if node.GetAttribute(COMPLETENESS_TABLE_ATTRIBUTE)]
        node = self.browser.builder.add_table(name, report.table, attributes={"completeness_folder": str(report.folder)})
        node.SetAttribute(COMPLETENESS_TABLE_ATTRIBUTE, "1")
        for old in previous:
            self.browser.scene.RemoveNode(old)
        node.SetName(name)  # the scene made the name unique while the previous table was still there
        return node

    @staticmethod
    def writeCompletenessCsv(report: Any, path: str) -> Path:
        """The completeness rows as CSV (spreadsheet-safe cells, written atomically)."""
        return report.write_csv(Path(path))

    @staticmethod
    def planIdcDownload(collectionId: str, folder: str, patients: Optional[List[str]] = None, missingOnly: bool = False,
                        progressCallback: Any = None, indexPath: Optional[str] = None) -> Any:
        """Which series a download fetches and where they land (offline, from IDC's index), as ``sllb download``.

        :raises DataError: naming the folder, for an unknown collection or patients the collection lacks.
        """
        from SarcomaLungLiverBrowserLib.review.download import plan_download

        return plan_download(collectionId, Path(folder), patients or None, missingOnly,
                             Path(indexPath) if indexPath else None, progressCallback)

    @staticmethod
    def runIdcDownload(plan: Any, progressCallback: Any = None, client: Any = None) -> Any:
        """Fetch a planned download with idc-index, then verify the instance counts against the index.

        Returning True from ``progressCallback`` cancels (files fetched so far stay; plan again with
        ``missingOnly`` to resume).

        :returns: the completeness of the chosen patients after the download.
        :raises LoadCancelled: when cancelled.
        """
        from SarcomaLungLiverBrowserLib.review.download import run_download

        return run_download(plan, client, progressCallback)

    def saveCorrections(self, outputFolder: str, caseId: Optional[str] = None, progressCallback: Any = None) -> List[Path]:
        """Write the loaded case's (edited) annotations in the collection's own format; never over the sources."""
        if caseId is None:
            if not self.browser.loaded:
                raise RuntimeError("load a case first")
            caseId = list(self.browser.loaded)[-1]
        return self.browser.save_corrections(caseId, Path(outputFolder), progressCallback)


#
# SarcomaLungLiverBrowserFileReader, SarcomaLungLiverBrowserFileDialog
#


class SarcomaLungLiverBrowserFileReader:
    """Drag and drop of PASCAL VOC annotation files (.xml): boxes become ROIs on the loaded slices.

    Folders never reach a file reader (Slicer expands a dropped folder into its files); collection
    folders are handled by :class:`SarcomaLungLiverBrowserFileDialog`.
    """

    def __init__(self, parent: Any) -> None:
        self.parent = parent

    def description(self) -> str:
        return _translate("PASCAL VOC annotation")

    def fileType(self) -> str:
        return "SarcomaLungLiverBrowserVocFile"

    def extensions(self) -> List[str]:
        return [_translate("PASCAL VOC annotation (*.xml)")]

    def canLoadFile(self, filePath: str) -> bool:
        path = Path(filePath)
        if path.suffix.lower() != ".xml" or not path.is_file():
            return False
        try:
            with open(path, "rb") as stream:
                head = stream.read(4096)
        except OSError:
            return False
        # Other readers claim .xml too: take only PASCAL VOC annotations.
        return b"<annotation" in head

    def _report(self, severity: str, message: str) -> None:
        """Through Slicer's user messages, which the Add Data dialog shows after loading."""
        import vtk

        event = {"error": vtk.vtkCommand.ErrorEvent, "warning": vtk.vtkCommand.WarningEvent}[severity]
        self.parent.userMessages().AddMessage(event, message)

    def load(self, properties: Any) -> bool:
        from SarcomaLungLiverBrowserLib.dependencies import DependencyError, Readiness

        path = Path(properties["fileName"])
        try:
            if ensureModuleRequirements() is Readiness.RESTART_NEEDED:
                self._report("error", f"{path}: {RESTART_MESSAGE}")
                return False
        except DependencyError as error:
            self._report("error", f"{path}: {error}")
            return False
        try:
            rois, findings = SarcomaLungLiverBrowserLogic().placeVocFiles([str(path)])
        except Exception as error:
            self._report("error", f"{path}: {error}")
            return False
        for finding in findings:
            self._report("warning", f"{path}: {finding.message}")
        self.parent.loadedNodes = [roi.GetID() for roi in rois]
        if not rois:
            self._report("error", f"{path}: no box was placed (load the case's DICOM series first)")
        return bool(rois)


#
# SarcomaLungLiverBrowserFileDialog
#


class SarcomaLungLiverBrowserFileDialog:
    """Drop a collection folder on Slicer to open it in this module.

    Slicer detects this specially named class (as it does the DICOM module's ``DICOMFileDialog``) and
    asks it about every drop before expanding folders into files. Only folders that hold a known
    collection are claimed, so other folder drops still reach the DICOM module and Add Data.
    """

    def __init__(self, qSlicerFileDialog: Any) -> None:
        self.qSlicerFileDialog = qSlicerFileDialog
        qSlicerFileDialog.fileType = _translate("TCIA collection folder")
        qSlicerFileDialog.description = _translate("Open the collection in Sarcoma Lung Liver Browser")
        qSlicerFileDialog.action = slicer.qSlicerFileDialog.Read
        self.collectionFolders: List[str] = []

    def execDialog(self) -> None:
        """File > Add Data does not list this dialog; choosing a folder happens in the module panel."""
        slicer.util.selectModule(MODULE_NAME)

    def isMimeDataAccepted(self) -> None:
        mimeData = self.qSlicerFileDialog.mimeData()
        paths = [url.toLocalFile() for url in mimeData.urls()] if mimeData.hasFormat("text/uri-list") else []
        self.collectionFolders = collectionFoldersIn(paths)
        self.qSlicerFileDialog.acceptMimeData(bool(self.collectionFolders))

    def dropEvent(self) -> None:
        folders, self.collectionFolders = self.collectionFolders, []
        if not folders:
            return
        if len(folders) > 1:
            logging.warning(f"Sarcoma Lung Liver Browser opens one collection at a time; opening {folders[0]}")
        slicer.util.selectModule(MODULE_NAME)
        widget = slicer.modules.sarcomalungliverbrowser.widgetRepresentation().self()
        widget.openCollectionFolder(folders[0])


#
# SarcomaLungLiverBrowserTest
#


class SarcomaLungLiverBrowserTest(ScriptedLoadableModuleTest):
    """Self-test run inside Slicer ("Reload and Test", or ctest through the extension build).

    Slicer's test harness (``--testing``) starts without pandas, nibabel, lxml and openpyxl. ``setUp``
    installs the module's requirements (without a dialog under ``--testing``) or skips the test naming
    what is missing; a missing package is never reported as a test error. The sample collections are
    written by the library's sample writers into a temporary folder that is removed afterwards.
    """

    def setUp(self) -> None:
        from SarcomaLungLiverBrowserLib.dependencies import DependencyError, Readiness, missing_requirements

        missing = missing_requirements()
        if missing:
            try:
                readiness = ensureModuleRequirements(installInTesting=True, ask=not _testingMode())
            except DependencyError as error:
                self.skipTest(f"missing Python packages {', '.join(missing)}: {error}")
            if readiness is Readiness.RESTART_NEEDED:
                self.skipTest(f"{RESTART_MESSAGE} (upgraded: {', '.join(missing)})")
        slicer.mrmlScene.Clear()

    def runTest(self) -> None:
        self.setUp()
        self.test_LoadSampleCaseOfEachCollection()
        self.setUp()
        self.test_ReviewRound()

    def _sampleCollections(self) -> Any:
        import shutil
        import tempfile

        from SarcomaLungLiverBrowserLib.samples import generate_all

        folder = Path(tempfile.mkdtemp(prefix="SarcomaLungLiverBrowserTest-"))
        self.addCleanup(shutil.rmtree, str(folder), True)
        return folder, generate_all(folder / "data")

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
