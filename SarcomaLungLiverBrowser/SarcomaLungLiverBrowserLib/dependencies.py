"""Which Python packages the extension needs that the running Slicer lacks, and installing them safely.

Only the standard library (and ``packaging``, which every supported Slicer ships because its own
``slicer.packaging`` uses it) is imported here, so the module can ask before anything else of the
library is imported.

What "safely" means, from how Slicer behaves (``../shared/notes/slicer_app_facts.md``):

- Versions count, not just imports: an old pydicom that imports fine still breaks highdicom.
- A package Slicer has already imported (pydicom is imported at startup by the DICOM plugins) keeps
  running its old version after pip upgrades it, so the user must be told that Slicer has to restart.
- Slicer 5.12+ has ``slicer.packaging.pip_ensure`` (asks, installs, offers the restart itself); it is
  not imported at startup, so the caller imports it. Older Slicers only have ``slicer.util.pip_install``,
  so we ask first, let pip resolve everything in a dry run (a conflict then installs nothing), and
  install all requirements in one pip call.
- Declining and pip failures raise :class:`DependencyError` with a message meant for the user.
"""
from __future__ import annotations

import enum
import importlib.util
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

__all__ = [
    "REQUIREMENTS_FILE", "IMPORT_NAMES", "DependencyError", "InstallDeclined", "Readiness", "RequirementStatus",
    "InstallPlan", "requirements", "missing_requirements", "plan_install", "ensure_requirements", "restart_required",
]

#: The requirements file Slicer's ``pip_ensure`` reads (also listed in CMakeLists.txt).
REQUIREMENTS_FILE = Path(__file__).resolve().parents[1] / "Resources" / "requirements.txt"

#: Import name of each distribution in the requirements file (they differ for some).
IMPORT_NAMES: Dict[str, str] = {
    "pydicom": "pydicom",
    "highdicom": "highdicom",
    "nibabel": "nibabel",
    "pandas": "pandas",
    "lxml": "lxml",
    "openpyxl": "openpyxl",
    "pylibjpeg": "pylibjpeg",
    "pylibjpeg-libjpeg": "libjpeg",
    "pyjpegls": "jpeg_ls",
    "pylibjpeg-openjpeg": "openjpeg",
    "pylibjpeg-rle": "rle",
    "python-gdcm": "gdcm",
    "imagecodecs": "imagecodecs",
    # The Imaging Data Commons section's optional packages (Resources/idc-requirements.txt).
    "idc-index": "idc_index",
    "idc-index-data": "idc_index_data",
}

#: How to ask for a version: returns the installed version of a distribution, or None.
VersionLookup = Callable[[str], Optional[str]]


class DependencyError(RuntimeError):
    """The packages could not be made ready; the message is written for the user."""


class InstallDeclined(DependencyError):
    """The user said no to installing the packages."""


class Readiness(enum.Enum):
    """What the caller may do after :func:`ensure_requirements`."""

    #: Every requirement is met by the packages this Python is running.
    READY = "ready"
    #: Installed, but a package Slicer had already imported was replaced: restart before use.
    RESTART_NEEDED = "restart needed"


def installed_version(distribution: str) -> Optional[str]:
    """The installed version of ``distribution`` (read fresh from disk), or None."""
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def importable(module_name: str) -> bool:
    """True if ``module_name`` can be found by the import system (installed files alone are not enough:
    a broken install, or an import blocked on purpose, leaves metadata behind)."""
    if module_name in sys.modules and sys.modules[module_name] is not None:
        return True
    try:
        return importlib.util.find_spec(module_name) is not None
    except (ImportError, ValueError):
        return False


def requirements(path: Path = REQUIREMENTS_FILE) -> List[str]:
    """The requirement lines of the requirements file (comments and blanks dropped)."""
    lines = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            lines.append(line)
    return lines


@dataclass(frozen=True)
class RequirementStatus:
    """One requirement line against what is installed."""

    requirement: str
    name: str
    installed: Optional[str]
    satisfied: bool
    #: Its import name is already in ``sys.modules``: an upgrade only takes effect after a restart.
    imported: bool

    @property
    def upgrade_needs_restart(self) -> bool:
        return not self.satisfied and self.imported


@dataclass(frozen=True)
class InstallPlan:
    """What is missing or too old, and whether installing it needs a restart."""

    statuses: Sequence[RequirementStatus]

    @property
    def unmet(self) -> List[RequirementStatus]:
        return [status for status in self.statuses if not status.satisfied]

    @property
    def complete(self) -> bool:
        return not self.unmet

    @property
    def requirement_lines(self) -> List[str]:
        return [status.requirement for status in self.unmet]

    @property
    def restart_needed(self) -> bool:
        return any(status.upgrade_needs_restart for status in self.statuses)

    def describe(self) -> str:
        """One line per unmet requirement: what is needed and what is installed."""
        return "\n".join(
            f"  {status.requirement}  (installed: {status.installed or 'none'})" for status in self.unmet)

    def question(self, requester: str) -> str:
        """The text asking the user to install, with the restart warning when it applies."""
        text = (f"{requester} needs these Python packages, which are missing or too old:\n\n"
                f"{self.describe()}\n\nInstall them now (from the Python Package Index, with pip)?")
        if self.restart_needed:
            imported = ", ".join(status.name for status in self.unmet if status.imported)
            text += (f"\n\nSlicer is already using {imported}; after the upgrade you must restart Slicer "
                     f"before loading a collection.")
        return text


def _specifier_accepts(requirement: str, version: str) -> bool:
    from packaging.requirements import Requirement

    return Requirement(requirement).specifier.contains(version, prereleases=True)


def _distribution_name(requirement: str) -> str:
    for separator in ("[", "<", ">", "=", "!", "~", ";", " "):
        requirement = requirement.split(separator, 1)[0]
    return requirement.strip().lower()


