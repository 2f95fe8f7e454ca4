"""The module's own self-test class, run under pytest on slicer-core as Slicer's ctest harness would run it.

Slicer's harness (``slicer_add_python_unittest``, ``--testing``) starts a Python without pandas,
nibabel, lxml and openpyxl. The subprocess here blocks those imports before anything runs, sets
``slicer.app.testingEnabled()`` and replaces ``slicer.util.pip_install`` (which slicer-core lacks)
with a fake: one that fails (the self-test must skip, naming what is missing) and one that "installs"
by lifting the block (the self-test must then pass for real).
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


MODULE_FILE = Path(__file__).resolve().parents[1] / "SarcomaLungLiverBrowser" / "SarcomaLungLiverBrowser.py"
BLOCKED = ("pandas", "nibabel", "lxml", "openpyxl")

RUNNER = '''
import importlib.abc
import importlib.util
import os
import subprocess
import sys

BLOCKED = {blocked!r}


class BlockImports(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {{name!r}} (not in Slicer's Python)", name=name)
        return None


BLOCKER = BlockImports()
sys.meta_path.insert(0, BLOCKER)
os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")

import slicer
import slicer.util

PIP_CALLS = []


def fake_pip_install(arguments):
    PIP_CALLS.append(arguments)
    with open(os.environ["PIP_LOG"], "a") as log:
        log.write(arguments + "\\n")
    if os.environ["FAKE_PIP"] == "fails":
        raise subprocess.CalledProcessError(1, ["pip", "install", arguments])
    if not arguments.startswith("--dry-run") and BLOCKER in sys.meta_path:
        sys.meta_path.remove(BLOCKER)  # the packages are now "installed"


slicer.util.pip_install = fake_pip_install
from SarcomaLungLiverBrowserLib.scene.headless import HeadlessSlicer

HEADLESS = HeadlessSlicer(install_globals=True)  # the one headless line the README documents
slicer.app.testingEnabled = lambda: True  # as under Slicer's --testing

spec = importlib.util.spec_from_file_location("SarcomaLungLiverBrowser", {module_file!r})
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
for name in BLOCKED:
    assert name not in sys.modules, f"importing the module file imported {{name}}"

SarcomaLungLiverBrowserSelfTest = module.SarcomaLungLiverBrowserTest
'''


def run_self_test(tmp_path: Path, fake_pip: str) -> subprocess.CompletedProcess:
    runner = tmp_path / "self_test_runner.py"
    runner.write_text(RUNNER.format(blocked=set(BLOCKED), module_file=str(MODULE_FILE)))
    environment = {**os.environ, "FAKE_PIP": fake_pip, "PIP_LOG": str(tmp_path / "pip.log"),
                   "HOME": str(tmp_path), "TMPDIR": str(tmp_path)}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "-o", "addopts=",
                           "-W", "ignore", str(runner)],
                          capture_output=True, text=True, cwd=tmp_path, env=environment, timeout=1800)


def pip_calls(tmp_path: Path):
    log = tmp_path / "pip.log"
    return log.read_text().splitlines() if log.exists() else []


def test_self_test_skips_naming_the_missing_packages_when_they_cannot_be_installed(tmp_path):
    result = run_self_test(tmp_path, "fails")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    summary = result.stdout.strip().splitlines()[-1]
    assert summary.startswith("2 skipped in"), f"expected two skips and nothing else, got: {summary}\n{output[-6000:]}"
    skip_lines = [line for line in output.splitlines() if line.startswith("SKIPPED")]
    assert skip_lines, output
    for name in BLOCKED:
        assert all(name in line for line in skip_lines), f"skip reason does not name {name}: {skip_lines}"
    # One dry run, which failed: nothing was installed.
    assert len(pip_calls(tmp_path)) == 2 and all(call.startswith("--dry-run") for call in pip_calls(tmp_path))


def test_self_test_installs_what_is_missing_in_setup_and_passes(tmp_path):
    result = run_self_test(tmp_path, "installs")
    output = result.stdout + result.stderr
    assert result.returncode == 0 and "2 passed" in output, output[-6000:]
    calls = pip_calls(tmp_path)
    assert len(calls) == 2 and calls[0] == "--dry-run " + calls[1]
    for name in BLOCKED:
        assert name in calls[1]
    for name in ("pydicom", "highdicom"):
        assert name not in calls[1], "only what is missing is installed"
    leftovers = [path for path in tmp_path.iterdir() if path.name.startswith("SarcomaLungLiverBrowserTest-")]
    assert leftovers == [], "the self-test removes its sample folders"
