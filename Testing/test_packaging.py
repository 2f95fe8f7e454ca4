"""Extension packaging: CMake lists every file, the catalog entry is valid, code parses as the oldest supported Python."""
from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parents[1]
MODULE = REPOSITORY / "SarcomaLungLiverBrowser"


def test_module_cmake_lists_every_script_and_resource():
    cmake = (MODULE / "CMakeLists.txt").read_text()
    listed = set(re.findall(r"^\s+(\S+\.\w+)\s*$", cmake, flags=re.M))
    listed = {item.replace("${MODULE_NAME}", "SarcomaLungLiverBrowser") for item in listed}
    for path in (MODULE / "SarcomaLungLiverBrowserLib").rglob("*.py"):
        assert path.relative_to(MODULE).as_posix() in listed, f"{path} is not listed in {MODULE / 'CMakeLists.txt'}"
    for path in (MODULE / "Resources").rglob("*"):
        if path.is_file():
            assert path.relative_to(MODULE).as_posix() in listed, f"{path} is not listed in {MODULE / 'CMakeLists.txt'}"
    assert "SarcomaLungLiverBrowser.py" in listed
    for item in listed:
        assert (MODULE / item).is_file(), f"CMakeLists.txt lists {item}, which does not exist"


def test_cmake_list_checker_agrees():
    result = subprocess.run([sys.executable, str(REPOSITORY / "scripts" / "cmake_module_lists.py")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_top_level_cmake_declares_the_extension():
    cmake = (REPOSITORY / "CMakeLists.txt").read_text()
    assert re.search(r"^project\(SarcomaLungLiverBrowser\)", cmake, flags=re.M)
    for field in ("EXTENSION_HOMEPAGE", "EXTENSION_CONTRIBUTORS", "EXTENSION_DESCRIPTION", "EXTENSION_ICONURL",
                  "EXTENSION_SCREENSHOTURLS", "EXTENSION_DEPENDS"):
        assert f"set({field} " in cmake
    assert "find_package(Slicer REQUIRED)" in cmake
    assert "add_subdirectory(SarcomaLungLiverBrowser)" in cmake
    assert cmake.rstrip().endswith("include(${Slicer_EXTENSION_CPACK})")


# The rules of Slicer's extension catalog entry schema v1.0.2 (Schemas/ in Slicer's source).
CATALOG_PROPERTIES = {
    "$schema": str, "category": str, "scm_url": str, "scm_revision": str, "scm_type": str,
    "build_dependencies": list, "dicom_support_rule": str, "build_subdirectory": str, "enabled": bool, "tier": int,
}


def test_catalog_entry_follows_the_extension_catalog_schema():
    entry = json.loads((REPOSITORY / "SarcomaLungLiverBrowser.json").read_text())
    for required in ("$schema", "category", "scm_url"):
        assert required in entry
    assert set(entry) <= set(CATALOG_PROPERTIES), f"unknown keys {set(entry) - set(CATALOG_PROPERTIES)}"
    for key, value in entry.items():
        assert isinstance(value, CATALOG_PROPERTIES[key]), key
    assert entry["$schema"].endswith("slicer-extension-catalog-entry-schema-v1.0.2.json#")
    assert entry.get("scm_type", "git") in ("git", "local")
    assert 1 <= entry.get("tier", 1) <= 5
    assert all(isinstance(item, str) for item in entry.get("build_dependencies", []))
    # The catalog checks require the file name to equal the CMake project name.
    assert "SarcomaLungLiverBrowser.json" == "SarcomaLungLiverBrowser" + ".json"


def python_sources():
    yield MODULE / "SarcomaLungLiverBrowser.py"
    yield from sorted((MODULE / "SarcomaLungLiverBrowserLib").rglob("*.py"))


def oldest_supported_python() -> tuple:
    """The minimum of pyproject.toml's requires-python (">=X.Y")."""
    text = (REPOSITORY / "pyproject.toml").read_text()
    match = re.search(r'requires-python = ">=(\d+)\.(\d+)"', text)
    assert match, "pyproject.toml declares requires-python as >=X.Y"
    return int(match.group(1)), int(match.group(2))


def test_requires_python_is_the_oldest_python_ci_runs():
    """CI runs the suite on the main environment's Python and each release's; pyproject must not claim older."""
    import sys
    oldest = oldest_supported_python()
    assert oldest == (3, 11), f"pyproject.toml requires {oldest}; CI proves 3.11 (main) and 3.12 (Slicer 5.12)"
    assert sys.version_info[:2] >= oldest
    bootstrap = (REPOSITORY / "scripts" / "bootstrap.sh").read_text()
    assert "sys.version_info < (3, 11)" in bootstrap, "bootstrap refuses a python3 older than pyproject allows"


@pytest.mark.parametrize("path", list(python_sources()), ids=lambda p: p.relative_to(REPOSITORY).as_posix())
def test_sources_parse_as_the_oldest_supported_python(path):
    """No syntax newer than requires-python allows (the suite itself runs on 3.11 and 3.12)."""
    ast.parse(path.read_text(), filename=str(path), feature_version=oldest_supported_python())
