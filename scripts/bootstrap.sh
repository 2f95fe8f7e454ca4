#!/usr/bin/env bash
# Build the project environment in .venv from scratch or bring it up to date.
# Installs the system libraries for offscreen (EGL) rendering when they are
# missing and this user may install them, then the pinned Python packages.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"

need_apt=()
for package in libegl1 libegl-mesa0 libgl1-mesa-dri; do
    dpkg -s "$package" >/dev/null 2>&1 || need_apt+=("$package")
done
if [ "${#need_apt[@]}" -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"
    else
        echo "warning: missing ${need_apt[*]} (needed to render PNG snapshots); install them with apt-get" >&2
    fi
fi

python="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
fi
stamp=.venv/.sllb-installed
if [ ! -f "$stamp" ] || [ requirements-lock.txt -nt "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -r requirements-lock.txt
    .venv/bin/python -m pip install -q --no-deps -e .
    touch "$stamp"
fi
# The PyPI package "slicer" 0.0.8 would shadow slicer-core's namespace (probe P14).
.venv/bin/python -c "import slicer, sys; sys.exit(0 if hasattr(slicer, 'vtkMRMLScene') else 'slicer-core is shadowed by another package named slicer')"
