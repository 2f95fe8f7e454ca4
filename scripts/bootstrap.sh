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

# --slicer-release X.Y: build .venv-slicer-X.Y, the test environment of one supported
# Slicer release (scripts/slicer-releases/X.Y.txt), instead of the main .venv.
if [ "${1:-}" = "--slicer-release" ]; then
    release="${2:?usage: bootstrap.sh --slicer-release X.Y}"
    pins="scripts/slicer-releases/$release.txt"
    [ -f "$pins" ] || { echo "error: no $pins (supported releases: $(ls scripts/slicer-releases))" >&2; exit 2; }
    minor="$(sed -n 's/^# python: *\([0-9][0-9.]*\).*/\1/p' "$pins")"
    [ -n "$minor" ] || { echo "error: $pins has no '# python: X.Y' line" >&2; exit 2; }
    venv=".venv-slicer-$release"
    stamp="$venv/.sllb-installed"
    if [ -f "$stamp" ] && [ ! "$pins" -nt "$stamp" ] && [ ! requirements-lock.txt -nt "$stamp" ] \
            && [ ! SarcomaLungLiverBrowser/Resources/requirements.txt -nt "$stamp" ]; then
        exit 0
    fi
    interpreter="$(ls -d "$HOME"/.pyenv/versions/"$minor".*/bin/python"$minor" 2>/dev/null | sort -V | tail -n 1)"
    [ -n "$interpreter" ] || interpreter="$(command -v "python$minor" || true)"
    [ -n "$interpreter" ] || { echo "error: Slicer $release needs Python $minor; none in ~/.pyenv/versions or on PATH" >&2; exit 2; }
    rm -rf "$venv"
    "$interpreter" -m venv "$venv"
    "$venv/bin/python" -m pip install -q --upgrade pip
    bundled="$venv/bundled.txt"
    grep -v '^#' "$pins" | sed '/^[[:space:]]*$/d' > "$bundled"
    names="$(sed 's/[=<>!~ ].*//' "$bundled" | paste -sd'|')"
    # 1. What the Slicer installer ships.
    "$venv/bin/python" -m pip install -q -r "$bundled"
    # 2. The module's requirements on top, as Slicer's pip would install them; the constraint
    #    makes pip fail rather than upgrade a package Slicer has already imported.
    grep -viE "^($names)==" requirements-lock.txt > "$venv/lock-without-bundled.txt"
    "$venv/bin/python" -m pip install -q -r SarcomaLungLiverBrowser/Resources/requirements.txt \
        -c "$bundled" -c "$venv/lock-without-bundled.txt"
    # 3. The test tools and slicer-core (the application brings its own MRML instead).
    "$venv/bin/python" -m pip install -q -r "$venv/lock-without-bundled.txt" -c "$bundled"
    "$venv/bin/python" -m pip install -q --no-deps -e .
    "$venv/bin/python" -m pip check
    touch "$stamp"
    exit 0
fi

python="${PYTHON:-python3}"
# pyproject.toml requires 3.11; CI proves 3.11 (this env) and 3.12 (the Slicer 5.12 env).
"$python" -c 'import sys; sys.exit("error: Python 3.11 or later is needed (set PYTHON=...), this is " + sys.version.split()[0] if sys.version_info < (3, 11) else 0)'
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
