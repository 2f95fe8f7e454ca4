"""Installing the module's Python packages: version-aware, asks first, never a half install.

Slicer's ``slicer.packaging`` and ``slicer.util.pip_install`` are replaced by fakes that record what
they were asked to do and change a fake set of installed versions, as pip would.
"""
from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Dict, List, Optional

import pytest

from SarcomaLungLiverBrowserLib import dependencies
from SarcomaLungLiverBrowserLib.dependencies import (
    DependencyError,
    InstallDeclined,
    Readiness,
    ensure_requirements,
    missing_requirements,
    plan_install,
)

REQUIREMENT_LINES = "pydicom>=3.0\nhighdicom>=0.27\npandas>=2.0\n"


@pytest.fixture(autouse=True)
def no_restart_pending(monkeypatch):
    """Each test starts in a session where no install has replaced an imported package yet."""
    monkeypatch.setattr(dependencies, "_restart_required", False)


@pytest.fixture
def requirements_file(tmp_path: Path) -> Path:
    path = tmp_path / "requirements.txt"
    path.write_text("# what the module needs\n" + REQUIREMENT_LINES)
    return path


class FakeEnvironment:
    """Installed versions plus a fake pip that installs (or fails) the way pip does."""

    def __init__(self, installed: Dict[str, str], available: Optional[Dict[str, str]] = None,
                 fail_resolution: bool = False, forget: Optional[str] = None) -> None:
        self.installed = dict(installed)
        self.available = available or {"pydicom": "3.0.2", "highdicom": "0.28.2", "pandas": "3.1.1"}
        self.fail_resolution = fail_resolution
        self.forget = forget  # a package pip claims to install but does not
        self.calls: List[str] = []
        self.questions: List[str] = []

    def version_of(self, name: str) -> Optional[str]:
        return self.installed.get(name)

    def pip_install(self, arguments: str) -> None:
        self.calls.append(arguments)
        if self.fail_resolution:
            raise subprocess.CalledProcessError(1, ["pip", "install", arguments])
        if arguments.startswith("--dry-run"):
            return
        for word in arguments.split():
            name = word.strip('"').split(">")[0].split("=")[0]
            if name != self.forget:
                self.installed[name] = self.available[name]

    def confirm(self, answer: bool):
        def ask(question: str) -> bool:
            self.questions.append(question)
            return answer

        return ask


class FakeSlicerPackaging:
    """Slicer 5.12's slicer.packaging: pip_ensure asks itself and raises RuntimeError when declined."""

    def __init__(self, environment: FakeEnvironment, outcome: str = "install") -> None:
        self.environment = environment
        self.outcome = outcome
        self.ensure_calls: List[dict] = []

    def load_requirements(self, path: str) -> List[str]:
        return [line for line in Path(path).read_text().splitlines() if line and not line.startswith("#")]

    def pip_check(self, requirements) -> bool:  # present on 5.12; ensure_requirements only tests for it
        raise AssertionError("not called by ensure_requirements")

    def pip_ensure(self, requirements, requester=None, prompt_install=True, skip_in_testing=True, **kwargs) -> None:
        self.ensure_calls.append({"requirements": list(requirements), "requester": requester,
                                  "prompt_install": prompt_install, "skip_in_testing": skip_in_testing})
        if self.outcome == "declined":
            raise RuntimeError("User declined installation")
        if self.outcome == "fail":
            raise subprocess.CalledProcessError(1, ["pip", "install"])
        if self.outcome == "skipped in testing":
            return
        self.environment.pip_install(" ".join(requirements))


