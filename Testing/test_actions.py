"""User actions as the widget runs them: a failure is one message and changes nothing; Cancel is not an error.

The widget passes every button through ``ActionRunner.run`` with the Logic call as the work and the
settings write as ``remember``; these tests do the same with the real Logic on slicer-core and a
dict standing in for ``qt.QSettings``.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Dict

import pytest

from SarcomaLungLiverBrowserLib.actions import ActionRunner, Outcome, OUTPUT_FOLDER_NAME, output_folder
from SarcomaLungLiverBrowserLib.errors import LoadCancelled

from module_file_fixtures import MODULE_FILE, import_module_file, isolated_header_cache  # noqa: E402,F401

pytestmark = pytest.mark.usefixtures("isolated_header_cache")



class FakeSettings:
    """The two QSettings calls the widget makes."""

    def __init__(self) -> None:
        self.values: Dict[str, Any] = {}

    def setValue(self, key: str, value: Any) -> None:
        self.values[key] = value

    def value(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)


def open_folder(runner, logic, settings, module, folder):
    """What the widget's openCollectionFolder does, without Qt."""
    return runner.run("Indexing collection", "This folder could not be opened as a collection.",
                      lambda: (logic.openCollection(str(folder)), logic.caseTable()),
                      remember=lambda value: settings.setValue(module.SETTINGS_LAST_FOLDER, str(folder)))


def widget_facing_state(logic, scene):
    return {
        "collection": logic.collection.root if logic.collection is not None else None,
        "cases": logic.caseIds() if logic.collection is not None else None,
        "loaded": sorted(logic.browser.loaded),
        "store": logic.reviewStorePath() if logic.collection is not None else None,
        "nodes": sorted(scene.GetNthNode(index).GetID() for index in range(scene.GetNumberOfNodes())),
    }


@pytest.fixture
def crlm_sample(tmp_path_factory):
    from SarcomaLungLiverBrowserLib.samples import crlm

    return crlm.generate(tmp_path_factory.mktemp("crlm"))


def test_a_failing_open_leaves_settings_and_widget_facing_state_unchanged(headless, tmp_path, crlm_sample):
    module = import_module_file()
    logic = module.SarcomaLungLiverBrowserLogic(headless.scene)
    settings, runner = FakeSettings(), ActionRunner()

    opened = open_folder(runner, logic, settings, module, crlm_sample)
    assert opened.outcome is Outcome.DONE and settings.values == {module.SETTINGS_LAST_FOLDER: str(crlm_sample)}
    logic.setReviewStorePath(str(tmp_path / "chosen review.sqlite"))  # e.g. the collection is read-only
    loaded = logic.loadCase(logic.caseIds()[0])
    before = widget_facing_state(logic, headless.scene)

    (tmp_path / "holiday photos").mkdir()
    for bad in (tmp_path / "holiday photos", tmp_path / "no such folder"):
        result = open_folder(runner, logic, settings, module, bad)
        assert result.outcome is Outcome.FAILED and result.value is None
        assert result.message.startswith("This folder could not be opened as a collection.")
        assert str(bad) in result.message, "the message names the folder"
        assert "Traceback" in result.details and not runner.busy
        assert settings.values == {module.SETTINGS_LAST_FOLDER: str(crlm_sample)}, "a bad folder is never saved"
        assert widget_facing_state(logic, headless.scene) == before
    assert logic.browser.loaded[loaded.case.case_id] is loaded


def test_a_failing_load_keeps_the_loaded_case_and_the_scene(headless, crlm_sample, tmp_path):
    module = import_module_file()
    broken = tmp_path / "broken"
    shutil.copytree(crlm_sample, broken / crlm_sample.name)
    logic = module.SarcomaLungLiverBrowserLogic(headless.scene)
    logic.openCollection(str(broken / crlm_sample.name))
    first, second = logic.caseIds()[:2]
    loaded = logic.loadCase(first)
    # Damage every SEG file of the second case: its load must fail as a whole.
    damaged = 0
    for path in (broken / crlm_sample.name).rglob("*.dcm"):
        if second in str(path) and "seg" in str(path).lower():
            path.write_bytes(b"not DICOM")
            damaged += 1
    assert damaged, "the sample layout changed: no SEG file of the second case was found"
    before = widget_facing_state(logic, headless.scene)

    result = ActionRunner().run("Loading case", "The case could not be loaded.", lambda: logic.loadCase(second))
    assert result.outcome is Outcome.FAILED
    assert result.message.startswith("The case could not be loaded.") and str(broken) in result.message
    assert widget_facing_state(logic, headless.scene) == before
    assert logic.browser.loaded == {first: loaded}


def test_cancel_is_not_an_error_and_changes_nothing(headless, crlm_sample):
    module = import_module_file()
    logic = module.SarcomaLungLiverBrowserLogic(headless.scene)
    logic.openCollection(str(crlm_sample))
    before = widget_facing_state(logic, headless.scene)
    remembered = []

    result = ActionRunner().run("Loading case", "The case could not be loaded.",
                                lambda: logic.loadCase(logic.caseIds()[0], lambda message, fraction: True),
                                remember=remembered.append)
    assert result.outcome is Outcome.CANCELLED and result.message == "" and remembered == []
    assert widget_facing_state(logic, headless.scene) == before


