"""The Slicer module file: imports without the Slicer application, Logic works without the widget."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

MODULE_FILE = Path(__file__).resolve().parents[1] / "SarcomaLungLiverBrowser" / "SarcomaLungLiverBrowser.py"


def import_module_file():
    spec = importlib.util.spec_from_file_location("SarcomaLungLiverBrowser", MODULE_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