def plan_install(path: Path = REQUIREMENTS_FILE, version_of: VersionLookup = installed_version,
                 imported_modules: Optional[Mapping[str, Any]] = None,
                 can_import: Callable[[str], bool] = importable) -> InstallPlan:
    """Compare every requirement with the installed version (``version_of``) and the imported modules.

    A requirement is met when its installed version is accepted and its module can be imported.
    """
    modules = sys.modules if imported_modules is None else imported_modules
    statuses = []
    for requirement in requirements(path):
        name = _distribution_name(requirement)
        import_name = IMPORT_NAMES.get(name, name)
        installed = version_of(name)
        if installed is not None and not can_import(import_name):
            installed = None  # metadata without a usable package: treat as absent
        statuses.append(RequirementStatus(
            requirement=requirement, name=name, installed=installed,
            satisfied=installed is not None and _specifier_accepts(requirement, installed),
            imported=import_name in modules,
        ))
    return InstallPlan(statuses)


def missing_requirements(path: Path = REQUIREMENTS_FILE, version_of: VersionLookup = installed_version,
                         can_import: Callable[[str], bool] = importable) -> List[str]:
    """Requirement lines not met by the installed versions (absent, too old or not importable)."""
    return plan_install(path, version_of, imported_modules={}, can_import=can_import).requirement_lines


#: Set once an install replaced a package this Python had already imported: until Slicer restarts the
#: old version stays in memory, so every later check must keep saying so (the files on disk look fine).
_restart_required = False


def restart_required() -> bool:
    """True after an install replaced a package that was already imported in this session."""
    return _restart_required


def _after_install(path: Path, before: InstallPlan, version_of: VersionLookup,
                   can_import: Callable[[str], bool]) -> Readiness:
    """Check the result of an install: everything met, and whether Slicer must restart first."""
    global _restart_required
    after = plan_install(path, version_of, imported_modules={}, can_import=can_import)
    if not after.complete:
        raise DependencyError(
            "The Python packages were not all installed; nothing was loaded. Still missing or too old:\n"
            f"{after.describe()}\n\nSee Slicer's Python console for pip's messages.")
    if before.restart_needed:
        _restart_required = True
        return Readiness.RESTART_NEEDED
    return Readiness.READY


def ensure_requirements(
    confirm: Callable[[str], bool],
    pip_install: Callable[[str], Any],
    slicer_packaging: Any = None,
    path: Path = REQUIREMENTS_FILE,
    requester: str = "Sarcoma Lung Liver Browser",
    install_in_testing: bool = False,
    ask: bool = True,
    version_of: VersionLookup = installed_version,
    imported_modules: Optional[Mapping[str, Any]] = None,
    can_import: Callable[[str], bool] = importable,
) -> Readiness:
    """Make every requirement met, asking the user first; raise :class:`DependencyError` if that fails.

    :param confirm: shows a question, returns True for yes (``slicer.util.confirmOkCancelDisplay``).
    :param pip_install: runs pip with an argument string (``slicer.util.pip_install``); raises on failure.
    :param slicer_packaging: Slicer 5.12+'s ``slicer.packaging`` module (imported by the caller), or None;
        used when it has ``pip_ensure`` and ``pip_check``, which check versions, ask, and offer the restart.
    :param install_in_testing: passed to ``pip_ensure`` as ``skip_in_testing=not install_in_testing``; the
        self-test sets it because Slicer's test harness lacks the packages.
    :param ask: False installs without asking (the self-test under ``--testing``, where a dialog would hang).
    :returns: :attr:`Readiness.READY`, or :attr:`Readiness.RESTART_NEEDED` when a package Slicer had
        imported was upgraded (the caller must not use the library before Slicer restarts).
    """
    if _restart_required:
        return Readiness.RESTART_NEEDED
    before = plan_install(path, version_of, imported_modules, can_import)
    if before.complete:
        return Readiness.READY
    if slicer_packaging is not None and hasattr(slicer_packaging, "pip_ensure") and hasattr(slicer_packaging, "pip_check"):
        try:
            slicer_packaging.pip_ensure(slicer_packaging.load_requirements(str(path)), requester=requester,
                                        prompt_install=ask, skip_in_testing=not install_in_testing)
        except RuntimeError as error:  # pip_ensure's way of saying the user declined
            if isinstance(error, DependencyError):
                raise
            raise InstallDeclined(_declined_message(requester, before)) from error
        except Exception as error:  # CalledProcessError and whatever else pip raised
            raise DependencyError(_failed_message(before, error)) from error
        return _after_install(path, before, version_of, can_import)
    if ask and not confirm(before.question(requester)):
        raise InstallDeclined(_declined_message(requester, before))
    arguments = " ".join(f'"{line}"' for line in before.requirement_lines)
    try:
        # Resolve everything first: a conflict (e.g. a package that has no release for this Python)
        # then fails here and installs nothing, instead of leaving half of the packages installed.
        pip_install(f"--dry-run {arguments}")
        pip_install(arguments)
    except Exception as error:
        raise DependencyError(_failed_message(before, error)) from error
    return _after_install(path, before, version_of, can_import)


def _declined_message(requester: str, plan: InstallPlan) -> str:
    return (f"{requester} cannot open collections without these Python packages, and nothing was installed:\n"
            f"{plan.describe()}\n\nUse the module again to be asked again, or install them from the Python "
            f"console with slicer.util.pip_install.")


def _failed_message(plan: InstallPlan, error: BaseException) -> str:
    return (f"Installing the Python packages failed ({type(error).__name__}: {error}); nothing was loaded.\n"
            f"Needed:\n{plan.describe()}\n\nSee Slicer's Python console for pip's messages.")
