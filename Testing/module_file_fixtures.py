"""Shared by the tests that use the module file's Logic in this process.

The Logic turns on a process-wide DICOM header cache (``formats.dicom_series.set_default_index_cache``),
kept in ``$HOME/.cache`` unless ``SLLB_INDEX_CACHE`` says otherwise. Tests must not write in $HOME nor
leave that cache switched on for the tests that run after them, so this fixture points it at a
temporary file and restores the previous default afterwards.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Iterator

import pytest


@pytest.fixture
def isolated_header_cache(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    from SarcomaLungLiverBrowserLib.formats import dicom_series

    monkeypatch.setenv("SLLB_INDEX_CACHE", str(tmp_path_factory.mktemp("header-cache") / "dicom-index.sqlite"))
    previous = dicom_series._default_index_cache
    try:
        yield
    finally:
        dicom_series.set_default_index_cache(previous)


#: The module file as Slicer loads it (Module / Widget / Logic / Test classes).
MODULE_FILE = Path(__file__).resolve().parents[1] / "SarcomaLungLiverBrowser" / "SarcomaLungLiverBrowser.py"


def import_module_file() -> ModuleType:
    """The module file imported the way Slicer imports it: as a top-level module named after the file."""
    spec = importlib.util.spec_from_file_location("SarcomaLungLiverBrowser", MODULE_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
