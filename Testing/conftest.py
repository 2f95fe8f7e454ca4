"""Test fixtures: a fresh slicer-core scene per test, real and generated data."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import pytest

# Offscreen rendering through EGL; set before vtk is imported (probe §3.1).
os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")

import slicer  # noqa: E402

if not hasattr(slicer, "vtkMRMLScene"):
    raise pytest.UsageError(
        "the 'slicer' package here is not slicer-core (PyPI 'slicer' 0.0.8 shadows it); "
        "run the tests with scripts/test.sh"
    )

from SarcomaLungLiverBrowserLib.scene.headless import HeadlessSlicer  # noqa: E402
from SarcomaLungLiverBrowserLib.scene.builder import SceneBuilder  # noqa: E402

REPOSITORY = Path(__file__).resolve().parents[1]


def external_data_root() -> Path:
    """Real public files fetched from other repositories (not committed here).

    Looked for in ``$SLLB_EXTERNAL_DATA``, then ``shared/external_testdata`` beside the checkout.
    """
    candidates = [
        os.environ.get("SLLB_EXTERNAL_DATA", ""),
        str(REPOSITORY.parent / "shared" / "external_testdata"),
    ]
    for candidate in candidates:
        if candidate and Path(candidate).is_dir():
            return Path(candidate)
    return Path(candidates[1])


def running_under_ci() -> bool:
    """True in continuous integration, where ``../shared`` is always laid beside the checkout."""
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def require_shared_data(message: str) -> None:
    """Skip on a developer machine without the data; fail under CI, where its absence is a broken set-up."""
    if running_under_ci():
        pytest.fail(f"{message}; CI must provide it (CI=true)", pytrace=False)
    pytest.skip(message)


@pytest.fixture
def external_data() -> Path:
    """Root of the fetched real test files; skips when absent (fails under ``CI=true``)."""
    root = external_data_root()
    if not root.is_dir():
        require_shared_data(f"real test files from other repositories not found at {root} (see Testing/README.md)")
    return root


@pytest.fixture
def shared_samples() -> Path:
    """The real annotation files in the project's shared/samples folder."""
    root = REPOSITORY.parent / "shared" / "samples"
    if not root.is_dir():
        require_shared_data(f"shared samples not found at {root}")
    return root


@pytest.fixture
def headless() -> Iterator[HeadlessSlicer]:
    """A fresh scene with module logics registered; closed explicitly afterwards."""
    environment = HeadlessSlicer()
    try:
        yield environment
    finally:
        environment.close()


@pytest.fixture
def builder(headless: HeadlessSlicer) -> SceneBuilder:
    return SceneBuilder(headless.scene)


@pytest.fixture(scope="session")
def sample_collections(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """All four sample collections, generated once per test session."""
    from SarcomaLungLiverBrowserLib.samples import generate_all

    root = tmp_path_factory.mktemp("sample_collections")
    generate_all(root)
    return root