def test_no_second_action_starts_inside_the_first():
    """Slicer's progress dialog lets events through; a shortcut pressed meanwhile must not start a load."""
    runner = ActionRunner()
    inner = []

    def first():
        inner.append(runner.run("second", "failed", lambda: "ran"))
        return "first done"

    result = runner.run("Loading case", "failed", first)
    assert result.outcome is Outcome.DONE and result.value == "first done"
    assert inner[0].outcome is Outcome.BUSY and inner[0].value is None and "Loading case" in inner[0].message
    assert runner.run("third", "failed", lambda: 3).value == 3, "the runner is free again afterwards"


def test_a_failing_remember_is_a_failure_not_a_crash():
    def remember(value):
        raise OSError("settings file is read-only")

    result = ActionRunner().run("Export", "The report could not be written.", lambda: 1, remember)
    assert result.outcome is Outcome.FAILED and "settings file is read-only" in result.message


def test_a_failure_naming_a_file_that_is_not_utf8_gives_text_qt_can_show():
    """Qt takes no lone surrogate; the message and the traceback spell the byte out instead."""
    import os

    from SarcomaLungLiverBrowserLib.errors import DataError

    folder = os.fsdecode(b"/data/\xe9tude")

    def work():
        raise DataError(f"{folder}/1.xml", "not PASCAL VOC XML")

    result = ActionRunner().run("Load", "The case could not be loaded.", work)
    assert result.outcome is Outcome.FAILED
    for text in (result.message, result.details):
        assert "\\xe9tude" in text
        text.encode("utf-8")  # raises on a lone surrogate


def test_cancel_raised_anywhere_in_the_work_is_reported_as_cancelled():
    def work():
        raise LoadCancelled("stopped at case 3 of 10")

    assert ActionRunner().run("QA", "failed", work).outcome is Outcome.CANCELLED


def test_the_output_folder_is_the_chosen_one_else_beside_the_review_store(tmp_path):
    store = tmp_path / "collection" / "review.sqlite"
    assert output_folder(str(tmp_path / "mine"), store) == tmp_path / "mine"
    # Qt's directory button starts at "." (Slicer's working directory): never write there.
    for unchosen in ("", ".", None):
        assert output_folder(unchosen, store) == tmp_path / "collection" / OUTPUT_FOLDER_NAME


def test_a_collection_that_cannot_hold_its_store_still_lists_cases_and_another_store_can_be_chosen(
        headless, tmp_path, crlm_sample):
    """As on a read-only share; made here (even as root) by a folder where the store file would go."""
    from SarcomaLungLiverBrowserLib.review.store import default_store_path

    module = import_module_file()
    copy = tmp_path / "share" / crlm_sample.name
    shutil.copytree(crlm_sample, copy)
    default_store_path(copy).mkdir()
    logic = module.SarcomaLungLiverBrowserLogic(headless.scene)
    logic.openCollection(str(copy))
    verdicts, problem = logic.caseVerdictsOrProblem()
    assert verdicts is None and str(default_store_path(copy)) in problem and logic.caseIds()
    logic.useReviewStore(str(tmp_path / "elsewhere.sqlite"))
    verdicts, problem = logic.caseVerdictsOrProblem()
    assert problem == "" and set(verdicts) == set(logic.caseIds())
    logic.setVerdict(logic.caseIds()[0], "rejected", "", "Tester")
    assert (tmp_path / "elsewhere.sqlite").is_file()


def test_a_store_that_cannot_be_opened_keeps_the_current_one(headless, tmp_path, crlm_sample):
    """Works as root too: a path under a regular file can never be created."""
    module = import_module_file()
    logic = module.SarcomaLungLiverBrowserLogic(headless.scene)
    logic.openCollection(str(crlm_sample))
    logic.useReviewStore(str(tmp_path / "good.sqlite"))
    logic.setVerdict(logic.caseIds()[0], "accepted", "", "Tester")
    (tmp_path / "a file").write_text("x")
    with pytest.raises(Exception) as raised:
        logic.useReviewStore(str(tmp_path / "a file" / "store.sqlite"))
    assert "a file" in str(raised.value)
    assert logic.reviewStorePath() == tmp_path / "good.sqlite"
    assert logic.verdictOf(logic.caseIds()[0]) == "accepted"


def test_export_report_reuses_the_indexed_cases_and_reports_progress(headless, crlm_sample, tmp_path, monkeypatch):
    module = import_module_file()
    logic = module.SarcomaLungLiverBrowserLogic(headless.scene)
    logic.openCollection(str(crlm_sample))
    logic.setReviewStorePath(str(tmp_path / "review.sqlite"))
    case_ids = logic.caseIds()  # the widget indexes when the collection opens
    calls = []
    original = type(logic.collection).discover_cases
    monkeypatch.setattr(type(logic.collection), "discover_cases",
                        lambda self, progress=None: calls.append(1) or original(self, progress))
    progress = []
    paths = logic.exportReview(str(tmp_path / "report"), None, lambda message, fraction: progress.append(fraction))
    assert calls == [], "Export report indexed the whole collection again"
    assert {path.name for path in paths} == {"review.csv", "report.html"}
    assert progress and progress == sorted(progress) and progress[-1] == 1.0
    assert all(case_id in (tmp_path / "report" / "review.csv").read_text() for case_id in case_ids)