def test_versions_count_not_just_imports(requirements_file):
    """Slicer 5.10's pydicom 2.4.4 imports fine but does not meet pydicom>=3.0; it is imported at startup."""
    installed = {"pydicom": "2.4.4", "pandas": "3.1.1"}
    plan = plan_install(requirements_file, installed.get, imported_modules={"pydicom": object()})
    assert plan.requirement_lines == ["pydicom>=3.0", "highdicom>=0.27"]
    assert plan.restart_needed
    question = plan.question("Sarcoma Lung Liver Browser")
    assert "pydicom>=3.0  (installed: 2.4.4)" in question and "highdicom>=0.27  (installed: none)" in question
    assert "restart Slicer" in question
    assert missing_requirements(requirements_file, installed.get) == ["pydicom>=3.0", "highdicom>=0.27"]
    not_imported = plan_install(requirements_file, installed.get, imported_modules={})
    assert not not_imported.restart_needed and "restart" not in not_imported.question("x")


def test_nothing_is_asked_or_installed_when_everything_is_met(requirements_file):
    environment = FakeEnvironment({"pydicom": "3.0.2", "highdicom": "0.27.0", "pandas": "2.2.0"})
    packaging = FakeSlicerPackaging(environment)
    result = ensure_requirements(environment.confirm(True), environment.pip_install, packaging,
                                 path=requirements_file, version_of=environment.version_of, imported_modules={})
    assert result is Readiness.READY
    assert environment.calls == [] and environment.questions == [] and packaging.ensure_calls == []


def test_without_slicer_packaging_declining_installs_nothing_and_says_what_is_missing(requirements_file):
    environment = FakeEnvironment({"pydicom": "3.0.2"})
    with pytest.raises(InstallDeclined) as raised:
        ensure_requirements(environment.confirm(False), environment.pip_install, None, path=requirements_file,
                            version_of=environment.version_of, imported_modules={})
    assert environment.calls == [], "declining must not run pip"
    assert environment.installed == {"pydicom": "3.0.2"}
    message = str(raised.value)
    assert "highdicom>=0.27" in message and "pandas>=2.0" in message and "nothing was installed" in message
    assert len(environment.questions) == 1 and "Install them now" in environment.questions[0]


def test_without_slicer_packaging_a_conflict_fails_before_anything_is_installed(requirements_file):
    """pip resolves everything in a dry run first: a package with no release for this Python installs nothing."""
    environment = FakeEnvironment({"pydicom": "3.0.2"}, fail_resolution=True)
    with pytest.raises(DependencyError) as raised:
        ensure_requirements(environment.confirm(True), environment.pip_install, None, path=requirements_file,
                            version_of=environment.version_of, imported_modules={})
    assert len(environment.calls) == 1 and environment.calls[0].startswith("--dry-run")
    assert environment.installed == {"pydicom": "3.0.2"}, "no half install"
    assert "Installing the Python packages failed" in str(raised.value)
    assert "highdicom>=0.27" in str(raised.value)


def test_without_slicer_packaging_all_requirements_install_in_one_pip_call(requirements_file):
    environment = FakeEnvironment({"pydicom": "3.0.2"})
    result = ensure_requirements(environment.confirm(True), environment.pip_install, None, path=requirements_file,
                                 version_of=environment.version_of, imported_modules={})
    assert result is Readiness.READY
    assert environment.calls == ['--dry-run "highdicom>=0.27" "pandas>=2.0"', '"highdicom>=0.27" "pandas>=2.0"']
    assert environment.installed == {"pydicom": "3.0.2", "highdicom": "0.28.2", "pandas": "3.1.1"}


def test_upgrading_a_package_slicer_already_imported_asks_for_a_restart(requirements_file):
    environment = FakeEnvironment({"pydicom": "2.4.4", "pandas": "3.1.1"})
    result = ensure_requirements(environment.confirm(True), environment.pip_install, None, path=requirements_file,
                                 version_of=environment.version_of, imported_modules={"pydicom": object()})
    assert result is Readiness.RESTART_NEEDED
    assert "restart Slicer" in environment.questions[0], "the user is told before saying yes"
    assert environment.installed["pydicom"] == "3.0.2"
    # The files on disk now look right, but the old pydicom is still the one in memory.
    again = ensure_requirements(environment.confirm(True), environment.pip_install, None, path=requirements_file,
                                version_of=environment.version_of, imported_modules={"pydicom": object()})
    assert again is Readiness.RESTART_NEEDED and dependencies.restart_required()
    assert len(environment.calls) == 2, "nothing is installed a second time"


