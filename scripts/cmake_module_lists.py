"""Print (or check) the script and resource lists of the module's CMakeLists.txt.

Slicer installs only the files listed there, so every ``.py`` of the library and
every resource must appear. ``--write`` rewrites the two lists in place.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

MODULE = Path(__file__).resolve().parents[1] / "SarcomaLungLiverBrowser"
CMAKE = MODULE / "CMakeLists.txt"


def expected_scripts() -> list:
    scripts = ["${MODULE_NAME}.py"]
    for path in sorted((MODULE / "SarcomaLungLiverBrowserLib").rglob("*.py")):
        scripts.append(path.relative_to(MODULE).as_posix())
    return scripts


def expected_resources() -> list:
    return sorted(path.relative_to(MODULE).as_posix() for path in (MODULE / "Resources").rglob("*") if path.is_file())


def block(name: str, items: list) -> str:
    return f"set(MODULE_PYTHON_{name}\n" + "".join(f"  {item}\n" for item in items) + "  )"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--write", action="store_true")
    arguments = parser.parse_args()
    text = CMAKE.read_text()
    updated = re.sub(r"set\(MODULE_PYTHON_SCRIPTS\n.*?\n  \)", block("SCRIPTS", expected_scripts()), text, flags=re.S)
    updated = re.sub(r"set\(MODULE_PYTHON_RESOURCES\n.*?\n  \)", block("RESOURCES", expected_resources()), updated, flags=re.S)
    if arguments.write:
        CMAKE.write_text(updated)
        return 0
    if updated != text:
        print("SarcomaLungLiverBrowser/CMakeLists.txt does not list every script and resource; "
              "run: python scripts/cmake_module_lists.py --write", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
