"""Which Python packages the extension needs that the running Slicer may lack.

Only the standard library is imported here, so the module can ask before
anything else of the library is imported.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Dict, List

__all__ = ["REQUIREMENTS_FILE", "requirements", "missing_requirements"]

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
}


def requirements(path: Path = REQUIREMENTS_FILE) -> List[str]:
    """The requirement lines of the requirements file (comments and blanks dropped)."""
    lines = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            lines.append(line)
    return lines


def _distribution_name(requirement: str) -> str:
    for separator in ("[", "<", ">", "=", "!", "~", ";", " "):
        requirement = requirement.split(separator, 1)[0]
    return requirement.strip().lower()


def missing_requirements(path: Path = REQUIREMENTS_FILE) -> List[str]:
    """Requirement lines whose package cannot be imported in this Python."""
    missing = []
    for requirement in requirements(path):
        name = _distribution_name(requirement)
        if importlib.util.find_spec(IMPORT_NAMES.get(name, name)) is None:
            missing.append(requirement)
    return missing
