"""Extension packaging: CMake lists every file, the catalog entry is valid, code parses as Python 3.9."""
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


@pytest.mark.parametrize("path", list(python_sources()), ids=lambda p: p.relative_to(REPOSITORY).as_posix())
def test_sources_parse_as_python_3_9(path):
    """pyproject.toml declares Python >= 3.9 for the command line (Slicer 5.12 itself ships 3.12, see
    Testing/test_slicer_release.py): no match statements, no parenthesised context managers."""
    ast.parse(path.read_text(), filename=str(path), feature_version=(3, 9))
    tree = ast.parse(path.read_text())
    has_future = any(isinstance(node, ast.ImportFrom) and node.module == "__future__" for node in tree.body)
    for node in ast.walk(tree):
        # "X | Y" in annotations only works in 3.9 under "from __future__ import annotations".
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr) and not has_future:
            if isinstance(node.left, ast.Name) and node.left.id in ("str", "int", "float", "None", "Path"):
                pytest.fail(f"{path}:{node.lineno}: union type without 'from __future__ import annotations'")


def _python_3_9():
    """A working Python 3.9 interpreter (the oldest pyproject.toml allows), or None."""
    import glob
    import os
    import shutil

    candidates = [os.environ.get("SLLB_PYTHON39", ""),
                  *sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.9*/bin/python3.9"))),
                  shutil.which("python3.9") or ""]
    for candidate in candidates:
        if candidate and subprocess.run([candidate, "--version"], capture_output=True).returncode == 0:
            return candidate
    return None


def test_sources_compile_with_a_real_python_3_9_when_one_is_installed(tmp_path):
    """Byte-compile every module with Python 3.9 itself (ast's feature_version misses some syntax)."""
    interpreter = _python_3_9()
    if interpreter is None:
        pytest.skip("no working Python 3.9 found (set SLLB_PYTHON39); the ast check above still ran")
    copies = []
    for index, source in enumerate(python_sources()):
        copy = tmp_path / f"{index}_{source.name}"
        copy.write_text(source.read_text())
        copies.append(str(copy))
    script = "import py_compile, sys\nfor path in sys.argv[1:]:\n    py_compile.compile(path, doraise=True)\n"
    result = subprocess.run([interpreter, "-c", script, *copies], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
