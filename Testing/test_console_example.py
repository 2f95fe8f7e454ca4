"""The README's Python-console example runs as written, on slicer-core, after the one documented headless line.

The example is read from README.md (the first ``python`` block under "From the Python console"), so the
README cannot drift from what is tested. Only its two placeholder folders are replaced: ``/data/`` by the
folder holding a generated CRLM sample, ``/tmp/`` by this test's temporary folder.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]

#: What a slicer-core user types first (README: "Without the Slicer application"); inside Slicer it is not needed.
HEADLESS_LINE = "from SarcomaLungLiverBrowserLib.scene.headless import HeadlessSlicer; HeadlessSlicer()"


def console_example() -> str:
    readme = (REPOSITORY / "README.md").read_text(encoding="utf-8")
    section = readme.split("### From the Python console", 1)
    assert len(section) == 2, "README.md has no 'From the Python console' section"
    block = re.search(r"```python\n(.*?)```", section[1], flags=re.S)
    assert block, "the console section has no python block"
    return block.group(1)


def test_readme_console_example_runs_on_slicer_core(tmp_path):
    from SarcomaLungLiverBrowserLib.samples import crlm

    example = console_example()
    assert "import SarcomaLungLiverBrowser\n" in example and "/data/Colorectal-Liver-Metastases" in example
    data = tmp_path / "data"
    crlm.generate(data)
    folders = {"/data/": f"{data.as_posix()}/", "/tmp/": f"{(tmp_path / 'out').as_posix()}/"}
    script = re.sub(r'"(/data/|/tmp/)', lambda match: '"' + folders[match.group(1)], example)
    (tmp_path / "out").mkdir()
    program = tmp_path / "console.py"
    program.write_text(HEADLESS_LINE + "\n" + script)
    module_folder = REPOSITORY / "SarcomaLungLiverBrowser"
    environment = {**os.environ, "HOME": str(tmp_path),
                   "PYTHONPATH": os.pathsep.join([str(module_folder), os.environ.get("PYTHONPATH", "")]),
                   "VTK_DEFAULT_OPENGL_WINDOW": "vtkEGLRenderWindow"}
    result = subprocess.run([sys.executable, str(program)], capture_output=True, text=True, cwd=tmp_path,
                            env=environment, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]
    assert (tmp_path / "out" / "CRLM-CT-1001.mrb").is_file()
    assert any((tmp_path / "out" / "corrected").rglob("*.dcm"))
    assert "(1, " in result.stdout, "reviewProgress() printed one reviewed case"


def test_readme_documents_the_headless_line():
    readme = (REPOSITORY / "README.md").read_text(encoding="utf-8")
    assert HEADLESS_LINE in readme, (
        "README.md must show the line slicer-core users type before the console example "
        "(text in the slicer engineer's readme note)")