def test_installed_but_not_importable_counts_as_missing(requirements_file):
    """A broken install (metadata without a usable package) must not pass for installed."""
    installed = {"pydicom": "3.0.2", "highdicom": "0.28.2", "pandas": "3.1.1"}
    plan = plan_install(requirements_file, installed.get, imported_modules={}, can_import=lambda name: name != "pandas")
    assert plan.requirement_lines == ["pandas>=2.0"] and "(installed: none)" in plan.describe()


def test_without_asking_the_self_test_installs_without_a_dialog(requirements_file):
    environment = FakeEnvironment({"pydicom": "3.0.2"})
    assert ensure_requirements(environment.confirm(False), environment.pip_install, None, path=requirements_file,
                               ask=False, version_of=environment.version_of, imported_modules={}) is Readiness.READY
    assert environment.questions == []
    packaging = FakeSlicerPackaging(FakeEnvironment({"pydicom": "3.0.2"}))
    ensure_requirements(environment.confirm(False), environment.pip_install, packaging, path=requirements_file,
                        ask=False, install_in_testing=True, version_of=packaging.environment.version_of,
                        imported_modules={})
    assert packaging.ensure_calls[0]["prompt_install"] is False


def test_a_package_pip_did_not_install_is_reported(requirements_file):
    environment = FakeEnvironment({"pydicom": "3.0.2"}, forget="pandas")
    with pytest.raises(DependencyError) as raised:
        ensure_requirements(environment.confirm(True), environment.pip_install, None, path=requirements_file,
                            version_of=environment.version_of, imported_modules={})
    assert "Still missing or too old" in str(raised.value) and "pandas>=2.0" in str(raised.value)
    assert "highdicom" not in str(raised.value).split("Still missing")[1]


def test_slicer_packaging_pip_ensure_is_used_where_present(requirements_file):
    environment = FakeEnvironment({"pydicom": "3.0.2"})
    packaging = FakeSlicerPackaging(environment)
    result = ensure_requirements(environment.confirm(True), environment.pip_install, packaging,
                                 path=requirements_file, version_of=environment.version_of, imported_modules={})
    assert result is Readiness.READY
    assert environment.questions == [], "pip_ensure asks the user itself"
    assert packaging.ensure_calls == [{"requirements": REQUIREMENT_LINES.split(),
                                       "requester": "Sarcoma Lung Liver Browser", "prompt_install": True,
                                       "skip_in_testing": True}]


def test_slicer_packaging_declined_gives_a_clear_message_and_installs_nothing(requirements_file):
    environment = FakeEnvironment({"pydicom": "3.0.2"})
    packaging = FakeSlicerPackaging(environment, outcome="declined")
    with pytest.raises(InstallDeclined) as raised:
        ensure_requirements(environment.confirm(True), environment.pip_install, packaging,
                            path=requirements_file, version_of=environment.version_of, imported_modules={})
    assert environment.installed == {"pydicom": "3.0.2"}
    assert "cannot open collections without these Python packages" in str(raised.value)


def test_slicer_packaging_failure_gives_a_clear_message(requirements_file):
    environment = FakeEnvironment({"pydicom": "3.0.2"})
    packaging = FakeSlicerPackaging(environment, outcome="fail")
    with pytest.raises(DependencyError) as raised:
        ensure_requirements(environment.confirm(True), environment.pip_install, packaging,
                            path=requirements_file, version_of=environment.version_of, imported_modules={})
    assert not isinstance(raised.value, InstallDeclined)
    assert "CalledProcessError" in str(raised.value)


