#!/usr/bin/env bash
# Run the test suite on slicer-core (builds the environment first if needed).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$here/scripts/bootstrap.sh"
cd "$here"
exec .venv/bin/python -m pytest "$@"
