"""The Slicer module file: imports without the Slicer application, Logic works without the widget."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from module_file_fixtures import MODULE_FILE, import_module_file, isolated_header_cache  # noqa: E402,F401

pytestmark = pytest.mark.usefixtures("isolated_header_cache")



def test_module_file_imports_without_qt_or_the_application():
    assert "qt" not in sys.modules or sys.modules["qt"] is None
    module = import_module_file()
    assert module.SLICER_APPLICATION is False
    for name in ("SarcomaLungLiverBrowser", "SarcomaLungLiverBrowserWidget", "SarcomaLungLiverBrowserLogic",
                 "SarcomaLungLiverBrowserTest"):
        assert hasattr(module, name)


def test_logic_opens_a_collection_and_refuses_other_folders(headless, tmp_path):
    module = import_module_file()
    logic = module.SarcomaLungLiverBrowserLogic(headless.scene)
    (tmp_path / "holiday photos").mkdir()
    with pytest.raises(Exception) as raised:
        logic.openCollection(str(tmp_path / "holiday photos"))
    assert "holiday photos" in str(raised.value)
    with pytest.raises(Exception) as raised:
        logic.openCollection(str(tmp_path / "does not exist"))
    assert "does not exist" in str(raised.value)


def test_requirements_file_lists_what_the_library_imports(tmp_path):
    from SarcomaLungLiverBrowserLib.dependencies import missing_requirements, requirements

    names = [line.split(">")[0].split("=")[0] for line in requirements()]
    assert set(names) == {"pydicom", "highdicom", "nibabel", "pandas", "lxml", "openpyxl",
                          "pyjpegls", "pylibjpeg", "pylibjpeg-openjpeg", "pylibjpeg-rle",
                          "python-gdcm", "imagecodecs"}  # MIT and BSD (GDCM, imagecodecs) decoders only: no GPL
    assert missing_requirements() == []
    fake = tmp_path / "requirements.txt"
    fake.write_text("# comment\npydicom>=3.0\nno-such-package-sllb>=1.0  # trailing comment\n")
    assert missing_requirements(fake) == ["no-such-package-sllb>=1.0"]


def test_every_widget_the_module_uses_is_in_the_ui_file():
    """The widget cannot be run without Slicer here; at least its names must match the .ui file."""
    import re
    import xml.etree.ElementTree as ElementTree

    ui_file = MODULE_FILE.parent / "Resources" / "UI" / "SarcomaLungLiverBrowser.ui"
    declared = {widget.get("name") for widget in ElementTree.parse(ui_file).iter("widget")}
    used = set(re.findall(r"self\.ui\.(\w+)", MODULE_FILE.read_text()))
    assert used, "the widget should use the .ui file"
    assert used <= declared, f"used in the module but missing from {ui_file.name}: {sorted(used - declared)}"
    for name in declared - used:
        assert name.endswith(("Label", "CollapsibleButton")) or name == "SarcomaLungLiverBrowser", \
            f"{name} is in the .ui file but the module never wires it"


def test_logic_library_imports_are_deferred_until_first_use():
    """Slicer may lack pandas etc. until the module has asked to install them."""
    import ast

    tree = ast.parse(MODULE_FILE.read_text())
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [alias.name for alias in node.names] + [getattr(node, "module", "") or ""]
            assert not any(name.startswith("SarcomaLungLiverBrowserLib") for name in names)


def test_logic_review_round_without_the_widget(headless, tmp_path):
    """What the module's self-test does inside Slicer, run on slicer-core."""
    from SarcomaLungLiverBrowserLib.samples import crlm

    module = import_module_file()
    root = crlm.generate(tmp_path / "data")
    logic = module.SarcomaLungLiverBrowserLogic(headless.scene)
    logic.openCollection(str(root))
    logic.setReviewStorePath(str(tmp_path / "review.sqlite"))
    case_ids = logic.caseIds()
    assert logic.neighbourCaseId(case_ids[-1], 1) == case_ids[0]
    case_id = logic.nextUnreviewedCaseId()
    seen = []
    while case_id is not None:
        loaded = logic.loadCase(case_id)
        assert loaded.segmentations and logic.annotationKeys(loaded)
        assert set(logic.browser.loaded) == {case_id}, "the previous case is closed when the next loads"
        logic.setVerdict(case_id, "accepted", "ok", "Self Test")
        seen.append(case_id)
        case_id = logic.nextUnreviewedCaseId(case_id)
    assert seen == case_ids and logic.reviewProgress() == (len(case_ids), len(case_ids))
    assert logic.verdictOf(case_ids[0]) == "accepted"
    nodes_before = headless.scene.GetNumberOfNodes()
    qa_result = logic.runCollectionQA()
    assert headless.scene.GetNumberOfNodes() == nodes_before
    assert "case(s) checked" in logic.describeQA(qa_result)
    paths = logic.exportReview(str(tmp_path / "report"), qa_result)
    assert {path.name for path in paths} == {"review.csv", "findings.csv", "report.html", "segmentation_agreement.csv",
                                             "segmentation_agreement_summary.csv"}  # 1003 has an AI SEG
    written = logic.saveCorrections(str(tmp_path / "corrected"))
    assert written and all(path.suffix == ".dcm" for path in written)
