"""The supported-release matrix: each supported Slicer release has a test environment, and it is that release.

``scripts/slicer-releases/X.Y.txt`` records a release's Python version and the packages its installer
bundles. ``scripts/bootstrap.sh --slicer-release X.Y`` builds ``.venv-slicer-X.Y`` from it and
``scripts/test.sh`` runs the suite there with ``SLLB_SLICER_RELEASE=X.Y``; the first test below then
checks that the interpreter and the bundled packages are exactly the recorded ones, so a drifting
environment fails instead of silently testing something else. The other tests hold the statements in
``Resources/requirements.txt`` and the CMake files to the same list of releases.
"""
from __future__ import annotations

import os
import re
import sys
from importlib import metadata
from pathlib import Path
from typing import Dict, List, Tuple

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

REPOSITORY = Path(__file__).resolve().parents[1]
RELEASES_FOLDER = REPOSITORY / "scripts" / "slicer-releases"
REQUIREMENTS_FILE = REPOSITORY / "SarcomaLungLiverBrowser" / "Resources" / "requirements.txt"


def release_pins(release: str) -> Tuple[str, Dict[str, str]]:
    """(Python "major.minor", {distribution: bundled version}) of one supported release."""
    text = (RELEASES_FOLDER / f"{release}.txt").read_text(encoding="utf-8")
    python = re.search(r"^# python: *(\d+\.\d+)\s*$", text, flags=re.M)
    assert python, f"{release}.txt has no '# python: X.Y' line"
    pins = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"{release}.txt: {line!r} is not an exact pin"
            pins[name.strip().lower()] = version.strip()
    return python.group(1), pins


def supported_releases() -> List[str]:
    releases = sorted((path.stem for path in RELEASES_FOLDER.glob("*.txt")), key=Version)
    assert releases, f"no supported release in {RELEASES_FOLDER}"
    return releases


def module_requirements() -> List[Requirement]:
    lines = (line.split("#", 1)[0].strip() for line in REQUIREMENTS_FILE.read_text().splitlines())
    return [Requirement(line) for line in lines if line]


def test_this_environment_is_the_release_it_claims_to_be():
    """Run by scripts/test.sh in every .venv-slicer-X.Y; the main environment is not a release."""
    release = os.environ.get("SLLB_SLICER_RELEASE")
    if not release:
        pytest.skip("main environment (scripts/test.sh sets SLLB_SLICER_RELEASE in each release environment)")
    python, pins = release_pins(release)
    assert f"{sys.version_info.major}.{sys.version_info.minor}" == python, \
        f"Slicer {release} ships Python {python}, this is {sys.version.split()[0]}"
    for name, version in pins.items():
        assert metadata.version(name) == version, f"Slicer {release} bundles {name} {version}"
    for requirement in module_requirements():
        installed = metadata.version(requirement.name)
        assert requirement.specifier.contains(installed, prereleases=True), f"{requirement} not met by {installed}"


@pytest.mark.parametrize("release", supported_releases())
def test_requirements_never_replace_a_package_the_release_bundles(release):
    """Installing our requirements must not upgrade what Slicer has already imported (needs a restart)."""
    _, pins = release_pins(release)
    for requirement in module_requirements():
        bundled = pins.get(requirement.name.lower())
        if bundled is not None:
            assert requirement.specifier.contains(bundled, prereleases=True), \
                f"Slicer {release} bundles {requirement.name} {bundled}; '{requirement}' would replace it"


def test_requirements_file_and_cmake_name_the_oldest_tested_release():
    oldest = supported_releases()[0]
    requirements_text = REQUIREMENTS_FILE.read_text()
    assert f"Supported: Slicer {', '.join(supported_releases())}, exactly the releases CI proves." in requirements_text
    assert f"CI proves Slicer {', '.join(supported_releases())}:" in requirements_text
    top_cmake = (REPOSITORY / "CMakeLists.txt").read_text()
    assert f'set(SarcomaLungLiverBrowser_OLDEST_SLICER "{oldest}")' in top_cmake
    assert "if(Slicer_VERSION VERSION_LESS SarcomaLungLiverBrowser_OLDEST_SLICER)" in top_cmake
    assert f'set(SarcomaLungLiverBrowser_TESTED_SLICERS "{";".join(supported_releases())}")' in top_cmake
    # A newer, untested release still builds, but CMake says it is untested (the README promises that warning).
    assert "IN_LIST SarcomaLungLiverBrowser_TESTED_SLICERS" in top_cmake
    assert re.search(r'message\(WARNING "[^"]*tested with Slicer', top_cmake)
    description = re.search(r'set\(EXTENSION_DESCRIPTION "([^"]*)"\)', top_cmake).group(1)
    assert description.startswith(f"For Slicer {', '.join(supported_releases())} (the releases its CI proves).")


def test_test_script_runs_every_supported_release():
    script = (REPOSITORY / "scripts" / "test.sh").read_text()
    assert "scripts/slicer-releases/*.txt" in script and "SLLB_SLICER_RELEASE=" in script
    assert ".venv-*/" in (REPOSITORY / ".gitignore").read_text().splitlines()


def test_readme_names_exactly_the_tested_releases():
    """The README's install line names exactly the releases the matrix proves, no older and no newer one."""
    readme = (REPOSITORY / "README.md").read_text(encoding="utf-8")
    install_line = next((line for line in readme.splitlines() if line.startswith("**From the Extension Manager**")), "")
    assert f"(Slicer {', '.join(supported_releases())}," in install_line, f"README install line: {install_line!r}"
    assert "later" not in install_line and "later" not in readme.split("**Supported Slicer release:")[1].split("\n")[0]
    assert "scripts/slicer-releases" in readme, "README says where the tested releases are defined"
