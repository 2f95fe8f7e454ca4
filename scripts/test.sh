#!/usr/bin/env bash
# Run the test suite on slicer-core (builds the environments first if needed).
#
#   scripts/test.sh            the whole suite in .venv (newest pinned packages), then the whole
#                              suite again in .venv-slicer-X.Y for every supported Slicer release
#                              (scripts/slicer-releases/X.Y.txt: that release's Python and bundled
#                              numpy/pydicom/highdicom, with the module's requirements on top)
#   scripts/test.sh ARGS...    pytest ARGS in .venv only (e.g. one test file)
#   SLLB_SLICER_RELEASES="5.12" scripts/test.sh   only those releases in the matrix
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$here/scripts/bootstrap.sh"
cd "$here"
if [ "$#" -gt 0 ]; then
    exec .venv/bin/python -m pytest "$@"
fi

status=0
echo "== main environment (.venv, $(.venv/bin/python --version))"
.venv/bin/python -m pytest || status=1
for pins in scripts/slicer-releases/*.txt; do
    release="$(basename "$pins" .txt)"
    if [ -n "${SLLB_SLICER_RELEASES:-}" ] && ! [[ " $SLLB_SLICER_RELEASES " == *" $release "* ]]; then
        continue
    fi
    echo "== Slicer $release environment (.venv-slicer-$release)"
    if ! bash scripts/bootstrap.sh --slicer-release "$release"; then
        echo "error: could not build the Slicer $release test environment" >&2
        status=1
        continue
    fi
    SLLB_SLICER_RELEASE="$release" ".venv-slicer-$release/bin/python" -m pytest || status=1
done
exit "$status"
