"""The library's layers import in one direction only.

``formats`` (file readers and writers) never reach the scene, ``scene`` never
reaches a collection or the review code, collections never reach the review
code, and the plain-data basics import nothing of the library but each other.
Every import is checked, including the ones deferred into functions.
"""
from __future__ import annotations

import ast
from pathlib import Path
from typing import Iterator, List, Set, Tuple

import pytest

LIBRARY = Path(__file__).resolve().parents[1] / "SarcomaLungLiverBrowser" / "SarcomaLungLiverBrowserLib"
PACKAGE = "SarcomaLungLiverBrowserLib"

#: Top-level modules every layer may use; they depend on nothing but each other.
BASICS = {"errors", "findings", "progress", "geometry", "case_data", "colors", "processes", "text"}

#: Layer -> the layers it may import (besides itself and the basics).
ALLOWED = {
    "basics": set(),
    "formats": set(),
    "scene": {"formats"},
    "samples": {"formats"},
    "collections": {"formats", "scene", "registry"},
    "registry": {"formats", "collections"},
    "browser": {"formats", "scene", "registry", "collections"},
    "review": {"formats", "scene", "registry", "collections", "browser", "service"},
    "service": {"formats", "scene", "registry", "collections", "browser", "review"},
    "cli": {"formats", "scene", "registry", "collections", "browser", "review", "service", "samples",
            "dependencies"},
    "dependencies": set(),
    "actions": set(),
    "__main__": {"cli"},
    "__init__": set(),
}

#: Third-party modules a layer must not import, even lazily.
FORBIDDEN_THIRD_PARTY = {
    "formats": {"slicer", "vtk", "qt", "ctk"},
    "basics": {"slicer", "vtk", "qt", "ctk", "pandas", "highdicom", "pydicom", "nibabel", "lxml"},
    "registry": {"slicer", "vtk", "qt", "ctk"},
    "collections": {"qt", "ctk"},
    "review": {"qt", "ctk"},
    "actions": {"slicer", "vtk", "qt", "ctk"},
}


def layer_of(module: str) -> str:
    head = module.split(".")[0]
    return "basics" if head in BASICS else head


def library_modules() -> Iterator[Tuple[str, Path]]:
    for path in sorted(LIBRARY.rglob("*.py")):
        parts = path.relative_to(LIBRARY).with_suffix("").parts
        yield ".".join(parts), path


def imports_of(module: str, path: Path) -> Iterator[Tuple[str, int]]:
    """(imported module, line) for every import in the file; library imports as paths below the package."""
    package = module.split(".")[:-1] if not module.endswith("__init__") else module.split(".")[:-1]
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)] if node.level > 1 else package
                target = ".".join([*base, *([node.module] if node.module else [])])
                if node.module is None:
                    for alias in node.names:
                        yield f"{PACKAGE}.{'.'.join([*base, alias.name])}", node.lineno
                else:
                    yield f"{PACKAGE}.{target}", node.lineno
            elif node.module:
                yield node.module, node.lineno


def violations() -> List[str]:
    found: List[str] = []
    for module, path in library_modules():
        layer = layer_of(module)
        allowed: Set[str] = ALLOWED.get(layer, set()) | {layer, "basics"}
        for imported, line in imports_of(module, path):
            location = f"{path.relative_to(LIBRARY)}:{line}"
            if imported == PACKAGE or imported.startswith(PACKAGE + "."):
                inner = imported[len(PACKAGE) + 1:]
                if not inner:
                    continue
                target = layer_of(inner)
                if target not in allowed:
                    found.append(f"{location}: {layer} imports {inner} ({target})")
            else:
                top = imported.split(".")[0]
                if top in FORBIDDEN_THIRD_PARTY.get(layer, set()):
                    found.append(f"{location}: {layer} imports {imported}")
    return found


def test_every_library_module_is_assigned_a_layer() -> None:
    unknown = sorted({layer_of(module) for module, _ in library_modules()} - set(ALLOWED))
    assert not unknown, f"modules outside any layer: {unknown}; add them to ALLOWED in this test"


def test_layers_import_in_one_direction() -> None:
    problems = violations()
    assert not problems, "imports against the layer direction:\n" + "\n".join(problems)


@pytest.mark.parametrize("source, expected", [
    ("from ..scene.builder import SceneBuilder\n", "formats imports scene.builder (scene)"),
    ("import vtk\n", "formats imports vtk"),
])
def test_the_check_catches_a_wrong_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          source: str, expected: str) -> None:
    """A format module that reaches the scene is reported (so the test above can fail)."""
    fake = tmp_path / "lib"
    (fake / "formats").mkdir(parents=True)
    (fake / "formats" / "bad.py").write_text(source)
    monkeypatch.setattr(__import__(__name__), "LIBRARY", fake)
    assert any(expected in problem for problem in violations())