def test_testing_mode_installs_only_when_the_caller_asks(requirements_file):
    """pip_ensure skips installing under --testing; the self-test asks it not to skip."""
    environment = FakeEnvironment({"pydicom": "3.0.2"})
    skipping = FakeSlicerPackaging(environment, outcome="skipped in testing")
    with pytest.raises(DependencyError, match="not all installed"):
        ensure_requirements(environment.confirm(True), environment.pip_install, skipping,
                            path=requirements_file, version_of=environment.version_of, imported_modules={})
    installing = FakeSlicerPackaging(environment)
    assert ensure_requirements(environment.confirm(True), environment.pip_install, installing,
                               path=requirements_file, install_in_testing=True, version_of=environment.version_of,
                               imported_modules={}) is Readiness.READY
    assert installing.ensure_calls[0]["skip_in_testing"] is False


def test_the_real_requirements_are_met_in_this_environment():
    assert plan_install().complete, plan_install().describe()


# The collections whose formats do not need highdicom: NIfTI (ISPY1), PASCAL VOC (Lung-PET-CT-Dx), RTSTRUCT (STS).
WITHOUT_HIGHDICOM = """
import importlib.abc
import os
import sys
from pathlib import Path


class BlockHighdicom(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "highdicom" or name.startswith("highdicom."):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)", name=name)
        return None


sys.meta_path.insert(0, BlockHighdicom())
os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")
from SarcomaLungLiverBrowserLib.browser import CollectionBrowser
from SarcomaLungLiverBrowserLib.scene.headless import HeadlessSlicer

environment = HeadlessSlicer()
try:
    for root in sys.argv[1:]:
        browser = CollectionBrowser(environment.scene)
        collection = browser.open(Path(root))
        cases = browser.cases()
        loaded = browser.load_case(cases[0].case_id)
        assert loaded.volumes, root
        print("LOADED", Path(root).name, cases[0].case_id, len(loaded.nodes), flush=True)
        browser.unload_all()
finally:
    environment.close()
assert "highdicom" not in sys.modules
"""


def test_with_highdicom_absent_ispy1_lung_and_sts_collections_still_detect_and_load(tmp_path):
    """highdicom is only needed for DICOM SEG (CRLM); a failed highdicom install must not take the rest down."""
    import os
    import sys

    from SarcomaLungLiverBrowserLib.samples import ispy1, lung_pet_ct_dx, soft_tissue_sarcoma

    roots = [module.generate(tmp_path / "data") for module in (ispy1, lung_pet_ct_dx, soft_tissue_sarcoma)]
    script = tmp_path / "without_highdicom.py"
    script.write_text(WITHOUT_HIGHDICOM)
    result = subprocess.run([sys.executable, str(script), *map(str, roots)], capture_output=True, text=True,
                            cwd=tmp_path, env={**os.environ, "HOME": str(tmp_path)}, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]
    assert [line.split()[1] for line in result.stdout.splitlines() if line.startswith("LOADED")] == \
        [root.name for root in roots]


def test_the_module_imports_slicer_packaging_itself_and_uses_it_only_with_pip_ensure(monkeypatch):
    """Slicer does not import slicer.packaging at startup; the module must, and must not trust a bare module."""
    import importlib.util
    import sys
    import types

    import slicer

    spec = importlib.util.spec_from_file_location(
        "SarcomaLungLiverBrowser", Path(__file__).resolve().parents[1] / "SarcomaLungLiverBrowser" / "SarcomaLungLiverBrowser.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module._slicerPackaging() is None, "slicer-core has no slicer.packaging"

    complete = types.ModuleType("slicer.packaging")
    complete.pip_ensure = complete.pip_check = complete.load_requirements = lambda *args, **kwargs: None
    monkeypatch.setitem(sys.modules, "slicer.packaging", complete)
    monkeypatch.setattr(slicer, "packaging", complete, raising=False)
    assert module._slicerPackaging() is complete

    bare = types.ModuleType("slicer.packaging")  # e.g. an unrelated module of that name
    monkeypatch.setitem(sys.modules, "slicer.packaging", bare)
    monkeypatch.setattr(slicer, "packaging", bare, raising=False)
    assert module._slicerPackaging() is None
