"""Worker processes start through one spawn context, which inside Slicer runs the real interpreter."""
from __future__ import annotations

import multiprocessing.spawn
import os
import sys
from pathlib import Path

import pytest

from SarcomaLungLiverBrowserLib import processes


def test_inside_slicer_workers_run_the_interpreter_beside_the_launcher(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Slicer's sys.executable is the PythonSlicer launcher, through which the start-up pipe does not reach the
    child (Slicer issue #7445): the context runs python-real beside it instead."""
    launcher, real = tmp_path / "PythonSlicer", tmp_path / "python-real"
    launcher.write_text("launcher")
    real.write_text("interpreter")
    previous = multiprocessing.spawn.get_executable()
    monkeypatch.setattr(sys, "executable", str(launcher))
    try:
        context = processes.spawn_context()
        assert context.get_start_method() == "spawn"
        assert Path(os.fsdecode(multiprocessing.spawn.get_executable())) == real
    finally:
        multiprocessing.spawn.set_executable(previous)


def test_outside_slicer_the_interpreter_is_left_as_it_is(monkeypatch: pytest.MonkeyPatch) -> None:
    previous = multiprocessing.spawn.get_executable()
    processes.spawn_context()
    assert multiprocessing.spawn.get_executable() == previous


def test_this_test_process_is_not_a_worker_but_a_spawned_child_is() -> None:
    assert not processes.in_worker_process()
    context = processes.spawn_context()
    with context.Pool(1) as pool:
        assert pool.apply(processes.in_worker_process) is True


def test_every_worker_pool_of_the_library_starts_through_the_shared_context() -> None:
    """Pools started any other way would run the PythonSlicer launcher inside Slicer and never start."""
    library = Path(__file__).resolve().parents[1] / "SarcomaLungLiverBrowser" / "SarcomaLungLiverBrowserLib"
    offenders = [str(path.relative_to(library)) for path in sorted(library.rglob("*.py"))
                 if path.name != "processes.py" and "get_context(" in path.read_text(encoding="utf-8")]
    assert not offenders, offenders
    users = [path.name for path in sorted(library.rglob("*.py")) if "spawn_context()" in path.read_text(encoding="utf-8")]
    assert {"dicom_series.py", "voc_xml.py", "parallel.py"} <= set(users), users
