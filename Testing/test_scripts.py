"""The README's headline commands run: ``scripts/demo.sh``'s job and ``scripts/make_screenshots.py``."""
from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

from conftest import external_data_root, require_shared_data

REPOSITORY = Path(__file__).resolve().parents[1]


def _environment() -> dict:
    return dict(os.environ, PYTHONPATH=str(REPOSITORY / "SarcomaLungLiverBrowser"))


def _assert_a_real_picture(path: Path) -> None:
    with Image.open(path) as image:
        pixels = np.asarray(image.convert("L"))
    assert pixels.shape[0] >= 128 and pixels.shape[1] >= 128, f"{path}: {pixels.shape}"
    assert pixels.std() > 5, f"{path} is (nearly) uniform: nothing was rendered"


def test_demo_script_runs_the_demo_command() -> None:
    script = (REPOSITORY / "scripts" / "demo.sh").read_text()
    assert "scripts/bootstrap.sh" in script
    assert '.venv/bin/python -m SarcomaLungLiverBrowserLib demo --out "${1:-output}"' in script


def test_demo_loads_a_case_of_every_sample_collection(tmp_path: Path) -> None:
    """What ``bash scripts/demo.sh`` runs after bootstrapping: one scene bundle and one snapshot per collection."""
    from SarcomaLungLiverBrowserLib.samples import SAMPLE_MODULES

    out = tmp_path / "output"
    result = subprocess.run([sys.executable, "-m", "SarcomaLungLiverBrowserLib", "--no-cache", "demo", "--out",
                             str(out)], env=_environment(), cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    loaded = sorted(p.parent.name for p in out.glob("*/case.mrb"))
    assert loaded == sorted(SAMPLE_MODULES), f"the demo should load every sample collection: {loaded}"
    assert f"{len(loaded)} of {len(loaded)} collections loaded" in result.stdout, result.stdout
    for name in loaded:
        with zipfile.ZipFile(out / name / "case.mrb") as bundle:
            assert any(member.endswith(".mrml") for member in bundle.namelist()), name
        _assert_a_real_picture(out / name / "case.png")


def test_make_screenshots_writes_a_readme_picture_from_real_data(tmp_path: Path) -> None:
    external = external_data_root()
    if not external.is_dir():
        require_shared_data(f"real test files not found at {external}")
    result = subprocess.run([sys.executable, str(REPOSITORY / "scripts" / "make_screenshots.py"), "--external",
                             str(external), "--only", "dcmqi", "--out", str(tmp_path)], env=_environment(),
                            cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    written = [Path(line) for line in result.stdout.split() if line.endswith(".png")]
    assert written and all(path.parent == tmp_path for path in written)
    for path in written:
        _assert_a_real_picture(path)
